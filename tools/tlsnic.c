/*
 * tlsnic: the command-line face of the project.
 *
 *   tlsnic demo   As root (network namespaces, TUN): the device demo, scripts/demo-device.sh:
 *                 tlsnicd between two namespaces, an unmodified `openssl s_server -WWW
 *                 -sendfile` under the preload library in device mode, curl and openssl
 *                 s_client downloading a file in the peer namespace, sha256, the device's
 *                 counters and the share of TLS bytes the host CPU did not encrypt.
 *                 Otherwise (or with --inprocess) the in-process demo, in two parts.
 *                 (1) For each protocol version x cipher tlsnic offloads, libssl does a real
 *                 handshake with itself over a socketpair, the client's traffic keys are
 *                 exported into the <linux/tls.h> form, and from then on the client's
 *                 records are sealed and opened by tlsnic while the server stays libssl.
 *                 The data crosses in both directions and its SHA-256 is checked on
 *                 both ends; the client ends with a tlsnic-sealed close_notify.
 *                 (2) The device model on the simulated wire with loss and reordering,
 *                 read back by libssl (demo_simwire.c).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>

#include "demo_simwire.h"
#include "fd_io.h"
#include "get.h"
#include "serve.h"
#include "tls_pair.h"
#include "tlsnic/attach.h"
#include "tlsnic/ctl_chan.h"
#include "tlsnic/record.h"

#define SHA256_LEN 32
#define ALERT_LEVEL_WARNING 1
#define ALERT_CLOSE_NOTIFY 0
#define MAX_SSL_READS 1024


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

static int run_combo(const struct tls_pair_suite *c, uint8_t *data, uint8_t *wire, struct demo_result *r)
{
    struct tls_pair p;
    tlsnic_rec_key *tx = NULL, *rx = NULL;
    double start = now_ms();
    int rc = tls_pair_new(&p, c->version, c->cipher, NULL);
    if (rc < 0)
        return step_fail(r, "handshake", rc);

    printf(" handshake ok,");
    fflush(stdout);
    rc = tls_pair_rec_key(p.client, 1, &tx);
    if (rc == 0)
        rc = tls_pair_rec_key(p.client, 0, &rx);
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
    static struct demo_result results[TLS_PAIR_N_SUITES];
    int failures = 0;

    printf("tlsnic demo: libssl (%s) handshakes with itself over a socketpair; then the\n"
           "client's records are sealed and opened by tlsnic, the server stays libssl.\n\n",
           OpenSSL_version(OPENSSL_VERSION));
    for (size_t i = 0; i < (size_t)TLS_PAIR_N_SUITES; i++) {
        const struct tls_pair_suite *c = &tls_pair_suites[i];
        printf("[%zu/%zu] %s %-17s", i + 1, (size_t)TLS_PAIR_N_SUITES, version_name(c->version),
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
    for (size_t i = 0; i < (size_t)TLS_PAIR_N_SUITES; i++) {
        const struct demo_result *r = &results[i];
        printf("| %s | %-17s | %zu records, %6zu bytes | %zu records, %6zu bytes | ",
               version_name(tls_pair_suites[i].version), tlsnic_cipher_name(tls_pair_suites[i].cipher),
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
    printf("\n%zu of %zu combinations passed.\n", (size_t)TLS_PAIR_N_SUITES - (size_t)failures,
           (size_t)TLS_PAIR_N_SUITES);
    int wire_rc = tlsnic_demo_simwire();
    return failures == 0 && wire_rc == 0 ? 0 : 1;
}

/* ---- tlsnic stats ------------------------------------------------------------------------ */

#define STATS_CAP 16384

/* The value of counter name in "name value" lines (0 if absent). */
static uint64_t stat_value(const char *text, const char *name)
{
    size_t nl = strlen(name);
    for (const char *line = text; line && *line;) {
        if (strncmp(line, name, nl) == 0 && (line[nl] == ' ' || line[nl] == '\t'))
            return strtoull(line + nl, NULL, 10);
        line = strchr(line, '\n');
        if (line)
            line++;
    }
    return 0;
}

static int read_text_file(const char *path, char *buf, size_t cap)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -errno;
    size_t n = fread(buf, 1, cap - 1, f);
    int err = ferror(f) ? -EIO : 0;
    fclose(f);
    buf[n] = '\0';
    return err < 0 ? err : (int)n;
}

/* The counters `--brief` keeps: the TLS ones of the device and of the host. */
static int is_tls_counter(const char *name, size_t len)
{
    return (len > 7 && (strncmp(name, "tx_tls_", 7) == 0 || strncmp(name, "rx_tls_", 7) == 0)) ||
           (len > 3 && strncmp(name, "Tls", 3) == 0);
}

/* Prints the lines whose value is not 0 (all with show_all), indented. */
static void print_counters(const char *text, int show_all, int brief)
{
    for (const char *line = text; line && *line;) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        const char *sp = memchr(line, ' ', len);
        const char *tab = memchr(line, '\t', len);
        const char *sep = sp && (!tab || sp < tab) ? sp : tab;
        if (sep) {
            uint64_t v = strtoull(sep, NULL, 10);
            if ((v != 0 || show_all) && (!brief || is_tls_counter(line, (size_t)(sep - line))))
                printf("    %-32.*s %" PRIu64 "\n", (int)(sep - line), line, v);
        }
        line = end ? end + 1 : NULL;
    }
}

static void print_mb(uint64_t bytes)
{
    if (bytes >= 1000000)
        printf("%.1f MB", (double)bytes / 1e6);
    else if (bytes >= 1000)
        printf("%.1f KB", (double)bytes / 1e3);
    else
        printf("%" PRIu64 " bytes", bytes);
}

/* ---- per-flow device counters ---- */

/* Flows listed by default; more are summed up in one line unless --flows asks for them. */
#define FLOWS_SHOWN_BY_DEFAULT 20
#define FLOWS_MAX 8192

static void flow_end_text(uint8_t family, const uint8_t *addr, uint16_t port, char *buf, size_t cap)
{
    char a[INET6_ADDRSTRLEN] = "?";
    inet_ntop(family, addr, a, sizeof(a));
    snprintf(buf, cap, family == AF_INET6 ? "[%s]:%u" : "%s:%u", a, port);
}

static uint64_t flow_drops(const struct tlsnic_ctl_flow_entry *e)
{
    return e->counters[TLSNIC_CTL_FC_tx_tls_drop_no_sync_data] +
           e->counters[TLSNIC_CTL_FC_tx_tls_drop_integrity] +
           e->counters[TLSNIC_CTL_FC_tx_tls_drop_bad_frame];
}

/*
 * The device's flows as a table: one line per flow with whitespace-separated columns
 * (host end, peer end, dir, state, pid, then counters; "-" where the device had none),
 * so scripts can read it with awk. show_all adds every counter of each flow.
 */
static void print_flows(const char *ctl, int list_all, int show_all)
{
    struct tlsnic_ctl_flow_entry *flows = calloc(FLOWS_MAX, sizeof(*flows));
    if (flows == NULL)
        return;
    uint32_t total = 0;
    uint16_t n_counters = 0;
    int n = tlsnic_ctl_query_flow_stats(ctl, flows, FLOWS_MAX, &total, &n_counters);
    if (n < 0) {
        printf("device flows: %s\n", n == -EOPNOTSUPP ? "this tlsnicd does not report them"
                                                       : strerror(-n));
        free(flows);
        return;
    }
    int ended = 0;
    for (int i = 0; i < n; i++)
        ended += (flows[i].flags & TLSNIC_CTL_FLOW_ENDED) != 0;
    printf("device flows: %d offloaded, %d ended (the last %u deleted, with their counters at the end)\n",
           n - ended, ended, TLSNIC_CTL_ENDED_FLOWS);
    if (n > FLOWS_SHOWN_BY_DEFAULT && !list_all) {
        printf("    (%d flows: tlsnic stats --flows lists them)\n", n);
        free(flows);
        return;
    }
    if (n > 0)
        printf("    %-24s %-24s %-3s %-9s %-7s %10s %14s %8s %8s %12s %6s\n", "host end", "peer end",
               "dir", "state", "pid", "packets", "bytes", "ooo", "ckpt", "resync_bytes", "drops");
    for (int i = 0; i < n; i++) {
        const struct tlsnic_ctl_flow_entry *e = &flows[i];
        char local[64], remote[64];
        flow_end_text(e->flow.family, e->flow.local, e->flow.local_port, local, sizeof(local));
        flow_end_text(e->flow.family, e->flow.remote, e->flow.remote_port, remote, sizeof(remote));
        printf("    %-24s %-24s %-3s %-9s %-7" PRIu32, local, remote,
               e->dir == TLSNIC_DIR_TX ? "tx" : "rx",
               (e->flags & TLSNIC_CTL_FLOW_ENDED)       ? "ended"
               : (e->flags & TLSNIC_CTL_FLOW_FINISHING) ? "finishing"
                                                        : "active",
               e->owner_pid);
        if (e->flags & TLSNIC_CTL_FLOW_NO_COUNTERS) {
            printf(" %10s %14s %8s %8s %12s %6s\n", "-", "-", "-", "-", "-", "-");
            continue;
        }
        if (e->dir == TLSNIC_DIR_RX) { /* packets decrypted, bytes of verified records,
                                          out of order; tag failures in the drops column */
            printf(" %10" PRIu64 " %14" PRIu64 " %8" PRIu64 " %8s %12s %6" PRIu64 "\n",
                   e->counters[TLSNIC_CTL_FC_rx_tls_decrypted_packets],
                   e->counters[TLSNIC_CTL_FC_rx_tls_rec_bytes],
                   e->counters[TLSNIC_CTL_FC_rx_tls_ooo], "-", "-",
                   e->counters[TLSNIC_CTL_FC_rx_tls_err]);
            for (unsigned k = 0; show_all && k < n_counters; k++)
                printf("        %-32s %" PRIu64 "\n", tlsnic_ctl_flow_counter_name(k), e->counters[k]);
            continue;
        }
        printf(" %10" PRIu64 " %14" PRIu64 " %8" PRIu64 " %8" PRIu64 " %12" PRIu64 " %6" PRIu64 "\n",
               e->counters[TLSNIC_CTL_FC_tx_tls_encrypted_packets],
               e->counters[TLSNIC_CTL_FC_tx_tls_encrypted_bytes],
               e->counters[TLSNIC_CTL_FC_tx_tls_ooo], e->counters[TLSNIC_CTL_FC_tx_tls_ooo_ckpt],
               e->counters[TLSNIC_CTL_FC_tx_tls_resync_bytes], flow_drops(e));
        for (unsigned k = 0; show_all && k < n_counters; k++)
            printf("        %-32s %" PRIu64 "\n", tlsnic_ctl_flow_counter_name(k), e->counters[k]);
    }
    if ((uint32_t)n < total)
        printf("    (%" PRIu32 " more not shown)\n", total - (uint32_t)n);
    free(flows);
}

/*
 * tlsnic stats [--ctl PATH] [--host FILE] [--all|--brief] [--flows]: the device's counters from tlsnicd and
 * the host's from a counters file (what the preload library writes to TLSNIC_STATS_FILE),
 * then what share of the TLS record bytes the host sent the device encrypted, and of those
 * it received the device decrypted.
 */
static int cmd_stats(int argc, char **argv)
{
    const char *ctl = getenv("TLSNIC_CTL"), *host = getenv("TLSNIC_STATS_FILE");
    int show_all = 0, brief = 0, list_flows = 0;
    if (!ctl || !ctl[0])
        ctl = TLSNIC_ATTACH_DEFAULT_CTL;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--ctl") == 0 && i + 1 < argc)
            ctl = argv[++i];
        else if (strcmp(argv[i], "--host") == 0 && i + 1 < argc)
            host = argv[++i];
        else if (strcmp(argv[i], "--all") == 0)
            show_all = 1;
        else if (strcmp(argv[i], "--brief") == 0)
            brief = 1;
        else if (strcmp(argv[i], "--flows") == 0)
            list_flows = 1;
        else {
            fprintf(stderr, "tlsnic stats: unknown argument %s\n", argv[i]);
            return 2;
        }
    }
    static char dev_text[STATS_CAP], host_text[STATS_CAP];
    int dev_len = tlsnic_ctl_query_stats(ctl, dev_text, sizeof(dev_text));
    if (dev_len >= 0) {
        printf("device (tlsnicd at %s):\n", ctl);
        print_counters(dev_text, show_all, brief);
        print_flows(ctl, list_flows, show_all);
    } else {
        printf("device: no tlsnicd at %s (%s)\n", ctl, strerror(-dev_len));
        dev_text[0] = '\0';
    }
    int host_len = host ? read_text_file(host, host_text, sizeof(host_text)) : -ENOENT;
    if (host_len >= 0) {
        printf("host (%s):\n", host);
        print_counters(host_text, show_all, brief);
    } else if (host) {
        printf("host: no counters in %s (%s)\n", host, strerror(-host_len));
        host_text[0] = '\0';
    } else {
        printf("host: no counters file (--host FILE, or TLSNIC_STATS_FILE: where programs under\n"
               "      libtlsnic-preload.so write theirs)\n");
        host_text[0] = '\0';
    }
    if (host_len >= 0) {
        uint64_t dev_bytes = stat_value(host_text, "TlsnicTxDeviceBytes");
        uint64_t sw_bytes = stat_value(host_text, "TlsnicTxSwBytes");
        uint64_t pre = stat_value(host_text, "TlsnicTxPreKeyBytes");
        uint64_t total = dev_bytes + sw_bytes + pre;
        if (total > 0) {
            printf("summary: of ");
            print_mb(total);
            printf(" of TLS the host sent, the device encrypted ");
            print_mb(dev_bytes);
            printf(" in %" PRIu64 " records: %.3f %% the host CPU did not encrypt\n"
                   "         (host: ",
                   stat_value(host_text, "TlsnicTxDeviceRecords"),
                   100.0 * (double)dev_bytes / (double)total);
            print_mb(sw_bytes);
            printf(" sealed in software, at most ");
            print_mb(pre);
            printf(" of handshake before kTLS)\n");
        }
        uint64_t rx_dev = stat_value(host_text, "TlsnicRxDeviceBytes");
        uint64_t rx_sw = stat_value(host_text, "TlsnicRxSwBytes");
        if (rx_dev + rx_sw > 0) {
            uint64_t gaps = stat_value(host_text, "TlsnicRxResyncGaps");
            printf("summary: of ");
            print_mb(rx_dev + rx_sw);
            printf(" of TLS the host received, the device decrypted and verified ");
            print_mb(rx_dev);
            printf(" in %" PRIu64 " records: %.3f %% the host CPU did not decrypt\n"
                   "         (host: ",
                   stat_value(host_text, "TlsnicRxDeviceRecords"),
                   100.0 * (double)rx_dev / (double)(rx_dev + rx_sw));
            print_mb(rx_sw);
            printf(" opened in software, %" PRIu64 " records the device had decrypted turned back "
                   "to open them, %" PRIu64 " device tag failures;\n"
                   "          %" PRIu64 " gaps, after %" PRIu64 " of them the device decrypted again "
                   "within 2 records, %.1f on average)\n",
                   stat_value(host_text, "TlsnicRxReencryptRecords"),
                   stat_value(host_text, "TlsnicRxDeviceTagFail"), gaps,
                   stat_value(host_text, "TlsnicRxResyncWithin2"),
                   gaps ? (double)stat_value(host_text, "TlsnicRxResyncRecords") / (double)gaps : 0.0);
        }
    }
    if (dev_len >= 0 && dev_text[0]) {
        printf("device work: %" PRIu64 " packets encrypted inline, %" PRIu64
               " out of order (%" PRIu64 " from checkpoints), %" PRIu64
               " resync bytes, %" PRIu64 " records read back from the host store\n",
               stat_value(dev_text, "tx_tls_encrypted_packets"), stat_value(dev_text, "tx_tls_ooo"),
               stat_value(dev_text, "tx_tls_ooo_ckpt"), stat_value(dev_text, "tx_tls_resync_bytes"),
               stat_value(dev_text, "tx_tls_dump_packets"));
        if (stat_value(dev_text, "rx_tls_ctx") > 0)
            printf("device RX work: %" PRIu64 " packets decrypted inline, %" PRIu64
                   " records verified (%" PRIu64 " tag failures), %" PRIu64
                   " out of order; resync: %" PRIu64 " headers placed by the device, %" PRIu64
                   " requests (%" PRIu64 " answered, %" PRIu64 " applied), %" PRIu64
                   " later copies the host had to check\n",
                   stat_value(dev_text, "rx_tls_decrypted_packets"),
                   stat_value(dev_text, "rx_tls_rec_ok"), stat_value(dev_text, "rx_tls_err"),
                   stat_value(dev_text, "rx_tls_ooo"), stat_value(dev_text, "rx_tls_resync_placed"),
                   stat_value(dev_text, "rx_tls_resync_req_start"),
                   stat_value(dev_text, "rx_tls_resync_req_end"),
                   stat_value(dev_text, "rx_tls_resync_res_ok"),
                   stat_value(dev_text, "rx_tls_recheck"));
    }
    return dev_len >= 0 || host_len >= 0 ? 0 : 1;
}

/* ---- tlsnic demo (device) -------------------------------------------------------------------- */

/*
 * The device demo needs root, /dev/net/tun and the demo script with the binaries it drives;
 * 1 if they are all there. why says what is missing otherwise.
 */
static int device_demo_possible(const char **why)
{
    if (geteuid() != 0) {
        *why = "not running as root (network namespaces and TUN devices need it)";
        return 0;
    }
    if (access("/dev/net/tun", R_OK | W_OK) != 0) {
        *why = "no /dev/net/tun";
        return 0;
    }
    if (access(TLSNIC_DEMO_SCRIPT, X_OK) != 0 || access(TLSNIC_TLSNICD_PATH, X_OK) != 0 ||
        access(TLSNIC_PRELOAD_PATH, R_OK) != 0) {
        *why = "the demo script or tlsnicd / libtlsnic-preload.so is not built";
        return 0;
    }
    return 1;
}

static int cmd_demo_device(const char *self)
{
    char self_path[4096];
    ssize_t n = readlink("/proc/self/exe", self_path, sizeof(self_path) - 1);
    if (n > 0)
        self_path[n] = '\0';
    else
        snprintf(self_path, sizeof(self_path), "%s", self);
    fflush(stdout);
    execl(TLSNIC_DEMO_SCRIPT, TLSNIC_DEMO_SCRIPT, TLSNIC_TLSNICD_PATH, TLSNIC_PRELOAD_PATH,
          TLSNIC_NET_SH_PATH, self_path, (char *)NULL);
    fprintf(stderr, "tlsnic demo: %s: %s\n", TLSNIC_DEMO_SCRIPT, strerror(errno));
    return 1;
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
            "  demo     as root: tlsnicd (the device) between two network namespaces,\n"
            "           `openssl s_server -WWW -sendfile` under libtlsnic-preload.so in\n"
            "           device mode, curl and openssl s_client download a file through it;\n"
            "           sha256, device counters, share of TLS bytes the host did not\n"
            "           encrypt; everything torn down at the end.\n"
            "  demo --device     only that (exit 77 where it cannot run)\n"
            "  demo --inprocess  (also the fallback without root) for TLS 1.2 and 1.3 with\n"
            "           AES-128-GCM, AES-256-GCM and ChaCha20-Poly1305: a real libssl\n"
            "           handshake, keys exported to the <linux/tls.h> form, records sealed\n"
            "           by tlsnic read by libssl and records written by libssl opened by\n"
            "           tlsnic, SHA-256 checked; then the device model encrypting 4 MB\n"
            "           on the simulated wire (1 %% loss, 1 %% reordering), read by libssl.\n"
            "           Exit status 0 if everything passed.\n"
            "  stats [--ctl PATH] [--host FILE] [--all | --brief (TLS counters only)] [--flows]\n"
            "           device counters from tlsnicd (default $TLSNIC_CTL or\n"
            "           " TLSNIC_ATTACH_DEFAULT_CTL "), per device and per flow (offloaded\n"
            "           flows and the last ended ones; a table when there are few, every\n"
            "           flow with --flows), host counters from FILE (default\n"
            "           $TLSNIC_STATS_FILE, written by programs under the preload library)\n"
            "  serve --port P --file F [--addr A] [--tls12|--tls13] [--cipher NAME] [--count N]\n"
            "           an HTTPS file server on the tlsnic socket layer: libssl handshake\n"
            "           (self-signed certificate made in memory), keys exported, the socket\n"
            "           handed to tlsnic (TCP_ULP tls, TLS_TX/TLS_RX), the file sent with\n"
            "           tlsnic_sendfile; device mode when tlsnicd ($TLSNIC_CTL) takes the\n"
            "           flow. One line per connection with its mode (device, or sw and why)\n"
            "  get --addr A --port P [--path /F] [--out FILE] [--tls12|--tls13] [--cipher NAME]\n"
            "           an HTTPS client on the tlsnic socket layer (the download direction):\n"
            "           libssl handshake, keys exported, the socket handed to tlsnic; RX in\n"
            "           device mode when tlsnicd ($TLSNIC_CTL) takes the flow: the device\n"
            "           decrypts what the host receives. One line with the modes and what\n"
            "           came in (HTTP status, bytes, Mbit/s)\n"
            "  bench    the paper's evaluation through tlsnicd (root): scripts/bench.sh,\n"
            "           options passed on (--quick, --cipher, --version, ...; see --help);\n"
            "           then the receive side (scripts/bench-rx.sh: receiving host CPU per\n"
            "           byte with RX offload, device-decrypted share by loss rate; --no-rx\n"
            "           skips it)\n"
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
    if (strcmp(argv[1], "demo") == 0 && argc <= 3) {
        const char *opt = argc == 3 ? argv[2] : "";
        const char *why = NULL;
        if (strcmp(opt, "--inprocess") == 0 || strcmp(opt, "--quick") == 0)
            return cmd_demo();
        if (strcmp(opt, "--device") == 0 || opt[0] == '\0') {
            if (device_demo_possible(&why))
                return cmd_demo_device(argv[0]);
            if (opt[0] != '\0') {
                printf("tlsnic demo --device: cannot run: %s\n", why);
                return 77;
            }
            printf("tlsnic demo: %s:\nrunning the in-process demo instead (the device demo "
                   "needs root: sudo tlsnic demo).\n\n", why);
            return cmd_demo();
        }
    }
    if (strcmp(argv[1], "stats") == 0)
        return cmd_stats(argc, argv);
    if (strcmp(argv[1], "bench") == 0)
        return cmd_bench(argv + 1);
    if (strcmp(argv[1], "serve") == 0)
        return tlsnic_cmd_serve(argc, argv);
    if (strcmp(argv[1], "get") == 0)
        return tlsnic_cmd_get(argc, argv);
    if (strcmp(argv[1], "help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "--help") == 0) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "tlsnic: unknown command or arguments: %s\n", argv[1]);
    usage(stderr);
    return 2;
}
