/*
 * tlsnic against GnuTLS's record layer (libgnutls), over a loopback TCP pair. A real GnuTLS
 * handshake; the client's keys (gnutls_record_get_state) go to tlsnic on the client's
 * socket, and a GnuTLS server session is the peer. For each of TLS 1.2 / 1.3 x AES-128-GCM /
 * AES-256-GCM / ChaCha20-Poly1305:
 *   - tlsnic sends 64 MB in writes of 1 byte .. 128 KB then close_notify; GnuTLS reads it
 *     byte-exact and sees the close_notify (gnutls_record_recv returns 0);
 *   - GnuTLS sends 64 MB then close_notify (gnutls_bye); tlsnic reads it and gets the alert.
 * And for TLS 1.3, KeyUpdate both ways: GnuTLS updates its keys (gnutls_session_key_update),
 * tlsnic returns the KeyUpdate as a handshake record, gives EKEYEXPIRED until new TLS_RX
 * keys are set, then reads on; tlsnic sends a KeyUpdate as a handshake record and sets new
 * TLS_TX keys, and GnuTLS reads on. The next traffic secrets are derived here (RFC 8446
 * 7.2) from the secrets GnuTLS logged, so GnuTLS, not tlsnic, judges them.
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
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <openssl/crypto.h>

#include "interop_tlsnic.h"
#include "stream_pattern.h"
#include "tcp_pair.h"
#include "tls13_keys.h"
#include "tlsnic/ktls.h"
#include "tlsnic/record.h"

struct secrets {
    uint8_t client[64], server[64];
    size_t client_len, server_len;
};

struct gpair {
    gnutls_certificate_credentials_t server_cred, client_cred;
    gnutls_x509_privkey_t key;
    gnutls_x509_crt_t crt;
    gnutls_session_t server, client;
    int server_fd, client_fd; /* client_fd is the tlsnic socket */
    uint16_t version, cipher;
    struct secrets sec;
};

static int keylog(gnutls_session_t session, const char *label, const gnutls_datum_t *secret)
{
    struct secrets *s = gnutls_session_get_ptr(session);
    if (!s || secret->size > sizeof(s->client))
        return 0;
    if (!strcmp(label, "CLIENT_TRAFFIC_SECRET_0")) {
        memcpy(s->client, secret->data, secret->size);
        s->client_len = secret->size;
    } else if (!strcmp(label, "SERVER_TRAFFIC_SECRET_0")) {
        memcpy(s->server, secret->data, secret->size);
        s->server_len = secret->size;
    }
    return 0;
}

static const char *priority(uint16_t version, uint16_t cipher)
{
    static char buf[256];
    const char *c = cipher == TLS_CIPHER_AES_GCM_128   ? "+AES-128-GCM"
                    : cipher == TLS_CIPHER_AES_GCM_256 ? "+AES-256-GCM"
                                                       : "+CHACHA20-POLY1305";
    snprintf(buf, sizeof(buf), "NORMAL:-VERS-ALL:%s:-CIPHER-ALL:%s",
             version == TLS_1_3_VERSION ? "+VERS-TLS1.3" : "+VERS-TLS1.2", c);
    return buf;
}

static void *server_handshake(void *arg)
{
    struct gpair *g = arg;
    int rc;
    do {
        rc = gnutls_handshake(g->server);
    } while (rc < 0 && !gnutls_error_is_fatal(rc));
    return (void *)(intptr_t)rc;
}

static void make_cert(struct gpair *g)
{
    assert_int_equal(gnutls_x509_privkey_init(&g->key), 0);
    assert_int_equal(gnutls_x509_privkey_generate(g->key, GNUTLS_PK_ECDSA,
                                                  GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1), 0),
                     0);
    assert_int_equal(gnutls_x509_crt_init(&g->crt), 0);
    gnutls_x509_crt_set_version(g->crt, 3);
    const unsigned char serial[1] = {1};
    gnutls_x509_crt_set_serial(g->crt, serial, 1);
    time_t now = time(NULL);
    gnutls_x509_crt_set_activation_time(g->crt, now - 60);
    gnutls_x509_crt_set_expiration_time(g->crt, now + 86400);
    assert_int_equal(gnutls_x509_crt_set_dn(g->crt, "CN=tlsnic-test", NULL), 0);
    assert_int_equal(gnutls_x509_crt_set_key(g->crt, g->key), 0);
    assert_int_equal(gnutls_x509_crt_sign2(g->crt, g->crt, g->key, GNUTLS_DIG_SHA256, 0), 0);
}

static void gpair_new(struct gpair *g, uint16_t version, uint16_t cipher)
{
    memset(g, 0, sizeof(*g));
    g->version = version;
    g->cipher = cipher;
    int fds[2];
    assert_int_equal(tcp_pair(fds), 0);
    g->client_fd = fds[0];
    g->server_fd = fds[1];
    make_cert(g);
    assert_int_equal(gnutls_certificate_allocate_credentials(&g->server_cred), 0);
    assert_int_equal(gnutls_certificate_set_x509_key(g->server_cred, &g->crt, 1, g->key), 0);
    assert_int_equal(gnutls_certificate_allocate_credentials(&g->client_cred), 0);

    assert_int_equal(gnutls_init(&g->server, GNUTLS_SERVER | GNUTLS_NO_TICKETS), 0);
    assert_int_equal(gnutls_init(&g->client, GNUTLS_CLIENT | GNUTLS_NO_TICKETS), 0);
    assert_int_equal(gnutls_priority_set_direct(g->server, priority(version, cipher), NULL), 0);
    assert_int_equal(gnutls_priority_set_direct(g->client, priority(version, cipher), NULL), 0);
    gnutls_credentials_set(g->server, GNUTLS_CRD_CERTIFICATE, g->server_cred);
    gnutls_credentials_set(g->client, GNUTLS_CRD_CERTIFICATE, g->client_cred);
    gnutls_transport_set_int(g->server, g->server_fd);
    gnutls_transport_set_int(g->client, g->client_fd);
    gnutls_session_set_ptr(g->client, &g->sec);
    gnutls_session_set_keylog_function(g->client, keylog);

    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, server_handshake, g), 0);
    int rc;
    do {
        rc = gnutls_handshake(g->client);
    } while (rc < 0 && !gnutls_error_is_fatal(rc));
    void *srv_rc;
    pthread_join(t, &srv_rc);
    if (rc < 0 || srv_rc != NULL)
        fprintf(stderr, "gnutls handshake: client %s, server %s\n", gnutls_strerror(rc),
                gnutls_strerror((int)(intptr_t)srv_rc));
    assert_int_equal(rc, 0);
    assert_null(srv_rc);
    assert_int_equal(gnutls_protocol_get_version(g->client),
                     version == TLS_1_3_VERSION ? GNUTLS_TLS1_3 : GNUTLS_TLS1_2);
}

static void gpair_free(struct gpair *g)
{
    gnutls_deinit(g->client);
    gnutls_deinit(g->server);
    gnutls_certificate_free_credentials(g->server_cred);
    gnutls_certificate_free_credentials(g->client_cred);
    gnutls_x509_crt_deinit(g->crt);
    gnutls_x509_privkey_deinit(g->key);
    tlsnic_close(g->client_fd);
    close(g->server_fd);
    OPENSSL_cleanse(&g->sec, sizeof(g->sec));
}

/* crypto_info from explicit key material, in the layout <linux/tls.h> wants. */
static size_t build_info(union tlsnic_crypto_info *ci, uint16_t version, uint16_t cipher,
                         const uint8_t *key, const uint8_t *iv, const uint8_t seq[8])
{
    memset(ci, 0, sizeof(*ci));
    ci->info.version = version;
    ci->info.cipher_type = cipher;
    switch (cipher) {
    case TLS_CIPHER_AES_GCM_128:
        memcpy(ci->aes_gcm_128.key, key, 16);
        memcpy(ci->aes_gcm_128.salt, iv, 4);
        /* TLS 1.2: the explicit nonce starts as the sequence number (GnuTLS does so) */
        memcpy(ci->aes_gcm_128.iv, version == TLS_1_3_VERSION ? iv + 4 : seq, 8);
        memcpy(ci->aes_gcm_128.rec_seq, seq, 8);
        return sizeof(ci->aes_gcm_128);
    case TLS_CIPHER_AES_GCM_256:
        memcpy(ci->aes_gcm_256.key, key, 32);
        memcpy(ci->aes_gcm_256.salt, iv, 4);
        memcpy(ci->aes_gcm_256.iv, version == TLS_1_3_VERSION ? iv + 4 : seq, 8);
        memcpy(ci->aes_gcm_256.rec_seq, seq, 8);
        return sizeof(ci->aes_gcm_256);
    default:
        memcpy(ci->chacha20_poly1305.key, key, 32);
        memcpy(ci->chacha20_poly1305.iv, iv, 12);
        memcpy(ci->chacha20_poly1305.rec_seq, seq, 8);
        return sizeof(ci->chacha20_poly1305);
    }
}

/* Hands the client's keys of one direction to tlsnic on the client's socket. */
static void to_tlsnic(struct gpair *g, int tx)
{
    gnutls_datum_t mac, iv, key;
    unsigned char seq[8];
    assert_int_equal(gnutls_record_get_state(g->client, tx ? 0 : 1, &mac, &iv, &key, seq), 0);
    union tlsnic_crypto_info ci;
    size_t len = build_info(&ci, g->version, g->cipher, key.data, iv.data, seq);
    if (!tlsnic_is_tls(g->client_fd))
        assert_int_equal(tlsnic_setsockopt(g->client_fd, SOL_TCP, TCP_ULP, "tls", 4), 0);
    assert_int_equal(tlsnic_setsockopt(g->client_fd, SOL_TLS, tx ? TLS_TX : TLS_RX, &ci,
                                       (socklen_t)len), 0);
    OPENSSL_cleanse(&ci, sizeof(ci));
}

/* Advances a TLS 1.3 traffic secret (in place) and returns the crypto_info of the new one. */
static size_t next_keys(struct gpair *g, uint8_t *secret, size_t secret_len,
                        union tlsnic_crypto_info *ci)
{
    size_t len = tls13_key_update(g->cipher, secret, secret_len, ci);
    assert_true(len > 0);
    return len;
}

/* ------------------------------------------------------------------------------------------ */

struct sender {
    struct gpair *g;
    int ok;
};

static void *tlsnic_sender(void *arg)
{
    struct sender *snd = arg;
    snd->ok = interop_send_stream(snd->g->client_fd);
    return NULL;
}

static void tlsnic_sends_gnutls_receives(uint16_t version, uint16_t cipher)
{
    struct gpair g;
    gpair_new(&g, version, cipher);
    to_tlsnic(&g, 1);
    struct sender snd = {.g = &g};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, tlsnic_sender, &snd), 0);
    static uint8_t buf[65536];
    uint64_t off = 0;
    unsigned n = 0;
    int bad = 0;
    while (off < STREAM_TOTAL) {
        ssize_t r = gnutls_record_recv(g.server, buf, stream_read_size(n++));
        if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED)
            continue;
        if (r <= 0) {
            fprintf(stderr, "gnutls_record_recv: %s\n", gnutls_strerror((int)r));
            bad = 1;
            break;
        }
        if (!stream_check(off, buf, (size_t)r))
            bad = 2;
        off += (uint64_t)r;
    }
    ssize_t last = gnutls_record_recv(g.server, buf, sizeof(buf));
    pthread_join(t, NULL);
    assert_int_equal(bad, 0);
    assert_int_equal(off, STREAM_TOTAL);
    assert_true(snd.ok);
    assert_int_equal(last, 0); /* GnuTLS saw tlsnic's close_notify */
    gpair_free(&g);
}

static void *gnutls_sender(void *arg)
{
    struct sender *snd = arg;
    static uint8_t buf[131072];
    uint64_t off = 0;
    unsigned n = 0;
    while (off < STREAM_TOTAL) {
        size_t len = stream_write_size(n++);
        if (len > STREAM_TOTAL - off)
            len = STREAM_TOTAL - off;
        stream_fill(off, buf, len);
        size_t done = 0;
        while (done < len) {
            ssize_t w = gnutls_record_send(snd->g->server, buf + done, len - done);
            if (w == GNUTLS_E_AGAIN || w == GNUTLS_E_INTERRUPTED)
                continue;
            if (w <= 0)
                return NULL;
            done += (size_t)w;
        }
        off += len;
    }
    snd->ok = gnutls_bye(snd->g->server, GNUTLS_SHUT_WR) == 0;
    return NULL;
}

static void gnutls_sends_tlsnic_receives(uint16_t version, uint16_t cipher)
{
    struct gpair g;
    gpair_new(&g, version, cipher);
    to_tlsnic(&g, 0);
    struct sender snd = {.g = &g};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, gnutls_sender, &snd), 0);
    struct interop_received got;
    interop_recv_stream(g.client_fd, &got);
    pthread_join(t, NULL);
    assert_int_equal(got.bad, 0);
    assert_int_equal(got.bytes, STREAM_TOTAL);
    assert_true(snd.ok);
    assert_int_equal(got.end_type, TLSNIC_CT_ALERT);
    assert_int_equal(got.end_len, 2);
    assert_int_equal(got.end[0], 1);
    assert_int_equal(got.end[1], 0);
    gpair_free(&g);
}

static void gnutls_key_update_reaches_tlsnic(uint16_t cipher)
{
    struct gpair g;
    gpair_new(&g, TLS_1_3_VERSION, cipher);
    to_tlsnic(&g, 0);
    assert_int_equal(gnutls_record_send(g.server, "before", 6), 6);
    assert_int_equal(gnutls_session_key_update(g.server, 0), 0);
    assert_int_equal(gnutls_record_send(g.server, "after", 5), 5);

    union tlsnic_crypto_info ci;
    size_t len = next_keys(&g, g.sec.server, g.sec.server_len, &ci);
    interop_read_across_key_update(g.client_fd, &ci, len);
    gpair_free(&g);
}

static void tlsnic_key_update_reaches_gnutls(uint16_t cipher)
{
    struct gpair g;
    gpair_new(&g, TLS_1_3_VERSION, cipher);
    to_tlsnic(&g, 1);
    union tlsnic_crypto_info ci;
    size_t len = next_keys(&g, g.sec.client, g.sec.client_len, &ci);
    interop_write_across_key_update(g.client_fd, &ci, len);

    uint8_t buf[256];
    assert_int_equal(gnutls_record_recv(g.server, buf, sizeof(buf)), 6);
    assert_memory_equal(buf, "before", 6);
    ssize_t r;
    do {
        r = gnutls_record_recv(g.server, buf, sizeof(buf));
    } while (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED);
    if (r < 0)
        fprintf(stderr, "gnutls_record_recv: %s\n", gnutls_strerror((int)r));
    assert_int_equal(r, 5);
    assert_memory_equal(buf, "after", 5);
    gpair_free(&g);
}

#define T(name, body)                                                                        \
    static void name(void **state)                                                           \
    {                                                                                        \
        (void)state;                                                                         \
        body;                                                                                \
    }

T(tlsnic_sends_gnutls_receives_tls12_aes128gcm, tlsnic_sends_gnutls_receives(TLS_1_2_VERSION, TLS_CIPHER_AES_GCM_128))
T(tlsnic_sends_gnutls_receives_tls12_aes256gcm, tlsnic_sends_gnutls_receives(TLS_1_2_VERSION, TLS_CIPHER_AES_GCM_256))
T(tlsnic_sends_gnutls_receives_tls12_chacha20poly1305, tlsnic_sends_gnutls_receives(TLS_1_2_VERSION, TLS_CIPHER_CHACHA20_POLY1305))
T(tlsnic_sends_gnutls_receives_tls13_aes128gcm, tlsnic_sends_gnutls_receives(TLS_1_3_VERSION, TLS_CIPHER_AES_GCM_128))
T(tlsnic_sends_gnutls_receives_tls13_aes256gcm, tlsnic_sends_gnutls_receives(TLS_1_3_VERSION, TLS_CIPHER_AES_GCM_256))
T(tlsnic_sends_gnutls_receives_tls13_chacha20poly1305, tlsnic_sends_gnutls_receives(TLS_1_3_VERSION, TLS_CIPHER_CHACHA20_POLY1305))
T(gnutls_sends_tlsnic_receives_tls12_aes128gcm, gnutls_sends_tlsnic_receives(TLS_1_2_VERSION, TLS_CIPHER_AES_GCM_128))
T(gnutls_sends_tlsnic_receives_tls12_aes256gcm, gnutls_sends_tlsnic_receives(TLS_1_2_VERSION, TLS_CIPHER_AES_GCM_256))
T(gnutls_sends_tlsnic_receives_tls12_chacha20poly1305, gnutls_sends_tlsnic_receives(TLS_1_2_VERSION, TLS_CIPHER_CHACHA20_POLY1305))
T(gnutls_sends_tlsnic_receives_tls13_aes128gcm, gnutls_sends_tlsnic_receives(TLS_1_3_VERSION, TLS_CIPHER_AES_GCM_128))
T(gnutls_sends_tlsnic_receives_tls13_aes256gcm, gnutls_sends_tlsnic_receives(TLS_1_3_VERSION, TLS_CIPHER_AES_GCM_256))
T(gnutls_sends_tlsnic_receives_tls13_chacha20poly1305, gnutls_sends_tlsnic_receives(TLS_1_3_VERSION, TLS_CIPHER_CHACHA20_POLY1305))
T(gnutls_key_update_reaches_tlsnic_aes128gcm, gnutls_key_update_reaches_tlsnic(TLS_CIPHER_AES_GCM_128))
T(gnutls_key_update_reaches_tlsnic_aes256gcm, gnutls_key_update_reaches_tlsnic(TLS_CIPHER_AES_GCM_256))
T(gnutls_key_update_reaches_tlsnic_chacha20poly1305, gnutls_key_update_reaches_tlsnic(TLS_CIPHER_CHACHA20_POLY1305))
T(tlsnic_key_update_reaches_gnutls_aes128gcm, tlsnic_key_update_reaches_gnutls(TLS_CIPHER_AES_GCM_128))
T(tlsnic_key_update_reaches_gnutls_aes256gcm, tlsnic_key_update_reaches_gnutls(TLS_CIPHER_AES_GCM_256))
T(tlsnic_key_update_reaches_gnutls_chacha20poly1305, tlsnic_key_update_reaches_gnutls(TLS_CIPHER_CHACHA20_POLY1305))

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(tlsnic_sends_gnutls_receives_tls12_aes128gcm),
        cmocka_unit_test(tlsnic_sends_gnutls_receives_tls12_aes256gcm),
        cmocka_unit_test(tlsnic_sends_gnutls_receives_tls12_chacha20poly1305),
        cmocka_unit_test(tlsnic_sends_gnutls_receives_tls13_aes128gcm),
        cmocka_unit_test(tlsnic_sends_gnutls_receives_tls13_aes256gcm),
        cmocka_unit_test(tlsnic_sends_gnutls_receives_tls13_chacha20poly1305),
        cmocka_unit_test(gnutls_sends_tlsnic_receives_tls12_aes128gcm),
        cmocka_unit_test(gnutls_sends_tlsnic_receives_tls12_aes256gcm),
        cmocka_unit_test(gnutls_sends_tlsnic_receives_tls12_chacha20poly1305),
        cmocka_unit_test(gnutls_sends_tlsnic_receives_tls13_aes128gcm),
        cmocka_unit_test(gnutls_sends_tlsnic_receives_tls13_aes256gcm),
        cmocka_unit_test(gnutls_sends_tlsnic_receives_tls13_chacha20poly1305),
        cmocka_unit_test(gnutls_key_update_reaches_tlsnic_aes128gcm),
        cmocka_unit_test(gnutls_key_update_reaches_tlsnic_aes256gcm),
        cmocka_unit_test(gnutls_key_update_reaches_tlsnic_chacha20poly1305),
        cmocka_unit_test(tlsnic_key_update_reaches_gnutls_aes128gcm),
        cmocka_unit_test(tlsnic_key_update_reaches_gnutls_aes256gcm),
        cmocka_unit_test(tlsnic_key_update_reaches_gnutls_chacha20poly1305),
    };
    gnutls_global_init();
    int failed = cmocka_run_group_tests_name("interop_gnutls", tests, NULL, NULL);
    gnutls_global_deinit();
    return failed;
}
