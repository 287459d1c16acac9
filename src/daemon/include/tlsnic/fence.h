/*
 * Fences: what keeps plaintext off the wire while a device context is missing.
 *
 * When tlsnicd restarts (crash, SIGKILL, upgrade), the device has lost the keys of every
 * offloaded flow, but the host stacks keep sending plaintext records, trusting the device
 * to encrypt them. So the daemon persists the list of offloaded flows (never keys) in a
 * state file, and at start fences every TX flow in it: a fenced flow's frames that carry
 * TCP payload are dropped (TCP retransmits them) until the host re-adds the flow (the
 * fence is lifted), or releases or deletes it and its socket has nothing more to send, or
 * the host opens a new connection on the 4-tuple (its SYN: the old socket is gone). Pure
 * ACKs and every other flow pass.
 *
 * Per-packet cost: nothing while no fence is up; a hash lookup otherwise. No allocation
 * after tlsnic_fence_new. Not thread-safe (the daemon's one thread owns it).
 *
 * State file: text, one line per offloaded flow and direction,
 *   "tx|rx 4|6 LOCAL_ADDR LOCAL_PORT REMOTE_ADDR REMOTE_PORT"
 * written atomically (temporary file + rename), mode 0600.
 *
 * Errors: negative errno.
 */
#ifndef TLSNIC_FENCE_H
#define TLSNIC_FENCE_H

#include <stddef.h>
#include <stdint.h>

#include "tlsnic/devops.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tlsnic_fence tlsnic_fence;

/* max_flows 0 = 4096. *out owns the fence set. */
int tlsnic_fence_new(tlsnic_fence **out, uint32_t max_flows);
void tlsnic_fence_free(tlsnic_fence *f);

/* Fences a TX flow (0 if it already is). -ENOSPC when max_flows are fenced. */
int tlsnic_fence_add(tlsnic_fence *f, const struct tlsnic_flow *flow);

/*
 * Fences a TX flow until tlsnic_fence_expire is called with a time past until_ns (0: no
 * expiry, as tlsnic_fence_add), or it is lifted earlier. A flow already fenced keeps the
 * later of the two ends. -ENOSPC when max_flows are fenced.
 */
int tlsnic_fence_add_until(tlsnic_fence *f, const struct tlsnic_flow *flow, uint64_t until_ns);

/* Lifts every fence whose expiry is <= now_ns (same clock as until_ns; cheap when none
 * is due). Returns how many. f may be NULL. */
uint32_t tlsnic_fence_expire(tlsnic_fence *f, uint64_t now_ns);

/* How many of the fences have an expiry (f may be NULL: 0). */
uint32_t tlsnic_fence_count_expiring(const tlsnic_fence *f);

/* Lifts the fence of a flow: 0, or -ENOENT if it had none. */
int tlsnic_fence_lift(tlsnic_fence *f, const struct tlsnic_flow *flow);

/* 1 if the flow is fenced (f may be NULL: then 0). */
int tlsnic_fence_contains(const tlsnic_fence *f, const struct tlsnic_flow *flow);

uint32_t tlsnic_fence_count(const tlsnic_fence *f);

/* Calls cb for each fenced flow (order unspecified). */
void tlsnic_fence_foreach(const tlsnic_fence *f,
                          void (*cb)(void *ctx, const struct tlsnic_flow *flow), void *ctx);

/*
 * For a frame from the host towards the wire: 1 if it must be dropped (it carries TCP
 * payload of a fenced flow, or claims TCP but cannot be read while a fence is up: it
 * might be such a frame), else 0.
 */
int tlsnic_fence_blocks(const tlsnic_fence *f, const uint8_t *frame, size_t len);

/*
 * tlsnic_fence_blocks, and a host's SYN or SYN-ACK on a fenced 4-tuple lifts its fence (and
 * passes): the host's stack opens a connection on a 4-tuple only once no socket of the
 * old one can send payload, so a fence left behind by a flow whose host and socket are
 * gone (a daemon restarted after its host died) does not block the next connection that
 * happens to reuse the 4-tuple.
 */
int tlsnic_fence_filter(tlsnic_fence *f, const uint8_t *frame, size_t len);

/*
 * Links f (the TX fences, to_wire_gate's) with rx (the RX fences, to_host_gate's): a host's
 * SYN or SYN-ACK that tlsnic_fence_filter sees on a 4-tuple lifts its RX fence as well
 * (counted in rx's tlsnic_fence_lifted_by_syn). rx may be NULL.
 */
void tlsnic_fence_link_rx(tlsnic_fence *f, tlsnic_fence *rx);

/* Fences lifted by tlsnic_fence_filter so far (the state file is then out of date). */
uint64_t tlsnic_fence_lifted_by_syn(const tlsnic_fence *f);

/* tlsnic_fence_filter as the packet path's to_wire_gate (fwd.h); ctx is the (mutable)
 * fence. */
int tlsnic_fence_gate(const void *ctx, const uint8_t *frame, size_t len);

/*
 * RX fences: for a frame from the wire towards the host, 1 if it carries TCP payload of a
 * flow fenced in f (a set of RX flows: the destination is the host's end), or claims TCP
 * but cannot be read while a fence is up. Until the host adds the flow again, no copy of
 * bytes the last device decided about may reach the host undecided; the new device takes
 * over those decisions from the host's RX status at the add.
 */
int tlsnic_fence_blocks_to_host(const tlsnic_fence *f, const uint8_t *frame, size_t len);
int tlsnic_fence_gate_to_host(const void *ctx, const uint8_t *frame, size_t len);

/* One entry of the state file. */
struct tlsnic_flow_dir {
    struct tlsnic_flow flow;
    enum tlsnic_dir dir;
};

/* Replaces the state file with these n entries. */
int tlsnic_state_save(const char *path, const struct tlsnic_flow_dir *list, size_t n);

/*
 * Fences every TX flow of the state file. A missing file is an empty one. Returns the
 * number of flows fenced, or -EBADMSG (a malformed line: nothing is trusted then, but
 * the flows fenced before it stay fenced), -ENOSPC, or another -errno of reading.
 */
int tlsnic_state_load(const char *path, tlsnic_fence *f);

/* tlsnic_state_load for the RX flows of the state file. */
int tlsnic_state_load_rx(const char *path, tlsnic_fence *f);

#ifdef __cplusplus
}
#endif

#endif
