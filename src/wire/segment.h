/*
 * Software TSO for the wire (internal): cuts a TCP GSO super-frame into the MSS-sized
 * segments a real wire carries, the way a NIC's TSO engine does. Each segment leaves
 * with a partial TCP checksum (NEEDS_CSUM, pseudo-header sum of its own length) and a
 * recomputed IPv4 header checksum.
 */
#ifndef TLSNIC_CTL_SEGMENT_H
#define TLSNIC_CTL_SEGMENT_H

#include <linux/virtio_net.h>
#include <stddef.h>
#include <stdint.h>

#include "tlsnic/frame.h"

struct gso_plan {
    struct tlsnic_frame f;
    size_t payload_len;
    size_t mss;
    unsigned n_segments;
};

/*
 * Plans the segmentation of frame (L3, len bytes) under vh. -ENOENT: nothing to cut (not
 * a TCP GSO frame, or one segment's worth); -EBADMSG: a GSO frame that cannot be read.
 */
int gso_plan(const uint8_t *frame, size_t len, const struct virtio_net_hdr *vh,
             struct gso_plan *p);

/*
 * Writes segment i (vnet header + L3 frame) into out (cap bytes). Returns its length, or
 * 0 if it does not fit.
 */
size_t gso_build(const struct gso_plan *p, const uint8_t *frame, unsigned i, uint8_t *out,
                 size_t cap);

#endif
