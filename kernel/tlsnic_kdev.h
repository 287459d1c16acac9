/* SPDX-License-Identifier: (GPL-2.0 WITH Linux-syscall-note) OR BSD-2-Clause */
/*
 * The character device /dev/tlsnic (tlsnic.ko) as user space sees it: the contract between
 * the kernel driver, which is a Linux TLS offload NIC (tlsdev_ops), and the process that
 * plays the NIC's hardware (tlsnic-kdevd, running tlsnic's device model).
 *
 * Like TUN: open(2) /dev/tlsnic, TLSNIC_KDEV_ATTACH creates a network device bound to that
 * file (an L3 device: IPv4/IPv6 frames, no link-layer header) and close(2) destroys it.
 * Each read(2) returns one message, each write(2) takes one message. All fields are in
 * the host's byte order (the daemon runs beside the kernel) except inside frames, which
 * are as on the wire, preceded by a struct virtio_net_hdr in little-endian (as TUN's
 * IFF_VNET_HDR: GSO super-frames with their gso_size, partial checksums).
 *
 * Messages from the kernel (read):
 *   FRAME   a frame the kernel transmits: struct tlsnic_kdev_frame, then nrec records
 *           (struct tlsnic_kdev_rec + data_len bytes, each padded to 8), then the virtio
 *           header and the frame. flow_id names the offloaded TLS flow the frame belongs to
 *           (0: none). The records are the kernel's (tls_get_record) for a segment that is
 *           not at the flow's expected sequence number: every record the segment touches,
 *           from its first byte up to the end of the segment (at least its header and
 *           explicit nonce): what the device needs to rebuild its crypto state (resync).
 *   ADD     struct tlsnic_kdev_add: the flow's keys (the kernel's tls_crypto_info, which
 *           has the <linux/tls.h> layout) from TCP sequence start_seq on, for TX (sent
 *           before any frame of the flow) or RX (start_seq: the next byte the socket
 *           reads). Key bytes are wiped in the driver once read. Flow ids are unique per
 *           device across both directions.
 *   DEL     struct tlsnic_kdev_del: forget the flow; sent after its last frame.
 *   RESYNC  struct tlsnic_kdev_resync: record rec_seq starts at TCP sequence seq (the
 *           record header's first byte). RX: the kernel's answer to a RESYNC_REQ.
 * Messages from user space (write):
 *   FRAME   a frame for the kernel to receive (flow_id 0, nrec 0). TLSNIC_KDEV_F_DECRYPTED
 *           in the header's flags: every TLS record byte the frame carries is as the kernel
 *           wants it from an RX-offloading device (bodies decrypted, and the tag of any
 *           record that ends in it verified): the driver marks the skb decrypted, and a
 *           record all of whose skbs are marked is not checked again by the kernel. Any
 *           doubt: the frame as it came from the wire, unmarked (the kernel decrypts it, or
 *           re-encrypts what was decrypted of a mixed record and checks it in software).
 *   RESYNC_REQ  struct tlsnic_kdev_resync_req: the device lost an RX flow's record
 *           boundaries and found a candidate header at TCP sequence seq (its first byte);
 *           the kernel answers with RESYNC when its reading reaches a record there, and
 *           not at all if none starts there (the kernel's device-request mode).
 *   STATS   struct tlsnic_kdev_stats: the device model's counters, shown by ethtool -S.
 *
 * The device never sends a frame of an offloaded flow it cannot encrypt: a flow_id it
 * does not know, or a segment it cannot resync, is dropped (TCP sends it again).
 */
#ifndef TLSNIC_KDEV_H
#define TLSNIC_KDEV_H

#include <linux/ioctl.h>
#include <linux/types.h>

#define TLSNIC_KDEV_NAMESIZ 16 /* IFNAMSIZ */

struct tlsnic_kdev_attach {
	char name[TLSNIC_KDEV_NAMESIZ]; /* in: "" for tlsnic%d; out: the name given */
	__u32 ifindex;                  /* out */
	__u32 flags;                    /* in: 0 */
};

#define TLSNIC_KDEV_ATTACH _IOWR('t', 0x71, struct tlsnic_kdev_attach)

enum tlsnic_kdev_msg_type {
	TLSNIC_KDEV_MSG_FRAME = 1,
	TLSNIC_KDEV_MSG_ADD = 2,
	TLSNIC_KDEV_MSG_DEL = 3,
	TLSNIC_KDEV_MSG_RESYNC = 4,
	TLSNIC_KDEV_MSG_STATS = 5,
	TLSNIC_KDEV_MSG_RESYNC_REQ = 6,
};

#define TLSNIC_KDEV_F_DECRYPTED 0x1 /* FRAME written by user space; see above */

struct tlsnic_kdev_hdr {
	__u16 type;
	__u16 flags; /* FRAME from user space: TLSNIC_KDEV_F_*; otherwise 0 */
	__u32 len;   /* the whole message, this header included */
};

struct tlsnic_kdev_frame {
	__u32 flow_id;
	__u16 nrec;
	__u16 vnet_len;  /* sizeof(struct virtio_net_hdr) */
	__u32 rec_bytes; /* bytes of the records that follow */
	__u32 frame_len; /* L3 frame after the virtio header */
};

struct tlsnic_kdev_rec {
	__u32 start_seq; /* TCP sequence number of the record's first header byte */
	__u32 len;       /* whole record: header, explicit nonce, body, tag */
	__u64 rec_seq;   /* TLS record sequence number */
	__u32 data_len;  /* bytes of the record that follow (a prefix; tag room excluded) */
	__u32 pad;
};

#define TLSNIC_KDEV_DIR_TX 0
#define TLSNIC_KDEV_DIR_RX 1

struct tlsnic_kdev_add {
	__u32 flow_id;
	__u8 dir;
	__u8 family; /* AF_INET or AF_INET6 */
	__u16 local_port;  /* host byte order */
	__u16 remote_port; /* host byte order */
	__u16 info_len;
	__u8 local[16];    /* the host's end; IPv4 in the first 4 bytes */
	__u8 remote[16];
	__u32 start_seq;
	__u32 pad;
	__u8 info[64];     /* struct tls12_crypto_info_*, info_len bytes */
};

struct tlsnic_kdev_del {
	__u32 flow_id;
	__u8 dir;
	__u8 pad[3];
};

struct tlsnic_kdev_resync {
	__u32 flow_id;
	__u8 dir;
	__u8 pad[3];
	__u32 seq;
	__u32 pad2;
	__u64 rec_seq;
};

struct tlsnic_kdev_resync_req {
	__u32 flow_id;
	__u32 seq;
};

/* The device model's counters (mlx5's names), as ethtool -S shows them. */
#define TLSNIC_KDEV_STATS_N 22
struct tlsnic_kdev_stats {
	__u64 v[TLSNIC_KDEV_STATS_N]; /* in the order of TLSNIC_KDEV_STATS_NAMES */
};

#define TLSNIC_KDEV_STATS_NAMES \
	"tx_tls_encrypted_packets", "tx_tls_encrypted_bytes", "tx_tls_ctx", "tx_tls_del", \
	"tx_tls_ooo", "tx_tls_ooo_ckpt", "tx_tls_resync_bytes", "tx_tls_dump_packets", \
	"tx_tls_dump_bytes", "tx_tls_skip_no_sync_data", "tx_tls_drop_no_sync_data", \
	"tx_tls_drop_unknown_flow", "rx_tls_decrypted_packets", "rx_tls_decrypted_bytes", \
	"rx_tls_ctx", "rx_tls_del", "rx_tls_err", "rx_tls_resync_req_pkt", \
	"rx_tls_resync_req_start", "rx_tls_resync_req_end", "rx_tls_resync_res_ok", \
	"rx_tls_resync_res_skip"

#endif
