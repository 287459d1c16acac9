/*
 * The preload library from the program's side: this test only calls libc (setsockopt,
 * write, send, read, recvmsg, epoll_wait, close, dup, pipe I/O) and runs with
 * LD_PRELOAD=libtlsnic-preload.so, as an unmodified program would. Its peer is a raw TCP
 * socket that speaks TLS records through the record layer.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/close_range.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/select.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <linux/tls.h>

#include "tcp_pair.h"
#include "tlsnic/record.h"

#ifndef SOL_TLS
#define SOL_TLS 282
#endif

struct conn {
    int fd, peer;
    struct tls12_crypto_info_aes_gcm_128 tx, rx;
    tlsnic_rec_key *peer_rx, *peer_tx;
};

static void conn_new(struct conn *c)
{
    int fds[2];
    assert_int_equal(tcp_pair(fds), 0);
    c->fd = fds[0];
    c->peer = fds[1];
    memset(&c->tx, 0x61, sizeof(c->tx));
    memset(&c->rx, 0x62, sizeof(c->rx));
    c->tx.info.version = c->rx.info.version = TLS_1_3_VERSION;
    c->tx.info.cipher_type = c->rx.info.cipher_type = TLS_CIPHER_AES_GCM_128;
    memset(c->tx.rec_seq, 0, 8);
    memset(c->rx.rec_seq, 0, 8);
    assert_int_equal(tlsnic_rec_key_new(&c->peer_rx, &c->tx, sizeof(c->tx)), 0);
    assert_int_equal(tlsnic_rec_key_new(&c->peer_tx, &c->rx, sizeof(c->rx)), 0);
    int rc = setsockopt(c->fd, SOL_TCP, TCP_ULP, "tls", sizeof("tls"));
    if (rc != 0)
        print_error("TCP_ULP \"tls\" failed (%s): is libtlsnic-preload.so preloaded?\n",
                    strerror(errno));
    assert_int_equal(rc, 0);
    assert_int_equal(setsockopt(c->fd, SOL_TLS, TLS_TX, &c->tx, sizeof(c->tx)), 0);
    assert_int_equal(setsockopt(c->fd, SOL_TLS, TLS_RX, &c->rx, sizeof(c->rx)), 0);
}

static void conn_free(struct conn *c)
{
    close(c->fd);
    close(c->peer);
    tlsnic_rec_key_free(c->peer_rx);
    tlsnic_rec_key_free(c->peer_tx);
}

static int read_exact(int fd, uint8_t *b, size_t len)
{
    while (len > 0) {
        ssize_t n = read(fd, b, len);
        if (n <= 0)
            return -1;
        b += n;
        len -= (size_t)n;
    }
    return 0;
}

/* One record from the program, opened by the peer: content length, or -1. */
static ssize_t peer_recv(struct conn *c, uint8_t *out, size_t cap)
{
    static __thread uint8_t rec[TLSNIC_REC_MAX_WIRE_LEN];
    if (read_exact(c->peer, rec, TLSNIC_REC_HDR_LEN) < 0)
        return -1;
    int len = tlsnic_rec_parse_header(c->peer_rx, rec);
    if (len < 0 || read_exact(c->peer, rec + TLSNIC_REC_HDR_LEN, (size_t)len - TLSNIC_REC_HDR_LEN) < 0)
        return -1;
    uint8_t type, *content;
    size_t clen;
    if (tlsnic_rec_open(c->peer_rx, rec, (size_t)len, &type, &content, &clen) < 0 || clen > cap)
        return -1;
    memcpy(out, content, clen);
    return (ssize_t)clen;
}

static void peer_send(struct conn *c, uint8_t type, const void *data, size_t len)
{
    uint8_t rec[256];
    size_t n;
    assert_int_equal(tlsnic_rec_seal(c->peer_tx, type, data, len, rec, sizeof(rec), &n), 0);
    assert_int_equal(write(c->peer, rec, n), (ssize_t)n);
}

static void libc_calls_on_a_tls_socket_carry_records(void **state)
{
    (void)state;
    struct conn c;
    conn_new(&c);
    uint8_t buf[64];
    assert_int_equal(write(c.fd, "ping", 4), 4);
    assert_int_equal(peer_recv(&c, buf, sizeof(buf)), 4);
    assert_memory_equal(buf, "ping", 4);
    peer_send(&c, 23, "pong", 4);
    assert_int_equal(read(c.fd, buf, sizeof(buf)), 4);
    assert_memory_equal(buf, "pong", 4);

    const uint8_t alert[2] = {1, 0};
    peer_send(&c, 21, alert, 2);
    union {
        char b[CMSG_SPACE(1)];
        struct cmsghdr align;
    } cb;
    struct iovec iov = {.iov_base = buf, .iov_len = sizeof(buf)};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cb.b,
                         .msg_controllen = sizeof(cb.b)};
    assert_int_equal(recvmsg(c.fd, &msg, 0), 2);
    struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
    assert_non_null(cm);
    assert_int_equal(cm->cmsg_level, SOL_TLS);
    assert_int_equal(*CMSG_DATA(cm), 21);

    char ulp[16] = {0};
    socklen_t ulen = sizeof(ulp);
    assert_int_equal(getsockopt(c.fd, SOL_TCP, TCP_ULP, ulp, &ulen), 0);
    assert_string_equal(ulp, "tls");
    conn_free(&c);
}

static void a_dup_of_a_tls_socket_shares_its_records(void **state)
{
    (void)state;
    struct conn c;
    conn_new(&c);
    int fd2 = dup(c.fd);
    assert_true(fd2 >= 0);
    uint8_t buf[16];
    assert_int_equal(send(fd2, "dup", 3, 0), 3);
    assert_int_equal(peer_recv(&c, buf, sizeof(buf)), 3);
    close(fd2);
    assert_int_equal(send(c.fd, "orig", 4, 0), 4);
    assert_int_equal(peer_recv(&c, buf, sizeof(buf)), 4); /* same key, next sequence */
    int fd3 = fcntl(c.fd, F_DUPFD_CLOEXEC, 100);
    assert_true(fd3 >= 100);
    assert_int_equal(write(fd3, "fcntl", 5), 5);
    assert_int_equal(peer_recv(&c, buf, sizeof(buf)), 5);
    close(fd3);
    conn_free(&c);
}

static void other_descriptors_are_untouched(void **state)
{
    (void)state;
    int p[2];
    char buf[8];
    assert_int_equal(pipe(p), 0);
    assert_int_equal(write(p[1], "pipe", 4), 4);
    assert_int_equal(read(p[0], buf, sizeof(buf)), 4);
    assert_memory_equal(buf, "pipe", 4);
    close(p[0]);
    close(p[1]);
}

struct drain {
    struct conn *c;
    size_t want;
    int ok;
};

static void *drain_then_reply(void *arg)
{
    struct drain *d = arg;
    static uint8_t buf[TLSNIC_REC_MAX_PLAINTEXT];
    size_t got = 0;
    while (got < d->want) {
        ssize_t n = peer_recv(d->c, buf, sizeof(buf));
        if (n <= 0)
            return NULL;
        got += (size_t)n;
    }
    uint8_t rec[256];
    size_t n;
    if (tlsnic_rec_seal(d->c->peer_tx, 23, (const uint8_t *)"done", 4, rec, sizeof(rec), &n) == 0 &&
        write(d->c->peer, rec, n) == (ssize_t)n)
        d->ok = 1;
    return NULL;
}

static void epoll_wait_flushes_what_a_nonblocking_send_left_pending(void **state)
{
    (void)state;
    struct conn c;
    conn_new(&c);
    int small = 4096;
    setsockopt(c.fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
    setsockopt(c.peer, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    assert_int_equal(fcntl(c.fd, F_SETFL, fcntl(c.fd, F_GETFL) | O_NONBLOCK), 0);
    static uint8_t data[TLSNIC_REC_MAX_PLAINTEXT];
    memset(data, 1, sizeof(data));
    size_t sent = 0;
    int i;
    for (i = 0; i < 10000; i++) {
        ssize_t n = send(c.fd, data, sizeof(data), 0);
        if (n < 0)
            break;
        sent += (size_t)n;
    }
    assert_int_equal(errno, EAGAIN);
    struct drain d = {.c = &c, .want = sent};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, drain_then_reply, &d), 0);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = c.fd};
    assert_int_equal(epoll_ctl(ep, EPOLL_CTL_ADD, c.fd, &ev), 0);
    int ready = 0;
    for (i = 0; i < 50 && !ready; i++) /* at most 50 x 100 ms */
        ready = epoll_wait(ep, &ev, 1, 100);
    pthread_join(t, NULL);
    assert_true(d.ok);
    assert_int_equal(ready, 1);
    uint8_t buf[16];
    assert_int_equal(read(c.fd, buf, sizeof(buf)), 4);
    assert_memory_equal(buf, "done", 4);
    close(ep);
    conn_free(&c);
}

/* ------------------------------------------------------------------------------------------ */
/* Calls the library used not to wrap                                                         */

/* Writes the first part of a sealed record now, the rest later (half a record). */
static size_t peer_seal_raw(struct conn *c, const void *data, size_t len, uint8_t *rec, size_t cap)
{
    size_t n;
    assert_int_equal(tlsnic_rec_seal(c->peer_tx, 23, data, len, rec, cap, &n), 0);
    return n;
}

static void select_and_ppoll_see_a_tls_socket_readable_only_for_a_whole_record(void **state)
{
    (void)state;
    struct conn c;
    conn_new(&c);
    uint8_t rec[256], buf[64];
    size_t n = peer_seal_raw(&c, "whole", 5, rec, sizeof(rec));
    assert_int_equal(write(c.peer, rec, n - 4), (ssize_t)(n - 4));
    usleep(20000);
    fd_set r;
    FD_ZERO(&r);
    FD_SET(c.fd, &r);
    struct timeval tv = {.tv_sec = 0, .tv_usec = 50000};
    assert_int_equal(select(c.fd + 1, &r, NULL, NULL, &tv), 0);
    struct pollfd p = {.fd = c.fd, .events = POLLIN};
    struct timespec ts = {.tv_sec = 0, .tv_nsec = 50000000};
    assert_int_equal(ppoll(&p, 1, &ts, NULL), 0);
    assert_int_equal(write(c.peer, rec + n - 4, 4), 4);
    FD_ZERO(&r);
    FD_SET(c.fd, &r);
    tv = (struct timeval){.tv_sec = 2};
    assert_int_equal(select(c.fd + 1, &r, NULL, NULL, &tv), 1);
    assert_true(FD_ISSET(c.fd, &r));
    p.revents = 0;
    ts = (struct timespec){.tv_sec = 2};
    assert_int_equal(ppoll(&p, 1, &ts, NULL), 1);
    assert_int_equal(read(c.fd, buf, sizeof(buf)), 5);
    assert_memory_equal(buf, "whole", 5);
    conn_free(&c);
}

static void splice_from_a_pipe_sends_the_bytes_as_records(void **state)
{
    (void)state;
    struct conn c;
    conn_new(&c);
    static uint8_t data[20000], got[20000];
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (uint8_t)(i * 13);
    int p[2];
    assert_int_equal(pipe(p), 0);
    size_t sent = 0;
    for (int i = 0; i < 100 && sent < sizeof(data); i++) {
        size_t chunk = sizeof(data) - sent < 4096 ? sizeof(data) - sent : 4096;
        assert_int_equal(write(p[1], data + sent, chunk), (ssize_t)chunk);
        ssize_t n = splice(p[0], NULL, c.fd, NULL, chunk, 0);
        assert_int_equal(n, (ssize_t)chunk);
        sent += (size_t)n;
    }
    size_t have = 0;
    for (int i = 0; i < 100 && have < sizeof(data); i++) {
        ssize_t n = peer_recv(&c, got + have, sizeof(got) - have); /* records, not raw bytes */
        assert_true(n > 0);
        have += (size_t)n;
    }
    assert_memory_equal(got, data, sizeof(data));
    close(p[0]);
    close(p[1]);
    conn_free(&c);
}

static void vmsplice_then_splice_sends_records(void **state)
{
    (void)state;
    struct conn c;
    conn_new(&c);
    int p[2];
    assert_int_equal(pipe(p), 0);
    static char msg[] = "from user pages";
    struct iovec iov = {.iov_base = msg, .iov_len = sizeof(msg) - 1};
    assert_int_equal(vmsplice(p[1], &iov, 1, 0), (ssize_t)iov.iov_len);
    assert_int_equal(splice(p[0], NULL, c.fd, NULL, iov.iov_len, 0), (ssize_t)iov.iov_len);
    uint8_t got[64];
    assert_int_equal(peer_recv(&c, got, sizeof(got)), (ssize_t)iov.iov_len);
    assert_memory_equal(got, msg, iov.iov_len);
    close(p[0]);
    close(p[1]);
    conn_free(&c);
}

static void splice_to_a_pipe_gives_the_plaintext_of_data_records(void **state)
{
    (void)state;
    struct conn c;
    conn_new(&c);
    peer_send(&c, 23, "plain", 5);
    int p[2];
    assert_int_equal(pipe(p), 0);
    assert_int_equal(splice(c.fd, NULL, p[1], NULL, 100, 0), 5);
    char got[16];
    assert_int_equal(read(p[0], got, sizeof(got)), 5);
    assert_memory_equal(got, "plain", 5);
    const uint8_t alert[2] = {1, 0};
    peer_send(&c, 21, alert, 2);
    errno = 0;
    assert_int_equal(splice(c.fd, NULL, p[1], NULL, 100, 0), -1);
    assert_int_equal(errno, EINVAL); /* a control record: not for splice, and it stays */
    union {
        char b[CMSG_SPACE(1)];
        struct cmsghdr align;
    } cb;
    struct iovec iov = {.iov_base = got, .iov_len = sizeof(got)};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cb.b,
                       .msg_controllen = sizeof(cb.b)};
    assert_int_equal(recvmsg(c.fd, &m, 0), 2);
    close(p[0]);
    close(p[1]);
    conn_free(&c);
}

/* tlsnic's own descriptor of c's socket: the other fd of this process with its inode. */
static int own_fd_of(int fd)
{
    struct stat want, st;
    assert_int_equal(fstat(fd, &want), 0);
    for (int i = 0; i < 65536; i++)
        if (i != fd && fstat(i, &st) == 0 && st.st_dev == want.st_dev && st.st_ino == want.st_ino)
            return i;
    return -1;
}

static void close_range_releases_tls_sockets_and_spares_tlsnics_own_descriptors(void **state)
{
    (void)state;
    struct conn c;
    conn_new(&c);
    int kfd = own_fd_of(c.fd);
    assert_true(kfd > 2);
    /* The program does not know kfd: closing "it" must not pull the socket from tlsnic. */
    assert_int_equal(close_range((unsigned)kfd, (unsigned)kfd, 0), 0);
    assert_true(fcntl(kfd, F_GETFD) >= 0);
    int other = dup(c.peer);
    errno = 0;
    assert_int_equal(dup2(other, kfd), -1); /* nor may a dup2 replace it */
    assert_int_equal(errno, EBUSY);
    close(other);
    assert_int_equal(send(c.fd, "alive", 5, 0), 5);
    uint8_t got[16];
    assert_int_equal(peer_recv(&c, got, sizeof(got)), 5);
    assert_int_equal(send(c.fd, "last", 4, 0), 4);
    /* The TLS socket in a range: closed through tlsnic (state released, socket closed). */
    assert_int_equal(close_range((unsigned)c.fd, (unsigned)c.fd, 0), 0);
    assert_true(fcntl(c.fd, F_GETFD) < 0);
    assert_int_equal(peer_recv(&c, got, sizeof(got)), 4);
    uint8_t eof;
    assert_int_equal(read(c.peer, &eof, 1), 0);
    assert_true(fcntl(kfd, F_GETFD) < 0); /* released with the socket */
    c.fd = open("/dev/null", O_RDONLY); /* for conn_free */
    conn_free(&c);
}

/* connect(AF_UNSPEC), TCP's disconnect, is refused on a TLS socket (Linux 6.15). */
static void connect_af_unspec_on_a_tls_socket_is_EOPNOTSUPP_through_libc(void **state)
{
    (void)state;
    struct conn c;
    conn_new(&c);
    struct sockaddr unspec = {.sa_family = AF_UNSPEC};
    errno = 0;
    assert_int_equal(connect(c.fd, &unspec, sizeof(unspec)), -1);
    assert_int_equal(errno, EOPNOTSUPP);
    conn_free(&c);
}

/* Bad addresses from the program are the kernel's EFAULT through libc too. */
static void libc_calls_with_bad_addresses_fail_with_EFAULT(void **state)
{
    (void)state;
    int fds[2];
    assert_int_equal(tcp_pair(fds), 0);
    void *bad = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(bad != MAP_FAILED);
    errno = 0;
    assert_int_equal(setsockopt(fds[0], SOL_TCP, TCP_ULP, bad, 4), -1);
    assert_int_equal(errno, EFAULT);
    munmap(bad, 4096);
    close(fds[0]);
    close(fds[1]);
    struct conn c;
    conn_new(&c);
    peer_send(&c, 23, "x", 1);
    struct iovec iov = {.iov_base = NULL, .iov_len = 16};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};
    errno = 0;
    assert_int_equal(recvmsg(c.fd, &m, 0), -1);
    assert_int_equal(errno, EFAULT);
    conn_free(&c);
}

/*
 * fork: the record state lives in the process that keyed the socket. A forked child's TLS
 * I/O on it fails at once with EBADFD and one line on stderr says why (no silent ciphertext,
 * no hang); its close drops only its copy; the parent's stream goes on.
 */
static void a_forked_child_is_refused_its_parents_tls_socket_visibly(void **state)
{
    (void)state;
    struct conn c;
    conn_new(&c);
    int err_pipe[2];
    assert_int_equal(pipe(err_pipe), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(err_pipe[1], 2);
        uint8_t b[8];
        int ok = read(c.fd, b, sizeof(b)) == -1 && errno == EBADFD;
        ok = ok && write(c.fd, "x", 1) == -1 && errno == EBADFD;
        ok = ok && close(c.fd) == 0;
        _exit(ok ? 0 : 1);
    }
    close(err_pipe[1]);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    char msg[512] = {0};
    ssize_t n = read(err_pipe[0], msg, sizeof(msg) - 1);
    close(err_pipe[0]);
    assert_true(n > 0);
    assert_non_null(strstr(msg, "inherited across fork"));
    uint8_t got[16];
    assert_int_equal(send(c.fd, "parent", 6, 0), 6);
    assert_int_equal(peer_recv(&c, got, sizeof(got)), 6);
    conn_free(&c);
}

/*
 * A program that writes over its environment strings after start (nginx's setproctitle
 * moves environ and writes "nginx: worker process" over the old strings) still gets its
 * counters in TLSNIC_STATS_FILE, one file per process with "%p" in the path. Run in a
 * child (the preload library reads the environment in its constructor): this binary again,
 * with "--rewritten-env-child".
 */
static int rewritten_env_child(void)
{
    extern char **environ;
    for (char **e = environ; *e; e++)
        memset(*e, 0, strlen(*e)); /* what setproctitle leaves of the old strings */
    int fds[2];
    if (tcp_pair(fds) != 0)
        return 2;
    struct tls12_crypto_info_aes_gcm_128 tx;
    memset(&tx, 0x61, sizeof(tx));
    tx.info.version = TLS_1_3_VERSION;
    tx.info.cipher_type = TLS_CIPHER_AES_GCM_128;
    if (setsockopt(fds[0], SOL_TCP, TCP_ULP, "tls", sizeof("tls")) != 0 ||
        setsockopt(fds[0], SOL_TLS, TLS_TX, &tx, sizeof(tx)) != 0)
        return 3;
    close(fds[0]); /* the counters are written here */
    close(fds[1]);
    return 0;
}

static void stats_file_written_after_the_program_rewrote_its_environment(void **state)
{
    (void)state;
    char dir[] = "/tmp/tlsnic-preload-env.XXXXXX", want[128], tmpl[128];
    assert_non_null(mkdtemp(dir));
    snprintf(tmpl, sizeof(tmpl), "%s/stats.%%p", dir);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        setenv("TLSNIC_STATS_FILE", tmpl, 1);
        setenv("TLSNIC_CTL", "off", 1);
        execl("/proc/self/exe", "test_preload_calls", "--rewritten-env-child", (char *)NULL);
        _exit(127);
    }
    int status = -1;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    snprintf(want, sizeof(want), "%s/stats.%ld", dir, (long)pid);
    char buf[4096] = {0};
    int fd = open(want, O_RDONLY);
    if (fd < 0)
        print_error("no counters file %s: %s\n", want, strerror(errno));
    assert_true(fd >= 0);
    assert_true(read(fd, buf, sizeof(buf) - 1) > 0);
    close(fd);
    unlink(want);
    rmdir(dir);
    const char *line = strstr(buf, "TlsTxSw ");
    assert_non_null(line);
    assert_int_equal(strtol(line + strlen("TlsTxSw"), NULL, 10), 1);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--rewritten-env-child") == 0)
        return rewritten_env_child();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(libc_calls_on_a_tls_socket_carry_records),
        cmocka_unit_test(a_dup_of_a_tls_socket_shares_its_records),
        cmocka_unit_test(other_descriptors_are_untouched),
        cmocka_unit_test(epoll_wait_flushes_what_a_nonblocking_send_left_pending),
        cmocka_unit_test(select_and_ppoll_see_a_tls_socket_readable_only_for_a_whole_record),
        cmocka_unit_test(splice_from_a_pipe_sends_the_bytes_as_records),
        cmocka_unit_test(vmsplice_then_splice_sends_records),
        cmocka_unit_test(splice_to_a_pipe_gives_the_plaintext_of_data_records),
        cmocka_unit_test(close_range_releases_tls_sockets_and_spares_tlsnics_own_descriptors),
        cmocka_unit_test(connect_af_unspec_on_a_tls_socket_is_EOPNOTSUPP_through_libc),
        cmocka_unit_test(libc_calls_with_bad_addresses_fail_with_EFAULT),
        cmocka_unit_test(a_forked_child_is_refused_its_parents_tls_socket_visibly),
        cmocka_unit_test(stats_file_written_after_the_program_rewrote_its_environment),
    };
    return cmocka_run_group_tests_name("preload_calls", tests, NULL, NULL);
}
