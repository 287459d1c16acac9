/*
 * bench_host: what the host pays to send, per byte, over loopback TCP.
 *
 * For each record size (1457, 4096, 16384 bytes of plaintext per write) it measures, in one
 * run, the sending thread's CPU time (user + system, CLOCK_THREAD_CPUTIME_ID) to push the
 * same number of bytes through:
 *   tcp      plain write(2), no TLS;
 *   ssl      OpenSSL SSL_write (libssl's own record layer), one record per write;
 *   tlsnic   tlsnic_send in software mode, one record per write;
 * over a connected loopback TCP pair whose other end a second thread drains (it does not
 * decrypt: only the sender is measured). Both TLS variants use the keys of one real
 * handshake (tls_pair, TLS 1.2 AES-128-GCM as in the paper, or --tls13). Repetitions are
 * interleaved and the best of each variant counts; the ratios are the result, absolute
 * numbers are noise on a shared machine.
 *
 * Usage: bench_host [--mb N] [--reps N] [--tls13] [--quick]
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include "tcp_pair.h"
#include "tls_pair.h"
#include "tlsnic/keyexport.h"
#include "tlsnic/ktls.h"

enum variant { V_TCP, V_SSL, V_TLSNIC, N_VARIANTS };
static const char *const vnames[N_VARIANTS] = {"tcp", "ssl", "tlsnic"};

struct drainer {
    int fd;
    volatile int stop;
    pthread_t t;
};

static void *drain(void *arg)
{
    struct drainer *d = arg;
    static uint8_t buf[1 << 18];
    while (!d->stop) {
        ssize_t n = read(d->fd, buf, sizeof(buf));
        if (n <= 0 && errno != EAGAIN && errno != EINTR)
            break;
    }
    return NULL;
}

static double thread_cpu(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

struct conn {
    struct tls_pair p;
    struct drainer d;
    int fd; /* the sender's fd (the client's end) */
};

static int conn_new(struct conn *c, enum variant v, int version)
{
    int fds[2];
    memset(c, 0, sizeof(*c));
    if (tcp_pair(fds) < 0)
        return -1;
    struct timeval tv = {.tv_sec = 30};
    setsockopt(fds[0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fds[1], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fds[0], SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    int pair_fds[2] = {fds[1], fds[0]};
    if (tls_pair_new(&c->p, version, TLS_CIPHER_AES_GCM_128, pair_fds) < 0)
        return -1;
    c->fd = c->p.client_fd;
    if (v == V_TLSNIC) {
        union tlsnic_crypto_info ci;
        size_t len;
        if (tlsnic_keyexport(c->p.client, 1, &ci, &len) < 0 ||
            tlsnic_setsockopt(c->fd, SOL_TCP, TCP_ULP, "tls", 4) < 0 ||
            tlsnic_setsockopt(c->fd, SOL_TLS, TLS_TX, &ci, (socklen_t)len) < 0)
            return -1;
    }
    c->d.fd = c->p.server_fd;
    pthread_create(&c->d.t, NULL, drain, &c->d);
    return 0;
}

static void conn_free(struct conn *c)
{
    c->d.stop = 1;
    shutdown(c->p.client_fd, SHUT_WR);
    pthread_join(c->d.t, NULL);
    tlsnic_fd_forget(c->fd);
    tls_pair_free(&c->p);
}

/* CPU seconds of this thread to send total bytes in writes of rec bytes; < 0 on error. */
static double run(enum variant v, int version, size_t rec, size_t total)
{
    static uint8_t buf[16384];
    memset(buf, 0xa5, sizeof(buf));
    struct conn c;
    if (conn_new(&c, v, version) < 0) {
        fprintf(stderr, "bench_host: setup failed for %s\n", vnames[v]);
        return -1;
    }
    double t0 = thread_cpu();
    size_t sent = 0;
    while (sent < total) {
        ssize_t n;
        switch (v) {
        case V_TCP: n = write(c.fd, buf, rec); break;
        case V_SSL: n = SSL_write(c.p.client, buf, (int)rec); break;
        default: n = tlsnic_send(c.fd, buf, rec, 0); break;
        }
        if (n <= 0) {
            fprintf(stderr, "bench_host: %s write failed\n", vnames[v]);
            conn_free(&c);
            return -1;
        }
        sent += (size_t)n;
    }
    double t = thread_cpu() - t0;
    conn_free(&c);
    return t;
}

int main(int argc, char **argv)
{
    size_t mb = 256;
    int reps = 5, version = TLS1_2_VERSION;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--mb") && i + 1 < argc)
            mb = (size_t)atol(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
            reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--tls13"))
            version = TLS1_3_VERSION;
        else if (!strcmp(argv[i], "--quick")) {
            mb = 4;
            reps = 1;
        } else {
            fprintf(stderr, "usage: %s [--mb N] [--reps N] [--tls13] [--quick]\n", argv[0]);
            return 2;
        }
    }
    if (mb < 1 || reps < 1 || reps > 100)
        return 2;
    const size_t sizes[] = {1457, 4096, 16384};
    const size_t total = mb * 1000 * 1000;
    printf("bench_host: sender CPU per byte over loopback TCP, %zu MB per run, best of %d, "
           "%s AES-128-GCM\n\n",
           mb, reps, version == TLS1_3_VERSION ? "TLS 1.3" : "TLS 1.2");
    printf("| record | tcp ns/B | ssl ns/B | tlsnic ns/B | tlsnic/ssl | tlsnic/tcp | ssl/tcp |\n");
    printf("|-------:|---------:|---------:|------------:|-----------:|-----------:|--------:|\n");
    int failed = 0;
    for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
        double best[N_VARIANTS];
        for (int v = 0; v < N_VARIANTS; v++)
            best[v] = 1e30;
        for (int r = 0; r < reps; r++) {
            for (int k = 0; k < N_VARIANTS; k++) {
                enum variant v = (enum variant)((k + r) % N_VARIANTS); /* rotate the order */
                double t = run(v, version, sizes[s], total);
                if (t < 0) {
                    failed = 1;
                    continue;
                }
                if (t < best[v])
                    best[v] = t;
            }
        }
        double ns[N_VARIANTS];
        for (int v = 0; v < N_VARIANTS; v++)
            ns[v] = best[v] * 1e9 / (double)total;
        printf("| %6zu | %8.3f | %8.3f | %11.3f | %10.2f | %10.2f | %7.2f |\n", sizes[s],
               ns[V_TCP], ns[V_SSL], ns[V_TLSNIC], ns[V_TLSNIC] / ns[V_SSL],
               ns[V_TLSNIC] / ns[V_TCP], ns[V_SSL] / ns[V_TCP]);
    }
    printf("\nTarget: tlsnic/ssl <= 1.\n");
    return failed;
}
