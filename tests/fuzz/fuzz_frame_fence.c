/*
 * Fuzz target: the project's one frame parser (tlsnic_frame_parse, src/device) and what
 * reads frames with it outside the device: the daemon's restart fences, the XOR test hook,
 * the wire's software TSO. Any frame, with any virtio-net header, is judged or rewritten
 * without reading or writing outside it (an exactly-sized copy), and:
 *   - parse: a TCP frame's offsets lie inside the frame (header, options, payload), and a
 *     checksum written by tlsnic_tcp_csum_fill is one tlsnic_tcp_csum_ok accepts;
 *   - fence (two fenced flows, IPv4 and IPv6): a frame is blocked exactly when it is
 *     unreadable IP/TCP, or TCP with payload of a fenced flow: the fenced payload never
 *     passes, nothing else is held back;
 *   - XOR hook: only the payload and the checksum field change, the payload by the key,
 *     and a full checksum it writes is right;
 *   - software TSO: the segments of a GSO frame parse as TCP of the same flow, carry the
 *     frame's payload in order at the right sequence numbers, each at most gso_size.
 * Input: struct virtio_net_hdr (10 bytes) then the L3 frame; bit 0 of byte 0 picks the
 * hook's checksum mode.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "segment.h"
#include "tlsnic/fence.h"
#include "tlsnic/frame.h"
#include "tlsnic/tun.h"
#include "tlsnic/fwd.h"
#include "xorhook.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
size_t LLVMFuzzerSeedInput(size_t i, uint8_t *buf, size_t cap);

#define MAX_SEGMENTS 512 /* checked per input: a 64 KB frame cut in 1-byte pieces is slow */

static const struct tlsnic_flow fenced4 = {.family = AF_INET, .local = {198, 18, 0, 1},
                                           .remote = {198, 18, 0, 2}, .local_port = 40000,
                                           .remote_port = 443};
static const struct tlsnic_flow fenced6 = {
    .family = AF_INET6,
    .local = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1},
    .remote = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2},
    .local_port = 40001,
    .remote_port = 443};

static tlsnic_fence *the_fence(void)
{
    static tlsnic_fence *fence;
    if (fence == NULL) {
        if (tlsnic_fence_new(&fence, 4) != 0 || tlsnic_fence_add(fence, &fenced4) != 0 ||
            tlsnic_fence_add(fence, &fenced6) != 0)
            abort();
    }
    return fence;
}

static int is_fenced(const struct tlsnic_frame *f)
{
    const struct tlsnic_flow *fl[2] = {&fenced4, &fenced6};
    size_t alen = f->family == AF_INET ? 4 : 16;
    for (int i = 0; i < 2; i++)
        if (f->family == fl[i]->family && f->sport == fl[i]->local_port &&
            f->dport == fl[i]->remote_port && memcmp(f->src, fl[i]->local, alen) == 0 &&
            memcmp(f->dst, fl[i]->remote, alen) == 0)
            return 1;
    return 0;
}

static void check_parse(const uint8_t *frame, size_t len, int kind, const struct tlsnic_frame *f)
{
    if (kind != TLSNIC_FRAME_TCP && kind != TLSNIC_FRAME_OTHER && kind != -EBADMSG)
        abort();
    if (kind != TLSNIC_FRAME_TCP)
        return;
    size_t l3 = f->family == AF_INET ? 20 : 40;
    if ((f->family != AF_INET && f->family != AF_INET6) || f->l4_off < l3 ||
        f->tcp_hlen < 20 || f->tcp_hlen > 60 || f->tcp_hlen % 4 != 0 ||
        f->payload_off != f->l4_off + f->tcp_hlen || f->payload_off > len ||
        f->payload_len > len - f->payload_off)
        abort();
    if (f->family == AF_INET && (memcmp(f->src + 4, (uint8_t[12]){0}, 12) != 0 ||
                                 memcmp(f->dst + 4, (uint8_t[12]){0}, 12) != 0))
        abort();
    uint8_t *copy = malloc(len);
    if (copy == NULL)
        abort();
    memcpy(copy, frame, len);
    tlsnic_tcp_csum_fill(copy, f);
    if (!tlsnic_tcp_csum_ok(copy, f))
        abort();
    for (size_t i = 0; i < len; i++) /* only the checksum field changed */
        if (copy[i] != frame[i] && i != f->l4_off + 16 && i != f->l4_off + 17)
            abort();
    free(copy);
}

static void check_hook(const uint8_t *orig, size_t len, int kind, const struct tlsnic_frame *f,
                       const struct virtio_net_hdr *vh0, int full_csum)
{
    uint8_t *frame = malloc(len ? len : 1);
    if (frame == NULL)
        abort();
    memcpy(frame, orig, len);
    struct virtio_net_hdr vh = *vh0;
    struct tlsnic_xor_hook hook = {.key = 0x5a, .full_csum = full_csum};
    int v = tlsnic_xor_hook(&hook, 0, frame, len, &vh);
    if (v != 0 && v != 1)
        abort();
    if (kind != TLSNIC_FRAME_TCP || f->payload_len == 0) {
        if (memcmp(frame, orig, len) != 0 || v != (kind == -EBADMSG))
            abort(); /* nothing to rewrite: untouched (an unreadable TCP frame dropped) */
    } else {
        size_t end = f->payload_off + f->payload_len;
        for (size_t i = 0; i < len; i++) {
            int in_payload = i >= f->payload_off && i < end;
            int csum = i == f->l4_off + 16 || i == f->l4_off + 17;
            if (in_payload ? frame[i] != (orig[i] ^ 0x5a) : (!csum && frame[i] != orig[i]))
                abort();
        }
        if (full_csum == 1 && vh.gso_type == VIRTIO_NET_HDR_GSO_NONE &&
            !tlsnic_tcp_csum_ok(frame, f))
            abort();
    }
    free(frame);
}

static void check_gso(const uint8_t *frame, size_t len, int kind, const struct tlsnic_frame *f,
                      const struct virtio_net_hdr *vh)
{
    struct gso_plan p;
    int rc = gso_plan(frame, len, vh, &p);
    if (rc != 0) {
        if (rc != -ENOENT && rc != -EBADMSG)
            abort();
        return;
    }
    if (kind != TLSNIC_FRAME_TCP || p.mss != vh->gso_size || p.payload_len != f->payload_len ||
        p.n_segments < 2 || (p.n_segments - 1) * p.mss >= p.payload_len ||
        p.n_segments * p.mss < p.payload_len)
        abort();
    size_t cap = TLSNIC_TUN_VNET_HDR_LEN + f->payload_off + p.mss;
    uint8_t *seg = malloc(cap);
    if (seg == NULL)
        abort();
    size_t done = 0;
    for (unsigned i = 0; i < p.n_segments && i < MAX_SEGMENTS; i++) {
        size_t n = gso_build(&p, frame, i, seg, cap);
        if (n == 0 || n > cap)
            abort();
        struct tlsnic_frame s;
        const uint8_t *l3 = seg + TLSNIC_TUN_VNET_HDR_LEN;
        if (tlsnic_frame_parse(l3, n - TLSNIC_TUN_VNET_HDR_LEN, &s) != TLSNIC_FRAME_TCP ||
            s.family != f->family || s.sport != f->sport || s.dport != f->dport ||
            memcmp(s.src, f->src, 16) != 0 || memcmp(s.dst, f->dst, 16) != 0 ||
            s.seq != f->seq + (uint32_t)done || s.payload_len == 0 || s.payload_len > p.mss ||
            s.payload_len > f->payload_len - done ||
            memcmp(l3 + s.payload_off, frame + f->payload_off + done, s.payload_len) != 0)
            abort(); /* a segment that is not the next piece of the frame */
        done += s.payload_len;
    }
    if (p.n_segments <= MAX_SEGMENTS && done != f->payload_len)
        abort();
    if (gso_build(&p, frame, p.n_segments, seg, cap) != 0)
        abort(); /* no segment past the last */
    free(seg);
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

    struct tlsnic_frame f;
    int kind = tlsnic_frame_parse(frame, len, &f);
    check_parse(frame, len, kind, &f);

    int blocked = tlsnic_fence_blocks(the_fence(), frame, len);
    int must_block = kind < 0 || (kind == TLSNIC_FRAME_TCP && f.payload_len > 0 && is_fenced(&f));
    if (blocked != must_block)
        abort(); /* fenced payload passed, or a frame of another flow was held back */
    if (memcmp(frame, data + sizeof(vh), len) != 0)
        abort(); /* the fence only reads */

    check_hook(frame, len, kind, &f, &vh, data[0] & 1);
    check_gso(frame, len, kind, &f, &vh);
    free(frame);
    return 0;
}

/* Well-formed inputs: frames of the fenced flows (plain, and a GSO frame) and another. */
size_t LLVMFuzzerSeedInput(size_t i, uint8_t *buf, size_t cap)
{
    /* vnet header + IPv4 + TCP + 8 payload bytes of the fenced IPv4 flow */
    static const uint8_t seed4[10 + 48] = {
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0x45, 0, 0, 48, 0, 0, 0x40, 0, 64, 6, 0, 0, 198, 18, 0, 1, 198, 18, 0, 2,
        0x9c, 0x40, 0x01, 0xbb, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0,
        'p', 'l', 'a', 'i', 'n', 't', 'x', 't'};
    if (cap < 10 + 40 + 32 + 3000)
        return 0;
    memset(buf, 0, 10 + 40 + 32 + 3000);
    switch (i) {
    case 0:
        memcpy(buf, seed4, sizeof(seed4));
        return sizeof(seed4);
    case 1: { /* IPv6 with a hop-by-hop header and TCP options: the fenced IPv6 flow */
        uint8_t *l3 = buf + 10;
        size_t plen = 8 + 32 + 16;
        l3[0] = 0x60, l3[4] = 0, l3[5] = (uint8_t)plen, l3[6] = 0 /* HBH */, l3[7] = 64;
        memcpy(l3 + 8, fenced6.local, 16);
        memcpy(l3 + 24, fenced6.remote, 16);
        l3[40] = 6, l3[41] = 0; /* next TCP, 8 bytes */
        uint8_t *t = l3 + 48;
        t[0] = 0x9c, t[1] = 0x41, t[2] = 0x01, t[3] = 0xbb, t[7] = 1;
        t[12] = 8 << 4, t[13] = 0x18, t[14] = 0xff, t[15] = 0xff;
        t[20] = 1, t[21] = 1, t[22] = 8, t[23] = 10; /* NOP NOP timestamps */
        memcpy(t + 32, "tls record bytes", 16);
        return 10 + 40 + plen;
    }
    case 2: { /* a TSO frame of the IPv4 flow: 3000 bytes in 1448-byte segments */
        memcpy(buf, seed4, 10 + 40);
        buf[0] = VIRTIO_NET_HDR_F_NEEDS_CSUM;
        buf[1] = VIRTIO_NET_HDR_GSO_TCPV4;
        buf[4] = (uint8_t)1448, buf[5] = (uint8_t)(1448 >> 8); /* gso_size, little-endian */
        size_t tot = 40 + 3000;
        buf[10 + 2] = (uint8_t)(tot >> 8), buf[10 + 3] = (uint8_t)tot;
        for (size_t k = 0; k < 3000; k++)
            buf[10 + 40 + k] = (uint8_t)('a' + k % 26);
        return 10 + tot;
    }
    case 3: /* another flow's frame: passes */
        memcpy(buf, seed4, sizeof(seed4));
        buf[10 + 21] = 0x41;
        return sizeof(seed4);
    default:
        return 0;
    }
}
