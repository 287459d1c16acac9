/*
 * The daemon's data path: frames between the host-side TUN and the wire-side TUN, with
 * the device hook in between, wire faults, and pcap capture.
 *
 *   host TUN --read--> [pcap host] --> on_frame(TO_WIRE) --> faults --> [pcap wire] --write--> wire TUN
 *   host TUN <--write-- [pcap host] <-- on_frame(TO_HOST) <-- faults <-- [pcap wire] <--read-- wire TUN
 *
 * So the host capture shows what the host stack sent and received (plaintext records),
 * the wire capture what crossed the wire TUN (ciphertext; lost frames of the TO_HOST
 * direction are seen there, lost frames of the TO_WIRE direction are not).
 *
 * Frames pass unchanged, GSO super-frames as GSO with their virtio-net header. Checksums:
 * frames with VIRTIO_NET_HDR_F_NEEDS_CSUM carry only the pseudo-header sum in the TCP
 * checksum field; they are forwarded with the flag and csum_start/csum_offset intact, and
 * the receiving kernel takes them as CHECKSUM_PARTIAL (trusted, like a virtio guest's
 * frames), so a hook may rewrite their payload without touching the checksum. A hook
 * that rewrites the payload of a frame without NEEDS_CSUM must fix the full checksum
 * itself (the device model does: TLSNIC_CSUM_FULL), or the receiver drops the segment.
 *
 * No allocation after tlsnic_fwd_new: a fixed pool of frame buffers per direction.
 * Not thread-safe: one thread polls and processes.
 *
 * Errors: negative errno.
 */
#ifndef TLSNIC_FWD_H
#define TLSNIC_FWD_H

#include <linux/virtio_net.h>
#include <poll.h>
#include <stddef.h>
#include <stdint.h>


#ifdef __cplusplus
extern "C" {
#endif

/* Directions, numbered as enum tlsnic_dir: the device encrypts TO_WIRE (TX). */
enum tlsnic_fwd_dir {
    TLSNIC_FWD_TO_WIRE = 0,
    TLSNIC_FWD_TO_HOST = 1,
};

/* Largest frame (vnet header excluded) a TUN with TSO hands over: a 64 KB super-frame. */
#define TLSNIC_FWD_MAX_FRAME 65536u

/* Verdicts of the frame hook. A negative errno also drops (and counts hook_errors). */
#define TLSNIC_FRAME_PASS 0 /* forward (possibly modified in place) */
#define TLSNIC_FRAME_DROP 1 /* drop; TCP will retransmit */

/*
 * The device hook, called once per frame read (per super-frame for GSO frames).
 * frame/len: the L3 frame (IPv4 or IPv6, no link header), writable in place, length
 * fixed. vh: its virtio-net header, writable (e.g. to set NEEDS_CSUM). Both valid only
 * during the call.
 */
typedef int (*tlsnic_frame_hook)(void *ctx, int direction, uint8_t *frame, size_t len,
                                 struct virtio_net_hdr *vh);

/*
 * Wire faults, decided per frame (a GSO super-frame is lost, duplicated or delayed as a
 * whole, as a burst of segments). Rates in parts per million; all 0 = off. Decisions for
 * the i-th frame of a direction depend only on (seed, direction, i).
 */
struct tlsnic_fault_cfg {
    uint32_t loss_ppm;
    uint32_t reorder_ppm;    /* frame held back and sent after 1..3 later frames */
    uint32_t dup_ppm;        /* frame sent twice */
    uint64_t seed;
    uint32_t dirs;           /* bit (1 << enum tlsnic_fwd_dir); 0 = both directions */
    uint32_t reorder_hold_us;/* a held frame leaves after this at the latest; 0 = 2000 */
};

struct tlsnic_fwd_config {
    int host_fd;                  /* borrowed, non-blocking TUN fds (tlsnic_tun_open) */
    int wire_fd;
    tlsnic_frame_hook on_frame;   /* NULL = pass everything */
    void *hook_ctx;
    struct tlsnic_fault_cfg faults;
    const char *pcap_host_path;   /* NULL = no capture; file is created/truncated */
    const char *pcap_wire_path;
    /*
     * May be NULL: called for each TO_WIRE frame (L3) before the hook; a frame it
     * returns non-zero for is dropped (fence_drops) without reaching the hook. tlsnicd
     * gates with its restart fence (fence.h).
     */
    int (*to_wire_gate)(const void *gate_ctx, const uint8_t *frame, size_t len);
    const void *gate_ctx;
    /* The same for TO_HOST frames, after the wire and before the hook (tlsnicd: the
     * restart fence of RX flows); counted in fence_drops too. */
    int (*to_host_gate)(const void *gate_ctx, const uint8_t *frame, size_t len);
    const void *to_host_gate_ctx;
    /*
     * 1: the wire carries MSS-sized segments, as a real one does. TCP GSO super-frames
     * are cut (software TSO) where they reach the wire: towards the peer after the
     * device hook, towards the host before it (the device sees wire segments, as a NIC's
     * RX path does). Faults then hit single segments. 0 (default): super-frames cross
     * whole, and a fault hits all their segments at once.
     */
    int segment_on_wire;
};

struct tlsnic_fwd_dir_stats {
    uint64_t frames;          /* frames read in this direction */
    uint64_t bytes;           /* L3 bytes read */
    uint64_t gso_frames;      /* frames with gso_type != NONE (TSO super-frames) */
    uint64_t gso_bytes;
    uint64_t csum_partial;    /* frames with NEEDS_CSUM */
    uint64_t max_frame;       /* largest L3 frame seen */
    uint64_t sent;            /* frames written to the other side (duplicates included) */
    uint64_t hook_drops;
    uint64_t hook_errors;
    uint64_t fence_drops;     /* payload of a flow whose device context is missing */
    uint64_t segmented_frames;/* GSO frames cut into wire segments (segment_on_wire) */
    uint64_t wire_segments;   /* segments they became */
    uint64_t fault_lost;
    uint64_t fault_dup;
    uint64_t fault_reordered;
    uint64_t bad_frames;      /* shorter than the vnet header, or truncated */
    uint64_t write_errors;    /* the receiving TUN refused the frame */
    uint64_t hook_ns;         /* time inside the frame hook (the device model's own work,
                                 what a NIC does in silicon; the rest of the daemon's CPU
                                 is the emulation: TUN reads and writes), as run time: a
                                 stretch of frames in which the daemon's thread did not
                                 run all the time (preempted by the peer's receiver on its
                                 core, say) counts its hook time in the share it ran */
    uint64_t hook_wall_ns;    /* the same by the clock on the wall, preemption included */
};

struct tlsnic_fwd_stats {
    struct tlsnic_fwd_dir_stats dir[2]; /* indexed by enum tlsnic_fwd_dir */
    uint64_t pcap_errors;
};

typedef struct tlsnic_fwd tlsnic_fwd;

/* Creates a forwarder (pool, PRNG, pcap files). *out owns it. */
int tlsnic_fwd_new(tlsnic_fwd **out, const struct tlsnic_fwd_config *cfg);

/* Flushes and closes the captures (held frames are dropped) and frees. NULL accepted. */
void tlsnic_fwd_free(tlsnic_fwd *fwd);

/*
 * Fills pfd[0] (host TUN) and pfd[1] (wire TUN) for poll(), and returns the poll timeout
 * in ms the forwarder needs (held frames to release), or -1 for none.
 */
int tlsnic_fwd_poll_setup(tlsnic_fwd *fwd, struct pollfd pfd[2]);

/*
 * Forwards what the last poll reported in pfd[0..1] (a bounded burst per side) and
 * releases held frames that are due. Returns the number of frames read, or -errno on a
 * fatal TUN error (EBADF, EIO, ...: the interface is gone).
 */
int tlsnic_fwd_process(tlsnic_fwd *fwd, const struct pollfd pfd[2]);

/* Flushes the pcap files (call from time to time so a crash leaves readable files). */
int tlsnic_fwd_flush(tlsnic_fwd *fwd);

void tlsnic_fwd_stats(const tlsnic_fwd *fwd, struct tlsnic_fwd_stats *out);

/*
 * Writes the counters as "name value\n" lines (e.g. "to_wire_gso_frames 1234") into buf.
 * Returns the length written (without NUL; buf is always NUL-terminated), or -ENOBUFS.
 */
int tlsnic_fwd_stats_format(const struct tlsnic_fwd_stats *st, char *buf, size_t cap);

#ifdef __cplusplus
}
#endif

#endif
