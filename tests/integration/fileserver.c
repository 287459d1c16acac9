/*
 * tlsnic-fileserver: an unmodified TLS file server for the lifetime tests. It calls only
 * OpenSSL (kTLS switched on) and libc, so under libtlsnic-preload.so its kTLS socket calls
 * land in tlsnic exactly as an unmodified program's would. It serves one connection: one
 * request (read up to its blank line), then "HTTP/1.0 200 ok" and the file, written with
 * SSL_write in 16 KB pieces; and it ends in one of the ways a process ends:
 *
 *   tlsnic-fileserver ADDR PORT CERT KEY FILE [--tls12] [--exit-at N] [--fork-close-at N]
 *
 *   --exit-at N        after N bytes of the file: exit(0) with the connection open (no
 *                      close, no SSL_shutdown: the kernel closes the descriptor)
 *   --fork-close-at N  after N bytes: fork; the child close(2)s its copy of the connection's
 *                      descriptor (what a daemonizing child does with what it inherited)
 *                      and exits; the parent waits for it, then serves the rest
 *   (otherwise)        the whole file, SSL_shutdown, then close(2), timed: it prints
 *                      "close_us N" (with the peer still reading: unacknowledged bytes)
 *
 * It prints "ktls_send 1" once OpenSSL has switched the connection's TX to kTLS, and
 * "served N" before it closes or exits. Exit 0, or 1 on any error.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PIECE 16384

static int die(const char *what)
{
    fprintf(stderr, "fileserver: %s: %s\n", what, errno ? strerror(errno) : "");
    ERR_print_errors_fp(stderr);
    exit(1);
}

static long long parse_bytes(const char *text)
{
    char *end;
    long long v = strtoll(text, &end, 10);
    if (end == text || *end != '\0' || v < 0)
        die("bad byte count");
    return v;
}

static long long now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int main(int argc, char **argv)
{
    if (argc < 6) {
        fprintf(stderr, "usage: tlsnic-fileserver ADDR PORT CERT KEY FILE [--tls12] "
                        "[--exit-at N] [--fork-close-at N]\n");
        return 2;
    }
    const char *addr = argv[1], *cert = argv[3], *key = argv[4], *path = argv[5];
    int port = atoi(argv[2]), tls12 = 0;
    long long exit_at = -1, fork_close_at = -1;
    for (int i = 6; i < argc; i++) {
        if (strcmp(argv[i], "--tls12") == 0)
            tls12 = 1;
        else if (strcmp(argv[i], "--exit-at") == 0 && i + 1 < argc)
            exit_at = parse_bytes(argv[++i]);
        else if (strcmp(argv[i], "--fork-close-at") == 0 && i + 1 < argc)
            fork_close_at = parse_bytes(argv[++i]);
        else
            die("unknown option");
    }
    FILE *file = fopen(path, "rb");
    if (file == NULL)
        die(path);

    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL || SSL_CTX_use_certificate_file(ctx, cert, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1)
        die("certificate");
    SSL_CTX_set_options(ctx, SSL_OP_ENABLE_KTLS);
    int version = tls12 ? TLS1_2_VERSION : TLS1_3_VERSION;
    SSL_CTX_set_min_proto_version(ctx, version);
    SSL_CTX_set_max_proto_version(ctx, version);
    if (tls12)
        SSL_CTX_set_cipher_list(ctx, "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256");
    else
        SSL_CTX_set_ciphersuites(ctx, "TLS_AES_128_GCM_SHA256");

    int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int on = 1;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (ls < 0 || inet_pton(AF_INET, addr, &sa.sin_addr) != 1 ||
        setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) < 0 ||
        bind(ls, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(ls, 4) < 0)
        die("listen");
    int fd = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0)
        die("accept");
    close(ls);
    SSL *ssl = SSL_new(ctx);
    if (ssl == NULL || SSL_set_fd(ssl, fd) != 1 || SSL_accept(ssl) != 1)
        die("handshake");
    printf("ktls_send %d\n", BIO_get_ktls_send(SSL_get_wbio(ssl)) ? 1 : 0);
    fflush(stdout);

    /* The request: read until its blank line (bounded by the buffer). */
    char req[4096];
    size_t have = 0;
    while (have < sizeof(req) - 1) {
        int n = SSL_read(ssl, req + have, (int)(sizeof(req) - 1 - have));
        if (n <= 0)
            die("request");
        have += (size_t)n;
        req[have] = '\0';
        if (strstr(req, "\r\n\r\n") != NULL)
            break;
    }
    static const char header[] = "HTTP/1.0 200 ok\r\nContent-type: text/plain\r\n\r\n";
    if (SSL_write(ssl, header, (int)strlen(header)) != (int)strlen(header))
        die("write header");

    static char piece[PIECE];
    long long served = 0;
    for (;;) {
        size_t n = fread(piece, 1, sizeof(piece), file);
        if (n == 0)
            break;
        if (SSL_write(ssl, piece, (int)n) != (int)n)
            die("write");
        served += (long long)n;
        if (exit_at >= 0 && served >= exit_at) {
            printf("served %lld\n", served);
            fflush(stdout);
            exit(0); /* the connection is left open: the kernel closes the descriptor */
        }
        if (fork_close_at >= 0 && served >= fork_close_at) {
            fork_close_at = -1;
            fflush(stdout);
            pid_t child = fork();
            if (child < 0)
                die("fork");
            if (child == 0) {
                close(fd); /* the child's copy: the parent's connection must not notice */
                _exit(0);
            }
            int status = 0;
            if (waitpid(child, &status, 0) != child || !WIFEXITED(status) ||
                WEXITSTATUS(status) != 0)
                die("child");
            printf("child closed its copy at %lld\n", served);
            fflush(stdout);
        }
    }
    printf("served %lld\n", served);
    SSL_shutdown(ssl);
    long long t0 = now_us();
    if (close(fd) != 0)
        die("close");
    long long t1 = now_us();
    printf("close_us %lld\n", t1 - t0);
    fflush(stdout);
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    fclose(file);
    return 0;
}
