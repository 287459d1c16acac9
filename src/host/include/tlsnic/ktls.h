/*
 * tlsnic host socket layer: the Linux kernel TLS (kTLS) socket API, in user space, on a
 * connected TCP socket.
 *
 * The functions mirror libc on a file descriptor. A socket becomes a tlsnic socket with
 *     tlsnic_setsockopt(fd, SOL_TCP, TCP_ULP, "tls", 4);
 * and gets keys per direction with
 *     tlsnic_setsockopt(fd, SOL_TLS, TLS_TX or TLS_RX, &crypto_info, sizeof crypto_info);
 * From then on tlsnic_send / tlsnic_recv / ... carry plaintext and the socket carries TLS
 * records, exactly as with the kernel's "tls" ULP (Documentation/networking/tls.rst).
 * Every function also works on any other descriptor: it then calls libc (through the
 * system-call table below) and changes nothing, so a program can route all its calls here.
 *
 * Error convention: like libc. -1 and errno set; the errnos are those the kernel's kTLS
 * gives for the same situation (EBADMSG bad tag, EMSGSIZE oversized record, EINVAL bad
 * record version or bad option, EBUSY keys already set, EIO control record without a cmsg
 * buffer, EKEYEXPIRED while a received TLS 1.3 KeyUpdate waits for new TLS_RX keys, ...).
 *
 * Threads: any number of sockets may be used from any threads; one socket may have one
 * thread sending and one receiving at the same time (TX and RX have separate locks), and
 * tlsnic_close may be called while other threads are inside calls on the same socket, as
 * with close(2): every call holds a reference to the socket's state, and tlsnic makes its
 * own system calls on a descriptor of its own (a CLOEXEC dup made at TCP_ULP, placed high
 * in the descriptor table), so a call in progress keeps the kernel socket alive, as the
 * kernel's file reference does, and never reaches whatever file reuses the closed number.
 * The TLS state is released (sealed records pushed, device context deleted) when the last
 * fd is closed and the last call has returned. Each tlsnic socket therefore costs two
 * descriptors.
 *
 * fork: the record state lives in the process that set the keys. A forked child that
 * inherits a tlsnic socket cannot use it: its TLS calls (and SOL_TLS options) on it fail
 * with EBADFD; close in the child only drops the child's copy (no records pushed, no
 * device context touched), and the parent keeps using the socket.
 *
 * Readiness: tlsnic never takes bytes from the kernel socket beyond the end of the record it
 * is assembling, and while a decrypted record still has unread plaintext, the last byte of
 * that record stays in the kernel socket. So poll / select / epoll on the fd itself stay
 * truthful: the fd is readable exactly when a recv can make progress. One exception, on TX:
 * a non-blocking send can leave the tail of one sealed record in user space (the kernel
 * socket buffer was full); it is flushed by the next tlsnic call on the fd; tlsnic_poll
 * also flushes it, and so does the preload library's epoll_wait (tlsnic_flush_all).
 */
#ifndef TLSNIC_KTLS_H
#define TLSNIC_KTLS_H

#include <linux/tls.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>

#include "tlsnic/devops.h"

#ifdef __cplusplus
extern "C" {
#endif

#ifndef SOL_TLS
#define SOL_TLS 282
#endif
#ifndef TCP_ULP
#define TCP_ULP 31
#endif
#ifndef TLS_TX_MAX_PAYLOAD_LEN
#define TLS_TX_MAX_PAYLOAD_LEN 5 /* Linux 6.19: largest plaintext per record sent (u16) */
#endif

/* ------------------------------------------------------------------------------------------ */
/* The socket API (libc-shaped: -1 and errno on failure).                                      */

int tlsnic_setsockopt(int fd, int level, int optname, const void *optval, socklen_t optlen);
int tlsnic_getsockopt(int fd, int level, int optname, void *optval, socklen_t *optlen);

ssize_t tlsnic_send(int fd, const void *buf, size_t len, int flags);
ssize_t tlsnic_write(int fd, const void *buf, size_t len);
ssize_t tlsnic_writev(int fd, const struct iovec *iov, int iovcnt);
ssize_t tlsnic_sendmsg(int fd, const struct msghdr *msg, int flags);
/* Reads in_fd (a regular file) at *offset (or its file position if offset is NULL). */
ssize_t tlsnic_sendfile(int out_fd, int in_fd, off_t *offset, size_t count);

ssize_t tlsnic_recv(int fd, void *buf, size_t len, int flags);
ssize_t tlsnic_read(int fd, void *buf, size_t len);
ssize_t tlsnic_readv(int fd, const struct iovec *iov, int iovcnt);
ssize_t tlsnic_recvmsg(int fd, struct msghdr *msg, int flags);

/*
 * poll(2) on any fds, answering for tlsnic sockets as the kernel's kTLS poll does (Linux
 * 6.5+): POLLIN only when a read can return something (a whole record, an error, the
 * end); TX pending in user space is flushed first (see Readiness above). tlsnic_ppoll is
 * ppoll(2) (tmo NULL: no timeout; sigmask as ppoll's); the preload library's select and
 * pselect run on it too.
 */
int tlsnic_poll(struct pollfd *fds, nfds_t nfds, int timeout);
int tlsnic_ppoll(struct pollfd *fds, nfds_t nfds, const struct timespec *tmo,
                 const sigset_t *sigmask);

/*
 * connect(2): on a tlsnic socket, AF_UNSPEC (the TCP disconnect) is EOPNOTSUPP, as the
 * kernel's tls_disconnect answers (Linux 6.15, in stable kernels since); anything else
 * goes to the kernel.
 */
int tlsnic_connect(int fd, const struct sockaddr *addr, socklen_t len);

/* Writes out pending TX ciphertext of a tlsnic socket; 0 when nothing is left pending. */
int tlsnic_flush(int fd);

/*
 * For event loops that cannot say which fds they wait on (epoll): 1 if any tlsnic socket
 * has TX pending in user space; tlsnic_flush_all tries them all (non-blocking) and returns
 * how many sockets still have some.
 */
int tlsnic_tx_pending_any(void);
int tlsnic_flush_all(void);

/*
 * close(2) for a tlsnic socket, returning at once as the kernel's does. When this was the
 * last descriptor of the socket in the process that set it up, what is left is done
 * without the caller: the tail of a sealed record the socket has not taken yet, and in
 * device mode the device's end of the flow (the device takes the socket over and sends
 * what is queued, encrypted, then the FIN; or, for a device that cannot, tlsnic waits for
 * the peer's ACKs before the del). Done on this thread when nothing needs waiting, else by
 * a background thread holding a duplicate of the socket; a peer that takes nothing or
 * acknowledges nothing within 5 s gets a reset. Unread received bytes and SO_LINGER {1, 0}
 * make it a reset at once, as in the kernel; SO_LINGER with N > 0 seconds makes it block
 * until the peer has acknowledged everything or N seconds have passed (the kernel's
 * tcp_close), then go on as above. A forked child's close of a descriptor it inherited only forgets its
 * copy of the TLS state: the parent's connection, record store and device are untouched.
 */
int tlsnic_close(int fd);

/*
 * Waits at most timeout_ms until no socket closed by this process is still being finished
 * in the background (see tlsnic_close). Returns how many still are (0: none). For tests,
 * and for a program that wants the ends of its connections done before it exits.
 */
int tlsnic_close_pending(int timeout_ms);

/*
 * Bookkeeping for descriptors that share one socket: after dup/dup2/dup3/fcntl(F_DUPFD)
 * made newfd refer to oldfd's socket, tlsnic_fd_dup lets newfd use oldfd's TLS state;
 * tlsnic_fd_forget drops fd's reference when it was closed or replaced outside tlsnic.
 */
int tlsnic_fd_dup(int oldfd, int newfd);
void tlsnic_fd_forget(int fd);

/* 1 if fd did TCP_ULP "tls" through tlsnic (cheap: one table read), else 0. */
int tlsnic_is_tls(int fd);

/*
 * 1 if fd is one of tlsnic's own descriptors (see Threads above), which the program never
 * opened: a wrapper of close / close_range / dup2 must leave it alone (tlsnic_close gives
 * EBADF for it). Cheap: one table read.
 */
int tlsnic_fd_is_private(int fd);

/* The first fd >= from that is a tlsnic socket or one of tlsnic's own, or -1 (for
 * close_range: walks only the parts of the table in use). */
int tlsnic_fd_next(int from);

/* ------------------------------------------------------------------------------------------ */
/* Mode per socket and direction, and why.                                                    */

enum tlsnic_mode {
    TLSNIC_MODE_NONE = 0,   /* no keys set for this direction */
    TLSNIC_MODE_SW = 1,     /* tlsnic encrypts / decrypts on the host CPU */
    TLSNIC_MODE_DEVICE = 2, /* tlsnic frames records; the device does the crypto */
};

enum tlsnic_sw_reason {
    TLSNIC_SW_REASON_NONE = 0,          /* not in software mode */
    TLSNIC_SW_REASON_NO_DEVICE,         /* the socket is bound to no device (tlsnic_offload) */
    TLSNIC_SW_REASON_DEVICE_REFUSED,    /* the device's add failed; dev_errno says how */
    TLSNIC_SW_REASON_TABLE_FULL,        /* the device's flow table is full (-ENOSPC) */
    TLSNIC_SW_REASON_CIPHER_NOT_OFFLOADED, /* -EOPNOTSUPP: version / cipher / direction */
    TLSNIC_SW_REASON_DEVICE_GONE,       /* -ENODEV, or the device dropped the context */
    TLSNIC_SW_REASON_NOT_A_FLOW,        /* the socket has no IPv4 / IPv6 4-tuple */
    TLSNIC_SW_REASON_RX_NOT_OFFERED,    /* RX: the device does not decrypt received records
                                           (no TLSNIC_DEV_CAP_RX, or its add said
                                           -EOPNOTSUPP for RX) */
    TLSNIC_SW_REASON_NO_TCP_SEQ,        /* the socket's TCP sequence number could not be
                                           read (TCP_REPAIR needs CAP_NET_ADMIN) */
    TLSNIC_SW_REASON_DEVICE_UNREACHABLE, /* -ENOENT / -ECONNREFUSED: no daemon listens at
                                           the control socket's path */
};

struct tlsnic_mode_info {
    enum tlsnic_mode mode;
    enum tlsnic_sw_reason reason; /* when mode == TLSNIC_MODE_SW */
    int dev_errno;                /* the device's negative errno when it refused, else 0 */
};

/* Fills *out for fd's direction dir. Returns 0, or -1 / EBADF (not a tlsnic socket). */
int tlsnic_get_mode(int fd, enum tlsnic_dir dir, struct tlsnic_mode_info *out);
const char *tlsnic_mode_name(enum tlsnic_mode mode);
const char *tlsnic_sw_reason_name(enum tlsnic_sw_reason reason);

/*
 * Where device mode keeps records for a device that cannot read this process's memory.
 * By default the record store handed to the device in add is tlsnic's own list (host
 * memory: fine for an in-process device). A device in another process (tlsnicd) needs the
 * records in memory it can map: with store ops in the socket's offload binding (below),
 * tlsnic opens one store per offloaded direction, puts every framed record into it too,
 * releases there what the peer has acknowledged, and hands the device view(store) instead
 * of its own list. ops and ctx must stay valid for the life of every socket bound to
 * them. put may fail with -ENOSPC while the store is full of unacknowledged records:
 * tlsnic then waits (bounded, 5 s) for acknowledgements.
 *
 * reserve and commit (optional, both or neither) save the copy of put: reserve returns room
 * for a record of len bytes in the store (-ENOSPC when full, -EMSGSIZE when too long),
 * invisible to the device until commit; tlsnic frames the record there, commits it and
 * then writes it to the socket from that room, so the room must stay valid and unchanged
 * until release covers the record. At most one reservation is open per store. commit
 * returns 0, or a negative errno when len is not what was reserved (the record is then not
 * kept: tlsnic does not send it, and the stream fails with that errno).
 *
 * device_flags (optional): the TLSNIC_FLOW_F_* flags the device wrote into the store, with
 * TLSNIC_FLOW_F_LIVE once it has written any (shm_layout.h). While LIVE is set, tlsnic reads the
 * flags there before each record instead of asking the device (flow_flags: a round trip to
 * a daemon).
 */
struct tlsnic_dev_store_ops {
    int (*open)(void *ctx, void **store);
    int (*put)(void *store, uint32_t tcp_seq, uint64_t rec_seq, const uint8_t *rec,
               uint32_t len);
    int (*reserve)(void *store, uint32_t len, uint8_t **room);
    int (*commit)(void *store, uint32_t tcp_seq, uint64_t rec_seq, uint32_t len);
    uint32_t (*device_flags)(void *store);
    void (*release)(void *store, uint32_t acked_seq); /* every record ending at or before */
    const struct tlsnic_rec_store *(*view)(void *store);
    void (*close)(void *store);
    /* Optional (NULL: close). Given up while the device may still read it: after the device
     * took the flow over at close (release), or a del that did not answer 0. */
    void (*retire)(void *store);
    /* Optional (NULL: nothing). A forked child's copy, dropped: no byte of it is touched. */
    void (*forget)(void *store);
    /*
     * RX (optional): a store that holds only an RX status the device can write
     * (rx_status.h): view(store) is then what add gets (rx_status set), rx_status(store)
     * the host's view of it; close, retire and forget as above (retire: the device may
     * still write the status; such a store is never reused). Without open_rx an RX status
     * lives in this process's memory (fine for an in-process device).
     */
    int (*open_rx)(void *ctx, void **store);
    struct tlsnic_rxs *(*rx_status)(void *store);
};

/*
 * Where a socket's keys are offered: a device and, for a device that cannot read this
 * process's memory, the record store it can map. The binding belongs to the socket: it is
 * copied into the socket at TCP_ULP from the process default (tlsnic_set_default_offload,
 * the analog of the route that picks a netdev; attach.h sets it to tlsnicd), may be
 * replaced per socket before TLS_TX (tlsnic_sock_set_offload), and is what TLS_TX offers
 * to. Changing the default later changes nothing for sockets that exist. dev NULL:
 * software only. dev and the store ops must stay valid until every socket bound to them is
 * closed.
 *
 * Device mode (TX). tlsnic frames each record as header | explicit nonce (TLS 1.2 GCM) |
 * plaintext | inner type (TLS 1.3) | 16 zero bytes of tag room, and the device encrypts it
 * on its way out. Every record stays in tlsnic's record store (struct tlsnic_rec_store,
 * handed to the device in add) until the peer has acknowledged all of it; acknowledgement
 * is read from the socket (SIOCOUTQ against the bytes tlsnic wrote) once every 16 records,
 * on poll, when the store is full and by tlsnic_tx_retained, so the store holds the
 * unacknowledged window plus at most 16 records.
 *
 * Sequence numbers are the socket's real TCP sequence numbers, as devops.h says: tlsnic
 * reads the next one at TLS_TX time with TCP_REPAIR / TCP_QUEUE_SEQ (the way CRIU reads live
 * connections; it needs CAP_NET_ADMIN, else the direction stays in software with reason
 * TLSNIC_SW_REASON_NO_TCP_SEQ), and counts from there.
 *
 * If the device raises TLSNIC_FLOW_F_INTEGRITY, or loses the context (F_GONE), the socket
 * is aborted: sends fail with ECONNABORTED and the TCP connection is shut down. Records
 * already framed for the device cannot be sealed again in software without reusing their
 * nonces, so there is no silent fallback mid-stream.
 *
 * Device mode (RX), for a device with TLSNIC_DEV_CAP_RX. At TLS_RX tlsnic reads the TCP
 * sequence number of the next byte the program will read (TCP_REPAIR / TCP_QUEUE_SEQ
 * on the receive queue, minus the queued bytes; CAP_NET_ADMIN) and adds the direction
 * with an RX status (rx_status.h) the device writes. Each record read from the socket is
 * then either taken as the device decrypted and verified it (no host crypto), or made
 * again what was on the wire (the device's keystream XORed back over what it decrypted)
 * and opened in software: plaintext the tag did not verify is never returned, and a
 * record the device failed is EBADMSG only if it really is bad. tlsnic answers the
 * device's resync requests as its reading passes them, tells the device where the next
 * record starts after records it had to decrypt itself and when nothing more is queued
 * (the kernel's next-record hint), hands it the new keys of a TLS 1.3 KeyUpdate for the
 * record right after it (devops rekey), and publishes how far it has read. If the device
 * goes away, RX simply continues in software: nothing is aborted.
 */
struct tlsnic_offload {
    struct tlsnic_dev *dev;                       /* NULL: software only */
    const struct tlsnic_dev_store_ops *store_ops; /* NULL: the device reads tlsnic's list */
    void *store_ctx;                              /* store_ops->open's ctx */
};

/* The binding new tlsnic sockets get at TCP_ULP (copied). NULL: software only. */
void tlsnic_set_default_offload(const struct tlsnic_offload *off);

/*
 * Binds fd (after TCP_ULP "tls") to off (copied; NULL: software only) for its next
 * TLS_TX and TLS_RX. Returns 0, or -1 with errno EBADF (not a tlsnic socket), EBUSY (TLS_TX
 * or TLS_RX keys are set: a direction does not move between devices, and both directions
 * of a socket go to one).
 */
int tlsnic_sock_set_offload(int fd, const struct tlsnic_offload *off);


/*
 * After the device lost its contexts and came back (a restarted tlsnicd): adds every
 * device-mode RX context of this process that uses dev again, from the record boundary
 * the program's reading has reached, with the same RX status (the device takes over the
 * decisions in it: decided once holds across the restart; a refused one just stays in
 * software); and every device-mode TX context of this process that uses dev again, each from its first record
 * not yet fully acknowledged (its TCP sequence number, record sequence number and nonce),
 * with the same record store, so the device can encrypt whatever TCP retransmits.
 * Does not take the sockets' TX locks (a sender may be blocked in the kernel waiting for
 * the very ACKs that only flow once the device is back). Returns how many contexts were
 * added, or the first add's negative errno (the others are still tried). A context whose
 * add is refused (any error but -ENODEV / -ETIMEDOUT, which mean "gone again: try at the
 * next restart") can never be encrypted again: its connection is aborted at the next send
 * (ECONNABORTED), as when the device reports TLSNIC_FLOW_F_GONE.
 */
int tlsnic_device_readd(struct tlsnic_dev *dev);

/*
 * Device mode: releases the records the peer has acknowledged, then reports what the
 * record store still holds for fd's TX. Returns 0, or -1 / EBADF (not a tlsnic socket),
 * EINVAL (TX not in device mode).
 */
int tlsnic_tx_retained(int fd, size_t *bytes, size_t *records);

/* ------------------------------------------------------------------------------------------ */
/* Counters, named after /proc/net/tls_stat. Process-wide, updated atomically.                */

enum tlsnic_stat {
    TLSNIC_STAT_CURR_TX_SW,      /* TlsCurrTxSw: directions in SW mode now */
    TLSNIC_STAT_CURR_RX_SW,      /* TlsCurrRxSw */
    TLSNIC_STAT_CURR_TX_DEVICE,  /* TlsCurrTxDevice */
    TLSNIC_STAT_CURR_RX_DEVICE,  /* TlsCurrRxDevice */
    TLSNIC_STAT_TX_SW,           /* TlsTxSw: directions ever set up in SW mode */
    TLSNIC_STAT_RX_SW,           /* TlsRxSw */
    TLSNIC_STAT_TX_DEVICE,       /* TlsTxDevice */
    TLSNIC_STAT_RX_DEVICE,       /* TlsRxDevice */
    TLSNIC_STAT_DECRYPT_ERROR,   /* TlsDecryptError: records that failed authentication */
    TLSNIC_STAT_RX_DEVICE_RESYNC,/* TlsRxDeviceResync */
    TLSNIC_STAT_DECRYPT_RETRY,   /* TlsDecryptRetry */
    TLSNIC_STAT_RX_NO_PAD_VIOLATION, /* TlsRxNoPadViolation */
    TLSNIC_STAT_TX_REKEY_OK,     /* TlsTxRekeyOk */
    TLSNIC_STAT_RX_REKEY_OK,     /* TlsRxRekeyOk */
    TLSNIC_STAT_TX_REKEY_ERROR,  /* TlsTxRekeyError */
    TLSNIC_STAT_RX_REKEY_ERROR,  /* TlsRxRekeyError */
    TLSNIC_STAT_RX_REKEY_RECEIVED, /* TlsRxRekeyReceived */
    TLSNIC_STAT_TX_RECORDS,      /* TlsnicTxRecords: records sent (tlsnic's own) */
    TLSNIC_STAT_RX_RECORDS,      /* TlsnicRxRecords: records received and accepted */
    TLSNIC_STAT_TX_DEVICE_READD, /* TlsnicTxDeviceReadd: contexts added again after the
                                    device restarted (tlsnic_device_readd) */
    /* What the host CPU did not have to encrypt, in record bytes as on the wire: */
    TLSNIC_STAT_TX_DEVICE_RECORDS, /* TlsnicTxDeviceRecords: records framed for the device */
    TLSNIC_STAT_TX_DEVICE_BYTES, /* TlsnicTxDeviceBytes: their bytes (the device encrypts) */
    TLSNIC_STAT_TX_SW_BYTES,     /* TlsnicTxSwBytes: record bytes tlsnic sealed on the host */
    TLSNIC_STAT_TX_PRE_KEY_BYTES,/* TlsnicTxPreKeyBytes: bytes the sockets had sent before
                                    TLS_TX (the handshake, which the TLS library encrypted
                                    where it had to: an upper bound of that work) */
    /* What the host CPU did not have to decrypt, in record bytes as on the wire: */
    TLSNIC_STAT_RX_DEVICE_RECORDS, /* TlsnicRxDeviceRecords: records the device decrypted
                                      and verified, used without host crypto */
    TLSNIC_STAT_RX_DEVICE_BYTES, /* TlsnicRxDeviceBytes: their bytes */
    TLSNIC_STAT_RX_SW_BYTES,     /* TlsnicRxSwBytes: record bytes opened on the host */
    TLSNIC_STAT_RX_REENCRYPT_RECORDS, /* TlsnicRxReencryptRecords: records the device had
                                         decrypted (in part, or unverified) that the host
                                         turned back into ciphertext to open them */
    TLSNIC_STAT_RX_REENCRYPT_BYTES, /* TlsnicRxReencryptBytes: bytes turned back */
    TLSNIC_STAT_RX_DEVICE_TAG_FAIL, /* TlsnicRxDeviceTagFail: records whose tag failed in
                                       the device (then checked on the host) */
    TLSNIC_STAT_RX_RESYNC_GAPS,  /* TlsnicRxResyncGaps: gaps after which the device
                                    decrypted again (its entries say where) */
    TLSNIC_STAT_RX_RESYNC_RECORDS, /* TlsnicRxResyncRecords: the sum of their resync
                                      distances (records from the one in which the device
                                      saw data again to the next it decrypted; 1 is best) */
    TLSNIC_STAT_RX_RESYNC_WITHIN2, /* TlsnicRxResyncWithin2: gaps resynced within 2 */
    TLSNIC_STAT_RX_DEVICE_READD, /* TlsnicRxDeviceReadd: RX contexts added again after the
                                    device restarted */
    TLSNIC_STAT_COUNT
};

uint64_t tlsnic_stat_get(enum tlsnic_stat which);
const char *tlsnic_stat_name(enum tlsnic_stat which); /* "TlsCurrTxSw", ... */
/*
 * Writes all counters as /proc/net/tls_stat does ("TlsCurrTxSw  1\n"...) to buf (cap
 * bytes, NUL-terminated, truncated if short). Returns the length it needed.
 */
int tlsnic_stats_format(char *buf, size_t cap);

/* ------------------------------------------------------------------------------------------ */
/* The system calls tlsnic makes (a seam for tests and for the preload library).              */

struct tlsnic_sys_ops {
    ssize_t (*sendmsg)(int fd, const struct msghdr *msg, int flags);
    /* Optional: records go out with send (no msghdr for the kernel to copy in) when set,
     * else with sendmsg. */
    ssize_t (*send)(int fd, const void *buf, size_t len, int flags);
    ssize_t (*recvmsg)(int fd, struct msghdr *msg, int flags);
    ssize_t (*recv)(int fd, void *buf, size_t len, int flags);
    ssize_t (*read)(int fd, void *buf, size_t len);
    ssize_t (*pread)(int fd, void *buf, size_t len, off_t off);
    ssize_t (*sendfile)(int out_fd, int in_fd, off_t *offset, size_t count);
    ssize_t (*readv)(int fd, const struct iovec *iov, int iovcnt);
    ssize_t (*writev)(int fd, const struct iovec *iov, int iovcnt);
    int (*poll)(struct pollfd *fds, nfds_t nfds, int timeout);
    int (*setsockopt)(int fd, int level, int optname, const void *optval, socklen_t optlen);
    int (*getsockopt)(int fd, int level, int optname, void *optval, socklen_t *optlen);
    int (*fcntl)(int fd, int cmd, ...);
    int (*ioctl)(int fd, unsigned long request, ...);
    int (*close)(int fd);
    /* Optional (NULL: poll, or the ppoll system call when a signal mask is given). */
    int (*ppoll)(struct pollfd *fds, nfds_t nfds, const struct timespec *tmo,
                 const sigset_t *sigmask);
    /* Optional (NULL: libc's connect). */
    int (*connect)(int fd, const struct sockaddr *addr, socklen_t len);
};

/* Replaces the table (copied). NULL restores libc's functions. Call before any socket use. */
void tlsnic_set_sys_ops(const struct tlsnic_sys_ops *ops);

#ifdef __cplusplus
}
#endif

#endif
