/*
 * The XOR test hook (fwd.h): the device's way of rewriting payload in place, without the
 * crypto, so the checksum handling can be proven against the real receiving kernel.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <string.h>

#include "tlsnic/frame.h"
#include "tlsnic/fwd.h"
#include "xorhook.h"

int tlsnic_xor_hook(void *ctx, int direction, uint8_t *frame, size_t len,
                    struct virtio_net_hdr *vh)
{
    struct tlsnic_xor_hook *h = ctx;
    if (direction != 0)
        return 0;
    struct tlsnic_frame t;
    int kind = tlsnic_frame_parse(frame, len, &t);
    if (kind != TLSNIC_FRAME_TCP) {
        h->not_tcp++;
        /* A TCP frame the hook cannot read may carry bytes it should have rewritten. */
        return kind == TLSNIC_FRAME_OTHER ? 0 : 1;
    }
    if (t.payload_len == 0)
        return 0;
    size_t end = t.payload_off + t.payload_len;
    for (size_t i = t.payload_off; i < end; i++)
        frame[i] ^= h->key;
    h->frames_rewritten++;

    size_t tcp_len = end - t.l4_off;
    uint8_t *check = frame + t.l4_off + 16;
    bool gso = vh->gso_type != VIRTIO_NET_HDR_GSO_NONE;
    if (h->full_csum == 2) {
        vh->flags &= (uint8_t)~VIRTIO_NET_HDR_F_NEEDS_CSUM;
        return 0;
    }
    if (h->full_csum == 1 && !gso) {
        tlsnic_tcp_csum_fill(frame, &t);
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
        uint16_t pseudo = tlsnic_tcp_pseudo_csum(&t, tcp_len);
        check[0] = (uint8_t)(pseudo >> 8);
        check[1] = (uint8_t)pseudo;
        vh->flags |= VIRTIO_NET_HDR_F_NEEDS_CSUM;
        vh->csum_start = (uint16_t)t.l4_off;
        vh->csum_offset = 16;
        h->partial_converted++;
    }
    return 0;
}
