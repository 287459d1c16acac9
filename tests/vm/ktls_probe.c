/*
 * ktls_probe kernel|tlsnic: asks a kTLS socket (the kernel's, or tlsnic's socket layer) the
 * questions whose answers are known to differ or were unclear (the socket-layer issue's
 * list), and prints one line per question: "name: answer". Not a test: it asserts nothing,
 * so that it can be run in the guest for both and the two outputs compared (diff), which
 * makes the kernel's answer the reference for each:
 *
 *   vm/run.sh -- sh -c 'build/tests/vm/ktls_probe kernel > k; build/tests/vm/ktls_probe tlsnic > t; diff k t'
 */
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sockapi.h"
#include "tcp_pair.h"
#include "tlsnic/ktls.h"
#include "tlsnic/record.h"

#ifndef TLS_CIPHER_ARIA_GCM_128
#define TLS_CIPHER_ARIA_GCM_128 57
#endif
#define PROBE_TLS_TX_MAX_PAYLOAD_LEN 5 /* Linux 6.15 */

static const struct sockapi *api;

/* 40-byte crypto_info of the 128-bit ciphers (GCM, CCM, SM4, ARIA share the layout). */
struct info128 {
    struct tls_crypto_info info;
    uint8_t iv[8], key[16], salt[4], rec_seq[8];
};

static void info128(struct info128 *ci, uint16_t version, uint16_t cipher, uint8_t seed,
                    uint64_t rec_seq)
{
    memset(ci, 0, sizeof(*ci));
    ci->info.version = version;
    ci->info.cipher_type = cipher;
    memset(ci->key, seed, sizeof(ci->key));
    memset(ci->salt, seed + 1, sizeof(ci->salt));
    memset(ci->iv, seed + 2, sizeof(ci->iv));
    for (int i = 0; i < 8; i++)
        ci->rec_seq[i] = (uint8_t)(rec_seq >> (56 - 8 * i));
}

static char answer[256];

static const char *rc_str(long rc, int err)
{
    if (rc < 0)
        snprintf(answer, sizeof(answer), "-1 %s", strerrorname_np(err) ? strerrorname_np(err) : "?");
    else
        snprintf(answer, sizeof(answer), "%ld", rc);
    return answer;
}

#define ASK(expr)                                                                           \
    ({                                                                                      \
        errno = 0;                                                                          \
        long r_ = (long)(expr);                                                             \
        rc_str(r_, errno);                                                                  \
    })

struct pair {
    int fd, peer;
    tlsnic_rec_key *peer_tx;
};

/* A connected pair, TLS_TX and TLS_RX set on fd (TLS 1.3, AES-128-GCM unless told). */
static int pair_open(struct pair *p, uint16_t version, uint64_t tx_seq)
{
    int fds[2];
    if (tcp_pair(fds) < 0)
        return -1;
    p->fd = fds[0];
    p->peer = fds[1];
    struct info128 tx, rx;
    info128(&tx, version, TLS_CIPHER_AES_GCM_128, 0x11, tx_seq);
    info128(&rx, version, TLS_CIPHER_AES_GCM_128, 0x55, 0);
    if (api->setsockopt(p->fd, SOL_TCP, TCP_ULP, "tls", sizeof("tls")) < 0 ||
        api->setsockopt(p->fd, SOL_TLS, TLS_TX, &tx, sizeof(tx)) < 0 ||
        api->setsockopt(p->fd, SOL_TLS, TLS_RX, &rx, sizeof(rx)) < 0 ||
        tlsnic_rec_key_new(&p->peer_tx, &rx, sizeof(rx)) < 0)
        return -1;
    return 0;
}

static void pair_close(struct pair *p)
{
    api->close(p->fd);
    close(p->peer);
    tlsnic_rec_key_free(p->peer_tx);
}

static void peer_send(struct pair *p, const char *s)
{
    uint8_t rec[256];
    size_t n = 0;
    if (tlsnic_rec_seal(p->peer_tx, TLSNIC_CT_APPLICATION_DATA, (const uint8_t *)s, strlen(s), rec,
                        sizeof(rec), &n) == 0 &&
        write(p->peer, rec, n) != (ssize_t)n)
        perror("peer write");
}

static void probe_peek(void)
{
    struct pair p;
    if (pair_open(&p, TLS_1_3_VERSION, 0) < 0)
        return;
    peer_send(&p, "abc");
    peer_send(&p, "def");
    usleep(50000);
    char buf[64] = {0};
    printf("recv(MSG_PEEK) with records \"abc\", \"def\" queued: %s", ASK(api->recv(p.fd, buf, sizeof(buf), MSG_PEEK)));
    printf(" \"%s\"\n", buf);
    memset(buf, 0, sizeof(buf));
    printf("recv(6, MSG_PEEK|MSG_WAITALL) then: %s", ASK(api->recv(p.fd, buf, 6, MSG_PEEK | MSG_WAITALL)));
    printf(" \"%s\"\n", buf);
    pair_close(&p);
}

static void probe_bad_header(void)
{
    struct pair p;
    if (pair_open(&p, TLS_1_3_VERSION, 0) < 0)
        return;
    const uint8_t hdr[5] = {23, 3, 1, 0x48, 0x00}; /* version 3.1 and 18432 bytes */
    if (write(p.peer, hdr, sizeof(hdr)) != 5)
        perror("write");
    usleep(50000);
    char buf[64];
    printf("recv of a header with a bad version and a bad length: %s\n",
           ASK(api->recv(p.fd, buf, sizeof(buf), MSG_DONTWAIT)));
    printf("recv again: %s\n", ASK(api->recv(p.fd, buf, sizeof(buf), MSG_DONTWAIT)));
    pair_close(&p);
}

/* A connected pair with the ULP and TLS_TX (TLS 1.3, AES-128-GCM) on fds[0]. */
static int ulp_tx_pair(int fds[2])
{
    struct info128 tx;
    info128(&tx, TLS_1_3_VERSION, TLS_CIPHER_AES_GCM_128, 1, 0);
    if (tcp_pair(fds) < 0)
        return -1;
    api->setsockopt(fds[0], SOL_TCP, TCP_ULP, "tls", sizeof("tls"));
    api->setsockopt(fds[0], SOL_TLS, TLS_TX, &tx, sizeof(tx));
    return 0;
}

static void ulp_tx_close(int fds[2])
{
    api->close(fds[0]);
    close(fds[1]);
}

static void probe_setsockopts(void)
{
    int fds[2];
    struct info128 tx, rx;
    if (ulp_tx_pair(fds) < 0)
        return;
    info128(&rx, TLS_1_2_VERSION, TLS_CIPHER_AES_GCM_128, 2, 0);
    printf("TLS_RX TLS 1.2 after TLS_TX TLS 1.3: %s\n",
           ASK(api->setsockopt(fds[0], SOL_TLS, TLS_RX, &rx, sizeof(rx))));
    ulp_tx_close(fds);
    if (ulp_tx_pair(fds) < 0)
        return;
    info128(&rx, TLS_1_3_VERSION, TLS_CIPHER_AES_CCM_128, 2, 0);
    printf("TLS_RX AES-CCM-128 after TLS_TX AES-GCM-128: %s\n",
           ASK(api->setsockopt(fds[0], SOL_TLS, TLS_RX, &rx, sizeof(rx))));
    ulp_tx_close(fds);
    if (ulp_tx_pair(fds) < 0)
        return;
    uint64_t one8 = 1;
    printf("TLS_TX_ZEROCOPY_RO with optlen 8: %s\n",
           ASK(api->setsockopt(fds[0], SOL_TLS, TLS_TX_ZEROCOPY_RO, &one8, sizeof(one8))));
    uint16_t v = 0;
    socklen_t len = sizeof(v);
    printf("getsockopt TLS_TX_MAX_PAYLOAD_LEN (5): %s\n",
           ASK(api->getsockopt(fds[0], SOL_TLS, PROBE_TLS_TX_MAX_PAYLOAD_LEN, &v, &len)));
    ulp_tx_close(fds);

    const struct {
        const char *name;
        uint16_t version, cipher;
    } ciphers[] = {
        {"AES-CCM-128 TLS 1.2", TLS_1_2_VERSION, TLS_CIPHER_AES_CCM_128},
        {"AES-CCM-128 TLS 1.3", TLS_1_3_VERSION, TLS_CIPHER_AES_CCM_128},
        {"SM4-GCM TLS 1.3", TLS_1_3_VERSION, TLS_CIPHER_SM4_GCM},
        {"ARIA-GCM-128 TLS 1.2", TLS_1_2_VERSION, TLS_CIPHER_ARIA_GCM_128},
    };
    for (size_t i = 0; i < sizeof(ciphers) / sizeof(ciphers[0]); i++) {
        if (tcp_pair(fds) < 0)
            return;
        api->setsockopt(fds[0], SOL_TCP, TCP_ULP, "tls", sizeof("tls"));
        info128(&tx, ciphers[i].version, ciphers[i].cipher, 1, 0);
        printf("TLS_TX %s: %s\n", ciphers[i].name,
               ASK(api->setsockopt(fds[0], SOL_TLS, TLS_TX, &tx, sizeof(tx))));
        api->close(fds[0]);
        close(fds[1]);
    }
}

static void probe_rec_seq_end(void)
{
    struct pair p;
    if (pair_open(&p, TLS_1_3_VERSION, UINT64_MAX) < 0)
        return;
    printf("send with TX record sequence 2^64-1: %s", ASK(api->send(p.fd, "x", 1, 0)));
    printf(", then: %s\n", ASK(api->send(p.fd, "y", 1, 0)));
    pair_close(&p);
}

int main(int argc, char **argv)
{
    if (argc != 2 || (strcmp(argv[1], "kernel") && strcmp(argv[1], "tlsnic"))) {
        fprintf(stderr, "usage: %s kernel|tlsnic\n", argv[0]);
        return 2;
    }
    api = strcmp(argv[1], "kernel") == 0 ? &sockapi_kernel : &sockapi_tlsnic;
    const char *why = sockapi_unavailable(api);
    if (why) {
        printf("SKIP: %s\n", why);
        return 77;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    probe_peek();
    probe_bad_header();
    probe_setsockopts();
    probe_rec_seq_end();
    return 0;
}
