/*
 * bench_eval: the sender and the receiver of `tlsnic bench` (scripts/bench.sh runs them in
 * the namespaces it makes, with tlsnicd between them).
 *
 *   bench_eval recv --addr A --port P [--verify] [--version 1.2|1.3] [--cipher C] [--max-conns N]
 *       In the peer namespace. Listens on P (plain TCP), P+1 (NULL records), P+2 (TLS:
 *       a real OpenSSL handshake first, with a self-signed P-256 certificate made at
 *       start). Serves one connection at a time until SIGTERM or N connections. Without
 *       --verify it discards what arrives (it does not decrypt, as in the paper, so it is
 *       not the bottleneck); with --verify it checks every byte: plain content on P, NULL
 *       records parsed on P+1 (--version, --cipher say their layout), SSL_read on P+2 (so the
 *       bytes of ssl, sw and dev are proven valid TLS by a stack tlsnic did not write).
 *       Prints one line per connection: "conn KIND bytes N ok 1|0".
 *
 *   bench_eval send --addr A --port P [--scenarios tcp,ssl,sw,dev,null,evp]
 *       [--sizes 1457,4096,16384] [--mb N] [--rounds N] [--version 1.2|1.3]
 *       [--cipher aes128|aes256|chacha] [--ctl PATH] [--daemon-pid PID]
 *       [--json FILE] [--label K=V]... [--progress] [--io-timeout S] [--rate MBIT] [--pace app|tcp]
 *       [--cc NAME] [--seconds S] [--host-cpu N] [--device-cpu N] [--recv-pid PID]
 *       [--background S]
 *       In the host namespace. Runs rounds x sizes x scenarios, one connection each, the
 *       scenario order rotated every round so that drift hits all alike:
 *         tcp   write(2) of plaintext;
 *         ssl   SSL_write after a real handshake with the receiver (libssl's record layer);
 *         sw    tlsnic software mode (tlsnic_send; keys exported from the same handshake);
 *         dev   tlsnic device mode: the daemon at --ctl encrypts inline (tlsnic_sock_set_offload
 *               with the control-channel client, records kept in a shared-memory store the
 *               daemon maps, as src/host/attach.c does; the socket's mode is checked);
 *         null  the NULL-cipher floor: records framed by tlsnic's device-mode path for a
 *               device that does nothing (no crypto anywhere; tlsnicd only forwards);
 *         evp   no network: raw EVP AEAD sealing of the same bytes in the same record
 *               sizes, in this process (what the device's crypto is judged against).
 *       Each sample is one JSON object per line appended to --json: wall time from the first
 *       write to the receiver's EOF; over that window, everything the host's core did
 *       (--host-cpu: busy time, its tick-sampled split, the packets its network receive
 *       processing handled and the RPS interrupts it took; see eval_cpu.h) and the same for
 *       the device's core (--device-cpu: tlsnicd, the peer's stack, the receiver); the
 *       sender's own CPU (exact, and getrusage's user / system split), tlsnicd's
 *       (/proc/PID/stat and schedstat) and the receiver's (--recv-pid); TCP_INFO
 *       retransmissions and segment counts; the deltas of tlsnicd's device counters.
 *       --seconds makes every sample last at least S seconds (the bytes sent are then what
 *       fit; --mb caps them); raw EVP runs that long too. --background S measures, before
 *       the scenarios of each round and size, S seconds in which nothing of the bench runs:
 *       the busy share of both cores that is not ours (bg_host, bg_dev in each sample).
 *       --label adds fixed fields (loss, resync configuration) to every sample. --rate paces every connection to MBIT Mbit/s,
 *       so that all scenarios run at one throughput: by default the sender itself (--pace
 *       app: it writes until it is 1 ms ahead of the rate's schedule, then sleeps to it, so
 *       TCP sends 1 ms bursts as a server answering requests does); --pace tcp uses
 *       SO_MAX_PACING_RATE instead, TCP's own pacing, one high-resolution timer per packet
 *       without an fq qdisc: in a VM its cost is large and erratic (samples of one scenario
 *       spread 0.9-7 s/GB, softirq and timer interrupts swamping the TLS work). --cc sets the
 *       congestion control of every connection (TCP_CONGESTION before connect; root may pick
 *       any the kernel has). Why it matters: BBR paces inside TCP when there is no fq qdisc,
 *       arming a high-resolution timer for nearly every packet; in a VM each one is a timer
 *       exit and an interrupt, which costs the sender more than the TLS work under test, and
 *       more for scenarios that send smaller packets. scripts/bench.sh passes cubic (the
 *       paper's kernel default); --cc "" keeps the system's default. --notsent-lowat sets
 *       TCP_NOTSENT_LOWAT on every connection (unsent data the socket keeps).
 *
 * Every run is bounded: socket timeouts (--io-timeout, 30 s), and alarm() over the whole
 * program (--timeout).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "eval.h"
#include "eval_cpu.h"
#include "eval_net.h"
#include "tlsnic/attach.h"
#include "tlsnic/ctl_client.h"
#include "tlsnic/keyexport.h"
#include "tlsnic/ktls.h"
#include "tlsnic/nic.h"

#define PORT_TCP 0
#define PORT_NULL 1
#define PORT_TLS 2
#define N_PORTS 3
#define IO_TIMEOUT_S_DEFAULT 30
#define PATTERN_PERIOD 251 /* content byte at stream offset o is o % 251 */
#define MAX_REC 16384
#define TAG_LEN 16
#define MAX_SIZES 8
#define MAX_LABELS 8
#define STATS_CAP 16384
#define FLUSH_MAX_TRIES 5000
#define TIME_BOUND_CAP 1000000000000ull /* bytes: a time-bound sample never gets there */

enum scenario { S_TCP, S_SSL, S_SW, S_DEV, S_NULL, S_EVP, N_SCENARIOS };
static const char *const scenario_names[N_SCENARIOS] = {"tcp", "ssl", "sw", "dev", "null", "evp"};

/* Device counters whose deltas each sample carries (names as tlsnicd stats prints them). */
static const char *const dev_counters[] = {
    "tx_tls_encrypted_bytes", "tx_tls_encrypted_packets", "tx_tls_ooo",
    "tx_tls_ooo_ckpt", "tx_tls_ooo_crypto_bytes", "tx_tls_resync_bytes",
    "tx_tls_dump_packets", "tx_tls_dump_bytes", "tx_tls_drop_no_sync_data",
    "tx_tls_drop_bad_frame", "to_wire_hook_ns", "to_host_hook_ns",
};
#define N_DEV_COUNTERS (sizeof(dev_counters) / sizeof(dev_counters[0]))

static uint8_t pattern[MAX_REC + PATTERN_PERIOD];

static void pattern_init(void)
{
    for (size_t i = 0; i < sizeof(pattern); i++)
        pattern[i] = (uint8_t)(i % PATTERN_PERIOD);
}

static long io_timeout_s = IO_TIMEOUT_S_DEFAULT;

/* ------------------------------------------------------------------------------------------ */
/* TLS contexts.                                                                              */

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

/* The receiver's context: any of the offloadable suites, TLS 1.2 or 1.3, no tickets. */
static SSL_CTX *server_ctx_new(void)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *cert = X509_new();
    X509_NAME *name = X509_NAME_new();
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    int ok = key != NULL && cert != NULL && name != NULL && ctx != NULL &&
             X509_set_version(cert, X509_VERSION_3) &&
             ASN1_INTEGER_set(X509_get_serialNumber(cert), 1) &&
             X509_gmtime_adj(X509_getm_notBefore(cert), -60) &&
             X509_gmtime_adj(X509_getm_notAfter(cert), 86400) &&
             X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                        (const unsigned char *)"tlsnic-bench", -1, -1, 0) &&
             X509_set_subject_name(cert, name) && X509_set_issuer_name(cert, name) &&
             X509_set_pubkey(cert, key) && X509_sign(cert, key, EVP_sha256()) > 0 &&
             SSL_CTX_use_certificate(ctx, cert) && SSL_CTX_use_PrivateKey(ctx, key) &&
             SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) &&
             SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) &&
             SSL_CTX_set_cipher_list(ctx, "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-"
                                          "SHA384:ECDHE-ECDSA-CHACHA20-POLY1305") &&
             SSL_CTX_set_ciphersuites(ctx, "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:"
                                           "TLS_CHACHA20_POLY1305_SHA256") &&
             SSL_CTX_set_num_tickets(ctx, 0);
    X509_NAME_free(name);
    X509_free(cert);
    EVP_PKEY_free(key);
    if (!ok) {
        ERR_print_errors_fp(stderr);
        SSL_CTX_free(ctx);
        return NULL;
    }
    /* The sender ends with a TCP FIN, not close_notify (kTLS senders may do the same). */
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
    return ctx;
}

/* The sender's context: exactly one version and suite; keys exportable for tlsnic. */
static SSL_CTX *client_ctx_new(int version, uint16_t cipher)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    const char *suite = suite_name(version, cipher);
    if (ctx == NULL || !SSL_CTX_set_min_proto_version(ctx, version) ||
        !SSL_CTX_set_max_proto_version(ctx, version) ||
        !(version == TLS1_3_VERSION ? SSL_CTX_set_ciphersuites(ctx, suite)
                                    : SSL_CTX_set_cipher_list(ctx, suite)) ||
        tlsnic_keyexport_enable(ctx) < 0) {
        ERR_print_errors_fp(stderr);
        SSL_CTX_free(ctx);
        return NULL;
    }
    /* The receiver's certificate is made up at its start: the handshake is real (ECDHE,
     * Finished), the identity is not what is measured. */
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    return ctx;
}

/* ------------------------------------------------------------------------------------------ */
/* Receiver.                                                                                  */

static volatile sig_atomic_t stop_requested;

static void on_stop(int sig)
{
    (void)sig;
    stop_requested = 1;
}

/* Checks n content bytes at stream offset *off against the pattern. */
static int pattern_ok(const uint8_t *p, size_t n, uint64_t *off)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != (uint8_t)((*off + i) % PATTERN_PERIOD))
            return 0;
    *off += n;
    return 1;
}

static int recv_discard(int fd, uint64_t *bytes)
{
    static uint8_t buf[1 << 18];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            return 0;
        *bytes += (uint64_t)n;
    }
}

static int recv_plain_verify(int fd, uint64_t *bytes)
{
    static uint8_t buf[1 << 16];
    int ok = 1;
    for (;;) {
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            return ok ? 0 : -EBADMSG;
        uint64_t at = *bytes;
        ok &= pattern_ok(buf, (size_t)n, &at);
        *bytes = at;
    }
}

/* NULL records: header | (TLS 1.2 AES-GCM: 8-byte explicit nonce) | content | (1.3: inner
 * type) | tag room. */
static int recv_null_verify(int fd, int version, uint16_t cipher, uint64_t *bytes)
{
    static uint8_t buf[2 * (5 + 8 + MAX_REC + 1 + TAG_LEN)];
    size_t have = 0;
    int ok = 1;
    size_t pre = version == TLS1_3_VERSION || cipher == TLS_CIPHER_CHACHA20_POLY1305 ? 0 : 8;
    size_t post = (version == TLS1_3_VERSION) + TAG_LEN;
    for (;;) {
        ssize_t n = read(fd, buf + have, sizeof(buf) - have);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        have += (size_t)n;
        size_t at = 0;
        while (have - at >= 5) {
            size_t len = (size_t)buf[at + 3] << 8 | buf[at + 4];
            if (buf[at] != 23 || buf[at + 1] != 3 || buf[at + 2] != 3 || len < pre + post ||
                len > pre + MAX_REC + post)
                return -EBADMSG; /* not a record: the stream cannot be parsed on */
            if (have - at < 5 + len)
                break;
            const uint8_t *content = buf + at + 5 + pre;
            size_t clen = len - pre - post;
            uint64_t off = *bytes;
            ok &= pattern_ok(content, clen, &off);
            if (version == TLS1_3_VERSION)
                ok &= content[clen] == 23;
            *bytes = off;
            at += 5 + len;
        }
        memmove(buf, buf + at, have - at);
        have -= at;
        if (n == 0)
            return ok && have == 0 ? 0 : -EBADMSG;
    }
}

static int recv_tls(SSL_CTX *ctx, int fd, int verify, uint64_t *bytes)
{
    SSL *ssl = SSL_new(ctx);
    if (ssl == NULL || !SSL_set_fd(ssl, fd) || SSL_accept(ssl) != 1) {
        ERR_print_errors_fp(stderr);
        SSL_free(ssl);
        return -EPROTO;
    }
    int rc = 0;
    if (!verify) {
        rc = recv_discard(fd, bytes);
    } else {
        static uint8_t buf[MAX_REC];
        int ok = 1;
        for (;;) {
            int n = SSL_read(ssl, buf, sizeof(buf));
            if (n <= 0) {
                int e = SSL_get_error(ssl, n);
                if (e != SSL_ERROR_ZERO_RETURN) {
                    /* With SSL_OP_IGNORE_UNEXPECTED_EOF a bare FIN is ZERO_RETURN; anything
                     * else (bad tag, bad record) is a failure. */
                    ERR_print_errors_fp(stderr);
                    ok = 0;
                }
                break;
            }
            uint64_t off = *bytes;
            ok &= pattern_ok(buf, (size_t)n, &off);
            *bytes = off;
        }
        rc = ok ? 0 : -EBADMSG;
    }
    SSL_free(ssl);
    return rc;
}

static int do_recv(const char *addr, int port, int verify, int version, uint16_t cipher,
                   long max_conns)
{
    static const char *const kinds[N_PORTS] = {"tcp", "null", "tls"};
    SSL_CTX *ctx = server_ctx_new();
    if (ctx == NULL)
        return 1;
    struct pollfd pfd[N_PORTS];
    for (int k = 0; k < N_PORTS; k++) {
        struct addrinfo *ai;
        if (eval_resolve(addr, port + k, 1, &ai) < 0)
            return 1;
        int ls = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int one = 1;
        if (ls < 0 || setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
            bind(ls, ai->ai_addr, ai->ai_addrlen) < 0 || listen(ls, 4) < 0) {
            perror("bench_eval recv: listen");
            return 1;
        }
        freeaddrinfo(ai);
        pfd[k] = (struct pollfd){.fd = ls, .events = POLLIN};
    }
    fprintf(stderr, "listening\n");
    int failed = 0;
    for (long served = 0; !stop_requested && (max_conns <= 0 || served < max_conns);) {
        int r = poll(pfd, N_PORTS, 500);
        if (r < 0 && errno != EINTR) {
            perror("bench_eval recv: poll");
            return 1;
        }
        for (int k = 0; k < N_PORTS && r > 0; k++) {
            if (!(pfd[k].revents & POLLIN))
                continue;
            int fd = accept4(pfd[k].fd, NULL, NULL, SOCK_CLOEXEC);
            if (fd < 0)
                continue;
            uint64_t bytes = 0;
            int rc = eval_set_timeouts(fd, io_timeout_s);
            if (rc == 0) {
                if (k == PORT_TLS)
                    rc = recv_tls(ctx, fd, verify, &bytes);
                else if (!verify)
                    rc = recv_discard(fd, &bytes);
                else if (k == PORT_TCP)
                    rc = recv_plain_verify(fd, &bytes);
                else
                    rc = recv_null_verify(fd, version, cipher, &bytes);
            }
            close(fd);
            served++;
            failed |= rc < 0;
            printf("conn %s bytes %" PRIu64 " ok %d\n", kinds[k], bytes, rc == 0);
            fflush(stdout);
        }
    }
    SSL_CTX_free(ctx);
    return failed;
}

/* ------------------------------------------------------------------------------------------ */
/* Sender.                                                                                    */

struct send_opts {
    const char *addr;
    int port;
    int version;
    uint16_t cipher;
    const char *ctl;
    int daemon_pid;
    int recv_pid;     /* the receiver (peer namespace), for its CPU time; 0: unknown */
    int host_cpu;     /* the host's core (the sender is pinned there), -1: not accounted */
    int device_cpu;   /* the device's core (tlsnicd, the peer and its receiver), -1: none */
    double seconds;   /* > 0: each sample sends for at least this long (bytes: a cap) */
    double bg_s;      /* > 0: a window this long with nothing of ours running, per group */
    const char *json;
    double rate_mbit; /* > 0: every connection paced to this rate */
    int pace_tcp;     /* pacing by SO_MAX_PACING_RATE (1) or by the sender's own sleeps (0) */
    const char *cc;   /* TCP_CONGESTION of every connection; NULL or "": the default */
    int notsent_lowat; /* > 0: TCP_NOTSENT_LOWAT of every connection */
    const char *labels[MAX_LABELS];
    int n_labels;
    int progress;
};

struct sample {
    enum scenario sc;
    size_t rec;
    uint64_t bytes;
    double wall_s, user_s, sys_s;
    double proc_s;     /* the sender's CPU time (CLOCK_PROCESS_CPUTIME_ID: exact, not ticks) */
    double dev_cpu_s, dev_user_s, dev_sys_s;
    double recv_cpu_s; /* the receiver's CPU time (schedstat) */
    struct eval_core host, devcore; /* the two cores over the window (eval_cpu.h) */
    int have_cores;
    double bg_host, bg_dev; /* busy share of each core with nothing of ours running */
    struct eval_retrans rt;
    int64_t dev_delta[N_DEV_COUNTERS];
    int have_dev_counters;
    char mode[64];
    int ok;
};

/* tlsnicd's CPU: user and system ticks (/proc/PID/stat), total ns (schedstat, finer). */
struct daemon_cpu {
    double user_s, sys_s, total_s;
};

static int daemon_cpu_read(int pid, struct daemon_cpu *out)
{
    memset(out, 0, sizeof(*out));
    if (pid <= 0)
        return -ENOENT;
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    FILE *f = fopen(path, "re");
    if (f == NULL)
        return -errno;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')'); /* comm may hold spaces */
    unsigned long long ut = 0, st = 0;
    if (p == NULL || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut,
                            &st) != 2)
        return -EINVAL;
    double hz = (double)sysconf(_SC_CLK_TCK);
    out->user_s = (double)ut / hz;
    out->sys_s = (double)st / hz;
    snprintf(path, sizeof(path), "/proc/%d/schedstat", pid);
    f = fopen(path, "re");
    unsigned long long ns = 0;
    if (f != NULL) {
        if (fscanf(f, "%llu", &ns) == 1)
            out->total_s = (double)ns * 1e-9;
        fclose(f);
    }
    if (out->total_s == 0)
        out->total_s = out->user_s + out->sys_s;
    return 0;
}

static int dev_counters_read(const char *ctl, uint64_t *vals)
{
    static char text[STATS_CAP];
    if (ctl == NULL)
        return -ENOENT;
    int n = tlsnic_ctl_query_stats(ctl, text, sizeof(text));
    if (n < 0)
        return n;
    memset(vals, 0, N_DEV_COUNTERS * sizeof(*vals));
    /* "name value" lines; at most one pass over the text (bounded by its length). */
    for (const char *line = text; *line != '\0';) {
        for (size_t i = 0; i < N_DEV_COUNTERS; i++) {
            size_t kl = strlen(dev_counters[i]);
            if (strncmp(line, dev_counters[i], kl) == 0 && line[kl] == ' ')
                vals[i] = strtoull(line + kl + 1, NULL, 10);
        }
        const char *nl = strchr(line, '\n');
        if (nl == NULL)
            break;
        line = nl + 1;
    }
    return 0;
}

/* Made-up keys of the configured suite, for the NULL floor (nothing is encrypted). */
static size_t null_crypto_info(int version, uint16_t cipher, union tlsnic_crypto_info *ci)
{
    memset(ci, 0, sizeof(*ci));
    ci->info.version = version == TLS1_3_VERSION ? TLS_1_3_VERSION : TLS_1_2_VERSION;
    ci->info.cipher_type = cipher;
    switch (cipher) {
    case TLS_CIPHER_AES_GCM_256: return sizeof(ci->aes_gcm_256);
    case TLS_CIPHER_CHACHA20_POLY1305: return sizeof(ci->chacha20_poly1305);
    default: return sizeof(ci->aes_gcm_128);
    }
}

static struct tlsnic_dev *daemon_dev;

/*
 * The record store of device-mode sockets (dev, null): shared memory the daemon
 * maps read-only, set up as src/host/attach.c does for its own device (tlsnic_attach_shm_store_ops),
 * so tlsnicd can resync from the host store when its checkpoints cannot serve.
 */
static uint32_t store_slots = TLSNIC_ATTACH_DEFAULT_SLOTS;


/* Connects and sets the scenario up; returns the fd (and *ssl for TLS), or -errno. */
static int connect_scenario(const struct send_opts *o, SSL_CTX *cctx, enum scenario sc, SSL **ssl,
                            char *mode, size_t mode_cap)
{
    int port = o->port + (sc == S_TCP ? PORT_TCP : sc == S_NULL ? PORT_NULL : PORT_TLS);
    struct addrinfo *ai;
    int rc = eval_resolve(o->addr, port, 0, &ai);
    if (rc < 0)
        return rc;
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    /* Before connect: a congestion control chosen later keeps what the first one set up
     * (BBR's pacing stays on). */
    int cc_failed = fd >= 0 && o->cc != NULL && o->cc[0] != '\0' &&
                    setsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, o->cc, (socklen_t)strlen(o->cc)) < 0;
    if (fd < 0 || cc_failed || eval_set_timeouts(fd, io_timeout_s) < 0 ||
        connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
        rc = -errno;
        if (cc_failed)
            fprintf(stderr, "bench_eval: congestion control %s: %s\n", o->cc, strerror(-rc));
        freeaddrinfo(ai);
        if (fd >= 0)
            close(fd);
        return rc;
    }
    freeaddrinfo(ai);
    if (o->notsent_lowat > 0 && setsockopt(fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &o->notsent_lowat,
                                           sizeof(o->notsent_lowat)) < 0) {
        rc = -errno;
        close(fd);
        return rc;
    }
    if (o->rate_mbit > 0 && o->pace_tcp) {
        /* TCP's own pacing (no fq needed since Linux 4.13): every scenario at one rate. */
        unsigned long long rate = (unsigned long long)(o->rate_mbit * 1e6 / 8);
        if (setsockopt(fd, SOL_SOCKET, SO_MAX_PACING_RATE, &rate, sizeof(rate)) < 0) {
            rc = -errno;
            close(fd);
            return rc;
        }
    }
    snprintf(mode, mode_cap, "%s", sc == S_TCP ? "plain" : sc == S_SSL ? "libssl" : "?");
    int is_dev = sc == S_DEV;
    if (sc == S_SSL || sc == S_SW || is_dev) {
        *ssl = SSL_new(cctx);
        if (*ssl == NULL || !SSL_set_fd(*ssl, fd) || SSL_connect(*ssl) != 1) {
            ERR_print_errors_fp(stderr);
            SSL_free(*ssl);
            *ssl = NULL;
            close(fd);
            return -EPROTO;
        }
    }
    if (sc == S_SW || is_dev || sc == S_NULL) {
        union tlsnic_crypto_info ci;
        size_t len = 0;
        if (sc == S_NULL)
            len = null_crypto_info(o->version, o->cipher, &ci);
        else if ((rc = tlsnic_keyexport(*ssl, 1, &ci, &len)) < 0)
            goto fail;
        /* Each socket bound to its scenario's device, with the record store tlsnicd maps. */
        struct tlsnic_offload off = {.dev = sc == S_NULL ? tlsnic_null_dev() : daemon_dev,
                                     .store_ops = &tlsnic_attach_shm_store_ops,
                                     .store_ctx = &store_slots};
        if (tlsnic_setsockopt(fd, SOL_TCP, TCP_ULP, "tls", 4) < 0 ||
            tlsnic_sock_set_offload(fd, sc == S_SW ? NULL : &off) < 0 ||
            tlsnic_setsockopt(fd, SOL_TLS, TLS_TX, &ci, (socklen_t)len) < 0) {
            rc = -errno;
            goto fail;
        }
        struct tlsnic_mode_info mi;
        if (tlsnic_get_mode(fd, TLSNIC_DIR_TX, &mi) < 0) {
            rc = -errno;
            goto fail;
        }
        snprintf(mode, mode_cap, "%s%s%s", tlsnic_mode_name(mi.mode),
                 mi.mode == TLSNIC_MODE_SW ? ":" : "",
                 mi.mode == TLSNIC_MODE_SW ? tlsnic_sw_reason_name(mi.reason) : "");
        enum tlsnic_mode want = sc == S_SW ? TLSNIC_MODE_SW : TLSNIC_MODE_DEVICE;
        if (mi.mode != want) {
            fprintf(stderr, "bench_eval: %s: socket is in mode %s, not %s\n", scenario_names[sc],
                    mode, tlsnic_mode_name(want));
            rc = -EOPNOTSUPP;
            goto fail;
        }
    }
    return fd;
fail:
    SSL_free(*ssl);
    *ssl = NULL;
    if (tlsnic_is_tls(fd))
        tlsnic_close(fd);
    else
        close(fd);
    return rc < 0 ? rc : -EPROTO;
}

/* Writes all of buf[0..len) in one record / one write call's worth. */
static int send_chunk(enum scenario sc, int fd, SSL *ssl, const uint8_t *buf, size_t len)
{
    size_t done = 0;
    for (int tries = 0; done < len && tries < 1000; tries++) {
        ssize_t n;
        if (sc == S_TCP)
            n = write(fd, buf + done, len - done);
        else if (sc == S_SSL)
            n = SSL_write(ssl, buf + done, (int)(len - done));
        else
            n = tlsnic_send(fd, buf + done, len - done, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n < 0 ? -errno : -EIO;
        done += (size_t)n;
    }
    return done == len ? 0 : -EIO;
}

static double process_cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* CPU time of a process from its schedstat (ns, exact), 0 if unknown. */
static double pid_cpu_s(int pid)
{
    char path[64];
    unsigned long long ns = 0;
    if (pid <= 0)
        return 0;
    snprintf(path, sizeof(path), "/proc/%d/schedstat", pid);
    FILE *f = fopen(path, "re");
    if (f == NULL)
        return 0;
    if (fscanf(f, "%llu", &ns) != 1)
        ns = 0;
    fclose(f);
    return (double)ns * 1e-9;
}

/*
 * The measurement window of one sample: opened right before the first byte is written,
 * closed once the receiver has everything. Everything the host's core and the device's
 * core did in between is counted (eval_cpu.h), along with the sender's own CPU (exact and
 * getrusage's tick-sampled split), tlsnicd's and the receiver's.
 */
struct window {
    struct eval_snap snap;
    struct rusage ru;
    struct daemon_cpu daemon;
    int have_daemon, have_snap;
    double proc_s, recv_s, t;
};

static void window_mark(const struct send_opts *o, struct window *w, int closing)
{
    /* Closing: the clock first, then what is read about it; opening: the reverse, so the
     * reads themselves stay outside the window as far as possible. */
    if (closing)
        w->t = eval_now_s();
    w->recv_s = pid_cpu_s(o->recv_pid);
    w->have_daemon = daemon_cpu_read(o->daemon_pid, &w->daemon) == 0;
    w->have_snap = o->host_cpu >= 0 && eval_snap_take(&w->snap) == 0;
    getrusage(RUSAGE_SELF, &w->ru);
    w->proc_s = process_cpu_s();
    if (!closing)
        w->t = eval_now_s();
}

static void window_fill(const struct send_opts *o, const struct window *a, const struct window *b,
                        struct sample *s)
{
    s->wall_s = b->t - a->t;
    s->user_s = eval_tv_s(b->ru.ru_utime) - eval_tv_s(a->ru.ru_utime);
    s->sys_s = eval_tv_s(b->ru.ru_stime) - eval_tv_s(a->ru.ru_stime);
    s->proc_s = b->proc_s - a->proc_s;
    s->recv_cpu_s = b->recv_s - a->recv_s;
    if (a->have_daemon && b->have_daemon) {
        s->dev_user_s = b->daemon.user_s - a->daemon.user_s;
        s->dev_sys_s = b->daemon.sys_s - a->daemon.sys_s;
        s->dev_cpu_s = b->daemon.total_s - a->daemon.total_s;
    }
    s->have_cores = a->have_snap && b->have_snap &&
                    eval_core_between(&a->snap, &b->snap, o->host_cpu, &s->host) == 0;
    if (s->have_cores && o->device_cpu >= 0)
        (void)eval_core_between(&a->snap, &b->snap, o->device_cpu, &s->devcore);
}

/* Busy share of the host's and the device's cores over bg_s seconds in which nothing of
 * the bench runs (tlsnicd and the receiver wait): whatever else the machine does. */
static void background(const struct send_opts *o, double *host, double *dev)
{
    struct eval_snap a, b;
    struct eval_core h, d;
    *host = *dev = -1;
    if (o->host_cpu < 0 || o->bg_s <= 0 || eval_snap_take(&a) < 0)
        return;
    struct timespec nap = {.tv_sec = (time_t)o->bg_s,
                           .tv_nsec = (long)((o->bg_s - (double)(time_t)o->bg_s) * 1e9)};
    nanosleep(&nap, NULL);
    if (eval_snap_take(&b) < 0 || eval_core_between(&a, &b, o->host_cpu, &h) < 0)
        return;
    *host = h.wall_s > 0 ? h.busy_s / h.wall_s : -1;
    if (o->device_cpu >= 0 && eval_core_between(&a, &b, o->device_cpu, &d) == 0 && d.wall_s > 0)
        *dev = d.busy_s / d.wall_s;
}

/* Records between two looks at the clock in a time-bound sample (a vDSO call each). */
#define CLOCK_EVERY 32
/* Application pacing: the sender may run this far ahead of the rate's schedule before it
 * sleeps (one burst); 1 ms keeps wake-ups at 1 kHz. */
#define PACE_AHEAD_S 0.001

/* Sleeps until the schedule of rate_mbit catches up with sent bytes, if more than
 * PACE_AHEAD_S ahead of it. */
static void pace_to(double t_start, uint64_t sent, double rate_mbit)
{
    double due = t_start + (double)sent * 8 / (rate_mbit * 1e6);
    if (due - eval_now_s() <= PACE_AHEAD_S)
        return;
    struct timespec ts = {.tv_sec = (time_t)due, .tv_nsec = (long)((due - (double)(time_t)due) * 1e9)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
}

/* One network sample: connect, send bytes in records of rec (for at least o->seconds, if
 * set), wait for the receiver's EOF. */
static int run_net(const struct send_opts *o, SSL_CTX *cctx, struct sample *s)
{
    SSL *ssl = NULL;
    int fd = connect_scenario(o, cctx, s->sc, &ssl, s->mode, sizeof(s->mode));
    if (fd < 0) {
        fprintf(stderr, "bench_eval: %s setup: %s\n", scenario_names[s->sc], strerror(-fd));
        return fd;
    }
    uint64_t c0[N_DEV_COUNTERS], c1[N_DEV_COUNTERS];
    s->have_dev_counters = dev_counters_read(o->ctl, c0) == 0;
    struct window w0, w1;
    window_mark(o, &w0, 0);
    int rc = 0;
    uint64_t sent = 0, cap = s->bytes;
    int pace_app = o->rate_mbit > 0 && !o->pace_tcp;
    double t_start = eval_now_s();
    for (unsigned i = 1; sent < cap && rc == 0; i++) {
        size_t len = cap - sent < s->rec ? (size_t)(cap - sent) : s->rec;
        rc = send_chunk(s->sc, fd, ssl, pattern + sent % PATTERN_PERIOD, len);
        sent += len;
        if (pace_app)
            pace_to(t_start, sent, o->rate_mbit);
        if (o->seconds > 0 && i % CLOCK_EVERY == 0 && eval_now_s() - w0.t >= o->seconds)
            break;
    }
    s->bytes = sent;
    if (rc == 0 && tlsnic_is_tls(fd)) {
        int tries = 0;
        while (tlsnic_flush(fd) != 0 && tries++ < FLUSH_MAX_TRIES)
            usleep(1000);
    }
    /* All bytes are delivered when the receiver, having read to our FIN, closes. */
    if (rc == 0 && shutdown(fd, SHUT_WR) < 0)
        rc = -errno;
    while (rc == 0) {
        uint8_t sink[512];
        ssize_t n = read(fd, sink, sizeof(sink));
        if (n == 0)
            break;
        if (n < 0 && errno != EINTR)
            rc = -errno;
    }
    window_mark(o, &w1, 1);
    window_fill(o, &w0, &w1, s);
    eval_tcp_retrans(fd, &s->rt);
    if (s->have_dev_counters && dev_counters_read(o->ctl, c1) == 0) {
        for (size_t i = 0; i < N_DEV_COUNTERS; i++)
            s->dev_delta[i] = (int64_t)(c1[i] - c0[i]);
    } else {
        s->have_dev_counters = 0;
    }
    s->ok = rc == 0;
    if (rc < 0)
        fprintf(stderr, "bench_eval: %s rec %zu: %s\n", scenario_names[s->sc], s->rec, strerror(-rc));
    SSL_free(ssl); /* no close_notify: the receiver has gone already */
    if (tlsnic_is_tls(fd))
        tlsnic_close(fd);
    else
        close(fd);
    return rc;
}

static const char *evp_cipher_name(uint16_t cipher)
{
    return cipher == TLS_CIPHER_AES_GCM_256       ? "AES-256-GCM"
           : cipher == TLS_CIPHER_CHACHA20_POLY1305 ? "ChaCha20-Poly1305"
                                                    : "AES-128-GCM";
}

/* Raw EVP AEAD: seal the same bytes in records of rec (new nonce, 13-byte AAD, tag each). */
#define EVP_MIN_S 0.3
#define EVP_MAX_PASSES 4096
#define EVP_PASS_MAX (64u << 20) /* bytes per pass of a time-bound sample */

static int run_evp(const struct send_opts *o, struct sample *s)
{
    static uint8_t out[MAX_REC + TAG_LEN];
    uint8_t key[32] = {1}, nonce[12] = {2}, aad[13] = {23, 3, 3}, tag[TAG_LEN];
    /* The cheapest way through EVP, so the device is judged against libcrypto at its best:
     * a fetched cipher (a legacy EVP_aes_128_gcm() object is looked up again at every
     * init), the nonce through EVP_CipherInit_ex2, the tag through the params API. */
    EVP_CIPHER *ciph = EVP_CIPHER_fetch(NULL, evp_cipher_name(o->cipher), NULL);
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    if (ciph == NULL || c == NULL || EVP_CipherInit_ex2(c, ciph, key, NULL, 1, NULL) != 1) {
        EVP_CIPHER_free(ciph);
        EVP_CIPHER_CTX_free(c);
        return -ENOMEM;
    }
    snprintf(s->mode, sizeof(s->mode), "%s", EVP_CIPHER_get0_name(ciph));
    struct rusage r0, r1;
    getrusage(RUSAGE_SELF, &r0);
    double t0 = eval_now_s(), c0 = process_cpu_s();
    int ok = 1;
    /* Whole passes over the sample's bytes until the sample's time has gone by (a pass
     * over 150 MB takes ~30 ms here: too short to time against the machine's noise). */
    double min_s = o->seconds > 0 ? o->seconds : EVP_MIN_S;
    uint64_t total = 0, i = 0, pass_bytes = s->bytes < EVP_PASS_MAX ? s->bytes : EVP_PASS_MAX;
    double t1 = t0;
    for (int pass = 0; ok && pass < EVP_MAX_PASSES && (pass == 0 || t1 - t0 < min_s); pass++) {
        for (uint64_t done = 0; done < pass_bytes && ok; i++) {
            size_t len = pass_bytes - done < s->rec ? (size_t)(pass_bytes - done) : s->rec;
            memcpy(nonce + 4, &i, sizeof(i));
            int n = 0;
            OSSL_PARAM tag_param[2] = {
                OSSL_PARAM_construct_octet_string(OSSL_CIPHER_PARAM_AEAD_TAG, tag, TAG_LEN),
                OSSL_PARAM_construct_end()};
            ok = EVP_CipherInit_ex2(c, NULL, NULL, nonce, 1, NULL) == 1 &&
                 EVP_EncryptUpdate(c, NULL, &n, aad, sizeof(aad)) == 1 &&
                 EVP_EncryptUpdate(c, out, &n, pattern + done % PATTERN_PERIOD, (int)len) == 1 &&
                 EVP_EncryptFinal_ex(c, out + n, &n) == 1 &&
                 EVP_CIPHER_CTX_get_params(c, tag_param) == 1;
            done += len;
        }
        total += pass_bytes;
        t1 = eval_now_s();
    }
    s->bytes = total;
    s->proc_s = process_cpu_s() - c0;
    getrusage(RUSAGE_SELF, &r1);
    EVP_CIPHER_CTX_free(c);
    EVP_CIPHER_free(ciph);
    s->wall_s = t1 - t0;
    s->user_s = eval_tv_s(r1.ru_utime) - eval_tv_s(r0.ru_utime);
    s->sys_s = eval_tv_s(r1.ru_stime) - eval_tv_s(r0.ru_stime);
    s->ok = ok;
    return ok ? 0 : -EIO;
}

static const char *cipher_label(uint16_t cipher)
{
    return cipher == TLS_CIPHER_AES_GCM_256       ? "aes256gcm"
           : cipher == TLS_CIPHER_CHACHA20_POLY1305 ? "chacha20poly1305"
                                                    : "aes128gcm";
}

static void json_core(FILE *f, const char *name, int cpu, const struct eval_core *c)
{
    fprintf(f, ",\"%s\":{\"cpu\":%d,\"busy_s\":%.6f,\"wall_s\":%.6f,\"user_s\":%.3f,"
               "\"sys_s\":%.3f,\"irq_s\":%.3f,\"softirq_s\":%.3f,\"steal_s\":%.3f,"
               "\"packets\":%" PRIu64 ",\"rps_ipis\":%" PRIu64 ",\"precise\":%d}",
            name, cpu, c->busy_s, c->wall_s, c->user_s, c->sys_s, c->irq_s, c->softirq_s,
            c->steal_s, c->packets, c->rps_ipis, c->precise);
}

static void json_sample(FILE *f, const struct send_opts *o, const struct sample *s, int round)
{
    fprintf(f, "{\"scenario\":\"%s\",\"round\":%d,\"rec\":%zu,\"bytes\":%" PRIu64
               ",\"version\":\"%s\",\"cipher\":\"%s\",\"mode\":\"%s\",\"ok\":%s",
            scenario_names[s->sc], round, s->rec, s->bytes,
            o->version == TLS1_3_VERSION ? "1.3" : "1.2", cipher_label(o->cipher), s->mode,
            s->ok ? "true" : "false");
    for (int i = 0; i < o->n_labels; i++) {
        const char *eq = strchr(o->labels[i], '=');
        fprintf(f, ",\"%.*s\":\"%s\"", (int)(eq - o->labels[i]), o->labels[i], eq + 1);
    }
    fprintf(f, ",\"wall_s\":%.6f,\"user_s\":%.6f,\"sys_s\":%.6f,\"dev_cpu_s\":%.6f,"
               "\"dev_user_s\":%.4f,\"dev_sys_s\":%.4f,\"retrans_bytes\":%" PRIu64
               ",\"retrans_segs\":%u,\"mss\":%u",
            s->wall_s, s->user_s, s->sys_s, s->dev_cpu_s, s->dev_user_s, s->dev_sys_s,
            s->rt.bytes_retrans, s->rt.total_retrans, s->rt.snd_mss);
    fprintf(f, ",\"proc_s\":%.6f,\"recv_cpu_s\":%.6f,\"segs_in\":%u,\"segs_out\":%u,\"min_s\":%.3f",
            s->proc_s, s->recv_cpu_s, s->rt.segs_in, s->rt.segs_out, o->seconds);
    if (s->bg_host >= 0)
        fprintf(f, ",\"bg_host\":%.4f", s->bg_host);
    if (s->bg_dev >= 0)
        fprintf(f, ",\"bg_dev\":%.4f", s->bg_dev);
    if (s->have_cores) {
        json_core(f, "host", o->host_cpu, &s->host);
        if (o->device_cpu >= 0)
            json_core(f, "devcore", o->device_cpu, &s->devcore);
    }
    if (s->have_dev_counters) {
        fprintf(f, ",\"dev\":{");
        for (size_t i = 0; i < N_DEV_COUNTERS; i++)
            fprintf(f, "%s\"%s\":%" PRId64, i ? "," : "", dev_counters[i], s->dev_delta[i]);
        fprintf(f, "}");
    }
    fprintf(f, "}\n");
    fflush(f);
}

static int parse_list(const char *text, const char *const *names, int n_names, int *out, int cap)
{
    int n = 0;
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", text);
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        int found = -1;
        for (int i = 0; i < n_names; i++)
            if (strcmp(tok, names[i]) == 0)
                found = i;
        if (found < 0 || n >= cap)
            return -EINVAL;
        out[n++] = found;
    }
    return n;
}

static int do_send(const struct send_opts *o, const int *scs, int n_sc, const size_t *sizes,
                   int n_sizes, uint64_t bytes, int rounds)
{
    SSL_CTX *cctx = client_ctx_new(o->version, o->cipher);
    if (cctx == NULL)
        return 1;
    FILE *json = o->json ? fopen(o->json, "ae") : stdout;
    if (json == NULL) {
        perror(o->json);
        return 1;
    }
    for (int i = 0; i < n_sc; i++) {
        if (scs[i] == S_DEV && daemon_dev == NULL) {
            int rc = o->ctl ? tlsnic_ctl_client_open(o->ctl, 2000, &daemon_dev) : -ENOENT;
            if (rc < 0) {
                fprintf(stderr, "bench_eval: dev needs tlsnicd's control socket (--ctl): %s\n",
                        strerror(-rc));
                return 1;
            }
        }
    }
    int total = rounds * n_sizes * n_sc, done = 0, failed = 0;
    int tty = isatty(STDERR_FILENO);
    for (int r = 0; r < rounds; r++) {
        for (int z = 0; z < n_sizes; z++) {
            double bg_host, bg_dev;
            background(o, &bg_host, &bg_dev);
            for (int k = 0; k < n_sc; k++) {
                /* Rotate the order each round and size: no scenario always goes first. */
                struct sample s = {.sc = (enum scenario)scs[(k + r + z) % n_sc], .rec = sizes[z],
                                   .bytes = bytes, .bg_host = bg_host, .bg_dev = bg_dev};
                int rc = s.sc == S_EVP ? run_evp(o, &s) : run_net(o, cctx, &s);
                failed |= rc < 0;
                json_sample(json, o, &s, r);
                done++;
                if (o->progress) {
                    double host = (s.have_cores ? s.host.busy_s : s.user_s + s.sys_s) /
                                  ((double)s.bytes / 1e9);
                    fprintf(stderr, "%s[%3d/%3d] round %d rec %5zu %-4s %7.0f Mbit/s  host core %.3f s/GB  tlsnicd %.3f s/GB%s%s",
                            tty ? "\r" : "", done, total, r + 1, s.rec, scenario_names[s.sc],
                            s.sc == S_EVP ? 0.0 : (double)s.bytes * 8 / s.wall_s / 1e6, host,
                            s.dev_cpu_s / ((double)s.bytes / 1e9), s.ok ? "" : "  FAILED",
                            tty ? "   " : "\n");
                }
            }
        }
    }
    if (o->progress && tty)
        fputc('\n', stderr);
    if (json != stdout)
        fclose(json);
    if (daemon_dev != NULL)
        tlsnic_ctl_client_close(daemon_dev);
    SSL_CTX_free(cctx);
    return failed;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: bench_eval recv --addr A --port P [--verify] [--version 1.2|1.3] [--cipher C]\n"
            "                  [--max-conns N]\n"
            "       bench_eval send --addr A --port P [--scenarios tcp,ssl,sw,dev,null,evp]\n"
            "                  [--sizes 1457,4096,16384] [--mb N] [--rounds N] [--version 1.2|1.3]\n"
            "                  [--cipher aes128|aes256|chacha] [--ctl PATH] [--daemon-pid PID]\n"
            "                  [--json FILE] [--label K=V]... [--progress] [--timeout S]\n"
            "                  [--io-timeout S] [--rate MBIT] [--pace app|tcp] [--cc NAME] [--seconds S]\n"
            "                  [--host-cpu N] [--device-cpu N] [--recv-pid PID] [--background S]\n"
            "                  [--notsent-lowat BYTES]\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage();
        return 2;
    }
    int is_send = strcmp(argv[1], "send") == 0;
    if (!is_send && strcmp(argv[1], "recv") != 0) {
        usage();
        return 2;
    }
    struct send_opts o = {.addr = "198.18.0.2", .port = 5201, .version = TLS1_2_VERSION,
                          .cipher = TLS_CIPHER_AES_GCM_128, .host_cpu = -1, .device_cpu = -1};
    int scs[N_SCENARIOS] = {S_TCP, S_SSL, S_SW, S_DEV, S_NULL};
    int n_sc = 5;
    size_t sizes[MAX_SIZES] = {1457, 4096, 16384};
    int n_sizes = 3, rounds = 3, verify = 0;
    long max_conns = 0, timeout_s = 3600;
    double mb = 200;
    int mb_given = 0;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int takes = 1;
        if (!strcmp(a, "--addr") && v)
            o.addr = v;
        else if (!strcmp(a, "--port") && v)
            o.port = atoi(v);
        else if (!strcmp(a, "--version") && v)
            o.version = !strcmp(v, "1.3") ? TLS1_3_VERSION : TLS1_2_VERSION;
        else if (!strcmp(a, "--cipher") && v)
            o.cipher = !strcmp(v, "aes256") ? TLS_CIPHER_AES_GCM_256
                       : !strcmp(v, "chacha") ? TLS_CIPHER_CHACHA20_POLY1305
                                              : TLS_CIPHER_AES_GCM_128;
        else if (!strcmp(a, "--ctl") && v)
            o.ctl = v;
        else if (!strcmp(a, "--daemon-pid") && v)
            o.daemon_pid = atoi(v);
        else if (!strcmp(a, "--recv-pid") && v)
            o.recv_pid = atoi(v);
        else if (!strcmp(a, "--host-cpu") && v)
            o.host_cpu = atoi(v);
        else if (!strcmp(a, "--device-cpu") && v)
            o.device_cpu = atoi(v);
        else if (!strcmp(a, "--notsent-lowat") && v)
            o.notsent_lowat = atoi(v);
        else if (!strcmp(a, "--seconds") && v)
            o.seconds = atof(v);
        else if (!strcmp(a, "--background") && v)
            o.bg_s = atof(v);
        else if (!strcmp(a, "--json") && v)
            o.json = v;
        else if (!strcmp(a, "--label") && v && strchr(v, '=') && o.n_labels < MAX_LABELS)
            o.labels[o.n_labels++] = v;
        else if (!strcmp(a, "--mb") && v) {
            mb = atof(v);
            mb_given = 1;
        }
        else if (!strcmp(a, "--rounds") && v)
            rounds = atoi(v);
        else if (!strcmp(a, "--max-conns") && v)
            max_conns = atol(v);
        else if (!strcmp(a, "--timeout") && v)
            timeout_s = atol(v);
        else if (!strcmp(a, "--rate") && v)
            o.rate_mbit = atof(v);
        else if (!strcmp(a, "--pace") && v && (!strcmp(v, "app") || !strcmp(v, "tcp")))
            o.pace_tcp = !strcmp(v, "tcp");
        else if (!strcmp(a, "--cc") && v)
            o.cc = v;
        else if (!strcmp(a, "--io-timeout") && v)
            io_timeout_s = atol(v);
        else if (!strcmp(a, "--scenarios") && v) {
            n_sc = parse_list(v, scenario_names, N_SCENARIOS, scs, N_SCENARIOS);
        } else if (!strcmp(a, "--sizes") && v) {
            n_sizes = 0;
            char buf[128];
            snprintf(buf, sizeof(buf), "%s", v);
            for (char *save = NULL, *t = strtok_r(buf, ",", &save); t && n_sizes < MAX_SIZES;
                 t = strtok_r(NULL, ",", &save))
                sizes[n_sizes++] = (size_t)atol(t);
        } else {
            takes = 0;
            if (!strcmp(a, "--verify"))
                verify = 1;
            else if (!strcmp(a, "--progress"))
                o.progress = 1;
            else {
                usage();
                return 2;
            }
        }
        i += takes;
    }
    if (n_sc <= 0 || n_sizes <= 0 || rounds < 1 || rounds > 1000 || !(mb > 0 && mb <= 100000) ||
        o.port <= 0 || o.port > 65530 || timeout_s < 1 || io_timeout_s < 1 ||
        o.host_cpu >= EVAL_MAX_CPUS || o.device_cpu >= EVAL_MAX_CPUS || !(o.seconds >= 0) ||
        o.seconds > 600 || !(o.bg_s >= 0) || o.bg_s > 10) {
        usage();
        return 2;
    }
    for (int i = 0; i < n_sizes; i++)
        if (sizes[i] < 1 || sizes[i] > MAX_REC) {
            fprintf(stderr, "bench_eval: record size %zu not in 1..%d\n", sizes[i], MAX_REC);
            return 2;
        }
    pattern_init();
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = {.sa_handler = on_stop};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    alarm((unsigned)timeout_s); /* the whole program is bounded */
    if (!is_send)
        return do_recv(o.addr, o.port, verify, o.version, o.cipher, max_conns);
    /* A time-bound sample sends until its time is up; --mb, if given, caps it. */
    uint64_t bytes = o.seconds > 0 && !mb_given ? TIME_BOUND_CAP : (uint64_t)(mb * 1e6);
    return do_send(&o, scs, n_sc, sizes, n_sizes, bytes, rounds);
}
