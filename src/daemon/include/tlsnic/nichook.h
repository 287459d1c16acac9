/*
 * The device model (nic.h) plugged into the packet path (fwd.h): tlsnicd's glue.
 */
#ifndef TLSNIC_NICHOOK_H
#define TLSNIC_NICHOOK_H

#include <linux/virtio_net.h>
#include <stddef.h>
#include <stdint.h>

#include "tlsnic/devops.h"
#include "tlsnic/fwd.h"
#include "tlsnic/nic.h"

/* ------------------------------------------------------------------------------------------ */
/* The device model as the hook.                                                              */

/*
 * Runs each frame through the device model (nic.h); ctx is the tlsnic_nic. Towards the
 * wire: tlsnic_nic_tx with the frame's gso_size and, from its vnet header, the checksum
 * mode (NEEDS_CSUM: TLSNIC_CSUM_OFFLOAD, the partial sum stays valid for the rewritten
 * payload; else TLSNIC_CSUM_FULL, the device rewrites the full checksum). Towards the
 * host: tlsnic_nic_rx (the device reads ACKs). Drops what the device drops.
 */
int tlsnic_nic_frame_hook(void *ctx, int direction, uint8_t *frame, size_t len,
                          struct virtio_net_hdr *vh);

/* The device's counters as "name value\n" lines (tlsnicd's STATS). Length or -ENOBUFS. */
int tlsnic_nic_stats_format(const tlsnic_nic *nic, char *buf, size_t cap);

/*
 * One flow's device counters in the control protocol's order (ctl_proto.h,
 * TLSNIC_CTL_FLOW_COUNTER_LIST); ctx is the tlsnic_nic. The flow_counters callback of the
 * control server. 0, -ENOENT (no context for the flow), -EINVAL (cap too small).
 */
int tlsnic_nic_flow_counters(void *ctx, const struct tlsnic_flow *flow, enum tlsnic_dir dir,
                             uint64_t *out, size_t cap);

#endif
