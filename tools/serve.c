/*
 * tlsnic serve --port P --file F [--addr A] [--tls12|--tls13] [--cipher NAME] [--count N]
 *
 * The CLI's own HTTPS file server, and the smallest complete user of tlsnic as a program
 * would use it without the preload library:
 *
 *   1. tlsnic_attach_daemon(NULL) once: sockets whose TX keys are set are offered to
 *      tlsnicd ($TLSNIC_CTL, else /run/tlsnicd.sock) and run in device mode if it accepts.
 *   2. Per connection: the TLS handshake with libssl (a self-signed certificate made in
 *      memory; no session tickets, so the record sequence numbers keyexport.h assumes
 *      hold), the traffic keys exported to the <linux/tls.h> form, the SSL object freed
 *      without a word more on the socket, and the socket handed to the tlsnic socket layer
 *      (TCP_ULP "tls", TLS_TX, TLS_RX): from here on it is a kTLS socket.
 *   3. One HTTP/1.0 request read with tlsnic_recv; the file (for "/" or "/<its name>")
 *      sent with tlsnic_sendfile after a minimal header; then close.
 *   4. One line per connection: peer, version, cipher, TX and RX mode (device, or sw and
 *      why), what was sent. TLSNIC_STATS_FILE gets the host counters after each
 *      connection (as under the preload library), for `tlsnic stats --host`.
 *
 * Exit status: 0 when every connection was served, 1 if one failed, 2 for bad usage.
 */
#include "serve.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "tlsnic/attach.h"
#include "tlsnic/keyexport.h"
#include "tlsnic/ktls.h"
#include "tlsnic/record.h"
#include "host_stats.h"
#include "selfcert.h"

#define CERT_CN "tlsnic-serve"
#define CERT_DAYS 1
#define IO_TIMEOUT_S 30     /* a peer silent this long (handshake, request, a send) is dropped */
#define REQUEST_MAX 4096    /* the request head must fit; a longer one closes the connection */
#define LISTEN_BACKLOG 16
#define SUITES_MAX 128

struct serve_opts {
    const char *addr;
    const char *port;
    const char *file;
    int min_version, max_version;
    uint16_t cipher; /* 0 = every cipher tlsnic offloads */
    unsigned long count; /* 0 = serve until killed */
};

static const uint16_t offloaded_ciphers[] = {TLS_CIPHER_AES_GCM_128, TLS_CIPHER_AES_GCM_256,
                                             TLS_CIPHER_CHACHA20_POLY1305};
#define N_CIPHERS (sizeof(offloaded_ciphers) / sizeof(offloaded_ciphers[0]))

static void serve_usage(FILE *to)
{
    fprintf(to, "usage: tlsnic serve --port P --file F [--addr A (default 0.0.0.0)]\n"
                "                    [--tls12 | --tls13] [--cipher aes128gcm|aes256gcm|chacha20]\n"
                "                    [--count N (connections, then exit; default: until killed)]\n");
}

/* "aes128gcm", "AES-128-GCM" (tlsnic_cipher_name), ... -> TLS_CIPHER_*; 0 if unknown. */
static uint16_t cipher_by_name(const char *name)
{
    static const struct {
        const char *short_name;
        uint16_t cipher;
    } names[] = {{"aes128gcm", TLS_CIPHER_AES_GCM_128},
                 {"aes256gcm", TLS_CIPHER_AES_GCM_256},
                 {"chacha20", TLS_CIPHER_CHACHA20_POLY1305}};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (strcasecmp(name, names[i].short_name) == 0 ||
            strcasecmp(name, tlsnic_cipher_name(names[i].cipher)) == 0)
            return names[i].cipher;
    }
    return 0;
}

static int parse_opts(int argc, char **argv, struct serve_opts *o)
{
    static const struct option longopts[] = {
        {"port", required_argument, NULL, 'p'}, {"file", required_argument, NULL, 'f'},
        {"addr", required_argument, NULL, 'a'}, {"tls12", no_argument, NULL, '2'},
        {"tls13", no_argument, NULL, '3'},      {"cipher", required_argument, NULL, 'c'},
        {"count", required_argument, NULL, 'n'}, {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    *o = (struct serve_opts){.addr = "0.0.0.0", .min_version = TLS1_2_VERSION,
                             .max_version = TLS1_3_VERSION};
    optind = 1;
    for (int c; (c = getopt_long(argc - 1, argv + 1, "", longopts, NULL)) != -1;) {
        char *end = NULL;
        switch (c) {
        case 'p': o->port = optarg; break;
        case 'f': o->file = optarg; break;
        case 'a': o->addr = optarg; break;
        case '2': o->min_version = o->max_version = TLS1_2_VERSION; break;
        case '3': o->min_version = o->max_version = TLS1_3_VERSION; break;
        case 'c':
            o->cipher = cipher_by_name(optarg);
            if (o->cipher == 0) {
                fprintf(stderr, "tlsnic serve: unknown cipher %s\n", optarg);
                return -EINVAL;
            }
            break;
        case 'n':
            errno = 0;
            o->count = strtoul(optarg, &end, 10);
            if (errno != 0 || end == optarg || *end != '\0') {
                fprintf(stderr, "tlsnic serve: --count wants a number, not %s\n", optarg);
                return -EINVAL;
            }
            break;
        default: return -EINVAL;
        }
    }
    if (optind != argc - 1 || o->port == NULL || o->file == NULL) {
        if (optind != argc - 1)
            fprintf(stderr, "tlsnic serve: unexpected argument %s\n", argv[optind + 1]);
        return -EINVAL;
    }
    return 0;
}

/* "A:B:C" of the suite names of the allowed ciphers in one protocol version. */
static int suite_list(const struct serve_opts *o, int version, char *buf, size_t cap)
{
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < N_CIPHERS; i++) {
        if (o->cipher != 0 && o->cipher != offloaded_ciphers[i])
            continue;
        int n = snprintf(buf + used, cap - used, "%s%s", used ? ":" : "",
                         tlsnic_keyexport_suite_name(version, offloaded_ciphers[i]));
        if (n < 0 || (size_t)n >= cap - used)
            return -ENOBUFS;
        used += (size_t)n;
    }
    return 0;
}

static int make_ssl_ctx(const struct serve_opts *o, SSL_CTX **out)
{
    EVP_PKEY *key = NULL;
    X509 *cert = NULL;
    char tls12[SUITES_MAX], tls13[SUITES_MAX];
    int rc = tlsnic_selfcert_new(CERT_CN, CERT_DAYS, &key, &cert);
    if (rc < 0)
        return rc;
    if (rc == 0)
        rc = suite_list(o, TLS1_2_VERSION, tls12, sizeof(tls12));
    if (rc == 0)
        rc = suite_list(o, TLS1_3_VERSION, tls13, sizeof(tls13));
    SSL_CTX *ctx = rc == 0 ? SSL_CTX_new(TLS_server_method()) : NULL;
    if (rc == 0 && ctx == NULL)
        rc = -ENOMEM;
    if (rc == 0 && (!SSL_CTX_use_certificate(ctx, cert) || !SSL_CTX_use_PrivateKey(ctx, key) ||
                    !SSL_CTX_set_min_proto_version(ctx, o->min_version) ||
                    !SSL_CTX_set_max_proto_version(ctx, o->max_version) ||
                    !SSL_CTX_set_cipher_list(ctx, tls12) || !SSL_CTX_set_ciphersuites(ctx, tls13)))
        rc = -EINVAL;
    if (rc == 0) {
        /* Nothing may follow the handshake through libssl, or the record sequence numbers
         * tlsnic_keyexport states would be off: no TLS 1.3 tickets (they are records after
         * the handshake), no renegotiation. No read-ahead: libssl must not take bytes of
         * the request out of the socket, they belong to the tlsnic socket. */
        SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET | SSL_OP_NO_RENEGOTIATION);
        SSL_CTX_set_read_ahead(ctx, 0);
        if (!SSL_CTX_set_num_tickets(ctx, 0))
            rc = -EINVAL;
    }
    if (rc == 0)
        rc = tlsnic_keyexport_enable(ctx);
    X509_free(cert);
    EVP_PKEY_free(key);
    if (rc < 0) {
        SSL_CTX_free(ctx);
        return rc;
    }
    *out = ctx;
    return 0;
}

static int listen_on(const struct serve_opts *o)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV};
    struct addrinfo *ai = NULL;
    int gai = getaddrinfo(o->addr, o->port, &hints, &ai);
    if (gai != 0) {
        fprintf(stderr, "tlsnic serve: %s port %s: %s\n", o->addr, o->port, gai_strerror(gai));
        return -EINVAL;
    }
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1, err = fd < 0 ? -errno : 0;
    if (err == 0 && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
        err = -errno;
    if (err == 0 && bind(fd, ai->ai_addr, ai->ai_addrlen) < 0)
        err = -errno;
    if (err == 0 && listen(fd, LISTEN_BACKLOG) < 0)
        err = -errno;
    freeaddrinfo(ai);
    if (err < 0) {
        fprintf(stderr, "tlsnic serve: listen on %s port %s: %s\n", o->addr, o->port, strerror(-err));
        if (fd >= 0)
            close(fd);
        return err;
    }
    return fd;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void peer_text(int fd, char *buf, size_t cap)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    char a[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;
    if (getpeername(fd, (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET6) {
            const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&ss;
            inet_ntop(AF_INET6, &s6->sin6_addr, a, sizeof(a));
            port = ntohs(s6->sin6_port);
        } else if (ss.ss_family == AF_INET) {
            const struct sockaddr_in *s4 = (const struct sockaddr_in *)&ss;
            inet_ntop(AF_INET, &s4->sin_addr, a, sizeof(a));
            port = ntohs(s4->sin_port);
        }
    }
    snprintf(buf, cap, ss.ss_family == AF_INET6 ? "[%s]:%u" : "%s:%u", a, port);
}

/* "device", or "sw (why)" for one direction of a tlsnic socket. */
static void mode_text(int fd, enum tlsnic_dir dir, char *buf, size_t cap)
{
    struct tlsnic_mode_info mi;
    if (tlsnic_get_mode(fd, dir, &mi) < 0) {
        snprintf(buf, cap, "unknown (%s)", strerror(errno));
        return;
    }
    if (mi.mode != TLSNIC_MODE_SW) {
        snprintf(buf, cap, "%s", tlsnic_mode_name(mi.mode));
        return;
    }
    const char *why = tlsnic_sw_reason_name(mi.reason);
    if (mi.reason == TLSNIC_SW_REASON_DEVICE_UNREACHABLE)
        snprintf(buf, cap, "sw (%s at %s)", why, tlsnic_attach_path());
    else if (mi.dev_errno != 0)
        snprintf(buf, cap, "sw (%s: %s)", why, strerror(-mi.dev_errno));
    else
        snprintf(buf, cap, "sw (%s)", why);
}

/* What one connection came to, for its line. */
struct conn_report {
    char peer[INET6_ADDRSTRLEN + 16];
    char version[16];
    char cipher[32];
    char tx_mode[160];
    char rx_mode[160];
    char request[80];
    int status;      /* HTTP status sent, 0 = none */
    long long sent;  /* body bytes sent */
    const char *failed; /* NULL: served */
    char why[160];
};

static int conn_fail(struct conn_report *r, const char *step, int err)
{
    r->failed = step;
    unsigned long ssl_err = ERR_get_error();
    if (ssl_err != 0)
        ERR_error_string_n(ssl_err, r->why, sizeof(r->why));
    else
        snprintf(r->why, sizeof(r->why), "%s", strerror(err < 0 ? -err : EPROTO));
    ERR_clear_error();
    return err < 0 ? err : -EPROTO;
}

/*
 * The handshake with libssl, then the socket handed to tlsnic with the exported keys. On
 * success fd is a tlsnic socket in whatever mode tlsnic chose.
 */
static int handshake_and_hand_over(SSL_CTX *ctx, int fd, struct conn_report *r)
{
    union tlsnic_crypto_info tx, rx;
    size_t tx_len = 0, rx_len = 0;
    SSL *ssl = SSL_new(ctx);
    if (ssl == NULL || !SSL_set_fd(ssl, fd)) {
        SSL_free(ssl);
        return conn_fail(r, "SSL_new", -ENOMEM);
    }
    int rc = SSL_accept(ssl) == 1 ? 0 : -EPROTO;
    if (rc < 0) {
        SSL_free(ssl);
        return conn_fail(r, "handshake", rc);
    }
    /* Bytes libssl already holds would be lost to the tlsnic socket. */
    if (SSL_has_pending(ssl)) {
        SSL_free(ssl);
        return conn_fail(r, "handover (libssl read past the handshake)", -EPROTO);
    }
    rc = tlsnic_keyexport(ssl, 1, &tx, &tx_len);
    if (rc == 0)
        rc = tlsnic_keyexport(ssl, 0, &rx, &rx_len);
    snprintf(r->version, sizeof(r->version), "%s", SSL_get_version(ssl));
    /* Freed without SSL_shutdown: not a byte more through libssl on this socket. */
    SSL_free(ssl);
    if (rc < 0) {
        OPENSSL_cleanse(&tx, sizeof(tx));
        OPENSSL_cleanse(&rx, sizeof(rx));
        return conn_fail(r, "key export", rc);
    }
    snprintf(r->cipher, sizeof(r->cipher), "%s", tlsnic_cipher_name(tx.info.cipher_type));
    const char *step = "TCP_ULP tls";
    rc = tlsnic_setsockopt(fd, SOL_TCP, TCP_ULP, "tls", sizeof("tls"));
    if (rc == 0) {
        step = "TLS_TX";
        rc = tlsnic_setsockopt(fd, SOL_TLS, TLS_TX, &tx, (socklen_t)tx_len);
    }
    if (rc == 0) {
        step = "TLS_RX";
        rc = tlsnic_setsockopt(fd, SOL_TLS, TLS_RX, &rx, (socklen_t)rx_len);
    }
    int err = rc < 0 ? -errno : 0;
    OPENSSL_cleanse(&tx, sizeof(tx));
    OPENSSL_cleanse(&rx, sizeof(rx));
    if (err < 0)
        return conn_fail(r, step, err);
    mode_text(fd, TLSNIC_DIR_TX, r->tx_mode, sizeof(r->tx_mode));
    mode_text(fd, TLSNIC_DIR_RX, r->rx_mode, sizeof(r->rx_mode));
    return 0;
}

/* Reads the request head (up to the blank line) into buf, NUL-terminated. */
static int read_request(int fd, char *buf, size_t cap)
{
    size_t got = 0;
    while (got < cap - 1) {
        ssize_t n = tlsnic_recv(fd, buf + got, cap - 1 - got, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return errno == EAGAIN ? -ETIMEDOUT : -errno;
        if (n == 0)
            return -ECONNRESET;
        got += (size_t)n;
        buf[got] = '\0';
        if (strstr(buf, "\r\n\r\n") != NULL || strstr(buf, "\n\n") != NULL)
            return 0;
    }
    return -EMSGSIZE;
}

static int send_all(int fd, const char *buf, size_t len)
{
    size_t sent = 0;
    while (sent < len) {
        ssize_t n = tlsnic_send(fd, buf + sent, len - sent, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n < 0 ? (errno == EAGAIN ? -ETIMEDOUT : -errno) : -EIO;
        sent += (size_t)n;
    }
    return 0;
}

/* Sends the whole file from offset 0; every round moves at least one byte or fails. */
static int sendfile_all(int fd, int file_fd, off_t size, long long *sent)
{
    off_t off = 0;
    while (off < size) {
        ssize_t n = tlsnic_sendfile(fd, file_fd, &off, (size_t)(size - off));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return errno == EAGAIN ? -ETIMEDOUT : -errno;
        if (n == 0)
            return -EIO; /* the file shrank */
        *sent = (long long)off;
    }
    return 0;
}

/* "GET /name HTTP/1.x": 1 for the file ("/" or "/<its base name>"), 0 for anything else. */
static int wants_the_file(const char *request, const char *file, char *line, size_t cap)
{
    size_t len = strcspn(request, "\r\n");
    snprintf(line, cap, "%.*s", (int)len, request);
    const char *base = strrchr(file, '/');
    base = base != NULL ? base + 1 : file;
    char path[REQUEST_MAX];
    if (sscanf(line, "GET %4095s HTTP/1.%*c", path) != 1)
        return 0;
    return strcmp(path, "/") == 0 || (path[0] == '/' && strcmp(path + 1, base) == 0);
}

static int serve_request(int fd, const struct serve_opts *o, int file_fd, off_t size,
                         struct conn_report *r)
{
    char request[REQUEST_MAX];
    int rc = read_request(fd, request, sizeof(request));
    if (rc < 0)
        return conn_fail(r, "reading the request", rc);
    char header[256];
    if (!wants_the_file(request, o->file, r->request, sizeof(r->request))) {
        static const char not_found[] = "HTTP/1.0 404 Not Found\r\nContent-Type: text/plain\r\n"
                                        "Content-Length: 10\r\nConnection: close\r\n\r\nnot found\n";
        r->status = 404;
        rc = send_all(fd, not_found, sizeof(not_found) - 1);
        return rc < 0 ? conn_fail(r, "sending 404", rc) : 0;
    }
    int n = snprintf(header, sizeof(header),
                     "HTTP/1.0 200 OK\r\nContent-Type: application/octet-stream\r\n"
                     "Content-Length: %lld\r\nConnection: close\r\n\r\n", (long long)size);
    r->status = 200;
    rc = send_all(fd, header, (size_t)n);
    if (rc < 0)
        return conn_fail(r, "sending the header", rc);
    rc = sendfile_all(fd, file_fd, size, &r->sent);
    return rc < 0 ? conn_fail(r, "sendfile", rc) : 0;
}

static int serve_connection(SSL_CTX *ctx, int fd, const struct serve_opts *o, int file_fd,
                            off_t size, unsigned long number)
{
    struct conn_report r = {.version = "-", .cipher = "-", .tx_mode = "-", .rx_mode = "-"};
    double start = now_s();
    peer_text(fd, r.peer, sizeof(r.peer));
    /* Bounded waits: a silent peer costs IO_TIMEOUT_S, not the server. */
    struct timeval tv = {.tv_sec = IO_TIMEOUT_S};
    int rc = 0;
    if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0)
        rc = conn_fail(&r, "socket timeouts", -errno);
    if (rc == 0)
        rc = handshake_and_hand_over(ctx, fd, &r);
    if (rc == 0)
        rc = serve_request(fd, o, file_fd, size, &r);
    /* close returns at once; in device mode the device's end of the flow is finished in
     * the background (src/host/closer.c). */
    if (tlsnic_close(fd) < 0 && rc == 0)
        rc = conn_fail(&r, "close", -errno);
    int stats_err = tlsnic_write_host_stats();
    if (stats_err < 0)
        fprintf(stderr, "tlsnic serve: TLSNIC_STATS_FILE: %s\n", strerror(-stats_err));
    printf("tlsnic serve: #%lu %s %s %s, TX %s, RX %s: ", number, r.peer, r.version, r.cipher,
           r.tx_mode, r.rx_mode);
    if (r.status != 0)
        printf("\"%s\" -> %d, %lld bytes in %.2f s", r.request, r.status, r.sent, now_s() - start);
    if (r.failed != NULL)
        printf("%sFAILED at %s: %s", r.status != 0 ? "; " : "", r.failed, r.why);
    printf("\n");
    fflush(stdout);
    return rc;
}

int tlsnic_cmd_serve(int argc, char **argv)
{
    struct serve_opts o;
    if (parse_opts(argc, argv, &o) < 0) {
        serve_usage(stderr);
        return 2;
    }
    int file_fd = open(o.file, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (file_fd < 0 || fstat(file_fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        fprintf(stderr, "tlsnic serve: %s: %s\n", o.file, file_fd < 0 ? strerror(errno) : "not a regular file");
        if (file_fd >= 0)
            close(file_fd);
        return 1;
    }
    SSL_CTX *ctx = NULL;
    int rc = make_ssl_ctx(&o, &ctx);
    if (rc < 0) {
        fprintf(stderr, "tlsnic serve: TLS context: %s\n", strerror(-rc));
        ERR_print_errors_fp(stderr);
        close(file_fd);
        return 1;
    }
    /* Device mode whenever tlsnicd is reachable: decided per socket at TLS_TX. */
    rc = tlsnic_attach_daemon(NULL);
    if (rc < 0 && rc != -EALREADY) {
        fprintf(stderr, "tlsnic serve: attach: %s\n", strerror(-rc));
        SSL_CTX_free(ctx);
        close(file_fd);
        return 1;
    }
    int listen_fd = listen_on(&o);
    if (listen_fd < 0) {
        SSL_CTX_free(ctx);
        close(file_fd);
        return 1;
    }
    const char *ctl = tlsnic_attach_path();
    printf("tlsnic serve: listening on %s port %s: %s (%lld bytes), %s%s%s, device: %s\n", o.addr,
           o.port, o.file, (long long)st.st_size,
           o.min_version == o.max_version ? (o.max_version == TLS1_3_VERSION ? "TLS 1.3" : "TLS 1.2")
                                          : "TLS 1.2/1.3",
           o.cipher ? " " : "", o.cipher ? tlsnic_cipher_name(o.cipher) : "",
           ctl[0] ? ctl : "none (TLSNIC_CTL=off)");
    fflush(stdout);
    int failures = 0;
    for (unsigned long served = 0; o.count == 0 || served < o.count;) {
        int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            fprintf(stderr, "tlsnic serve: accept: %s\n", strerror(errno));
            failures++;
            break;
        }
        served++;
        failures += serve_connection(ctx, fd, &o, file_fd, st.st_size, served) < 0;
    }
    close(listen_fd);
    SSL_CTX_free(ctx);
    close(file_fd);
    return failures == 0 ? 0 : 1;
}
