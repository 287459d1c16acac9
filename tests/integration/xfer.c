/*
 * tlsnic-xfer: a bulk TCP transfer with a digest at both ends, for the daemon tests.
 *
 *   tlsnic-xfer recv ADDR PORT [TIMEOUT_S]   listens, takes one connection, reads to EOF,
 *                                            prints "received BYTES sha256 HEX"
 *   tlsnic-xfer send ADDR PORT BYTES [TIMEOUT_S]
 *                                            sends BYTES of a fixed pseudo-random stream,
 *                                            prints "sent BYTES sha256 HEX retrans N
 *                                            seconds S mbit_s R" (retransmissions from
 *                                            TCP_INFO of the sending socket), and
 *                                            "xor5a_sha256 HEX": the digest of the stream
 *                                            with every byte XORed with 0x5a (what the
 *                                            XOR test hook of tlsnicd delivers)
 *
 *   tlsnic-xfer sendraw / recvraw ...        the same without data generation or digests
 *                                            (zeros), to measure the path, not this tool
 *
 * With XFER_CTL=PATH in the environment, send offloads its socket's TX direction to the
 * tlsnicd listening there (a dummy AES-128-GCM crypto_info) right after connecting, and
 * a watcher thread re-adds it whenever the daemon goes away and comes back, the way the
 * host socket layer will (XFER_READD_DELAY_MS waits that long first, so that a restarted
 * daemon's fence is seen to work). It prints "re-added" lines on stderr.
 *
 * The whole run is bounded by TIMEOUT_S (default 120) through alarm(): a stuck transfer
 * fails the test instead of hanging it. recv prints "listening" on stderr once bound.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <linux/tls.h>
#include <openssl/evp.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "tlsnic/ctl_client.h"
#include "xfer_net.h"

#define CHUNK 65536

static void print_digest(const char *verb, unsigned long long bytes, EVP_MD_CTX *md)
{
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_DigestFinal_ex(md, digest, &len);
    printf("%s %llu sha256 ", verb, bytes);
    for (unsigned int i = 0; i < len; i++)
        printf("%02x", digest[i]);
}

static int raw_mode; /* no generator, no digests */

static int do_recv(const char *addr, const char *port)
{
    int ls;
    int s = xfer_accept_one("xfer", addr, port, &ls);
    if (s < 0)
        return 1;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (md == NULL || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1)
        return 1;
    static unsigned char buf[CHUNK];
    unsigned long long total = 0;
    for (;;) {
        ssize_t n = read(s, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            perror("xfer recv: read");
            return 1;
        }
        if (n == 0)
            break;
        if (!raw_mode)
            EVP_DigestUpdate(md, buf, (size_t)n);
        total += (unsigned long long)n;
    }
    print_digest("received", total, md);
    printf("\n");
    EVP_MD_CTX_free(md);
    close(s);
    close(ls);
    return 0;
}

struct offload {
    struct tlsnic_dev *dev;
    int sockfd;
    int readd_delay_ms;
    volatile int done;
    pthread_t thread;
};

static int offload_add(struct offload *o)
{
    struct tls12_crypto_info_aes_gcm_128 ci;
    memset(&ci, 0x42, sizeof(ci));
    ci.info.version = TLS_1_2_VERSION;
    ci.info.cipher_type = TLS_CIPHER_AES_GCM_128;
    return o->dev->ops->add(o->dev, o->sockfd, NULL, TLSNIC_DIR_TX, &ci, sizeof(ci), 0, NULL);
}

/* Watches the control connection; after the daemon restarts, reconnects and re-adds. */
static void *offload_watch(void *arg)
{
    struct offload *o = arg;
    while (!o->done) {
        struct pollfd pfd = {.fd = tlsnic_ctl_client_fd(o->dev), .events = POLLIN};
        if (poll(&pfd, 1, 20) <= 0)
            continue;
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        fprintf(stderr, "xfer: tlsnicd went away\n");
        usleep((useconds_t)o->readd_delay_ms * 1000);
        int err = -1;
        for (int tries = 0; tries < 400 && err != 0 && !o->done; tries++) { /* <= 20 s */
            err = tlsnic_ctl_client_reconnect(o->dev);
            if (err == 0)
                err = offload_add(o);
            if (err != 0)
                usleep(50000);
        }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
        if (err == 0)
            fprintf(stderr, "xfer: re-added after %ld ms\n", ms);
        else
            fprintf(stderr, "xfer: could not re-add: %s\n", strerror(err < 0 ? -err : EIO));
    }
    return NULL;
}

static int offload_start(struct offload *o, int sockfd)
{
    const char *path = getenv("XFER_CTL");
    if (path == NULL)
        return 0;
    const char *delay = getenv("XFER_READD_DELAY_MS");
    o->sockfd = sockfd;
    o->readd_delay_ms = delay != NULL ? atoi(delay) : 0;
    int err = tlsnic_ctl_client_open(path, 0, &o->dev);
    if (err == 0)
        err = offload_add(o);
    if (err < 0) {
        fprintf(stderr, "xfer: offload via %s: %s (%s)\n", path, strerror(-err),
                o->dev != NULL ? tlsnic_ctl_client_last_error(o->dev) : "");
        return err;
    }
    fprintf(stderr, "xfer: offloaded\n");
    return -pthread_create(&o->thread, NULL, offload_watch, o);
}

static void offload_stop(struct offload *o)
{
    if (o->dev == NULL)
        return;
    o->done = 1;
    pthread_join(o->thread, NULL);
    o->dev->ops->del(o->dev, o->sockfd, NULL, TLSNIC_DIR_TX);
    tlsnic_ctl_client_close(o->dev);
}

/* A fixed stream (xorshift64*), so both ends and the test agree without a file. */
static void fill(unsigned char *buf, size_t len, uint64_t *state)
{
    for (size_t i = 0; i < len; i += 8) {
        uint64_t x = *state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        *state = x;
        uint64_t v = x * 0x2545f4914f6cdd1dull;
        size_t n = len - i < 8 ? len - i : 8;
        memcpy(buf + i, &v, n);
    }
}

static int do_send(const char *addr, const char *port, unsigned long long bytes)
{
    int s = xfer_connect("xfer", addr, port);
    if (s < 0)
        return 1;
    static struct offload offload;
    if (offload_start(&offload, s) < 0)
        return 1;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    EVP_MD_CTX *md_xor = EVP_MD_CTX_new();
    if (md == NULL || md_xor == NULL || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1 ||
        EVP_DigestInit_ex(md_xor, EVP_sha256(), NULL) != 1)
        return 1;
    static unsigned char buf[CHUNK], xbuf[CHUNK];
    uint64_t state = 0x9e3779b97f4a7c15ull;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    unsigned long long sent = 0;
    while (sent < bytes) {
        size_t n = bytes - sent < CHUNK ? (size_t)(bytes - sent) : CHUNK;
        if (!raw_mode) {
            fill(buf, n, &state);
            EVP_DigestUpdate(md, buf, n);
            for (size_t i = 0; i < n; i++)
                xbuf[i] = buf[i] ^ 0x5a;
            EVP_DigestUpdate(md_xor, xbuf, n);
        }
        size_t off = 0;
        while (off < n) {
            ssize_t w = write(s, buf + off, n - off);
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0) {
                perror("xfer send: write");
                return 1;
            }
            off += (size_t)w;
        }
        sent += n;
    }
    /* Done only when the peer has read everything and closed: wait for its FIN. */
    shutdown(s, SHUT_WR);
    while (read(s, buf, sizeof(buf)) > 0)
        ;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    offload_stop(&offload);
    struct tcp_info ti;
    socklen_t tl = sizeof(ti);
    memset(&ti, 0, sizeof(ti));
    getsockopt(s, IPPROTO_TCP, TCP_INFO, &ti, &tl);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    print_digest("sent", sent, md);
    printf(" retrans %u seconds %.3f mbit_s %.1f ", ti.tcpi_total_retrans, secs,
           secs > 0 ? (double)sent * 8 / secs / 1e6 : 0.0);
    print_digest("xor5a", sent, md_xor);
    printf("\n");
    EVP_MD_CTX_free(md);
    EVP_MD_CTX_free(md_xor);
    close(s);
    return 0;
}

int main(int argc, char **argv)
{
    const char *verb = argc >= 2 ? argv[1] : "";
    if (strcmp(verb, "sendraw") == 0 || strcmp(verb, "recvraw") == 0) {
        raw_mode = 1;
        verb = verb[0] == 's' ? "send" : "recv";
    }
    if (argc >= 4 && strcmp(verb, "recv") == 0) {
        alarm(argc >= 5 ? (unsigned)atoi(argv[4]) : 120);
        return do_recv(argv[2], argv[3]);
    }
    if (argc >= 5 && strcmp(verb, "send") == 0) {
        alarm(argc >= 6 ? (unsigned)atoi(argv[5]) : 120);
        return do_send(argv[2], argv[3], strtoull(argv[4], NULL, 10));
    }
    fprintf(stderr, "usage: tlsnic-xfer recv|recvraw ADDR PORT [TIMEOUT_S]\n"
                    "       tlsnic-xfer send|sendraw ADDR PORT BYTES [TIMEOUT_S]\n");
    return 2;
}
