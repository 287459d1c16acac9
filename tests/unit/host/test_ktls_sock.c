/*
 * tlsnic-only behaviour of the socket layer (src/host/sock.c, tx.c, rx.c): what the kernel
 * has no counterpart for, or what needs tlsnic's system-call seam: mode and reason,
 * counters, fd sharing, pending TX flushed by tlsnic_poll, records intact across short
 * writes and one-byte reads.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "fd_io.h"
#include "tcp_pair.h"
#include "tlsnic/ktls.h"
#include "tlsnic/record.h"

struct pair {
    int fd, peer;
    struct tls12_crypto_info_aes_gcm_256 tx, rx;
    tlsnic_rec_key *peer_rx, *peer_tx;
};

static void pair_new(struct pair *p)
{
    int fds[2];
    assert_int_equal(tcp_pair(fds), 0);
    p->fd = fds[0];
    p->peer = fds[1];
    memset(&p->tx, 0x21, sizeof(p->tx));
    memset(&p->rx, 0x42, sizeof(p->rx));
    p->tx.info.version = p->rx.info.version = TLS_1_2_VERSION;
    p->tx.info.cipher_type = p->rx.info.cipher_type = TLS_CIPHER_AES_GCM_256;
    memset(p->tx.rec_seq, 0, 8);
    memset(p->rx.rec_seq, 0, 8);
    assert_int_equal(tlsnic_rec_key_new(&p->peer_rx, &p->tx, sizeof(p->tx)), 0);
    assert_int_equal(tlsnic_rec_key_new(&p->peer_tx, &p->rx, sizeof(p->rx)), 0);
    assert_int_equal(tlsnic_setsockopt(p->fd, SOL_TCP, TCP_ULP, "tls", 4), 0);
    assert_int_equal(tlsnic_setsockopt(p->fd, SOL_TLS, TLS_TX, &p->tx, sizeof(p->tx)), 0);
    assert_int_equal(tlsnic_setsockopt(p->fd, SOL_TLS, TLS_RX, &p->rx, sizeof(p->rx)), 0);
}

static void pair_free(struct pair *p)
{
    if (p->fd >= 0)
        tlsnic_close(p->fd);
    close(p->peer);
    tlsnic_rec_key_free(p->peer_rx);
    tlsnic_rec_key_free(p->peer_tx);
}

/* One record from the tlsnic socket, opened by the peer; returns the content length. */
static size_t peer_recv(struct pair *p, uint8_t *out, size_t cap)
{
    static uint8_t rec[TLSNIC_REC_MAX_WIRE_LEN];
    int len = fd_read_record(p->peer, rec, sizeof(rec));
    assert_true(len > 0);
    assert_int_equal(tlsnic_rec_parse_header(p->peer_rx, rec), len);
    uint8_t type, *content;
    size_t clen;
    assert_int_equal(tlsnic_rec_open(p->peer_rx, rec, (size_t)len, &type, &content, &clen), 0);
    assert_true(clen <= cap);
    memcpy(out, content, clen);
    return clen;
}

static void plain_socket_passes_through_untouched(void **state)
{
    (void)state;
    int fds[2];
    char buf[8];
    assert_int_equal(tcp_pair(fds), 0);
    assert_int_equal(tlsnic_is_tls(fds[0]), 0);
    assert_int_equal(tlsnic_send(fds[0], "raw", 3, 0), 3);
    assert_int_equal(read(fds[1], buf, sizeof(buf)), 3);
    assert_memory_equal(buf, "raw", 3);
    assert_int_equal(write(fds[1], "back", 4), 4);
    assert_int_equal(tlsnic_recv(fds[0], buf, sizeof(buf), 0), 4);
    assert_memory_equal(buf, "back", 4);
    tlsnic_close(fds[0]);
    close(fds[1]);
}

static void mode_without_device_is_software_because_no_device(void **state)
{
    (void)state;
    struct pair p;
    pair_new(&p);
    struct tlsnic_mode_info m;
    assert_int_equal(tlsnic_get_mode(p.fd, TLSNIC_DIR_TX, &m), 0);
    assert_int_equal(m.mode, TLSNIC_MODE_SW);
    assert_int_equal(m.reason, TLSNIC_SW_REASON_NO_DEVICE);
    assert_string_equal(tlsnic_sw_reason_name(m.reason), "no device");
    assert_int_equal(tlsnic_get_mode(p.fd, TLSNIC_DIR_RX, &m), 0);
    assert_int_equal(m.mode, TLSNIC_MODE_SW);
    pair_free(&p);
}

static void mode_of_an_fd_that_is_not_tlsnic_is_EBADF(void **state)
{
    (void)state;
    struct tlsnic_mode_info m;
    errno = 0;
    assert_int_equal(tlsnic_get_mode(0, TLSNIC_DIR_TX, &m), -1);
    assert_int_equal(errno, EBADF);
}

static void counters_follow_software_directions(void **state)
{
    (void)state;
    uint64_t tx0 = tlsnic_stat_get(TLSNIC_STAT_TX_SW);
    uint64_t rx0 = tlsnic_stat_get(TLSNIC_STAT_RX_SW);
    uint64_t cur0 = tlsnic_stat_get(TLSNIC_STAT_CURR_TX_SW);
    struct pair p;
    pair_new(&p);
    assert_int_equal(tlsnic_stat_get(TLSNIC_STAT_TX_SW), tx0 + 1);
    assert_int_equal(tlsnic_stat_get(TLSNIC_STAT_RX_SW), rx0 + 1);
    assert_int_equal(tlsnic_stat_get(TLSNIC_STAT_CURR_TX_SW), cur0 + 1);
    tlsnic_close(p.fd);
    p.fd = -1;
    assert_int_equal(tlsnic_stat_get(TLSNIC_STAT_CURR_TX_SW), cur0);
    assert_int_equal(tlsnic_stat_get(TLSNIC_STAT_TX_SW), tx0 + 1);
    pair_free(&p);
}

static void decrypt_error_is_counted(void **state)
{
    (void)state;
    struct pair p;
    pair_new(&p);
    uint64_t e0 = tlsnic_stat_get(TLSNIC_STAT_DECRYPT_ERROR);
    static uint8_t rec[TLSNIC_REC_MAX_WIRE_LEN];
    size_t n;
    assert_int_equal(tlsnic_rec_seal(p.peer_tx, TLSNIC_CT_APPLICATION_DATA, (const uint8_t *)"x",
                                     1, rec, sizeof(rec), &n), 0);
    rec[n - 3] ^= 4;
    assert_int_equal(write(p.peer, rec, n), (ssize_t)n);
    char buf[4];
    assert_int_equal(tlsnic_recv(p.fd, buf, sizeof(buf), 0), -1);
    assert_int_equal(errno, EBADMSG);
    assert_int_equal(tlsnic_stat_get(TLSNIC_STAT_DECRYPT_ERROR), e0 + 1);
    pair_free(&p);
}

static void stats_format_names_every_counter_as_the_kernel_does(void **state)
{
    (void)state;
    char buf[4096];
    int n = tlsnic_stats_format(buf, sizeof(buf));
    assert_true(n > 0 && (size_t)n < sizeof(buf));
    const char *names[] = {"TlsCurrTxSw", "TlsCurrRxSw", "TlsCurrTxDevice", "TlsCurrRxDevice",
                           "TlsTxSw", "TlsRxSw", "TlsTxDevice", "TlsRxDevice",
                           "TlsDecryptError", "TlsRxDeviceResync"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        assert_non_null(strstr(buf, names[i]));
    char small[16];
    assert_int_equal(tlsnic_stats_format(small, sizeof(small)), n);
    assert_int_equal(strlen(small), sizeof(small) - 1);
}

static void dup_shares_the_tls_state(void **state)
{
    (void)state;
    struct pair p;
    pair_new(&p);
    int fd2 = dup(p.fd);
    assert_true(fd2 >= 0);
    assert_int_equal(tlsnic_fd_dup(p.fd, fd2), 0);
    uint8_t got[16];
    assert_int_equal(tlsnic_send(p.fd, "one", 3, 0), 3);
    assert_int_equal(tlsnic_send(fd2, "two", 3, 0), 3); /* same record sequence */
    assert_int_equal(peer_recv(&p, got, sizeof(got)), 3);
    assert_int_equal(peer_recv(&p, got, sizeof(got)), 3);
    assert_memory_equal(got, "two", 3);
    assert_int_equal(tlsnic_close(fd2), 0);
    assert_int_equal(tlsnic_is_tls(p.fd), 1);
    assert_int_equal(tlsnic_send(p.fd, "three", 5, 0), 5);
    assert_int_equal(peer_recv(&p, got, sizeof(got)), 5);
    pair_free(&p);
}

struct drain {
    int fd;
    size_t want, got; /* ciphertext bytes */
    int done;
};

/* Reads raw ciphertext until `want` bytes came or 5 s of silence (no asserts off main). */
static void *peer_drain(void *arg)
{
    struct drain *d = arg;
    static uint8_t buf[65536];
    while (d->got < d->want) {
        ssize_t n = read(d->fd, buf, sizeof(buf));
        if (n <= 0)
            break;
        d->got += (size_t)n;
    }
    __atomic_store_n(&d->done, 1, __ATOMIC_RELEASE);
    return NULL;
}

static void poll_flushes_a_record_left_pending_by_a_nonblocking_send(void **state)
{
    (void)state;
    struct pair p;
    pair_new(&p);
    int small = 4096;
    setsockopt(p.fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
    setsockopt(p.peer, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    static uint8_t data[TLSNIC_REC_MAX_PLAINTEXT];
    memset(data, 0x5a, sizeof(data));
    size_t sent = 0, records = 0;
    int i;
    for (i = 0; i < 10000; i++) {
        ssize_t n = tlsnic_send(p.fd, data, sizeof(data), MSG_DONTWAIT);
        if (n < 0) {
            assert_int_equal(errno, EAGAIN);
            break;
        }
        sent += (size_t)n;
        records++; /* each accepted send sealed exactly one record */
    }
    assert_true(i < 10000 && sent > 0);
    const size_t overhead = TLSNIC_REC_HDR_LEN + 8 + TLSNIC_REC_TAG_LEN; /* TLS 1.2 GCM */
    struct drain d = {.fd = p.peer, .want = sent + records * overhead};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, peer_drain, &d), 0);
    /* The program only waits for input; the pending record must still go out. */
    for (i = 0; i < 100 && !__atomic_load_n(&d.done, __ATOMIC_ACQUIRE); i++) {
        struct pollfd pf = {.fd = p.fd, .events = POLLIN};
        assert_true(tlsnic_poll(&pf, 1, 50) >= 0);
        assert_false(pf.revents & POLLOUT);
    }
    pthread_join(t, NULL);
    assert_int_equal(d.got, d.want);
    pair_free(&p);
}

/* The seam: a kernel that takes at most 7 bytes per write and gives 1 byte per read. */
static ssize_t stingy_sendmsg(int fd, const struct msghdr *msg, int flags)
{
    struct iovec iov = msg->msg_iov[0];
    if (iov.iov_len > 7)
        iov.iov_len = 7;
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};
    return sendmsg(fd, &m, flags);
}

static ssize_t stingy_recv(int fd, void *buf, size_t len, int flags)
{
    return recv(fd, buf, len ? 1 : 0, flags);
}

static void records_survive_short_writes_and_one_byte_reads(void **state)
{
    (void)state;
    struct tlsnic_sys_ops ops = {
        .sendmsg = stingy_sendmsg, .recvmsg = recvmsg, .recv = stingy_recv, .read = read,
        .pread = pread, .readv = readv, .writev = writev, .poll = poll,
        .setsockopt = setsockopt, .getsockopt = getsockopt, .fcntl = fcntl, .ioctl = ioctl,
        .close = close,
    };
    tlsnic_set_sys_ops(&ops);
    struct pair p;
    pair_new(&p);
    static uint8_t data[20000], got[TLSNIC_REC_MAX_PLAINTEXT];
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (uint8_t)(i * 7);
    assert_int_equal(tlsnic_send(p.fd, data, sizeof(data), 0), sizeof(data));
    assert_int_equal(peer_recv(&p, got, sizeof(got)), 16384);
    assert_memory_equal(got, data, 16384);
    assert_int_equal(peer_recv(&p, got, sizeof(got)), sizeof(data) - 16384);

    static uint8_t rec[TLSNIC_REC_MAX_WIRE_LEN];
    size_t n;
    assert_int_equal(tlsnic_rec_seal(p.peer_tx, TLSNIC_CT_APPLICATION_DATA, data, 3000, rec,
                                     sizeof(rec), &n), 0);
    assert_int_equal(write(p.peer, rec, n), (ssize_t)n);
    size_t have = 0;
    for (int i = 0; i < 100 && have < 3000; i++) {
        ssize_t r = tlsnic_recv(p.fd, got + have, sizeof(got) - have, 0);
        assert_true(r > 0);
        have += (size_t)r;
    }
    assert_int_equal(have, 3000);
    assert_memory_equal(got, data, 3000);
    pair_free(&p);
    tlsnic_set_sys_ops(NULL);
}

/* ------------------------------------------------------------------------------------------ */
/* Close against calls in progress on other threads (the fd table's references)              */

struct blocked_call {
    int fd;
    uint8_t buf[64];
    ssize_t rc;
    int err;
    atomic_int entered;
};

static void *recv_blocked(void *arg)
{
    struct blocked_call *b = arg;
    atomic_store(&b->entered, 1);
    b->rc = tlsnic_recv(b->fd, b->buf, sizeof(b->buf), 0);
    b->err = errno;
    return NULL;
}

static void peer_send_record(struct pair *p, const void *data, size_t len)
{
    static uint8_t rec[TLSNIC_REC_MAX_WIRE_LEN];
    size_t n;
    assert_int_equal(tlsnic_rec_seal(p->peer_tx, TLSNIC_CT_APPLICATION_DATA, data, len, rec,
                                     sizeof(rec), &n), 0);
    assert_int_equal(write(p->peer, rec, n), (ssize_t)n);
}

static void close_while_another_thread_is_in_recv_is_safe(void **state)
{
    (void)state;
    struct pair p;
    pair_new(&p);
    struct blocked_call b = {.fd = p.fd};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, recv_blocked, &b), 0);
    while (!atomic_load(&b.entered))
        usleep(1000);
    usleep(50000); /* in the kernel's recv by now */
    assert_int_equal(tlsnic_close(p.fd), 0);
    /* The number is free at once, as with close(2); whoever gets it next is not touched by
       the call in progress. */
    int pipefd[2];
    assert_int_equal(pipe(pipefd), 0);
    assert_int_equal(write(pipefd[1], "mine", 4), 4);
    /* As in the kernel, the call in progress keeps the socket: it gets the next record. */
    peer_send_record(&p, "late", 4);
    pthread_join(t, NULL);
    assert_int_equal(b.rc, 4);
    assert_memory_equal(b.buf, "late", 4);
    char got[8];
    assert_int_equal(read(pipefd[0], got, sizeof(got)), 4);
    assert_memory_equal(got, "mine", 4);
    /* The last reference went with the call: the kernel socket is closed now. */
    uint8_t eof;
    assert_int_equal(read(p.peer, &eof, 1), 0);
    close(pipefd[0]);
    close(pipefd[1]);
    p.fd = -1;
    pair_free(&p);
}

static void *send_blocked(void *arg)
{
    struct blocked_call *b = arg;
    static uint8_t data[4 * TLSNIC_REC_MAX_PLAINTEXT];
    memset(data, 0x33, sizeof(data));
    atomic_store(&b->entered, 1);
    size_t sent = 0;
    while (sent < sizeof(data)) { /* fills the socket, then blocks until the peer reads */
        ssize_t n = tlsnic_send(b->fd, data + sent, sizeof(data) - sent, 0);
        if (n <= 0)
            break;
        sent += (size_t)n;
    }
    b->rc = (ssize_t)sent;
    return NULL;
}

static void close_while_another_thread_is_in_send_returns_at_once_and_loses_nothing(void **state)
{
    (void)state;
    struct pair p;
    pair_new(&p);
    int small = 4096;
    setsockopt(p.fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
    setsockopt(p.peer, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    struct blocked_call b = {.fd = p.fd};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, send_blocked, &b), 0);
    while (!atomic_load(&b.entered))
        usleep(1000);
    usleep(100000); /* blocked on the full socket by now */
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(tlsnic_close(p.fd), 0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    assert_true(t1.tv_sec - t0.tv_sec < 2); /* close(2) does not wait for a sender */
    /* The peer reads every record the sender wrote, then the end of the stream. */
    static uint8_t got[TLSNIC_REC_MAX_PLAINTEXT];
    size_t have = 0;
    for (int i = 0; i < 8 && have < 4 * TLSNIC_REC_MAX_PLAINTEXT; i++)
        have += peer_recv(&p, got, sizeof(got));
    pthread_join(t, NULL);
    assert_int_equal(have, 4 * TLSNIC_REC_MAX_PLAINTEXT);
    assert_int_equal(b.rc, (ssize_t)have);
    uint8_t eof;
    assert_int_equal(read(p.peer, &eof, 1), 0);
    p.fd = -1;
    pair_free(&p);
}

struct churn {
    atomic_int stop;
    atomic_long rounds;
};

/* What an event loop's other threads do: flush everyone's pending TX and poll. */
static void *flush_and_poll(void *arg)
{
    struct churn *c = arg;
    while (!atomic_load(&c->stop)) {
        (void)tlsnic_flush_all();
        struct pollfd pf[8];
        for (int i = 0; i < 8; i++)
            pf[i] = (struct pollfd){.fd = 3 + i, .events = POLLIN};
        (void)tlsnic_poll(pf, 8, 0);
        atomic_fetch_add(&c->rounds, 1);
    }
    return NULL;
}

static void flush_all_and_poll_race_with_close_safely(void **state)
{
    (void)state;
    struct churn c = {0};
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&t[i], NULL, flush_and_poll, &c), 0);
    for (int i = 0; i < 5000 && atomic_load(&c.rounds) == 0; i++)
        usleep(1000);
    for (int round = 0; round < 40; round++) {
        usleep(1000); /* let the others run between the sockets' lives */
        struct pair p;
        pair_new(&p);
        /* Leave a record pending so flush_all has something of this socket to touch. */
        int small = 4096;
        setsockopt(p.fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
        setsockopt(p.peer, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
        static uint8_t data[TLSNIC_REC_MAX_PLAINTEXT];
        for (int i = 0; i < 64; i++)
            if (tlsnic_send(p.fd, data, sizeof(data), MSG_DONTWAIT) < 0)
                break;
        struct linger reset = {.l_onoff = 1, .l_linger = 0};
        setsockopt(p.peer, SOL_SOCKET, SO_LINGER, &reset, sizeof(reset));
        close(p.peer); /* the drain on close ends at once: the peer is gone */
        p.peer = open("/dev/null", O_RDONLY);
        pair_free(&p);
    }
    long during = atomic_load(&c.rounds);
    atomic_store(&c.stop, 1);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    assert_true(during > 40); /* the other threads did run while sockets came and went */
}

/* tlsnic's own descriptor of p's socket: the other fd of this process with its inode. */
static int private_fd_of(int fd)
{
    struct stat want, st;
    assert_int_equal(fstat(fd, &want), 0);
    for (int i = 0; i < 65536; i++)
        if (i != fd && fstat(i, &st) == 0 && st.st_dev == want.st_dev && st.st_ino == want.st_ino)
            return i;
    return -1;
}

static void tlsnics_own_descriptor_cannot_be_closed_by_the_program(void **state)
{
    (void)state;
    struct pair p;
    pair_new(&p);
    int kfd = private_fd_of(p.fd);
    assert_true(kfd > 2);
    assert_int_equal(tlsnic_is_tls(kfd), 0);
    assert_int_equal(tlsnic_fd_is_private(kfd), 1);
    errno = 0;
    assert_int_equal(tlsnic_close(kfd), -1);
    assert_int_equal(errno, EBADF);
    assert_true(fcntl(kfd, F_GETFD) & FD_CLOEXEC);
    uint8_t got[8];
    assert_int_equal(tlsnic_send(p.fd, "ok", 2, 0), 2);
    assert_int_equal(peer_recv(&p, got, sizeof(got)), 2);
    pair_free(&p);
    assert_int_equal(tlsnic_fd_is_private(kfd), 0);
    assert_true(fcntl(kfd, F_GETFD) < 0); /* closed with the socket */
}

static void forked_child_gets_EBADFD_and_the_parent_keeps_the_socket(void **state)
{
    (void)state;
    struct pair p;
    pair_new(&p);
    assert_int_equal(tlsnic_send(p.fd, "before", 6, 0), 6);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int ok = tlsnic_send(p.fd, "child", 5, 0) == -1 && errno == EBADFD;
        uint8_t b[8];
        ok = ok && tlsnic_recv(p.fd, b, sizeof(b), MSG_DONTWAIT) == -1 && errno == EBADFD;
        struct tlsnic_mode_info m;
        ok = ok && tlsnic_get_mode(p.fd, TLSNIC_DIR_TX, &m) == -1 && errno == EBADFD;
        ok = ok && tlsnic_close(p.fd) == 0; /* drops the child's copy only */
        _exit(ok ? 0 : 1);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    uint8_t got[16];
    assert_int_equal(peer_recv(&p, got, sizeof(got)), 6);
    assert_int_equal(tlsnic_send(p.fd, "after", 5, 0), 5); /* next sequence: nothing lost */
    assert_int_equal(peer_recv(&p, got, sizeof(got)), 5);
    assert_memory_equal(got, "after", 5);
    pair_free(&p);
}

/* A cipher <linux/tls.h> knows and this libcrypto lacks (SM4 before OpenSSL 3.2): the
 * kernel's errno for a missing crypto algorithm (crypto_alloc_aead), not EOPNOTSUPP. */
static void a_cipher_libcrypto_lacks_is_ENOENT(void **state)
{
    (void)state;
    EVP_CIPHER *have = EVP_CIPHER_fetch(NULL, "SM4-GCM", NULL);
    if (have) {
        EVP_CIPHER_free(have);
        skip(); /* this libcrypto has SM4-GCM: then it works like the others */
    }
    int fds[2];
    assert_int_equal(tcp_pair(fds), 0);
    assert_int_equal(tlsnic_setsockopt(fds[0], SOL_TCP, TCP_ULP, "tls", 4), 0);
    struct tls12_crypto_info_sm4_gcm ci;
    memset(&ci, 0x5c, sizeof(ci));
    ci.info.version = TLS_1_3_VERSION;
    ci.info.cipher_type = TLS_CIPHER_SM4_GCM;
    errno = 0;
    assert_int_equal(tlsnic_setsockopt(fds[0], SOL_TLS, TLS_TX, &ci, sizeof(ci)), -1);
    assert_int_equal(errno, ENOENT);
    tlsnic_close(fds[0]);
    close(fds[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(plain_socket_passes_through_untouched),
        cmocka_unit_test(mode_without_device_is_software_because_no_device),
        cmocka_unit_test(mode_of_an_fd_that_is_not_tlsnic_is_EBADF),
        cmocka_unit_test(counters_follow_software_directions),
        cmocka_unit_test(decrypt_error_is_counted),
        cmocka_unit_test(stats_format_names_every_counter_as_the_kernel_does),
        cmocka_unit_test(dup_shares_the_tls_state),
        cmocka_unit_test(poll_flushes_a_record_left_pending_by_a_nonblocking_send),
        cmocka_unit_test(records_survive_short_writes_and_one_byte_reads),
        cmocka_unit_test(close_while_another_thread_is_in_recv_is_safe),
        cmocka_unit_test(close_while_another_thread_is_in_send_returns_at_once_and_loses_nothing),
        cmocka_unit_test(flush_all_and_poll_race_with_close_safely),
        cmocka_unit_test(tlsnics_own_descriptor_cannot_be_closed_by_the_program),
        cmocka_unit_test(forked_child_gets_EBADFD_and_the_parent_keeps_the_socket),
        cmocka_unit_test(a_cipher_libcrypto_lacks_is_ENOENT),
    };
    return cmocka_run_group_tests_name("ktls_sock", tests, NULL, NULL);
}
