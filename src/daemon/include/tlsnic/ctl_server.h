/*
 * tlsnicd's control server: takes ADD / DEL / RESYNC / FLOW_FLAGS / STATS / FLOW_STATS
 * requests (ctl_proto.h) from hosts over a Unix socket and drives a device with them.
 * Daemon side only: no host code includes this.
 *
 * Errors: negative errno.
 */
#ifndef TLSNIC_CTL_SERVER_H
#define TLSNIC_CTL_SERVER_H

#include <poll.h>
#include <stdio.h>

#include "tlsnic/ctl_proto.h"
#include "tlsnic/devops.h"
#include "tlsnic/fence.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------------------------ */
/* The daemon side of the control channel.                                                    */

typedef struct tlsnic_ctl_server tlsnic_ctl_server;

struct tlsnic_ctl_server_config {
    const char *path;        /* socket path; a stale socket there is replaced */
    struct tlsnic_dev *dev;  /* borrowed: the device the requests go to */
    /* Fills buf with "name value\n" lines for STATS (may be NULL). Returns length or -errno. */
    int (*stats)(void *ctx, char *buf, size_t cap);
    void *stats_ctx;
    /*
     * One flow's device counters for FLOW_STATS, in TLSNIC_CTL_FLOW_COUNTERS order (may be
     * NULL: flows are then listed with TLSNIC_CTL_FLOW_NO_COUNTERS). Fills out[0..cap);
     * returns 0 or -errno (-ENOENT: the device holds no context for the flow). Called on
     * the control path only: for FLOW_STATS and just before a flow is deleted.
     */
    int (*flow_counters)(void *ctx, const struct tlsnic_flow *flow, enum tlsnic_dir dir,
                         uint64_t *out, size_t cap);
    void *flow_counters_ctx;
    FILE *log;               /* one line per connection and per request outcome; NULL = quiet */
    uint32_t max_clients;    /* 0 = 32 */
    uint32_t max_flows;      /* 0 = 4096 */
    /*
     * Restart safety (fence.h), both optional. A successful TX add lifts the flow's fence.
     * After every add, del and host disconnect the offloaded flows (and those still
     * fenced) are written to state_path; shutting the server down does not change it, so
     * a restarted daemon fences what was offloaded when it stopped, however it stopped.
     */
    struct tlsnic_fence *fence;
    const char *state_path;
    /*
     * How long a finishing flow (released, its host gone, deleted with bytes unacknowledged)
     * may take to have nothing more to send before its connection is reset; 0 = 60000 ms.
     */
    uint32_t finish_timeout_ms;
    /*
     * Optional (may be NULL): when a TX flow's context is deleted, or its restart fence
     * lifted, its 4-tuple is fenced in this set for linger_ms (0 = 5000 ms; a SYN on the
     * 4-tuple lifts it earlier), since frames the socket sent before it closed may still be
     * queued between the host's stack and the device. The caller gates frames with it, as
     * with fence. Not written to the state file.
     */
    struct tlsnic_fence *linger;
    uint32_t linger_ms;
    /* The RX flows of the state file, fenced towards the host until re-added (optional):
     * a restarted device must take over the decisions the last one made before any copy
     * of those bytes reaches the host (decided once). An RX add lifts the flow's fence. */
    struct tlsnic_fence *rx_fence;
};

/* Binds and listens (mode 0600). -EADDRINUSE if a live daemon listens on path. */
int tlsnic_ctl_server_new(tlsnic_ctl_server **out, const struct tlsnic_ctl_server_config *cfg);

/* Deletes every flow from the device (the state file keeps them: a restart fences them),
 * closes the sockets it held, closes, unlinks the path. */
void tlsnic_ctl_server_free(tlsnic_ctl_server *s);

/* Fills up to cap pollfds (listener first). Returns how many. */
int tlsnic_ctl_server_poll_setup(tlsnic_ctl_server *s, struct pollfd *pfd, int cap);

/* Accepts and serves what the last poll reported (one request per ready client), and
 * looks after the finishing flows (tlsnic_ctl_server_finish_pass). */
void tlsnic_ctl_server_process(tlsnic_ctl_server *s, const struct pollfd *pfd, int n);

/*
 * The poll timeout (ms) the server needs: while flows are finishing, their sockets are
 * looked at every few ms; -1 when none is.
 */
int tlsnic_ctl_server_timeout_ms(const tlsnic_ctl_server *s);

/*
 * At most every few ms: ends the finishing flows whose socket has nothing more to send
 * (deletes the context, unmaps the store, closes the socket), resets those past the
 * finish timeout. tlsnic_ctl_server_process calls it.
 */
void tlsnic_ctl_server_finish_pass(tlsnic_ctl_server *s);
/*
 * Writes each flow's device flags into its host's record store (shmstore.h device_flags),
 * at most once per millisecond: hosts read them there instead of asking over the channel.
 * tlsnic_ctl_server_process calls it, so a loop that calls that after every burst of
 * frames (tlsnicd does) keeps the flags at most ~1 ms old.
 */
void tlsnic_ctl_server_publish_flags(tlsnic_ctl_server *s);

/* Control counters as "name value\n" lines. Returns length, or -ENOBUFS. */
int tlsnic_ctl_server_stats_format(const tlsnic_ctl_server *s, char *buf, size_t cap);

#ifdef __cplusplus
}
#endif

#endif
