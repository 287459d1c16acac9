/*
 * The kTLS socket semantics, one behaviour per test, written against the socket API table
 * (sockapi.h) so that every test runs twice: against the Linux kernel's own kTLS (the
 * reference; skipped with a message where the running kernel has no "tls" ULP) and against
 * tlsnic. The socket under test is fds[0] of a loopback TCP pair; its peer fds[1] speaks
 * raw TLS records made and checked with the record layer directly.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "record_type_msg.h"
#include "sockapi.h"
#include "tcp_pair.h"
#include "tlsnic/ktls.h"
#include "tlsnic/record.h"

/* ------------------------------------------------------------------------------------------ */
/* Fixture                                                                                    */

static const struct sockapi *api;

struct fx {
    int fd;   /* socket under test */
    int peer; /* raw TCP peer */
    uint16_t version, cipher;
    union tlsnic_crypto_info tx_info; /* keys of the socket's TX (the peer's RX) */
    union tlsnic_crypto_info rx_info; /* keys of the socket's RX (the peer's TX) */
    size_t info_len;
    tlsnic_rec_key *peer_tx, *peer_rx;
};

static void make_info(union tlsnic_crypto_info *ci, uint16_t version, uint16_t cipher,
                      uint8_t seed, uint64_t rec_seq)
{
    memset(ci, 0, sizeof(*ci));
    ci->info.version = version;
    ci->info.cipher_type = cipher;
    uint8_t seq[8];
    for (int i = 0; i < 8; i++)
        seq[i] = (uint8_t)(rec_seq >> (56 - 8 * i));
    switch (cipher) {
    case TLS_CIPHER_AES_GCM_128:
    case TLS_CIPHER_AES_CCM_128:  /* AES-GCM-128's layout */
    case TLS_CIPHER_ARIA_GCM_128:
    case TLS_CIPHER_SM4_GCM:
    case TLS_CIPHER_SM4_CCM:
        memset(ci->aes_gcm_128.key, seed, sizeof(ci->aes_gcm_128.key));
        memset(ci->aes_gcm_128.salt, seed + 1, sizeof(ci->aes_gcm_128.salt));
        memset(ci->aes_gcm_128.iv, seed + 2, sizeof(ci->aes_gcm_128.iv));
        memcpy(ci->aes_gcm_128.rec_seq, seq, 8);
        break;
    case TLS_CIPHER_AES_GCM_256:
    case TLS_CIPHER_ARIA_GCM_256: /* AES-GCM-256's layout */
        memset(ci->aes_gcm_256.key, seed, sizeof(ci->aes_gcm_256.key));
        memset(ci->aes_gcm_256.salt, seed + 1, sizeof(ci->aes_gcm_256.salt));
        memset(ci->aes_gcm_256.iv, seed + 2, sizeof(ci->aes_gcm_256.iv));
        memcpy(ci->aes_gcm_256.rec_seq, seq, 8);
        break;
    default:
        memset(ci->chacha20_poly1305.key, seed, sizeof(ci->chacha20_poly1305.key));
        memset(ci->chacha20_poly1305.iv, seed + 2, sizeof(ci->chacha20_poly1305.iv));
        memcpy(ci->chacha20_poly1305.rec_seq, seq, 8);
        break;
    }
}


/* A connected pair; the socket under test has the ULP but no keys yet. */
static struct fx *fx_new_ulp(uint16_t version, uint16_t cipher)
{
    struct fx *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    int fds[2];
    assert_int_equal(tcp_pair(fds), 0);
    f->fd = fds[0];
    f->peer = fds[1];
    f->version = version;
    f->cipher = cipher;
    f->info_len = tlsnic_crypto_info_size(cipher);
    make_info(&f->tx_info, version, cipher, 0x11, 7);
    make_info(&f->rx_info, version, cipher, 0x55, 3);
    assert_int_equal(tlsnic_rec_key_new(&f->peer_rx, &f->tx_info, f->info_len), 0);
    assert_int_equal(tlsnic_rec_key_new(&f->peer_tx, &f->rx_info, f->info_len), 0);
    assert_int_equal(api->setsockopt(f->fd, SOL_TCP, TCP_ULP, "tls", sizeof("tls")), 0);
    return f;
}

static struct fx *fx_new_with(uint16_t version, uint16_t cipher)
{
    struct fx *f = fx_new_ulp(version, cipher);
    assert_int_equal(api->setsockopt(f->fd, SOL_TLS, TLS_TX, &f->tx_info, f->info_len), 0);
    assert_int_equal(api->setsockopt(f->fd, SOL_TLS, TLS_RX, &f->rx_info, f->info_len), 0);
    return f;
}

static struct fx *fx_new(void)
{
    return fx_new_with(TLS_1_3_VERSION, TLS_CIPHER_AES_GCM_128);
}

static void fx_free(struct fx *f)
{
    api->close(f->fd);
    close(f->peer);
    tlsnic_rec_key_free(f->peer_tx);
    tlsnic_rec_key_free(f->peer_rx);
    free(f);
}

static void write_all(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        assert_true(n > 0);
        p += n;
        len -= (size_t)n;
    }
}

static void read_all(int fd, void *buf, size_t len)
{
    uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = read(fd, p, len);
        assert_true(n > 0); /* SO_RCVTIMEO bounds the wait */
        p += n;
        len -= (size_t)n;
    }
}

/* Seals one record with the peer's TX key into out; returns its length. */
static size_t peer_seal(struct fx *f, uint8_t type, const void *data, size_t len, uint8_t *out,
                        size_t cap)
{
    size_t out_len = 0;
    assert_int_equal(tlsnic_rec_seal(f->peer_tx, type, data, len, out, cap, &out_len), 0);
    return out_len;
}

static void peer_send(struct fx *f, uint8_t type, const void *data, size_t len)
{
    static uint8_t rec[TLSNIC_REC_MAX_WIRE_LEN];
    size_t n = peer_seal(f, type, data, len, rec, sizeof(rec));
    write_all(f->peer, rec, n);
}

/* Reads one record from the socket under test; returns its content length. */
static size_t peer_recv(struct fx *f, uint8_t *type, uint8_t *out, size_t cap)
{
    static uint8_t rec[TLSNIC_REC_MAX_WIRE_LEN + 256];
    read_all(f->peer, rec, TLSNIC_REC_HDR_LEN);
    int len = tlsnic_rec_parse_header(f->peer_rx, rec);
    assert_true(len > TLSNIC_REC_HDR_LEN);
    read_all(f->peer, rec + TLSNIC_REC_HDR_LEN, (size_t)len - TLSNIC_REC_HDR_LEN);
    uint8_t *content;
    size_t clen;
    assert_int_equal(tlsnic_rec_open(f->peer_rx, rec, (size_t)len, type, &content, &clen), 0);
    assert_true(clen <= cap);
    memcpy(out, content, clen);
    return clen;
}

/* Nothing more from the socket under test within ms milliseconds. */
static void peer_expect_nothing(struct fx *f, int ms)
{
    struct pollfd p = {.fd = f->peer, .events = POLLIN};
    assert_int_equal(poll(&p, 1, ms), 0);
}

static void fill(uint8_t *buf, size_t len, uint32_t seed)
{
    for (size_t i = 0; i < len; i++) {
        seed = seed * 1103515245u + 12345u;
        buf[i] = (uint8_t)(seed >> 16);
    }
}

static ssize_t recv_with_type(struct fx *f, void *buf, size_t len, int flags, uint8_t *type)
{
    struct record_type_msg m;
    ssize_t n = api->recvmsg(f->fd, record_type_msg_to_recv(&m, buf, len), flags);
    *type = n >= 0 ? record_type_msg_type(&m) : 0;
    return n;
}

static ssize_t send_with_type(struct fx *f, uint8_t type, const void *buf, size_t len, int flags)
{
    struct record_type_msg m;
    return api->sendmsg(f->fd, record_type_msg_to_send(&m, type, buf, len), flags);
}

/* One recv of the socket under test (with flags, room for 64 bytes) returns exactly want. */
static void expect_recv(struct fx *f, int flags, const void *want, size_t len)
{
    uint8_t got[64];
    memset(got, 0, sizeof(got)); /* nothing left from an earlier read */
    assert_true(len <= sizeof(got));
    assert_int_equal(api->recv(f->fd, got, sizeof(got), flags), len);
    assert_memory_equal(got, want, len);
}

/* poll on the socket under test: not readable within ms milliseconds. */
static void expect_not_readable(struct fx *f, int ms)
{
    struct pollfd p = {.fd = f->fd, .events = POLLIN};
    assert_int_equal(api->poll(&p, 1, ms), 0);
}

/* poll on the socket under test: readable (POLLIN) within ms milliseconds. */
static void expect_readable(struct fx *f, int ms)
{
    struct pollfd p = {.fd = f->fd, .events = POLLIN};
    assert_int_equal(api->poll(&p, 1, ms), 1);
    assert_true(p.revents & POLLIN);
}

/* The peer moves to the next TLS 1.3 AES-128-GCM keys (from seed, rec_seq 0) for the
 * records it sends; they are in *next for the socket's TLS_RX. */
static void peer_tx_takes_next_keys(struct fx *f, union tlsnic_crypto_info *next, uint8_t seed)
{
    make_info(next, TLS_1_3_VERSION, TLS_CIPHER_AES_GCM_128, seed, 0);
    tlsnic_rec_key_free(f->peer_tx);
    assert_int_equal(tlsnic_rec_key_new(&f->peer_tx, next, f->info_len), 0);
}

/*
 * True when the socket under test is the kernel's and the running kernel is older than
 * major.minor, the release that brought the behaviour a test checks. Such a test then checks
 * what the older kernel really does, and reports itself skipped for the rest (the reference
 * guest, vm/, runs Debian 12's newest kernel, 6.12; TLS 1.3 rekey came in 6.14).
 */
static int kernel_older_than(int major, int minor)
{
    struct utsname u;
    int maj = 0, min = 0;
    if (api != &sockapi_kernel || uname(&u) != 0 || sscanf(u.release, "%d.%d", &maj, &min) != 2)
        return 0;
    if (maj != major ? maj > major : min >= minor)
        return 0;
    printf("[ INFO     ] kernel %s is older than %d.%d: the rest of this test needs %d.%d\n",
           u.release, major, minor, major, minor);
    return 1;
}

/*
 * For the kernel variant: skip a test whose behaviour the running kernel predates (the
 * reference run says which kernel judged what). tlsnic is always held to it.
 */
static void needs_kernel(int major, int minor, const char *what)
{
    if (api != &sockapi_kernel)
        return;
    struct utsname u = {0};
    int ma = 0, mi = 0;
    if (uname(&u) == 0 && sscanf(u.release, "%d.%d", &ma, &mi) == 2 &&
        (ma > major || (ma == major && mi >= minor)))
        return;
    print_message("kernel %s predates %s (Linux %d.%d)\n", u.release, what, major, minor);
    skip();
}

#define assert_fails_with(expr, err)                                                         \
    do {                                                                                     \
        errno = 0;                                                                           \
        long rc_ = (long)(expr);                                                             \
        int e_ = errno;                                                                      \
        assert_int_equal(rc_, -1);                                                           \
        assert_int_equal(e_, (err));                                                         \
    } while (0)

/* ------------------------------------------------------------------------------------------ */
/* Socket options                                                                             */

static void ulp_on_unconnected_socket_is_ENOTCONN(void **state)
{
    (void)state;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    assert_fails_with(api->setsockopt(fd, SOL_TCP, TCP_ULP, "tls", sizeof("tls")), ENOTCONN);
    api->close(fd);
}

static void ulp_twice_is_EEXIST(void **state)
{
    (void)state;
    struct fx *f = fx_new_ulp(TLS_1_3_VERSION, TLS_CIPHER_AES_GCM_128);
    assert_fails_with(api->setsockopt(f->fd, SOL_TCP, TCP_ULP, "tls", sizeof("tls")), EEXIST);
    fx_free(f);
}

static void tls_tx_without_ulp_is_ENOPROTOOPT(void **state)
{
    (void)state;
    int fds[2];
    assert_int_equal(tcp_pair(fds), 0);
    union tlsnic_crypto_info ci;
    make_info(&ci, TLS_1_2_VERSION, TLS_CIPHER_AES_GCM_128, 1, 0);
    assert_fails_with(api->setsockopt(fds[0], SOL_TLS, TLS_TX, &ci, sizeof(ci.aes_gcm_128)),
                      ENOPROTOOPT);
    api->close(fds[0]);
    close(fds[1]);
}

static void tls_tx_shorter_than_crypto_info_header_is_EINVAL(void **state)
{
    (void)state;
    struct fx *f = fx_new_ulp(TLS_1_2_VERSION, TLS_CIPHER_AES_GCM_128);
    assert_fails_with(api->setsockopt(f->fd, SOL_TLS, TLS_TX, &f->tx_info, 2), EINVAL);
    fx_free(f);
}

static void tls_tx_with_wrong_struct_length_is_EINVAL(void **state)
{
    (void)state;
    struct fx *f = fx_new_ulp(TLS_1_2_VERSION, TLS_CIPHER_AES_GCM_128);
    assert_fails_with(api->setsockopt(f->fd, SOL_TLS, TLS_TX, &f->tx_info, f->info_len - 1),
                      EINVAL);
    assert_fails_with(api->setsockopt(f->fd, SOL_TLS, TLS_TX, &f->tx_info, f->info_len + 1),
                      EINVAL);
    fx_free(f);
}

static void tls_tx_with_unknown_cipher_is_EINVAL(void **state)
{
    (void)state;
    struct fx *f = fx_new_ulp(TLS_1_2_VERSION, TLS_CIPHER_AES_GCM_128);
    f->tx_info.info.cipher_type = 99;
    assert_fails_with(api->setsockopt(f->fd, SOL_TLS, TLS_TX, &f->tx_info, f->info_len), EINVAL);
    fx_free(f);
}

static void tls_tx_with_unknown_version_is_EINVAL(void **state)
{
    (void)state;
    struct fx *f = fx_new_ulp(TLS_1_2_VERSION, TLS_CIPHER_AES_GCM_128);
    f->tx_info.info.version = 0x0302; /* TLS 1.1 */
    assert_fails_with(api->setsockopt(f->fd, SOL_TLS, TLS_TX, &f->tx_info, f->info_len), EINVAL);
    fx_free(f);
}

static void second_tls_tx_on_tls12_is_EBUSY(void **state)
{
    (void)state;
    struct fx *f = fx_new_with(TLS_1_2_VERSION, TLS_CIPHER_AES_GCM_128);
    assert_fails_with(api->setsockopt(f->fd, SOL_TLS, TLS_TX, &f->tx_info, f->info_len), EBUSY);
    fx_free(f);
}

static void getsockopt_tls_tx_before_keys_is_EBUSY(void **state)
{
    (void)state;
    struct fx *f = fx_new_ulp(TLS_1_2_VERSION, TLS_CIPHER_AES_GCM_128);
    union tlsnic_crypto_info got;
    socklen_t len = (socklen_t)f->info_len;
    assert_fails_with(api->getsockopt(f->fd, SOL_TLS, TLS_TX, &got, &len), EBUSY);
    fx_free(f);
}

static void getsockopt_tls_tx_returns_the_crypto_info(void **state)
{
    (void)state;
    const uint16_t ciphers[] = {TLS_CIPHER_AES_GCM_128, TLS_CIPHER_AES_GCM_256,
                                TLS_CIPHER_CHACHA20_POLY1305};
    for (size_t i = 0; i < 3; i++) {
        struct fx *f = fx_new_with(TLS_1_3_VERSION, ciphers[i]);
        union tlsnic_crypto_info got;
        memset(&got, 0xee, sizeof(got));
        socklen_t len = (socklen_t)f->info_len;
        assert_int_equal(api->getsockopt(f->fd, SOL_TLS, TLS_TX, &got, &len), 0);
        assert_memory_equal(&got, &f->tx_info, f->info_len);
        len = (socklen_t)f->info_len;
        assert_int_equal(api->getsockopt(f->fd, SOL_TLS, TLS_RX, &got, &len), 0);
        assert_memory_equal(&got, &f->rx_info, f->info_len);
        fx_free(f);
    }
}

static void getsockopt_tls_tx_rec_seq_follows_the_records_sent(void **state)
{
    (void)state;
    struct fx *f = fx_new();
    uint8_t buf[64], type;
    assert_int_equal(api->send(f->fd, "one", 3, 0), 3);
    assert_int_equal(api->send(f->fd, "two", 3, 0), 3);
    assert_int_equal(peer_recv(f, &type, buf, sizeof(buf)), 3);
    assert_int_equal(peer_recv(f, &type, buf, sizeof(buf)), 3);
    union tlsnic_crypto_info got;
    socklen_t len = (socklen_t)f->info_len;
    assert_int_equal(api->getsockopt(f->fd, SOL_TLS, TLS_TX, &got, &len), 0);
    const uint8_t want[8] = {0, 0, 0, 0, 0, 0, 0, 9}; /* started at 7 */
    assert_memory_equal(got.aes_gcm_128.rec_seq, want, 8);
    fx_free(f);
}

static void tx_zerocopy_ro_is_accepted(void **state)
{
    (void)state;
    struct fx *f = fx_new();
    int one = 1;
    assert_int_equal(api->setsockopt(f->fd, SOL_TLS, TLS_TX_ZEROCOPY_RO, &one, sizeof(one)), 0);
    fx_free(f);
}

static void rx_expect_no_pad_needs_tls13(void **state)
{
    (void)state;
    int one = 1;
    struct fx *f = fx_new_with(TLS_1_2_VERSION, TLS_CIPHER_AES_GCM_128);
    assert_fails_with(api->setsockopt(f->fd, SOL_TLS, TLS_RX_EXPECT_NO_PAD, &one, sizeof(one)),
                      EINVAL);
    fx_free(f);
    f = fx_new();
    assert_int_equal(api->setsockopt(f->fd, SOL_TLS, TLS_RX_EXPECT_NO_PAD, &one, sizeof(one)), 0);
    fx_free(f);
}

/* ------------------------------------------------------------------------------------------ */
/* TX                                                                                         */

static void send_splits_into_records_of_at_most_16384_bytes(void **state)
{
    (void)state;
    struct fx *f = fx_new();
    static uint8_t data[40000], got[TLSNIC_REC_MAX_PLAINTEXT];
    fill(data, sizeof(data), 1);
    assert_int_equal(api->send(f->fd, data, sizeof(data), 0), sizeof(data));
    const size_t want[] = {16384, 16384, 40000 - 2 * 16384};
    size_t off = 0;
    for (int i = 0; i < 3; i++) {
        uint8_t type;
        size_t n = peer_recv(f, &type, got, sizeof(got));
        assert_int_equal(type, TLSNIC_CT_APPLICATION_DATA);
        assert_int_equal(n, want[i]);
        assert_memory_equal(got, data + off, n);
        off += n;
    }
    fx_free(f);
}

static void msg_more_keeps_the_record_open(void **state)
{
    (void)state;
    struct fx *f = fx_new();
    uint8_t got[64], type;
    assert_int_equal(api->send(f->fd, "hello ", 6, MSG_MORE), 6);
    peer_expect_nothing(f, 50);
    assert_int_equal(api->send(f->fd, "world", 5, 0), 5);
    assert_int_equal(peer_recv(f, &type, got, sizeof(got)), 11);
    assert_memory_equal(got, "hello world", 11);
    fx_free(f);
}

static void msg_eor_closes_the_record(void **state)
{
    (void)state;
    struct fx *f = fx_new();
    uint8_t got[64], type;
    assert_int_equal(api->send(f->fd, "ab", 2, MSG_MORE), 2);
    assert_int_equal(api->send(f->fd, "cd", 2, MSG_EOR), 2);
    assert_int_equal(peer_recv(f, &type, got, sizeof(got)), 4);
    assert_memory_equal(got, "abcd", 4);
    fx_free(f);
}

static void record_type_cmsg_sends_a_record_of_its_own(void **state)
{
    (void)state;
    struct fx *f = fx_new();
    uint8_t got[64], type;
    const uint8_t alert[2] = {1, 0}; /* warning, close_notify */
    assert_int_equal(api->send(f->fd, "abc", 3, MSG_MORE), 3);
    assert_int_equal(send_with_type(f, TLSNIC_CT_ALERT, alert, 2, 0), 2);
    assert_int_equal(peer_recv(f, &type, got, sizeof(got)), 3);
    assert_int_equal(type, TLSNIC_CT_APPLICATION_DATA);
    assert_memory_equal(got, "abc", 3);
    assert_int_equal(peer_recv(f, &type, got, sizeof(got)), 2);
    assert_int_equal(type, TLSNIC_CT_ALERT);
    assert_memory_equal(got, alert, 2);
    fx_free(f);
}

static void record_type_cmsg_with_msg_more_is_EINVAL(void **state)
{
    (void)state;
    struct fx *f = fx_new();
    const uint8_t alert[2] = {1, 0};
    assert_fails_with(send_with_type(f, TLSNIC_CT_ALERT, alert, 2, MSG_MORE), EINVAL);
    fx_free(f);
}

static void send_with_msg_oob_is_EOPNOTSUPP(void **state)
{
    (void)state;
    struct fx *f = fx_new();
    assert_fails_with(api->send(f->fd, "x", 1, MSG_OOB), EOPNOTSUPP);
    fx_free(f);
}

/*
 * A non-blocking send that fills the socket: what it accepted is the socket's, and goes
 * out when the peer makes room, with no further call from the program (the kernel's
 * write-space callback pushes pending records).
 */
static void nonblocking_send_delivers_all_it_accepted_without_another_call(void **state)
{
    (void)state;
    struct fx *f = fx_new();
    int small = 4096;
    setsockopt(f->fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
    setsockopt(f->peer, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    static uint8_t data[64 * TLSNIC_REC_MAX_PLAINTEXT], got[TLSNIC_REC_MAX_PLAINTEXT];
    fill(data, sizeof(data), 21);
    size_t sent = 0;
    for (int i = 0; i < 64; i++) {
        ssize_t n = api->send(f->fd, data + sent, TLSNIC_REC_MAX_PLAINTEXT, MSG_DONTWAIT);
        if (n < 0) {
            assert_int_equal(errno, EAGAIN);
            break;
        }
        sent += (size_t)n;
    }
    assert_true(sent > 0 && sent < sizeof(data));
    size_t have = 0;
    while (have < sent) { /* the socket under test is left alone from here on */
        uint8_t type;
        size_t n = peer_recv(f, &type, got, sizeof(got)); /* fails after 5 s of nothing */
        assert_memory_equal(got, data + have, n);
        have += n;
    }
    assert_int_equal(have, sent);
    fx_free(f);
}

static void sendfile_sends_the_file_as_records(void **state)
{
    (void)state;
    struct fx *f = fx_new();
    char path[] = "/tmp/tlsnic-sendfile-XXXXXX";
    int file = mkstemp(path);
    assert_true(file >= 0);
    unlink(path);
    static uint8_t data[100000], got[100000];
    fill(data, sizeof(data), 7);
    write_all(file, data, sizeof(data));
    off_t off = 1000;
    assert_int_equal(api->sendfile(f->fd, file, &off, sizeof(data) - 1000), sizeof(data) - 1000);
    assert_int_equal(off, sizeof(data));
    size_t have = 0;
    while (have < sizeof(data) - 1000) {
        uint8_t type;
        size_t n = peer_recv(f, &type, got + have, sizeof(got) - have);
        assert_true(n > 0 && n <= TLSNIC_REC_MAX_PLAINTEXT);
        have += n;
    }
    assert_int_equal(have, sizeof(data) - 1000);
    assert_memory_equal(got, data + 1000, have);
    close(file);
    fx_free(f);
}

static void tls13_tx_rekey_uses_the_new_keys(void **state)
{
    (void)state;
    needs_kernel(6, 14, "TLS 1.3 rekey");
    struct fx *f = fx_new();
    uint8_t got[64], type;
    assert_int_equal(api->send(f->fd, "old", 3, 0), 3);
    assert_int_equal(peer_recv(f, &type, got, sizeof(got)), 3);
    union tlsnic_crypto_info next;
    make_info(&next, TLS_1_3_VERSION, TLS_CIPHER_AES_GCM_128, 0x77, 0);
    if (kernel_older_than(6, 14)) {
        /* Before 6.14 a second TLS_TX is refused whatever the version. */
        assert_fails_with(api->setsockopt(f->fd, SOL_TLS, TLS_TX, &next, f->info_len), EBUSY);
        fx_free(f);
        skip();
    }
    assert_int_equal(api->setsockopt(f->fd, SOL_TLS, TLS_TX, &next, f->info_len), 0);
    assert_int_equal(api->send(f->fd, "new", 3, 0), 3);
    tlsnic_rec_key_free(f->peer_rx);
    assert_int_equal(tlsnic_rec_key_new(&f->peer_rx, &next, f->info_len), 0);
    assert_int_equal(peer_recv(f, &type, got, sizeof(got)), 3);
    assert_memory_equal(got, "new", 3);
    fx_free(f);
}

static void every_version_and_cipher_round_trips(void **state)
{
    (void)state;
    const uint16_t versions[] = {TLS_1_2_VERSION, TLS_1_3_VERSION};
    const uint16_t ciphers[] = {TLS_CIPHER_AES_GCM_128, TLS_CIPHER_AES_GCM_256,
                                TLS_CIPHER_CHACHA20_POLY1305};
    for (size_t v = 0; v < 2; v++) {
        for (size_t c = 0; c < 3; c++) {
            struct fx *f = fx_new_with(versions[v], ciphers[c]);
            uint8_t got[64], type;
            assert_int_equal(api->send(f->fd, "ping", 4, 0), 4);
            assert_int_equal(peer_recv(f, &type, got, sizeof(got)), 4);
            assert_memory_equal(got, "ping", 4);
            peer_send(f, TLSNIC_CT_APPLICATION_DATA, "pong", 4);
            expect_recv(f, 0, "pong", 4);
            fx_free(f);
        }
    }
}

/* AES-CCM-128 (TLS 1.2 and 1.3) and ARIA-GCM (TLS 1.2): the kernel's software kTLS runs
 * them; tlsnic too, in software (a device does not take them). */
struct suite {
    uint16_t version, cipher;
};

/* Data both ways and the keys read back, for each suite; a suite the socket's crypto does
 * not have (ENOENT at TLS_TX: the kernel without the algorithm's module) is skipped. */
static void suites_round_trip(const struct suite *suites, size_t n)
{
    size_t ran = 0;
    for (size_t i = 0; i < n; i++) {
        struct fx *f = fx_new_ulp(suites[i].version, suites[i].cipher);
        errno = 0;
        int rc = api->setsockopt(f->fd, SOL_TLS, TLS_TX, &f->tx_info, f->info_len);
        if (rc < 0 && errno == ENOENT && api == &sockapi_kernel) {
            print_message("cipher %u: not in this kernel's crypto (ENOENT)\n", suites[i].cipher);
            fx_free(f);
            continue;
        }
        assert_int_equal(rc, 0);
        assert_int_equal(api->setsockopt(f->fd, SOL_TLS, TLS_RX, &f->rx_info, f->info_len), 0);
        ran++;
        static uint8_t data[3000], got[3000];
        fill(data, sizeof(data), (uint32_t)i + 40);
        uint8_t type;
        assert_int_equal(api->send(f->fd, data, sizeof(data), 0), sizeof(data));
        assert_int_equal(peer_recv(f, &type, got, sizeof(got)), sizeof(data));
        assert_memory_equal(got, data, sizeof(data));
        peer_send(f, TLSNIC_CT_APPLICATION_DATA, data, 1000);
        assert_int_equal(api->recv(f->fd, got, sizeof(got), MSG_WAITALL), 1000);
        assert_memory_equal(got, data, 1000);
        union tlsnic_crypto_info back;
        socklen_t len = (socklen_t)f->info_len;
        assert_int_equal(api->getsockopt(f->fd, SOL_TLS, TLS_TX, &back, &len), 0);
        assert_int_equal(back.info.cipher_type, suites[i].cipher);
        fx_free(f);
    }
    if (ran == 0)
        skip();
}

static void ccm_round_trips(void **state)
{
    (void)state;
    const struct suite suites[] = {
        {TLS_1_2_VERSION, TLS_CIPHER_AES_CCM_128},
        {TLS_1_3_VERSION, TLS_CIPHER_AES_CCM_128},
    };
    suites_round_trip(suites, sizeof(suites) / sizeof(suites[0]));
}

static void aria_round_trips(void **state)
{
    (void)state;
    const struct suite suites[] = {
        {TLS_1_2_VERSION, TLS_CIPHER_ARIA_GCM_128},
        {TLS_1_2_VERSION, TLS_CIPHER_ARIA_GCM_256},
    };
    suites_round_trip(suites, sizeof(suites) / sizeof(suites[0]));
}

static void aria_with_tls13_is_EINVAL(void **state)
{
    (void)state;
    struct fx *f = fx_new_ulp(TLS_1_2_VERSION, TLS_CIPHER_ARIA_GCM_128);
    f->tx_info.info.version = TLS_1_3_VERSION; /* ARIA suites are TLS 1.2's (RFC 6209) */
    assert_fails_with(api->setsockopt(f->fd, SOL_TLS, TLS_TX, &f->tx_info, f->info_len), EINVAL);
    fx_free(f);
}

/* ------------------------------------------------------------------------------------------ */
/* RX                                                                                         */

static void recv_returns_the_plaintext_of_a_data_record(void **state)
{
    (void)state;
    struct fx *f = fx_new();
    peer_send(f, TLSNIC_CT_APPLICATION_DATA, "plaintext", 9);
    expect_recv(f, 0, "plaintext", 9);
    fx_free(f);
}

static void recvmsg_reports_the_data_record_type(void **state)
{
    (void)state;
    struct fx *f = fx_new();
    uint8_t got[64], type;
    peer_send(f, TLSNIC_CT_APPLICATION_DATA, "d", 1);
    assert_int_equal(recv_with_type(f, got, sizeof(got), 0, &type), 1);
    assert_int_equal(type, TLSNIC_CT_APPLICATION_DATA);
    fx_free(f);
}

static void recvmsg_returns_a_control_record_with_its_type(void **state)
{
    (void)state;
    struct fx *f = fx_new();
    uint8_t got[64], type;
    const uint8_t alert[2] = {2, 40}; /* fatal, handshake_failure */
    peer_send(f, TLSNIC_CT_ALERT, alert, 2);
    assert_int_equal(recv_with_type(f, got, sizeof(got), 0, &type), 2);
    assert_int_equal(type, TLSNIC_CT_ALERT);
    assert_memory_equal(got, alert, 2);
    fx_free(f);
}

static void recvmsg_never_mixes_record_types(void **state)
{
    (void)state;
    struct fx *f = fx_new();
    uint8_t got[64], type;
    const uint8_t alert[2] = {1, 0};
    peer_send(f, TLSNIC_CT_APPLICATION_DATA, "first", 5);
    peer_send(f, TLSNIC_CT_ALERT, alert, 2);
    peer_send(f, TLSNIC_CT_APPLICATION_DATA, "second", 6);
    usleep(20000);
    assert_int_equal(recv_with_type(f, got, sizeof(got), 0, &type), 5);
    assert_int_equal(type, TLSNIC_CT_APPLICATION_DATA);
    assert_int_equal(recv_with_type(f, got, sizeof(got), 0, &type), 2);
    assert_int_equal(type, TLSNIC_CT_ALERT);
    assert_int_equal(recv_with_type(f, got, sizeof(got), 0, &type), 6);
    assert_int_equal(type, TLSNIC_CT_APPLICATION_DATA);
    assert_memory_equal(got, "second", 6);
    fx_free(f);
}

static void control_record_without_cmsg_buffer_is_EIO(void **state)
{
    (void)state;
    struct fx *f = fx_new();
    uint8_t got[64], type;
    const uint8_t alert[2] = {1, 0};
    peer_send(f, TLSNIC_CT_ALERT, alert, 2);
    assert_fails_with(api->recv(f->fd, got, sizeof(got), 0), EIO);
    /* The record is still there for a caller that can take its type. */
    assert_int_equal(recv_with_type(f, got, sizeof(got), 0, &type), 2);
    assert_int_equal(type, TLSNIC_CT_ALERT);
    fx_free(f);
}

static void msg_peek_does_not_consume(void **state)
{
    (void)state;
    struct fx *f = fx_new();
    peer_send(f, TLSNIC_CT_APPLICATION_DATA, "peekaboo", 8);
    expect_recv(f, MSG_PEEK, "peekaboo", 8);
    expect_recv(f, 0, "peekaboo", 8);
    fx_free(f);
}

static void nonblocking_recv_without_a_record_is_EAGAIN(void **state)
{
    (void)state;
    struct fx *f = fx_new();
    uint8_t got[64];
    assert_fails_with(api->recv(f->fd, got, sizeof(got), MSG_DONTWAIT), EAGAIN);
    int fl = fcntl(f->fd, F_GETFL);
    assert_int_equal(fcntl(f->fd, F_SETFL, fl | O_NONBLOCK), 0);
    assert_fails_with(api->recv(f->fd, got, sizeof(got), 0), EAGAIN);
    fx_free(f);
}

static void partial_read_leaves_the_rest_of_the_record(void **state)
{
    (void)state;
    struct fx *f = fx_new();
    uint8_t data[100], got[100];
    fill(data, sizeof(data), 3);
    peer_send(f, TLSNIC_CT_APPLICATION_DATA, data, sizeof(data));
    assert_int_equal(api->recv(f->fd, got, 10, 0), 10);
    assert_int_equal(api->recv(f->fd, got + 10, sizeof(got) - 10, 0), 90);
    assert_memory_equal(got, data, sizeof(data));
    fx_free(f);
}

static void recv_returns_several_queued_records_in_one_call(void **state)
{
    (void)state;
    struct fx *f = fx_new();
    peer_send(f, TLSNIC_CT_APPLICATION_DATA, "abc", 3);
    peer_send(f, TLSNIC_CT_APPLICATION_DATA, "def", 3);
    usleep(20000);
    expect_recv(f, 0, "abcdef", 6);
    fx_free(f);
}

/* A record the peer sends from a thread of its own, after a delay. */
struct later {
    struct fx *f;
    int delay_ms;
    uint8_t rec[TLSNIC_REC_MAX_WIRE_LEN];
    size_t len;
    pthread_t thread;
};

static void *send_later(void *arg)
{
    struct later *l = arg;
    usleep((useconds_t)l->delay_ms * 1000);
    write_all(l->f->peer, l->rec, l->len);
    return NULL;
}

/* The peer sends data as one application-data record delay_ms from now. */
static struct later *peer_send_later(struct fx *f, const void *data, size_t len, int delay_ms)
{
    struct later *l = calloc(1, sizeof(*l));
    assert_non_null(l);
    l->f = f;
    l->delay_ms = delay_ms;
    l->len = peer_seal(f, TLSNIC_CT_APPLICATION_DATA, data, len, l->rec, sizeof(l->rec));
    assert_int_equal(pthread_create(&l->thread, NULL, send_later, l), 0);
    return l;
}

static void peer_send_later_join(struct later *l)
{
    pthread_join(l->thread, NULL);
    free(l);
}

static void msg_waitall_waits_for_the_whole_length(void **state)
{
    (void)state;
    struct fx *f = fx_new();
    uint8_t got[64];
    peer_send(f, TLSNIC_CT_APPLICATION_DATA, "abc", 3);
    struct later *l = peer_send_later(f, "defgh", 5, 100);
    assert_int_equal(api->recv(f->fd, got, 8, MSG_WAITALL), 8);
    assert_memory_equal(got, "abcdefgh", 8);
    peer_send_later_join(l);
    fx_free(f);
}

static void msg_peek_reads_across_data_records(void **state)
{
    (void)state;
    struct fx *f = fx_new();
    uint8_t got[64];
    peer_send(f, TLSNIC_CT_APPLICATION_DATA, "abc", 3);
    peer_send(f, TLSNIC_CT_APPLICATION_DATA, "defg", 4);
    usleep(20000);
    expect_recv(f, MSG_PEEK, "abcdefg", 7);
    assert_int_equal(api->recv(f->fd, got, 5, MSG_PEEK), 5); /* and stops where asked */
    expect_recv(f, 0, "abcdefg", 7);
    fx_free(f);
}

static void msg_peek_stops_at_a_record_of_another_type(void **state)
{
    (void)state;
    struct fx *f = fx_new();
    uint8_t got[64], type;
    const uint8_t alert[2] = {1, 0};
    peer_send(f, TLSNIC_CT_APPLICATION_DATA, "abc", 3);
    peer_send(f, TLSNIC_CT_ALERT, alert, 2);
    peer_send(f, TLSNIC_CT_APPLICATION_DATA, "def", 3);
    usleep(20000);
    assert_int_equal(recv_with_type(f, got, sizeof(got), MSG_PEEK, &type), 3);
    assert_int_equal(type, TLSNIC_CT_APPLICATION_DATA);
    assert_int_equal(recv_with_type(f, got, sizeof(got), 0, &type), 3);
    assert_int_equal(recv_with_type(f, got, sizeof(got), 0, &type), 2);
    assert_int_equal(type, TLSNIC_CT_ALERT);
    fx_free(f);
}

static void msg_peek_with_msg_waitall_waits_for_the_next_records(void **state)
{
    (void)state;
    struct fx *f = fx_new();
    uint8_t got[64];
    peer_send(f, TLSNIC_CT_APPLICATION_DATA, "abc", 3);
    struct later *l = peer_send_later(f, "defgh", 5, 100);
    assert_int_equal(api->recv(f->fd, got, 8, MSG_PEEK | MSG_WAITALL), 8);
    assert_memory_equal(got, "abcdefgh", 8);
    peer_send_later_join(l);
    expect_recv(f, 0, "abcdefgh", 8);
    fx_free(f);
}

static void half_a_record_is_not_readable(void **state)
{
    (void)state;
    needs_kernel(6, 5, "tls_sk_poll (whole records only)");
    struct fx *f = fx_new();
    static uint8_t rec[TLSNIC_REC_MAX_WIRE_LEN];
    uint8_t got[1000], data[1000];
    fill(data, sizeof(data), 9);
    size_t n = peer_seal(f, TLSNIC_CT_APPLICATION_DATA, data, sizeof(data), rec, sizeof(rec));
    write_all(f->peer, rec, n / 2);
    usleep(20000);
    assert_fails_with(api->recv(f->fd, got, sizeof(got), MSG_DONTWAIT), EAGAIN);
    /* A poll loop would spin if the fd said readable now. */
    expect_not_readable(f, 50);
    write_all(f->peer, rec + n / 2, n - n / 2);
    expect_readable(f, 2000);
    assert_int_equal(api->recv(f->fd, got, sizeof(got), MSG_DONTWAIT), sizeof(data));
    assert_memory_equal(got, data, sizeof(data));
    fx_free(f);
}

/*
 * Linux 6.5's tls_sk_poll reports readable only for a whole record; 6.1 has none, and its
 * tcp_poll reports any byte. Written against 6.5+, like tlsnic: the test stays as it is on the
 * kernel variant only where that kernel has the behaviour.
 */
static void a_partial_record_is_not_readable_even_before_any_read(void **state)
{
    (void)state;
    needs_kernel(6, 5, "tls_sk_poll (whole records only)");
    struct fx *f = fx_new();
    static uint8_t rec[TLSNIC_REC_MAX_WIRE_LEN];
    uint8_t got[200], data[200];
    fill(data, sizeof(data), 5);
    size_t n = peer_seal(f, TLSNIC_CT_APPLICATION_DATA, data, sizeof(data), rec, sizeof(rec));
    write_all(f->peer, rec, n - 10);
    usleep(20000);
    expect_not_readable(f, 50);
    write_all(f->peer, rec + n - 10, 10);
    expect_readable(f, 2000);
    assert_int_equal(api->recv(f->fd, got, sizeof(got), MSG_DONTWAIT), sizeof(data));
    assert_memory_equal(got, data, sizeof(data));
    fx_free(f);
}

/* Linux 6.14+ (rekey): after a KeyUpdate the next record waits for the new TLS_RX keys,
 * and poll does not call the socket readable meanwhile (tls_sk_poll, key_update_pending). */
static void after_a_tls13_key_update_the_socket_is_readable_only_with_new_keys(void **state)
{
    (void)state;
    needs_kernel(6, 14, "TLS 1.3 rekey");
    struct fx *f = fx_new();
    uint8_t got[64], type;
    const uint8_t key_update[5] = {24, 0, 0, 1, 0};
    peer_send(f, TLSNIC_CT_HANDSHAKE, key_update, sizeof(key_update));
    union tlsnic_crypto_info next;
    peer_tx_takes_next_keys(f, &next, 0x99);
    peer_send(f, TLSNIC_CT_APPLICATION_DATA, "fresh", 5);
    usleep(20000);
    assert_int_equal(recv_with_type(f, got, sizeof(got), 0, &type), 5);
    assert_int_equal(type, TLSNIC_CT_HANDSHAKE);
    expect_not_readable(f, 50);
    assert_int_equal(api->setsockopt(f->fd, SOL_TLS, TLS_RX, &next, f->info_len), 0);
    expect_readable(f, 2000);
    expect_recv(f, MSG_DONTWAIT, "fresh", 5);
    fx_free(f);
}

static void unread_plaintext_keeps_the_socket_readable(void **state)
{
    (void)state;
    struct fx *f = fx_new();
    uint8_t got[100], data[100];
    fill(data, sizeof(data), 4);
    peer_send(f, TLSNIC_CT_APPLICATION_DATA, data, sizeof(data));
    assert_int_equal(api->recv(f->fd, got, 10, 0), 10);
    /* plain poll(2), not the API's: the fd itself must stay truthful */
    struct pollfd p = {.fd = f->fd, .events = POLLIN};
    assert_int_equal(poll(&p, 1, 0), 1);
    assert_int_equal(api->recv(f->fd, got + 10, 90, MSG_DONTWAIT), 90);
    assert_memory_equal(got, data, sizeof(data));
    p.revents = 0;
    assert_int_equal(poll(&p, 1, 0), 0);
    fx_free(f);
}

static void flipped_bit_is_EBADMSG(void **state)
{
    (void)state;
    struct fx *f = fx_new();
    static uint8_t rec[TLSNIC_REC_MAX_WIRE_LEN];
    uint8_t got[64];
    size_t n = peer_seal(f, TLSNIC_CT_APPLICATION_DATA, "secret", 6, rec, sizeof(rec));
    rec[n - 1] ^= 0x01;
    write_all(f->peer, rec, n);
    assert_fails_with(api->recv(f->fd, got, sizeof(got), 0), EBADMSG);
    fx_free(f);
}

static void socket_gives_no_data_after_EBADMSG(void **state)
{
    (void)state;
    struct fx *f = fx_new();
    static uint8_t rec[TLSNIC_REC_MAX_WIRE_LEN];
    uint8_t got[64];
    size_t n = peer_seal(f, TLSNIC_CT_APPLICATION_DATA, "secret", 6, rec, sizeof(rec));
    rec[TLSNIC_REC_HDR_LEN + 1] ^= 0x80;
    write_all(f->peer, rec, n);
    assert_fails_with(api->recv(f->fd, got, sizeof(got), 0), EBADMSG);
    peer_send(f, TLSNIC_CT_APPLICATION_DATA, "more", 4);
    usleep(20000);
    assert_int_equal(api->recv(f->fd, got, sizeof(got), MSG_DONTWAIT), -1);
    fx_free(f);
}

static void oversized_record_is_EMSGSIZE(void **state)
{
    (void)state;
    struct fx *f = fx_new();
    uint8_t got[64];
    const uint8_t hdr[5] = {TLSNIC_CT_APPLICATION_DATA, 3, 3, 0x48, 0x00}; /* 18432 bytes */
    write_all(f->peer, hdr, sizeof(hdr));
    assert_fails_with(api->recv(f->fd, got, sizeof(got), 0), EMSGSIZE);
    fx_free(f);
}

static void wrong_record_version_is_EINVAL(void **state)
{
    (void)state;
    struct fx *f = fx_new();
    uint8_t got[64];
    const uint8_t hdr[5] = {TLSNIC_CT_APPLICATION_DATA, 3, 1, 0x00, 0x20};
    write_all(f->peer, hdr, sizeof(hdr));
    assert_fails_with(api->recv(f->fd, got, sizeof(got), 0), EINVAL);
    fx_free(f);
}

static void end_of_stream_reads_zero(void **state)
{
    (void)state;
    struct fx *f = fx_new();
    uint8_t got[64];
    peer_send(f, TLSNIC_CT_APPLICATION_DATA, "last", 4);
    shutdown(f->peer, SHUT_WR);
    assert_int_equal(api->recv(f->fd, got, sizeof(got), 0), 4);
    assert_int_equal(api->recv(f->fd, got, sizeof(got), 0), 0);
    fx_free(f);
}

/* How the peer's reading of the stream ends: 0 (EOF) or -errno; bounded (5 s per wait). */
static int peer_reads_to_the_end(int peer)
{
    static uint8_t sink[65536];
    for (int i = 0; i < 100000; i++) {
        struct pollfd p = {.fd = peer, .events = POLLIN};
        if (poll(&p, 1, 5000) != 1)
            return -ETIMEDOUT;
        ssize_t n = recv(peer, sink, sizeof(sink), 0);
        if (n <= 0)
            return n == 0 ? 0 : -errno;
    }
    return -ETIMEDOUT;
}

static void set_linger(int fd, int seconds)
{
    struct linger lg = {.l_onoff = 1, .l_linger = seconds};
    assert_int_equal(api->setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
}

static void close_with_so_linger_zero_resets_the_connection(void **state)
{
    (void)state;
    struct fx *f = fx_new();
    uint8_t data[1000] = {0};
    assert_int_equal(api->send(f->fd, data, sizeof(data), 0), (ssize_t)sizeof(data));
    set_linger(f->fd, 0);
    assert_int_equal(api->close(f->fd), 0);
    f->fd = -1;
    assert_int_equal(peer_reads_to_the_end(f->peer), -ECONNRESET);
    fx_free(f);
}

static void close_with_so_linger_blocks_for_the_linger_time_if_the_peer_takes_nothing(void **state)
{
    (void)state;
    struct fx *f = fx_new();
    static uint8_t chunk[16384];
    size_t sent = 0;
    for (int i = 0; i < 4096; i++) { /* bounded: 64 MB; the peer never reads */
        ssize_t n = api->send(f->fd, chunk, sizeof(chunk), MSG_DONTWAIT);
        if (n < 0) {
            assert_int_equal(errno, EAGAIN);
            break;
        }
        sent += (size_t)n;
    }
    assert_true(sent > 0);
    set_linger(f->fd, 1);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(api->close(f->fd), 0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    f->fd = -1;
    long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    assert_true(ms >= 900);  /* the window is full: nothing more is acknowledged */
    assert_true(ms < 5000);  /* and then close(2) returns as any close */
    fx_free(f);
}

static void tls13_key_update_stops_rx_until_new_keys(void **state)
{
    (void)state;
    needs_kernel(6, 14, "TLS 1.3 rekey");
    struct fx *f = fx_new();
    uint8_t got[64], type;
    const uint8_t key_update[5] = {24, 0, 0, 1, 0}; /* update_not_requested */
    peer_send(f, TLSNIC_CT_HANDSHAKE, key_update, sizeof(key_update));
    union tlsnic_crypto_info next;
    peer_tx_takes_next_keys(f, &next, 0x99);
    peer_send(f, TLSNIC_CT_APPLICATION_DATA, "fresh", 5);
    usleep(20000);
    assert_int_equal(recv_with_type(f, got, sizeof(got), 0, &type), 5);
    assert_int_equal(type, TLSNIC_CT_HANDSHAKE);
    assert_memory_equal(got, key_update, 5);
    if (kernel_older_than(6, 14)) {
        /* Before 6.14 RX goes on with the old key: the next record fails its tag. */
        assert_fails_with(api->recv(f->fd, got, sizeof(got), MSG_DONTWAIT), EBADMSG);
        fx_free(f);
        skip();
    }
    assert_fails_with(api->recv(f->fd, got, sizeof(got), MSG_DONTWAIT), EKEYEXPIRED);
    assert_int_equal(api->setsockopt(f->fd, SOL_TLS, TLS_RX, &next, f->info_len), 0);
    expect_recv(f, 0, "fresh", 5);
    fx_free(f);
}

/* ------------------------------------------------------------------------------------------ */
/* Bad addresses from the program: the kernel's EFAULT (or a short result), never a crash     */

/* A page the process may not read or write. */
static uint8_t *unreadable_page(void)
{
    void *p = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(p != MAP_FAILED);
    return p;
}

static void tcp_ulp_with_an_unreadable_name_is_EFAULT(void **state)
{
    (void)state;
    int fds[2];
    assert_int_equal(tcp_pair(fds), 0);
    uint8_t *bad = unreadable_page();
    assert_fails_with(api->setsockopt(fds[0], SOL_TCP, TCP_ULP, bad, 4), EFAULT);
    assert_int_equal(api->setsockopt(fds[0], SOL_TCP, TCP_ULP, "tls", sizeof("tls")), 0);
    munmap(bad, 4096);
    api->close(fds[0]);
    close(fds[1]);
}

static void tls_tx_with_an_unreadable_value_is_EFAULT_and_takes_nothing(void **state)
{
    (void)state;
    struct fx *f = fx_new_ulp(TLS_1_3_VERSION, TLS_CIPHER_AES_GCM_128);
    uint8_t *bad = unreadable_page();
    assert_fails_with(api->setsockopt(f->fd, SOL_TLS, TLS_TX, bad, (socklen_t)f->info_len),
                      EFAULT);
    /* The header readable, the rest not: the kernel's second copy fails. */
    uint8_t *two = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(two != MAP_FAILED);
    assert_int_equal(mprotect(two + 4096, 4096, PROT_NONE), 0);
    uint8_t *edge = two + 4096 - sizeof(struct tls_crypto_info);
    memcpy(edge, &f->tx_info.info, sizeof(struct tls_crypto_info));
    assert_fails_with(api->setsockopt(f->fd, SOL_TLS, TLS_TX, edge, (socklen_t)f->info_len),
                      EFAULT);
    /* Nothing was taken: the keys can be set, and work. */
    assert_int_equal(api->setsockopt(f->fd, SOL_TLS, TLS_TX, &f->tx_info, f->info_len), 0);
    uint8_t got[8], type;
    assert_int_equal(api->send(f->fd, "ok", 2, 0), 2);
    assert_int_equal(peer_recv(f, &type, got, sizeof(got)), 2);
    munmap(two, 8192);
    munmap(bad, 4096);
    fx_free(f);
}

/* TLS 1.3 (no zero-copy decryption by default): the kernel keeps the decrypted record. */
static void recvmsg_into_a_null_iovec_is_EFAULT_and_keeps_the_record(void **state)
{
    (void)state;
    struct fx *f = fx_new();
    peer_send(f, TLSNIC_CT_APPLICATION_DATA, "kept", 4);
    usleep(20000);
    struct iovec iov = {.iov_base = NULL, .iov_len = 64};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
    assert_fails_with(api->recvmsg(f->fd, &msg, 0), EFAULT);
    expect_recv(f, 0, "kept", 4);
    fx_free(f);
}

static void recvmsg_stops_before_a_record_that_reaches_a_null_iovec(void **state)
{
    (void)state;
    struct fx *f = fx_new();
    uint8_t got[64];
    peer_send(f, TLSNIC_CT_APPLICATION_DATA, "abc", 3);
    peer_send(f, TLSNIC_CT_APPLICATION_DATA, "defg", 4);
    usleep(20000);
    struct iovec iov[2] = {{.iov_base = got, .iov_len = 3}, {.iov_base = NULL, .iov_len = 10}};
    struct msghdr msg = {.msg_iov = iov, .msg_iovlen = 2};
    assert_int_equal(api->recvmsg(f->fd, &msg, 0), 3);
    assert_memory_equal(got, "abc", 3);
    expect_recv(f, 0, "defg", 4);
    fx_free(f);
}

static void sendmsg_from_a_null_iovec_is_EFAULT_and_sends_nothing(void **state)
{
    (void)state;
    struct fx *f = fx_new();
    uint8_t got[16], type;
    struct iovec iov = {.iov_base = NULL, .iov_len = 5};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
    assert_fails_with(api->sendmsg(f->fd, &msg, 0), EFAULT);
    peer_expect_nothing(f, 50);
    assert_int_equal(api->send(f->fd, "next", 4, 0), 4);
    assert_int_equal(peer_recv(f, &type, got, sizeof(got)), 4); /* sequence number unused */
    assert_memory_equal(got, "next", 4);
    fx_free(f);
}

/* ------------------------------------------------------------------------------------------ */
/* Errnos of the kernel's option and record checks                                            */

static void tls_rx_with_another_version_or_cipher_than_tls_tx_is_EINVAL(void **state)
{
    (void)state;
    struct fx *f = fx_new_ulp(TLS_1_3_VERSION, TLS_CIPHER_AES_GCM_128);
    assert_int_equal(api->setsockopt(f->fd, SOL_TLS, TLS_TX, &f->tx_info, f->info_len), 0);
    union tlsnic_crypto_info other;
    make_info(&other, TLS_1_3_VERSION, TLS_CIPHER_AES_GCM_256, 0x55, 3);
    assert_fails_with(api->setsockopt(f->fd, SOL_TLS, TLS_RX, &other,
                                      tlsnic_crypto_info_size(TLS_CIPHER_AES_GCM_256)),
                      EINVAL);
    make_info(&other, TLS_1_2_VERSION, TLS_CIPHER_AES_GCM_128, 0x55, 3);
    assert_fails_with(api->setsockopt(f->fd, SOL_TLS, TLS_RX, &other, f->info_len), EINVAL);
    assert_int_equal(api->setsockopt(f->fd, SOL_TLS, TLS_RX, &f->rx_info, f->info_len), 0);
    fx_free(f);
}

static void tx_zerocopy_ro_with_a_value_longer_than_an_int_is_EINVAL(void **state)
{
    (void)state;
    struct fx *f = fx_new();
    uint64_t one = 1;
    assert_fails_with(api->setsockopt(f->fd, SOL_TLS, TLS_TX_ZEROCOPY_RO, &one, sizeof(one)),
                      EINVAL);
    fx_free(f);
}

/* The kernel checks the length first (tls_rx_msg_size), reports the error once through
 * sk_err and stops parsing: the next read finds no record. */
static void record_with_a_bad_version_and_length_is_EMSGSIZE_then_EAGAIN(void **state)
{
    (void)state;
    struct fx *f = fx_new();
    uint8_t got[64];
    const uint8_t hdr[5] = {TLSNIC_CT_APPLICATION_DATA, 3, 1, 0x48, 0x00};
    write_all(f->peer, hdr, sizeof(hdr));
    assert_fails_with(api->recv(f->fd, got, sizeof(got), 0), EMSGSIZE);
    assert_fails_with(api->recv(f->fd, got, sizeof(got), MSG_DONTWAIT), EAGAIN);
    fx_free(f);
}

/*
 * The kernel reference run (Linux 6.12): the record with sequence number 2^64-1 is sealed,
 * tls_advance_record_sn finds the counter wrapping and aborts the socket with EBADMSG
 * before the record leaves; that send and every later one fail with EBADMSG, and nothing
 * reaches the peer.
 */
static void sending_the_record_with_the_last_sequence_number_is_EBADMSG_and_sticks(void **state)
{
    (void)state;
    struct fx *f = fx_new_ulp(TLS_1_3_VERSION, TLS_CIPHER_AES_GCM_128);
    make_info(&f->tx_info, TLS_1_3_VERSION, TLS_CIPHER_AES_GCM_128, 0x11, UINT64_MAX);
    assert_int_equal(api->setsockopt(f->fd, SOL_TLS, TLS_TX, &f->tx_info, f->info_len), 0);
    assert_fails_with(api->send(f->fd, "last", 4, 0), EBADMSG);
    assert_fails_with(api->send(f->fd, "more", 4, 0), EBADMSG);
    uint8_t got[8];
    assert_int_equal(recv(f->peer, got, sizeof(got), MSG_DONTWAIT), -1); /* nothing left */
    assert_int_equal(errno, EAGAIN);
    fx_free(f);
}

/* Linux 6.15 (tls_disconnect; in the stable kernels since): connect(AF_UNSPEC), TCP's
 * disconnect, would leave the TLS state on a socket that may connect again. */
static void connect_af_unspec_on_a_tls_socket_is_EOPNOTSUPP(void **state)
{
    (void)state;
    struct fx *f = fx_new();
    struct sockaddr unspec = {.sa_family = AF_UNSPEC};
    assert_fails_with(api->connect(f->fd, &unspec, sizeof(unspec)), EOPNOTSUPP);
    uint8_t got[8], type;
    assert_int_equal(api->send(f->fd, "still", 5, 0), 5); /* and the connection stays */
    assert_int_equal(peer_recv(f, &type, got, sizeof(got)), 5);
    fx_free(f);
}

/* TLS_TX_MAX_PAYLOAD_LEN is Linux 6.19's: an older reference kernel does not know it. */
static int max_payload_known(struct fx *f, uint16_t v)
{
    int rc = api->setsockopt(f->fd, SOL_TLS, TLS_TX_MAX_PAYLOAD_LEN, &v, sizeof(v));
    if (rc < 0 && errno == ENOPROTOOPT && api == &sockapi_kernel) {
        fx_free(f);
        print_message("kernel predates TLS_TX_MAX_PAYLOAD_LEN (Linux 6.19)\n");
        skip();
    }
    return rc;
}

static void tx_max_payload_len_limits_the_plaintext_of_each_record(void **state)
{
    (void)state;
    struct fx *f = fx_new();
    assert_int_equal(max_payload_known(f, 128), 0);
    uint16_t got_len = 0;
    socklen_t l = sizeof(uint32_t); /* larger than needed: the kernel says 2 */
    assert_int_equal(api->getsockopt(f->fd, SOL_TLS, TLS_TX_MAX_PAYLOAD_LEN, &got_len, &l), 0);
    assert_int_equal(got_len, 128);
    assert_int_equal(l, sizeof(uint16_t));
    static uint8_t data[1000], got[1000];
    fill(data, sizeof(data), 11);
    assert_int_equal(api->send(f->fd, data, sizeof(data), 0), sizeof(data));
    size_t have = 0;
    for (int i = 0; i < 8; i++) {
        uint8_t type;
        size_t n = peer_recv(f, &type, got + have, sizeof(got) - have);
        assert_int_equal(n, i < 7 ? 128 : 1000 - 7 * 128);
        have += n;
    }
    assert_memory_equal(got, data, sizeof(data));
    fx_free(f);
}

static void tx_max_payload_len_outside_64_to_16384_or_not_a_u16_is_EINVAL(void **state)
{
    (void)state;
    struct fx *f = fx_new();
    assert_int_equal(max_payload_known(f, 16384), 0);
    uint16_t v = 63;
    assert_fails_with(api->setsockopt(f->fd, SOL_TLS, TLS_TX_MAX_PAYLOAD_LEN, &v, sizeof(v)),
                      EINVAL);
    v = 16385;
    assert_fails_with(api->setsockopt(f->fd, SOL_TLS, TLS_TX_MAX_PAYLOAD_LEN, &v, sizeof(v)),
                      EINVAL);
    uint32_t wide = 1000;
    assert_fails_with(api->setsockopt(f->fd, SOL_TLS, TLS_TX_MAX_PAYLOAD_LEN, &wide,
                                      sizeof(wide)),
                      EINVAL);
    fx_free(f);
}

static void tx_max_payload_len_with_a_record_open_is_EBUSY(void **state)
{
    (void)state;
    struct fx *f = fx_new();
    assert_int_equal(max_payload_known(f, 4096), 0);
    assert_int_equal(api->send(f->fd, "abc", 3, MSG_MORE), 3);
    uint16_t v = 256;
    assert_fails_with(api->setsockopt(f->fd, SOL_TLS, TLS_TX_MAX_PAYLOAD_LEN, &v, sizeof(v)),
                      EBUSY);
    fx_free(f);
}

/* ------------------------------------------------------------------------------------------ */

/*
 * Usage: test_ktls_semantics kernel|tlsnic. Exits 77 (skipped) when the kernel variant
 * cannot run here, with the reason on stdout.
 */
int main(int argc, char **argv)
{
    if (argc != 2 || (strcmp(argv[1], "kernel") && strcmp(argv[1], "tlsnic"))) {
        fprintf(stderr, "usage: %s kernel|tlsnic\n", argv[0]);
        return 2;
    }
    api = strcmp(argv[1], "kernel") == 0 ? &sockapi_kernel : &sockapi_tlsnic;
    const char *why = sockapi_unavailable(api);
    if (why) {
        printf("SKIP: %s\n", why);
        return 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ulp_on_unconnected_socket_is_ENOTCONN),
        cmocka_unit_test(ulp_twice_is_EEXIST),
        cmocka_unit_test(tls_tx_without_ulp_is_ENOPROTOOPT),
        cmocka_unit_test(tls_tx_shorter_than_crypto_info_header_is_EINVAL),
        cmocka_unit_test(tls_tx_with_wrong_struct_length_is_EINVAL),
        cmocka_unit_test(tls_tx_with_unknown_cipher_is_EINVAL),
        cmocka_unit_test(tls_tx_with_unknown_version_is_EINVAL),
        cmocka_unit_test(second_tls_tx_on_tls12_is_EBUSY),
        cmocka_unit_test(getsockopt_tls_tx_before_keys_is_EBUSY),
        cmocka_unit_test(getsockopt_tls_tx_returns_the_crypto_info),
        cmocka_unit_test(getsockopt_tls_tx_rec_seq_follows_the_records_sent),
        cmocka_unit_test(tx_zerocopy_ro_is_accepted),
        cmocka_unit_test(rx_expect_no_pad_needs_tls13),
        cmocka_unit_test(send_splits_into_records_of_at_most_16384_bytes),
        cmocka_unit_test(msg_more_keeps_the_record_open),
        cmocka_unit_test(msg_eor_closes_the_record),
        cmocka_unit_test(record_type_cmsg_sends_a_record_of_its_own),
        cmocka_unit_test(record_type_cmsg_with_msg_more_is_EINVAL),
        cmocka_unit_test(send_with_msg_oob_is_EOPNOTSUPP),
        cmocka_unit_test(nonblocking_send_delivers_all_it_accepted_without_another_call),
        cmocka_unit_test(sendfile_sends_the_file_as_records),
        cmocka_unit_test(tls13_tx_rekey_uses_the_new_keys),
        cmocka_unit_test(every_version_and_cipher_round_trips),
        cmocka_unit_test(ccm_round_trips),
        cmocka_unit_test(aria_round_trips),
        cmocka_unit_test(aria_with_tls13_is_EINVAL),
        cmocka_unit_test(recv_returns_the_plaintext_of_a_data_record),
        cmocka_unit_test(recvmsg_reports_the_data_record_type),
        cmocka_unit_test(recvmsg_returns_a_control_record_with_its_type),
        cmocka_unit_test(recvmsg_never_mixes_record_types),
        cmocka_unit_test(control_record_without_cmsg_buffer_is_EIO),
        cmocka_unit_test(msg_peek_does_not_consume),
        cmocka_unit_test(nonblocking_recv_without_a_record_is_EAGAIN),
        cmocka_unit_test(partial_read_leaves_the_rest_of_the_record),
        cmocka_unit_test(recv_returns_several_queued_records_in_one_call),
        cmocka_unit_test(msg_waitall_waits_for_the_whole_length),
        cmocka_unit_test(msg_peek_reads_across_data_records),
        cmocka_unit_test(msg_peek_stops_at_a_record_of_another_type),
        cmocka_unit_test(msg_peek_with_msg_waitall_waits_for_the_next_records),
        cmocka_unit_test(half_a_record_is_not_readable),
        cmocka_unit_test(a_partial_record_is_not_readable_even_before_any_read),
        cmocka_unit_test(after_a_tls13_key_update_the_socket_is_readable_only_with_new_keys),
        cmocka_unit_test(unread_plaintext_keeps_the_socket_readable),
        cmocka_unit_test(flipped_bit_is_EBADMSG),
        cmocka_unit_test(socket_gives_no_data_after_EBADMSG),
        cmocka_unit_test(oversized_record_is_EMSGSIZE),
        cmocka_unit_test(wrong_record_version_is_EINVAL),
        cmocka_unit_test(end_of_stream_reads_zero),
        cmocka_unit_test(close_with_so_linger_zero_resets_the_connection),
        cmocka_unit_test(close_with_so_linger_blocks_for_the_linger_time_if_the_peer_takes_nothing),
        cmocka_unit_test(tls13_key_update_stops_rx_until_new_keys),
        cmocka_unit_test(tcp_ulp_with_an_unreadable_name_is_EFAULT),
        cmocka_unit_test(tls_tx_with_an_unreadable_value_is_EFAULT_and_takes_nothing),
        cmocka_unit_test(recvmsg_into_a_null_iovec_is_EFAULT_and_keeps_the_record),
        cmocka_unit_test(recvmsg_stops_before_a_record_that_reaches_a_null_iovec),
        cmocka_unit_test(sendmsg_from_a_null_iovec_is_EFAULT_and_sends_nothing),
        cmocka_unit_test(tls_rx_with_another_version_or_cipher_than_tls_tx_is_EINVAL),
        cmocka_unit_test(tx_zerocopy_ro_with_a_value_longer_than_an_int_is_EINVAL),
        cmocka_unit_test(record_with_a_bad_version_and_length_is_EMSGSIZE_then_EAGAIN),
        cmocka_unit_test(sending_the_record_with_the_last_sequence_number_is_EBADMSG_and_sticks),
        cmocka_unit_test(connect_af_unspec_on_a_tls_socket_is_EOPNOTSUPP),
        cmocka_unit_test(tx_max_payload_len_limits_the_plaintext_of_each_record),
        cmocka_unit_test(tx_max_payload_len_outside_64_to_16384_or_not_a_u16_is_EINVAL),
        cmocka_unit_test(tx_max_payload_len_with_a_record_open_is_EBUSY),
    };
    return cmocka_run_group_tests_name(api->name, tests, NULL, NULL);
}
