/*
 * L3 frames (IPv4 / IPv6 + TCP, no link header): a bounded parser and the TCP checksum.
 * Part of the device library (tlsnic_device), and the one frame parser of the project:
 * the wire's segmentation and the daemon's restart fence read frames with it too, so
 * what the device can name is what they can name.
 *
 * The parser reads only through a bounded cursor over [data, data + len): it never reads
 * past len, whatever the header fields claim.
 */
#ifndef TLSNIC_FRAME_H
#define TLSNIC_FRAME_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TLSNIC_TCP_FIN 0x01
#define TLSNIC_TCP_SYN 0x02
#define TLSNIC_TCP_RST 0x04
#define TLSNIC_TCP_PSH 0x08
#define TLSNIC_TCP_ACK 0x10

struct tlsnic_frame {
    uint8_t family;       /* AF_INET or AF_INET6 */
    uint8_t src[16];      /* IPv4: first 4 bytes */
    uint8_t dst[16];
    size_t l4_off;        /* offset of the TCP header */
    size_t tcp_hlen;      /* TCP header length, options included */
    size_t payload_off;   /* offset of the TCP payload */
    size_t payload_len;   /* as the IP length fields give it (trailing padding excluded) */
    uint16_t sport, dport;
    uint32_t seq, ack;
    uint8_t flags;        /* TLSNIC_TCP_* */
    uint16_t window;
};

enum tlsnic_frame_kind {
    TLSNIC_FRAME_TCP = 0,   /* *out filled */
    TLSNIC_FRAME_OTHER = 1, /* not IP, or IP carrying something other than TCP */
};

/*
 * Parses an L3 frame. Returns TLSNIC_FRAME_TCP or TLSNIC_FRAME_OTHER, or -EBADMSG for an
 * IP frame that is malformed, claims TCP but has no valid TCP header, or is a fragment
 * that may carry TCP.
 */
int tlsnic_frame_parse(const uint8_t *data, size_t len, struct tlsnic_frame *out);

/*
 * TCP checksum (RFC 793 / 2460 pseudo-header) of the segment [l4_off, payload_off +
 * payload_len) of a parsed frame, computed as if its checksum field were zero.
 */
uint16_t tlsnic_tcp_csum(const uint8_t *data, const struct tlsnic_frame *f);

/* Writes tlsnic_tcp_csum into the frame's checksum field. */
void tlsnic_tcp_csum_fill(uint8_t *data, const struct tlsnic_frame *f);

/* 1 if the frame's TCP checksum field is right, else 0. */
int tlsnic_tcp_csum_ok(const uint8_t *data, const struct tlsnic_frame *f);

/* Folded one's complement sum of len bytes (not complemented): ~ of it over an IPv4
 * header whose checksum field is zero is that header's checksum. */
uint16_t tlsnic_csum16(const uint8_t *p, size_t len);

/* One's complement sum of the pseudo-header alone (what a TSO frame carries). */
uint16_t tlsnic_tcp_pseudo_csum(const struct tlsnic_frame *f, size_t tcp_len);

#ifdef __cplusplus
}
#endif

#endif
