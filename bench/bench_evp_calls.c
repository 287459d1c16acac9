/*
 * bench_evp_calls: what libcrypto charges per EVP update call, by call size.
 *
 * A device meets a record in TCP-segment-sized pieces (1448 bytes at MSS 1448), so the
 * record layer feeds libcrypto one update per piece. This shows, for each AEAD and for
 * ChaCha20 and Poly1305 alone, the cost of one EncryptUpdate / MAC update of a given size
 * fed back to back into one context: a size whose cost per byte is far above the 16 KB
 * figure is a size libcrypto handles badly, whatever the caller does around it.
 * CPU time, best of interleaved repetitions. Not a test.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#define STREAM_BYTES (1u << 20) /* bytes fed per timed run */
#define MAX_REPS 1000

static const size_t call_sizes[] = {64, 424, 512, 1024, 1088, 1448, 4096, 16384};
#define N_SIZES (sizeof(call_sizes) / sizeof(call_sizes[0]))

enum prim { AES128GCM, AES256GCM, CHACHAPOLY, CHACHA20, POLY1305, N_PRIMS };
static const char *const prim_names[N_PRIMS] = {"AES-128-GCM", "AES-256-GCM",
                                                "ChaCha20-Poly1305", "ChaCha20 alone",
                                                "Poly1305 alone"};

struct prims {
    EVP_CIPHER_CTX *cipher[CHACHA20 + 1];
    EVP_MAC_CTX *poly1305;
};

static uint8_t buf[STREAM_BYTES];
static const uint8_t key[32] = {1, 2, 3};

static double cpu_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int prims_init(struct prims *p)
{
    static const uint8_t iv[16];
    const EVP_CIPHER *ciphers[CHACHA20 + 1] = {EVP_aes_128_gcm(), EVP_aes_256_gcm(),
                                               EVP_chacha20_poly1305(), EVP_chacha20()};
    for (int i = 0; i <= CHACHA20; i++) {
        p->cipher[i] = EVP_CIPHER_CTX_new();
        if (p->cipher[i] == NULL ||
            EVP_EncryptInit_ex(p->cipher[i], ciphers[i], NULL, key, iv) != 1)
            return -ENOMEM;
    }
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "POLY1305", NULL);
    p->poly1305 = mac != NULL ? EVP_MAC_CTX_new(mac) : NULL;
    EVP_MAC_free(mac);
    return p->poly1305 != NULL ? 0 : -ENOMEM;
}

static void prims_free(struct prims *p)
{
    for (int i = 0; i <= CHACHA20; i++)
        EVP_CIPHER_CTX_free(p->cipher[i]);
    EVP_MAC_CTX_free(p->poly1305);
}

/* Seconds to feed STREAM_BYTES (rounded down to whole calls) in calls of `size`. */
static int feed(struct prims *p, enum prim prim, size_t size, double *seconds)
{
    static const uint8_t iv[12];
    size_t calls = STREAM_BYTES / size;
    int n = 0;
    double start = cpu_seconds();
    if (prim == POLY1305) {
        if (EVP_MAC_init(p->poly1305, key, 32, NULL) != 1)
            return -EIO;
        for (size_t i = 0; i < calls; i++)
            if (EVP_MAC_update(p->poly1305, buf + i * size, size) != 1)
                return -EIO;
    } else {
        EVP_CIPHER_CTX *ctx = p->cipher[prim];
        /* AEADs restart their nonce per run, as a record does; ChaCha20 just runs on. */
        if (prim != CHACHA20 && EVP_EncryptInit_ex(ctx, NULL, NULL, NULL, iv) != 1)
            return -EIO;
        for (size_t i = 0; i < calls; i++)
            if (EVP_EncryptUpdate(ctx, buf + i * size, &n, buf + i * size, (int)size) != 1)
                return -EIO;
    }
    *seconds = cpu_seconds() - start;
    return 0;
}

int main(int argc, char **argv)
{
    int reps = 30;
    if (argc == 3 && strcmp(argv[1], "--reps") == 0)
        reps = atoi(argv[2]);
    else if (argc != 1) {
        fprintf(stderr, "usage: bench_evp_calls [--reps N]\n"
                        "  libcrypto cost per EVP update call, by call size (Markdown)\n");
        return 2;
    }
    if (reps < 1 || reps > MAX_REPS)
        return 2;

    struct prims p;
    memset(&p, 0, sizeof(p));
    if (prims_init(&p) < 0) {
        fprintf(stderr, "bench_evp_calls: libcrypto setup failed\n");
        prims_free(&p);
        return 1;
    }

    double best[N_PRIMS][N_SIZES];
    for (int pr = 0; pr < N_PRIMS; pr++)
        for (size_t s = 0; s < N_SIZES; s++)
            best[pr][s] = -1;
    for (int rep = 0; rep < reps; rep++) {
        for (int pr = 0; pr < N_PRIMS; pr++) {
            for (size_t s = 0; s < N_SIZES; s++) {
                double t = 0;
                if (feed(&p, (enum prim)pr, call_sizes[s], &t) < 0) {
                    fprintf(stderr, "bench_evp_calls: %s failed\n", prim_names[pr]);
                    prims_free(&p);
                    return 1;
                }
                if (best[pr][s] < 0 || t < best[pr][s])
                    best[pr][s] = t;
            }
        }
    }

    printf("libcrypto per-call cost (%s), ns per update call / MB/s, best of %d\n\n",
           OpenSSL_version(OPENSSL_VERSION), reps);
    printf("| call bytes |");
    for (int pr = 0; pr < N_PRIMS; pr++)
        printf(" %s |", prim_names[pr]);
    printf("\n|--:|");
    for (int pr = 0; pr < N_PRIMS; pr++)
        printf("--:|");
    printf("\n");
    for (size_t s = 0; s < N_SIZES; s++) {
        size_t calls = STREAM_BYTES / call_sizes[s];
        printf("| %5zu |", call_sizes[s]);
        for (int pr = 0; pr < N_PRIMS; pr++) {
            double t = best[pr][s] > 0 ? best[pr][s] : 1e-12;
            printf(" %5.0f ns / %5.0f |", t / (double)calls * 1e9,
                   (double)(calls * call_sizes[s]) / t / 1e6);
        }
        printf("\n");
    }
    prims_free(&p);
    return 0;
}
