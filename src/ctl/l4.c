/* Minimal TCP/IP view of a frame (see l4.h). */
#include "l4.h"

#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

#include "cursor.h"

uint32_t l4_sum16(const uint8_t *p, size_t len, uint32_t acc)
{
    for (size_t i = 0; i + 1 < len; i += 2)
        acc += (uint32_t)p[i] << 8 | p[i + 1];
    if (len & 1)
        acc += (uint32_t)p[len - 1] << 8;
    return acc;
}

uint16_t l4_fold(uint32_t acc)
{
    while (acc >> 16)
        acc = (acc & 0xffff) + (acc >> 16);
    return (uint16_t)acc;
}

int l4_parse(const uint8_t *frame, size_t len, struct l4_view *v)
{
    struct rcursor c = {.p = frame, .left = len};
    memset(v, 0, sizeof(*v));
    uint8_t version = rc_u8(&c) >> 4;
    if (c.bad)
        return -EBADMSG;
    if (version == 4) {
        size_t ihl = (size_t)(frame[0] & 0xf) * 4;
        struct rcursor h = {.p = frame, .left = len};
        const uint8_t *ip = rc_take(&h, 20);
        if (ip == NULL || ihl < 20 || ihl > len)
            return -EBADMSG;
        size_t total = (size_t)ip[2] << 8 | ip[3];
        if (ip[9] != IPPROTO_TCP)
            return -ENOENT;
        if ((ip[6] & 0x3f) != 0 || ip[7] != 0) /* a fragment: no TCP header to read */
            return -ENOENT;
        if (total < ihl || total > len)
            return -EBADMSG;
        v->family = AF_INET;
        memcpy(v->src, ip + 12, 4);
        memcpy(v->dst, ip + 16, 4);
        v->end = total;
        v->l4_off = ihl;
        v->pseudo = l4_sum16(ip + 12, 8, IPPROTO_TCP);
    } else if (version == 6) {
        struct rcursor h = {.p = frame, .left = len};
        const uint8_t *ip = rc_take(&h, 40);
        if (ip == NULL)
            return -EBADMSG;
        if (ip[6] != IPPROTO_TCP)
            return -ENOENT;
        size_t payload = (size_t)ip[4] << 8 | ip[5];
        if (40 + payload > len)
            return -EBADMSG;
        v->family = AF_INET6;
        memcpy(v->src, ip + 8, 16);
        memcpy(v->dst, ip + 24, 16);
        v->end = 40 + payload;
        v->l4_off = 40;
        v->pseudo = l4_sum16(ip + 8, 32, IPPROTO_TCP);
    } else {
        return -ENOENT;
    }
    struct rcursor t = {.p = frame + v->l4_off, .left = v->end - v->l4_off};
    v->sport = (uint16_t)(rc_u8(&t) << 8);
    v->sport |= rc_u8(&t);
    v->dport = (uint16_t)(rc_u8(&t) << 8);
    v->dport |= rc_u8(&t);
    rc_take(&t, 8);
    size_t doff = (size_t)(rc_u8(&t) >> 4) * 4;
    if (t.bad || doff < 20 || v->l4_off + doff > v->end)
        return -EBADMSG;
    v->payload_off = v->l4_off + doff;
    return 0;
}
