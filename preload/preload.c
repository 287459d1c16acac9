/*
 * libtlsnic-preload.so: runs an unmodified program's kernel-TLS sockets on tlsnic.
 *
 *   LD_PRELOAD=libtlsnic-preload.so program ...
 *
 * The program's setsockopt(TCP_ULP, "tls") and SOL_TLS options go to tlsnic, and so do its
 * I/O calls on the sockets that did that. Every other descriptor goes straight to libc
 * after one table read (tlsnic_is_tls).
 *
 * Environment:
 *   TLSNIC_STATS_FILE=path  tlsnic's counters (/proc/net/tls_stat form) are written there
 *                           whenever a tlsnic socket is closed and at exit. Each "%p" in
 *                           path is replaced by the writing process's id, so that the
 *                           workers a server forks keep one file each (otherwise the last
 *                           process to close a socket overwrites the others' counters).
 *   TLSNIC_PRELOAD_DEBUG=1  one line on stderr per tlsnic socket event (TLS_TX with the
 *                           mode it got and, in software, why).
 *   TLSNIC_CTL=path         tlsnicd's control socket (default /run/tlsnicd.sock, "off" =
 *                           never): TX goes to the daemon's device when it is reachable and
 *                           accepts the flow, else stays in software (tlsnic/attach.h).
 *   SSLKEYLOGFILE=path      the program's TLS secrets are appended there in the NSS key log
 *                           format (for Wireshark/tshark), unless the program set its own
 *                           key log callback: SSL_new is wrapped to install one on the
 *                           SSL_CTX (libssl looked up at run time; no link dependency).
 *
 * The environment is read once, in the constructor, and copied: a program may later write
 * over the memory its environment strings were in (nginx's, PostgreSQL's setproctitle moves
 * environ and writes the process title over the old strings).
 *
 * tlsnic itself reaches the kernel through the real libc functions (dlsym RTLD_NEXT), set
 * as its system-call table in the constructor, so a wrapped call never re-enters itself.
 *
 * Wrapped besides the plain calls: poll, ppoll, select, pselect (readiness of whole
 * records), epoll_wait / epoll_pwait (pending TX), splice in both directions (records out
 * of a pipe's bytes; plaintext of data records into a pipe), connect (AF_UNSPEC on a TLS
 * socket: EOPNOTSUPP), close_range / closefrom (TLS state released; tlsnic's own
 * descriptors left alone), dup2 / dup3 (onto one of tlsnic's own: EBUSY), and the FORTIFY
 * variants a program built with _FORTIFY_SOURCE calls instead: __read_chk, __recv_chk,
 * __recvfrom_chk, __poll_chk, __ppoll_chk.
 * Not covered: io_uring, sendmmsg / recvmmsg, raw syscall(2); a forked child cannot use an
 * inherited tlsnic socket (EBADFD, see ktls.h), but may close it (or never touch it): it
 * forgets its copy and the parent's connection goes on.
 */
#include <dlfcn.h>
#include <limits.h>
#include <linux/close_range.h>
#include <link.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/ioctl.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <stdint.h>
#include <unistd.h>

#include "tlsnic/attach.h"
#include "tlsnic/ktls.h"

#define EXPORT __attribute__((visibility("default")))

static struct {
    ssize_t (*read)(int, void *, size_t);
    ssize_t (*write)(int, const void *, size_t);
    ssize_t (*readv)(int, const struct iovec *, int);
    ssize_t (*writev)(int, const struct iovec *, int);
    ssize_t (*pread)(int, void *, size_t, off_t);
    ssize_t (*send)(int, const void *, size_t, int);
    ssize_t (*sendto)(int, const void *, size_t, int, const struct sockaddr *, socklen_t);
    ssize_t (*sendmsg)(int, const struct msghdr *, int);
    ssize_t (*recv)(int, void *, size_t, int);
    ssize_t (*recvfrom)(int, void *, size_t, int, struct sockaddr *, socklen_t *);
    ssize_t (*recvmsg)(int, struct msghdr *, int);
    ssize_t (*sendfile)(int, int, off_t *, size_t);
    ssize_t (*sendfile64)(int, int, off64_t *, size_t);
    int (*poll)(struct pollfd *, nfds_t, int);
    int (*epoll_wait)(int, struct epoll_event *, int, int);
    int (*epoll_pwait)(int, struct epoll_event *, int, int, const sigset_t *);
    int (*setsockopt)(int, int, int, const void *, socklen_t);
    int (*getsockopt)(int, int, int, void *, socklen_t *);
    int (*fcntl)(int, int, ...);
    int (*ioctl)(int, unsigned long, ...);
    int (*close)(int);
    int (*fcntl64)(int, int, ...);
    int (*dup)(int);
    int (*dup2)(int, int);
    int (*dup3)(int, int, int);
    int (*shutdown)(int, int);
    int (*connect)(int, const struct sockaddr *, socklen_t);
    int (*ppoll)(struct pollfd *, nfds_t, const struct timespec *, const sigset_t *);
    int (*select)(int, fd_set *, fd_set *, fd_set *, struct timeval *);
    int (*pselect)(int, fd_set *, fd_set *, fd_set *, const struct timespec *, const sigset_t *);
    ssize_t (*splice)(int, loff_t *, int, loff_t *, size_t, unsigned int);
    int (*close_range)(unsigned int, unsigned int, int);
    void (*closefrom)(int);
} real;

static int debug;
static const char *stats_file; /* NULL or one of the copies below */
static const char *keylog_file;
static char stats_file_copy[4096], keylog_file_copy[4096];

/* NAME's value copied into BUF (see the top: the original may be overwritten later); NULL
   when unset, empty or longer than BUF. */
static const char *env_copy(const char *name, char *buf, size_t cap)
{
    const char *v = getenv(name);
    size_t n = v ? strlen(v) : 0;
    if (n == 0 || n >= cap)
        return NULL;
    memcpy(buf, v, n + 1);
    return buf;
}

/* The stats file's path with each "%p" replaced by this process's id; 0, or -1 if too long. */
static int stats_path(char *out, size_t cap)
{
    size_t o = 0;
    for (const char *p = stats_file; *p; p++) {
        char pid[24];
        const char *piece = p;
        size_t n = 1;
        if (p[0] == '%' && p[1] == 'p') {
            n = (size_t)snprintf(pid, sizeof(pid), "%ld", (long)getpid());
            piece = pid;
            p++;
        }
        if (o + n >= cap)
            return -1;
        memcpy(out + o, piece, n);
        o += n;
    }
    out[o] = '\0';
    return 0;
}

#define RESOLVE(name)                                                                        \
    do {                                                                                     \
        if (!real.name)                                                                      \
            real.name = dlsym(RTLD_NEXT, #name);                                             \
    } while (0)

static void resolve_all(void)
{
    RESOLVE(read);
    RESOLVE(write);
    RESOLVE(readv);
    RESOLVE(writev);
    RESOLVE(pread);
    RESOLVE(send);
    RESOLVE(sendto);
    RESOLVE(sendmsg);
    RESOLVE(recv);
    RESOLVE(recvfrom);
    RESOLVE(recvmsg);
    RESOLVE(sendfile);
    RESOLVE(sendfile64);
    RESOLVE(poll);
    RESOLVE(epoll_wait);
    RESOLVE(epoll_pwait);
    RESOLVE(setsockopt);
    RESOLVE(getsockopt);
    RESOLVE(fcntl);
    RESOLVE(ioctl);
    RESOLVE(close);
    RESOLVE(fcntl64);
    RESOLVE(dup);
    RESOLVE(dup2);
    RESOLVE(dup3);
    RESOLVE(shutdown);
    RESOLVE(connect);
    RESOLVE(ppoll);
    RESOLVE(select);
    RESOLVE(pselect);
    RESOLVE(splice);
    RESOLVE(close_range);
    RESOLVE(closefrom);
}

static void write_stats(void)
{
    /* A process that never had a tlsnic socket (e.g. a wrapper that forks the program)
       must not overwrite the counters of the one that did. */
    if (!stats_file || tlsnic_stat_get(TLSNIC_STAT_TX_SW) + tlsnic_stat_get(TLSNIC_STAT_RX_SW) +
                               tlsnic_stat_get(TLSNIC_STAT_TX_DEVICE) +
                               tlsnic_stat_get(TLSNIC_STAT_RX_DEVICE) ==
                           0)
        return;
    char buf[2048];
    int n = tlsnic_stats_format(buf, sizeof(buf));
    if (n <= 0)
        return;
    if ((size_t)n >= sizeof(buf))
        n = (int)sizeof(buf) - 1;
    char path[sizeof(stats_file_copy) + 64];
    if (stats_path(path, sizeof(path)) < 0)
        return;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return;
    (void)!real.write(fd, buf, (size_t)n);
    real.close(fd);
}

__attribute__((constructor)) static void preload_init(void)
{
    resolve_all();
    const struct tlsnic_sys_ops ops = {
        .sendmsg = real.sendmsg,
        .send = real.send,
        .recvmsg = real.recvmsg,
        .recv = real.recv,
        .read = real.read,
        .pread = real.pread,
        .sendfile = real.sendfile,
        .readv = real.readv,
        .writev = real.writev,
        .poll = real.poll,
        .setsockopt = real.setsockopt,
        .getsockopt = real.getsockopt,
        .fcntl = real.fcntl,
        .ioctl = real.ioctl,
        .close = real.close,
        .ppoll = real.ppoll,
        .connect = real.connect,
    };
    tlsnic_set_sys_ops(&ops);
    debug = getenv("TLSNIC_PRELOAD_DEBUG") != NULL;
    stats_file = env_copy("TLSNIC_STATS_FILE", stats_file_copy, sizeof(stats_file_copy));
    keylog_file = env_copy("SSLKEYLOGFILE", keylog_file_copy, sizeof(keylog_file_copy));
    int err = tlsnic_attach_daemon(NULL);
    if (err < 0 && debug)
        fprintf(stderr, "tlsnic-preload: no daemon attach: %s\n", strerror(-err));
}

__attribute__((destructor)) static void preload_fini(void)
{
    /* Connections the program closed just before exit() may still be ending in the
       background (tlsnic_close): give them a moment (bounded), as the kernel would. */
    (void)tlsnic_close_pending(2000);
    write_stats();
}

static void note(const char *what, int fd, long v)
{
    if (debug)
        fprintf(stderr, "tlsnic-preload: %s fd=%d -> %ld%s%s\n", what, fd, v,
                v < 0 ? " " : "", v < 0 ? strerror(errno) : "");
}

/* ------------------------------------------------------------------------------------------ */

EXPORT int setsockopt(int fd, int level, int optname, const void *optval, socklen_t optlen)
{
    RESOLVE(setsockopt);
    if ((level == SOL_TCP && optname == TCP_ULP) || level == SOL_TLS) {
        int saved, rc = tlsnic_setsockopt(fd, level, optname, optval, optlen);
        saved = errno;
        if (level == SOL_TLS && (optname == TLS_TX || optname == TLS_RX) && rc == 0 && debug) {
            struct tlsnic_mode_info m;
            if (tlsnic_get_mode(fd, optname == TLS_TX ? TLSNIC_DIR_TX : TLSNIC_DIR_RX, &m) == 0)
                fprintf(stderr, "tlsnic-preload: setsockopt %s fd=%d -> 0 mode %s%s%s (%d)\n",
                        optname == TLS_TX ? "TLS_TX" : "TLS_RX", fd, tlsnic_mode_name(m.mode),
                        m.mode == TLSNIC_MODE_SW ? ", reason: " : "",
                        m.mode == TLSNIC_MODE_SW ? tlsnic_sw_reason_name(m.reason) : "",
                        m.dev_errno);
        } else if (level == SOL_TLS) {
            note(optname == TLS_TX ? "setsockopt TLS_TX" : optname == TLS_RX ? "setsockopt TLS_RX"
                                                                             : "setsockopt SOL_TLS",
                 fd, rc);
        } else {
            note("setsockopt TCP_ULP", fd, rc);
        }
        errno = saved;
        return rc;
    }
    return real.setsockopt(fd, level, optname, optval, optlen);
}

EXPORT int getsockopt(int fd, int level, int optname, void *optval, socklen_t *optlen)
{
    RESOLVE(getsockopt);
    if (!tlsnic_is_tls(fd))
        return real.getsockopt(fd, level, optname, optval, optlen);
    return tlsnic_getsockopt(fd, level, optname, optval, optlen);
}

/*
 * A forked child's TLS call on a socket its parent keyed fails with EBADFD (ktls.h: the
 * record state is the parent's). Say so once per process, debug or not: an errno alone
 * would leave a pre-fork server's author guessing.
 */
static ssize_t inherited_note(int fd, ssize_t rc)
{
    static int said;
    if (rc < 0 && errno == EBADFD && !__atomic_exchange_n(&said, 1, __ATOMIC_RELAXED)) {
        int saved = errno;
        fprintf(stderr, "tlsnic-preload: fd=%d is a TLS socket this process inherited across "
                        "fork: its record state is in the parent; TLS I/O on it fails with "
                        "EBADFD here (close it in the child)\n", fd);
        errno = saved;
    }
    return rc;
}

EXPORT ssize_t read(int fd, void *buf, size_t len)
{
    RESOLVE(read);
    if (!tlsnic_is_tls(fd))
        return real.read(fd, buf, len);
    return inherited_note(fd, tlsnic_read(fd, buf, len));
}

EXPORT ssize_t write(int fd, const void *buf, size_t len)
{
    RESOLVE(write);
    if (!tlsnic_is_tls(fd))
        return real.write(fd, buf, len);
    return inherited_note(fd, tlsnic_write(fd, buf, len));
}

EXPORT ssize_t readv(int fd, const struct iovec *iov, int iovcnt)
{
    RESOLVE(readv);
    if (!tlsnic_is_tls(fd))
        return real.readv(fd, iov, iovcnt);
    return inherited_note(fd, tlsnic_readv(fd, iov, iovcnt));
}

EXPORT ssize_t writev(int fd, const struct iovec *iov, int iovcnt)
{
    RESOLVE(writev);
    if (!tlsnic_is_tls(fd))
        return real.writev(fd, iov, iovcnt);
    return inherited_note(fd, tlsnic_writev(fd, iov, iovcnt));
}

EXPORT ssize_t send(int fd, const void *buf, size_t len, int flags)
{
    RESOLVE(send);
    if (!tlsnic_is_tls(fd))
        return real.send(fd, buf, len, flags);
    return inherited_note(fd, tlsnic_send(fd, buf, len, flags));
}

EXPORT ssize_t sendto(int fd, const void *buf, size_t len, int flags,
                      const struct sockaddr *addr, socklen_t alen)
{
    RESOLVE(sendto);
    if (!tlsnic_is_tls(fd))
        return real.sendto(fd, buf, len, flags, addr, alen);
    return inherited_note(fd, tlsnic_send(fd, buf, len, flags)); /* connected TCP: no address */
}

EXPORT ssize_t sendmsg(int fd, const struct msghdr *msg, int flags)
{
    RESOLVE(sendmsg);
    if (!tlsnic_is_tls(fd))
        return real.sendmsg(fd, msg, flags);
    return inherited_note(fd, tlsnic_sendmsg(fd, msg, flags));
}

EXPORT ssize_t recv(int fd, void *buf, size_t len, int flags)
{
    RESOLVE(recv);
    if (!tlsnic_is_tls(fd))
        return real.recv(fd, buf, len, flags);
    return inherited_note(fd, tlsnic_recv(fd, buf, len, flags));
}

EXPORT ssize_t recvfrom(int fd, void *buf, size_t len, int flags, struct sockaddr *addr,
                        socklen_t *alen)
{
    RESOLVE(recvfrom);
    if (!tlsnic_is_tls(fd))
        return real.recvfrom(fd, buf, len, flags, addr, alen);
    if (alen)
        *alen = 0;
    return inherited_note(fd, tlsnic_recv(fd, buf, len, flags));
}

EXPORT ssize_t recvmsg(int fd, struct msghdr *msg, int flags)
{
    RESOLVE(recvmsg);
    if (!tlsnic_is_tls(fd))
        return real.recvmsg(fd, msg, flags);
    return inherited_note(fd, tlsnic_recvmsg(fd, msg, flags));
}

EXPORT ssize_t sendfile(int out_fd, int in_fd, off_t *offset, size_t count)
{
    RESOLVE(sendfile);
    if (!tlsnic_is_tls(out_fd))
        return real.sendfile(out_fd, in_fd, offset, count);
    ssize_t n = tlsnic_sendfile(out_fd, in_fd, offset, count);
    if (debug)
        note("sendfile", out_fd, (long)n);
    return n;
}

EXPORT ssize_t sendfile64(int out_fd, int in_fd, off64_t *offset, size_t count)
{
    RESOLVE(sendfile64);
    if (!tlsnic_is_tls(out_fd))
        return real.sendfile64(out_fd, in_fd, offset, count);
    off_t off = offset ? (off_t)*offset : 0;
    ssize_t n = tlsnic_sendfile(out_fd, in_fd, offset ? &off : NULL, count);
    if (offset)
        *offset = off;
    return n;
}

EXPORT int poll(struct pollfd *fds, nfds_t nfds, int timeout)
{
    RESOLVE(poll);
    for (nfds_t i = 0; i < nfds; i++)
        if (tlsnic_is_tls(fds[i].fd))
            return tlsnic_poll(fds, nfds, timeout);
    return real.poll(fds, nfds, timeout);
}

EXPORT int ppoll(struct pollfd *fds, nfds_t nfds, const struct timespec *tmo,
                 const sigset_t *mask)
{
    RESOLVE(ppoll);
    for (nfds_t i = 0; i < nfds; i++)
        if (tlsnic_is_tls(fds[i].fd))
            return tlsnic_ppoll(fds, nfds, tmo, mask);
    return real.ppoll(fds, nfds, tmo, mask);
}

/* fd_set bits without FD_ISSET (whose FORTIFY check stops at FD_SETSIZE: a program may
 * pass larger sets). */
#define SET_WORD_BITS (8 * (int)sizeof(unsigned long))
static int set_has(const fd_set *set, int fd)
{
    return set && (((const unsigned long *)(const void *)set)[fd / SET_WORD_BITS] >>
                   (fd % SET_WORD_BITS)) & 1UL;
}

static void set_put(fd_set *set, int fd)
{
    ((unsigned long *)(void *)set)[fd / SET_WORD_BITS] |= 1UL << (fd % SET_WORD_BITS);
}

static void set_clear(fd_set *set, int nfds)
{
    if (set)
        memset(set, 0, (size_t)((nfds + SET_WORD_BITS - 1) / SET_WORD_BITS) * sizeof(unsigned long));
}

/*
 * select / pselect with a tlsnic socket in its sets: run as ppoll on tlsnic_ppoll, so the
 * socket is readable only for whole records, and the bits come back as the kernel's
 * do_select sets them (POLLIN_SET, POLLOUT_SET, POLLEX_SET). 1: handled (*rc set).
 */
static int select_tls(int nfds, fd_set *r, fd_set *w, fd_set *e, const struct timespec *tmo,
                      const sigset_t *mask, int *rc)
{
    int any = 0, n = 0;
    for (int fd = 0; fd < nfds; fd++) {
        if (set_has(r, fd) || set_has(w, fd) || set_has(e, fd)) {
            n++;
            any |= tlsnic_is_tls(fd);
        }
    }
    if (!any)
        return 0;
    struct pollfd *p = calloc((size_t)n, sizeof(*p));
    if (!p) {
        errno = ENOMEM;
        *rc = -1;
        return 1;
    }
    int k = 0;
    for (int fd = 0; fd < nfds; fd++) {
        short ev = (short)((set_has(r, fd) ? POLLIN : 0) | (set_has(w, fd) ? POLLOUT : 0) |
                           (set_has(e, fd) ? POLLPRI : 0));
        if (ev)
            p[k++] = (struct pollfd){.fd = fd, .events = ev};
    }
    int got = tlsnic_ppoll(p, (nfds_t)n, tmo, mask);
    if (got >= 0) {
        for (k = 0; k < n; k++) {
            if (p[k].revents & POLLNVAL) {
                free(p);
                errno = EBADF;
                *rc = -1;
                return 1;
            }
        }
        set_clear(r, nfds);
        set_clear(w, nfds);
        set_clear(e, nfds);
        got = 0;
        for (k = 0; k < n; k++) {
            short re = p[k].revents, ev = p[k].events;
            if ((ev & POLLIN) && (re & (POLLIN | POLLRDNORM | POLLRDBAND | POLLHUP | POLLERR))) {
                set_put(r, p[k].fd);
                got++;
            }
            if ((ev & POLLOUT) && (re & (POLLOUT | POLLWRNORM | POLLWRBAND | POLLERR))) {
                set_put(w, p[k].fd);
                got++;
            }
            if ((ev & POLLPRI) && (re & POLLPRI)) {
                set_put(e, p[k].fd);
                got++;
            }
        }
    }
    free(p);
    *rc = got;
    return 1;
}

EXPORT int select(int nfds, fd_set *r, fd_set *w, fd_set *e, struct timeval *tv)
{
    RESOLVE(select);
    struct timespec ts, t0, t1;
    if (tv) {
        ts.tv_sec = tv->tv_sec;
        ts.tv_nsec = tv->tv_usec * 1000;
    }
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int rc;
    if (!select_tls(nfds, r, w, e, tv ? &ts : NULL, NULL, &rc))
        return real.select(nfds, r, w, e, tv);
    if (tv) { /* Linux's select leaves the time not slept in *tv */
        int saved = errno;
        clock_gettime(CLOCK_MONOTONIC, &t1);
        long long left = ((long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000) -
                         ((long long)(t1.tv_sec - t0.tv_sec) * 1000000 +
                          (t1.tv_nsec - t0.tv_nsec) / 1000);
        if (left < 0)
            left = 0;
        tv->tv_sec = (time_t)(left / 1000000);
        tv->tv_usec = (suseconds_t)(left % 1000000);
        errno = saved;
    }
    return rc;
}

EXPORT int pselect(int nfds, fd_set *r, fd_set *w, fd_set *e, const struct timespec *tmo,
                   const sigset_t *mask)
{
    RESOLVE(pselect);
    int rc;
    if (!select_tls(nfds, r, w, e, tmo, mask, &rc))
        return real.pselect(nfds, r, w, e, tmo, mask);
    return rc;
}

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

/*
 * epoll readiness is truthful for tlsnic sockets (see ktls.h) except for TX left pending by
 * a non-blocking send: while there is some, wait in slices of at most 10 ms and flush it
 * between them, so a program that now only waits for the answer is not stuck.
 */
static int epoll_common(int epfd, struct epoll_event *ev, int max, int timeout,
                        const sigset_t *mask, int pwait)
{
    long deadline = timeout > 0 ? now_ms() + timeout : 0;
    for (;;) {
        int left = tlsnic_flush_all();
        int slice = timeout;
        if (left > 0) {
            long rest = timeout < 0 ? 10 : deadline - now_ms();
            if (timeout >= 0 && rest < 0)
                rest = 0;
            slice = (int)(rest < 10 ? rest : 10);
            if (timeout == 0)
                slice = 0;
        }
        int n = pwait ? real.epoll_pwait(epfd, ev, max, slice, mask)
                      : real.epoll_wait(epfd, ev, max, slice);
        if (n != 0 || left == 0 || timeout == 0 || (timeout > 0 && now_ms() >= deadline))
            return n;
    }
}

EXPORT int epoll_wait(int epfd, struct epoll_event *ev, int max, int timeout)
{
    RESOLVE(epoll_wait);
    if (!tlsnic_tx_pending_any())
        return real.epoll_wait(epfd, ev, max, timeout);
    return epoll_common(epfd, ev, max, timeout, NULL, 0);
}

EXPORT int epoll_pwait(int epfd, struct epoll_event *ev, int max, int timeout,
                       const sigset_t *mask)
{
    RESOLVE(epoll_pwait);
    if (!tlsnic_tx_pending_any())
        return real.epoll_pwait(epfd, ev, max, timeout, mask);
    return epoll_common(epfd, ev, max, timeout, mask, 1);
}

EXPORT int close(int fd)
{
    RESOLVE(close);
    if (!tlsnic_is_tls(fd) && !tlsnic_fd_is_private(fd))
        return real.close(fd);
    int rc = tlsnic_close(fd);
    int saved = errno;
    note("close", fd, rc);
    write_stats();
    errno = saved;
    return rc;
}

/*
 * close_range: the TLS sockets in the range are closed through tlsnic (records pushed,
 * state released), tlsnic's own descriptors stay open (the range is closed around them),
 * everything else as the kernel does. CLOSE_RANGE_CLOEXEC only marks: passed on whole.
 */
EXPORT int close_range(unsigned int first, unsigned int last, int flags)
{
    RESOLVE(close_range);
    if ((flags & CLOSE_RANGE_CLOEXEC) || first > last || tlsnic_fd_next((int)(first > INT_MAX ? INT_MAX : first)) < 0)
        return real.close_range(first, last, flags);
    unsigned int from = first;
    for (int fd = tlsnic_fd_next((int)first); fd >= 0 && (unsigned)fd <= last;
         fd = tlsnic_fd_next(fd + 1)) {
        if (tlsnic_is_tls(fd)) {
            (void)close(fd); /* ours: releases the TLS state, then closes */
            continue;
        }
        if (!tlsnic_fd_is_private(fd))
            continue;
        if ((unsigned)fd > from && real.close_range(from, (unsigned)fd - 1, flags) < 0)
            return -1;
        flags &= ~CLOSE_RANGE_UNSHARE; /* unshared once is enough */
        from = (unsigned)fd + 1;
    }
    if (from > last)
        return 0;
    return real.close_range(from, last, flags);
}

EXPORT void closefrom(int lowfd)
{
    RESOLVE(closefrom);
    if (lowfd < 0 || tlsnic_fd_next(lowfd) < 0) {
        real.closefrom(lowfd);
        return;
    }
    (void)close_range((unsigned)lowfd, ~0u, 0);
}

EXPORT int connect(int fd, const struct sockaddr *addr, socklen_t len)
{
    RESOLVE(connect);
    if (!tlsnic_is_tls(fd))
        return real.connect(fd, addr, len);
    return tlsnic_connect(fd, addr, len);
}

EXPORT int shutdown(int fd, int how)
{
    RESOLVE(shutdown);
    if (tlsnic_is_tls(fd))
        (void)tlsnic_flush(fd);
    return real.shutdown(fd, how);
}

/* fcntl's third argument is an int or a pointer; passing it on as a pointer-sized value is
   what the ABI does for both. Only F_DUPFD / F_DUPFD_CLOEXEC of a tlsnic socket matter. */
static int fcntl_common(int (*fn)(int, int, ...), int fd, int cmd, void *arg)
{
    int rc = fn(fd, cmd, arg);
    if (rc >= 0 && (cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC) && tlsnic_is_tls(fd))
        tlsnic_fd_dup(fd, rc);
    return rc;
}

EXPORT int fcntl(int fd, int cmd, ...)
{
    RESOLVE(fcntl);
    va_list ap;
    va_start(ap, cmd);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    return fcntl_common(real.fcntl, fd, cmd, arg);
}

EXPORT int fcntl64(int fd, int cmd, ...)
{
    RESOLVE(fcntl64);
    va_list ap;
    va_start(ap, cmd);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    return fcntl_common(real.fcntl64 ? real.fcntl64 : real.fcntl, fd, cmd, arg);
}

EXPORT int dup(int oldfd)
{
    RESOLVE(dup);
    int fd = real.dup(oldfd);
    if (fd >= 0 && tlsnic_is_tls(oldfd))
        tlsnic_fd_dup(oldfd, fd);
    return fd;
}

/* newfd is one of tlsnic's own descriptors, which the program cannot know is taken: the
 * kernel's dup2 would close it under tlsnic. Linux's dup2 gives EBUSY in a race with open. */
static int onto_private(int newfd)
{
    if (!tlsnic_fd_is_private(newfd))
        return 0;
    errno = EBUSY;
    return 1;
}

EXPORT int dup2(int oldfd, int newfd)
{
    RESOLVE(dup2);
    if (onto_private(newfd))
        return -1;
    int fd = real.dup2(oldfd, newfd);
    if (fd >= 0 && oldfd != newfd)
        tlsnic_fd_dup(oldfd, fd); /* also forgets newfd's old TLS state */
    return fd;
}

EXPORT int dup3(int oldfd, int newfd, int flags)
{
    RESOLVE(dup3);
    if (onto_private(newfd))
        return -1;
    int fd = real.dup3(oldfd, newfd, flags);
    if (fd >= 0)
        tlsnic_fd_dup(oldfd, fd);
    return fd;
}

/* ------------------------------------------------------------------------------------------ */
/* splice to and from a TLS socket: its bytes go through tlsnic as records, as the kernel's   */
/* splice_write (sendpage) and tls_sw_splice_read do. vmsplice needs no wrapper: it only ever  */
/* fills a pipe, and the splice that takes from that pipe is this one.                         */

#define SPLICE_CHUNK (64u * 1024u)

/* From a pipe to a TLS socket. The pipe's bytes are looked at with tee(2) into a private pipe,
 * sent as records, and only what the socket took is then taken from the pipe. */
static ssize_t splice_to_tls(int pipe_in, int sock, size_t len, unsigned int flags)
{
    if (len > SPLICE_CHUNK)
        len = SPLICE_CHUNK;
    int p[2];
    if (pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0)
        return -1;
    ssize_t n = tee(pipe_in, p[1], len, flags & SPLICE_F_NONBLOCK);
    uint8_t *buf = n > 0 ? malloc((size_t)n) : NULL;
    ssize_t rc = n;
    if (n > 0 && !buf) {
        errno = ENOMEM;
        rc = -1;
    }
    if (buf) {
        ssize_t got = real.read(p[0], buf, (size_t)n);
        rc = got < 0 ? -1 : tlsnic_send(sock, buf, (size_t)got, (flags & SPLICE_F_MORE) ? MSG_MORE : 0);
        int saved = errno;
        for (ssize_t taken = 0; rc > 0 && taken < rc;) { /* what the socket took */
            ssize_t t = real.read(pipe_in, buf, (size_t)(rc - taken));
            if (t <= 0)
                break;
            taken += t;
        }
        memset(buf, 0, (size_t)n);
        free(buf);
        errno = saved;
    }
    int saved = errno;
    real.close(p[0]);
    real.close(p[1]);
    errno = saved;
    return rc;
}

/* From a TLS socket to a pipe: plaintext of data records, at most what the pipe has room
 * for; a control record is EINVAL and stays (tls_sw_splice_read). */
static ssize_t splice_from_tls(int sock, int pipe_out, size_t len, unsigned int flags)
{
    int cap = real.fcntl(pipe_out, F_GETPIPE_SZ);
    int queued = 0;
    if (cap < 0 || real.ioctl(pipe_out, FIONREAD, &queued) < 0) {
        errno = EINVAL; /* not a pipe */
        return -1;
    }
    size_t room = cap > queued ? (size_t)(cap - queued) : 0;
    if (room == 0) {
        int fl = real.fcntl(pipe_out, F_GETFL);
        if ((flags & SPLICE_F_NONBLOCK) || (fl >= 0 && (fl & O_NONBLOCK))) {
            errno = EAGAIN;
            return -1;
        }
        struct pollfd pw = {.fd = pipe_out, .events = POLLOUT};
        if (real.poll(&pw, 1, -1) < 0)
            return -1;
        if (real.ioctl(pipe_out, FIONREAD, &queued) < 0)
            return -1;
        room = cap > queued ? (size_t)(cap - queued) : 1;
    }
    if (len > room)
        len = room;
    if (len > SPLICE_CHUNK)
        len = SPLICE_CHUNK;
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf) {
        errno = ENOMEM;
        return -1;
    }
    ssize_t n = tlsnic_recv(sock, buf, len, (flags & SPLICE_F_NONBLOCK) ? MSG_DONTWAIT : 0);
    if (n < 0 && errno == EIO)
        errno = EINVAL; /* a control record: splice does not take those */
    for (ssize_t put = 0; n > 0 && put < n;) {
        ssize_t w = real.write(pipe_out, buf + put, (size_t)(n - put));
        if (w < 0) {
            if (errno == EINTR)
                continue;
            n = put ? put : -1; /* cannot happen with the room measured; say what went */
            break;
        }
        put += w;
    }
    int saved = errno;
    memset(buf, 0, len ? len : 1);
    free(buf);
    errno = saved;
    return n;
}

EXPORT ssize_t splice(int fd_in, loff_t *off_in, int fd_out, loff_t *off_out, size_t len,
                      unsigned int flags)
{
    RESOLVE(splice);
    int to_tls = tlsnic_is_tls(fd_out), from_tls = tlsnic_is_tls(fd_in);
    if (!to_tls && !from_tls)
        return real.splice(fd_in, off_in, fd_out, off_out, len, flags);
    if (to_tls && from_tls) {
        errno = EINVAL; /* neither end is a pipe */
        return -1;
    }
    if ((to_tls && off_out) || (from_tls && off_in)) {
        errno = ESPIPE; /* a socket has no offset */
        return -1;
    }
    if (to_tls && off_in) {
        errno = ESPIPE; /* the other end must then be a pipe, which has none either */
        return -1;
    }
    if (from_tls && off_out) {
        errno = ESPIPE;
        return -1;
    }
    ssize_t n = to_tls ? splice_to_tls(fd_in, fd_out, len, flags)
                       : splice_from_tls(fd_in, fd_out, len, flags);
    if (debug)
        note(to_tls ? "splice to" : "splice from", to_tls ? fd_out : fd_in, (long)n);
    return n;
}

/* ------------------------------------------------------------------------------------------ */
/* _FORTIFY_SOURCE: a program built with it calls these instead of read, recv, poll. Same    */
/* checks as glibc's (__chk_fail on a buffer shorter than asked), then the wrappers above.    */

extern void __chk_fail(void) __attribute__((noreturn));

EXPORT ssize_t __read_chk(int fd, void *buf, size_t nbytes, size_t buflen);
EXPORT ssize_t __read_chk(int fd, void *buf, size_t nbytes, size_t buflen)
{
    if (nbytes > buflen)
        __chk_fail();
    return read(fd, buf, nbytes);
}

EXPORT ssize_t __recv_chk(int fd, void *buf, size_t len, size_t buflen, int flags);
EXPORT ssize_t __recv_chk(int fd, void *buf, size_t len, size_t buflen, int flags)
{
    if (len > buflen)
        __chk_fail();
    return recv(fd, buf, len, flags);
}

EXPORT ssize_t __recvfrom_chk(int fd, void *buf, size_t len, size_t buflen, int flags,
                              struct sockaddr *addr, socklen_t *alen);
EXPORT ssize_t __recvfrom_chk(int fd, void *buf, size_t len, size_t buflen, int flags,
                              struct sockaddr *addr, socklen_t *alen)
{
    if (len > buflen)
        __chk_fail();
    return recvfrom(fd, buf, len, flags, addr, alen);
}

EXPORT int __poll_chk(struct pollfd *fds, nfds_t nfds, int timeout, size_t fdslen);
EXPORT int __poll_chk(struct pollfd *fds, nfds_t nfds, int timeout, size_t fdslen)
{
    if (fdslen / sizeof(*fds) < nfds)
        __chk_fail();
    return poll(fds, nfds, timeout);
}

EXPORT int __ppoll_chk(struct pollfd *fds, nfds_t nfds, const struct timespec *tmo,
                       const sigset_t *mask, size_t fdslen);
EXPORT int __ppoll_chk(struct pollfd *fds, nfds_t nfds, const struct timespec *tmo,
                       const sigset_t *mask, size_t fdslen)
{
    if (fdslen / sizeof(*fds) < nfds)
        __chk_fail();
    return ppoll(fds, nfds, tmo, mask);
}

/* ------------------------------------------------------------------------------------------ */
/* SSLKEYLOGFILE: libssl's keylog callback, installed on the SSL_CTX of every SSL_new.        */

static void keylog_line(const void *ssl, const char *line)
{
    (void)ssl;
    char buf[1024];
    size_t n = strlen(line);
    if (!keylog_file || n + 1 > sizeof(buf))
        return;
    memcpy(buf, line, n);
    buf[n++] = '\n';
    int fd = open(keylog_file, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0)
        return;
    (void)!real.write(fd, buf, n); /* one write: lines of several threads do not mix */
    real.close(fd);
}

/*
 * A libssl function of the program. dlsym(RTLD_NEXT) finds it when libssl is in the global
 * scope (linked in, or dlopened RTLD_GLOBAL). A libssl that was dlopened RTLD_LOCAL is not
 * (Python's _ssl module: its own calls bind to this library's SSL_new, and RTLD_NEXT finds
 * nothing): then the loaded objects are searched, each libssl by its own handle.
 */
struct ssl_sym_search {
    const char *name;
    void *self;
    void *found;
};

static int ssl_sym_in_object(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    struct ssl_sym_search *q = arg;
    if (!info->dlpi_name || !strstr(info->dlpi_name, "libssl"))
        return 0;
    void *h = dlopen(info->dlpi_name, RTLD_LAZY | RTLD_NOLOAD);
    if (!h)
        return 0;
    void *f = dlsym(h, q->name);
    dlclose(h); /* NOLOAD took a reference of its own; the program's stays */
    if (f && f != q->self) {
        q->found = f;
        return 1;
    }
    return 0;
}

static void *libssl_sym(const char *name, void *self)
{
    void *f = dlsym(RTLD_NEXT, name);
    if (f && f != self)
        return f;
    struct ssl_sym_search q = {.name = name, .self = self};
    dl_iterate_phdr(ssl_sym_in_object, &q);
    return q.found;
}

/* libssl's SSL_new (SSL_CTX * -> SSL *), declared here: the library does not include libssl. */
EXPORT void *SSL_new(void *ctx);
EXPORT void *SSL_new(void *ctx)
{
    static void *(*real_ssl_new)(void *);
    void *(*fn)(void *) = __atomic_load_n(&real_ssl_new, __ATOMIC_ACQUIRE);
    if (!fn) {
        fn = (void *(*)(void *))libssl_sym("SSL_new", (void *)SSL_new);
        __atomic_store_n(&real_ssl_new, fn, __ATOMIC_RELEASE);
    }
    if (!fn) {
        /* Not reachable for a program that calls SSL_new (its libssl is loaded), but a
         * wrapper must not pretend: say why. */
        if (debug)
            fprintf(stderr, "tlsnic-preload: SSL_new: libssl's SSL_new not found\n");
        errno = ENOSYS;
        return NULL;
    }
    if (keylog_file && ctx) {
        typedef void (*keylog_cb)(const void *, const char *);
        keylog_cb (*get)(const void *) =
            (keylog_cb(*)(const void *))libssl_sym("SSL_CTX_get_keylog_callback", NULL);
        void (*set)(void *, keylog_cb) =
            (void (*)(void *, keylog_cb))libssl_sym("SSL_CTX_set_keylog_callback", NULL);
        if (get && set && get(ctx) == NULL)
            set(ctx, keylog_line);
    }
    return fn(ctx);
}
