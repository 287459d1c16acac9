/*
 * tlsnic simulated wire: an in-process stand-in for "host TCP stack -> device -> network
 * -> peer", deterministic from a seed, for tests and for users without root.
 *
 *   simhost   frames records the way a kTLS device-mode socket does (header, explicit
 *             nonce, plaintext, 16 bytes of tag room) into one byte stream, and retains
 *             each record until the peer acknowledged it: the host record store.
 *   simwire   a TCP-like sender cuts that stream into IPv4 or IPv6 segments by MSS (or
 *             TSO frames with gso_size), hands every frame to the device hook, segments
 *             TSO frames after it, loses / duplicates / reorders segments on the link from
 *             the seed, and a receiver reassembles the stream and answers with ACKs (with
 *             SACK blocks) that travel back through the device hook. The sender retransmits
 *             go-back-N or selectively, on timeout, and spuriously when asked to.
 *
 * The device hook is the wire's ops table: anything that inspects and rewrites L3 frames
 * in flight (the in-process device, tlsnicd's TUN loop, a pass-through).
 *
 * RX mode (config rx = 1) turns the wire around, for receive offload: the stream is the
 * peer's (ciphertext records a test wrote with tlsnic_simhost_append), the link's faults
 * come first, then every surviving copy passes the device (hook rx_pkt, which may rewrite
 * it) on its way to the receiver, which is the host; the host's ACKs pass the device
 * towards the wire (hook tx). The flow stays named from the host (local = receiver). The
 * receiver keeps the first copy of a byte, or, for a share of segments (keep_last_pm),
 * a later copy of bytes it holds beyond the in-order point, as Linux's out-of-order queue
 * may.
 *
 * Everything is allocated at creation; a round is bounded by the link capacity and a run
 * by a round count. Errors: negative errno.
 */
#ifndef TLSNIC_WIRE_H
#define TLSNIC_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "tlsnic/devops.h"
#include "tlsnic/nic.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------------------------ */
/* The host side: record framing and the record store                                        */

typedef struct tlsnic_simhost tlsnic_simhost;

/*
 * A host that frames records for a device with this TLS version (TLS_1_2_VERSION /
 * TLS_1_3_VERSION) and cipher (TLS_CIPHER_*), the first record having sequence number
 * rec_seq and starting at TCP sequence start_seq, with room for cap stream bytes.
 */
int tlsnic_simhost_new(tlsnic_simhost **out, uint16_t version, uint16_t cipher,
                       uint64_t rec_seq, uint32_t start_seq, size_t cap);
void tlsnic_simhost_free(tlsnic_simhost *h);

/* Appends len raw bytes to the stream (RX mode: the peer's records as they go on the
 * wire). Nothing is retained for a device. -ENOBUFS past cap. */
int tlsnic_simhost_append(tlsnic_simhost *h, const uint8_t *bytes, size_t len);

/* Frames one record of content_type (len <= 2^14). -ENOBUFS past cap, -EMSGSIZE. */
int tlsnic_simhost_write(tlsnic_simhost *h, uint8_t content_type, const uint8_t *content,
                         size_t len);

/* The framed stream written so far (mutable: a test may change bytes in flight, as a
 * zero-copy sendfile's file pages can change). */
uint8_t *tlsnic_simhost_stream(tlsnic_simhost *h, size_t *len);

/* The record store the device reads (valid as long as the host). */
struct tlsnic_rec_store tlsnic_simhost_store(tlsnic_simhost *h);

/* Releases every record that ends at or before stream offset off (peer acknowledged). */
void tlsnic_simhost_release(tlsnic_simhost *h, size_t off);

/* Makes the store answer -ENOENT from now on (on = 1): "host store unavailable". */
void tlsnic_simhost_store_disable(tlsnic_simhost *h, int on);

/* Records retained / reads served, for tests. */
size_t tlsnic_simhost_retained(const tlsnic_simhost *h);
uint64_t tlsnic_simhost_reads(const tlsnic_simhost *h);

/* ------------------------------------------------------------------------------------------ */
/* The device hook (the wire's ops table)                                                     */

struct tlsnic_wire_hook {
    /* A frame towards the wire: returns enum tlsnic_verdict (or negative errno = drop). */
    int (*tx)(void *priv, struct tlsnic_pkt *pkt);
    /* A frame towards the host (ACKs): may only look. */
    int (*rx)(void *priv, const uint8_t *frame, size_t len);
    void *priv;
    /* RX mode: a data frame towards the host; may rewrite it (enum tlsnic_verdict, or
     * negative errno = drop). */
    int (*rx_pkt)(void *priv, struct tlsnic_pkt *pkt);
};

/* A hook that runs frames through an in-process device. */
struct tlsnic_wire_hook tlsnic_wire_hook_nic(tlsnic_nic *nic);

/* ------------------------------------------------------------------------------------------ */
/* The simulated wire                                                                        */

enum tlsnic_rexmit {
    TLSNIC_REXMIT_GO_BACK_N = 0, /* resend every unacknowledged segment */
    TLSNIC_REXMIT_SELECTIVE = 1, /* resend only what SACK did not cover */
};

struct tlsnic_simwire_config {
    uint8_t family;           /* AF_INET (default when 0) or AF_INET6 */
    uint16_t mss;             /* 1..1440; 0 = 1400 */
    uint32_t tso_max;         /* 0: no TSO; else largest frame payload (<= 65000) */
    uint32_t window;          /* bytes in flight; 0 = 65536 */
    uint64_t seed;
    uint16_t loss_pm;         /* per mille of data segments lost on the link */
    uint16_t dup_pm;          /* ... duplicated */
    uint16_t reorder_pm;      /* ... moved later in the round */
    uint16_t ack_loss_pm;     /* per mille of ACKs lost */
    uint16_t spurious_pm;     /* per mille of rounds that resend a random in-flight segment */
    uint16_t split_rexmit_pm; /* per mille of TSO retransmissions resent as MSS segments */
    uint8_t rexmit;           /* enum tlsnic_rexmit */
    uint32_t start_seq;       /* sender's first data sequence number */
    size_t max_stream;        /* receiver capacity in bytes (whole stream) */
    uint8_t rx;               /* 1: RX mode (see above) */
    uint16_t keep_last_pm;    /* RX mode: per mille of segments whose bytes replace what
                                 the receiver holds out of order */
};

struct tlsnic_simwire_stats {
    uint64_t frames_tx;       /* frames handed to the device */
    uint64_t dev_dropped;     /* frames the device dropped */
    uint64_t dev_modified;    /* frames the device rewrote */
    uint64_t segs_wire;       /* segments put on the link (after TSO split) */
    uint64_t segs_lost, segs_dup, segs_reordered;
    uint64_t segs_rcvd;
    uint64_t csum_errors;     /* received segments with a bad TCP checksum */
    uint64_t dup_mismatch;    /* bytes received twice with different values */
    uint64_t rexmits;         /* retransmitted frames */
    uint64_t acks, acks_lost;
    uint64_t rounds;
    uint64_t tampered;        /* segments the tamper callback changed */
    uint64_t replaced;        /* segments whose later copy replaced bytes held */
    uint64_t ooo_mismatch;    /* of dup_mismatch: bytes past the in-order point, where the
                                 receiver could keep either copy */
};

typedef struct tlsnic_simwire tlsnic_simwire;

/*
 * A wire from host h through hook to a receiver. The flow is the host's side of the
 * connection (local = sender). h and the hook's target must outlive the wire.
 */
int tlsnic_simwire_new(tlsnic_simwire **out, const struct tlsnic_simwire_config *cfg,
                       tlsnic_simhost *h, struct tlsnic_wire_hook hook);
void tlsnic_simwire_free(tlsnic_simwire *w);

/* The 4-tuple the wire uses, for the device's add. */
void tlsnic_simwire_flow(const tlsnic_simwire *w, struct tlsnic_flow *flow);

/*
 * Called for every data segment on the link before anything else sees it (RX mode:
 * before the device), e.g. to flip bits as a faulty or hostile path does; returns 1 if it
 * changed the frame, and the wire then writes a valid TCP checksum (so only TLS can tell);
 * -1 to lose the segment; 0 to leave it.
 */
void tlsnic_simwire_set_tamper(tlsnic_simwire *w,
                               int (*fn)(void *priv, uint8_t *frame, size_t len), void *priv);

/* Replaces the device hook (a device that restarted: a new one in its place). */
void tlsnic_simwire_set_hook(tlsnic_simwire *w, struct tlsnic_wire_hook hook);

/* Called for every segment the link carries (after the device), e.g. to scan it. */
void tlsnic_simwire_set_observer(tlsnic_simwire *w,
                                 void (*fn)(void *priv, const uint8_t *frame, size_t len),
                                 void *priv);

/*
 * One round: send what the window allows, carry it over the link, receive, ACK,
 * retransmit if nothing progressed. Returns 1 when every byte the host wrote has been
 * acknowledged, else 0.
 */
int tlsnic_simwire_step(tlsnic_simwire *w);

/* Steps until done or max_rounds: 0, or -ETIMEDOUT. */
int tlsnic_simwire_run(tlsnic_simwire *w, uint32_t max_rounds);

/* The bytes the receiver reassembled in order so far. */
const uint8_t *tlsnic_simwire_received(const tlsnic_simwire *w, size_t *len);

/* Sender's acknowledged offset (bytes of the stream). */
size_t tlsnic_simwire_acked(const tlsnic_simwire *w);

void tlsnic_simwire_stats(const tlsnic_simwire *w, struct tlsnic_simwire_stats *out);

/*
 * Sends once more the frame(s) covering stream bytes [off, off + len) now, as a TCP
 * retransmission would (boundaries exactly as given, through the device and the link).
 */
int tlsnic_simwire_retransmit(tlsnic_simwire *w, size_t off, size_t len);

#ifdef __cplusplus
}
#endif

#endif
