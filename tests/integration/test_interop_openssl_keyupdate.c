/*
 * TLS 1.3 KeyUpdate between tlsnic and OpenSSL's libssl, both ways, for AES-128-GCM,
 * AES-256-GCM and ChaCha20-Poly1305. The handshake is libssl's on both ends (the client's
 * keys go to tlsnic); the next traffic secrets are derived here from the secrets libssl
 * logged, so libssl, not tlsnic, judges them:
 *   - libssl sends a KeyUpdate (SSL_key_update): tlsnic returns it as a handshake record,
 *     gives EKEYEXPIRED until new TLS_RX keys are set, then reads what follows;
 *   - tlsnic sends a KeyUpdate as a handshake record and sets new TLS_TX keys: libssl reads
 *     what follows.
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
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "interop_tlsnic.h"
#include "tcp_pair.h"
#include "tls13_keys.h"
#include "tlsnic/keyexport.h"
#include "tlsnic/ktls.h"

struct secrets {
    uint8_t client[64], server[64];
    size_t client_len, server_len;
};

static struct secrets logged; /* one connection at a time in this test */

static size_t hex_to_bin(const char *hex, uint8_t *out, size_t cap)
{
    size_t n = 0;
    while (hex[0] && hex[1] && hex[0] != ' ' && n < cap) {
        unsigned v;
        if (sscanf(hex, "%2x", &v) != 1)
            return 0;
        out[n++] = (uint8_t)v;
        hex += 2;
    }
    return n;
}

/* "LABEL <client_random> <secret>" lines; keeps the two application traffic secrets. */
static void keylog(const SSL *ssl, const char *line)
{
    (void)ssl;
    const char *sp = strchr(line, ' ');
    const char *secret = sp ? strchr(sp + 1, ' ') : NULL;
    if (!secret)
        return;
    if (!strncmp(line, "CLIENT_TRAFFIC_SECRET_0 ", 24))
        logged.client_len = hex_to_bin(secret + 1, logged.client, sizeof(logged.client));
    else if (!strncmp(line, "SERVER_TRAFFIC_SECRET_0 ", 24))
        logged.server_len = hex_to_bin(secret + 1, logged.server, sizeof(logged.server));
}

struct conn {
    SSL_CTX *sctx, *cctx;
    SSL *server, *client;
    EVP_PKEY *key;
    X509 *cert;
    int fd, peer; /* fd: the client's end, tlsnic */
    uint16_t cipher;
};

static const char *suite(uint16_t cipher)
{
    return cipher == TLS_CIPHER_AES_GCM_128   ? "TLS_AES_128_GCM_SHA256"
           : cipher == TLS_CIPHER_AES_GCM_256 ? "TLS_AES_256_GCM_SHA384"
                                              : "TLS_CHACHA20_POLY1305_SHA256";
}

static void *accept_thread(void *arg)
{
    struct conn *c = arg;
    return (void *)(intptr_t)SSL_accept(c->server);
}

static void conn_new(struct conn *c, uint16_t cipher)
{
    memset(c, 0, sizeof(*c));
    memset(&logged, 0, sizeof(logged));
    c->cipher = cipher;
    int fds[2];
    assert_int_equal(tcp_pair(fds), 0);
    c->fd = fds[0];
    c->peer = fds[1];

    c->key = EVP_EC_gen("P-256");
    assert_non_null(c->key);
    c->cert = X509_new();
    X509_set_version(c->cert, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(c->cert), 1);
    X509_gmtime_adj(X509_getm_notBefore(c->cert), -60);
    X509_gmtime_adj(X509_getm_notAfter(c->cert), 86400);
    X509_set_pubkey(c->cert, c->key);
    X509_NAME *name = X509_get_subject_name(c->cert);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"tlsnic-test",
                               -1, -1, 0);
    X509_set_issuer_name(c->cert, name);
    assert_true(X509_sign(c->cert, c->key, EVP_sha256()) > 0);

    c->sctx = SSL_CTX_new(TLS_server_method());
    c->cctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX *ctxs[2] = {c->sctx, c->cctx};
    for (int i = 0; i < 2; i++) {
        SSL_CTX_set_min_proto_version(ctxs[i], TLS1_3_VERSION);
        SSL_CTX_set_max_proto_version(ctxs[i], TLS1_3_VERSION);
        assert_int_equal(SSL_CTX_set_ciphersuites(ctxs[i], suite(cipher)), 1);
    }
    assert_int_equal(SSL_CTX_use_certificate(c->sctx, c->cert), 1);
    assert_int_equal(SSL_CTX_use_PrivateKey(c->sctx, c->key), 1);
    SSL_CTX_set_num_tickets(c->sctx, 0);
    SSL_CTX_set_keylog_callback(c->cctx, keylog); /* ours first: keyexport chains to it */
    assert_int_equal(tlsnic_keyexport_enable(c->cctx), 0);

    c->server = SSL_new(c->sctx);
    c->client = SSL_new(c->cctx);
    SSL_set_fd(c->server, c->peer);
    SSL_set_fd(c->client, c->fd);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, accept_thread, c), 0);
    int rc = SSL_connect(c->client);
    void *src;
    pthread_join(t, &src);
    if (rc != 1 || (intptr_t)src != 1)
        ERR_print_errors_fp(stderr);
    assert_int_equal(rc, 1);
    assert_int_equal((intptr_t)src, 1);
    assert_true(logged.client_len > 0 && logged.server_len > 0);
}

static void conn_free(struct conn *c)
{
    SSL_free(c->client);
    SSL_free(c->server);
    SSL_CTX_free(c->cctx);
    SSL_CTX_free(c->sctx);
    X509_free(c->cert);
    EVP_PKEY_free(c->key);
    tlsnic_close(c->fd);
    close(c->peer);
    OPENSSL_cleanse(&logged, sizeof(logged));
}

static void to_tlsnic(struct conn *c, int tx)
{
    union tlsnic_crypto_info ci;
    size_t len;
    assert_int_equal(tlsnic_keyexport(c->client, tx, &ci, &len), 0);
    assert_int_equal(tlsnic_setsockopt(c->fd, SOL_TCP, TCP_ULP, "tls", 4), 0);
    assert_int_equal(tlsnic_setsockopt(c->fd, SOL_TLS, tx ? TLS_TX : TLS_RX, &ci, (socklen_t)len), 0);
    OPENSSL_cleanse(&ci, sizeof(ci));
}

/* The crypto_info of the next keys of a logged traffic secret (advanced in place). */
static size_t next_keys(uint16_t cipher, uint8_t *secret, size_t secret_len,
                        union tlsnic_crypto_info *ci)
{
    size_t len = tls13_key_update(cipher, secret, secret_len, ci);
    assert_true(len > 0);
    return len;
}

static void openssl_key_update_reaches_tlsnic(uint16_t cipher)
{
    struct conn c;
    conn_new(&c, cipher);
    to_tlsnic(&c, 0);
    assert_int_equal(SSL_write(c.server, "before", 6), 6);
    assert_int_equal(SSL_key_update(c.server, SSL_KEY_UPDATE_NOT_REQUESTED), 1);
    assert_int_equal(SSL_write(c.server, "after", 5), 5); /* the KeyUpdate goes first */

    union tlsnic_crypto_info ci;
    size_t len = next_keys(cipher, logged.server, logged.server_len, &ci);
    interop_read_across_key_update(c.fd, &ci, len);
    conn_free(&c);
}

static void tlsnic_key_update_reaches_openssl(uint16_t cipher)
{
    struct conn c;
    conn_new(&c, cipher);
    to_tlsnic(&c, 1);
    union tlsnic_crypto_info ci;
    size_t len = next_keys(cipher, logged.client, logged.client_len, &ci);
    interop_write_across_key_update(c.fd, &ci, len);

    uint8_t buf[256];
    assert_int_equal(SSL_read(c.server, buf, sizeof(buf)), 6);
    assert_memory_equal(buf, "before", 6);
    int r = SSL_read(c.server, buf, sizeof(buf));
    if (r <= 0)
        ERR_print_errors_fp(stderr);
    assert_int_equal(r, 5);
    assert_memory_equal(buf, "after", 5);
    conn_free(&c);
}

#define T(name, body)                                                                        \
    static void name(void **state)                                                           \
    {                                                                                        \
        (void)state;                                                                         \
        body;                                                                                \
    }

T(openssl_key_update_reaches_tlsnic_aes128gcm, openssl_key_update_reaches_tlsnic(TLS_CIPHER_AES_GCM_128))
T(openssl_key_update_reaches_tlsnic_aes256gcm, openssl_key_update_reaches_tlsnic(TLS_CIPHER_AES_GCM_256))
T(openssl_key_update_reaches_tlsnic_chacha20poly1305, openssl_key_update_reaches_tlsnic(TLS_CIPHER_CHACHA20_POLY1305))
T(tlsnic_key_update_reaches_openssl_aes128gcm, tlsnic_key_update_reaches_openssl(TLS_CIPHER_AES_GCM_128))
T(tlsnic_key_update_reaches_openssl_aes256gcm, tlsnic_key_update_reaches_openssl(TLS_CIPHER_AES_GCM_256))
T(tlsnic_key_update_reaches_openssl_chacha20poly1305, tlsnic_key_update_reaches_openssl(TLS_CIPHER_CHACHA20_POLY1305))

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(openssl_key_update_reaches_tlsnic_aes128gcm),
        cmocka_unit_test(openssl_key_update_reaches_tlsnic_aes256gcm),
        cmocka_unit_test(openssl_key_update_reaches_tlsnic_chacha20poly1305),
        cmocka_unit_test(tlsnic_key_update_reaches_openssl_aes128gcm),
        cmocka_unit_test(tlsnic_key_update_reaches_openssl_aes256gcm),
        cmocka_unit_test(tlsnic_key_update_reaches_openssl_chacha20poly1305),
    };
    return cmocka_run_group_tests_name("interop_openssl_keyupdate", tests, NULL, NULL);
}
