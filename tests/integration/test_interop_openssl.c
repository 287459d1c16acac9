/*
 * tlsnic against OpenSSL's own record layer (libssl), over a loopback TCP pair: a real
 * handshake (tls_pair), the keys exported to tlsnic on one end, libssl on the other.
 * For each of TLS 1.2 / 1.3 x AES-128-GCM / AES-256-GCM / ChaCha20-Poly1305:
 *   - tlsnic sends 64 MB in writes of 1 byte .. 128 KB (with MSG_MORE now and then), then a
 *     close_notify alert as a control record; libssl reads it all byte-exact and sees the
 *     close_notify;
 *   - libssl sends 64 MB with record sizes 512 .. 16384 and then close_notify; tlsnic
 *     reads it with reads of 1 byte .. 64 KB and gets the alert as a control record.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "interop_tlsnic.h"
#include "stream_pattern.h"
#include "tcp_pair.h"
#include "tls_pair.h"
#include "tlsnic/keyexport.h"
#include "tlsnic/ktls.h"

struct side {
    struct tls_pair p;
    int fd; /* the tlsnic end (the server's) */
};

static void side_new(struct side *s, int version, uint16_t cipher, int dir_tx)
{
    int fds[2];
    assert_int_equal(tcp_pair(fds), 0);
    int pair_fds[2] = {fds[1], fds[0]}; /* server, client */
    assert_int_equal(tls_pair_new(&s->p, version, cipher, pair_fds), 0);
    s->fd = s->p.server_fd;
    union tlsnic_crypto_info ci;
    size_t len;
    assert_int_equal(tlsnic_keyexport(s->p.server, dir_tx, &ci, &len), 0);
    assert_int_equal(tlsnic_setsockopt(s->fd, SOL_TCP, TCP_ULP, "tls", 4), 0);
    assert_int_equal(tlsnic_setsockopt(s->fd, SOL_TLS, dir_tx ? TLS_TX : TLS_RX, &ci,
                                       (socklen_t)len), 0);
    memset(&ci, 0, sizeof(ci));
}

static void side_free(struct side *s)
{
    tlsnic_fd_forget(s->fd); /* tls_pair_free closes the fd */
    tls_pair_free(&s->p);
}

struct sender {
    struct side *s;
    int ok;
};

static void *tlsnic_sender(void *arg)
{
    struct sender *snd = arg;
    snd->ok = interop_send_stream(snd->s->fd);
    return NULL;
}

static void tlsnic_sends_openssl_receives(int version, uint16_t cipher)
{
    struct side s;
    side_new(&s, version, cipher, 1);
    struct sender snd = {.s = &s};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, tlsnic_sender, &snd), 0);
    static uint8_t buf[65536];
    uint64_t off = 0;
    unsigned n = 0;
    int bad = 0;
    while (off < STREAM_TOTAL && !bad) {
        size_t want = stream_read_size(n++);
        int r = SSL_read(s.p.client, buf, (int)want);
        if (r <= 0) {
            ERR_print_errors_fp(stderr);
            bad = 1;
            break;
        }
        if (!stream_check(off, buf, (size_t)r))
            bad = 2;
        off += (uint64_t)r;
    }
    int r = SSL_read(s.p.client, buf, sizeof(buf));
    int err = SSL_get_error(s.p.client, r);
    pthread_join(t, NULL);
    assert_int_equal(bad, 0);
    assert_int_equal(off, STREAM_TOTAL);
    assert_true(snd.ok);
    assert_int_equal(r, 0);
    assert_int_equal(err, SSL_ERROR_ZERO_RETURN); /* libssl saw our close_notify */
    side_free(&s);
}

static void *openssl_sender(void *arg)
{
    struct sender *snd = arg;
    SSL *ssl = snd->s->p.client;
    static uint8_t buf[131072];
    static const long frags[] = {512, 1457, 4096, 16384, 2000};
    uint64_t off = 0;
    unsigned n = 0;
    snd->ok = 0;
    while (off < STREAM_TOTAL) {
        size_t len = stream_write_size(n);
        if (len > STREAM_TOTAL - off)
            len = STREAM_TOTAL - off;
        stream_fill(off, buf, len);
        SSL_set_max_send_fragment(ssl, frags[n % 5]);
        if (SSL_write(ssl, buf, (int)len) != (int)len)
            return NULL;
        off += len;
        n++;
    }
    snd->ok = SSL_shutdown(ssl) >= 0;
    return NULL;
}

static void openssl_sends_tlsnic_receives(int version, uint16_t cipher)
{
    struct side s;
    side_new(&s, version, cipher, 0);
    struct sender snd = {.s = &s};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, openssl_sender, &snd), 0);
    struct interop_received got;
    interop_recv_stream(s.fd, &got);
    pthread_join(t, NULL);
    assert_int_equal(got.bad, 0);
    assert_int_equal(got.bytes, STREAM_TOTAL);
    assert_true(snd.ok);
    assert_int_equal(got.end_type, 21); /* the alert arrives as a control record */
    assert_int_equal(got.end_len, 2);
    assert_int_equal(got.end[0], 1);
    assert_int_equal(got.end[1], 0); /* close_notify */
    side_free(&s);
}

#define INTEROP_TESTS(ver, vname, cip, cname)                                                \
    static void tlsnic_sends_openssl_receives_##vname##_##cname(void **state)                \
    {                                                                                        \
        (void)state;                                                                         \
        tlsnic_sends_openssl_receives(ver, cip);                                             \
    }                                                                                        \
    static void openssl_sends_tlsnic_receives_##vname##_##cname(void **state)                \
    {                                                                                        \
        (void)state;                                                                         \
        openssl_sends_tlsnic_receives(ver, cip);                                             \
    }

INTEROP_TESTS(TLS1_2_VERSION, tls12, TLS_CIPHER_AES_GCM_128, aes128gcm)
INTEROP_TESTS(TLS1_2_VERSION, tls12, TLS_CIPHER_AES_GCM_256, aes256gcm)
INTEROP_TESTS(TLS1_2_VERSION, tls12, TLS_CIPHER_CHACHA20_POLY1305, chacha20poly1305)
INTEROP_TESTS(TLS1_3_VERSION, tls13, TLS_CIPHER_AES_GCM_128, aes128gcm)
INTEROP_TESTS(TLS1_3_VERSION, tls13, TLS_CIPHER_AES_GCM_256, aes256gcm)
INTEROP_TESTS(TLS1_3_VERSION, tls13, TLS_CIPHER_CHACHA20_POLY1305, chacha20poly1305)

#define BOTH(vname, cname)                                                                   \
    cmocka_unit_test(tlsnic_sends_openssl_receives_##vname##_##cname),                       \
        cmocka_unit_test(openssl_sends_tlsnic_receives_##vname##_##cname)

int main(void)
{
    const struct CMUnitTest tests[] = {
        BOTH(tls12, aes128gcm), BOTH(tls12, aes256gcm), BOTH(tls12, chacha20poly1305),
        BOTH(tls13, aes128gcm), BOTH(tls13, aes256gcm), BOTH(tls13, chacha20poly1305),
    };
    return cmocka_run_group_tests_name("interop_openssl", tests, NULL, NULL);
}
