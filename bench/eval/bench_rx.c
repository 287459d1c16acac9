/*
 * bench_rx: the receive side of `tlsnic bench` (scripts/bench-rx.sh runs it in the
 * namespaces it makes, with tlsnicd between them): what RX offload buys the receiver.
 *
 *   bench_rx serve --addr A --port P [--timeout S]
 *       In the peer namespace: the sender, and not what is measured. P: plain TCP, P+1:
 *       TLS (a real OpenSSL handshake, self-signed P-256 certificate, no session tickets).
 *       Per connection it reads a request (u32 record size, u64 bytes, u32 pacing rate in
 *       Mbit/s or 0, little endian; over TLS for P+1) and sends that many bytes of a pattern,
 *       in writes of the record size (one TLS record each), paced by SO_MAX_PACING_RATE if
 *       asked, then closes (TCP FIN, no close_notify). Until SIGTERM.
 *
 *   bench_rx recv --addr A --port P [--scenarios tcp,ssl,sw,dev] [--sizes 1457,16384]
 *       [--mb N] [--rounds N] [--version 1.2|1.3] [--cipher aes128|aes256|chacha]
 *       [--ctl PATH] [--daemon-pid PID] [--cpu N] [--json FILE] [--label K=V]... [--rate MBIT]
 *       In the host namespace: the receiver, measured. Rounds x sizes x scenarios, one
 *       connection each, the scenario order rotated every round:
 *         tcp  read(2) of plaintext;
 *         ssl  SSL_read (libssl's record layer, decrypting in user space);
 *         sw   tlsnic software mode (tlsnic_recv; the receive keys exported from the same
 *              handshake);
 *         dev  tlsnic RX device mode: tlsnicd at --ctl decrypts inline, the RX status in
 *              shared memory (src/host/attach.c's store ops); the socket's RX mode is
 *              checked.
 *       Every received byte is checked against the pattern. Each sample, one JSON object per
 *       line appended to --json: from the request to EOF, the bytes, the receiver's user
 *       and system CPU (getrusage), the busy time of core --cpu (eval_cpu.h, the sending
 *       side's accounting: everything the core did, the receiver with the kernel's receive
 *       processing steered there; idle in ns when the receiver is pinned to that core),
 *       tlsnicd's CPU, the device's RX counter deltas and the host's RX
 *       counter deltas (records the device verified, bytes the host decrypted, resync
 *       distances). --rate has the sender pace every connection to MBIT Mbit/s, so that the
 *       scenarios are compared at one throughput (the kernel's receive work per byte depends
 *       on it).
 *
 * Every run is bounded: socket timeouts (30 s) and alarm() over the whole program.
 */
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "eval_cpu.h"
#include "eval_net.h"
#include "tlsnic/attach.h"
#include "tlsnic/ctl_client.h"
#include "tlsnic/keyexport.h"
#include "tlsnic/ktls.h"

#define PERIOD 251
#define MAX_REC 16384
#define MAX_SIZES 8
#define MAX_LABELS 8
#define BUF_LEN (256 * 1024)
#define STATS_CAP 16384
#define IO_TIMEOUT_S 30

enum scenario { S_TCP, S_SSL, S_SW, S_DEV, N_SCEN };
static const char *const scen_names[N_SCEN] = {"tcp", "ssl", "sw", "dev"};

static const char *const dev_counters[] = {
    "rx_tls_decrypted_packets", "rx_tls_decrypted_bytes", "rx_tls_rec_ok", "rx_tls_rec_bytes",
    "rx_tls_err", "rx_tls_ooo", "rx_tls_resync_placed", "rx_tls_resync_req_start",
    "rx_tls_resync_res_ok", "rx_tls_recheck", "to_host_hook_ns", "to_host_fault_lost",
    "rx_tls_no_room",
};
#define N_DEV (sizeof(dev_counters) / sizeof(dev_counters[0]))

static const enum tlsnic_stat host_counters[] = {
    TLSNIC_STAT_RX_RECORDS, TLSNIC_STAT_RX_DEVICE_RECORDS, TLSNIC_STAT_RX_DEVICE_BYTES,
    TLSNIC_STAT_RX_SW_BYTES, TLSNIC_STAT_RX_REENCRYPT_RECORDS, TLSNIC_STAT_RX_RESYNC_GAPS,
    TLSNIC_STAT_RX_RESYNC_RECORDS, TLSNIC_STAT_RX_RESYNC_WITHIN2, TLSNIC_STAT_RX_DEVICE_RESYNC,
};
#define N_HOST (sizeof(host_counters) / sizeof(host_counters[0]))

static uint8_t pattern[MAX_REC + PERIOD];
static uint8_t buf[BUF_LEN];

static void put_le(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++, v >>= 8)
        p[i] = (uint8_t)v;
}

static uint64_t get_le(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static const char *suite_name(int version, uint16_t cipher)
{
    static const char *const names[2][3] = {
        {"ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384",
         "ECDHE-ECDSA-CHACHA20-POLY1305"},
        {"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"},
    };
    int c = cipher == TLS_CIPHER_AES_GCM_128 ? 0 : cipher == TLS_CIPHER_AES_GCM_256 ? 1 : 2;
    return names[version == TLS1_3_VERSION][c];
}

/* ------------------------------------------------------------------------------------------ */
/* The sender (peer namespace)                                                                */

static volatile sig_atomic_t stop;

static void on_stop(int sig)
{
    (void)sig;
    stop = 1;
}

static SSL_CTX *server_ctx(void)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *cert = X509_new();
    X509_NAME *name = X509_NAME_new();
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    int ok = key && cert && name && ctx && X509_set_version(cert, X509_VERSION_3) &&
             ASN1_INTEGER_set(X509_get_serialNumber(cert), 1) &&
             X509_gmtime_adj(X509_getm_notBefore(cert), -60) &&
             X509_gmtime_adj(X509_getm_notAfter(cert), 86400) &&
             X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"bench-rx", -1, -1, 0) &&
             X509_set_subject_name(cert, name) && X509_set_issuer_name(cert, name) &&
             X509_set_pubkey(cert, key) && X509_sign(cert, key, EVP_sha256()) > 0 &&
             SSL_CTX_use_certificate(ctx, cert) && SSL_CTX_use_PrivateKey(ctx, key) &&
             SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) &&
             SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) &&
             SSL_CTX_set_cipher_list(ctx, "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-"
                                          "SHA384:ECDHE-ECDSA-CHACHA20-POLY1305") &&
             SSL_CTX_set_num_tickets(ctx, 0); /* nothing after the handshake: keyexport's rec_seq */
    X509_NAME_free(name);
    X509_free(cert);
    EVP_PKEY_free(key);
    if (!ok) {
        ERR_print_errors_fp(stderr);
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

static void serve_one(SSL_CTX *ctx, int fd, int tls)
{
    SSL *ssl = NULL;
    uint8_t req[16];
    if (eval_set_timeouts(fd, IO_TIMEOUT_S) < 0)
        return;
    if (tls) {
        ssl = SSL_new(ctx);
        if (!ssl || !SSL_set_fd(ssl, fd) || SSL_accept(ssl) != 1 || SSL_read(ssl, req, 16) != 16) {
            SSL_free(ssl);
            return;
        }
    } else if (recv(fd, req, 16, MSG_WAITALL) != 16) {
        return;
    }
    size_t rec = (size_t)get_le(req, 4);
    uint64_t total = get_le(req + 4, 8), sent = 0;
    uint32_t mbit = (uint32_t)get_le(req + 12, 4);
    if (mbit) {
        unsigned long bps = (unsigned long)mbit * 1000000ul / 8;
        (void)setsockopt(fd, SOL_SOCKET, SO_MAX_PACING_RATE, &bps, sizeof(bps));
    }
    if (rec == 0 || rec > MAX_REC)
        rec = MAX_REC;
    while (sent < total && !stop) {
        size_t n = total - sent < rec ? (size_t)(total - sent) : rec;
        const uint8_t *p = pattern + sent % PERIOD;
        ssize_t w = tls ? SSL_write(ssl, p, (int)n) : send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0)
            break;
        sent += (uint64_t)w;
    }
    SSL_free(ssl); /* no close_notify: a TCP FIN ends the stream */
}

static int do_serve(const char *addr, int port)
{
    SSL_CTX *ctx = server_ctx();
    if (!ctx)
        return 1;
    int ls[2];
    for (int k = 0; k < 2; k++) {
        struct addrinfo *ai;
        int one = 1;
        if (eval_resolve(addr, port + k, 1, &ai) < 0)
            return 1;
        ls[k] = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (ls[k] < 0 || setsockopt(ls[k], SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
            bind(ls[k], ai->ai_addr, ai->ai_addrlen) < 0 || listen(ls[k], 4) < 0) {
            perror("bench_rx serve: listen");
            return 1;
        }
        freeaddrinfo(ai);
    }
    fprintf(stderr, "listening\n");
    while (!stop) {
        fd_set rs;
        FD_ZERO(&rs);
        FD_SET(ls[0], &rs);
        FD_SET(ls[1], &rs);
        struct timeval tv = {.tv_sec = 0, .tv_usec = 500000};
        if (select((ls[0] > ls[1] ? ls[0] : ls[1]) + 1, &rs, NULL, NULL, &tv) <= 0)
            continue;
        for (int k = 0; k < 2; k++) {
            if (!FD_ISSET(ls[k], &rs))
                continue;
            int fd = accept4(ls[k], NULL, NULL, SOCK_CLOEXEC);
            if (fd >= 0) {
                serve_one(ctx, fd, k);
                close(fd);
            }
        }
    }
    SSL_CTX_free(ctx);
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* The receiver (host namespace, measured)                                                    */

struct recv_opts {
    const char *addr, *ctl, *json, *cc;
    int port, version, daemon_pid, cpu;
    uint32_t rate_mbit;
    uint16_t cipher;
    const char *labels[MAX_LABELS];
    int n_labels;
};

static struct tlsnic_dev *client;
static struct tlsnic_dev_ops rx_ops; /* the control client's ops, saying RX (as attach.c) */
static struct tlsnic_dev rx_dev;
static uint32_t store_slots = TLSNIC_ATTACH_DEFAULT_SLOTS;
static int (*client_add)(struct tlsnic_dev *, int, const struct tlsnic_flow *, enum tlsnic_dir,
                         const void *, size_t, uint32_t, const struct tlsnic_rec_store *);

/* The receive side is measured: TX (the request only) stays in software. The socket's
 * binding holds for both directions, so the device says no to TX ("cipher not offloaded"). */
static int rx_only_add(struct tlsnic_dev *dev, int sockfd, const struct tlsnic_flow *flow,
                       enum tlsnic_dir dir, const void *ci, size_t len, uint32_t seq,
                       const struct tlsnic_rec_store *store)
{
    if (dir != TLSNIC_DIR_RX)
        return -EOPNOTSUPP;
    return client_add(dev, sockfd, flow, dir, ci, len, seq, store);
}

static int dev_read(const char *ctl, uint64_t *vals)
{
    static char text[STATS_CAP];
    memset(vals, 0, N_DEV * sizeof(*vals));
    if (!ctl || tlsnic_ctl_query_stats(ctl, text, sizeof(text)) < 0)
        return -ENOENT;
    for (const char *line = text; *line;) {
        for (size_t i = 0; i < N_DEV; i++) {
            size_t kl = strlen(dev_counters[i]);
            if (strncmp(line, dev_counters[i], kl) == 0 && line[kl] == ' ')
                vals[i] = strtoull(line + kl + 1, NULL, 10);
        }
        const char *nl = strchr(line, '\n');
        if (!nl)
            break;
        line = nl + 1;
    }
    return 0;
}

/* Busy seconds of core cpu between two snapshots (eval_cpu.h); 0 if unknown. */
static double core_busy_between(const struct eval_snap *a, const struct eval_snap *b, int cpu)
{
    struct eval_core c;
    if (cpu < 0 || eval_core_between(a, b, cpu, &c) < 0)
        return 0;
    return c.busy_s;
}

static double daemon_cpu(int pid)
{
    if (pid <= 0)
        return 0;
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/schedstat", pid);
    FILE *f = fopen(path, "re");
    unsigned long long ns = 0;
    if (f) {
        if (fscanf(f, "%llu", &ns) != 1)
            ns = 0;
        fclose(f);
    }
    return (double)ns * 1e-9;
}

static int connect_to(const struct recv_opts *o, int port)
{
    struct addrinfo *ai;
    if (eval_resolve(o->addr, port, 0, &ai) < 0)
        return -EINVAL;
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int err = fd < 0 ? -errno : eval_set_timeouts(fd, IO_TIMEOUT_S);
    if (err == 0 && o->cc && o->cc[0] &&
        setsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, o->cc, (socklen_t)strlen(o->cc)) < 0)
        err = -errno;
    if (err == 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) < 0)
        err = -errno;
    freeaddrinfo(ai);
    if (err < 0 && fd >= 0)
        close(fd);
    return err < 0 ? err : fd;
}

struct sample {
    enum scenario sc;
    size_t rec;
    uint64_t bytes;
    double wall, user, sys, busy, daemon;
    uint64_t dev[N_DEV], host[N_HOST];
    char mode[96];
    int ok;
};

static int check(const uint8_t *p, size_t n, uint64_t *off)
{
    while (n > 0) { /* pattern holds MAX_REC bytes from any phase */
        size_t l = n < MAX_REC ? n : MAX_REC;
        if (memcmp(p, pattern + *off % PERIOD, l) != 0)
            return 0;
        p += l;
        n -= l;
        *off += l;
    }
    return 1;
}

static int run_sample(SSL_CTX *ctx, const struct recv_opts *o, enum scenario sc, size_t rec,
                      uint64_t total, struct sample *s)
{
    memset(s, 0, sizeof(*s));
    s->sc = sc;
    s->rec = rec;
    snprintf(s->mode, sizeof(s->mode), "-");
    int fd = connect_to(o, o->port + (sc == S_TCP ? 0 : 1));
    if (fd < 0)
        return fd;
    uint8_t req[16];
    put_le(req, rec, 4);
    put_le(req + 4, total, 8);
    put_le(req + 12, o->rate_mbit, 4);
    SSL *ssl = NULL;
    int rc = 0;
    if (sc == S_TCP) {
        if (send(fd, req, 16, 0) != 16)
            rc = -errno;
    } else {
        ssl = SSL_new(ctx);
        if (!ssl || !SSL_set_fd(ssl, fd) || SSL_connect(ssl) != 1 ||
            (sc == S_SSL && SSL_write(ssl, req, 16) != 16))
            rc = -EPROTO;
    }
    if (rc == 0 && (sc == S_SW || sc == S_DEV)) {
        /* As a kTLS client does: both directions handed to tlsnic right after the
         * handshake (TX in software: only the request goes out), RX set before the
         * request, so no record reaches the socket before the device has the flow. */
        union tlsnic_crypto_info rx, tx;
        size_t rx_len = 0, tx_len = 0;
        rc = SSL_has_pending(ssl) ? -EPROTO : tlsnic_keyexport(ssl, 0, &rx, &rx_len);
        if (rc == 0)
            rc = tlsnic_keyexport(ssl, 1, &tx, &tx_len);
        SSL_free(ssl); /* not a byte more through libssl */
        ssl = NULL;
        /* The socket's binding: the device (RX only, rx_only_add) or none. */
        struct tlsnic_offload off = {.dev = &rx_dev, .store_ops = &tlsnic_attach_shm_store_ops,
                                     .store_ctx = &store_slots};
        if (rc == 0 && (tlsnic_setsockopt(fd, SOL_TCP, TCP_ULP, "tls", 4) < 0 ||
                        tlsnic_sock_set_offload(fd, sc == S_DEV ? &off : NULL) < 0 ||
                        tlsnic_setsockopt(fd, SOL_TLS, TLS_TX, &tx, (socklen_t)tx_len) < 0))
            rc = -errno;
        if (rc == 0 && tlsnic_setsockopt(fd, SOL_TLS, TLS_RX, &rx, (socklen_t)rx_len) < 0)
            rc = -errno;
        if (rc == 0 && tlsnic_send(fd, req, 16, MSG_NOSIGNAL) != 16)
            rc = -errno;
        OPENSSL_cleanse(&rx, sizeof(rx));
        OPENSSL_cleanse(&tx, sizeof(tx));
        struct tlsnic_mode_info mi;
        if (rc == 0 && tlsnic_get_mode(fd, TLSNIC_DIR_RX, &mi) == 0)
            snprintf(s->mode, sizeof(s->mode), "%s%s%s", tlsnic_mode_name(mi.mode),
                     mi.mode == TLSNIC_MODE_SW ? ": " : "",
                     mi.mode == TLSNIC_MODE_SW ? tlsnic_sw_reason_name(mi.reason) : "");
        if (rc == 0 && sc == S_DEV && mi.mode != TLSNIC_MODE_DEVICE)
            rc = -EOPNOTSUPP;
    }
    uint64_t d0[N_DEV], h0[N_HOST];
    dev_read(sc == S_DEV ? o->ctl : NULL, d0);
    for (size_t i = 0; i < N_HOST; i++)
        h0[i] = tlsnic_stat_get(host_counters[i]);
    struct rusage r0, r1;
    getrusage(RUSAGE_SELF, &r0);
    struct eval_snap snap0, snap1;
    int have_snaps = eval_snap_take(&snap0) == 0;
    double t0 = eval_now_s(), dc0 = daemon_cpu(o->daemon_pid);
    uint64_t off = 0;
    int ok = 1;
    while (rc == 0) {
        ssize_t n = sc == S_TCP ? read(fd, buf, sizeof(buf))
                    : sc == S_SSL ? SSL_read(ssl, buf, sizeof(buf))
                                  : tlsnic_recv(fd, buf, sizeof(buf), 0);
        if (n > 0) {
            ok &= check(buf, (size_t)n, &off);
            continue;
        }
        if (sc == S_SSL && n <= 0) {
            int e = SSL_get_error(ssl, (int)n);
            if (e != SSL_ERROR_ZERO_RETURN && e != SSL_ERROR_SYSCALL)
                rc = -EPROTO;
            else if (e == SSL_ERROR_SYSCALL && n < 0 && errno != 0)
                rc = -errno;
            ERR_clear_error();
            break;
        }
        if (n == 0)
            break;
        if (errno == EINTR)
            continue;
        rc = -errno;
    }
    s->wall = eval_now_s() - t0;
    getrusage(RUSAGE_SELF, &r1);
    have_snaps = have_snaps && eval_snap_take(&snap1) == 0;
    s->busy = have_snaps ? core_busy_between(&snap0, &snap1, o->cpu) : 0;
    s->daemon = daemon_cpu(o->daemon_pid) - dc0;
    s->user = eval_tv_s(r1.ru_utime) - eval_tv_s(r0.ru_utime);
    s->sys = eval_tv_s(r1.ru_stime) - eval_tv_s(r0.ru_stime);
    s->bytes = off;
    if (sc == S_DEV) {
        uint64_t d1[N_DEV];
        dev_read(o->ctl, d1);
        for (size_t i = 0; i < N_DEV; i++)
            s->dev[i] = d1[i] - d0[i];
    }
    SSL_free(ssl);
    if (sc == S_SW || sc == S_DEV)
        tlsnic_close(fd); /* the device lets go of the flow; counters final */
    else
        close(fd);
    for (size_t i = 0; i < N_HOST; i++)
        s->host[i] = tlsnic_stat_get(host_counters[i]) - h0[i];
    s->ok = rc == 0 && ok && off == total;
    return rc;
}

static void write_json(const struct recv_opts *o, const struct sample *s)
{
    FILE *f = o->json ? fopen(o->json, "ae") : NULL;
    FILE *out = f ? f : stdout;
    fprintf(out, "{\"dir\":\"rx\",\"scenario\":\"%s\",\"rec\":%zu,\"bytes\":%" PRIu64
                 ",\"wall_s\":%.6f,\"user_s\":%.6f,\"sys_s\":%.6f,\"core_busy_s\":%.6f,"
                 "\"daemon_s\":%.6f,\"mode\":\"%s\",\"ok\":%d",
            scen_names[s->sc], s->rec, s->bytes, s->wall, s->user, s->sys, s->busy, s->daemon,
            s->mode, s->ok);
    for (int i = 0; i < o->n_labels; i++) {
        const char *eq = strchr(o->labels[i], '=');
        if (eq)
            fprintf(out, ",\"%.*s\":\"%s\"", (int)(eq - o->labels[i]), o->labels[i], eq + 1);
    }
    fprintf(out, ",\"dev\":{");
    for (size_t i = 0; i < N_DEV; i++)
        fprintf(out, "%s\"%s\":%" PRIu64, i ? "," : "", dev_counters[i], s->dev[i]);
    fprintf(out, "},\"host\":{");
    for (size_t i = 0; i < N_HOST; i++)
        fprintf(out, "%s\"%s\":%" PRIu64, i ? "," : "", tlsnic_stat_name(host_counters[i]), s->host[i]);
    fprintf(out, "}}\n");
    if (f)
        fclose(f);
}

static int parse_list(const char *s, size_t *out, size_t cap)
{
    size_t n = 0;
    for (const char *p = s; *p && n < cap;) {
        out[n++] = strtoul(p, NULL, 10);
        p = strchr(p, ',');
        if (!p)
            break;
        p++;
    }
    return (int)n;
}

static int do_recv(int argc, char **argv)
{
    struct recv_opts o = {.port = 5301, .version = TLS1_2_VERSION, .cipher = TLS_CIPHER_AES_GCM_128,
                          .cpu = -1};
    int scen[N_SCEN] = {1, 1, 1, 1};
    size_t sizes[MAX_SIZES] = {1457, 16384};
    int n_sizes = 2;
    long mb = 100, rounds = 3;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            return 2;
        i++;
        if (!strcmp(a, "--addr")) o.addr = v;
        else if (!strcmp(a, "--port")) o.port = atoi(v);
        else if (!strcmp(a, "--ctl")) o.ctl = v;
        else if (!strcmp(a, "--json")) o.json = v;
        else if (!strcmp(a, "--cc")) o.cc = v;
        else if (!strcmp(a, "--daemon-pid")) o.daemon_pid = atoi(v);
        else if (!strcmp(a, "--cpu")) o.cpu = atoi(v);
        else if (!strcmp(a, "--rate")) o.rate_mbit = (uint32_t)atol(v);
        else if (!strcmp(a, "--mb")) mb = atol(v);
        else if (!strcmp(a, "--rounds")) rounds = atol(v);
        else if (!strcmp(a, "--sizes")) n_sizes = parse_list(v, sizes, MAX_SIZES);
        else if (!strcmp(a, "--version")) o.version = !strcmp(v, "1.3") ? TLS1_3_VERSION : TLS1_2_VERSION;
        else if (!strcmp(a, "--cipher"))
            o.cipher = !strcmp(v, "aes256") ? TLS_CIPHER_AES_GCM_256
                       : !strcmp(v, "chacha") ? TLS_CIPHER_CHACHA20_POLY1305 : TLS_CIPHER_AES_GCM_128;
        else if (!strcmp(a, "--label") && o.n_labels < MAX_LABELS) o.labels[o.n_labels++] = v;
        else if (!strcmp(a, "--timeout")) continue; /* main's */
        else if (!strcmp(a, "--scenarios")) {
            for (int k = 0; k < N_SCEN; k++)
                scen[k] = strstr(v, scen_names[k]) != NULL;
        } else
            return 2;
    }
    if (!o.addr || n_sizes <= 0 || mb <= 0 || rounds <= 0)
        return 2;
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    const char *suite = suite_name(o.version, o.cipher);
    if (!ctx || !SSL_CTX_set_min_proto_version(ctx, o.version) ||
        !SSL_CTX_set_max_proto_version(ctx, o.version) ||
        !(o.version == TLS1_3_VERSION ? SSL_CTX_set_ciphersuites(ctx, suite)
                                      : SSL_CTX_set_cipher_list(ctx, suite)) ||
        tlsnic_keyexport_enable(ctx) < 0)
        return 1;
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_read_ahead(ctx, 0); /* no record bytes into libssl that belong to tlsnic */
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
    if (scen[S_DEV]) {
        int rc = o.ctl ? tlsnic_ctl_client_open(o.ctl, 2000, &client) : -ENOENT;
        if (rc < 0) {
            fprintf(stderr, "bench_rx: no tlsnicd at %s: %s\n", o.ctl ? o.ctl : "-", strerror(-rc));
            return 1;
        }
        rx_ops = *client->ops;
        rx_ops.caps |= TLSNIC_DEV_CAP_RX; /* the RX status in shared memory (the binding's store) */
        client_add = client->ops->add;
        rx_ops.add = rx_only_add;
        rx_dev = (struct tlsnic_dev){.ops = &rx_ops, .priv = client->priv};
    }
    int failed = 0;
    uint64_t total = (uint64_t)mb * 1000000;
    for (long r = 0; r < rounds; r++) {
        for (int z = 0; z < n_sizes; z++) {
            for (int k = 0; k < N_SCEN; k++) {
                enum scenario sc = (enum scenario)((k + r) % N_SCEN);
                if (!scen[sc])
                    continue;
                struct sample s;
                int rc = run_sample(ctx, &o, sc, sizes[z], total, &s);
                write_json(&o, &s);
                fprintf(stderr, "  rx %-3s %5zu B: %6.0f Mbit/s, receiver %.3f s/GB (core %.3f s/GB)%s%s\n",
                        scen_names[sc], sizes[z], s.wall > 0 ? (double)s.bytes * 8 / s.wall / 1e6 : 0,
                        s.bytes ? (s.user + s.sys) / ((double)s.bytes / 1e9) : 0,
                        s.bytes ? s.busy / ((double)s.bytes / 1e9) : 0, s.ok ? "" : " FAILED: ",
                        s.ok ? "" : (rc < 0 ? strerror(-rc) : "bytes differ"));
                failed |= !s.ok;
            }
        }
    }
    if (client)
        tlsnic_ctl_client_close(client);
    SSL_CTX_free(ctx);
    return failed;
}

int main(int argc, char **argv)
{
    for (size_t i = 0; i < sizeof(pattern); i++)
        pattern[i] = (uint8_t)(i % PERIOD);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGTERM, on_stop);
    signal(SIGINT, on_stop);
    long timeout = 7200;
    for (int i = 1; i + 1 < argc; i++)
        if (!strcmp(argv[i], "--timeout"))
            timeout = atol(argv[i + 1]);
    alarm((unsigned)timeout);
    if (argc >= 2 && !strcmp(argv[1], "serve")) {
        const char *addr = NULL;
        int port = 5301;
        for (int i = 2; i + 1 < argc; i += 2) {
            if (!strcmp(argv[i], "--addr"))
                addr = argv[i + 1];
            else if (!strcmp(argv[i], "--port"))
                port = atoi(argv[i + 1]);
        }
        return addr ? do_serve(addr, port) : 2;
    }
    if (argc >= 2 && !strcmp(argv[1], "recv")) {
        int rc = do_recv(argc, argv);
        if (rc == 2)
            fprintf(stderr, "usage: bench_rx recv --addr A [--port P] [--scenarios ...] [--sizes ...]\n");
        return rc;
    }
    fprintf(stderr, "usage: bench_rx serve|recv ... (see the comment at the top of bench_rx.c)\n");
    return 2;
}
