/*
 * Stand-in for libFuzzer when the project is built without -DTLSNIC_FUZZ=ON, so every fuzz
 * target is also a regression test under ASan/UBSan:
 *   1. replays every file of the directories named in TLSNIC_FUZZ_DIRS (':'-separated; the
 *      target's committed corpus and its regress/ inputs: CMake sets it) and on the
 *      command line;
 *   2. runs the target over a fixed number of seeded inputs: random bytes, and mutations
 *      of the target's own well-formed inputs if it provides LLVMFuzzerSeedInput.
 * TLSNIC_FUZZ_RUNS and TLSNIC_SEED override the defaults. With TLSNIC_FUZZ_SAVE=path each
 * input is written to path before it runs: after a crash, path holds the crashing input
 * (replay it with `<target> DIR` where DIR holds it, or with the libFuzzer binary).
 *   <target> --write-seeds DIR   writes the target's LLVMFuzzerSeedInput inputs to DIR
 *                                (how tests/fuzz/corpus/<target>/ was made).
 */
#include <dirent.h>
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
/* Optional, as with libFuzzer. */
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));
/* Optional: a target may provide well-formed inputs to mutate (index i, 0 when none left). */
size_t LLVMFuzzerSeedInput(size_t i, uint8_t *buf, size_t cap) __attribute__((weak));

static uint64_t rng_next(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

#define MAX_INPUT_LEN (70 * 1024)
#define MAX_SEEDS 32

static const char *save_path; /* TLSNIC_FUZZ_SAVE: each input is written there first */

/* Hands the target an exactly-sized heap copy, so ASan sees overreads. */
static void run_one(const uint8_t *data, size_t len)
{
    if (save_path != NULL) {
        FILE *f = fopen(save_path, "wb");
        if (f == NULL || fwrite(data, 1, len, f) != len || fclose(f) != 0)
            abort();
    }
    uint8_t *exact = malloc(len ? len : 1);
    if (exact == NULL)
        abort();
    memcpy(exact, data, len);
    LLVMFuzzerTestOneInput(exact, len);
    free(exact);
}

/* Replays every regular file of dir (a missing directory is an empty one). */
static long replay_dir(const char *dir, uint8_t *buf)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return 0;
    long n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        FILE *f = fopen(path, "rb");
        if (f == NULL)
            continue;
        size_t len = fread(buf, 1, MAX_INPUT_LEN, f);
        fclose(f);
        run_one(buf, len);
        n++;
    }
    closedir(d);
    return n;
}

static int write_seeds(const char *dir, uint8_t *buf)
{
    if (LLVMFuzzerSeedInput == NULL)
        return 0;
    for (size_t i = 0;; i++) {
        size_t len = LLVMFuzzerSeedInput(i, buf, MAX_INPUT_LEN);
        if (len == 0)
            return 0;
        char path[4096];
        snprintf(path, sizeof(path), "%s/seed-%02zu", dir, i);
        FILE *f = fopen(path, "wb");
        if (f == NULL || fwrite(buf, 1, len, f) != len || fclose(f) != 0) {
            fprintf(stderr, "fuzz driver: cannot write %s: %s\n", path, strerror(errno));
            return 1;
        }
    }
}

int main(int argc, char **argv)
{
    static uint8_t seeds[MAX_SEEDS][MAX_INPUT_LEN];
    static uint8_t input[MAX_INPUT_LEN];
    if (LLVMFuzzerInitialize != NULL)
        LLVMFuzzerInitialize(&argc, &argv);
    if (argc == 3 && strcmp(argv[1], "--write-seeds") == 0)
        return write_seeds(argv[2], input);

    save_path = getenv("TLSNIC_FUZZ_SAVE");
    long replayed = 0;
    const char *dirs_env = getenv("TLSNIC_FUZZ_DIRS");
    if (dirs_env != NULL) {
        char *dirs = strdup(dirs_env), *save = NULL;
        for (char *d = strtok_r(dirs, ":", &save); d != NULL; d = strtok_r(NULL, ":", &save))
            replayed += replay_dir(d, input);
        free(dirs);
    }
    for (int i = 1; i < argc; i++)
        replayed += replay_dir(argv[i], input);

    const char *runs_env = getenv("TLSNIC_FUZZ_RUNS"), *seed_env = getenv("TLSNIC_SEED");
    long runs = runs_env ? strtol(runs_env, NULL, 0) : 20000;
    uint64_t seed = seed_env ? strtoull(seed_env, NULL, 0) : (uint64_t)time(NULL);
    printf("fuzz driver: %ld committed inputs replayed; %ld runs, seed %llu (set TLSNIC_SEED "
           "to repeat)\n", replayed, runs, (unsigned long long)seed);
    fflush(stdout);

    size_t seed_len[MAX_SEEDS], n_seeds = 0;
    if (LLVMFuzzerSeedInput != NULL) {
        while (n_seeds < MAX_SEEDS) {
            size_t len = LLVMFuzzerSeedInput(n_seeds, seeds[n_seeds], MAX_INPUT_LEN);
            if (len == 0)
                break;
            seed_len[n_seeds++] = len;
        }
    }

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
            len = rng_next(&rng) % (run % 64 == 0 ? MAX_INPUT_LEN : 512);
            for (size_t i = 0; i < len; i++)
                input[i] = (uint8_t)rng_next(&rng);
        }
        run_one(input, len);
    }
    printf("fuzz driver: done\n");
    return 0;
}
