/*
 * Just enough of an L3 frame to name its TCP flow and find its payload (internal to the
 * daemon; the device model has its own full parser). Reads only through a bounded cursor.
 */
#ifndef TLSNIC_CTL_L4_H
#define TLSNIC_CTL_L4_H

#include <stddef.h>
#include <stdint.h>

struct l4_view {
    uint8_t family;      /* AF_INET or AF_INET6 */
    uint8_t src[16];     /* IPv4 in the first 4 bytes, rest zero */
    uint8_t dst[16];
    uint16_t sport, dport;
    size_t l4_off;       /* TCP header */
    size_t payload_off;
    size_t end;          /* end of the IP packet (link padding excluded) */
    uint32_t pseudo;     /* one's complement sum of the pseudo-header without the length */
};

/*
 * 0: IPv4/IPv6 (no extension headers) + TCP, *v filled. -ENOENT: not TCP, or an IPv4
 * fragment, or an IPv6 extension header (nothing to name). -EBADMSG: claims to be IP/TCP
 * but its lengths do not hold.
 */
int l4_parse(const uint8_t *frame, size_t len, struct l4_view *v);

/* One's complement sum of len bytes added to acc (not folded). */
uint32_t l4_sum16(const uint8_t *p, size_t len, uint32_t acc);

uint16_t l4_fold(uint32_t acc);

#endif
