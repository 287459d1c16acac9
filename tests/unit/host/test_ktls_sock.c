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
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cmocka.h>

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

static void read_all(int fd, void *buf, size_t len)
{
    uint8_t *b = buf;
    while (len > 0) {
        ssize_t n = read(fd, b, len);
        assert_true(n > 0);
        b += n;
        len -= (size_t)n;
    }
}

/* One record from the tlsnic socket, opened by the peer; returns the content length. */
static size_t peer_recv(struct pair *p, uint8_t *out, size_t cap)
{
    static uint8_t rec[TLSNIC_REC_MAX_WIRE_LEN];
    read_all(p->peer, rec, TLSNIC_REC_HDR_LEN);
    int len = tlsnic_rec_parse_header(p->peer_rx, rec);
    assert_true(len > 0);
    read_all(p->peer, rec + TLSNIC_REC_HDR_LEN, (size_t)len - TLSNIC_REC_HDR_LEN);
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
    };
    return cmocka_run_group_tests_name("ktls_sock", tests, NULL, NULL);
}
