/*
 * Test seam for the packet path (fwd.h): a frame hook that rewrites payload the way the
 * device will, to prove the checksum handling without the device model.
 */
#ifndef TLSNIC_TEST_XORHOOK_H
#define TLSNIC_TEST_XORHOOK_H

#include <linux/virtio_net.h>
#include <stddef.h>
#include <stdint.h>

/*
 * XORs the TCP payload of every TO_WIRE frame with key (TO_HOST frames pass), then makes
 * the checksum right for the receiver in one of two ways:
 *   full_csum == 0: the frame leaves as CHECKSUM_PARTIAL (NEEDS_CSUM with csum_start /
 *     csum_offset at the TCP checksum and the pseudo-header sum in the field). Frames
 *     that came without NEEDS_CSUM are converted to it (partial_converted).
 *   full_csum == 1: non-GSO frames get the complete TCP checksum and NEEDS_CSUM cleared
 *     (full_computed); GSO frames stay partial (their segments do not exist yet).
 *   full_csum == 2: negative control: NEEDS_CSUM cleared and the checksum left stale, so
 *     the receiver must count checksum errors and drop every rewritten frame.
 * Frames that are not IPv4/IPv6 + TCP pass untouched.
 */
struct tlsnic_xor_hook {
    uint8_t key;
    int full_csum;
    uint64_t frames_rewritten;
    uint64_t partial_converted;
    uint64_t full_computed;
    uint64_t not_tcp;
};

int tlsnic_xor_hook(void *ctx, int direction, uint8_t *frame, size_t len,
                    struct virtio_net_hdr *vh);

#endif
