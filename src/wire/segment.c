/* Software TSO for the wire (see segment.h). */
#include "segment.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "tlsnic/tun.h"

#define TCP_FIN 0x01
#define TCP_PSH 0x08
#define TCP_CWR 0x80

int gso_plan(const uint8_t *frame, size_t len, const struct virtio_net_hdr *vh,
             struct gso_plan *p)
{
    uint8_t type = vh->gso_type & (uint8_t)~VIRTIO_NET_HDR_GSO_ECN;
    if (type != VIRTIO_NET_HDR_GSO_TCPV4 && type != VIRTIO_NET_HDR_GSO_TCPV6)
        return -ENOENT;
    memset(p, 0, sizeof(*p));
    if (tlsnic_frame_parse(frame, len, &p->f) != TLSNIC_FRAME_TCP)
        return -EBADMSG; /* a TCP GSO frame that cannot be read as one */
    if ((type == VIRTIO_NET_HDR_GSO_TCPV4) != (p->f.family == AF_INET) || vh->gso_size == 0)
        return -EBADMSG;
    p->payload_len = p->f.payload_len;
    p->mss = vh->gso_size;
    if (p->payload_len <= p->mss)
        return -ENOENT;
    p->n_segments = (unsigned)((p->payload_len + p->mss - 1) / p->mss);
    return 0;
}

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

size_t gso_build(const struct gso_plan *p, const uint8_t *frame, unsigned i, uint8_t *out,
                 size_t cap)
{
    size_t hdr = p->f.payload_off;
    size_t off = (size_t)i * p->mss;
    size_t chunk = p->payload_len - off < p->mss ? p->payload_len - off : p->mss;
    size_t seg_len = hdr + chunk;
    if (i >= p->n_segments || TLSNIC_TUN_VNET_HDR_LEN + seg_len > cap)
        return 0;
    struct virtio_net_hdr vh = {.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM,
                                .gso_type = VIRTIO_NET_HDR_GSO_NONE,
                                .csum_start = (uint16_t)p->f.l4_off,
                                .csum_offset = 16};
    memcpy(out, &vh, sizeof(vh));
    uint8_t *seg = out + TLSNIC_TUN_VNET_HDR_LEN;
    memcpy(seg, frame, hdr);
    memcpy(seg + hdr, frame + hdr + off, chunk);

    if (p->f.family == AF_INET) {
        put16(seg + 2, (uint16_t)seg_len);
        put16(seg + 4, (uint16_t)(get16(frame + 4) + i)); /* IP ID advances per segment */
        put16(seg + 10, 0);
        put16(seg + 10, (uint16_t)~tlsnic_csum16(seg, (size_t)(seg[0] & 0x0f) * 4));
    } else {
        put16(seg + 4, (uint16_t)(seg_len - 40));
    }
    uint8_t *tcp = seg + p->f.l4_off;
    uint32_t seq = (uint32_t)tcp[4] << 24 | (uint32_t)tcp[5] << 16 | (uint32_t)tcp[6] << 8 | tcp[7];
    seq += (uint32_t)off;
    tcp[4] = (uint8_t)(seq >> 24);
    tcp[5] = (uint8_t)(seq >> 16);
    tcp[6] = (uint8_t)(seq >> 8);
    tcp[7] = (uint8_t)seq;
    /* CWR on the first segment only; FIN and PSH on the last only (as the kernel's TSO). */
    if (i > 0)
        tcp[13] &= (uint8_t)~TCP_CWR;
    if (i + 1 < p->n_segments)
        tcp[13] &= (uint8_t)~(TCP_FIN | TCP_PSH);
    size_t tcp_len = seg_len - p->f.l4_off;
    put16(tcp + 16, tlsnic_tcp_pseudo_csum(&p->f, tcp_len)); /* partial: not complemented */
    return TLSNIC_TUN_VNET_HDR_LEN + seg_len;
}
