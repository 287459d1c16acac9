/*
 * Fuzz target: the frame reader behind fences and the XOR test hook. Any frame, with any
 * virtio-net header, is judged or rewritten without reading or writing outside it; the
 * seed itself (payload of the fenced flow) is always blocked.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "tlsnic/fence.h"
#include "tlsnic/fwd.h"
#include "xorhook.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
size_t LLVMFuzzerSeedInput(size_t i, uint8_t *buf, size_t cap);

static tlsnic_fence *fence_for_seeds(void)
{
    static tlsnic_fence *fence;
    if (fence == NULL) {
        if (tlsnic_fence_new(&fence, 4) != 0)
            abort();
        struct tlsnic_flow flow = {.family = AF_INET, .local = {198, 18, 0, 1},
                                   .remote = {198, 18, 0, 2}, .local_port = 40000,
                                   .remote_port = 443};
        if (tlsnic_fence_add(fence, &flow) != 0)
            abort();
    }
    return fence;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < sizeof(struct virtio_net_hdr))
        return 0;
    struct virtio_net_hdr vh;
    memcpy(&vh, data, sizeof(vh));
    size_t len = size - sizeof(vh);
    uint8_t *frame = malloc(len ? len : 1);
    if (frame == NULL)
        return 0;
    memcpy(frame, data + sizeof(vh), len);
    int blocked = tlsnic_fence_blocks(fence_for_seeds(), frame, len);
    if (blocked != 0 && blocked != 1)
        abort();
    uint8_t seed[128];
    size_t seed_len = LLVMFuzzerSeedInput(0, seed, sizeof(seed));
    if (size == seed_len && memcmp(data, seed, size) == 0 && !blocked)
        abort();
    struct tlsnic_xor_hook hook = {.key = 0x5a, .full_csum = data[0] & 1};
    int v = tlsnic_xor_hook(&hook, 0, frame, len, &vh);
    if (v != 0 && v != 1)
        abort();
    free(frame);
    return 0;
}

size_t LLVMFuzzerSeedInput(size_t i, uint8_t *buf, size_t cap)
{
    /* vnet header + IPv4 + TCP + 8 payload bytes of the fenced flow */
    static const uint8_t seed[10 + 48] = {
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0x45, 0, 0, 48, 0, 0, 0x40, 0, 64, 6, 0, 0, 198, 18, 0, 1, 198, 18, 0, 2,
        0x9c, 0x40, 0x01, 0xbb, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0,
        'p', 'l', 'a', 'i', 'n', 't', 'x', 't'};
    if (i > 0 || cap < sizeof(seed))
        return 0;
    memcpy(buf, seed, sizeof(seed));
    return sizeof(seed);
}
