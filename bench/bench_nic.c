/*
 * bench_nic: what the device model costs per byte, next to raw EVP AEAD on the same
 * records, and what a TX resync costs.
 *
 * Throughput: a host stream of records (1457 / 4096 / 16384 bytes of content) is cut into
 * frames, either TSO super-frames (63712 bytes of payload, gso_size 1448, checksum left to
 * the segmenter) or MTU segments (1448 bytes, checksum offload too; the "csum" column
 * has the device compute the full TCP checksum), and run through tlsnic_nic_tx with the
 * peer's ACKs through tlsnic_nic_rx. Frames are rebuilt from the plaintext before each
 * timed batch (outside the timing), the device encrypts them in place. "raw" seals the
 * same records with libcrypto alone (EVP Init/AAD/Update/Final/tag per record), in place
 * in a fresh copy of the stream (copied outside the timing). Times are
 * CPU time of this thread; the best of --reps batches counts. Absolute numbers are noise
 * on a shared machine; the ratios are the result.
 *
 * Resync: after a 16 KB record went out in 1448-byte segments, one segment from its middle
 * is retransmitted again and again: checkpoint path vs host-store path (checkpoints off):
 * crypto bytes per retransmission (from the device's counters) and time.
 *
 * Usage: bench_nic [--quick] [--reps N] [--mb M] [--all]   (--all: all six combinations)
 *        bench_nic --micro          per-packet costs without crypto (parse, lookup, ACK, csum)
 *        bench_nic --profile-mtu    device only, MTU segments, for perf record
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <openssl/evp.h>

#include "tlsnic/frame.h"
#include "tlsnic/nic.h"
#include "tlsnic/record.h"
#include "tlsnic/wire.h"

#define ISS 100000u
#define MSS 1448
#define TSO_PAYLOAD (MSS * 44)
#define FRAME_HDR 40

struct combo {
    uint16_t version, cipher;
    const char *name;
};
static const struct combo combos[6] = {
    {TLS_1_2_VERSION, TLS_CIPHER_AES_GCM_128, "1.2 AES-128-GCM"},
    {TLS_1_3_VERSION, TLS_CIPHER_AES_GCM_128, "1.3 AES-128-GCM"},
    {TLS_1_2_VERSION, TLS_CIPHER_AES_GCM_256, "1.2 AES-256-GCM"},
    {TLS_1_3_VERSION, TLS_CIPHER_AES_GCM_256, "1.3 AES-256-GCM"},
    {TLS_1_2_VERSION, TLS_CIPHER_CHACHA20_POLY1305, "1.2 ChaCha20-Poly1305"},
    {TLS_1_3_VERSION, TLS_CIPHER_CHACHA20_POLY1305, "1.3 ChaCha20-Poly1305"},
};

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

#define CHECK(x)                                                                              \
    do {                                                                                      \
        if ((x) < 0) {                                                                        \
            fprintf(stderr, "bench_nic: %s failed at line %d\n", #x, __LINE__);               \
            exit(1);                                                                          \
        }                                                                                     \
    } while (0)

static size_t crypto_info(union tlsnic_crypto_info *ci, const struct combo *c)
{
    memset(ci, 0x5a, sizeof(*ci));
    ci->info.version = c->version;
    ci->info.cipher_type = c->cipher;
    memset(ci->aes_gcm_128.rec_seq, 0, 8);
    memset(ci->aes_gcm_256.rec_seq, 0, 8);
    memset(ci->chacha20_poly1305.rec_seq, 0, 8);
    return tlsnic_crypto_info_size(c->cipher);
}

static struct tlsnic_flow bench_flow(void)
{
    struct tlsnic_flow f;
    memset(&f, 0, sizeof(f));
    f.family = AF_INET;
    f.local[0] = 198, f.local[1] = 18, f.local[3] = 1;
    f.remote[0] = 198, f.remote[1] = 18, f.remote[3] = 2;
    f.local_port = 40000;
    f.remote_port = 443;
    return f;
}

static size_t frame(uint8_t *buf, const struct tlsnic_flow *fl, int from_peer, uint32_t seq,
                    uint32_t ack, const uint8_t *payload, size_t plen)
{
    size_t tot = FRAME_HDR + plen;
    memset(buf, 0, FRAME_HDR);
    buf[0] = 0x45;
    buf[2] = (uint8_t)(tot >> 8), buf[3] = (uint8_t)tot;
    buf[6] = 0x40, buf[8] = 64, buf[9] = 6;
    memcpy(buf + 12, from_peer ? fl->remote : fl->local, 4);
    memcpy(buf + 16, from_peer ? fl->local : fl->remote, 4);
    uint16_t sp = from_peer ? fl->remote_port : fl->local_port;
    uint16_t dp = from_peer ? fl->local_port : fl->remote_port;
    uint8_t *t = buf + 20;
    t[0] = (uint8_t)(sp >> 8), t[1] = (uint8_t)sp, t[2] = (uint8_t)(dp >> 8), t[3] = (uint8_t)dp;
    for (int i = 0; i < 4; i++) {
        t[4 + i] = (uint8_t)(seq >> (24 - 8 * i));
        t[8 + i] = (uint8_t)(ack >> (24 - 8 * i));
    }
    t[12] = 5 << 4;
    t[13] = 0x10;
    t[14] = 0xff, t[15] = 0xff;
    if (plen)
        memcpy(buf + FRAME_HDR, payload, plen);
    return tot;
}

struct stream {
    tlsnic_simhost *h;
    uint8_t *bytes;
    size_t len;
    size_t nrec, content;
};

static void make_stream(struct stream *s, const struct combo *c, size_t content, size_t total)
{
    s->content = content;
    CHECK(tlsnic_simhost_new(&s->h, c->version, c->cipher, 0, ISS, total + 20000));
    static uint8_t buf[TLSNIC_REC_MAX_PLAINTEXT];
    memset(buf, 'd', sizeof(buf));
    s->nrec = 0;
    for (;;) {
        size_t cur;
        (void)tlsnic_simhost_stream(s->h, &cur);
        if (cur + content + 40 > total)
            break;
        CHECK(tlsnic_simhost_write(s->h, TLSNIC_CT_APPLICATION_DATA, buf, content));
        s->nrec++;
    }
    s->bytes = tlsnic_simhost_stream(s->h, &s->len);
}

/* Frames of the whole stream, prebuilt into one buffer (offsets into it). */
struct frames {
    uint8_t *buf;
    size_t *off, *len;
    size_t n;
};

static void build_frames(struct frames *f, const struct stream *s, size_t payload)
{
    f->n = (s->len + payload - 1) / payload;
    f->buf = malloc(s->len + f->n * FRAME_HDR);
    f->off = calloc(f->n, sizeof(size_t));
    f->len = calloc(f->n, sizeof(size_t));
    if (!f->buf || !f->off || !f->len)
        exit(1);
}

static void fill_frames(struct frames *f, const struct stream *s, size_t payload)
{
    struct tlsnic_flow fl = bench_flow();
    size_t pos = 0;
    for (size_t i = 0; i < f->n; i++) {
        size_t so = i * payload;
        size_t n = s->len - so < payload ? s->len - so : payload;
        f->off[i] = pos;
        f->len[i] = frame(f->buf + pos, &fl, 0, ISS + (uint32_t)so, 1, s->bytes + so, n);
        pos += f->len[i];
    }
}

/* Device: one batch over the whole stream; returns CPU seconds. */
static double device_batch(const struct combo *c, struct frames *f, const struct stream *s,
                           size_t payload, int gso, int csum_full, int integrity)
{
    struct tlsnic_nic_config cfg;
    tlsnic_nic_config_default(&cfg);
    cfg.max_flows = 1024;
    cfg.integrity = (uint8_t)integrity;
    tlsnic_nic *nic;
    CHECK(tlsnic_nic_new(&nic, &cfg));
    union tlsnic_crypto_info ci;
    size_t cl = crypto_info(&ci, c);
    struct tlsnic_flow fl = bench_flow();
    struct tlsnic_rec_store st = tlsnic_simhost_store(s->h);
    CHECK(tlsnic_nic_add(nic, &fl, TLSNIC_DIR_TX, &ci, cl, ISS, &st));
    fill_frames(f, s, payload);
    uint8_t ack[64];
    size_t ack_every = gso ? 1 : 2;
    double t0 = now();
    for (size_t i = 0; i < f->n; i++) {
        struct tlsnic_pkt pkt = {.data = f->buf + f->off[i], .len = f->len[i],
                                 .gso_size = (uint16_t)(gso ? MSS : 0),
                                 .csum = csum_full ? TLSNIC_CSUM_FULL : TLSNIC_CSUM_OFFLOAD};
        if (tlsnic_nic_tx(nic, &pkt) != TLSNIC_MODIFIED) {
            fprintf(stderr, "bench_nic: frame %zu not encrypted\n", i);
            exit(1);
        }
        if (i % ack_every == ack_every - 1) {
            size_t al = frame(ack, &fl, 1, 7, ISS + (uint32_t)((i + 1) * payload < s->len
                                                                  ? (i + 1) * payload
                                                                  : s->len),
                              NULL, 0);
            tlsnic_nic_rx(nic, ack, al);
        }
    }
    double t = now() - t0;
    tlsnic_nic_free(nic);
    return t;
}

/* Raw libcrypto AEAD over the same records, in place in a fresh copy of the stream (the
 * same memory traffic as the device, which encrypts frames in place). */
static double raw_batch(const struct combo *c, const struct stream *s, uint8_t *work)
{
    memcpy(work, s->bytes, s->len);
    const EVP_CIPHER *ciph = c->cipher == TLS_CIPHER_AES_GCM_128   ? EVP_aes_128_gcm()
                             : c->cipher == TLS_CIPHER_AES_GCM_256 ? EVP_aes_256_gcm()
                                                                   : EVP_chacha20_poly1305();
    uint8_t key[32], iv[12], tag[16];
    memset(key, 0x5a, sizeof(key));
    memset(iv, 0x11, sizeof(iv));
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    if (!ctx || EVP_EncryptInit_ex(ctx, ciph, NULL, key, NULL) != 1)
        exit(1);
    int v13 = c->version == TLS_1_3_VERSION;
    size_t hn = 5 + (c->version == TLS_1_2_VERSION && c->cipher != TLS_CIPHER_CHACHA20_POLY1305
                         ? 8
                         : 0);
    size_t rlen = hn + s->content + (v13 ? 1 : 0) + 16;
    double t0 = now();
    for (size_t r = 0; r < s->nrec; r++) {
        uint8_t *rec = work + r * rlen;
        uint8_t aad[13];
        memcpy(aad, &r, 8);
        memcpy(aad + 8, rec, 5);
        int ol;
        iv[11] = (uint8_t)r;
        size_t body = rlen - hn - 16;
        if (EVP_EncryptInit_ex(ctx, NULL, NULL, NULL, iv) != 1 ||
            EVP_EncryptUpdate(ctx, NULL, &ol, aad, v13 ? 5 : 13) != 1 ||
            EVP_EncryptUpdate(ctx, rec + hn, &ol, rec + hn, (int)body) != 1 ||
            EVP_EncryptFinal_ex(ctx, tag, &ol) != 1 ||
            EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, 16, rec + hn + body) != 1)
            exit(1);
    }
    double t = now() - t0;
    EVP_CIPHER_CTX_free(ctx);
    return t;
}

static void throughput(const struct combo *c, int reps, size_t total, int print_header)
{
    static const size_t sizes[] = {1457, 4096, 16384};
    if (print_header) {
        printf("| combination | record | frames | raw MB/s | device MB/s | device/raw | "
               "+csum | +integrity | target |\n");
        printf("|---|---|---|---|---|---|---|---|---|\n");
    }
    for (size_t si = 0; si < 3; si++) {
        struct stream s;
        make_stream(&s, c, sizes[si], total);
        uint8_t *scratch = malloc(s.len);
        if (!scratch)
            exit(1);
        for (int tso = 1; tso >= 0; tso--) {
            size_t payload = tso ? TSO_PAYLOAD : MSS;
            struct frames f;
            build_frames(&f, &s, payload);
            double best[4] = {1e9, 1e9, 1e9, 1e9};
            for (int r = 0; r < reps; r++) {
                double t[4];
                t[0] = raw_batch(c, &s, scratch);
                t[1] = device_batch(c, &f, &s, payload, tso, 0, 0);
                t[2] = device_batch(c, &f, &s, payload, tso, !tso, 0);
                t[3] = device_batch(c, &f, &s, payload, tso, 0, 1);
                for (int k = 0; k < 4; k++)
                    if (t[k] < best[k])
                        best[k] = t[k];
            }
            double mb = (double)s.len / 1e6;
            const char *target = "";
            if (tso && sizes[si] == 16384)
                target = best[0] / best[1] >= 0.90 ? ">=0.90 met" : ">=0.90 MISSED";
            if (!tso && sizes[si] == 1457)
                target = best[0] / best[1] >= 0.75 ? ">=0.75 met" : ">=0.75 MISSED";
            printf("| %s | %zu | %s | %.0f | %.0f | %.3f | %.3f | %.3f | %s |\n", c->name,
                   sizes[si], tso ? "TSO 64K" : "MTU 1448", mb / best[0], mb / best[1],
                   best[0] / best[1], best[0] / best[2], best[0] / best[3], target);
            fflush(stdout);
            free(f.buf);
            free(f.off);
            free(f.len);
        }
        tlsnic_simhost_free(s.h);
        free(scratch);
    }
}

/* Resync: retransmit the middle segment of a 16 KB record `iters` times. */
static void resync(const struct combo *c, int iters, int print_header)
{
    if (print_header)
        printf("\n| combination | path | crypto bytes / rexmit | / segment length | "
               "us / rexmit | host-store reads |\n|---|---|---|---|---|---|\n");
    for (int path = 0; path < 2; path++) {
        struct stream s;
        make_stream(&s, c, 16384, 3 * 16500);
        struct tlsnic_nic_config cfg;
        tlsnic_nic_config_default(&cfg);
        cfg.max_flows = 16;
        cfg.checkpoints_off = (uint8_t)path;
        tlsnic_nic *nic;
        CHECK(tlsnic_nic_new(&nic, &cfg));
        union tlsnic_crypto_info ci;
        size_t cl = crypto_info(&ci, c);
        struct tlsnic_flow fl = bench_flow();
        struct tlsnic_rec_store st = tlsnic_simhost_store(s.h);
        CHECK(tlsnic_nic_add(nic, &fl, TLSNIC_DIR_TX, &ci, cl, ISS, &st));
        static uint8_t fb[FRAME_HDR + MSS];
        for (size_t off = 0; off < s.len; off += MSS) {
            size_t n = s.len - off < MSS ? s.len - off : MSS;
            size_t l = frame(fb, &fl, 0, ISS + (uint32_t)off, 1, s.bytes + off, n);
            struct tlsnic_pkt pkt = {.data = fb, .len = l};
            CHECK(tlsnic_nic_tx(nic, &pkt));
        }
        struct tlsnic_nic_stats a, b;
        CHECK(tlsnic_nic_flow_stats(nic, &fl, TLSNIC_DIR_TX, &a));
        size_t mid = 5 * MSS; /* bytes 7240..8688 of record 0: its middle */
        double t = 0;
        for (int i = 0; i < iters; i++) {
            size_t l = frame(fb, &fl, 0, ISS + (uint32_t)mid, 1, s.bytes + mid, MSS);
            struct tlsnic_pkt pkt = {.data = fb, .len = l, .csum = TLSNIC_CSUM_OFFLOAD};
            double t0 = now();
            int v = tlsnic_nic_tx(nic, &pkt);
            t += now() - t0;
            if (v != TLSNIC_MODIFIED)
                exit(1);
        }
        CHECK(tlsnic_nic_flow_stats(nic, &fl, TLSNIC_DIR_TX, &b));
        double cb = (double)(b.tx_tls_ooo_crypto_bytes - a.tx_tls_ooo_crypto_bytes) / iters;
        printf("| %s | %s | %.0f | %.2f | %.2f | %llu |\n", c->name,
               path ? "host store" : "checkpoint", cb, cb / MSS, t / iters * 1e6,
               (unsigned long long)(b.tx_tls_dump_packets - a.tx_tls_dump_packets));
        tlsnic_nic_free(nic);
        tlsnic_simhost_free(s.h);
    }
}

int main(int argc, char **argv)
{
    int reps = 5, all = 0;
    size_t mb = 16;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) {
            reps = 1;
            mb = 1;
        } else if (!strcmp(argv[i], "--reps") && i + 1 < argc) {
            reps = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--mb") && i + 1 < argc) {
            mb = (size_t)atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--all")) {
            all = 1;
        } else if (!strcmp(argv[i], "--micro")) { /* per-packet costs without crypto */
            tlsnic_nic *nic;
            CHECK(tlsnic_nic_new(&nic, NULL));
            union tlsnic_crypto_info ci;
            size_t cl = crypto_info(&ci, &combos[0]);
            struct tlsnic_flow fl = bench_flow();
            CHECK(tlsnic_nic_add(nic, &fl, TLSNIC_DIR_TX, &ci, cl, ISS, NULL));
            uint8_t fb[64];
            size_t l = frame(fb, &fl, 0, ISS, 1, NULL, 0);
            size_t al = frame(fb + 0, &fl, 1, 7, ISS, NULL, 0);
            (void)al;
            const int N = 2000000;
            struct tlsnic_frame fr;
            double t0 = now();
            for (int k = 0; k < N; k++)
                tlsnic_frame_parse(fb, l, &fr);
            double t1 = now();
            l = frame(fb, &fl, 0, ISS, 1, NULL, 0);
            for (int k = 0; k < N; k++) {
                struct tlsnic_pkt pkt = {.data = fb, .len = l};
                tlsnic_nic_tx(nic, &pkt);
            }
            double t2 = now();
            l = frame(fb, &fl, 1, 7, ISS, NULL, 0);
            for (int k = 0; k < N; k++)
                tlsnic_nic_rx(nic, fb, l);
            double t3 = now();
            static uint8_t big[FRAME_HDR + MSS];
            size_t bl = frame(big, &fl, 0, ISS, 1, big + FRAME_HDR, MSS);
            tlsnic_frame_parse(big, bl, &fr);
            uint32_t sink = 0;
            for (int k = 0; k < N / 10; k++) {
                big[FRAME_HDR + (k & 1023)] = (uint8_t)k;
                sink += tlsnic_tcp_csum(big, &fr);
            }
            double t4 = now();
            printf("parse %.1f ns, tx lookup %.1f ns, rx ack %.1f ns, csum/1448 B %.1f ns (%u)\n",
                   (t1 - t0) / N * 1e9, (t2 - t1) / N * 1e9, (t3 - t2) / N * 1e9,
                   (t4 - t3) / (N / 10) * 1e9, sink & 1);
            tlsnic_nic_free(nic);
            return 0;
        } else if (!strcmp(argv[i], "--profile-mtu")) { /* for perf: device only */
            struct stream s;
            make_stream(&s, &combos[0], 1457, 8 << 20);
            struct frames f;
            build_frames(&f, &s, MSS);
            for (int r = 0; r < 100; r++)
                device_batch(&combos[0], &f, &s, MSS, 0, 0, 0);
            return 0;
        } else {
            fprintf(stderr, "usage: bench_nic [--quick] [--reps N] [--mb M] [--all]\n");
            return 2;
        }
    }
    if (reps < 1 || reps > 1000 || mb < 1 || mb > 1024)
        return 2;
    printf("bench_nic: %zu MB per batch, best of %d; CPU time of one thread\n\n", mb, reps);
    int n = all ? 6 : 1;
    for (int i = 0; i < n; i++)
        throughput(&combos[i], reps, mb << 20, i == 0);
    for (int i = 0; i < n; i++)
        resync(&combos[i], reps * 200, i == 0);
    return 0;
}
