/*
 * The XOR test hook (fwd.h): the device's way of rewriting payload in place, without the
 * crypto, so the checksum handling can be proven against the real receiving kernel.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>

#include "cursor.h"
#include "tlsnic/fwd.h"

struct tcp_frame {
    size_t l4_off;      /* TCP header */
    size_t payload_off;
    size_t end;         /* end of the IP packet (link padding excluded) */
    uint32_t pseudo;    /* pseudo-header sum without the length */
};

static uint32_t sum16(const uint8_t *p, size_t len, uint32_t acc)
{
    for (size_t i = 0; i + 1 < len; i += 2)
        acc += (uint32_t)p[i] << 8 | p[i + 1];
    if (len & 1)
        acc += (uint32_t)p[len - 1] << 8;
    return acc;
}

static uint16_t fold(uint32_t acc)
{
    while (acc >> 16)
        acc = (acc & 0xffff) + (acc >> 16);
    return (uint16_t)acc;
}

/* IPv4 or IPv6 (no extension headers) carrying TCP: 0, else -ENOENT / -EBADMSG. */
static int parse_tcp(const uint8_t *frame, size_t len, struct tcp_frame *t)
{
    struct rcursor c = {.p = frame, .left = len};
    uint8_t v = rc_u8(&c) >> 4;
    if (c.bad)
        return -EBADMSG;
    if (v == 4) {
        size_t ihl = (size_t)(frame[0] & 0xf) * 4;
        struct rcursor h = {.p = frame, .left = len};
        const uint8_t *ip = rc_take(&h, ihl < 20 ? 20 : ihl);
        if (ip == NULL || ihl < 20)
            return -EBADMSG;
        size_t total = (size_t)ip[2] << 8 | ip[3];
        if (ip[9] != IPPROTO_TCP)
            return -ENOENT;
        if ((ip[6] & 0x3f) != 0 || ip[7] != 0) /* fragment: not ours to touch */
            return -ENOENT;
        if (total < ihl || total > len)
            return -EBADMSG;
        t->end = total;
        t->l4_off = ihl;
        t->pseudo = sum16(ip + 12, 8, IPPROTO_TCP);
    } else if (v == 6) {
        struct rcursor h = {.p = frame, .left = len};
        const uint8_t *ip = rc_take(&h, 40);
        if (ip == NULL)
            return -EBADMSG;
        if (ip[6] != IPPROTO_TCP)
            return -ENOENT;
        size_t payload = (size_t)ip[4] << 8 | ip[5];
        if (40 + payload > len)
            return -EBADMSG;
        t->end = 40 + payload;
        t->l4_off = 40;
        t->pseudo = sum16(ip + 8, 32, IPPROTO_TCP);
    } else {
        return -ENOENT;
    }
    if (t->end < t->l4_off + 20)
        return -EBADMSG;
    size_t doff = (size_t)(frame[t->l4_off + 12] >> 4) * 4;
    if (doff < 20 || t->l4_off + doff > t->end)
        return -EBADMSG;
    t->payload_off = t->l4_off + doff;
    return 0;
}

int tlsnic_xor_hook(void *ctx, int direction, uint8_t *frame, size_t len,
                    struct virtio_net_hdr *vh)
{
    struct tlsnic_xor_hook *h = ctx;
    if (direction != 0)
        return 0;
    struct tcp_frame t;
    int err = parse_tcp(frame, len, &t);
    if (err < 0) {
        h->not_tcp++;
        /* A TCP frame the hook cannot read may carry bytes it should have rewritten. */
        return err == -ENOENT ? 0 : 1;
    }
    if (t.payload_off == t.end)
        return 0;
    for (size_t i = t.payload_off; i < t.end; i++)
        frame[i] ^= h->key;
    h->frames_rewritten++;

    size_t tcp_len = t.end - t.l4_off;
    uint8_t *check = frame + t.l4_off + 16;
    bool gso = vh->gso_type != VIRTIO_NET_HDR_GSO_NONE;
    if (h->full_csum == 2) {
        vh->flags &= (uint8_t)~VIRTIO_NET_HDR_F_NEEDS_CSUM;
        return 0;
    }
    if (h->full_csum == 1 && !gso) {
        check[0] = check[1] = 0;
        uint16_t sum = (uint16_t)~fold(sum16(frame + t.l4_off, tcp_len, t.pseudo + (uint32_t)tcp_len));
        check[0] = (uint8_t)(sum >> 8);
        check[1] = (uint8_t)sum;
        vh->flags &= (uint8_t)~VIRTIO_NET_HDR_F_NEEDS_CSUM;
        h->full_computed++;
        return 0;
    }
    if (!(vh->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM)) {
        /*
         * Partial form: the field holds the folded pseudo-header sum (with the TCP length
         * of the whole frame, as the kernel's own TSO frames carry it), not complemented;
         * whoever completes it sums from csum_start and stores ~sum.
         */
        uint16_t pseudo = fold(t.pseudo + (uint32_t)tcp_len);
        check[0] = (uint8_t)(pseudo >> 8);
        check[1] = (uint8_t)pseudo;
        vh->flags |= VIRTIO_NET_HDR_F_NEEDS_CSUM;
        vh->csum_start = (uint16_t)t.l4_off;
        vh->csum_offset = 16;
        h->partial_converted++;
    }
    return 0;
}
