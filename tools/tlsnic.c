/*
 * tlsnic: the command-line face of the project.
 *
 *   tlsnic demo   For each protocol version x cipher tlsnic offloads, libssl does a real
 *                 handshake with itself over a socketpair, the client's traffic keys are
 *                 exported into the <linux/tls.h> form, and from then on the client's
 *                 records are sealed and opened by tlsnic while the server stays libssl.
 *                 The data crosses in both directions and its SHA-256 is checked on
 *                 both ends; the client ends with a tlsnic-sealed close_notify.
 */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h> /* execv */

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>

#include "fd_io.h"
#include "tls_pair.h"
#include "tlsnic/keyexport.h"
#include "tlsnic/record.h"

#define SHA256_LEN 32
#define ALERT_LEVEL_WARNING 1
#define ALERT_CLOSE_NOTIFY 0
#define MAX_SSL_READS 1024

static const struct combo {
    int version;
    uint16_t cipher;
} combos[] = {
    {TLS1_2_VERSION, TLS_CIPHER_AES_GCM_128}, {TLS1_2_VERSION, TLS_CIPHER_AES_GCM_256},
    {TLS1_2_VERSION, TLS_CIPHER_CHACHA20_POLY1305}, {TLS1_3_VERSION, TLS_CIPHER_AES_GCM_128},
    {TLS1_3_VERSION, TLS_CIPHER_AES_GCM_256}, {TLS1_3_VERSION, TLS_CIPHER_CHACHA20_POLY1305},
};
#define N_COMBOS (sizeof(combos) / sizeof(combos[0]))

/* Record sizes each direction carries: the smallest, the paper's 1457, odd, the largest. */
static const size_t record_sizes[] = {1, 1457, 4096, 333, TLSNIC_REC_MAX_PLAINTEXT, 9000};
#define N_RECORDS (sizeof(record_sizes) / sizeof(record_sizes[0]))

/* One direction's transfer: what was sent and what arrived. */
struct transfer {
    size_t records;
    size_t bytes;
    uint8_t sent_sha[SHA256_LEN];
    uint8_t received_sha[SHA256_LEN];
};

struct demo_result {
    struct transfer to_openssl;   /* tlsnic seals, SSL_read reads */
    struct transfer from_openssl; /* SSL_write writes, tlsnic opens */
    double ms;
    const char *failed_step;      /* NULL: all passed */
    char why[160];
};

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static const char *version_name(int version)
{
    return version == TLS1_3_VERSION ? "TLS 1.3" : "TLS 1.2";
}

static int step_fail(struct demo_result *r, const char *step, int rc)
{
    r->failed_step = step;
    unsigned long ssl_err = ERR_get_error();
    if (ssl_err != 0)
        ERR_error_string_n(ssl_err, r->why, sizeof(r->why));
    else
        snprintf(r->why, sizeof(r->why), "%s", strerror(rc < 0 ? -rc : EPROTO));
    ERR_clear_error();
    return rc < 0 ? rc : -EPROTO;
}

static int make_key(SSL *ssl, int tx, tlsnic_rec_key **key)
{
    union tlsnic_crypto_info info;
    size_t info_len = 0;
    int rc = tlsnic_keyexport(ssl, tx, &info, &info_len);
    if (rc == 0)
        rc = tlsnic_rec_key_new(key, &info, info_len);
    OPENSSL_cleanse(&info, sizeof(info));
    return rc;
}

/* Two running SHA-256 digests, one per end of a direction. */
struct digests {
    EVP_MD_CTX *sent;
    EVP_MD_CTX *received;
};

static int digests_init(struct digests *d)
{
    d->sent = EVP_MD_CTX_new();
    d->received = EVP_MD_CTX_new();
    if (d->sent == NULL || d->received == NULL ||
        EVP_DigestInit_ex(d->sent, EVP_sha256(), NULL) != 1 ||
        EVP_DigestInit_ex(d->received, EVP_sha256(), NULL) != 1)
        return -ENOMEM;
    return 0;
}

static int digests_final(struct digests *d, struct transfer *t)
{
    unsigned int len = 0;
    if (EVP_DigestFinal_ex(d->sent, t->sent_sha, &len) != 1 ||
        EVP_DigestFinal_ex(d->received, t->received_sha, &len) != 1)
        return -EIO;
    return memcmp(t->sent_sha, t->received_sha, SHA256_LEN) == 0 ? 0 : -EBADMSG;
}

static void digests_free(struct digests *d)
{
    EVP_MD_CTX_free(d->sent);
    EVP_MD_CTX_free(d->received);
}

/* SSL_read until len bytes arrived, hashing them. */
static int openssl_read(SSL *ssl, uint8_t *buf, size_t len, EVP_MD_CTX *received)
{
    size_t got = 0;
    for (int reads = 0; got < len && reads < MAX_SSL_READS; reads++) {
        int n = SSL_read(ssl, buf + got, (int)(len - got));
        if (n <= 0)
            return -EPROTO;
        got += (size_t)n;
    }
    if (got != len)
        return -EPROTO;
    return EVP_DigestUpdate(received, buf, len) == 1 ? 0 : -EIO;
}

/* Client (tlsnic) -> server (libssl). */
static int tlsnic_to_openssl(struct tls_pair *p, tlsnic_rec_key *tx, uint8_t *data,
                             uint8_t *wire, struct transfer *t)
{
    struct digests d;
    int rc = digests_init(&d);
    for (size_t i = 0; rc == 0 && i < N_RECORDS; i++) {
        size_t len = record_sizes[i], wire_len = 0;
        if (RAND_bytes(data, (int)len) != 1 || EVP_DigestUpdate(d.sent, data, len) != 1)
            rc = -EIO;
        if (rc == 0)
            rc = tlsnic_rec_seal(tx, TLSNIC_CT_APPLICATION_DATA, data, len, wire,
                                 TLSNIC_REC_MAX_WIRE_LEN, &wire_len);
        if (rc == 0)
            rc = fd_write_all(p->client_fd, wire, wire_len);
        if (rc == 0)
            rc = openssl_read(p->server, data, len, d.received);
        if (rc == 0) {
            t->records++;
            t->bytes += len;
        }
    }
    if (rc == 0)
        rc = digests_final(&d, t);
    digests_free(&d);
    return rc;
}

/* Server (libssl) -> client (tlsnic). */
static int openssl_to_tlsnic(struct tls_pair *p, tlsnic_rec_key *rx, uint8_t *data,
                             uint8_t *wire, struct transfer *t)
{
    struct digests d;
    int rc = digests_init(&d);
    for (size_t i = 0; rc == 0 && i < N_RECORDS; i++) {
        size_t len = record_sizes[i];
        if (RAND_bytes(data, (int)len) != 1 || EVP_DigestUpdate(d.sent, data, len) != 1)
            rc = -EIO;
        if (rc == 0 && SSL_write(p->server, data, (int)len) != (int)len)
            rc = -EPROTO;
        int rec_len = rc == 0 ? fd_read_record(p->client_fd, wire, TLSNIC_REC_MAX_WIRE_LEN) : rc;
        if (rec_len < 0)
            rc = rec_len;
        uint8_t type = 0, *content = NULL;
        size_t content_len = 0;
        if (rc == 0)
            rc = tlsnic_rec_open(rx, wire, (size_t)rec_len, &type, &content, &content_len);
        if (rc == 0 && (type != TLSNIC_CT_APPLICATION_DATA || content_len != len))
            rc = -EPROTO;
        if (rc == 0 && EVP_DigestUpdate(d.received, content, content_len) != 1)
            rc = -EIO;
        if (rc == 0) {
            t->records++;
            t->bytes += len;
        }
    }
    if (rc == 0)
        rc = digests_final(&d, t);
    digests_free(&d);
    return rc;
}

/* The client closes with a tlsnic-sealed close_notify; libssl must see a clean shutdown. */
static int tlsnic_close_notify(struct tls_pair *p, tlsnic_rec_key *tx, uint8_t *wire)
{
    const uint8_t alert[2] = {ALERT_LEVEL_WARNING, ALERT_CLOSE_NOTIFY};
    size_t wire_len = 0;
    int rc = tlsnic_rec_seal(tx, TLSNIC_CT_ALERT, alert, sizeof(alert), wire,
                             TLSNIC_REC_MAX_WIRE_LEN, &wire_len);
    if (rc == 0)
        rc = fd_write_all(p->client_fd, wire, wire_len);
    if (rc < 0)
        return rc;
    uint8_t byte;
    int n = SSL_read(p->server, &byte, 1);
    return n == 0 && SSL_get_error(p->server, n) == SSL_ERROR_ZERO_RETURN ? 0 : -EPROTO;
}

static int run_combo(const struct combo *c, uint8_t *data, uint8_t *wire, struct demo_result *r)
{
    struct tls_pair p;
    tlsnic_rec_key *tx = NULL, *rx = NULL;
    double start = now_ms();
    int rc = tls_pair_new(&p, c->version, c->cipher, NULL);
    if (rc < 0)
        return step_fail(r, "handshake", rc);

    printf(" handshake ok,");
    fflush(stdout);
    rc = make_key(p.client, 1, &tx);
    if (rc == 0)
        rc = make_key(p.client, 0, &rx);
    if (rc < 0) {
        step_fail(r, "key export", rc);
        goto out;
    }
    printf(" keys exported,");
    fflush(stdout);

    rc = tlsnic_to_openssl(&p, tx, data, wire, &r->to_openssl);
    if (rc < 0) {
        step_fail(r, "tlsnic -> OpenSSL", rc);
        goto out;
    }
    printf(" tlsnic->OpenSSL ok,");
    fflush(stdout);

    rc = openssl_to_tlsnic(&p, rx, data, wire, &r->from_openssl);
    if (rc < 0) {
        step_fail(r, "OpenSSL -> tlsnic", rc);
        goto out;
    }
    printf(" OpenSSL->tlsnic ok,");
    fflush(stdout);

    rc = tlsnic_close_notify(&p, tx, wire);
    if (rc < 0) {
        step_fail(r, "close_notify", rc);
        goto out;
    }
    printf(" close_notify ok\n");
out:
    r->ms = now_ms() - start;
    tlsnic_rec_key_free(tx);
    tlsnic_rec_key_free(rx);
    tls_pair_free(&p);
    return rc;
}

static void print_sha_prefix(const uint8_t sha[SHA256_LEN])
{
    for (int i = 0; i < 4; i++)
        printf("%02x", sha[i]);
}

static int cmd_demo(void)
{
    static uint8_t data[TLSNIC_REC_MAX_PLAINTEXT];
    static uint8_t wire[TLSNIC_REC_MAX_WIRE_LEN];
    static struct demo_result results[N_COMBOS];
    int failures = 0;

    printf("tlsnic demo: libssl (%s) handshakes with itself over a socketpair; then the\n"
           "client's records are sealed and opened by tlsnic, the server stays libssl.\n\n",
           OpenSSL_version(OPENSSL_VERSION));
    for (size_t i = 0; i < N_COMBOS; i++) {
        const struct combo *c = &combos[i];
        printf("[%zu/%zu] %s %-17s", i + 1, N_COMBOS, version_name(c->version),
               tlsnic_cipher_name(c->cipher));
        fflush(stdout);
        if (run_combo(c, data, wire, &results[i]) < 0) {
            printf(" FAILED at %s: %s\n", results[i].failed_step, results[i].why);
            failures++;
        }
    }

    printf("\n| version | cipher            | tlsnic -> OpenSSL       | OpenSSL -> tlsnic       "
           "| sha256 sent = received  | time      | result |\n");
    printf("|---------|-------------------|-------------------------|-------------------------"
           "|-------------------------|-----------|--------|\n");
    for (size_t i = 0; i < N_COMBOS; i++) {
        const struct demo_result *r = &results[i];
        printf("| %s | %-17s | %zu records, %6zu bytes | %zu records, %6zu bytes | ",
               version_name(combos[i].version), tlsnic_cipher_name(combos[i].cipher),
               r->to_openssl.records, r->to_openssl.bytes, r->from_openssl.records,
               r->from_openssl.bytes);
        if (r->failed_step == NULL) {
            print_sha_prefix(r->to_openssl.received_sha);
            printf(".. / ");
            print_sha_prefix(r->from_openssl.received_sha);
            printf(".. | %6.1f ms | PASS   |\n", r->ms);
        } else {
            printf("%-23s | %6.1f ms | FAIL   |\n", "-", r->ms);
        }
    }
    printf("\n%zu of %zu combinations passed.\n", N_COMBOS - (size_t)failures, N_COMBOS);
    return failures == 0 ? 0 : 1;
}

static void usage(FILE *to)
{
    fprintf(to,
            "usage: tlsnic <command>\n"
            "\n"
            "tlsnic models inline TLS offload to a network device: the host frames TLS\n"
            "records, the device encrypts and decrypts them as TCP segments pass.\n"
            "\n"
            "commands:\n"
            "  demo     for TLS 1.2 and 1.3 with AES-128-GCM, AES-256-GCM and\n"
            "           ChaCha20-Poly1305: a real libssl handshake, keys exported to the\n"
            "           <linux/tls.h> form, records sealed by tlsnic read by libssl and\n"
            "           records written by libssl opened by tlsnic, SHA-256 checked.\n"
            "           Exit status 0 if every combination passed.\n"
            "  bench    the paper's evaluation through tlsnicd (root): scripts/bench.sh,\n"
            "           options passed on (--quick, --cipher, --version, ...; see --help)\n"
            "  help     this text (also -h, --help)\n");
}

/* `tlsnic bench`: the evaluation is a script (namespaces, daemon, pinning); run it. */
static int cmd_bench(char **argv)
{
    argv[0] = (char *)TLSNIC_SOURCE_DIR "/scripts/bench.sh";
    if (setenv("TLSNIC_BUILD_DIR", TLSNIC_BUILD_DIR, 0) != 0)
        return 1;
    execv(argv[0], argv);
    fprintf(stderr, "tlsnic bench: %s: %s\n", argv[0], strerror(errno));
    return 1;
}

int main(int argc, char **argv)
{
    /* A failing peer must show up as an error, not kill the demo. */
    signal(SIGPIPE, SIG_IGN);
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "demo") == 0 && argc == 2)
        return cmd_demo();
    if (strcmp(argv[1], "bench") == 0)
        return cmd_bench(argv + 1);
    if (strcmp(argv[1], "help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "--help") == 0) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "tlsnic: unknown command or arguments: %s\n", argv[1]);
    usage(stderr);
    return 2;
}
