/*
 * Fuzz target: tlsnicd's state file (src/daemon fence.h), read at start to fence every TX
 * flow that was offloaded before a restart. The file is the daemon's own, but it lives on
 * disk between two daemons: any bytes are read without harm, and
 *   - tlsnic_state_load returns the number of flows it fenced, or -EBADMSG / -ENOSPC;
 *   - what it fenced survives a round trip: saved with tlsnic_state_save and loaded into a
 *     new fence set, the same flows are fenced (a file the daemon writes reads back).
 * Input: the file's bytes.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "tlsnic/fence.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
size_t LLVMFuzzerSeedInput(size_t i, uint8_t *buf, size_t cap);

#define MAX_FLOWS 16

struct collected {
    struct tlsnic_flow_dir list[MAX_FLOWS];
    size_t n;
};

static void collect(void *ctx, const struct tlsnic_flow *flow)
{
    struct collected *c = ctx;
    if (c->n == MAX_FLOWS)
        abort(); /* more flows fenced than the set holds */
    c->list[c->n].flow = *flow;
    c->list[c->n].dir = TLSNIC_DIR_TX;
    c->n++;
}

static int has(const struct collected *c, const struct tlsnic_flow *f)
{
    for (size_t i = 0; i < c->n; i++)
        if (memcmp(&c->list[i].flow, f, sizeof(*f)) == 0)
            return 1;
    return 0;
}

/* A path to a file holding data: one memfd, rewritten for each input (no file system). */
static const char *memfd_path(const uint8_t *data, size_t size)
{
    static int fd = -1;
    static char path[64];
    if (fd < 0) {
        fd = memfd_create("fuzz-state", MFD_CLOEXEC);
        if (fd < 0)
            abort();
        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    }
    if (ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != (ssize_t)size)
        abort();
    return path;
}

/* Where the round trip saves: a directory on tmpfs (the writer's fsync costs nothing). */
static const char *save_path(void)
{
    static char dir[] = "/dev/shm/fuzz-state-XXXXXX", file[sizeof(dir) + 8];
    if (file[0] == 0) {
        if (mkdtemp(dir) == NULL)
            abort();
        snprintf(file, sizeof(file), "%s/state", dir);
    }
    return file;
}

static void remove_save_dir(void)
{
    const char *file = save_path();
    unlink(file);
    char dir[64];
    snprintf(dir, sizeof(dir), "%.*s", (int)(strrchr(file, '/') - file), file);
    rmdir(dir);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int cleanup;
    if (!cleanup)
        cleanup = atexit(remove_save_dir) == 0;
    const char *path = memfd_path(data, size);
    tlsnic_fence *fence;
    if (tlsnic_fence_new(&fence, MAX_FLOWS) != 0)
        abort();
    int rc = tlsnic_state_load(path, fence);
    if (rc < 0 && rc != -EBADMSG && rc != -ENOSPC)
        abort();
    struct collected got = {.n = 0};
    tlsnic_fence_foreach(fence, collect, &got);
    if (got.n != tlsnic_fence_count(fence) || (rc >= 0 && (size_t)rc < got.n))
        abort(); /* fenced more flows than it says (a repeated line fences once) */

    /* Round trip: what was fenced, saved by the daemon's writer, reads back the same. */
    if (got.n > 0) {
        const char *file = save_path();
        if (tlsnic_state_save(file, got.list, got.n) != 0)
            abort();
        tlsnic_fence *again;
        if (tlsnic_fence_new(&again, MAX_FLOWS) != 0)
            abort();
        if (tlsnic_state_load(file, again) != (int)got.n)
            abort(); /* the daemon cannot read the file it wrote */
        struct collected back = {.n = 0};
        tlsnic_fence_foreach(again, collect, &back);
        for (size_t i = 0; i < got.n; i++)
            if (!has(&back, &got.list[i].flow) || tlsnic_fence_lift(again, &got.list[i].flow) != 0)
                abort(); /* a flow fenced before the restart is not fenced after it */
        if (tlsnic_fence_count(again) != 0)
            abort();
        tlsnic_fence_free(again);
    }
    tlsnic_fence_free(fence);
    return 0;
}

/* Files as the daemon writes them. */
size_t LLVMFuzzerSeedInput(size_t i, uint8_t *buf, size_t cap)
{
    static const char *const seeds[] = {
        "tx 4 198.18.0.1 40000 198.18.0.2 443\n",
        ("tx 4 198.18.0.1 40000 198.18.0.2 443\nrx 4 198.18.0.1 40000 198.18.0.2 443\n"
         "tx 6 2001:db8:0:1::1 40001 2001:db8:0:1::2 443\n"),
        "tx 6 ::ffff:198.18.0.1 1 2001:db8::2 65535\ntx 4 198.18.0.3 0 198.18.0.4 8443\n",
    };
    if (i >= sizeof(seeds) / sizeof(seeds[0]))
        return 0;
    size_t n = strlen(seeds[i]);
    if (n > cap)
        return 0;
    memcpy(buf, seeds[i], n);
    return n;
}
