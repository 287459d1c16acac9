/*
 * Internal to the socket layer of src/host: the per-socket state and the helpers shared by
 * sock.c, tx.c, rx.c and dev.c. Not installed; nothing outside src/host includes it.
 */
#ifndef TLSNIC_KTLS_INT_H
#define TLSNIC_KTLS_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "tlsnic/check.h"
#include "tlsnic/devops.h"
#include "tlsnic/ktls.h"
#include "tlsnic/record.h"

/* TLS_TX_MAX_PAYLOAD_LEN's floor: RFC 8449's smallest record size limit. */
#define TLSNIC_MIN_RECORD_SIZE_LIMIT 64

/* Largest record tlsnic accepts on RX: TLS 1.3 allows 2^14 + 256 bytes of ciphertext. */
#define TLSNIC_RX_BUF_LEN (TLSNIC_REC_HDR_LEN + TLSNIC_REC_MAX_PLAINTEXT + 256 + 8)

struct tlsnic_dev_tx; /* dev.c: retained records of a device-mode TX direction */
struct tlsnic_dev_rx; /* rxdev.c: a device-mode RX direction (the device's RX status) */

struct tlsnic_tx {
    pthread_mutex_t lock;
    tlsnic_rec_key *key;          /* owned; NULL until TLS_TX */
    uint16_t version, cipher;
    struct tlsnic_mode_info mode;
    uint8_t *buf;                 /* TLSNIC_REC_MAX_WIRE_LEN bytes: the record being built */
    size_t hdr_room;              /* header + explicit nonce: where the content starts */
    size_t open_len;              /* content bytes in the open record */
    uint8_t open_type;
    uint8_t open;                 /* a record is open (MSG_MORE or not yet pushed) */
    uint8_t *out;                 /* the sealed record: buf, or (device mode) its slot in
                                     the record store, valid until acknowledged */
    size_t out_off, out_len;      /* bytes of out sealed but not yet written */
    int zc_ro;                    /* TLS_TX_ZEROCOPY_RO (accepted; tlsnic always copies) */
    size_t max_payload;           /* TLS_TX_MAX_PAYLOAD_LEN: content bytes per record */
    int err;                      /* sticky negative errno (nonce space exhausted, ...) */
    atomic_int pending;           /* out_off < out_len, readable without the lock; counted
                                     in tlsnic_tx_pending_sockets */
    struct tlsnic_dev_tx *dev;    /* device mode only */
};

struct tlsnic_rx {
    pthread_mutex_t lock;
    tlsnic_rec_key *key;          /* owned; NULL until TLS_RX */
    uint16_t version, cipher;
    struct tlsnic_mode_info mode;
    uint8_t *buf;                 /* TLSNIC_RX_BUF_LEN bytes: the record being assembled */
    size_t have;                  /* bytes of the record in buf */
    size_t need;                  /* its total length once the header is parsed, else 0 */
    uint8_t ready;                /* buf holds a decrypted record */
    uint8_t last_held;            /* its last byte is still in the kernel socket */
    uint8_t type;                 /* content type of the decrypted record */
    uint8_t rekey_pending;        /* a TLS 1.3 KeyUpdate was received; wait for TLS_RX */
    uint8_t *content;             /* into buf */
    size_t clen, off;             /* content length, bytes of it already returned */
    int no_pad;                   /* TLS_RX_EXPECT_NO_PAD */
    int err;                      /* sticky negative errno (a record that failed to open:
                                     every read gives it again, as the kernel's does) */
    uint8_t dead;                 /* a malformed header was found: no record follows */
    int dead_err;                 /* its errno, until a read has reported it */
    struct tlsnic_dev_rx *dev;    /* device mode only */
};

/*
 * One socket's TLS state. Lifetime: refs counts the fd table slots that point here plus
 * the calls in progress that looked it up (tlsnic_sock_get); the last tlsnic_sock_put
 * does what the kernel does when it releases a kTLS socket (push sealed records, device
 * linger and del) and frees. The socket's own descriptor kfd (a CLOEXEC dup made at
 * TCP_ULP) is what every system call of tlsnic uses: it keeps the kernel socket alive, and
 * its number from being reused, for as long as any call is in progress, so a close(2) of
 * the program's fd from another thread cannot make tlsnic read or write another file.
 */
struct tlsnic_sock {
    atomic_int refs;
    atomic_int fds;         /* of refs, the program's fd table slots */
    atomic_bool releasing;  /* the last reference is gone: nothing may take another */
    int kfd;                /* tlsnic's descriptor of the socket; closed when released */
    dev_t kdev;             /* the socket's inode (fstat of kfd): a table entry for kfd */
    ino_t kino;             /*   is checked against it before tlsnic trusts it */
    _Atomic uint32_t prot;  /* version << 16 | cipher of the first direction keyed: both
                               directions must agree (tls_main.c) */
    unsigned fork_gen;      /* tlsnic_fork_gen when made: another value means a forked
                               child inherited it (ktls.h: refused with EBADFD) */
    atomic_bool tx_on, rx_on; /* TLS_TX / TLS_RX keys set: the lock-free test of the
                                 data calls (keys are never removed) */
    struct tlsnic_offload offload; /* where TLS_TX and TLS_RX are offered (ktls.h); written
                                      under both locks, read under either */
    struct tlsnic_tx tx;
    struct tlsnic_rx rx;
};

/*
 * The bytes of msg's iovecs a call may use, as the kernel's copy to / from an iovec goes:
 * up to the first iovec whose base cannot be an address of the process (NULL, the first
 * page, not canonical, or wrapping), where the kernel would stop with EFAULT. *iovs is how
 * many iovecs that covers (the last possibly in part: callers stop at the total), *asked
 * what the iovecs asked for in all. A base inside the address space that is merely not
 * mapped is not caught here (it faults in the caller, as memcpy of libc does).
 */
static inline size_t tlsnic_iov_usable(const struct msghdr *msg, size_t *iovs, size_t *asked)
{
    size_t total = 0, want = 0, i = 0, n = 0;
    int bad = msg->msg_iovlen > 0 && !msg->msg_iov;
    for (; !bad && i < msg->msg_iovlen; i++) {
        uintptr_t b = (uintptr_t)msg->msg_iov[i].iov_base;
        size_t l = msg->msg_iov[i].iov_len;
        want += l;
        if (l == 0)
            continue;
        if (b < 4096 || b >= ((uintptr_t)1 << 56) || l > ((uintptr_t)1 << 56) - b) {
            bad = 1;
            break;
        }
        total += l;
        n = i + 1;
    }
    for (; i < msg->msg_iovlen && msg->msg_iov; i++)
        want += msg->msg_iov[i].iov_len;
    *iovs = n;
    *asked = want;
    return total;
}

/* sock.c */
extern struct tlsnic_sys_ops tlsnic_sys;
/* The socket of a program fd, with a reference (NULL: not a tlsnic socket). */
struct tlsnic_sock *tlsnic_sock_get(int fd);
void tlsnic_sock_put(struct tlsnic_sock *s);
/* The end of a released socket (closer.c): its own descriptor closed, then its state freed. */
void tlsnic_sock_close_kfd(struct tlsnic_sock *s);
void tlsnic_sock_free(struct tlsnic_sock *s);

/* closer.c: the end of a socket whose last reference is gone (sock.c, sock_release) */
int tlsnic_close_last(struct tlsnic_sock *s, int kfd); /* 1: the closer took it */
void tlsnic_close_inherited(struct tlsnic_sock *s);     /* a forked child's copy: forget */
void tlsnic_stat_add(enum tlsnic_stat which, int64_t delta);
int tlsnic_errno_ret(int rc); /* rc < 0: errno = -rc and returns -1; else rc */

/* tx.c */
ssize_t tlsnic_tx_sendmsg(struct tlsnic_sock *s, int fd, const struct msghdr *msg, int flags);
ssize_t tlsnic_tx_sendfile(struct tlsnic_sock *s, int fd, int in_fd, off_t *offset,
                           size_t count);
int tlsnic_tx_flush_locked(struct tlsnic_sock *s, int fd, int flags);
int tlsnic_tx_push_locked(struct tlsnic_sock *s, int fd, int flags);
int tlsnic_tx_has_pending(struct tlsnic_sock *s);
int tlsnic_tx_drain_on_close(struct tlsnic_sock *s, int fd, int timeout_ms);
void tlsnic_tx_forget_pending(struct tlsnic_sock *s);
extern atomic_int tlsnic_tx_pending_sockets;

/* dev.c (device mode, TX) */
/* About how many bytes fd has taken since its ISN (two reads an ACK may fall between: for
 * counters only; device mode counts positions from the bytes it wrote, dev.c). */
int tlsnic_stream_pos(int fd, uint64_t *pos);
/* Offers TX to the socket's offload binding (s->offload.dev must be set). */
int tlsnic_dev_tx_offer(struct tlsnic_sock *s, int fd, struct tlsnic_mode_info *m);
int tlsnic_dev_tx_frame(struct tlsnic_sock *s, int fd, uint8_t type, const uint8_t *content,
                        size_t n, uint8_t **out, size_t *out_len);
void tlsnic_dev_tx_reclaim(struct tlsnic_sock *s, int fd);
void tlsnic_dev_tx_sent(struct tlsnic_sock *s, size_t n);
void tlsnic_dev_tx_free(struct tlsnic_sock *s);
int tlsnic_dev_tx_close_step(struct tlsnic_sock *s, int fd, unsigned flags, int final);
/* Bytes (and FIN) fd has not had acknowledged; 0 once it can send nothing more. */
int tlsnic_sock_unacked_bytes(int fd);
void tlsnic_dev_tx_set_fd(struct tlsnic_sock *s, int fd);
void tlsnic_dev_tx_forget(struct tlsnic_sock *s);
void tlsnic_dev_tx_patch_info(const struct tlsnic_sock *s, union tlsnic_crypto_info *ci);

/* push.c: pending TX written out when the socket has room (the write-space callback) */
extern pthread_mutex_t tlsnic_push_lock; /* also orders tlsnic_set_sys_ops for its thread */
void tlsnic_push_watch(struct tlsnic_sock *s); /* s has TX pending; caller holds a ref */
void tlsnic_push_forget(struct tlsnic_sock *s); /* s lost its last program fd: the thread
                                                  lets go of it (caller holds a ref) */

/* rx.c */
ssize_t tlsnic_rx_recvmsg(struct tlsnic_sock *s, int fd, struct msghdr *msg, int flags);
int tlsnic_rx_poll(struct tlsnic_sock *s, int fd); /* 1 readable, 0 not, 2 not until the
                                                     program acts, -1 unknown (busy) */

/* rxdev.c (device mode, RX); the rx functions are called with the RX lock held, fd being
 * the socket's own descriptor (kfd) */
/* Offers RX to the socket's offload binding (s->offload.dev must say TLSNIC_DEV_CAP_RX). */
int tlsnic_dev_rx_offer(struct tlsnic_sock *s, int fd, struct tlsnic_mode_info *m);
/* The record's header was read into hdr[0..5): undo anything the device did to it. */
int tlsnic_dev_rx_header(struct tlsnic_rx *rx, uint8_t *hdr);
/* tlsnic_rec_open for device mode: the device's verdict, or restore and open. */
int tlsnic_dev_rx_open(struct tlsnic_rx *rx, uint8_t *rec, size_t len, uint8_t *type,
                       uint8_t **content, size_t *content_len);
/* The batched path, when no record is held: device-verified application data records
 * already in the socket, their content scattered into msg's buffer from byte at (at most
 * room bytes; only whole records). block: the caller would wait for data; a record the
 * device is decrypting that is not all there yet is then read as it arrives, its content
 * straight into msg's buffer. Returns the content bytes placed (> 0); 0 when the ordinary
 * path must go on (rx->buf may then hold the start of the record); -EINPROGRESS when
 * block is 0 and the next record is one the device is decrypting that is not all there,
 * or does not fit in room (a caller that has data returns it rather than take the record
 * in pieces; one without data takes the ordinary path, which keeps the readiness rule);
 * or a negative errno (sticky if
 * rx->err was set). Bytes of msg's buffer past the returned count may have been zeroed. */
ssize_t tlsnic_dev_rx_bulk(struct tlsnic_rx *rx, int fd, const struct msghdr *msg, size_t at,
                           size_t room, int block);
/* MSG_PEEK past the record in hand (which is ready: rx->need bytes): the header of the
 * record `ahead` bytes after it restored in place (what the device did to it undone), and
 * that record opened as tlsnic_dev_rx_open would, at record sequence number rec_seq, without
 * moving the key, the reading or anything the device is told. */
int tlsnic_dev_rx_peek_header(struct tlsnic_rx *rx, size_t ahead, uint8_t *hdr);
int tlsnic_dev_rx_peek_open(struct tlsnic_rx *rx, size_t ahead, uint64_t rec_seq, uint8_t *rec,
                            size_t len, uint8_t *type, uint8_t **content, size_t *content_len);
/* The record of rx->need bytes was taken from the socket (its last byte too). */
void tlsnic_dev_rx_release(struct tlsnic_rx *rx, int fd);
/* TLS 1.3 rekey: old_key is handed over (kept to restore what the device decrypted). */
void tlsnic_dev_rx_rekey(struct tlsnic_rx *rx, int fd, tlsnic_rec_key *old_key,
                         const tlsnic_rec_key *new_key, const void *crypto_info, size_t len);
/* The application closed the socket (closer.c, its first close step, any lock): the
 * device's end of the RX context (release or del; nothing to wait for: RX sends nothing)
 * and its status given up. No-op without an RX context. */
void tlsnic_dev_rx_close(struct tlsnic_sock *s, int fd);
/* A forked child's copy: forgotten (no del, no byte of the status touched). */
void tlsnic_dev_rx_forget(struct tlsnic_sock *s);
/* tlsnic_dev_rx_close if not done yet, then the memory (sock.c, sock_free). */
void tlsnic_dev_rx_free(struct tlsnic_sock *s);
int tlsnic_dev_rx_readd(struct tlsnic_dev *dev);

#endif
