/*
 * TUN interfaces with virtio-net headers, opened inside a named network namespace.
 *
 * tlsnicd sits between two namespaces (host, peer) and owns one TUN file descriptor on
 * each side. The interfaces are created persistent by scripts/net.sh (so addresses and
 * routes exist before the daemon starts and survive its restart); the daemon attaches
 * to them here with IFF_TUN | IFF_NO_PI | IFF_VNET_HDR, a 10-byte struct virtio_net_hdr
 * in front of every frame, and TUNSETOFFLOAD(TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6), so the
 * kernel hands over TSO super-frames with partial checksums, as to a NIC with TSO.
 *
 * Errors: negative errno.
 */
#ifndef TLSNIC_TUN_H
#define TLSNIC_TUN_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Bytes of virtio-net header in front of every frame read from or written to the fd. */
#define TLSNIC_TUN_VNET_HDR_LEN 10

/*
 * Opens (attaching to, or creating) TUN interface ifname inside network namespace netns:
 * a name under /run/netns (as `ip netns` makes them), an absolute path to a namespace
 * file, or NULL for the caller's own namespace. The calling thread returns to its own
 * namespace before this returns, on every path. Changes the namespace of the calling
 * thread only: call it before starting other threads that must not move.
 * Returns a non-blocking, close-on-exec fd (owned by the caller), or -errno.
 */
int tlsnic_tun_open(const char *netns, const char *ifname);

#ifdef __cplusplus
}
#endif

#endif
