/*
 * bench_record: what the tlsnic record layer costs on top of the AEAD it wraps.
 *
 * For each protocol version, cipher and record size it measures, in one run and on the
 * same buffers:
 *   raw     libcrypto EVP AEAD alone, as a minimal record layer would call it: nonce from
 *           the sequence number, AAD, EVP_EncryptInit_ex / Update / Final, tag.
 *   seal    tlsnic_rec_seal, whole record.
 *   stream  tlsnic_rec_stream_begin / update in 1448-byte pieces (one TCP segment of
 *           payload at MSS 1448) / seal_final: what the device does per segment.
 *   raw/1448  raw EVP again, fed in the same 1448-byte pieces: what libcrypto itself
 *           charges for pieces, so stream / raw/1448 is tlsnic's own share.
 * and prints throughput and the ratio to raw as a Markdown table. Absolute numbers are
 * noise on a shared machine; the ratios are the result. Each variant is timed in batches
 * of CPU time (CLOCK_PROCESS_CPUTIME_ID), repetitions interleaved in rotating order, and
 * the best batch of each variant counts.
 *
 * Before timing, one record sealed each way is compared byte for byte, so the three
 * variants provably do the same work.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "tlsnic/record.h"

#define SEGMENT_PAYLOAD 1448
#define TARGET_WHOLE 0.95
#define TARGET_PIECES 0.85
#define MAX_BATCH_ITERS 1000000
#define MAX_REPS 1000

enum variant { RAW, SEAL, STREAM, RAW_PIECES, N_VARIANTS };

struct options {
    int reps;            /* interleaved repetitions per variant */
    size_t batch_bytes;  /* plaintext bytes per timed batch */
};

/* One record-layer direction with everything each variant needs. */
struct bench_ctx {
    uint16_t version;
    uint16_t cipher;
    union tlsnic_crypto_info info;
    size_t info_len;
    tlsnic_rec_key *key;               /* for seal */
    tlsnic_rec_key *stream_key;        /* for stream (it owns no counter, but keep apart) */
    struct tlsnic_rec_stream stream;
    EVP_CIPHER_CTX *evp;               /* raw: keyed once, re-IVed per record */
    uint8_t nonce_base[12];            /* raw: salt || iv (GCM) or iv (ChaCha20) */
    uint64_t next_seq[N_VARIANTS]; /* raw, raw/1448 and stream sequence themselves */
    size_t len;                        /* content bytes per record */
    size_t body_len;                   /* encrypted body: content (+ type for TLS 1.3) */
    uint8_t *in;                       /* content, then the inner type byte */
    uint8_t *out;
};

static double cpu_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void put_be64(uint8_t *out, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        out[i] = (uint8_t)v;
}

static int tls12_gcm(const struct bench_ctx *b)
{
    return b->version == TLS_1_2_VERSION && b->cipher != TLS_CIPHER_CHACHA20_POLY1305;
}

static size_t explicit_nonce_len(const struct bench_ctx *b)
{
    return tls12_gcm(b) ? TLSNIC_REC_EXPLICIT_NONCE_LEN : 0;
}

static void record_header(const struct bench_ctx *b, uint8_t *hdr)
{
    size_t len = explicit_nonce_len(b) + b->body_len + TLSNIC_REC_TAG_LEN;
    hdr[0] = TLSNIC_CT_APPLICATION_DATA;
    hdr[1] = 3;
    hdr[2] = 3;
    hdr[3] = (uint8_t)(len >> 8);
    hdr[4] = (uint8_t)len;
}

/* Random keys in the UAPI form, first record sequence number 1. */
static int make_info(struct bench_ctx *b)
{
    union tlsnic_crypto_info *ci = &b->info;
    memset(ci, 0, sizeof(*ci));
    ci->info.version = b->version;
    ci->info.cipher_type = b->cipher;
    uint8_t *key, *salt = NULL, *iv, *rec_seq;
    size_t key_len, iv_len;
    switch (b->cipher) {
    case TLS_CIPHER_AES_GCM_128:
        key = ci->aes_gcm_128.key, key_len = sizeof(ci->aes_gcm_128.key);
        salt = ci->aes_gcm_128.salt, iv = ci->aes_gcm_128.iv, iv_len = 8;
        rec_seq = ci->aes_gcm_128.rec_seq, b->info_len = sizeof(ci->aes_gcm_128);
        break;
    case TLS_CIPHER_AES_GCM_256:
        key = ci->aes_gcm_256.key, key_len = sizeof(ci->aes_gcm_256.key);
        salt = ci->aes_gcm_256.salt, iv = ci->aes_gcm_256.iv, iv_len = 8;
        rec_seq = ci->aes_gcm_256.rec_seq, b->info_len = sizeof(ci->aes_gcm_256);
        break;
    case TLS_CIPHER_CHACHA20_POLY1305:
        key = ci->chacha20_poly1305.key, key_len = sizeof(ci->chacha20_poly1305.key);
        iv = ci->chacha20_poly1305.iv, iv_len = 12;
        rec_seq = ci->chacha20_poly1305.rec_seq, b->info_len = sizeof(ci->chacha20_poly1305);
        break;
    default:
        return -EINVAL;
    }
    if (RAND_bytes(key, (int)key_len) != 1 || RAND_bytes(iv, (int)iv_len) != 1 ||
        (salt != NULL && RAND_bytes(salt, 4) != 1))
        return -EIO;
    put_be64(rec_seq, 1);
    if (salt != NULL) {
        memcpy(b->nonce_base, salt, 4);
        if (b->version == TLS_1_2_VERSION)
            put_be64(iv, 1); /* explicit nonce = sequence number */
        memcpy(b->nonce_base + 4, iv, 8);
    } else {
        memcpy(b->nonce_base, iv, 12);
    }

    const EVP_CIPHER *cipher = b->cipher == TLS_CIPHER_AES_GCM_128   ? EVP_aes_128_gcm()
                               : b->cipher == TLS_CIPHER_AES_GCM_256 ? EVP_aes_256_gcm()
                                                                     : EVP_chacha20_poly1305();
    b->evp = EVP_CIPHER_CTX_new();
    if (b->evp == NULL || EVP_EncryptInit_ex(b->evp, cipher, NULL, key, NULL) != 1)
        return -ENOMEM;
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* The three variants; each seals one record of b->len bytes into b->out.                      */

static int raw_one(struct bench_ctx *b, enum variant v, size_t piece_len)
{
    uint8_t *out = b->out;
    uint64_t seq = b->next_seq[v]++;
    uint8_t nonce[12], aad[13];
    int aad_len, n = 0;
    memcpy(nonce, b->nonce_base, 12);
    record_header(b, out);
    if (tls12_gcm(b)) {
        put_be64(nonce + 4, seq);
        memcpy(out + TLSNIC_REC_HDR_LEN, nonce + 4, 8);
    } else {
        for (int i = 0; i < 8; i++)
            nonce[4 + i] ^= (uint8_t)(seq >> (56 - 8 * i));
    }
    if (b->version == TLS_1_2_VERSION) {
        put_be64(aad, seq);
        aad[8] = out[0], aad[9] = out[1], aad[10] = out[2];
        aad[11] = (uint8_t)(b->len >> 8), aad[12] = (uint8_t)b->len;
        aad_len = 13;
    } else {
        memcpy(aad, out, TLSNIC_REC_HDR_LEN);
        aad_len = TLSNIC_REC_HDR_LEN;
    }
    uint8_t *body = out + TLSNIC_REC_HDR_LEN + explicit_nonce_len(b);
    if (EVP_EncryptInit_ex(b->evp, NULL, NULL, NULL, nonce) != 1 ||
        EVP_EncryptUpdate(b->evp, NULL, &n, aad, aad_len) != 1)
        return -EIO;
    for (size_t off = 0; off < b->body_len; off += piece_len) {
        size_t piece = b->body_len - off < piece_len ? b->body_len - off : piece_len;
        if (EVP_EncryptUpdate(b->evp, body + off, &n, b->in + off, (int)piece) != 1)
            return -EIO;
    }
    if (EVP_EncryptFinal_ex(b->evp, body + b->body_len, &n) != 1 ||
        EVP_CIPHER_CTX_ctrl(b->evp, EVP_CTRL_AEAD_GET_TAG, TLSNIC_REC_TAG_LEN,
                            body + b->body_len) != 1)
        return -EIO;
    return 0;
}

static int seal_one(struct bench_ctx *b)
{
    size_t out_len = 0;
    return tlsnic_rec_seal(b->key, TLSNIC_CT_APPLICATION_DATA, b->in, b->len, b->out,
                           TLSNIC_REC_MAX_WIRE_LEN, &out_len);
}

static int stream_one(struct bench_ctx *b)
{
    uint8_t *out = b->out;
    uint64_t seq = b->next_seq[STREAM]++;
    record_header(b, out);
    const uint8_t *explicit_nonce = NULL;
    if (tls12_gcm(b)) {
        put_be64(out + TLSNIC_REC_HDR_LEN, seq);
        explicit_nonce = out + TLSNIC_REC_HDR_LEN;
    }
    int rc = tlsnic_rec_stream_begin(&b->stream, b->stream_key, 1, seq, out, explicit_nonce);
    uint8_t *body = out + TLSNIC_REC_HDR_LEN + explicit_nonce_len(b);
    for (size_t off = 0; rc == 0 && off < b->body_len; off += SEGMENT_PAYLOAD) {
        size_t piece = b->body_len - off < SEGMENT_PAYLOAD ? b->body_len - off : SEGMENT_PAYLOAD;
        rc = tlsnic_rec_stream_update(&b->stream, b->in + off, body + off, piece);
    }
    if (rc == 0)
        rc = tlsnic_rec_stream_seal_final(&b->stream, body + b->body_len);
    return rc;
}

static int run_one(struct bench_ctx *b, enum variant v)
{
    switch (v) {
    case RAW:
        return raw_one(b, RAW, b->body_len);
    case RAW_PIECES:
        return raw_one(b, RAW_PIECES, SEGMENT_PAYLOAD);
    case SEAL:
        return seal_one(b);
    default:
        return stream_one(b);
    }
}

/* Seals the same record (same sequence number) each way and compares the wire bytes. */
static int check_same_output(struct bench_ctx *b)
{
    size_t wire_len = TLSNIC_REC_HDR_LEN + explicit_nonce_len(b) + b->body_len +
                      TLSNIC_REC_TAG_LEN;
    uint8_t *first = malloc(wire_len);
    if (first == NULL)
        return -ENOMEM;
    int rc = 0;
    for (int v = 0; rc == 0 && v < N_VARIANTS; v++) {
        rc = run_one(b, (enum variant)v);
        if (rc == 0 && v == 0)
            memcpy(first, b->out, wire_len);
        else if (rc == 0 && memcmp(first, b->out, wire_len) != 0)
            rc = -EPROTO;
    }
    free(first);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */

struct result {
    double best_seconds[N_VARIANTS]; /* per batch */
    size_t iters;                    /* records per batch */
};

static int measure(struct bench_ctx *b, const struct options *opt, struct result *r)
{
    r->iters = opt->batch_bytes / b->len;
    if (r->iters == 0)
        r->iters = 1;
    if (r->iters > MAX_BATCH_ITERS)
        r->iters = MAX_BATCH_ITERS;
    for (int v = 0; v < N_VARIANTS; v++)
        r->best_seconds[v] = -1;

    for (int rep = 0; rep < opt->reps; rep++) {
        for (int k = 0; k < N_VARIANTS; k++) {
            enum variant v = (enum variant)((rep + k) % N_VARIANTS); /* rotate the order */
            double start = cpu_seconds();
            for (size_t i = 0; i < r->iters; i++) {
                int rc = run_one(b, v);
                if (rc < 0)
                    return rc;
            }
            double spent = cpu_seconds() - start;
            if (r->best_seconds[v] < 0 || spent < r->best_seconds[v])
                r->best_seconds[v] = spent;
        }
    }
    return 0;
}

static double mb_per_s(const struct result *r, enum variant v, size_t len)
{
    double s = r->best_seconds[v] > 0 ? r->best_seconds[v] : 1e-9;
    return (double)r->iters * (double)len / s / 1e6;
}

static void bench_ctx_free(struct bench_ctx *b)
{
    tlsnic_rec_key_free(b->key);
    tlsnic_rec_key_free(b->stream_key);
    tlsnic_rec_stream_cleanup(&b->stream);
    EVP_CIPHER_CTX_free(b->evp);
    OPENSSL_cleanse(&b->info, sizeof(b->info));
    OPENSSL_cleanse(b->nonce_base, sizeof(b->nonce_base));
    free(b->in);
    free(b->out);
}

static int bench_one(uint16_t version, uint16_t cipher, size_t len, const struct options *opt,
                     int *below_target)
{
    struct bench_ctx b;
    memset(&b, 0, sizeof(b));
    b.version = version;
    b.cipher = cipher;
    b.len = len;
    b.body_len = len + (version == TLS_1_3_VERSION ? 1 : 0);
    for (int v = 0; v < N_VARIANTS; v++)
        b.next_seq[v] = 1;
    b.in = malloc(b.body_len);
    b.out = malloc(TLSNIC_REC_MAX_WIRE_LEN);
    int rc = b.in && b.out ? 0 : -ENOMEM;
    if (rc == 0 && RAND_bytes(b.in, (int)len) != 1)
        rc = -EIO;
    if (rc == 0 && version == TLS_1_3_VERSION)
        b.in[len] = TLSNIC_CT_APPLICATION_DATA; /* the inner type ends the TLS 1.3 body */
    if (rc == 0)
        rc = make_info(&b);
    if (rc == 0)
        rc = tlsnic_rec_key_new(&b.key, &b.info, b.info_len);
    if (rc == 0)
        rc = tlsnic_rec_key_new(&b.stream_key, &b.info, b.info_len);
    if (rc == 0)
        rc = tlsnic_rec_stream_init(&b.stream);
    if (rc == 0)
        rc = check_same_output(&b);
    struct result r;
    if (rc == 0)
        rc = measure(&b, opt, &r);
    if (rc == 0) {
        double raw = mb_per_s(&r, RAW, len), seal = mb_per_s(&r, SEAL, len);
        double stream = mb_per_s(&r, STREAM, len);
        double raw_pieces = mb_per_s(&r, RAW_PIECES, len);
        int whole_ok = seal / raw >= TARGET_WHOLE, pieces_ok = stream / raw >= TARGET_PIECES;
        if (!whole_ok || !pieces_ok)
            (*below_target)++;
        printf("| TLS 1.%d | %-17s | %5zu | %6.0f | %6.0f | %5.3f%s | %6.0f | %5.3f%s | %6.0f | "
               "%5.3f |\n",
               version == TLS_1_3_VERSION ? 3 : 2, tlsnic_cipher_name(cipher), len, raw, seal,
               seal / raw, whole_ok ? "" : " !", stream, stream / raw, pieces_ok ? "" : " !",
               raw_pieces, stream / raw_pieces);
        fflush(stdout);
    } else {
        fprintf(stderr, "bench_record: TLS %#x %s %zu bytes: %s\n", version,
                tlsnic_cipher_name(cipher), len, strerror(-rc));
    }
    bench_ctx_free(&b);
    return rc;
}

static void usage(FILE *to)
{
    fprintf(to,
            "usage: bench_record [--reps N] [--batch-bytes N] [--quick]\n"
            "  Seal throughput of tlsnic (whole records, and streamed in %d-byte pieces)\n"
            "  next to raw EVP AEAD on the same buffers, as a Markdown table.\n"
            "  --reps N         interleaved repetitions per variant, best counts (default 15)\n"
            "  --batch-bytes N  plaintext bytes per timed batch (default 4000000)\n"
            "  --quick          one tiny repetition: a smoke run, numbers meaningless\n",
            SEGMENT_PAYLOAD);
}

static int parse_options(int argc, char **argv, struct options *opt)
{
    opt->reps = 15;
    opt->batch_bytes = 4000000;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0) {
            opt->reps = 1;
            opt->batch_bytes = 1;
        } else if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc) {
            opt->reps = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--batch-bytes") == 0 && i + 1 < argc) {
            opt->batch_bytes = (size_t)strtoull(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            exit(0);
        } else {
            usage(stderr);
            return -EINVAL;
        }
    }
    if (opt->reps < 1 || opt->reps > MAX_REPS || opt->batch_bytes == 0) {
        usage(stderr);
        return -EINVAL;
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct options opt;
    if (parse_options(argc, argv, &opt) < 0)
        return 2;

    static const uint16_t versions[] = {TLS_1_2_VERSION, TLS_1_3_VERSION};
    static const uint16_t ciphers[] = {TLS_CIPHER_AES_GCM_128, TLS_CIPHER_AES_GCM_256,
                                       TLS_CIPHER_CHACHA20_POLY1305};
    static const size_t sizes[] = {1457, 4096, 16384};

    printf("tlsnic record seal vs raw EVP AEAD (%s; best of %d interleaved batches of %zu "
           "bytes, CPU time)\n\n",
           OpenSSL_version(OPENSSL_VERSION), opt.reps, opt.batch_bytes);
    printf("| version | cipher | bytes | raw | seal | seal/raw | stream | stream/raw | raw/%d | "
           "stream/(raw/%d) |\n",
           SEGMENT_PAYLOAD, SEGMENT_PAYLOAD);
    printf("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|\n");
    int failed = 0, below_target = 0;
    for (size_t v = 0; v < 2; v++)
        for (size_t c = 0; c < 3; c++)
            for (size_t s = 0; s < 3; s++)
                if (bench_one(versions[v], ciphers[c], sizes[s], &opt, &below_target) < 0)
                    failed++;
    printf("\nThroughput in MB/s of plaintext. raw: EVP AEAD, whole record; seal: "
           "tlsnic_rec_seal;\nstream: tlsnic_rec_stream_* in %d-byte pieces; raw/%d: EVP AEAD "
           "in the same pieces.\ntargets: seal/raw >= %.2f, stream/raw >= %.2f; rows marked ! "
           "are below (%d)\n",
           SEGMENT_PAYLOAD, SEGMENT_PAYLOAD, TARGET_WHOLE, TARGET_PIECES, below_target);
    return failed ? 1 : 0;
}
