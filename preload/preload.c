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
 * Not covered: select, splice, io_uring, close_range, two processes that both write one
 * tlsnic socket after a fork (each would have its own record state). A forked child that
 * closes (or never touches) a descriptor it inherited is fine: it forgets its copy.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
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

EXPORT ssize_t read(int fd, void *buf, size_t len)
{
    RESOLVE(read);
    if (!tlsnic_is_tls(fd))
        return real.read(fd, buf, len);
    return tlsnic_read(fd, buf, len);
}

EXPORT ssize_t write(int fd, const void *buf, size_t len)
{
    RESOLVE(write);
    if (!tlsnic_is_tls(fd))
        return real.write(fd, buf, len);
    return tlsnic_write(fd, buf, len);
}

EXPORT ssize_t readv(int fd, const struct iovec *iov, int iovcnt)
{
    RESOLVE(readv);
    if (!tlsnic_is_tls(fd))
        return real.readv(fd, iov, iovcnt);
    return tlsnic_readv(fd, iov, iovcnt);
}

EXPORT ssize_t writev(int fd, const struct iovec *iov, int iovcnt)
{
    RESOLVE(writev);
    if (!tlsnic_is_tls(fd))
        return real.writev(fd, iov, iovcnt);
    return tlsnic_writev(fd, iov, iovcnt);
}

EXPORT ssize_t send(int fd, const void *buf, size_t len, int flags)
{
    RESOLVE(send);
    if (!tlsnic_is_tls(fd))
        return real.send(fd, buf, len, flags);
    return tlsnic_send(fd, buf, len, flags);
}

EXPORT ssize_t sendto(int fd, const void *buf, size_t len, int flags,
                      const struct sockaddr *addr, socklen_t alen)
{
    RESOLVE(sendto);
    if (!tlsnic_is_tls(fd))
        return real.sendto(fd, buf, len, flags, addr, alen);
    return tlsnic_send(fd, buf, len, flags); /* connected TCP: the address is ignored */
}

EXPORT ssize_t sendmsg(int fd, const struct msghdr *msg, int flags)
{
    RESOLVE(sendmsg);
    if (!tlsnic_is_tls(fd))
        return real.sendmsg(fd, msg, flags);
    return tlsnic_sendmsg(fd, msg, flags);
}

EXPORT ssize_t recv(int fd, void *buf, size_t len, int flags)
{
    RESOLVE(recv);
    if (!tlsnic_is_tls(fd))
        return real.recv(fd, buf, len, flags);
    return tlsnic_recv(fd, buf, len, flags);
}

EXPORT ssize_t recvfrom(int fd, void *buf, size_t len, int flags, struct sockaddr *addr,
                        socklen_t *alen)
{
    RESOLVE(recvfrom);
    if (!tlsnic_is_tls(fd))
        return real.recvfrom(fd, buf, len, flags, addr, alen);
    if (alen)
        *alen = 0;
    return tlsnic_recv(fd, buf, len, flags);
}

EXPORT ssize_t recvmsg(int fd, struct msghdr *msg, int flags)
{
    RESOLVE(recvmsg);
    if (!tlsnic_is_tls(fd))
        return real.recvmsg(fd, msg, flags);
    return tlsnic_recvmsg(fd, msg, flags);
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
    if (!tlsnic_is_tls(fd))
        return real.close(fd);
    int rc = tlsnic_close(fd);
    int saved = errno;
    note("close", fd, rc);
    write_stats();
    errno = saved;
    return rc;
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

EXPORT int dup2(int oldfd, int newfd)
{
    RESOLVE(dup2);
    int fd = real.dup2(oldfd, newfd);
    if (fd >= 0 && oldfd != newfd)
        tlsnic_fd_dup(oldfd, fd); /* also forgets newfd's old TLS state */
    return fd;
}

EXPORT int dup3(int oldfd, int newfd, int flags)
{
    RESOLVE(dup3);
    int fd = real.dup3(oldfd, newfd, flags);
    if (fd >= 0)
        tlsnic_fd_dup(oldfd, fd);
    return fd;
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

/* libssl's SSL_new (SSL_CTX * -> SSL *), declared here: the library does not include libssl. */
EXPORT void *SSL_new(void *ctx);
EXPORT void *SSL_new(void *ctx)
{
    static void *(*real_ssl_new)(void *);
    if (!real_ssl_new)
        real_ssl_new = (void *(*)(void *))dlsym(RTLD_NEXT, "SSL_new");
    if (!real_ssl_new) {
        errno = ENOSYS;
        return NULL;
    }
    if (keylog_file && ctx) {
        typedef void (*keylog_cb)(const void *, const char *);
        keylog_cb (*get)(const void *) =
            (keylog_cb(*)(const void *))dlsym(RTLD_DEFAULT, "SSL_CTX_get_keylog_callback");
        void (*set)(void *, keylog_cb) =
            (void (*)(void *, keylog_cb))dlsym(RTLD_DEFAULT, "SSL_CTX_set_keylog_callback");
        if (get && set && get(ctx) == NULL)
            set(ctx, keylog_line);
    }
    return real_ssl_new(ctx);
}
