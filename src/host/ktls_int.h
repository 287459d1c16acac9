/*
 * Internal to the socket layer of src/host: the per-socket state and the helpers shared by
 * sock.c, tx.c, rx.c and dev.c. Not installed; nothing outside src/host includes it.
 */
#ifndef TLSNIC_KTLS_INT_H
#define TLSNIC_KTLS_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "tlsnic/check.h"
#include "tlsnic/devops.h"
#include "tlsnic/ktls.h"
#include "tlsnic/record.h"

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
    int err;                      /* sticky negative errno (nonce space exhausted, ...) */
    int pending_counted;          /* counted in tlsnic_tx_pending_sockets */
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
    int err;                      /* sticky negative errno: the stream is dead */
    struct tlsnic_dev_rx *dev;    /* device mode only */
};

struct tlsnic_sock {
    atomic_int fdrefs; /* fd table slots that point here */
    struct tlsnic_tx tx;
    struct tlsnic_rx rx;
};

/* sock.c */
extern struct tlsnic_sys_ops tlsnic_sys;
struct tlsnic_sock *tlsnic_sock_get(int fd);
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
/* The device store ops set with tlsnic_set_device_store (NULL: none), and their ctx. */
const struct tlsnic_dev_store_ops *tlsnic_dev_store_get(void **ctx);
/* Stream position (bytes since the ISN, the SYN counted) of the next byte fd will send. */
int tlsnic_stream_pos(int fd, uint64_t *pos);
int tlsnic_dev_tx_offer(struct tlsnic_sock *s, int fd, struct tlsnic_dev *dev,
                        struct tlsnic_mode_info *m);
int tlsnic_dev_tx_frame(struct tlsnic_sock *s, int fd, uint8_t type, const uint8_t *content,
                        size_t n, uint8_t **out, size_t *out_len);
void tlsnic_dev_tx_reclaim(struct tlsnic_sock *s, int fd);
void tlsnic_dev_tx_sent(struct tlsnic_sock *s, size_t n);
void tlsnic_dev_tx_free(struct tlsnic_sock *s);
int tlsnic_dev_tx_linger(struct tlsnic_sock *s, int fd, int timeout_ms);
void tlsnic_dev_tx_patch_info(const struct tlsnic_sock *s, union tlsnic_crypto_info *ci);

/* rx.c */
ssize_t tlsnic_rx_recvmsg(struct tlsnic_sock *s, int fd, struct msghdr *msg, int flags);

/* rxdev.c (device mode, RX); the rx functions are called with the RX lock held */
int tlsnic_dev_rx_offer(struct tlsnic_sock *s, int fd, struct tlsnic_dev *dev,
                        struct tlsnic_mode_info *m);
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
/* The record of rx->need bytes was taken from the socket (its last byte too). */
void tlsnic_dev_rx_release(struct tlsnic_rx *rx, int fd);
/* TLS 1.3 rekey: old_key is handed over (kept to restore what the device decrypted). */
void tlsnic_dev_rx_rekey(struct tlsnic_rx *rx, int fd, tlsnic_rec_key *old_key,
                         const tlsnic_rec_key *new_key, const void *crypto_info, size_t len);
void tlsnic_dev_rx_free(struct tlsnic_sock *s);
int tlsnic_dev_rx_readd(struct tlsnic_dev *dev);

#endif
