/*
 * One end of a control connection to tlsnicd: connect, send a request (with the fds it
 * carries) and wait for its reply. Part of the offload API (src/offload): the host's
 * device client (ctl_client.h) is built on it, and tools (`tlsnic stats`, `tlsnicd stats`)
 * ask their one-shot questions with it.
 *
 * The caller owns the struct (no allocation here) and serialises calls on it.
 * Errors: negative errno; -ENODEV when the daemon has gone away.
 */
#ifndef TLSNIC_CTL_CHAN_H
#define TLSNIC_CTL_CHAN_H

#include <stddef.h>
#include <stdint.h>
#include <sys/un.h>

#include "tlsnic/ctl_proto.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TLSNIC_CTL_DEFAULT_TIMEOUT_MS 5000

struct tlsnic_ctl_chan {
    struct sockaddr_un addr;
    int fd;                               /* -1 when not connected */
    int timeout_ms;                       /* per call */
    uint32_t next_id;
    char last_error[TLSNIC_CTL_MAX_TEXT + 1]; /* text of the last refusal ("" if none) */
    uint8_t buf[TLSNIC_CTL_MAX_MSG];
    struct tlsnic_ctl_msg reply;          /* the last reply; points into buf */
};

/* Connects to path (timeout_ms 0 = TLSNIC_CTL_DEFAULT_TIMEOUT_MS). -ENAMETOOLONG, or
 * connect's -errno (-ENOENT / -ECONNREFUSED: no daemon listens). */
int tlsnic_ctl_chan_open(struct tlsnic_ctl_chan *ch, const char *path, int timeout_ms);

/* Closes and connects again to the same path. 0 or connect's -errno. */
int tlsnic_ctl_chan_reconnect(struct tlsnic_ctl_chan *ch);

void tlsnic_ctl_chan_close(struct tlsnic_ctl_chan *ch);

/*
 * Sends req (its id is set here) with up to 2 fds as SCM_RIGHTS and waits at most
 * timeout_ms for the reply with its id (late replies to earlier calls are skipped).
 * Returns the reply's status (the daemon's 0 or -errno; ch->reply holds the reply), or a
 * local -errno: -ETIMEDOUT, -ENODEV (connection gone), -EBADMSG (not a reply).
 */
int tlsnic_ctl_chan_call(struct tlsnic_ctl_chan *ch, struct tlsnic_ctl_msg *req,
                         const int *pass_fds, int n_fds);

/* One-shot STATS request (for `tlsnicd stats`): text into buf, NUL-terminated. Length. */
int tlsnic_ctl_query_stats(const char *path, char *buf, size_t cap);

/*
 * One-shot FLOW_STATS (for `tlsnic stats`): the daemon's flow list, page by page, into
 * out[0..cap) (counters this build does not know are dropped; n_counters says how many
 * are filled). Returns how many entries were filled; *total (may be NULL) gets the
 * daemon's list length. -EOPNOTSUPP from a daemon that predates FLOW_STATS.
 */
int tlsnic_ctl_query_flow_stats(const char *path, struct tlsnic_ctl_flow_entry *out, size_t cap,
                                uint32_t *total, uint16_t *n_counters);

#ifdef __cplusplus
}
#endif

#endif
