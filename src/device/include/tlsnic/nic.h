/*
 * tlsnic device model: a network device that encrypts TLS records inline as TCP segments
 * pass through it (TX), after "TLS Offload to Network Devices" (Netdev 1.2, 2016).
 *
 * The device sits between the host's TCP/IP stack and the wire. It is handed L3 frames
 * (IPv4 or IPv6 + TCP, no Ethernet header, as a TUN device gives them; TSO super-frames up
 * to 64 KB with their segmentation size) and rewrites the payload of offloaded flows in
 * place: TLS header bytes pass, record bodies become ciphertext, the 16 bytes of tag room
 * the host reserved become the tag. It also sees the frames coming back from the peer and
 * trims its per-flow state on their ACKs.
 *
 * Resync. A segment whose sequence number is not the one the device expects is served, in
 * this order, from
 *   a. the device's own per-flow checkpoints: one small descriptor per record of the
 *      unacknowledged window (start, record sequence number, header + explicit nonce, tag).
 *      AES-GCM and ChaCha20-Poly1305 are counter modes, so the body bytes of a
 *      retransmitted segment are re-encrypted with the positional keystream at their own
 *      cost, and tag bytes come from the stored tag: cost ~ the segment's length.
 *   b. the host record store (tlsnic_rec_store, the paper's way): the record containing
 *      the segment is re-sealed from its start up to the segment (counted in
 *      tx_tls_resync_bytes and tx_tls_dump_bytes).
 * If neither can serve, the packet is dropped (tx_tls_drop_no_sync_data) and the flow is
 * flagged TLSNIC_FLOW_F_NO_SYNC. The device never emits an offloaded record's bytes
 * unencrypted: any doubt is a drop.
 *
 * Integrity (zero-copy sendfile safety, per-flow option). With it on, the device keeps a
 * keyed digest (Poly1305 under a random per-flow key that never leaves the device) of the
 * plaintext of every segment it encrypted, for the unacknowledged window. A retransmitted
 * range is checked against it before it is encrypted again; a mismatch drops the packet,
 * counts tx_tls_drop_integrity and flags TLSNIC_FLOW_F_INTEGRITY so the host aborts the
 * connection. A range the device cannot check (its boundaries straddle an original
 * segment, its digest was evicted, or it was already acknowledged) is dropped too, as
 * tx_tls_drop_no_sync_data with TLSNIC_FLOW_F_NO_SYNC: not proof of a change, so the host
 * need not abort, but it is never encrypted unchecked. Digests are kept per original
 * segment (per gso_size piece of a TSO frame), which is how Linux retransmits. No
 * (key, nonce) pair ever encrypts two plaintexts. Cost: one Poly1305 pass over every byte
 * (bench_nic's "+integrity" column), hence off by default (tlsnic_nic_config.integrity,
 * tlsnic_nic_flow_set_integrity); the host turns it on for zero-copy sends.
 *
 * RX (receive offload; the kernel's NETIF_F_HW_TLS_RX). A flow offloaded in
 * TLSNIC_DIR_RX is decrypted in place on its way to the host (tlsnic_nic_rx_pkt): a
 * segment at the expected sequence number continues the record in progress; a record the
 * device entered at its first byte, in order, with a known record sequence number, has
 * its body decrypted and its tag checked when its last byte arrives in order. Headers and
 * tags pass as they are. What the device did is written, per record, into the flow's RX
 * status (rx_status.h), which the host reads; a byte's treatment is decided once, when
 * the device first forwards it (also before the flow was added: the device remembers, per
 * stream towards the host it holds no RX context for, how far it forwarded it, the host
 * says how much its TCP already held (received_len in rx_status.h), and the add takes
 * the larger as already decided, untouched), and every later copy gets the same (the
 * same keystream at the same positions, or nothing), while any later copy of a checked
 * record turns its verdict into "host, check it yourself". After a gap (loss, reordering) the device stops
 * decrypting the record it was in, keeps following record boundaries while it knows them,
 * and otherwise looks for the next record header. A header it can place (same record
 * length as before, or the TLS 1.2 explicit nonce, proven by that record's own tag) makes
 * it decrypt again from the next record; one it cannot place is posted to the host as a
 * resync request (its TCP sequence number), which the host answers with the record
 * sequence number or rejects (tlsnic_nic_resync): the kernel's device-request mode. The
 * host may also say where the next record starts unasked (the next-record hint). TLS 1.3:
 * after a record carrying a KeyUpdate the device decrypts nothing more until the host
 * hands it the new keys for the record boundary right after it (tlsnic_nic_rekey).
 *
 * Threading: a tlsnic_nic is not thread-safe; one thread drives it (the daemon runs one
 * device per thread). No allocation happens on the per-packet path: the flow table is
 * allocated by tlsnic_nic_new and each flow context by add.
 *
 * Errors: negative errno, as in devops.h.
 */
#ifndef TLSNIC_NIC_H
#define TLSNIC_NIC_H

#include <stddef.h>
#include <stdint.h>

#include "tlsnic/devops.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tlsnic_nic tlsnic_nic;

struct tlsnic_nic_config {
    uint32_t max_flows;       /* flow contexts; 0 = 65536. add past it gives -ENOSPC */
    uint32_t rec_checkpoints; /* record descriptors per flow (window); 0 = 512 */
    uint32_t int_ranges;      /* integrity digests per flow (segments in window); 0 = 2048 */
    uint8_t checkpoints_off;  /* 1: never resync from checkpoints (host store only) */
    uint8_t integrity;        /* 1: new flows check retransmitted plaintext (see above) */
    uint8_t rx_no_guess;      /* 1: RX resyncs only through the host (no placed headers) */
    uint32_t rx_entries;      /* RX status entries per flow the device keeps; 0 = as many
                                 as the host's status has */
};

/* Fills *cfg with the defaults (all fields as if 0). */
void tlsnic_nic_config_default(struct tlsnic_nic_config *cfg);

/* Creates a device; cfg NULL = defaults. *out owns it; free with tlsnic_nic_free. */
int tlsnic_nic_new(tlsnic_nic **out, const struct tlsnic_nic_config *cfg);

/* Deletes every flow (wiping keys) and frees. NULL is accepted. */
void tlsnic_nic_free(tlsnic_nic *nic);

/*
 * The device as a struct tlsnic_dev for the host side (devops.h, caps TLSNIC_DEV_CAP_RX).
 * The handle lives as long as the nic. An RX add needs store->rx_status (-EINVAL without).
 */
struct tlsnic_dev *tlsnic_nic_dev(tlsnic_nic *nic);

/*
 * The NULL device (null_dev.c): add, del and resync succeed and it touches no byte, so
 * records leave as the host framed them. The floor under any offload, for measuring the
 * host's own device-mode work; never for real traffic. Static: nothing to free.
 */
struct tlsnic_dev *tlsnic_null_dev(void);

/* Same operations as the ops table, callable directly. */
int tlsnic_nic_add(tlsnic_nic *nic, const struct tlsnic_flow *flow, enum tlsnic_dir dir,
                   const void *crypto_info, size_t info_len, uint32_t start_tcp_seq,
                   const struct tlsnic_rec_store *store);
int tlsnic_nic_del(tlsnic_nic *nic, const struct tlsnic_flow *flow, enum tlsnic_dir dir);
int tlsnic_nic_resync(tlsnic_nic *nic, const struct tlsnic_flow *flow, enum tlsnic_dir dir,
                      uint32_t tcp_seq, uint64_t rec_seq);
int tlsnic_nic_flow_flags(tlsnic_nic *nic, const struct tlsnic_flow *flow,
                          enum tlsnic_dir dir, uint32_t *flags);

/* RX, TLS 1.3: new keys from the record starting at tcp_seq on (devops.h rekey). */
int tlsnic_nic_rekey(tlsnic_nic *nic, const struct tlsnic_flow *flow, enum tlsnic_dir dir,
                     const void *crypto_info, size_t info_len, uint32_t tcp_seq);

/*
 * RX: the device gives up the flow's context (as a NIC under pressure evicts one): it
 * decrypts nothing more for it and posts no more requests, but keeps applying the
 * decisions it already made to later copies of those bytes until the host has read them
 * (decided once), and raises TLSNIC_FLOW_F_GONE. The host goes on in software. 0 or
 * -ENOENT.
 */
int tlsnic_nic_evict(tlsnic_nic *nic, const struct tlsnic_flow *flow, enum tlsnic_dir dir);

/* Per-flow integrity switch (the host turns it on for zero-copy sends). 0 or -ENOENT. */
int tlsnic_nic_flow_set_integrity(tlsnic_nic *nic, const struct tlsnic_flow *flow,
                                  enum tlsnic_dir dir, int on);

/* ------------------------------------------------------------------------------------------ */
/* Packet path.                                                                               */

/* How the TCP checksum of a frame is treated (stated per frame). */
enum tlsnic_csum {
    TLSNIC_CSUM_FULL = 0,    /* the device rewrites the full TCP checksum when it changes
                                the payload */
    TLSNIC_CSUM_OFFLOAD = 1, /* left alone: the checksum field holds the pseudo-header sum
                                and whoever segments the frame completes it (TSO) */
};

struct tlsnic_pkt {
    uint8_t *data;      /* L3 frame, modified in place; len bytes, owned by the caller */
    size_t len;
    uint16_t gso_size;  /* TSO segment payload size; 0 = one segment */
    uint8_t csum;       /* enum tlsnic_csum */
};

enum tlsnic_verdict {
    TLSNIC_PASS = 0,     /* untouched: not an offloaded flow, or no offloaded bytes */
    TLSNIC_MODIFIED = 1, /* payload encrypted in place (and checksum fixed if FULL) */
    TLSNIC_DROP = 2,     /* must not be sent (counted); TCP will retransmit */
};

/*
 * A frame from the host towards the wire. Returns an enum tlsnic_verdict. Frames that
 * cannot be parsed as IP are passed; IP frames claiming TCP that cannot be parsed, and
 * fragmented TCP, are dropped (the device cannot prove they carry no offloaded bytes).
 */
int tlsnic_nic_tx(tlsnic_nic *nic, struct tlsnic_pkt *pkt);

/*
 * A frame from the wire towards the host: the device reads its ACK number (and nothing
 * else) to trim the TX state of the reverse flow. Never modifies it; returns
 * TLSNIC_PASS.
 */
int tlsnic_nic_rx(tlsnic_nic *nic, const uint8_t *frame, size_t len);

/*
 * A frame from the wire towards the host, with RX offload: what tlsnic_nic_rx does, and
 * the payload of an RX-offloaded flow decrypted in place (see RX above). Returns
 * TLSNIC_PASS, TLSNIC_MODIFIED (checksum rewritten if FULL) or TLSNIC_DROP (a later copy
 * of bytes decrypted under a key the device no longer has: it cannot be given the same
 * treatment, so it does not reach the host; or, while RX contexts exist, a TCP frame that
 * cannot be parsed). A FULL-checksum frame whose checksum is wrong passes untouched and
 * changes nothing (the host drops it).
 */
int tlsnic_nic_rx_pkt(tlsnic_nic *nic, struct tlsnic_pkt *pkt);

/* ------------------------------------------------------------------------------------------ */
/* Counters, named after mlx5's ethtool counters.                                             */

struct tlsnic_nic_stats {
    uint64_t tx_tls_encrypted_packets; /* wire segments carrying offloaded bytes */
    uint64_t tx_tls_encrypted_bytes;   /* offloaded stream bytes sent (all paths) */
    uint64_t tx_tls_ctx;               /* contexts added */
    uint64_t tx_tls_del;               /* contexts deleted */
    uint64_t tx_tls_ooo;               /* packets not at the expected sequence number */
    uint64_t tx_tls_ooo_ckpt;          /* ... of which served from checkpoints */
    uint64_t tx_tls_ooo_crypto_bytes;  /* crypto work for ooo packets (own + prefix bytes) */
    uint64_t tx_tls_resync_bytes;      /* record-prefix bytes re-sealed to resync */
    uint64_t tx_tls_dump_packets;      /* records read from the host store */
    uint64_t tx_tls_dump_bytes;        /* bytes read from the host store */
    uint64_t tx_tls_skip_no_sync_data; /* packets passed: bytes before the start sequence */
    uint64_t tx_tls_drop_no_sync_data; /* drops: nothing could resync */
    uint64_t tx_tls_drop_integrity;    /* drops: retransmitted plaintext changed/unchecked */
    uint64_t tx_tls_drop_bad_frame;    /* drops: unparseable TCP, fragments, bad records */
    uint64_t tx_tls_ack_trims;         /* ACKs that released device state */
    /* RX (mlx5's names first) */
    uint64_t rx_tls_decrypted_packets; /* segments in which the device decrypted bytes */
    uint64_t rx_tls_decrypted_bytes;   /* TCP payload bytes of those segments */
    uint64_t rx_tls_ctx;               /* RX contexts added */
    uint64_t rx_tls_del;               /* RX contexts deleted */
    uint64_t rx_tls_err;               /* records decrypted in order whose tag failed */
    uint64_t rx_tls_resync_req_pkt;    /* segments that made the device post a request */
    uint64_t rx_tls_resync_req_start;  /* resync requests posted to the host */
    uint64_t rx_tls_resync_req_end;    /* ... answered by the host */
    uint64_t rx_tls_resync_res_ok;     /* answers and hints that resynced the device */
    uint64_t rx_tls_resync_res_skip;   /* ... that did not (rejected, stale, no match) */
    uint64_t rx_tls_rec_ok;            /* records decrypted and verified */
    uint64_t rx_tls_rec_bytes;         /* their bytes (header and tag included) */
    uint64_t rx_tls_ooo;               /* segments not at the expected sequence number */
    uint64_t rx_tls_resync_placed;     /* headers placed by the device itself after a gap */
    uint64_t rx_tls_resync_place_bad;  /* ... that the record's tag proved wrong */
    uint64_t rx_tls_recheck;           /* verdicts turned to RECHECK by a later copy */
    uint64_t rx_tls_no_room;           /* records not decrypted: RX status full */
    uint64_t rx_tls_drop_no_key;       /* later copies dropped: their key is gone */
    uint64_t rx_tls_rekey;             /* TLS 1.3 RX key switches */
    uint64_t rx_tls_hold;              /* KeyUpdates that stopped decryption until rekey */
    uint64_t rx_tls_drop_bad_frame;    /* TCP frames that could not be parsed (RX on) */
};

/* Device-wide counters (sum over all flows, including deleted ones). */
void tlsnic_nic_stats(const tlsnic_nic *nic, struct tlsnic_nic_stats *out);

/* One flow's counters (tx_tls_ctx / tx_tls_del are 0 there). 0 or -ENOENT. */
int tlsnic_nic_flow_stats(const tlsnic_nic *nic, const struct tlsnic_flow *flow,
                          enum tlsnic_dir dir, struct tlsnic_nic_stats *out);

/* Number of offloaded flow contexts in the table. */
uint32_t tlsnic_nic_flow_count(const tlsnic_nic *nic);

#ifdef __cplusplus
}
#endif

#endif
