/*
 * tlsnic control channel: how the host side reaches tlsnicd. Part of the offload API
 * (src/offload): the host's client (ctl_client.h) and the daemon's server (ctl_server.h)
 * both compile this encoding and nothing of each other.
 *
 * Transport: a Unix SOCK_SEQPACKET socket (mode 0600, path chosen by the daemon's
 * --ctl), one request per datagram, answered by exactly one REPLY with the same id.
 * Every message is length-prefixed and little-endian:
 *
 *   header   u32 len (whole message, header included) | u16 version (1) | u16 type | u32 id
 *   ADD        u8 dir | 3 x u8 0 | u32 start_tcp_seq | u16 info_len | u16 0 | info_len bytes
 *              of crypto_info (struct tls12_crypto_info_*, <linux/tls.h>)
 *                                                     + socket [+ record store memfd]
 *   REKEY      as ADD (RX, TLS 1.3: new keys from the record at tcp_seq on)  + socket
 *   DEL        u8 dir | 3 x u8 0                                             + socket
 *   RELEASE    u8 dir | u8 flags | 2 x u8 0                                  + socket
 *   RESYNC     u8 dir | 3 x u8 0 | u32 tcp_seq | u64 rec_seq                 + socket
 *   FLOW_FLAGS u8 dir | 3 x u8 0 | u8 family | 3 x u8 0 | local[16] | remote[16]
 *              | u16 local_port | u16 remote_port
 *   STATS      (empty)
 *   FLOW_STATS u32 first | u32 0
 *   REPLY      i32 status (0 or -errno) | u16 text_len | u16 0 | text (why, for a person)
 *              | payload: FLOW_FLAGS -> u32 flags; STATS -> "name value\n" lines;
 *                FLOW_STATS -> a flow page (below)
 *
 * Flow page: the device counters of each flow, one page of the daemon's list from entry
 * `first` on (as many entries as fit in one message; ask again from first + count):
 *   u32 total | u32 first | u16 count | u16 n_counters | u32 0
 *   count x ( u8 family | u8 dir | u8 flags | u8 0 | u32 owner_pid | local[16] | remote[16]
 *             | u16 local_port | u16 remote_port | u32 0 | n_counters x u64 )
 * The list holds the offloaded flows, then the last TLSNIC_CTL_ENDED_FLOWS flows that were
 * deleted, oldest first, with the counters they had when they were deleted (flag ENDED):
 * a person asks about a transfer after it ended. Counters are in TLSNIC_CTL_FLOW_COUNTERS
 * order; a daemon may send more than a client knows (the client keeps those it names).
 * FLOW_STATS lists every flow to any client: like STATS it reads, and 4-tuples and
 * counters are what a capture of the wire shows anyway.
 *
 * "+ socket": the request carries the TCP socket itself as SCM_RIGHTS ancillary data.
 * The daemon names the flow by getsockname/getpeername on that fd and nothing else: no
 * message has a field for the 4-tuple of an ADD, DEL or RESYNC, so only a process that
 * holds the socket can offload it, resync it or stop offloading it. The daemon remembers
 * the socket's SO_COOKIE at ADD and refuses DEL/RESYNC from a different socket that
 * happens to have the same 4-tuple later. FLOW_FLAGS is a read and names the flow by
 * 4-tuple, but answers only for flows added over the same connection.
 *
 * Lifetime: a device context lives as long as its socket can send. The daemon keeps the
 * socket of an ADD (its own reference, as the kernel keeps its tls_device context until
 * the socket is destroyed), so the host's close(2) no longer ends the connection: the host
 * sends RELEASE when the application closes it, and the daemon ends the connection as
 * close(2) would (FIN after what is queued, all of it encrypted; a reset, with flag
 * TLSNIC_CTL_RELEASE_ABORT, SO_LINGER {1, 0} on the socket or unread received bytes),
 * keeps the context until the socket has nothing unacknowledged, then deletes it and
 * closes its reference. When the control connection that added a flow closes (the host
 * process died, exited or was killed: SIGKILL, exit without close), the daemon does the
 * same for each of its flows instead of deleting them. A DEL deletes at once when the
 * socket has nothing unacknowledged (reply 0), else the context stays until it has
 * (-EINPROGRESS; the connection is left as it is). A connection that does not finish
 * within the daemon's finish timeout is reset: nothing more of it leaves, encrypted or not.
 * An RX context has nothing to send: DEL and RELEASE of RX delete it at once (RELEASE
 * answers 0: the host must not call DEL after it), and so does its host going away.
 *
 * The optional second fd of an ADD is the host's record store (shm_layout.h): the daemon
 * maps it read-only, gives it to the device as the flow's tlsnic_rec_store, and unmaps it
 * when the flow is deleted, writing TLSNIC_FLOW_F_UNMAPPED into the store's flags word
 * just before (the host may reuse a store only then). An RX ADD must carry one: an RX
 * store, whose RX status the daemon maps writable for the device (the device's RX resync
 * requests reach the host there; its answers come back as RESYNC).
 *
 * Errors (REPLY status, and what the client devops return): the device's errno (devops.h:
 * -EEXIST, -ENOENT, -ENOSPC, -EOPNOTSUPP, -EINVAL), -EINPROGRESS (DEL: deleted once the
 * socket's bytes are acknowledged), -EIO (ADD: the state file could not record the flow,
 * so the daemon refuses to offload it), and -EBADF (no socket passed),
 * -ENOTSOCK / -EPROTONOSUPPORT (not a TCP socket), -ENOTCONN (not connected), -EPERM
 * (a different socket than the one added), -EBADMSG (malformed request), -EPROTO (wrong
 * version). The text says which check failed.
 */
#ifndef TLSNIC_CTL_PROTO_H
#define TLSNIC_CTL_PROTO_H

#include <poll.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "tlsnic/devops.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TLSNIC_CTL_VERSION 1
#define TLSNIC_CTL_HDR_LEN 12
#define TLSNIC_CTL_MAX_MSG 16384u  /* no message is longer; longer ones are refused */
#define TLSNIC_CTL_MAX_INFO 64u    /* largest crypto_info accepted (the structs are <= 56) */
#define TLSNIC_CTL_MAX_TEXT 256u   /* reply text */
/* Payload room of a REPLY: the message minus header, status/text_len and the longest text. */
#define TLSNIC_CTL_MAX_PAYLOAD (TLSNIC_CTL_MAX_MSG - TLSNIC_CTL_HDR_LEN - 8u - TLSNIC_CTL_MAX_TEXT)

enum tlsnic_ctl_type {
    TLSNIC_CTL_ADD = 1,
    TLSNIC_CTL_DEL = 2,
    TLSNIC_CTL_RESYNC = 3,
    TLSNIC_CTL_FLOW_FLAGS = 4,
    TLSNIC_CTL_STATS = 5,
    TLSNIC_CTL_FLOW_STATS = 6,
    TLSNIC_CTL_RELEASE = 7,
    TLSNIC_CTL_REKEY = 8, /* 8, not 7: RELEASE had 7 first (the RX branch used 7 before it
                             was merged; no released build speaks that) */
    TLSNIC_CTL_REPLY = 0x80,
};

/* RELEASE flags. */
#define TLSNIC_CTL_RELEASE_ABORT 0x1u /* reset the connection (unread data, SO_LINGER 0) */
#define TLSNIC_CTL_RELEASE_FLAGS TLSNIC_CTL_RELEASE_ABORT

/* A decoded message. Pointers point into the buffer it was decoded from. */
struct tlsnic_ctl_msg {
    uint16_t type;
    uint32_t id;
    uint8_t dir;                     /* ADD, DEL, RESYNC, FLOW_FLAGS, RELEASE, REKEY */
    uint8_t release_flags;           /* RELEASE: TLSNIC_CTL_RELEASE_* */
    uint32_t tcp_seq;                /* ADD: start sequence; RESYNC; REKEY */
    uint64_t rec_seq;                /* RESYNC */
    const uint8_t *info;             /* ADD, REKEY */
    uint16_t info_len;
    struct tlsnic_flow flow;         /* FLOW_FLAGS */
    uint32_t first;                  /* FLOW_STATS: index of the first flow wanted */
    int32_t status;                  /* REPLY */
    const char *text;                /* REPLY, not NUL-terminated */
    uint16_t text_len;
    const uint8_t *payload;          /* REPLY */
    uint32_t payload_len;
};

/*
 * Encodes m into buf. Returns the message length, -ENOBUFS if cap is too small, or
 * -EINVAL/-EMSGSIZE for a message that could not be decoded (bad type, dir, lengths).
 */
int tlsnic_ctl_encode(const struct tlsnic_ctl_msg *m, uint8_t *buf, size_t cap);

/*
 * Decodes one whole message of len bytes through a bounded cursor. Returns 0, or
 * -EBADMSG (truncated, length field != len, trailing bytes, non-zero reserved bytes,
 * bad family), -EPROTO (version), -EOPNOTSUPP (unknown type), -EINVAL (dir not 0/1,
 * unknown RELEASE flags),
 * -EMSGSIZE (info_len > TLSNIC_CTL_MAX_INFO, len > TLSNIC_CTL_MAX_MSG, text too long).
 */
int tlsnic_ctl_decode(const uint8_t *buf, size_t len, struct tlsnic_ctl_msg *m);

/* ------------------------------------------------------------------------------------------ */
/* Per-flow device counters (FLOW_STATS).                                                     */

/* The counters a flow page carries, in wire order (named as the device's, nic.h). */
#define TLSNIC_CTL_FLOW_COUNTER_LIST(X)                                                       \
    X(tx_tls_encrypted_packets)                                                               \
    X(tx_tls_encrypted_bytes)                                                                 \
    X(tx_tls_ooo)                                                                             \
    X(tx_tls_ooo_ckpt)                                                                        \
    X(tx_tls_ooo_crypto_bytes)                                                                \
    X(tx_tls_resync_bytes)                                                                    \
    X(tx_tls_dump_packets)                                                                    \
    X(tx_tls_dump_bytes)                                                                      \
    X(tx_tls_skip_no_sync_data)                                                               \
    X(tx_tls_drop_no_sync_data)                                                               \
    X(tx_tls_drop_integrity)                                                                  \
    X(tx_tls_drop_bad_frame)                                                                  \
    X(tx_tls_ack_trims)                                                                       \
    X(rx_tls_decrypted_packets)                                                               \
    X(rx_tls_decrypted_bytes)                                                                 \
    X(rx_tls_err)                                                                             \
    X(rx_tls_resync_req_start)                                                                \
    X(rx_tls_resync_req_end)                                                                  \
    X(rx_tls_resync_res_ok)                                                                   \
    X(rx_tls_resync_res_skip)                                                                 \
    X(rx_tls_rec_ok)                                                                          \
    X(rx_tls_rec_bytes)                                                                       \
    X(rx_tls_ooo)                                                                             \
    X(rx_tls_resync_placed)                                                                   \
    X(rx_tls_recheck) /* 25 counters: a page still holds 64 flows */

enum tlsnic_ctl_flow_counter {
#define TLSNIC_CTL_FC_ENUM_(name) TLSNIC_CTL_FC_##name,
    TLSNIC_CTL_FLOW_COUNTER_LIST(TLSNIC_CTL_FC_ENUM_)
#undef TLSNIC_CTL_FC_ENUM_
    TLSNIC_CTL_FLOW_COUNTERS /* how many this build knows */
};

/* "tx_tls_encrypted_bytes", ...; NULL past the known ones. */
const char *tlsnic_ctl_flow_counter_name(unsigned i);

#define TLSNIC_CTL_FLOW_MAX_COUNTERS 32u /* a page with more per flow is refused */
#define TLSNIC_CTL_ENDED_FLOWS 16u       /* ended flows the daemon remembers */
#define TLSNIC_CTL_FLOW_PAGE_HDR_LEN 16u
#define TLSNIC_CTL_FLOW_ENTRY_LEN(n_counters) (48u + 8u * (n_counters))
/* Most entries one page can hold (entries without counters): size arrays for decode. */
#define TLSNIC_CTL_FLOW_PAGE_MAX                                                              \
    ((TLSNIC_CTL_MAX_PAYLOAD - TLSNIC_CTL_FLOW_PAGE_HDR_LEN) / TLSNIC_CTL_FLOW_ENTRY_LEN(0))

#define TLSNIC_CTL_FLOW_ENDED 0x1u       /* deleted; the counters are those it had then */
#define TLSNIC_CTL_FLOW_NO_COUNTERS 0x2u /* the device had no counters for it (all 0) */
#define TLSNIC_CTL_FLOW_FINISHING 0x4u   /* released, its host gone or deleted with bytes
                                            unacknowledged: kept until the socket is done */

struct tlsnic_ctl_flow_entry {
    struct tlsnic_flow flow;  /* local = the host's end */
    uint8_t dir;              /* enum tlsnic_dir */
    uint8_t flags;            /* TLSNIC_CTL_FLOW_* */
    uint32_t owner_pid;       /* the process whose control connection added it */
    uint64_t counters[TLSNIC_CTL_FLOW_MAX_COUNTERS]; /* page's n_counters of them */
};

struct tlsnic_ctl_flow_page {
    uint32_t total;      /* entries in the daemon's list */
    uint32_t first;      /* index of the first entry of this page */
    uint16_t count;      /* entries in this page */
    uint16_t n_counters; /* counters per entry, <= TLSNIC_CTL_FLOW_MAX_COUNTERS */
};

/*
 * Encodes a page header and its page->count entries. Length, -ENOBUFS if cap is too
 * small, -EINVAL for a page that decode would refuse (first + count > total, too many
 * counters, bad family or dir, unknown flags).
 */
int tlsnic_ctl_flow_page_encode(const struct tlsnic_ctl_flow_page *page,
                                const struct tlsnic_ctl_flow_entry *entries, uint8_t *buf,
                                size_t cap);

/*
 * Decodes a FLOW_STATS reply payload through a bounded cursor into *page and
 * entries[0 .. page->count). 0, or -EBADMSG (truncated, trailing bytes, non-zero reserved
 * bytes, bad family, dir or flags, first + count > total), -EMSGSIZE (more counters than
 * TLSNIC_CTL_FLOW_MAX_COUNTERS), -ENOBUFS (more entries than cap).
 */
int tlsnic_ctl_flow_page_decode(const uint8_t *buf, size_t len, struct tlsnic_ctl_flow_page *page,
                                struct tlsnic_ctl_flow_entry *entries, size_t cap);

#ifdef __cplusplus
}
#endif

#endif
