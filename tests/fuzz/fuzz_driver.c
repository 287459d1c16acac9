/*
 * Stand-in for libFuzzer when the project is built without -DTLSNIC_FUZZ=ON: runs the
 * target over a fixed number of seeded inputs (random bytes, and mutations of the target's
 * own seed inputs if it provides LLVMFuzzerSeedInput), so every fuzz target is also a
 * regression test under ASan/UBSan. TLSNIC_FUZZ_RUNS and TLSNIC_SEED override the defaults.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
/* Optional: a target may provide well-formed inputs to mutate (index i, 0 when none left). */
size_t LLVMFuzzerSeedInput(size_t i, uint8_t *buf, size_t cap) __attribute__((weak));

static uint64_t rng_next(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

#define MAX_INPUT (70 * 1024)

int main(void)
{
    const char *runs_env = getenv("TLSNIC_FUZZ_RUNS"), *seed_env = getenv("TLSNIC_SEED");
    long runs = runs_env ? strtol(runs_env, NULL, 0) : 20000;
    uint64_t seed = seed_env ? strtoull(seed_env, NULL, 0) : (uint64_t)time(NULL);
    printf("fuzz driver: %ld runs, seed %llu (set TLSNIC_SEED to repeat)\n", runs,
           (unsigned long long)seed);
    fflush(stdout);

    static uint8_t seeds[16][MAX_INPUT];
    size_t seed_len[16], n_seeds = 0;
    if (LLVMFuzzerSeedInput != NULL) {
        while (n_seeds < 16) {
            size_t len = LLVMFuzzerSeedInput(n_seeds, seeds[n_seeds], MAX_INPUT);
            if (len == 0)
                break;
            seed_len[n_seeds++] = len;
        }
    }

    uint8_t *input = malloc(MAX_INPUT);
    if (input == NULL)
        return 1;
    uint64_t rng = seed;
    for (long run = 0; run < runs; run++) {
        size_t len;
        if (n_seeds > 0 && run % 4 != 0) {
            /* mutate a well-formed input: flip, overwrite, truncate */
            size_t which = rng_next(&rng) % n_seeds;
            len = seed_len[which];
            memcpy(input, seeds[which], len);
            int edits = 1 + (int)(rng_next(&rng) % 8);
            for (int e = 0; e < edits && len > 0; e++) {
                size_t at = rng_next(&rng) % len;
                switch (rng_next(&rng) % 4) {
                case 0: input[at] ^= (uint8_t)(1u << (rng_next(&rng) % 8)); break;
                case 1: input[at] = (uint8_t)rng_next(&rng); break;
                case 2: len = at; break;
                default: input[at] = (uint8_t)(rng_next(&rng) % 2 ? 0xff : 0x00); break;
                }
            }
        } else {
            len = rng_next(&rng) % (run % 64 == 0 ? MAX_INPUT : 512);
            for (size_t i = 0; i < len; i++)
                input[i] = (uint8_t)rng_next(&rng);
        }
        /* hand the target an exactly-sized heap copy so ASan sees overreads */
        uint8_t *exact = malloc(len ? len : 1);
        if (exact == NULL)
            return 1;
        memcpy(exact, input, len);
        LLVMFuzzerTestOneInput(exact, len);
        free(exact);
    }
    free(input);
    printf("fuzz driver: done\n");
    return 0;
}
