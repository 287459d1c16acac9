/* Bounded L3/TCP frame parser and TCP checksum. */
#include "tlsnic/frame.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "tlsnic/check.h"

#define IPPROTO_TCP_ 6
#define V6_HBH 0
#define V6_ROUTING 43
#define V6_FRAGMENT 44
#define V6_DSTOPTS 60
#define V6_MAX_EXT 8

/* A bounded read cursor: every read checks the remaining length first. */
struct cursor {
    const uint8_t *p;
    size_t len;
    size_t off;
};

static int cur_need(const struct cursor *c, size_t n)
{
    return c->off <= c->len && n <= c->len - c->off ? 0 : -EBADMSG;
}

/* Takes n bytes at once: one bounds check, then the caller reads inside them. */
static const uint8_t *cur_take(struct cursor *c, size_t n)
{
    if (cur_need(c, n) < 0)
        return NULL;
    const uint8_t *p = c->p + c->off;
    c->off += n;
    return p;
}

static uint16_t be16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int cur_u8(struct cursor *c, uint8_t *v)
{
    TLSNIC_TRY(cur_need(c, 1));
    *v = c->p[c->off++];
    return 0;
}

static int cur_u16(struct cursor *c, uint16_t *v)
{
    TLSNIC_TRY(cur_need(c, 2));
    *v = (uint16_t)(c->p[c->off] << 8 | c->p[c->off + 1]);
    c->off += 2;
    return 0;
}

static int cur_u32(struct cursor *c, uint32_t *v)
{
    TLSNIC_TRY(cur_need(c, 4));
    const uint8_t *b = c->p + c->off;
    *v = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
    c->off += 4;
    return 0;
}

static int cur_bytes(struct cursor *c, uint8_t *dst, size_t n)
{
    TLSNIC_TRY(cur_need(c, n));
    memcpy(dst, c->p + c->off, n);
    c->off += n;
    return 0;
}

static int cur_skip(struct cursor *c, size_t n)
{
    TLSNIC_TRY(cur_need(c, n));
    c->off += n;
    return 0;
}

/* Returns the L4 protocol and leaves the cursor at the L4 header; *l3_end = IP end. */
static int parse_ipv4(struct cursor *c, struct tlsnic_frame *f, size_t *l3_end)
{
    const uint8_t *h = cur_take(c, 20);
    TLSNIC_ENSURE(h, EBADMSG);
    size_t ihl = (size_t)(h[0] & 0x0f) * 4;
    uint16_t tot_len = be16(h + 2), frag = be16(h + 6);
    uint8_t proto = h[9];
    memcpy(f->src, h + 12, 4);
    memcpy(f->dst, h + 16, 4);
    TLSNIC_ENSURE(ihl >= 20 && tot_len >= ihl && tot_len <= c->len, EBADMSG);
    TLSNIC_TRY(cur_skip(c, ihl - 20)); /* options */
    f->family = AF_INET;
    *l3_end = tot_len;
    if (proto != IPPROTO_TCP_)
        return proto;
    /* A fragment of TCP cannot be matched to a flow: the device cannot prove it is clear. */
    TLSNIC_ENSURE((frag & 0x3fff) == 0, EBADMSG);
    return proto;
}

static int parse_ipv6(struct cursor *c, struct tlsnic_frame *f, size_t *l3_end)
{
    uint32_t vtcfl;
    uint16_t plen;
    uint8_t next, hlim;
    TLSNIC_TRY(cur_u32(c, &vtcfl));
    TLSNIC_TRY(cur_u16(c, &plen));
    TLSNIC_TRY(cur_u8(c, &next));
    TLSNIC_TRY(cur_u8(c, &hlim));
    TLSNIC_TRY(cur_bytes(c, f->src, 16));
    TLSNIC_TRY(cur_bytes(c, f->dst, 16));
    TLSNIC_ENSURE((size_t)plen + 40 <= c->len, EBADMSG);
    f->family = AF_INET6;
    *l3_end = (size_t)plen + 40;
    struct cursor ext = {c->p, *l3_end, c->off};
    for (int i = 0; i < V6_MAX_EXT; i++) {
        if (next != V6_HBH && next != V6_ROUTING && next != V6_DSTOPTS &&
            next != V6_FRAGMENT) {
            c->off = ext.off;
            return next;
        }
        uint8_t nh, hlen;
        TLSNIC_TRY(cur_u8(&ext, &nh));
        TLSNIC_TRY(cur_u8(&ext, &hlen));
        if (next == V6_FRAGMENT)
            return nh == IPPROTO_TCP_ ? -EBADMSG : nh; /* fragmented TCP: drop */
        TLSNIC_TRY(cur_skip(&ext, (size_t)hlen * 8 + 6));
        next = nh;
    }
    return -EBADMSG; /* too many extension headers to know what this is */
}

int tlsnic_frame_parse(const uint8_t *data, size_t len, struct tlsnic_frame *out)
{
    if (!data || !out)
        return -EINVAL;
    memset(out->src, 0, sizeof(out->src));
    memset(out->dst, 0, sizeof(out->dst));
    if (len < 1)
        return TLSNIC_FRAME_OTHER;
    struct cursor c = {data, len, 0};
    size_t l3_end = 0;
    int proto;
    switch (data[0] >> 4) {
    case 4:
        proto = parse_ipv4(&c, out, &l3_end);
        break;
    case 6:
        proto = parse_ipv6(&c, out, &l3_end);
        break;
    default:
        return TLSNIC_FRAME_OTHER;
    }
    if (proto < 0)
        return proto;
    if (proto != IPPROTO_TCP_)
        return TLSNIC_FRAME_OTHER;
    struct cursor t = {data, l3_end, c.off};
    out->l4_off = t.off;
    const uint8_t *th = cur_take(&t, 20);
    TLSNIC_ENSURE(th, EBADMSG);
    out->sport = be16(th);
    out->dport = be16(th + 2);
    out->seq = be32(th + 4);
    out->ack = be32(th + 8);
    uint8_t doff = th[12], flags = th[13];
    uint16_t win = be16(th + 14);
    size_t hlen = (size_t)(doff >> 4) * 4;
    TLSNIC_ENSURE(hlen >= 20, EBADMSG);
    TLSNIC_TRY(cur_skip(&t, hlen - 20));
    out->tcp_hlen = hlen;
    out->flags = flags;
    out->window = win;
    out->payload_off = t.off;
    out->payload_len = l3_end - t.off;
    return TLSNIC_FRAME_TCP;
}

static uint16_t fold(uint64_t acc);

/*
 * One's complement sum of n bytes as big-endian 16-bit words, added to acc. The bulk is
 * summed in native 32-bit words (RFC 1071: the sum is byte-order independent up to one
 * final swap), the tail byte by byte.
 */
static uint64_t sum_bytes(uint64_t acc, const uint8_t *p, size_t n)
{
    /* 32-bit words into four 64-bit lanes: no carries to chase (n < 2^34), and the
     * lanes are independent, so the loop runs at load speed. */
    uint64_t l0 = 0, l1 = 0, l2 = 0, l3 = 0;
    while (n >= 16) {
        uint32_t w[4];
        memcpy(w, p, 16);
        l0 += w[0];
        l1 += w[1];
        l2 += w[2];
        l3 += w[3];
        p += 16;
        n -= 16;
    }
    while (n >= 4) {
        uint32_t w;
        memcpy(&w, p, 4);
        l0 += w;
        p += 4;
        n -= 4;
    }
    uint64_t a = (l0 & 0xffffffffu) + (l0 >> 32) + (l1 & 0xffffffffu) + (l1 >> 32) +
                 (l2 & 0xffffffffu) + (l2 >> 32) + (l3 & 0xffffffffu) + (l3 >> 32);
    uint16_t native = fold(a);
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    native = (uint16_t)(native << 8 | native >> 8);
#endif
    acc += native;
    while (n >= 2) {
        acc += (uint32_t)p[0] << 8 | p[1];
        p += 2;
        n -= 2;
    }
    if (n)
        acc += (uint32_t)p[0] << 8;
    return acc;
}

static uint16_t fold(uint64_t acc)
{
    acc = (acc & 0xffffffffu) + (acc >> 32);
    while (acc >> 16)
        acc = (acc & 0xffff) + (acc >> 16);
    return (uint16_t)acc;
}

static uint64_t pseudo_sum(const struct tlsnic_frame *f, size_t tcp_len)
{
    size_t alen = f->family == AF_INET ? 4 : 16;
    uint64_t acc = 0;
    acc = sum_bytes(acc, f->src, alen);
    acc = sum_bytes(acc, f->dst, alen);
    acc += IPPROTO_TCP_;
    acc += tcp_len & 0xffff;
    acc += tcp_len >> 16;
    return acc;
}

uint16_t tlsnic_csum16(const uint8_t *p, size_t len)
{
    return fold(sum_bytes(0, p, len));
}

uint16_t tlsnic_tcp_pseudo_csum(const struct tlsnic_frame *f, size_t tcp_len)
{
    return fold(pseudo_sum(f, tcp_len));
}

uint16_t tlsnic_tcp_csum(const uint8_t *data, const struct tlsnic_frame *f)
{
    size_t tcp_len = f->payload_off + f->payload_len - f->l4_off;
    const uint8_t *t = data + f->l4_off;
    uint64_t acc = pseudo_sum(f, tcp_len);
    acc = sum_bytes(acc, t, 16);                 /* up to the checksum field */
    acc = sum_bytes(acc, t + 18, tcp_len - 18);  /* urgent pointer, options, payload */
    return (uint16_t)~fold(acc);
}

void tlsnic_tcp_csum_fill(uint8_t *data, const struct tlsnic_frame *f)
{
    uint16_t c = tlsnic_tcp_csum(data, f);
    data[f->l4_off + 16] = (uint8_t)(c >> 8);
    data[f->l4_off + 17] = (uint8_t)c;
}

int tlsnic_tcp_csum_ok(const uint8_t *data, const struct tlsnic_frame *f)
{
    uint16_t c = tlsnic_tcp_csum(data, f);
    return data[f->l4_off + 16] == (uint8_t)(c >> 8) && data[f->l4_off + 17] == (uint8_t)c;
}
