/*
 * tlsnic socket layer, control side: the fd table, TCP_ULP / SOL_TLS socket options with
 * the kernel's errnos (net/tls/tls_main.c), mode selection, counters, close and dup.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/sendfile.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "ktls_int.h"

/* ------------------------------------------------------------------------------------------ */
/* System calls                                                                               */

/* libc itself; tlsnic_sys starts as this and tlsnic_set_sys_ops(NULL) goes back to it. */
#define LIBC_SYS_OPS                                                                          \
    {                                                                                         \
        .sendmsg = sendmsg, .send = send, .recvmsg = recvmsg, .recv = recv, .read = read,     \
        .pread = pread,                                                                       \
        .sendfile = sendfile, .readv = readv, .writev = writev, .poll = poll,                 \
        .setsockopt = setsockopt, .getsockopt = getsockopt, .fcntl = fcntl, .ioctl = ioctl,   \
        .close = close,                                                                       \
    }

static const struct tlsnic_sys_ops libc_ops = LIBC_SYS_OPS;
struct tlsnic_sys_ops tlsnic_sys = LIBC_SYS_OPS;

void tlsnic_set_sys_ops(const struct tlsnic_sys_ops *ops)
{
    tlsnic_sys = ops ? *ops : libc_ops;
}

int tlsnic_errno_ret(int rc)
{
    if (rc < 0) {
        errno = -rc;
        return -1;
    }
    return rc;
}

static ssize_t errno_ret_ssize(ssize_t rc)
{
    if (rc < 0) {
        errno = (int)-rc;
        return -1;
    }
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* Counters                                                                                   */

static _Atomic uint64_t stats[TLSNIC_STAT_COUNT];

static const char *const stat_names[TLSNIC_STAT_COUNT] = {
    [TLSNIC_STAT_CURR_TX_SW] = "TlsCurrTxSw",
    [TLSNIC_STAT_CURR_RX_SW] = "TlsCurrRxSw",
    [TLSNIC_STAT_CURR_TX_DEVICE] = "TlsCurrTxDevice",
    [TLSNIC_STAT_CURR_RX_DEVICE] = "TlsCurrRxDevice",
    [TLSNIC_STAT_TX_SW] = "TlsTxSw",
    [TLSNIC_STAT_RX_SW] = "TlsRxSw",
    [TLSNIC_STAT_TX_DEVICE] = "TlsTxDevice",
    [TLSNIC_STAT_RX_DEVICE] = "TlsRxDevice",
    [TLSNIC_STAT_DECRYPT_ERROR] = "TlsDecryptError",
    [TLSNIC_STAT_RX_DEVICE_RESYNC] = "TlsRxDeviceResync",
    [TLSNIC_STAT_DECRYPT_RETRY] = "TlsDecryptRetry",
    [TLSNIC_STAT_RX_NO_PAD_VIOLATION] = "TlsRxNoPadViolation",
    [TLSNIC_STAT_TX_REKEY_OK] = "TlsTxRekeyOk",
    [TLSNIC_STAT_RX_REKEY_OK] = "TlsRxRekeyOk",
    [TLSNIC_STAT_TX_REKEY_ERROR] = "TlsTxRekeyError",
    [TLSNIC_STAT_RX_REKEY_ERROR] = "TlsRxRekeyError",
    [TLSNIC_STAT_RX_REKEY_RECEIVED] = "TlsRxRekeyReceived",
    [TLSNIC_STAT_TX_RECORDS] = "TlsnicTxRecords",
    [TLSNIC_STAT_RX_RECORDS] = "TlsnicRxRecords",
    [TLSNIC_STAT_TX_DEVICE_READD] = "TlsnicTxDeviceReadd",
    [TLSNIC_STAT_TX_DEVICE_RECORDS] = "TlsnicTxDeviceRecords",
    [TLSNIC_STAT_TX_DEVICE_BYTES] = "TlsnicTxDeviceBytes",
    [TLSNIC_STAT_TX_SW_BYTES] = "TlsnicTxSwBytes",
    [TLSNIC_STAT_TX_PRE_KEY_BYTES] = "TlsnicTxPreKeyBytes",
    [TLSNIC_STAT_RX_DEVICE_RECORDS] = "TlsnicRxDeviceRecords",
    [TLSNIC_STAT_RX_DEVICE_BYTES] = "TlsnicRxDeviceBytes",
    [TLSNIC_STAT_RX_SW_BYTES] = "TlsnicRxSwBytes",
    [TLSNIC_STAT_RX_REENCRYPT_RECORDS] = "TlsnicRxReencryptRecords",
    [TLSNIC_STAT_RX_REENCRYPT_BYTES] = "TlsnicRxReencryptBytes",
    [TLSNIC_STAT_RX_DEVICE_TAG_FAIL] = "TlsnicRxDeviceTagFail",
    [TLSNIC_STAT_RX_RESYNC_GAPS] = "TlsnicRxResyncGaps",
    [TLSNIC_STAT_RX_RESYNC_RECORDS] = "TlsnicRxResyncRecords",
    [TLSNIC_STAT_RX_RESYNC_WITHIN2] = "TlsnicRxResyncWithin2",
    [TLSNIC_STAT_RX_DEVICE_READD] = "TlsnicRxDeviceReadd",
};

void tlsnic_stat_add(enum tlsnic_stat which, int64_t delta)
{
    atomic_fetch_add_explicit(&stats[which], (uint64_t)delta, memory_order_relaxed);
}

uint64_t tlsnic_stat_get(enum tlsnic_stat which)
{
    if ((unsigned)which >= TLSNIC_STAT_COUNT)
        return 0;
    return atomic_load_explicit(&stats[which], memory_order_relaxed);
}

const char *tlsnic_stat_name(enum tlsnic_stat which)
{
    if ((unsigned)which >= TLSNIC_STAT_COUNT)
        return "unknown";
    return stat_names[which];
}

int tlsnic_stats_format(char *buf, size_t cap)
{
    size_t need = 0;
    for (int i = 0; i < TLSNIC_STAT_COUNT; i++) {
        int n = snprintf(buf && need < cap ? buf + need : NULL, buf && need < cap ? cap - need : 0,
                         "%-32s%llu\n", stat_names[i],
                         (unsigned long long)tlsnic_stat_get((enum tlsnic_stat)i));
        if (n < 0)
            return -1;
        need += (size_t)n;
    }
    if (buf && cap > 0 && need >= cap)
        buf[cap - 1] = '\0';
    return (int)need;
}

/* ------------------------------------------------------------------------------------------ */
/* The fd table: two levels of atomic pointers, so a lookup is two loads and an fd that      */
/* never did TCP_ULP costs one load of a NULL chunk pointer.                                  */

#define CHUNK_BITS 10
#define CHUNK_LEN (1 << CHUNK_BITS)
#define NCHUNKS 1024 /* fds below 2^20 */

typedef _Atomic(struct tlsnic_sock *) sock_slot;
static _Atomic(sock_slot *) table[NCHUNKS];

struct tlsnic_sock *tlsnic_sock_get(int fd)
{
    if (fd < 0 || (fd >> CHUNK_BITS) >= NCHUNKS)
        return NULL;
    sock_slot *chunk = atomic_load_explicit(&table[fd >> CHUNK_BITS], memory_order_acquire);
    if (!chunk)
        return NULL;
    return atomic_load_explicit(&chunk[fd & (CHUNK_LEN - 1)], memory_order_acquire);
}

static sock_slot *slot_of(int fd, int create)
{
    if (fd < 0 || (fd >> CHUNK_BITS) >= NCHUNKS)
        return NULL;
    _Atomic(sock_slot *) *cp = &table[fd >> CHUNK_BITS];
    sock_slot *chunk = atomic_load_explicit(cp, memory_order_acquire);
    if (!chunk && create) {
        sock_slot *fresh = calloc(CHUNK_LEN, sizeof(*fresh));
        if (!fresh)
            return NULL;
        sock_slot *expected = NULL;
        if (atomic_compare_exchange_strong(cp, &expected, fresh))
            chunk = fresh;
        else {
            free(fresh);
            chunk = expected;
        }
    }
    return chunk ? &chunk[fd & (CHUNK_LEN - 1)] : NULL;
}

int tlsnic_is_tls(int fd)
{
    return tlsnic_sock_get(fd) != NULL;
}

static void mode_stat(enum tlsnic_dir dir, enum tlsnic_mode mode, int delta_curr)
{
    if (mode == TLSNIC_MODE_SW)
        tlsnic_stat_add(dir == TLSNIC_DIR_TX ? TLSNIC_STAT_CURR_TX_SW : TLSNIC_STAT_CURR_RX_SW,
                        delta_curr);
    else if (mode == TLSNIC_MODE_DEVICE)
        tlsnic_stat_add(dir == TLSNIC_DIR_TX ? TLSNIC_STAT_CURR_TX_DEVICE
                                             : TLSNIC_STAT_CURR_RX_DEVICE,
                        delta_curr);
}

static void sock_free(struct tlsnic_sock *s)
{
    tlsnic_tx_forget_pending(s);
    tlsnic_dev_tx_free(s); /* del: the device lets go of the store before it goes */
    tlsnic_dev_rx_free(s);
    mode_stat(TLSNIC_DIR_TX, s->tx.mode.mode, -1);
    mode_stat(TLSNIC_DIR_RX, s->rx.mode.mode, -1);
    tlsnic_rec_key_free(s->tx.key);
    tlsnic_rec_key_free(s->rx.key);
    if (s->tx.buf) {
        OPENSSL_cleanse(s->tx.buf, TLSNIC_REC_MAX_WIRE_LEN);
        free(s->tx.buf);
    }
    if (s->rx.buf) {
        OPENSSL_cleanse(s->rx.buf, TLSNIC_RX_BUF_LEN);
        free(s->rx.buf);
    }
    pthread_mutex_destroy(&s->tx.lock);
    pthread_mutex_destroy(&s->rx.lock);
    free(s);
}

/* How long a close may wait for a peer: to take the sealed records, and (device mode) to
 * acknowledge everything before the device lets go of the flow. */
#define CLOSE_BUDGET_MS 5000

static void sock_unref(struct tlsnic_sock *s, int fd, int drain)
{
    if (atomic_fetch_sub(&s->fdrefs, 1) != 1)
        return;
    if (drain && fd >= 0) {
        pthread_mutex_lock(&s->tx.lock);
        /* One budget for both: a peer that stopped reading gets no second wait. */
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        tlsnic_tx_drain_on_close(s, fd, CLOSE_BUDGET_MS);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        long spent = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
        /* device mode: before the del, see dev.c */
        tlsnic_dev_tx_linger(s, fd, spent < CLOSE_BUDGET_MS ? (int)(CLOSE_BUDGET_MS - spent) : 0);
        pthread_mutex_unlock(&s->tx.lock);
    }
    sock_free(s);
}

int tlsnic_fd_dup(int oldfd, int newfd)
{
    struct tlsnic_sock *s = tlsnic_sock_get(oldfd);
    if (oldfd == newfd)
        return 0;
    tlsnic_fd_forget(newfd);
    if (!s)
        return 0;
    sock_slot *slot = slot_of(newfd, 1);
    if (!slot)
        return tlsnic_errno_ret(-ENOMEM);
    atomic_fetch_add(&s->fdrefs, 1);
    atomic_store_explicit(slot, s, memory_order_release);
    return 0;
}

void tlsnic_fd_forget(int fd)
{
    sock_slot *slot = slot_of(fd, 0);
    if (!slot)
        return;
    struct tlsnic_sock *s = atomic_exchange(slot, NULL);
    if (s)
        sock_unref(s, -1, 0);
}

int tlsnic_close(int fd)
{
    sock_slot *slot = slot_of(fd, 0);
    struct tlsnic_sock *s = slot ? atomic_exchange(slot, NULL) : NULL;
    if (s)
        sock_unref(s, fd, 1);
    return tlsnic_sys.close(fd);
}

/* ------------------------------------------------------------------------------------------ */
/* Mode                                                                                       */

static _Atomic(struct tlsnic_dev *) the_device;

void tlsnic_set_device(struct tlsnic_dev *dev)
{
    atomic_store(&the_device, dev);
}

const char *tlsnic_mode_name(enum tlsnic_mode mode)
{
    switch (mode) {
    case TLSNIC_MODE_NONE: return "none";
    case TLSNIC_MODE_SW: return "sw";
    case TLSNIC_MODE_DEVICE: return "device";
    }
    return "unknown";
}

const char *tlsnic_sw_reason_name(enum tlsnic_sw_reason reason)
{
    switch (reason) {
    case TLSNIC_SW_REASON_NONE: return "none";
    case TLSNIC_SW_REASON_NO_DEVICE: return "no device";
    case TLSNIC_SW_REASON_DEVICE_REFUSED: return "device refused";
    case TLSNIC_SW_REASON_TABLE_FULL: return "device flow table full";
    case TLSNIC_SW_REASON_CIPHER_NOT_OFFLOADED: return "cipher not offloaded";
    case TLSNIC_SW_REASON_DEVICE_GONE: return "device gone";
    case TLSNIC_SW_REASON_NOT_A_FLOW: return "not an IP flow";
    case TLSNIC_SW_REASON_RX_NOT_OFFERED: return "RX not offered (the device does not decrypt)";
    case TLSNIC_SW_REASON_NO_TCP_SEQ: return "TCP sequence number unreadable (CAP_NET_ADMIN)";
    case TLSNIC_SW_REASON_DEVICE_UNREACHABLE: return "device unreachable (no daemon)";
    }
    return "unknown";
}

int tlsnic_get_mode(int fd, enum tlsnic_dir dir, struct tlsnic_mode_info *out)
{
    struct tlsnic_sock *s = tlsnic_sock_get(fd);
    if (!s || !out || (dir != TLSNIC_DIR_TX && dir != TLSNIC_DIR_RX))
        return tlsnic_errno_ret(s ? -EINVAL : -EBADF);
    *out = dir == TLSNIC_DIR_TX ? s->tx.mode : s->rx.mode;
    return 0;
}

/*
 * Offers the direction to the device; falls back to software with the reason recorded.
 * RX only to a device that says it decrypts (TLSNIC_DEV_CAP_RX).
 */
static struct tlsnic_mode_info choose_mode(struct tlsnic_sock *s, int fd, enum tlsnic_dir dir)
{
    struct tlsnic_mode_info m = {.mode = TLSNIC_MODE_SW, .reason = TLSNIC_SW_REASON_NO_DEVICE};
    struct tlsnic_dev *dev = atomic_load(&the_device);
    if (!dev)
        return m;
    if (dir == TLSNIC_DIR_RX && !(dev->ops->caps & TLSNIC_DEV_CAP_RX)) {
        m.reason = TLSNIC_SW_REASON_RX_NOT_OFFERED;
        return m;
    }
    int rc = dir == TLSNIC_DIR_RX ? tlsnic_dev_rx_offer(s, fd, dev, &m)
                                  : tlsnic_dev_tx_offer(s, fd, dev, &m);
    if (rc < 0) {
        m.mode = TLSNIC_MODE_SW;
        m.reason = TLSNIC_SW_REASON_DEVICE_REFUSED;
        m.dev_errno = rc;
    }
    return m;
}

/* ------------------------------------------------------------------------------------------ */
/* Socket options                                                                             */

static int ulp_tls(int fd)
{
    int proto = 0, type = 0;
    socklen_t l = sizeof(proto);
    /* Not a TCP socket: let the kernel answer with its own errno. */
    if (tlsnic_sys.getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &proto, &l) < 0)
        return 1;
    l = sizeof(type);
    if (tlsnic_sys.getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &l) < 0 || type != SOCK_STREAM ||
        proto != IPPROTO_TCP)
        return 1;
    if (tlsnic_sock_get(fd))
        return -EEXIST;
    struct tcp_info ti;
    l = sizeof(ti);
    memset(&ti, 0, sizeof(ti));
    if (tlsnic_sys.getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &l) < 0)
        return -errno;
    if (ti.tcpi_state != TCP_ESTABLISHED)
        return -ENOTCONN;

    sock_slot *slot = slot_of(fd, 1);
    if (!slot)
        return -ENOMEM; /* fd beyond the table (2^20) or out of memory */
    struct tlsnic_sock *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    atomic_init(&s->fdrefs, 1);
    pthread_mutex_init(&s->tx.lock, NULL);
    pthread_mutex_init(&s->rx.lock, NULL);
    struct tlsnic_sock *expected = NULL;
    if (!atomic_compare_exchange_strong(slot, &expected, s)) {
        sock_free(s);
        return -EEXIST;
    }
    return 0;
}

static int conf_set(struct tlsnic_sock *s, int fd, enum tlsnic_dir dir, const void *optval,
                    socklen_t optlen)
{
    int tx = dir == TLSNIC_DIR_TX;
    tlsnic_rec_key **keyp = tx ? &s->tx.key : &s->rx.key;
    uint16_t old_version = tx ? s->tx.version : s->rx.version;
    uint16_t old_cipher = tx ? s->tx.cipher : s->rx.cipher;
    enum tlsnic_stat rekey_err = tx ? TLSNIC_STAT_TX_REKEY_ERROR : TLSNIC_STAT_RX_REKEY_ERROR;
    int update = *keyp != NULL;

    TLSNIC_ENSURE(optval && optlen >= sizeof(struct tls_crypto_info), EINVAL);
    if (update && tx && s->tx.dev) {
        tlsnic_stat_add(rekey_err, 1);
        return -EOPNOTSUPP; /* the device holds the old key; no rekey protocol in devops.h */
    }
    if (update && old_version != TLS_1_3_VERSION) {
        tlsnic_stat_add(rekey_err, 1);
        return -EBUSY; /* only TLS 1.3 may be rekeyed */
    }
    const struct tls_crypto_info *ci = optval;
    int rc = tlsnic_crypto_info_check(optval, optlen);
    if (rc == 0 && update && (ci->version != old_version || ci->cipher_type != old_cipher))
        rc = -EINVAL;
    if (rc < 0) {
        if (update)
            tlsnic_stat_add(rekey_err, 1);
        return rc;
    }

    tlsnic_rec_key *key = NULL;
    TLSNIC_TRY(tlsnic_rec_key_new(&key, optval, optlen));

    if (tx) {
        if (update) {
            /* Records already framed belong to the old key: seal and send them first. */
            if (s->tx.open) {
                rc = tlsnic_tx_push_locked(s, fd, MSG_NOSIGNAL);
                if (rc < 0 && rc != -EAGAIN) {
                    tlsnic_rec_key_free(key);
                    return rc;
                }
            }
            tlsnic_rec_key_free(s->tx.key);
            s->tx.key = key;
            tlsnic_stat_add(TLSNIC_STAT_TX_REKEY_OK, 1);
        } else {
            s->tx.buf = malloc(TLSNIC_REC_MAX_WIRE_LEN);
            if (!s->tx.buf) {
                tlsnic_rec_key_free(key);
                return -ENOMEM;
            }
            s->tx.key = key;
            uint64_t pre = 0;
            if (tlsnic_stream_pos(fd, &pre) == 0 && pre > 0)
                tlsnic_stat_add(TLSNIC_STAT_TX_PRE_KEY_BYTES, (int64_t)(pre - 1)); /* - SYN */
            s->tx.mode = choose_mode(s, fd, dir);
            mode_stat(dir, s->tx.mode.mode, 1);
            tlsnic_stat_add(s->tx.mode.mode == TLSNIC_MODE_DEVICE ? TLSNIC_STAT_TX_DEVICE
                                                                  : TLSNIC_STAT_TX_SW,
                            1);
        }
        s->tx.version = ci->version;
        s->tx.cipher = ci->cipher_type;
        s->tx.hdr_room = TLSNIC_REC_HDR_LEN + tlsnic_rec_key_explicit_nonce_len(key);
    } else {
        if (update) {
            if (s->rx.dev) /* the device switches at the next record; it keeps the old key */
                tlsnic_dev_rx_rekey(&s->rx, fd, s->rx.key, key, optval, optlen);
            else
                tlsnic_rec_key_free(s->rx.key);
            s->rx.key = key;
            s->rx.rekey_pending = 0;
            tlsnic_stat_add(TLSNIC_STAT_RX_REKEY_OK, 1);
        } else {
            s->rx.buf = malloc(TLSNIC_RX_BUF_LEN);
            if (!s->rx.buf) {
                tlsnic_rec_key_free(key);
                return -ENOMEM;
            }
            s->rx.key = key;
            s->rx.mode = choose_mode(s, fd, dir);
            mode_stat(dir, s->rx.mode.mode, 1);
            tlsnic_stat_add(s->rx.mode.mode == TLSNIC_MODE_DEVICE ? TLSNIC_STAT_RX_DEVICE
                                                                  : TLSNIC_STAT_RX_SW,
                            1);
        }
        s->rx.version = ci->version;
        s->rx.cipher = ci->cipher_type;
    }
    return 0;
}

/* Kernel: "prot_info.version" is that of whichever direction was configured. */
static uint16_t prot_version(const struct tlsnic_sock *s)
{
    return s->tx.key ? s->tx.version : s->rx.version;
}

static int sol_tls_set(struct tlsnic_sock *s, int fd, int optname, const void *optval,
                       socklen_t optlen)
{
    int rc;
    unsigned int val;
    switch (optname) {
    case TLS_TX:
        pthread_mutex_lock(&s->tx.lock);
        rc = conf_set(s, fd, TLSNIC_DIR_TX, optval, optlen);
        pthread_mutex_unlock(&s->tx.lock);
        return rc;
    case TLS_RX:
        pthread_mutex_lock(&s->rx.lock);
        rc = conf_set(s, fd, TLSNIC_DIR_RX, optval, optlen);
        pthread_mutex_unlock(&s->rx.lock);
        return rc;
    case TLS_TX_ZEROCOPY_RO:
        TLSNIC_ENSURE(optval && optlen >= sizeof(val), EINVAL);
        memcpy(&val, optval, sizeof(val));
        TLSNIC_ENSURE(val <= 1, EINVAL);
        s->tx.zc_ro = (int)val;
        return 0;
    case TLS_RX_EXPECT_NO_PAD:
        TLSNIC_ENSURE(prot_version(s) == TLS_1_3_VERSION && optval && optlen >= sizeof(val),
                      EINVAL);
        memcpy(&val, optval, sizeof(val));
        TLSNIC_ENSURE(val <= 1, EINVAL);
        for (socklen_t i = sizeof(val); i < optlen; i++)
            TLSNIC_ENSURE(((const uint8_t *)optval)[i] == 0, EINVAL);
        TLSNIC_ENSURE(s->rx.key != NULL, EINVAL);
        s->rx.no_pad = (int)val;
        return 0;
    default:
        return -ENOPROTOOPT;
    }
}

int tlsnic_setsockopt(int fd, int level, int optname, const void *optval, socklen_t optlen)
{
    if (level == SOL_TCP && optname == TCP_ULP && optval) {
        char name[16] = {0};
        memcpy(name, optval, optlen < sizeof(name) - 1 ? optlen : sizeof(name) - 1);
        if (strcmp(name, "tls") == 0) {
            int rc = ulp_tls(fd);
            if (rc <= 0)
                return tlsnic_errno_ret(rc);
        }
    } else if (level == SOL_TLS) {
        struct tlsnic_sock *s = tlsnic_sock_get(fd);
        if (s)
            return tlsnic_errno_ret(sol_tls_set(s, fd, optname, optval, optlen));
    }
    return tlsnic_sys.setsockopt(fd, level, optname, optval, optlen);
}

static int conf_get(struct tlsnic_sock *s, enum tlsnic_dir dir, void *optval, socklen_t *optlen)
{
    pthread_mutex_t *lock = dir == TLSNIC_DIR_TX ? &s->tx.lock : &s->rx.lock;
    TLSNIC_ENSURE(optval && *optlen >= sizeof(struct tls_crypto_info), EINVAL);
    pthread_mutex_lock(lock);
    tlsnic_rec_key *key = dir == TLSNIC_DIR_TX ? s->tx.key : s->rx.key;
    int rc = 0;
    if (!key) {
        rc = -EBUSY;
    } else {
        union tlsnic_crypto_info ci;
        rc = tlsnic_rec_key_export(key, &ci, sizeof(ci));
        if (rc >= 0 && dir == TLSNIC_DIR_TX && s->tx.dev)
            tlsnic_dev_tx_patch_info(s, &ci);
        if (rc >= 0) {
            if (*optlen == sizeof(struct tls_crypto_info))
                memcpy(optval, &ci.info, sizeof(ci.info));
            else if ((size_t)*optlen != (size_t)rc)
                rc = -EINVAL;
            else
                memcpy(optval, &ci, (size_t)rc);
            OPENSSL_cleanse(&ci, sizeof(ci));
        }
    }
    pthread_mutex_unlock(lock);
    return rc < 0 ? rc : 0;
}

int tlsnic_getsockopt(int fd, int level, int optname, void *optval, socklen_t *optlen)
{
    struct tlsnic_sock *s = tlsnic_sock_get(fd);
    if (!s || !optlen)
        return tlsnic_sys.getsockopt(fd, level, optname, optval, optlen);
    if (level == SOL_TCP && optname == TCP_ULP) {
        static const char name[16] = "tls";
        socklen_t n = *optlen < sizeof(name) ? *optlen : (socklen_t)sizeof(name);
        if (n && !optval)
            return tlsnic_errno_ret(-EFAULT);
        memcpy(optval, name, n);
        *optlen = n;
        return 0;
    }
    if (level != SOL_TLS)
        return tlsnic_sys.getsockopt(fd, level, optname, optval, optlen);
    unsigned int val;
    switch (optname) {
    case TLS_TX:
        return tlsnic_errno_ret(conf_get(s, TLSNIC_DIR_TX, optval, optlen));
    case TLS_RX:
        return tlsnic_errno_ret(conf_get(s, TLSNIC_DIR_RX, optval, optlen));
    case TLS_TX_ZEROCOPY_RO:
        if (*optlen != sizeof(val) || !optval)
            return tlsnic_errno_ret(-EINVAL);
        val = (unsigned)s->tx.zc_ro;
        memcpy(optval, &val, sizeof(val));
        return 0;
    case TLS_RX_EXPECT_NO_PAD:
        if (prot_version(s) != TLS_1_3_VERSION || *optlen != sizeof(val) || !optval)
            return tlsnic_errno_ret(-EINVAL);
        val = (unsigned)s->rx.no_pad;
        memcpy(optval, &val, sizeof(val));
        return 0;
    default:
        return tlsnic_errno_ret(-ENOPROTOOPT);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Data calls: a tlsnic socket direction with keys goes to tx.c / rx.c, anything else to libc */

ssize_t tlsnic_sendmsg(int fd, const struct msghdr *msg, int flags)
{
    struct tlsnic_sock *s = tlsnic_sock_get(fd);
    if (!s || !s->tx.key)
        return tlsnic_sys.sendmsg(fd, msg, flags);
    return errno_ret_ssize(tlsnic_tx_sendmsg(s, fd, msg, flags));
}

ssize_t tlsnic_send(int fd, const void *buf, size_t len, int flags)
{
    struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
    return tlsnic_sendmsg(fd, &msg, flags);
}

ssize_t tlsnic_write(int fd, const void *buf, size_t len)
{
    struct tlsnic_sock *s = tlsnic_sock_get(fd);
    struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
    if (!s || !s->tx.key)
        return tlsnic_sys.writev(fd, &iov, 1);
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
    return errno_ret_ssize(tlsnic_tx_sendmsg(s, fd, &msg, 0));
}

ssize_t tlsnic_writev(int fd, const struct iovec *iov, int iovcnt)
{
    struct tlsnic_sock *s = tlsnic_sock_get(fd);
    if (!s || !s->tx.key)
        return tlsnic_sys.writev(fd, iov, iovcnt);
    if (iovcnt < 0)
        return errno_ret_ssize(-EINVAL);
    struct msghdr msg = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)iovcnt};
    return errno_ret_ssize(tlsnic_tx_sendmsg(s, fd, &msg, 0));
}

ssize_t tlsnic_sendfile(int out_fd, int in_fd, off_t *offset, size_t count)
{
    struct tlsnic_sock *s = tlsnic_sock_get(out_fd);
    if (!s || !s->tx.key)
        return tlsnic_sys.sendfile(out_fd, in_fd, offset, count);
    return errno_ret_ssize(tlsnic_tx_sendfile(s, out_fd, in_fd, offset, count));
}

ssize_t tlsnic_recvmsg(int fd, struct msghdr *msg, int flags)
{
    struct tlsnic_sock *s = tlsnic_sock_get(fd);
    if (!s || !s->rx.key || (flags & MSG_ERRQUEUE))
        return tlsnic_sys.recvmsg(fd, msg, flags);
    return errno_ret_ssize(tlsnic_rx_recvmsg(s, fd, msg, flags));
}

ssize_t tlsnic_recv(int fd, void *buf, size_t len, int flags)
{
    struct tlsnic_sock *s = tlsnic_sock_get(fd);
    if (!s || !s->rx.key)
        return tlsnic_sys.recv(fd, buf, len, flags);
    struct iovec iov = {.iov_base = buf, .iov_len = len};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
    return errno_ret_ssize(tlsnic_rx_recvmsg(s, fd, &msg, flags));
}

ssize_t tlsnic_read(int fd, void *buf, size_t len)
{
    struct tlsnic_sock *s = tlsnic_sock_get(fd);
    if (!s || !s->rx.key)
        return tlsnic_sys.read(fd, buf, len);
    struct iovec iov = {.iov_base = buf, .iov_len = len};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
    return errno_ret_ssize(tlsnic_rx_recvmsg(s, fd, &msg, 0));
}

ssize_t tlsnic_readv(int fd, const struct iovec *iov, int iovcnt)
{
    struct tlsnic_sock *s = tlsnic_sock_get(fd);
    if (!s || !s->rx.key)
        return tlsnic_sys.readv(fd, iov, iovcnt);
    if (iovcnt < 0)
        return errno_ret_ssize(-EINVAL);
    struct msghdr msg = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)iovcnt};
    return errno_ret_ssize(tlsnic_rx_recvmsg(s, fd, &msg, 0));
}

int tlsnic_flush(int fd)
{
    struct tlsnic_sock *s = tlsnic_sock_get(fd);
    if (!s || !s->tx.key)
        return 0;
    pthread_mutex_lock(&s->tx.lock);
    int rc = tlsnic_tx_flush_locked(s, fd, MSG_DONTWAIT | MSG_NOSIGNAL);
    tlsnic_dev_tx_reclaim(s, fd);
    pthread_mutex_unlock(&s->tx.lock);
    return tlsnic_errno_ret(rc);
}

int tlsnic_tx_pending_any(void)
{
    return atomic_load_explicit(&tlsnic_tx_pending_sockets, memory_order_relaxed) > 0;
}

int tlsnic_flush_all(void)
{
    if (!tlsnic_tx_pending_any())
        return 0;
    for (int c = 0; c < NCHUNKS; c++) {
        sock_slot *chunk = atomic_load_explicit(&table[c], memory_order_acquire);
        if (!chunk)
            continue;
        for (int i = 0; i < CHUNK_LEN; i++) {
            struct tlsnic_sock *s = atomic_load_explicit(&chunk[i], memory_order_acquire);
            if (!s || !tlsnic_tx_has_pending(s) || pthread_mutex_trylock(&s->tx.lock) != 0)
                continue;
            (void)tlsnic_tx_flush_locked(s, c * CHUNK_LEN + i, MSG_DONTWAIT | MSG_NOSIGNAL);
            pthread_mutex_unlock(&s->tx.lock);
        }
    }
    return atomic_load(&tlsnic_tx_pending_sockets);
}

/*
 * poll: a tlsnic socket with ciphertext still pending is also watched for POLLOUT, and
 * flushed when writable, so a program that sent and now waits for the answer gets it.
 */
int tlsnic_poll(struct pollfd *fds, nfds_t nfds, int timeout)
{
    enum { MAXW = 64 };
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        nfds_t watched[MAXW];
        short asked[MAXW];
        size_t nw = 0;
        for (nfds_t i = 0; i < nfds && nw < MAXW; i++) {
            struct tlsnic_sock *s = tlsnic_sock_get(fds[i].fd);
            if (!s || !s->tx.key || !tlsnic_tx_has_pending(s))
                continue;
            pthread_mutex_lock(&s->tx.lock);
            int rc = tlsnic_tx_flush_locked(s, fds[i].fd, MSG_DONTWAIT | MSG_NOSIGNAL);
            pthread_mutex_unlock(&s->tx.lock);
            if (rc == -EAGAIN) {
                watched[nw] = i;
                asked[nw++] = fds[i].events;
                fds[i].events |= POLLOUT;
            }
        }
        int left = timeout;
        if (timeout > 0) {
            struct timespec t1;
            clock_gettime(CLOCK_MONOTONIC, &t1);
            long spent = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
            left = spent >= timeout ? 0 : timeout - (int)spent;
        }
        int rc = tlsnic_sys.poll(fds, nfds, left);
        if (nw == 0)
            return rc;
        for (size_t k = 0; k < nw; k++) {
            struct pollfd *p = &fds[watched[k]];
            p->events = asked[k];
            if (rc > 0 && (p->revents & POLLOUT)) {
                struct tlsnic_sock *s = tlsnic_sock_get(p->fd);
                if (s) {
                    pthread_mutex_lock(&s->tx.lock);
                    (void)tlsnic_tx_flush_locked(s, p->fd, MSG_DONTWAIT | MSG_NOSIGNAL);
                    pthread_mutex_unlock(&s->tx.lock);
                }
                if (!(asked[k] & POLLOUT)) {
                    p->revents &= (short)~POLLOUT;
                    if (p->revents == 0)
                        rc--;
                }
            }
        }
        /* Woken only by our own flush: wait again for what the caller asked, in the time
           it has left. */
        if (rc != 0 || left == 0)
            return rc;
    }
}
