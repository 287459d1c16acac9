/*
 * tlsnic-devxfer: TLS records encrypted by tlsnicd's device, checked by a peer that
 * decrypts them with OpenSSL's EVP (not with tlsnic's record layer).
 *
 *   tlsnic-devxfer send ADDR PORT BYTES CTL_PATH [TIMEOUT_S]
 *       connects, offloads TX of the socket to the daemon at CTL_PATH (TLS 1.2,
 *       AES-128-GCM, a fixed test key, from the socket's next TCP sequence number, read
 *       with TCP_REPAIR), frames BYTES of content as device-mode records (header,
 *       explicit nonce, plaintext, zeroed tag room; tlsnic's simhost framing), keeps them
 *       in a shared-memory record store until acknowledged, and sends the stream in the
 *       clear: the device must encrypt it. Prints "sent BYTES sha256 HEX records N".
 *   tlsnic-devxfer recv ADDR PORT [TIMEOUT_S]
 *       reads the whole stream, opens every record with EVP AES-128-GCM (nonce = salt ||
 *       explicit nonce, AAD = sequence || header), prints "received BYTES sha256 HEX
 *       records N bad M".
 *
 * With DEVXFER_READD=1, a watcher thread notices the daemon going away (SIGKILL) and,
 * once a daemon listens again, re-adds the flow from the first record the peer has not
 * fully acknowledged (its TCP sequence and record number), with the same store, as the
 * host socket layer must after a device restart; it prints "re-added at record K".
 *
 * Every record's content starts with TLSNIC-CANARY-PLAINTEXT, so a capture of the wire
 * can be searched for plaintext. The run is bounded by alarm(TIMEOUT_S) (default 120).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <linux/tls.h>
#include <netinet/in.h>
#include <linux/tcp.h> /* struct tcp_info with tcpi_bytes_acked, TCP_REPAIR */
#include <openssl/evp.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tlsnic/ctl_client.h"
#include "xfer_net.h"
#include "tlsnic/record.h"
#include "tlsnic/shm_writer.h"
#include "tlsnic/wire.h"

#define CONTENT_PER_RECORD 4096
#define REC_OVERHEAD (5 + 8 + 16)
#define REC_LEN (CONTENT_PER_RECORD + REC_OVERHEAD)
#define STORE_SLOTS 2048
#define CANARY "TLSNIC-CANARY-PLAINTEXT"

static const uint8_t test_key[16] = {0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77,
                                     0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff};
static const uint8_t test_salt[4] = {0xca, 0xfe, 0xba, 0xbe};

static void print_hex(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        printf("%02x", p[i]);
}

/* Content of record i: the canary, then a fixed pseudo-random stream. */
static void record_content(uint64_t i, uint8_t *out, size_t len)
{
    uint64_t x = 0x9e3779b97f4a7c15ull ^ (i * 0xbf58476d1ce4e5b9ull);
    for (size_t b = 0; b < len; b++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out[b] = (uint8_t)x;
    }
    memcpy(out, CANARY, sizeof(CANARY) - 1);
}

/* The socket's next send sequence number (TCP_REPAIR, CAP_NET_ADMIN). */
static int send_seq(int fd, uint32_t *seq)
{
    int on = TCP_REPAIR_ON, off = TCP_REPAIR_OFF_NO_WP, queue = TCP_SEND_QUEUE;
    if (setsockopt(fd, IPPROTO_TCP, TCP_REPAIR, &on, sizeof(on)) < 0)
        return -errno;
    socklen_t len = sizeof(*seq);
    int err = 0;
    if (setsockopt(fd, IPPROTO_TCP, TCP_REPAIR_QUEUE, &queue, sizeof(queue)) < 0 ||
        getsockopt(fd, IPPROTO_TCP, TCP_QUEUE_SEQ, seq, &len) < 0)
        err = -errno;
    if (setsockopt(fd, IPPROTO_TCP, TCP_REPAIR, &off, sizeof(off)) < 0 && err == 0)
        err = -errno;
    return err;
}

static uint64_t bytes_acked(int fd)
{
    struct tcp_info ti;
    socklen_t tl = sizeof(ti);
    memset(&ti, 0, sizeof(ti));
    getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &tl);
    return ti.tcpi_bytes_acked;
}

struct readder {
    struct tlsnic_dev *dev;
    int sockfd;
    uint32_t isn;
    const struct tlsnic_rec_store *store;
    volatile int done;
};

static int add_flow(struct tlsnic_dev *dev, int s, uint32_t start_seq, uint64_t rec_seq,
                    const struct tlsnic_rec_store *store)
{
    struct tls12_crypto_info_aes_gcm_128 ci = {.info = {.version = TLS_1_2_VERSION,
                                                        .cipher_type = TLS_CIPHER_AES_GCM_128}};
    memcpy(ci.key, test_key, sizeof(ci.key));
    memcpy(ci.salt, test_salt, sizeof(ci.salt));
    for (int i = 0; i < 8; i++) /* big-endian, as the kernel's crypto_info carries it */
        ci.rec_seq[i] = (uint8_t)(rec_seq >> (56 - 8 * i));
    return dev->ops->add(dev, s, NULL, TLSNIC_DIR_TX, &ci, sizeof(ci), start_seq, store);
}

static void *readd_watch(void *arg)
{
    struct readder *r = arg;
    while (!r->done) {
        struct pollfd pfd = {.fd = tlsnic_ctl_client_fd(r->dev), .events = POLLIN};
        if (poll(&pfd, 1, 20) <= 0)
            continue;
        fprintf(stderr, "devxfer: tlsnicd went away\n");
        int err = -1;
        uint64_t k = 0;
        for (int tries = 0; tries < 400 && err != 0 && !r->done; tries++) { /* <= 20 s */
            err = tlsnic_ctl_client_reconnect(r->dev);
            if (err == 0) {
                /* The first record not fully acknowledged: TCP resends from inside it. */
                k = bytes_acked(r->sockfd) / REC_LEN;
                err = add_flow(r->dev, r->sockfd, r->isn + (uint32_t)(k * REC_LEN), k, r->store);
            }
            if (err != 0)
                usleep(50000);
        }
        if (err == 0)
            fprintf(stderr, "devxfer: re-added at record %llu\n", (unsigned long long)k);
        else
            fprintf(stderr, "devxfer: could not re-add: %s\n", strerror(err < 0 ? -err : EIO));
    }
    return NULL;
}

static int do_send(const char *addr, const char *port, unsigned long long bytes, const char *ctl)
{
    int s = xfer_connect("devxfer", addr, port);
    if (s < 0)
        return 1;
    uint32_t isn;
    int err = send_seq(s, &isn);
    if (err < 0) {
        fprintf(stderr, "devxfer: TCP_QUEUE_SEQ: %s\n", strerror(-err));
        return 1;
    }
    size_t n_records = (size_t)((bytes + CONTENT_PER_RECORD - 1) / CONTENT_PER_RECORD);
    tlsnic_simhost *host;
    tlsnic_shm_writer *store;
    if (tlsnic_simhost_new(&host, TLS_1_2_VERSION, TLS_CIPHER_AES_GCM_128, 0, isn,
                           n_records * REC_LEN) < 0 ||
        tlsnic_shm_writer_new(&store, STORE_SLOTS, 0) < 0) {
        fprintf(stderr, "devxfer: out of memory\n");
        return 1;
    }
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    EVP_DigestInit_ex(md, EVP_sha256(), NULL);
    static uint8_t content[CONTENT_PER_RECORD];
    unsigned long long framed = 0;
    for (size_t i = 0; i < n_records; i++) {
        size_t len = bytes - framed < CONTENT_PER_RECORD ? (size_t)(bytes - framed) : CONTENT_PER_RECORD;
        record_content(i, content, len);
        EVP_DigestUpdate(md, content, len);
        if (tlsnic_simhost_write(host, TLSNIC_CT_APPLICATION_DATA, content, len) < 0) {
            fprintf(stderr, "devxfer: framing failed\n");
            return 1;
        }
        framed += len;
    }
    size_t stream_len;
    const uint8_t *stream = tlsnic_simhost_stream(host, &stream_len);

    struct tlsnic_dev *dev = NULL;
    err = tlsnic_ctl_client_open(ctl, 0, &dev);
    if (err == 0)
        err = add_flow(dev, s, isn, 0, tlsnic_shm_writer_store(store));
    if (err < 0) {
        fprintf(stderr, "devxfer: offload: %s (%s)\n", strerror(-err),
                dev == NULL ? "no daemon" : tlsnic_ctl_client_last_error(dev));
        return 1;
    }
    static struct readder readder;
    pthread_t watcher;
    int watching = getenv("DEVXFER_READD") != NULL;
    if (watching) {
        readder = (struct readder){.dev = dev, .sockfd = s, .isn = isn,
                                   .store = tlsnic_shm_writer_store(store)};
        if (pthread_create(&watcher, NULL, readd_watch, &readder) != 0)
            return 1;
    }

    /* Records go into the store before their bytes go to the socket; out on ACK. */
    size_t off = 0, next_rec = 0;
    while (off < stream_len) {
        uint32_t acked_seq = isn + (uint32_t)bytes_acked(s);
        tlsnic_shm_writer_release(store, acked_seq);
        size_t rec_end = off;
        while (next_rec < n_records && next_rec * REC_LEN < off + 65536) {
            size_t r_off = next_rec * REC_LEN;
            size_t r_len = stream_len - r_off < REC_LEN ? stream_len - r_off : REC_LEN;
            if (tlsnic_shm_writer_put(store, isn + (uint32_t)r_off, next_rec, stream + r_off,
                                      (uint32_t)r_len) < 0)
                break; /* store full: wait for ACKs */
            next_rec++;
        }
        rec_end = next_rec * REC_LEN < stream_len ? next_rec * REC_LEN : stream_len;
        if (rec_end <= off) {
            usleep(1000);
            continue;
        }
        ssize_t w = write(s, stream + off, rec_end - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            perror("devxfer send: write");
            return 1;
        }
        off += (size_t)w;
    }
    shutdown(s, SHUT_WR);
    char sink[4096];
    while (read(s, sink, sizeof(sink)) > 0)
        ;
    if (watching) {
        readder.done = 1;
        pthread_join(watcher, NULL);
    }
    dev->ops->del(dev, s, NULL, TLSNIC_DIR_TX);
    tlsnic_ctl_client_close(dev);
    uint8_t digest[32];
    unsigned int dl = 0;
    EVP_DigestFinal_ex(md, digest, &dl);
    printf("sent %llu sha256 ", bytes);
    print_hex(digest, dl);
    printf(" records %zu\n", n_records);
    EVP_MD_CTX_free(md);
    tlsnic_shm_writer_free(store);
    tlsnic_simhost_free(host);
    close(s);
    return 0;
}

/* Opens one TLS 1.2 AES-128-GCM record in place; returns the content length or -1. */
static long open_record(EVP_CIPHER_CTX *c, uint64_t seq, uint8_t *rec, size_t len)
{
    if (len < REC_OVERHEAD || rec[0] != TLSNIC_CT_APPLICATION_DATA || rec[1] != 3 || rec[2] != 3)
        return -1;
    size_t plen = len - REC_OVERHEAD;
    uint8_t nonce[12], aad[13];
    memcpy(nonce, test_salt, 4);
    memcpy(nonce + 4, rec + 5, 8);
    for (int i = 0; i < 8; i++)
        aad[i] = (uint8_t)(seq >> (56 - 8 * i));
    aad[8] = rec[0];
    aad[9] = 3;
    aad[10] = 3;
    aad[11] = (uint8_t)(plen >> 8);
    aad[12] = (uint8_t)plen;
    int out = 0, fin = 0;
    if (EVP_DecryptInit_ex(c, EVP_aes_128_gcm(), NULL, NULL, NULL) != 1 ||
        EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, 12, NULL) != 1 ||
        EVP_DecryptInit_ex(c, NULL, NULL, test_key, nonce) != 1 ||
        EVP_DecryptUpdate(c, NULL, &out, aad, sizeof(aad)) != 1 ||
        EVP_DecryptUpdate(c, rec + 13, &out, rec + 13, (int)plen) != 1 ||
        EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, 16, rec + 13 + plen) != 1 ||
        EVP_DecryptFinal_ex(c, rec + 13 + out, &fin) != 1)
        return -1;
    return (long)plen;
}

static int do_recv(const char *addr, const char *port)
{
    int ls;
    int s = xfer_accept_one("devxfer", addr, port, &ls);
    if (s < 0)
        return 1;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    EVP_DigestInit_ex(md, EVP_sha256(), NULL);
    static uint8_t buf[2 * REC_LEN];
    size_t have = 0;
    uint64_t seq = 0, bad = 0;
    unsigned long long total = 0;
    for (;;) {
        ssize_t n = read(s, buf + have, sizeof(buf) - have);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return 1;
        have += (size_t)n;
        /* Every complete record in the buffer; the header says how long it is. */
        size_t at = 0;
        while (have - at >= 5) {
            size_t rlen = 5 + ((size_t)buf[at + 3] << 8 | buf[at + 4]);
            if (rlen > REC_LEN) { /* not a record we sent: the stream is lost */
                fprintf(stderr, "devxfer: record %llu claims %zu bytes\n", (unsigned long long)seq, rlen);
                return 1;
            }
            if (have - at < rlen)
                break;
            long plen = open_record(c, seq, buf + at, rlen);
            if (plen < 0)
                bad++;
            else {
                EVP_DigestUpdate(md, buf + at + 13, (size_t)plen);
                total += (unsigned long long)plen;
            }
            seq++;
            at += rlen;
        }
        memmove(buf, buf + at, have - at);
        have -= at;
        if (n == 0)
            break;
    }
    uint8_t digest[32];
    unsigned int dl = 0;
    EVP_DigestFinal_ex(md, digest, &dl);
    printf("received %llu sha256 ", total);
    print_hex(digest, dl);
    printf(" records %llu bad %llu leftover %zu\n", (unsigned long long)seq,
           (unsigned long long)bad, have);
    EVP_CIPHER_CTX_free(c);
    EVP_MD_CTX_free(md);
    close(s);
    close(ls);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 4 && strcmp(argv[1], "recv") == 0) {
        alarm(argc >= 5 ? (unsigned)atoi(argv[4]) : 120);
        return do_recv(argv[2], argv[3]);
    }
    if (argc >= 6 && strcmp(argv[1], "send") == 0) {
        alarm(argc >= 7 ? (unsigned)atoi(argv[6]) : 120);
        return do_send(argv[2], argv[3], strtoull(argv[4], NULL, 10), argv[5]);
    }
    fprintf(stderr, "usage: tlsnic-devxfer recv ADDR PORT [TIMEOUT_S]\n"
                    "       tlsnic-devxfer send ADDR PORT BYTES CTL_PATH [TIMEOUT_S]\n");
    return 2;
}
