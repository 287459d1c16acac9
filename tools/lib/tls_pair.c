/*
 * A real libssl handshake between two SSL objects in one thread (see tls_pair.h).
 *
 * Both ends run non-blocking during the handshake and are driven alternately until both
 * report completion; the loop is bounded in rounds and in time. Afterwards the fds get
 * their original flags back (a fresh socketpair is blocking), so a test can SSL_read and
 * read(2) on them plainly.
 *
 * Ownership: from the call on, the pair owns the fds it is given. If tls_pair_new fails it
 * has released and closed everything, and *p is in the state tls_pair_free leaves.
 */
#include "tls_pair.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <linux/tls.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "tlsnic/keyexport.h"
#include "selfcert.h"

#define HANDSHAKE_MAX_ROUNDS 1000
#define HANDSHAKE_MAX_MS 10000
#define HANDSHAKE_POLL_MS 50
#define CERT_DAYS 1

static int restrict_ctx(SSL_CTX *ctx, int tls_version, const char *suite)
{
    if (!SSL_CTX_set_min_proto_version(ctx, tls_version) ||
        !SSL_CTX_set_max_proto_version(ctx, tls_version))
        return -EINVAL;
    if (tls_version == TLS1_3_VERSION ? !SSL_CTX_set_ciphersuites(ctx, suite)
                                      : !SSL_CTX_set_cipher_list(ctx, suite))
        return -EINVAL;
    return tlsnic_keyexport_enable(ctx);
}

static int make_ctxs(struct tls_pair *p, int tls_version, const char *suite)
{
    EVP_PKEY *key = NULL;
    X509 *cert = NULL;
    int rc = tlsnic_selfcert_new("tlsnic-test", CERT_DAYS, &key, &cert);
    if (rc < 0)
        return rc;

    p->server_ctx = SSL_CTX_new(TLS_server_method());
    p->client_ctx = SSL_CTX_new(TLS_client_method());
    if (p->server_ctx == NULL || p->client_ctx == NULL)
        rc = -ENOMEM;
    if (rc == 0 && (!SSL_CTX_use_certificate(p->server_ctx, cert) ||
                    !SSL_CTX_use_PrivateKey(p->server_ctx, key)))
        rc = -EINVAL;
    /* The client trusts exactly this certificate, so the handshake verifies for real. */
    if (rc == 0 && !X509_STORE_add_cert(SSL_CTX_get_cert_store(p->client_ctx), cert))
        rc = -ENOMEM;
    if (rc == 0) {
        SSL_CTX_set_verify(p->client_ctx, SSL_VERIFY_PEER, NULL);
        /* No tickets: the first application record keeps the sequence number keyexport.h
         * assumes. */
        if (!SSL_CTX_set_num_tickets(p->server_ctx, 0))
            rc = -EINVAL;
    }
    if (rc == 0)
        rc = restrict_ctx(p->server_ctx, tls_version, suite);
    if (rc == 0)
        rc = restrict_ctx(p->client_ctx, tls_version, suite);
    X509_free(cert);
    EVP_PKEY_free(key);
    return rc;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* One step of one end: 1 done, 0 wants more I/O, -EPROTO failed. */
static int handshake_step(SSL *ssl)
{
    if (SSL_is_init_finished(ssl))
        return 1;
    int ret = SSL_do_handshake(ssl);
    if (ret == 1)
        return 1;
    int err = SSL_get_error(ssl, ret);
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE)
        return 0;
    return -EPROTO;
}

static int drive_handshake(struct tls_pair *p)
{
    int64_t deadline = now_ms() + HANDSHAKE_MAX_MS;
    for (int round = 0; round < HANDSHAKE_MAX_ROUNDS; round++) {
        int client_done = handshake_step(p->client);
        int server_done = handshake_step(p->server);
        if (client_done < 0 || server_done < 0)
            return -EPROTO;
        if (client_done && server_done)
            return 0;
        if (now_ms() > deadline)
            return -ETIMEDOUT;
        /* Over loopback TCP the peer's bytes may take a moment: wait for either end. */
        struct pollfd pfd[2] = {
            {.fd = p->client_fd, .events = POLLIN},
            {.fd = p->server_fd, .events = POLLIN},
        };
        if (poll(pfd, 2, HANDSHAKE_POLL_MS) < 0 && errno != EINTR)
            return -errno;
    }
    return -ETIMEDOUT;
}

static int set_flags(int fd, int flags)
{
    return fcntl(fd, F_SETFL, flags) < 0 ? -errno : 0;
}

static void release(struct tls_pair *p)
{
    SSL_free(p->server);
    SSL_free(p->client);
    SSL_CTX_free(p->server_ctx);
    SSL_CTX_free(p->client_ctx);
    if (p->server_fd >= 0)
        close(p->server_fd);
    if (p->client_fd >= 0)
        close(p->client_fd);
    memset(p, 0, sizeof(*p));
    p->server_fd = -1;
    p->client_fd = -1;
}

int tls_pair_new(struct tls_pair *p, int tls_version, uint16_t cipher_type, const int *fds)
{
    if (p == NULL)
        return -EINVAL;
    memset(p, 0, sizeof(*p));
    p->server_fd = -1;
    p->client_fd = -1;
    if (fds != NULL) {
        p->server_fd = fds[0];
        p->client_fd = fds[1];
    }

    const char *suite = tlsnic_keyexport_suite_name(tls_version, cipher_type);
    if (suite == NULL) {
        release(p);
        return -EINVAL;
    }
    if (fds == NULL) {
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
            int rc = -errno;
            release(p);
            return rc;
        }
        p->server_fd = sv[0];
        p->client_fd = sv[1];
    }

    int server_flags = fcntl(p->server_fd, F_GETFL);
    int client_flags = fcntl(p->client_fd, F_GETFL);
    if (server_flags < 0 || client_flags < 0) {
        int rc = -errno;
        release(p);
        return rc;
    }

    int rc = make_ctxs(p, tls_version, suite);
    if (rc == 0) {
        p->server = SSL_new(p->server_ctx);
        p->client = SSL_new(p->client_ctx);
        if (p->server == NULL || p->client == NULL)
            rc = -ENOMEM;
    }
    if (rc == 0 && (!SSL_set_fd(p->server, p->server_fd) || !SSL_set_fd(p->client, p->client_fd)))
        rc = -ENOMEM;
    if (rc == 0) {
        SSL_set_accept_state(p->server);
        SSL_set_connect_state(p->client);
        rc = set_flags(p->server_fd, server_flags | O_NONBLOCK);
    }
    if (rc == 0)
        rc = set_flags(p->client_fd, client_flags | O_NONBLOCK);
    if (rc == 0)
        rc = drive_handshake(p);
    if (rc == 0)
        rc = set_flags(p->server_fd, server_flags);
    if (rc == 0)
        rc = set_flags(p->client_fd, client_flags);
    if (rc < 0) {
        release(p);
        return rc;
    }
    return 0;
}

void tls_pair_free(struct tls_pair *p)
{
    if (p == NULL)
        return;
    /* A zeroed struct never held fds: its 0s are not stdin to close. */
    int live = p->server_ctx != NULL || p->client_ctx != NULL || p->server != NULL ||
               p->client != NULL;
    if (!live) {
        p->server_fd = -1;
        p->client_fd = -1;
    }
    release(p);
}

const struct tls_pair_suite tls_pair_suites[TLS_PAIR_N_SUITES] = {
    {TLS1_2_VERSION, TLS_CIPHER_AES_GCM_128}, {TLS1_2_VERSION, TLS_CIPHER_AES_GCM_256},
    {TLS1_2_VERSION, TLS_CIPHER_CHACHA20_POLY1305}, {TLS1_3_VERSION, TLS_CIPHER_AES_GCM_128},
    {TLS1_3_VERSION, TLS_CIPHER_AES_GCM_256}, {TLS1_3_VERSION, TLS_CIPHER_CHACHA20_POLY1305},
};

int tls_pair_rec_key(SSL *ssl, int tx, tlsnic_rec_key **key)
{
    union tlsnic_crypto_info info;
    size_t info_len = 0;
    int rc = tlsnic_keyexport(ssl, tx, &info, &info_len);
    if (rc == 0)
        rc = tlsnic_rec_key_new(key, &info, info_len);
    OPENSSL_cleanse(&info, sizeof(info));
    return rc;
}
