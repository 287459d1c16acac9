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
#include <sys/resource.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/socket.h>
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
        .close = close, .ppoll = ppoll, .connect = connect,                                   \
    }

static const struct tlsnic_sys_ops libc_ops = LIBC_SYS_OPS;
struct tlsnic_sys_ops tlsnic_sys = LIBC_SYS_OPS;

void tlsnic_set_sys_ops(const struct tlsnic_sys_ops *ops)
{
    pthread_mutex_lock(&tlsnic_push_lock); /* push.c's thread reads the table under it */
    tlsnic_sys = ops ? *ops : libc_ops;
    pthread_mutex_unlock(&tlsnic_push_lock);
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
/* The fd table: two levels of atomic words, so an fd that never did TCP_ULP costs one load  */
/* of a NULL chunk pointer. A slot holds a socket (the program's fd of it) or, tagged with    */
/* the low bit, marks the socket's own descriptor kfd (ktls_int.h), which the program never   */
/* sees. Lookups take a reference under the slot's stripe lock; a close clears the slot      */
/* under the same lock, so no lookup can reach a socket whose last reference is gone.         */

#define CHUNK_BITS 10
#define CHUNK_LEN (1 << CHUNK_BITS)
#define NCHUNKS 1024 /* fds below 2^20 */
#define NSTRIPES 64
#define SLOT_PRIVATE ((uintptr_t)1)

typedef _Atomic(uintptr_t) sock_slot;
static _Atomic(sock_slot *) table[NCHUNKS];
static pthread_mutex_t stripes[NSTRIPES] = {[0 ... NSTRIPES - 1] = PTHREAD_MUTEX_INITIALIZER};

/* Bumped in a forked child: sockets made before carry an older value (tlsnic_sock.fork_gen). */
static atomic_uint fork_gen;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t default_offload_lock = PTHREAD_MUTEX_INITIALIZER;

static void atfork_child(void)
{
    /* Another thread of the parent may have held any of these at the fork. */
    for (int i = 0; i < NSTRIPES; i++)
        pthread_mutex_init(&stripes[i], NULL);
    pthread_mutex_init(&default_offload_lock, NULL);
    atomic_fetch_add(&fork_gen, 1);
}

static void atfork_register(void)
{
    (void)pthread_atfork(NULL, NULL, atfork_child);
}

static pthread_mutex_t *stripe_of(int fd)
{
    return &stripes[(unsigned)fd % NSTRIPES];
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

static struct tlsnic_sock *slot_sock(uintptr_t v)
{
    return (v & SLOT_PRIVATE) ? NULL : (struct tlsnic_sock *)v;
}

struct tlsnic_sock *tlsnic_sock_get(int fd)
{
    sock_slot *slot = slot_of(fd, 0);
    if (!slot || !slot_sock(atomic_load_explicit(slot, memory_order_relaxed)))
        return NULL; /* the common case: no lock */
    pthread_mutex_t *m = stripe_of(fd);
    pthread_mutex_lock(m);
    struct tlsnic_sock *s = slot_sock(atomic_load_explicit(slot, memory_order_relaxed));
    if (s)
        atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
    pthread_mutex_unlock(m);
    return s;
}

/* Puts v in fd's slot (under its stripe lock); returns what the slot held. */
static uintptr_t slot_swap(int fd, sock_slot *slot, uintptr_t v)
{
    pthread_mutex_t *m = stripe_of(fd);
    pthread_mutex_lock(m);
    uintptr_t old = atomic_exchange_explicit(slot, v, memory_order_acq_rel);
    pthread_mutex_unlock(m);
    return old;
}

/* Takes the program's fd out of the table; returns the socket (its slot's reference). */
static struct tlsnic_sock *slot_take(int fd)
{
    sock_slot *slot = slot_of(fd, 0);
    if (!slot || !slot_sock(atomic_load_explicit(slot, memory_order_relaxed)))
        return NULL;
    pthread_mutex_t *m = stripe_of(fd);
    pthread_mutex_lock(m);
    uintptr_t v = atomic_load_explicit(slot, memory_order_relaxed);
    struct tlsnic_sock *s = slot_sock(v);
    if (s)
        atomic_store_explicit(slot, 0, memory_order_relaxed);
    pthread_mutex_unlock(m);
    if (s && atomic_fetch_sub(&s->fds, 1) == 1)
        tlsnic_push_forget(s); /* the release (after the caller's put) stays here */
    return s;
}

int tlsnic_is_tls(int fd)
{
    sock_slot *slot = slot_of(fd, 0);
    return slot && slot_sock(atomic_load_explicit(slot, memory_order_relaxed)) != NULL;
}

int tlsnic_fd_is_private(int fd)
{
    sock_slot *slot = slot_of(fd, 0);
    return slot && (atomic_load_explicit(slot, memory_order_relaxed) & SLOT_PRIVATE) != 0;
}

/* A forked child's copy of a socket its parent made: its record state is the parent's. */
static int inherited(const struct tlsnic_sock *s)
{
    return s->fork_gen != atomic_load_explicit(&fork_gen, memory_order_relaxed);
}

/* -EBADFD for a socket a forked child inherited (ktls.h), else 0. */
static int usable(const struct tlsnic_sock *s)
{
    return inherited(s) ? -EBADFD : 0;
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

/* child: a forked child's copy; its locks may be held by parent threads that do not exist
 * here, and its device context and record store are the parent's: touch neither (the
 * device part was forgotten first, tlsnic_close_inherited). */
static void sock_free(struct tlsnic_sock *s, int child)
{
    tlsnic_tx_forget_pending(s);
    if (!child) {
        tlsnic_dev_tx_free(s); /* del: the device lets go of the store before it goes */
        tlsnic_dev_rx_free(s); /* (ended already by the close step, closer.c, if closed) */
    }
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
    if (!child) {
        pthread_mutex_destroy(&s->tx.lock);
        pthread_mutex_destroy(&s->rx.lock);
    }
    free(s);
}

/* Takes kfd's entry out of the table; closes kfd. Before the free: private_still_ours
 * reads the socket. */
static void drop_private(struct tlsnic_sock *s)
{
    int kfd = s->kfd;
    uintptr_t private_tag = (uintptr_t)s | SLOT_PRIVATE;
    sock_slot *slot = slot_of(kfd, 0);
    pthread_mutex_lock(stripe_of(kfd));
    if (slot && atomic_load_explicit(slot, memory_order_relaxed) == private_tag)
        atomic_store_explicit(slot, 0, memory_order_relaxed);
    pthread_mutex_unlock(stripe_of(kfd));
}

void tlsnic_sock_close_kfd(struct tlsnic_sock *s)
{
    drop_private(s);
    (void)tlsnic_sys.close(s->kfd);
    s->kfd = -1;
}

void tlsnic_sock_free(struct tlsnic_sock *s)
{
    sock_free(s, 0);
}

/*
 * The last reference is gone: no fd of the program names the socket and no call is in
 * progress on it. What the kernel does when it releases a kTLS socket, without making the
 * caller wait (close(2) returns at once): sealed records go out and, in device mode, the
 * device's end of the flow is done (a release to tlsnicd, or a wait for ACKs before the
 * del), here when nothing needs waiting, else by the closer (closer.c), which holds the
 * socket's own descriptor kfd until it is done, then closes it and frees the socket. A
 * forked child's copy only forgets its state: the socket, its pending bytes, the record
 * store and the device context are the parent's.
 */
static void sock_release(struct tlsnic_sock *s)
{
    atomic_store(&s->releasing, 1);
    if (inherited(s)) {
        int kfd = s->kfd;
        tlsnic_close_inherited(s);
        drop_private(s);
        sock_free(s, 1);
        (void)tlsnic_sys.close(kfd);
        return;
    }
    if (tlsnic_close_last(s, s->kfd))
        return; /* the closer's now */
    int kfd = s->kfd;
    drop_private(s);
    sock_free(s, 0);
    (void)tlsnic_sys.close(kfd);
}

void tlsnic_sock_put(struct tlsnic_sock *s)
{
    if (s && atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) == 1)
        sock_release(s);
}

int tlsnic_fd_dup(int oldfd, int newfd)
{
    if (oldfd == newfd)
        return 0;
    struct tlsnic_sock *s = tlsnic_sock_get(oldfd);
    tlsnic_fd_forget(newfd);
    if (!s)
        return 0;
    sock_slot *slot = slot_of(newfd, 1);
    if (!slot) {
        tlsnic_sock_put(s);
        return tlsnic_errno_ret(-ENOMEM);
    }
    /* The lookup's reference becomes the slot's. */
    atomic_fetch_add(&s->fds, 1);
    struct tlsnic_sock *old = slot_sock(slot_swap(newfd, slot, (uintptr_t)s));
    if (old && atomic_fetch_sub(&old->fds, 1) == 1)
        tlsnic_push_forget(old);
    tlsnic_sock_put(old);
    return 0;
}

void tlsnic_fd_forget(int fd)
{
    tlsnic_sock_put(slot_take(fd));
}

/* The socket whose private descriptor fd is, if fd still is that descriptor. */
static int private_still_ours(int fd)
{
    sock_slot *slot = slot_of(fd, 0);
    pthread_mutex_t *m = stripe_of(fd);
    pthread_mutex_lock(m);
    uintptr_t v = slot ? atomic_load_explicit(slot, memory_order_relaxed) : 0;
    int ours = 0;
    if (v & SLOT_PRIVATE) {
        const struct tlsnic_sock *s = (const struct tlsnic_sock *)(v & ~SLOT_PRIVATE);
        struct stat st;
        /* Closed behind tlsnic's back (a raw close_range, closefrom) and the number reused:
         * the slot is stale, the program owns the fd. */
        ours = fstat(fd, &st) == 0 && st.st_dev == s->kdev && st.st_ino == s->kino;
        if (!ours)
            atomic_store_explicit(slot, 0, memory_order_relaxed);
    }
    pthread_mutex_unlock(m);
    return ours;
}

int tlsnic_close(int fd)
{
    if (tlsnic_fd_is_private(fd) && private_still_ours(fd))
        return tlsnic_errno_ret(-EBADF); /* the program never had this descriptor */
    tlsnic_sock_put(slot_take(fd));
    return tlsnic_sys.close(fd);
}

/* ------------------------------------------------------------------------------------------ */
/* Mode                                                                                       */

/* The binding a socket gets at TCP_ULP (ktls.h): read once per socket, set rarely. */
static struct tlsnic_offload default_offload;

void tlsnic_set_default_offload(const struct tlsnic_offload *off)
{
    pthread_mutex_lock(&default_offload_lock);
    default_offload = off ? *off : (struct tlsnic_offload){0};
    pthread_mutex_unlock(&default_offload_lock);
}

int tlsnic_sock_set_offload(int fd, const struct tlsnic_offload *off)
{
    struct tlsnic_sock *s = tlsnic_sock_get(fd);
    if (!s)
        return tlsnic_errno_ret(-EBADF);
    int rc = usable(s);
    if (rc == 0) {
        /* Both locks: TLS_TX reads the binding under the TX lock, TLS_RX under the RX one. */
        pthread_mutex_lock(&s->tx.lock);
        pthread_mutex_lock(&s->rx.lock);
        rc = s->tx.key || s->rx.key ? -EBUSY : 0;
        if (rc == 0)
            s->offload = off ? *off : (struct tlsnic_offload){0};
        pthread_mutex_unlock(&s->rx.lock);
        pthread_mutex_unlock(&s->tx.lock);
    }
    tlsnic_sock_put(s);
    return tlsnic_errno_ret(rc);
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
    int rc = !s ? -EBADF : (!out || (dir != TLSNIC_DIR_TX && dir != TLSNIC_DIR_RX)) ? -EINVAL
                                                                                    : usable(s);
    if (rc == 0) {
        pthread_mutex_t *lock = dir == TLSNIC_DIR_TX ? &s->tx.lock : &s->rx.lock;
        pthread_mutex_lock(lock);
        *out = dir == TLSNIC_DIR_TX ? s->tx.mode : s->rx.mode;
        pthread_mutex_unlock(lock);
    }
    tlsnic_sock_put(s);
    return tlsnic_errno_ret(rc);
}

/*
 * Offers the direction to the device; falls back to software with the reason recorded.
 * RX only to a device that says it decrypts (TLSNIC_DEV_CAP_RX).
 */
static struct tlsnic_mode_info choose_mode(struct tlsnic_sock *s, int fd, enum tlsnic_dir dir)
{
    struct tlsnic_mode_info m = {.mode = TLSNIC_MODE_SW, .reason = TLSNIC_SW_REASON_NO_DEVICE};
    struct tlsnic_dev *dev = s->offload.dev; /* the caller holds the direction's lock */
    if (!dev)
        return m;
    if (dir == TLSNIC_DIR_RX && !(dev->ops->caps & TLSNIC_DEV_CAP_RX)) {
        m.reason = TLSNIC_SW_REASON_RX_NOT_OFFERED;
        return m;
    }
    int rc = dir == TLSNIC_DIR_RX ? tlsnic_dev_rx_offer(s, fd, &m) : tlsnic_dev_tx_offer(s, fd, &m);
    if (rc < 0) {
        m.mode = TLSNIC_MODE_SW;
        m.reason = TLSNIC_SW_REASON_DEVICE_REFUSED;
        m.dev_errno = rc;
    }
    return m;
}

/* ------------------------------------------------------------------------------------------ */
/* The caller's memory, read and written as the kernel's copy_{from,to}_user do: an address  */
/* the process cannot read (or write) gives -EFAULT instead of a crash. For option values    */
/* (rare calls); the data path checks iovecs cheaply instead (ktls_int.h).                    */

/* process_vm_readv / writev on this process; where they are refused (seccomp, ptrace
 * policy), a pipe: write(2) from src fails with EFAULT the same way. */
static int user_copy(void *dst, const void *src, size_t n, int to_user)
{
    if (n == 0)
        return 0;
    if (!dst || !src)
        return -EFAULT;
    struct iovec local = {.iov_base = to_user ? (void *)src : dst, .iov_len = n};
    struct iovec remote = {.iov_base = to_user ? dst : (void *)src, .iov_len = n};
    ssize_t r = to_user ? process_vm_writev(getpid(), &local, 1, &remote, 1, 0)
                        : process_vm_readv(getpid(), &local, 1, &remote, 1, 0);
    if (r == (ssize_t)n)
        return 0;
    if (r >= 0 || errno == EFAULT)
        return -EFAULT;
    if (n > 4096)
        return -EFAULT; /* more than the pipe holds at once: no option value is that long */
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return -errno;
    struct iovec in = {.iov_base = (void *)src, .iov_len = n};
    int rc = tlsnic_sys.writev(p[1], &in, 1) == (ssize_t)n ? 0 : -EFAULT;
    if (rc == 0) {
        struct iovec out = {.iov_base = dst, .iov_len = n};
        rc = tlsnic_sys.readv(p[0], &out, 1) == (ssize_t)n ? 0 : -EFAULT;
    }
    tlsnic_sys.close(p[0]);
    tlsnic_sys.close(p[1]);
    return rc;
}

static int user_read(void *dst, const void *src, size_t n)
{
    return user_copy(dst, src, n, 0);
}

static int user_write(void *dst, const void *src, size_t n)
{
    return user_copy(dst, src, n, 1);
}

/* TCP_ULP's name as the kernel's strncpy_from_sockptr takes it: up to the NUL or the
 * limit, -EFAULT only if a byte before either is unreadable. */
static int user_read_name(char *name, size_t cap, const void *src, size_t n)
{
    if (n > cap - 1)
        n = cap - 1;
    memset(name, 0, cap);
    if (user_read(name, src, n) == 0)
        return 0;
    for (size_t i = 0; i < n; i++) {
        TLSNIC_TRY(user_read(name + i, (const char *)src + i, 1));
        if (name[i] == '\0')
            return 0;
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Socket options                                                                             */

/*
 * tlsnic's own descriptor of the socket fd: CLOEXEC, and placed high (below the soft
 * RLIMIT_NOFILE, at most 4096) where it stays out of the way of descriptor numbers a
 * program picks itself (0-2 after a daemonizing close, select's FD_SETSIZE).
 */
static int dup_private(int fd)
{
    struct rlimit rl;
    long lo = 3;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
        long cap = rl.rlim_cur < 4096 ? (long)rl.rlim_cur : 4096;
        if (cap - 256 > lo)
            lo = cap - 256;
    }
    int kfd = tlsnic_sys.fcntl(fd, F_DUPFD_CLOEXEC, (int)lo);
    if (kfd < 0 && lo > 3)
        kfd = tlsnic_sys.fcntl(fd, F_DUPFD_CLOEXEC, 3);
    return kfd < 0 ? -errno : kfd;
}

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
    if (tlsnic_is_tls(fd))
        return -EEXIST;
    struct tcp_info ti;
    l = sizeof(ti);
    memset(&ti, 0, sizeof(ti));
    if (tlsnic_sys.getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &l) < 0)
        return -errno;
    if (ti.tcpi_state != TCP_ESTABLISHED)
        return -ENOTCONN;

    pthread_once(&atfork_once, atfork_register);
    sock_slot *slot = slot_of(fd, 1);
    if (!slot)
        return -ENOMEM; /* fd beyond the table (2^20) or out of memory */
    struct tlsnic_sock *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    struct stat st;
    int kfd = dup_private(fd);
    sock_slot *kslot = kfd >= 0 ? slot_of(kfd, 1) : NULL;
    if (!kslot || fstat(kfd, &st) < 0) {
        if (kfd >= 0)
            tlsnic_sys.close(kfd);
        free(s);
        return kfd < 0 ? kfd : -ENOMEM;
    }
    s->kfd = kfd;
    s->kdev = st.st_dev;
    s->kino = st.st_ino;
    s->fork_gen = atomic_load(&fork_gen);
    atomic_init(&s->refs, 1); /* the slot's */
    atomic_init(&s->fds, 1);
    s->tx.max_payload = TLSNIC_REC_MAX_PLAINTEXT;
    pthread_mutex_lock(&default_offload_lock);
    s->offload = default_offload;
    pthread_mutex_unlock(&default_offload_lock);
    pthread_mutex_init(&s->tx.lock, NULL);
    pthread_mutex_init(&s->rx.lock, NULL);
    (void)slot_swap(kfd, kslot, (uintptr_t)s | SLOT_PRIVATE);
    pthread_mutex_t *m = stripe_of(fd);
    pthread_mutex_lock(m);
    int won = atomic_load_explicit(slot, memory_order_relaxed) == 0;
    if (won)
        atomic_store_explicit(slot, (uintptr_t)s, memory_order_relaxed);
    pthread_mutex_unlock(m);
    if (!won) { /* another thread's TCP_ULP on the same fd got there first */
        tlsnic_sock_put(s);
        return -EEXIST;
    }
    return 0;
}

/* The size of the crypto_info struct of each cipher <linux/tls.h> knows (the kernel's
 * get_cipher_desc), whether or not tlsnic can run it; 0: unknown. */
static size_t uapi_info_size(uint16_t cipher)
{
    switch (cipher) {
    case TLS_CIPHER_AES_GCM_128: return sizeof(struct tls12_crypto_info_aes_gcm_128);
    case TLS_CIPHER_AES_GCM_256: return sizeof(struct tls12_crypto_info_aes_gcm_256);
    case TLS_CIPHER_AES_CCM_128: return sizeof(struct tls12_crypto_info_aes_ccm_128);
    case TLS_CIPHER_CHACHA20_POLY1305: return sizeof(struct tls12_crypto_info_chacha20_poly1305);
    case TLS_CIPHER_SM4_GCM: return sizeof(struct tls12_crypto_info_sm4_gcm);
    case TLS_CIPHER_SM4_CCM: return sizeof(struct tls12_crypto_info_sm4_ccm);
    case TLS_CIPHER_ARIA_GCM_128: return sizeof(struct tls12_crypto_info_aria_gcm_128);
    case TLS_CIPHER_ARIA_GCM_256: return sizeof(struct tls12_crypto_info_aria_gcm_256);
    default: return 0;
    }
}

/*
 * The checks of the kernel's do_tls_setsockopt_conf, in its order and with its errnos:
 * EINVAL (no value, shorter than the header), EBUSY (keys set and not TLS 1.3), EFAULT
 * (header unreadable), EINVAL (rekey changing version or cipher; unknown version; the other
 * direction keyed with another version or cipher; unknown cipher; ARIA with TLS 1.3; length
 * not the cipher's), EFAULT (rest unreadable). ci receives the value (the caller wipes it).
 */
static int conf_check(struct tlsnic_sock *s, int tx, const void *optval, socklen_t optlen,
                      union tlsnic_crypto_info *ci)
{
    tlsnic_rec_key *key = tx ? s->tx.key : s->rx.key;
    TLSNIC_ENSURE(optval && optlen >= sizeof(struct tls_crypto_info), EINVAL);
    if (key && (tx ? s->tx.version : s->rx.version) != TLS_1_3_VERSION)
        return -EBUSY; /* only TLS 1.3 may be rekeyed */
    TLSNIC_TRY(user_read(&ci->info, optval, sizeof(ci->info)));
    if (key) {
        TLSNIC_ENSURE(ci->info.version == (tx ? s->tx.version : s->rx.version) &&
                          ci->info.cipher_type == (tx ? s->tx.cipher : s->rx.cipher),
                      EINVAL);
    } else {
        TLSNIC_ENSURE(ci->info.version == TLS_1_2_VERSION || ci->info.version == TLS_1_3_VERSION,
                      EINVAL);
        uint32_t prot = atomic_load(&s->prot); /* the other direction's, if keyed */
        TLSNIC_ENSURE(prot == 0 || prot == ((uint32_t)ci->info.version << 16 | ci->info.cipher_type),
                      EINVAL);
    }
    size_t want = uapi_info_size(ci->info.cipher_type);
    TLSNIC_ENSURE(want != 0 && want <= sizeof(*ci), EINVAL);
    TLSNIC_ENSURE(!((ci->info.cipher_type == TLS_CIPHER_ARIA_GCM_128 ||
                     ci->info.cipher_type == TLS_CIPHER_ARIA_GCM_256) &&
                    ci->info.version != TLS_1_2_VERSION),
                  EINVAL);
    TLSNIC_ENSURE(optlen == want, EINVAL);
    return user_read((uint8_t *)ci + sizeof(ci->info), (const uint8_t *)optval + sizeof(ci->info),
                     want - sizeof(ci->info));
}

static int conf_set(struct tlsnic_sock *s, int fd, enum tlsnic_dir dir, const void *optval,
                    socklen_t optlen)
{
    int tx = dir == TLSNIC_DIR_TX;
    enum tlsnic_stat rekey_err = tx ? TLSNIC_STAT_TX_REKEY_ERROR : TLSNIC_STAT_RX_REKEY_ERROR;
    int update = (tx ? s->tx.key : s->rx.key) != NULL;

    union tlsnic_crypto_info value;
    memset(&value, 0, sizeof(value));
    int rc = conf_check(s, tx, optval, optlen, &value);
    if (rc == 0 && update && tx && s->tx.dev)
        rc = -EOPNOTSUPP; /* the device holds the old key; no rekey protocol in devops.h */
    tlsnic_rec_key *key = NULL;
    if (rc == 0)
        rc = tlsnic_rec_key_new(&key, &value, optlen);
    OPENSSL_cleanse(&value, sizeof(value));
    if (rc < 0) {
        if (update)
            tlsnic_stat_add(rekey_err, 1);
        return rc;
    }
    const struct tls_crypto_info *ci = &(struct tls_crypto_info){
        .version = tlsnic_rec_key_version(key), .cipher_type = tlsnic_rec_key_cipher(key)};

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
            atomic_store(&s->tx_on, 1);
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
            atomic_store(&s->rx_on, 1);
            mode_stat(dir, s->rx.mode.mode, 1);
            tlsnic_stat_add(s->rx.mode.mode == TLSNIC_MODE_DEVICE ? TLSNIC_STAT_RX_DEVICE
                                                                  : TLSNIC_STAT_RX_SW,
                            1);
        }
        s->rx.version = ci->version;
        s->rx.cipher = ci->cipher_type;
    }
    uint32_t none = 0;
    atomic_compare_exchange_strong(&s->prot, &none, (uint32_t)ci->version << 16 | ci->cipher_type);
    return 0;
}

/* Kernel: "prot_info.version" is that of whichever direction was configured. */
static uint16_t prot_version(struct tlsnic_sock *s)
{
    return (uint16_t)(atomic_load(&s->prot) >> 16);
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
        TLSNIC_ENSURE(optval && optlen == sizeof(val), EINVAL);
        TLSNIC_TRY(user_read(&val, optval, sizeof(val)));
        TLSNIC_ENSURE(val <= 1, EINVAL);
        pthread_mutex_lock(&s->tx.lock);
        s->tx.zc_ro = (int)val;
        pthread_mutex_unlock(&s->tx.lock);
        return 0;
    case TLS_RX_EXPECT_NO_PAD:
        TLSNIC_ENSURE(prot_version(s) == TLS_1_3_VERSION && optval && optlen >= sizeof(val),
                      EINVAL);
        TLSNIC_TRY(user_read(&val, optval, sizeof(val)));
        TLSNIC_ENSURE(val <= 1, EINVAL);
        for (socklen_t i = sizeof(val); i < optlen; i++) {
            uint8_t b;
            TLSNIC_TRY(user_read(&b, (const uint8_t *)optval + i, 1));
            TLSNIC_ENSURE(b == 0, EINVAL);
        }
        pthread_mutex_lock(&s->rx.lock);
        rc = s->rx.key != NULL ? 0 : -EINVAL;
        if (rc == 0)
            s->rx.no_pad = (int)val;
        pthread_mutex_unlock(&s->rx.lock);
        return rc;
    case TLS_TX_MAX_PAYLOAD_LEN: {
        /* Linux 6.19 (the TLS record size limit, RFC 8449): plaintext per record. */
        uint16_t v;
        pthread_mutex_lock(&s->tx.lock);
        rc = s->tx.open ? -EBUSY : !optval || optlen != sizeof(v) ? -EINVAL
                                                                  : user_read(&v, optval, sizeof(v));
        if (rc == 0 && (v < TLSNIC_MIN_RECORD_SIZE_LIMIT || v > TLSNIC_REC_MAX_PLAINTEXT))
            rc = -EINVAL;
        if (rc == 0)
            s->tx.max_payload = v;
        pthread_mutex_unlock(&s->tx.lock);
        return rc;
    }
    default:
        return -ENOPROTOOPT;
    }
}

int tlsnic_setsockopt(int fd, int level, int optname, const void *optval, socklen_t optlen)
{
    if (level == SOL_TCP && optname == TCP_ULP && optval && optlen >= 1) {
        char name[16];
        int rc = user_read_name(name, sizeof(name), optval, optlen);
        if (rc < 0)
            return tlsnic_errno_ret(rc); /* the kernel's EFAULT, not a crash */
        if (strcmp(name, "tls") == 0) {
            rc = ulp_tls(fd);
            if (rc <= 0)
                return tlsnic_errno_ret(rc);
        }
    } else if (level == SOL_TLS) {
        struct tlsnic_sock *s = tlsnic_sock_get(fd);
        if (s) {
            int rc = usable(s);
            if (rc == 0)
                rc = sol_tls_set(s, s->kfd, optname, optval, optlen);
            tlsnic_sock_put(s);
            return tlsnic_errno_ret(rc);
        }
    }
    return tlsnic_sys.setsockopt(fd, level, optname, optval, optlen);
}

static int conf_get(struct tlsnic_sock *s, enum tlsnic_dir dir, void *optval, socklen_t *optlen,
                    socklen_t len)
{
    pthread_mutex_t *lock = dir == TLSNIC_DIR_TX ? &s->tx.lock : &s->rx.lock;
    TLSNIC_ENSURE(optval && len >= sizeof(struct tls_crypto_info), EINVAL);
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
            if (len == sizeof(struct tls_crypto_info))
                rc = user_write(optval, &ci.info, sizeof(ci.info));
            else if ((size_t)len != (size_t)rc)
                rc = -EINVAL;
            else
                rc = user_write(optval, &ci, (size_t)rc);
            OPENSSL_cleanse(&ci, sizeof(ci));
        }
    }
    pthread_mutex_unlock(lock);
    (void)optlen; /* the kernel leaves it as it was */
    return rc < 0 ? rc : 0;
}

/* An unsigned int option: its length must be exactly that (do_tls_getsockopt_tx_zc). */
static int put_uint(void *optval, socklen_t len, unsigned int val)
{
    TLSNIC_ENSURE(len == sizeof(val) && optval, EINVAL);
    return user_write(optval, &val, sizeof(val));
}

static int sol_tls_get(struct tlsnic_sock *s, int optname, void *optval, socklen_t *optlen)
{
    socklen_t len;
    TLSNIC_TRY(user_read(&len, optlen, sizeof(len)));
    int val;
    switch (optname) {
    case TLS_TX:
        return conf_get(s, TLSNIC_DIR_TX, optval, optlen, len);
    case TLS_RX:
        return conf_get(s, TLSNIC_DIR_RX, optval, optlen, len);
    case TLS_TX_ZEROCOPY_RO:
        pthread_mutex_lock(&s->tx.lock);
        val = s->tx.zc_ro;
        pthread_mutex_unlock(&s->tx.lock);
        return put_uint(optval, len, (unsigned)val);
    case TLS_RX_EXPECT_NO_PAD:
        TLSNIC_ENSURE(prot_version(s) == TLS_1_3_VERSION, EINVAL);
        pthread_mutex_lock(&s->rx.lock);
        val = s->rx.no_pad;
        pthread_mutex_unlock(&s->rx.lock);
        return put_uint(optval, len, (unsigned)val);
    case TLS_TX_MAX_PAYLOAD_LEN: {
        pthread_mutex_lock(&s->tx.lock);
        uint16_t v = (uint16_t)s->tx.max_payload;
        pthread_mutex_unlock(&s->tx.lock);
        TLSNIC_ENSURE(len >= sizeof(v), EINVAL);
        len = sizeof(v);
        TLSNIC_TRY(user_write(optlen, &len, sizeof(len)));
        return user_write(optval, &v, sizeof(v));
    }
    default:
        return -ENOPROTOOPT;
    }
}

int tlsnic_getsockopt(int fd, int level, int optname, void *optval, socklen_t *optlen)
{
    if (!optlen || !((level == SOL_TCP && optname == TCP_ULP) || level == SOL_TLS) ||
        !tlsnic_is_tls(fd))
        return tlsnic_sys.getsockopt(fd, level, optname, optval, optlen);
    struct tlsnic_sock *s = tlsnic_sock_get(fd);
    if (!s) /* closed meanwhile */
        return tlsnic_sys.getsockopt(fd, level, optname, optval, optlen);
    int rc = 0;
    if (level == SOL_TCP) {
        static const char name[16] = "tls";
        socklen_t len = 0;
        rc = user_read(&len, optlen, sizeof(len));
        socklen_t n = len < sizeof(name) ? len : (socklen_t)sizeof(name);
        if (rc == 0)
            rc = user_write(optval, name, n);
        if (rc == 0)
            rc = user_write(optlen, &n, sizeof(n));
    } else {
        rc = usable(s);
        if (rc == 0)
            rc = sol_tls_get(s, optname, optval, optlen);
    }
    tlsnic_sock_put(s);
    return tlsnic_errno_ret(rc);
}

/* ------------------------------------------------------------------------------------------ */
/* Data calls: a tlsnic socket direction with keys goes to tx.c / rx.c on the socket's own   */
/* descriptor, anything else to libc on the program's.                                        */

/* The socket of fd if its direction has keys (with a reference), else NULL. */
static struct tlsnic_sock *get_keyed(int fd, int tx)
{
    struct tlsnic_sock *s = tlsnic_sock_get(fd);
    if (s && !atomic_load_explicit(tx ? &s->tx_on : &s->rx_on, memory_order_acquire)) {
        tlsnic_sock_put(s);
        s = NULL;
    }
    return s;
}

/* Drops the call's reference, then reports rc libc's way (the last put may make calls). */
static ssize_t put_ret(struct tlsnic_sock *s, ssize_t rc)
{
    tlsnic_sock_put(s);
    return errno_ret_ssize(rc);
}

ssize_t tlsnic_sendmsg(int fd, const struct msghdr *msg, int flags)
{
    struct tlsnic_sock *s = get_keyed(fd, 1);
    if (!s)
        return tlsnic_sys.sendmsg(fd, msg, flags);
    ssize_t rc = usable(s);
    if (rc == 0)
        rc = tlsnic_tx_sendmsg(s, s->kfd, msg, flags);
    return put_ret(s, rc);
}

ssize_t tlsnic_send(int fd, const void *buf, size_t len, int flags)
{
    struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
    return tlsnic_sendmsg(fd, &msg, flags);
}

ssize_t tlsnic_write(int fd, const void *buf, size_t len)
{
    struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
    struct tlsnic_sock *s = get_keyed(fd, 1);
    if (!s)
        return tlsnic_sys.writev(fd, &iov, 1);
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
    ssize_t rc = usable(s);
    if (rc == 0)
        rc = tlsnic_tx_sendmsg(s, s->kfd, &msg, 0);
    return put_ret(s, rc);
}

ssize_t tlsnic_writev(int fd, const struct iovec *iov, int iovcnt)
{
    struct tlsnic_sock *s = get_keyed(fd, 1);
    if (!s)
        return tlsnic_sys.writev(fd, iov, iovcnt);
    ssize_t rc = iovcnt < 0 ? -EINVAL : usable(s);
    if (rc == 0) {
        struct msghdr msg = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)iovcnt};
        rc = tlsnic_tx_sendmsg(s, s->kfd, &msg, 0);
    }
    return put_ret(s, rc);
}

ssize_t tlsnic_sendfile(int out_fd, int in_fd, off_t *offset, size_t count)
{
    struct tlsnic_sock *s = get_keyed(out_fd, 1);
    if (!s)
        return tlsnic_sys.sendfile(out_fd, in_fd, offset, count);
    ssize_t rc = usable(s);
    if (rc == 0)
        rc = tlsnic_tx_sendfile(s, s->kfd, in_fd, offset, count);
    return put_ret(s, rc);
}

ssize_t tlsnic_recvmsg(int fd, struct msghdr *msg, int flags)
{
    struct tlsnic_sock *s = (flags & MSG_ERRQUEUE) ? NULL : get_keyed(fd, 0);
    if (!s)
        return tlsnic_sys.recvmsg(fd, msg, flags);
    ssize_t rc = usable(s);
    if (rc == 0)
        rc = tlsnic_rx_recvmsg(s, s->kfd, msg, flags);
    return put_ret(s, rc);
}

ssize_t tlsnic_recv(int fd, void *buf, size_t len, int flags)
{
    struct tlsnic_sock *s = get_keyed(fd, 0);
    if (!s)
        return tlsnic_sys.recv(fd, buf, len, flags);
    struct iovec iov = {.iov_base = buf, .iov_len = len};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
    ssize_t rc = usable(s);
    if (rc == 0)
        rc = tlsnic_rx_recvmsg(s, s->kfd, &msg, flags);
    return put_ret(s, rc);
}

ssize_t tlsnic_read(int fd, void *buf, size_t len)
{
    struct tlsnic_sock *s = get_keyed(fd, 0);
    if (!s)
        return tlsnic_sys.read(fd, buf, len);
    struct iovec iov = {.iov_base = buf, .iov_len = len};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
    ssize_t rc = usable(s);
    if (rc == 0)
        rc = tlsnic_rx_recvmsg(s, s->kfd, &msg, 0);
    return put_ret(s, rc);
}

ssize_t tlsnic_readv(int fd, const struct iovec *iov, int iovcnt)
{
    struct tlsnic_sock *s = get_keyed(fd, 0);
    if (!s)
        return tlsnic_sys.readv(fd, iov, iovcnt);
    ssize_t rc = iovcnt < 0 ? -EINVAL : usable(s);
    if (rc == 0) {
        struct msghdr msg = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)iovcnt};
        rc = tlsnic_rx_recvmsg(s, s->kfd, &msg, 0);
    }
    return put_ret(s, rc);
}

int tlsnic_flush(int fd)
{
    struct tlsnic_sock *s = get_keyed(fd, 1);
    if (!s)
        return 0;
    int rc = usable(s);
    if (rc == 0) {
        pthread_mutex_lock(&s->tx.lock);
        rc = tlsnic_tx_flush_locked(s, s->kfd, MSG_DONTWAIT | MSG_NOSIGNAL);
        tlsnic_dev_tx_reclaim(s, s->kfd);
        pthread_mutex_unlock(&s->tx.lock);
    }
    return (int)put_ret(s, rc);
}

int tlsnic_tx_pending_any(void)
{
    return atomic_load_explicit(&tlsnic_tx_pending_sockets, memory_order_relaxed) > 0;
}

/* Non-blocking flush of one socket's pending TX, if nobody holds its TX lock. */
static int flush_try(struct tlsnic_sock *s)
{
    if (inherited(s) || !tlsnic_tx_has_pending(s) || pthread_mutex_trylock(&s->tx.lock) != 0)
        return tlsnic_tx_has_pending(s) ? -EAGAIN : 0;
    int rc = tlsnic_tx_flush_locked(s, s->kfd, MSG_DONTWAIT | MSG_NOSIGNAL);
    pthread_mutex_unlock(&s->tx.lock);
    return rc;
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
            /* A socket is never touched without a reference: another thread may be closing
               it (a lookup is a lock and an increment, only for tlsnic sockets). */
            struct tlsnic_sock *s = tlsnic_sock_get(c * CHUNK_LEN + i);
            if (s)
                (void)flush_try(s);
            tlsnic_sock_put(s);
        }
    }
    return atomic_load(&tlsnic_tx_pending_sockets);
}

/*
 * poll on tlsnic sockets, as the kernel's poll on kTLS sockets answers:
 *  - a socket with ciphertext still pending in user space is also watched for POLLOUT and
 *    flushed when writable (push.c does it too, from its own thread);
 *  - POLLIN only when a read can return something: a whole record, an error, the end. A
 *    partial record is taken into user space (the kernel then blocks until more comes);
 *    a socket whose reads wait for the program (a TLS 1.3 KeyUpdate before new TLS_RX keys,
 *    a reported malformed header) is not asked for POLLIN again in this call.
 * fds[].events is as the caller gave it when this returns.
 */
static int64_t mono_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

/* The kernel's poll for one round: ppoll when the caller gave a signal mask (or the
 * table has it), else poll in milliseconds. left_ns < 0: no timeout. */
static int sys_poll_round(struct pollfd *fds, nfds_t nfds, int64_t left_ns, const sigset_t *mask)
{
    struct timespec ts = {.tv_sec = left_ns / 1000000000, .tv_nsec = left_ns % 1000000000};
    if (tlsnic_sys.ppoll)
        return tlsnic_sys.ppoll(fds, nfds, left_ns < 0 ? NULL : &ts, mask);
    if (mask) /* a seam table without ppoll: the system call itself */
        return (int)syscall(SYS_ppoll, fds, nfds, left_ns < 0 ? NULL : &ts, mask, _NSIG / 8);
    return tlsnic_sys.poll(fds, nfds, left_ns < 0 ? -1 : (int)((left_ns + 999999) / 1000000));
}

int tlsnic_poll(struct pollfd *fds, nfds_t nfds, int timeout)
{
    struct timespec ts = {.tv_sec = timeout / 1000, .tv_nsec = (long)(timeout % 1000) * 1000000};
    return tlsnic_ppoll(fds, nfds, timeout < 0 ? NULL : &ts, NULL);
}

int tlsnic_ppoll(struct pollfd *fds, nfds_t nfds, const struct timespec *tmo, const sigset_t *mask)
{
    enum { MAXW = 64 };
    nfds_t changed[MAXW]; /* entries whose events this call changed, ... */
    short asked[MAXW];    /* ... and what the caller had asked */
    size_t nc = 0;
    const int64_t t0 = mono_ns();
    const int64_t timeout = tmo ? (int64_t)tmo->tv_sec * 1000000000 + tmo->tv_nsec : -1;
    int rc;
    for (;;) {
        for (nfds_t i = 0; i < nfds && nc < MAXW; i++) {
            struct tlsnic_sock *s = get_keyed(fds[i].fd, 1);
            if (!s)
                continue;
            if (tlsnic_tx_has_pending(s) && !inherited(s) && !(fds[i].events & POLLOUT)) {
                pthread_mutex_lock(&s->tx.lock);
                int frc = tlsnic_tx_flush_locked(s, s->kfd, MSG_DONTWAIT | MSG_NOSIGNAL);
                pthread_mutex_unlock(&s->tx.lock);
                if (frc == -EAGAIN) {
                    changed[nc] = i;
                    asked[nc++] = fds[i].events;
                    fds[i].events |= POLLOUT;
                }
            }
            tlsnic_sock_put(s);
        }
        int64_t left = timeout;
        if (timeout > 0) {
            int64_t spent = mono_ns() - t0;
            left = spent >= timeout ? 0 : timeout - spent;
        }
        rc = sys_poll_round(fds, nfds, left, mask);
        if (rc <= 0)
            break;
        int saved = errno;
        for (nfds_t i = 0; i < nfds; i++) {
            short ev = fds[i].revents;
            if (!(ev & (POLLIN | POLLRDNORM | POLLOUT)) || !tlsnic_is_tls(fds[i].fd))
                continue;
            short want = fds[i].events;
            for (size_t k = 0; k < nc; k++)
                if (changed[k] == i)
                    want = asked[k];
            struct tlsnic_sock *s = tlsnic_sock_get(fds[i].fd);
            if (!s || inherited(s)) {
                tlsnic_sock_put(s);
                continue;
            }
            if ((ev & POLLOUT) && atomic_load(&s->tx_on) && tlsnic_tx_has_pending(s)) {
                pthread_mutex_lock(&s->tx.lock);
                (void)tlsnic_tx_flush_locked(s, s->kfd, MSG_DONTWAIT | MSG_NOSIGNAL);
                pthread_mutex_unlock(&s->tx.lock);
            }
            if (!(want & POLLOUT))
                ev &= (short)~POLLOUT;
            int r = (ev & (POLLIN | POLLRDNORM)) && atomic_load(&s->rx_on)
                        ? tlsnic_rx_poll(s, s->kfd) : -1;
            if (r == 0 || r == 2)
                ev &= (short)~(POLLIN | POLLRDNORM);
            if (r == 2 && nc < MAXW) {
                int known = 0;
                for (size_t k = 0; k < nc; k++)
                    known |= changed[k] == i;
                if (!known) {
                    changed[nc] = i;
                    asked[nc++] = fds[i].events;
                }
                fds[i].events &= (short)~(POLLIN | POLLRDNORM);
            }
            tlsnic_sock_put(s);
            if (ev == 0 && fds[i].revents != 0)
                rc--;
            fds[i].revents = ev;
        }
        errno = saved;
        /* Only our own flushes or records not whole yet woke it: wait again for what the
           caller asked, in the time it has left. */
        if (rc != 0 || left == 0)
            break;
    }
    for (size_t k = 0; k < nc; k++)
        fds[changed[k]].events = asked[k];
    return rc;
}

int tlsnic_connect(int fd, const struct sockaddr *addr, socklen_t len)
{
    sa_family_t family = AF_UNSPEC + 1;
    if (addr && len >= sizeof(family) && tlsnic_is_tls(fd) &&
        user_read(&family, &addr->sa_family, sizeof(family)) == 0 && family == AF_UNSPEC)
        return tlsnic_errno_ret(-EOPNOTSUPP); /* no disconnect of a TLS socket */
    return tlsnic_sys.connect ? tlsnic_sys.connect(fd, addr, len) : connect(fd, addr, len);
}

int tlsnic_fd_next(int from)
{
    if (from < 0)
        from = 0;
    for (int c = from >> CHUNK_BITS; c < NCHUNKS; c++) {
        sock_slot *chunk = atomic_load_explicit(&table[c], memory_order_acquire);
        if (!chunk)
            continue;
        for (int i = c == (from >> CHUNK_BITS) ? from & (CHUNK_LEN - 1) : 0; i < CHUNK_LEN; i++)
            if (atomic_load_explicit(&chunk[i], memory_order_relaxed) != 0)
                return c * CHUNK_LEN + i;
    }
    return -1;
}
