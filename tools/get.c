/*
 * tlsnic get --addr A --port P [--path /F] [--out FILE] [--tls12|--tls13] [--cipher NAME]
 *            [--rate MBYTES_PER_S]
 *
 * The CLI's own HTTPS client, the download direction of `tlsnic serve`: what a program
 * does to receive through tlsnic without the preload library (and what unmodified clients
 * cannot do here: OpenSSL 3.0's kTLS receives TLS 1.2 only, curl never uses kTLS).
 *
 *   1. tlsnic_attach_daemon(NULL): sockets whose keys are set are offered to tlsnicd.
 *   2. TCP connect, the handshake with libssl (no read-ahead: libssl must not take
 *      record bytes that belong to the tlsnic socket), the traffic keys exported to the
 *      <linux/tls.h> form, the SSL object freed, the socket handed to the tlsnic socket
 *      layer (TCP_ULP "tls", TLS_TX, TLS_RX): RX in device mode when the daemon takes it.
 *   3. "GET path HTTP/1.0" with tlsnic_send; the response read with tlsnic_recvmsg until
 *      the end of the stream (records other than data, such as TLS 1.3 session tickets and
 *      the peer's close_notify, come one per call with their type and are skipped); the
 *      body after the header block goes to --out.
 *   4. One line: peer, version, cipher, TX and RX mode (device, or sw and why), what came.
 *      TLSNIC_STATS_FILE gets the host counters, for `tlsnic stats --host`.
 *
 * Exit status: 0 for a complete 200 response, 1 otherwise, 2 for bad usage.
 */
#include "get.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
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

#define IO_TIMEOUT_S 30
#define HEAD_MAX 4096

struct get_opts {
    const char *addr, *port, *path, *out;
    int min_version, max_version;
    uint16_t cipher;
    double rate; /* bytes per second the reading keeps to (0: as fast as it comes) */
};

static void get_usage(FILE *to)
{
    fprintf(to, "usage: tlsnic get --addr A --port P [--path /F (default /)] [--out FILE]\n"
                "                  [--tls12 | --tls13] [--cipher aes128gcm|aes256gcm|chacha20]\n"
                "                  [--rate MB/s (read no faster: the sender waits on the window)]\n");
}

static int parse_opts(int argc, char **argv, struct get_opts *o)
{
    static const struct option longopts[] = {
        {"addr", required_argument, NULL, 'a'}, {"port", required_argument, NULL, 'p'},
        {"path", required_argument, NULL, 'P'}, {"out", required_argument, NULL, 'o'},
        {"tls12", no_argument, NULL, '2'},      {"tls13", no_argument, NULL, '3'},
        {"cipher", required_argument, NULL, 'c'}, {"rate", required_argument, NULL, 'r'},
        {NULL, 0, NULL, 0},
    };
    *o = (struct get_opts){.path = "/", .min_version = TLS1_2_VERSION, .max_version = TLS1_3_VERSION};
    optind = 1;
    for (int c; (c = getopt_long(argc - 1, argv + 1, "", longopts, NULL)) != -1;) {
        switch (c) {
        case 'a': o->addr = optarg; break;
        case 'p': o->port = optarg; break;
        case 'P': o->path = optarg; break;
        case 'o': o->out = optarg; break;
        case '2': o->min_version = o->max_version = TLS1_2_VERSION; break;
        case '3': o->min_version = o->max_version = TLS1_3_VERSION; break;
        case 'r':
            o->rate = strtod(optarg, NULL) * 1e6;
            if (!(o->rate > 0))
                return -EINVAL;
            break;
        case 'c':
            if (strcasecmp(optarg, "aes128gcm") == 0)
                o->cipher = TLS_CIPHER_AES_GCM_128;
            else if (strcasecmp(optarg, "aes256gcm") == 0)
                o->cipher = TLS_CIPHER_AES_GCM_256;
            else if (strcasecmp(optarg, "chacha20") == 0)
                o->cipher = TLS_CIPHER_CHACHA20_POLY1305;
            else
                return -EINVAL;
            break;
        default: return -EINVAL;
        }
    }
    if (optind != argc - 1 || o->addr == NULL || o->port == NULL || strlen(o->path) > 1024)
        return -EINVAL;
    return 0;
}

static int make_ctx(const struct get_opts *o, SSL_CTX **out)
{
    static const uint16_t ciphers[] = {TLS_CIPHER_AES_GCM_128, TLS_CIPHER_AES_GCM_256,
                                       TLS_CIPHER_CHACHA20_POLY1305};
    char tls12[256] = "", tls13[128] = "";
    for (size_t i = 0; i < 3; i++) {
        if (o->cipher && o->cipher != ciphers[i])
            continue;
        const char *a = tlsnic_keyexport_suite_name(TLS1_2_VERSION, ciphers[i]);
        const char *b = tlsnic_keyexport_suite_name(TLS1_3_VERSION, ciphers[i]);
        /* TLS 1.2: the ECDSA and the RSA flavour of each suite (whatever the server's key) */
        char rsa[64] = "";
        const char *e = strstr(a, "ECDSA");
        if (e)
            snprintf(rsa, sizeof(rsa), ":%.*sRSA%s", (int)(e - a), a, e + 5);
        snprintf(tls12 + strlen(tls12), sizeof(tls12) - strlen(tls12), "%s%s%s", tls12[0] ? ":" : "", a, rsa);
        snprintf(tls13 + strlen(tls13), sizeof(tls13) - strlen(tls13), "%s%s", tls13[0] ? ":" : "", b);
    }
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL)
        return -ENOMEM;
    int ok = SSL_CTX_set_min_proto_version(ctx, o->min_version) &&
             SSL_CTX_set_max_proto_version(ctx, o->max_version) &&
             SSL_CTX_set_cipher_list(ctx, tls12) && SSL_CTX_set_ciphersuites(ctx, tls13);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL); /* a test client: any certificate */
    SSL_CTX_set_read_ahead(ctx, 0);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION);
    if (!ok || tlsnic_keyexport_enable(ctx) < 0) {
        SSL_CTX_free(ctx);
        return -EINVAL;
    }
    *out = ctx;
    return 0;
}

static int connect_to(const struct get_opts *o)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV};
    struct addrinfo *ai = NULL;
    if (getaddrinfo(o->addr, o->port, &hints, &ai) != 0)
        return -EINVAL;
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int err = fd < 0 ? -errno : 0;
    struct timeval tv = {.tv_sec = IO_TIMEOUT_S};
    if (err == 0 && (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
                     setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0))
        err = -errno;
    if (err == 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) < 0)
        err = -errno;
    freeaddrinfo(ai);
    if (err < 0 && fd >= 0)
        close(fd);
    return err < 0 ? err : fd;
}

static void mode_text(int fd, enum tlsnic_dir dir, char *buf, size_t cap)
{
    struct tlsnic_mode_info mi;
    if (tlsnic_get_mode(fd, dir, &mi) < 0) {
        snprintf(buf, cap, "unknown");
        return;
    }
    if (mi.mode != TLSNIC_MODE_SW)
        snprintf(buf, cap, "%s", tlsnic_mode_name(mi.mode));
    else if (mi.dev_errno != 0)
        snprintf(buf, cap, "sw (%s: %s)", tlsnic_sw_reason_name(mi.reason), strerror(-mi.dev_errno));
    else
        snprintf(buf, cap, "sw (%s)", tlsnic_sw_reason_name(mi.reason));
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double now_s(void);

/* Reads the response: header block, then the body into out_fd (or nowhere), no faster
 * than rate bytes per second if rate > 0. */
static int read_response(int fd, int out_fd, double rate, int *status, long long *body)
{
    double t0 = now_s();
    static uint8_t buf[65536];
    char head[HEAD_MAX + 1];
    size_t head_len = 0;
    int in_body = 0;
    for (;;) {
        uint8_t cbuf[CMSG_SPACE(1)];
        struct iovec iov = {.iov_base = buf, .iov_len = sizeof(buf)};
        struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
                            .msg_controllen = sizeof(cbuf)};
        ssize_t n = tlsnic_recvmsg(fd, &mh, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            return in_body ? 0 : -ECONNRESET;
        struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
        if (cm && cm->cmsg_level == SOL_TLS && cm->cmsg_type == TLS_GET_RECORD_TYPE &&
            *CMSG_DATA(cm) != TLSNIC_CT_APPLICATION_DATA) {
            if (*CMSG_DATA(cm) == TLSNIC_CT_ALERT)
                return in_body ? 0 : -ECONNRESET; /* close_notify (or a fatal alert) */
            continue; /* session tickets */
        }
        const uint8_t *p = buf;
        size_t len = (size_t)n;
        if (!in_body) {
            size_t take = len < HEAD_MAX - head_len ? len : HEAD_MAX - head_len;
            memcpy(head + head_len, p, take);
            head_len += take;
            head[head_len] = '\0';
            char *end = strstr(head, "\r\n\r\n");
            if (end == NULL) {
                if (head_len == HEAD_MAX)
                    return -EMSGSIZE;
                continue;
            }
            size_t hl = (size_t)(end - head) + 4;
            if (sscanf(head, "HTTP/1.%*c %d", status) != 1)
                return -EPROTO;
            in_body = 1;
            size_t used_before = head_len - take;
            p += hl - used_before;
            len -= hl - used_before;
        }
        if (len && out_fd >= 0 && write(out_fd, p, len) != (ssize_t)len)
            return -EIO;
        *body += (long long)len;
        double ahead = rate > 0 ? (double)*body / rate - (now_s() - t0) : 0;
        if (ahead > 0) {
            struct timespec nap = {.tv_sec = (time_t)ahead,
                                   .tv_nsec = (long)((ahead - (double)(time_t)ahead) * 1e9)};
            nanosleep(&nap, NULL);
        }
    }
}

int tlsnic_cmd_get(int argc, char **argv)
{
    struct get_opts o;
    if (parse_opts(argc, argv, &o) < 0) {
        get_usage(stderr);
        return 2;
    }
    int out_fd = -1;
    if (o.out && (out_fd = open(o.out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)) < 0) {
        fprintf(stderr, "tlsnic get: %s: %s\n", o.out, strerror(errno));
        return 1;
    }
    SSL_CTX *ctx = NULL;
    int rc = make_ctx(&o, &ctx);
    if (rc == 0) {
        rc = tlsnic_attach_daemon(NULL);
        if (rc == -EALREADY)
            rc = 0;
    }
    int fd = rc == 0 ? connect_to(&o) : rc;
    const char *step = "connect";
    char version[16] = "-", cipher[32] = "-", tx_mode[160] = "-", rx_mode[160] = "-";
    int status = 0;
    long long body = 0;
    double start = now_s();
    rc = fd < 0 ? fd : 0;
    SSL *ssl = NULL;
    if (rc == 0) {
        step = "handshake";
        ssl = SSL_new(ctx);
        if (ssl == NULL || !SSL_set_fd(ssl, fd) || SSL_connect(ssl) != 1 || SSL_has_pending(ssl))
            rc = -EPROTO;
    }
    union tlsnic_crypto_info tx, rx;
    size_t tx_len = 0, rx_len = 0;
    if (rc == 0) {
        step = "key export";
        rc = tlsnic_keyexport(ssl, 1, &tx, &tx_len);
        if (rc == 0)
            rc = tlsnic_keyexport(ssl, 0, &rx, &rx_len);
        snprintf(version, sizeof(version), "%s", SSL_get_version(ssl));
        snprintf(cipher, sizeof(cipher), "%s", tlsnic_cipher_name(rx.info.cipher_type));
    }
    SSL_free(ssl); /* without a word more on the socket */
    if (rc == 0) {
        step = "TCP_ULP/TLS_TX/TLS_RX";
        if (tlsnic_setsockopt(fd, SOL_TCP, TCP_ULP, "tls", sizeof("tls")) < 0 ||
            tlsnic_setsockopt(fd, SOL_TLS, TLS_TX, &tx, (socklen_t)tx_len) < 0 ||
            tlsnic_setsockopt(fd, SOL_TLS, TLS_RX, &rx, (socklen_t)rx_len) < 0)
            rc = -errno;
        mode_text(fd, TLSNIC_DIR_TX, tx_mode, sizeof(tx_mode));
        mode_text(fd, TLSNIC_DIR_RX, rx_mode, sizeof(rx_mode));
    }
    OPENSSL_cleanse(&tx, sizeof(tx));
    OPENSSL_cleanse(&rx, sizeof(rx));
    if (rc == 0) {
        step = "request";
        char req[1100];
        int n = snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\n\r\n", o.path);
        if (tlsnic_send(fd, req, (size_t)n, MSG_NOSIGNAL) != n)
            rc = -errno;
    }
    if (rc == 0) {
        step = "response";
        rc = read_response(fd, out_fd, o.rate, &status, &body);
    }
    double took = now_s() - start;
    if (fd >= 0)
        tlsnic_close(fd);
    int stats_err = tlsnic_write_host_stats();
    if (stats_err < 0)
        fprintf(stderr, "tlsnic get: TLSNIC_STATS_FILE: %s\n", strerror(-stats_err));
    if (out_fd >= 0 && close(out_fd) < 0 && rc == 0)
        rc = -errno;
    printf("tlsnic get: %s:%s %s %s, TX %s, RX %s: ", o.addr, o.port, version, cipher, tx_mode,
           rx_mode);
    if (status)
        printf("%d, %lld bytes in %.2f s (%.0f Mbit/s)", status, body, took,
               took > 0 ? (double)body * 8 / took / 1e6 : 0.0);
    if (rc < 0)
        printf("%sFAILED at %s: %s", status ? "; " : "", step, strerror(-rc));
    printf("\n");
    ERR_clear_error();
    SSL_CTX_free(ctx);
    return rc == 0 && status == 200 ? 0 : 1;
}
