/*
 * The host record store in shared memory: how tlsnicd reads the records a host retains
 * (the analog of a NIC's DMA from host memory, devops.h tlsnic_rec_store).
 *
 * The host creates a store (a sealed memfd of fixed size), puts every record it frames
 * for an offloaded flow and releases records as the peer acknowledges them. It hands the
 * memfd to the daemon with the ADD request (ctl.h); the daemon maps it read-only and
 * serves the device's get_record from it. Unmapped at DEL or when the host's control
 * connection closes: a host that goes away frees its share.
 *
 * Layout (native byte order: both ends are on one machine):
 *   header (a page of its own, 4096 bytes): u32 magic, u32 version, u32 n_desc,
 *                      u32 data_bytes, u32 device_flags, u32 max_record, zeros
 *   n_desc descriptors, each: u32 gen | u32 tcp_seq | u32 len | u32 off | u64 rec_seq
 *   (padding to 64 bytes) data_bytes of records: the data ring
 * Records are packed one after the other in the data ring (a record never wraps: one that
 * does not fit before the end starts at 0), so a store costs what the unacknowledged
 * window holds, whatever the record size. A descriptor with len 0 is free. The writer
 * makes gen odd before changing a descriptor and even after, and releases a record's
 * descriptor before its bytes can be reused; the reader copies a record out and keeps the
 * copy only if gen was even and unchanged around the copy (a seqlock), so it never uses a
 * record torn by a release and a reuse. The reader trusts nothing it reads there: every
 * offset and length is checked against the ring. Every word and byte both ends may touch at
 * once is accessed with atomics (relaxed, ordered by the seqlock's release / acquire on gen:
 * the helpers below), so the protocol has no data race in C11 terms either, and
 * ThreadSanitizer can check it (tests/unit/daemon/test_shmstore.c runs a writer thread
 * against a reader). The one plain access left is the writer's own framing into a reserved
 * room (tlsnic_shm_writer_reserve): a reader that copies those bytes is copying a record
 * released under it, and throws the copy away when it sees gen move.
 *
 * device_flags is the one word the daemon writes (the analog of a NIC writing a status
 * word into host memory): the flow's TLSNIC_FLOW_F_* flags | TLSNIC_FLOW_F_LIVE, so the
 * host reads them with a load instead of a control-channel round trip. The daemon maps only
 * the header's page writable. 0 (LIVE clear) means the daemon has not published: ask it.
 *
 * An RX store (version 4) carries no records (n_desc = data_bytes = max_record = 0) but an
 * RX status (rx_status.h) at rx_offset (TLSNIC_SHM_RX_OFFSET: the page after the header's),
 * rx_bytes long (whole pages, at most TLSNIC_SHM_MAX_RX_BYTES): what the device did to
 * the received stream, written by the device only, which the daemon maps writable and the
 * host read-only. The host's words of that status (consumed_seq, epoch) are in the header
 * page (rx_host), which both map writable; the daemon reads them as untrusted input. Both
 * ends access the status's shared words with atomics (rx_status.c, the helpers below):
 * its entries are a seqlock per slot, like the descriptors'. A record store has rx_offset =
 * rx_bytes = 0. An RX store is never reused for another flow (the host frees it once the
 * device let go: the same UNMAPPED word as a record store's).
 *
 * The writer is the host's (shm_writer.h, src/host), the reader the daemon's
 * (shm_reader.h, src/daemon); both compile this layout and nothing of each other.
 */
#ifndef TLSNIC_SHM_LAYOUT_H
#define TLSNIC_SHM_LAYOUT_H

#include <stddef.h>
#include <stdint.h>

#include "tlsnic/record.h"
#include "tlsnic/rx_status.h"

#define TLSNIC_SHM_MAGIC 0x544c534eu /* "TLSN" */
#define TLSNIC_SHM_VERSION 4u
#define TLSNIC_SHM_HDR_LEN 4096u
#define TLSNIC_SHM_DESC_LEN 24u
#define TLSNIC_SHM_MAX_RECORDS 65536u
#define TLSNIC_SHM_DEFAULT_DATA_BYTES (8u << 20) /* twice Linux's default largest send
                                                    buffer (tcp_wmem max, 4 MB) */

/*
 * Limits a reader enforces on a header, which is host memory and thus input: a store
 * holds the unacknowledged window, which the socket's send buffer bounds (tcp_wmem's
 * largest is 4 MB by default; 64 MB is sixteen times that), in records no longer than the
 * largest TLS record. A header past these is refused, not mapped.
 */
#define TLSNIC_SHM_MAX_DATA_BYTES (64u << 20)
#define TLSNIC_SHM_MAX_RECORD_LEN TLSNIC_REC_MAX_WIRE_LEN
/*
 * An RX store's status: an entry per KB of receive window (tlsnic_rxs_entries_for), for a
 * window of up to 64 MB (sixteen times tcp_rmem's largest default, 6 MB: the same bound as
 * the data ring's): 65536 entries, 2.5 MB of pages. The daemon maps nothing past this
 * (an RX store's whole mapping is its header page and this region); the host asks for no
 * more (tlsnic_shm_writer_new_rx caps a larger window there).
 */
#define TLSNIC_SHM_MAX_RX_ENTRIES 65536u
#define TLSNIC_SHM_MAX_RX_BYTES                                                               \
    ((TLSNIC_RXS_HDR_LEN + TLSNIC_SHM_MAX_RX_ENTRIES * TLSNIC_RXS_ENTRY_LEN +                 \
      TLSNIC_SHM_HDR_LEN - 1) & ~(TLSNIC_SHM_HDR_LEN - 1))
#define TLSNIC_SHM_FLAGS_OFFSET 16u /* of device_flags in the header */

/* One retained record: where its bytes are in the data ring. */
struct tlsnic_shm_desc {
    uint32_t gen;
    uint32_t tcp_seq;
    uint32_t len; /* 0: free */
    uint32_t off; /* into the data ring */
    uint64_t rec_seq;
};

struct tlsnic_shm_hdr {
    uint32_t magic;
    uint32_t version;
    uint32_t n_desc;
    uint32_t data_bytes;
    uint32_t device_flags; /* written by the daemon only */
    uint32_t max_record;
    uint32_t rx_offset;    /* RX store: where the RX status starts (page aligned); else 0 */
    uint32_t rx_bytes;     /* ... and its length (whole pages) */
    struct tlsnic_rxs_host rx_host; /* RX store: the host's words of the status */
};

#define TLSNIC_SHM_RX_HOST_OFFSET 32u /* of rx_host in the header */
_Static_assert(__builtin_offsetof(struct tlsnic_shm_hdr, rx_host) == TLSNIC_SHM_RX_HOST_OFFSET,
               "shm header layout");

/* RX stores: the status starts on the page after the header's. */
#define TLSNIC_SHM_RX_OFFSET TLSNIC_SHM_HDR_LEN

/* Bytes of an RX status region of n entries, in whole pages. */
static inline size_t tlsnic_shm_rx_bytes(uint32_t n_entries)
{
    return (tlsnic_rxs_region_len(n_entries) + TLSNIC_SHM_HDR_LEN - 1) & ~(size_t)(TLSNIC_SHM_HDR_LEN - 1);
}

/* The rx_host words of a mapped header. */
static inline struct tlsnic_rxs_host *tlsnic_shm_rx_host(uint8_t *map)
{
    return (struct tlsnic_rxs_host *)(map + TLSNIC_SHM_RX_HOST_OFFSET);
}

/* Where the data ring starts: after the descriptors, on a cache line. */
static inline size_t tlsnic_shm_data_offset(uint32_t n_desc)
{
    return (TLSNIC_SHM_HDR_LEN + (size_t)n_desc * TLSNIC_SHM_DESC_LEN + 63) & ~(size_t)63;
}

/* The device_flags word of a mapped header. */
static inline uint32_t *tlsnic_shm_flags_word(uint8_t *map)
{
    return (uint32_t *)(map + TLSNIC_SHM_FLAGS_OFFSET);
}

/* Seqlock accessors: relaxed atomics for the shared words (gen gives the order). */
static inline uint32_t tlsnic_shm_ld32(const uint32_t *p)
{
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}

static inline uint64_t tlsnic_shm_ld64(const uint64_t *p)
{
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}

static inline void tlsnic_shm_st32(uint32_t *p, uint32_t v)
{
    __atomic_store_n(p, v, __ATOMIC_RELAXED);
}

static inline void tlsnic_shm_st64(uint64_t *p, uint64_t v)
{
    __atomic_store_n(p, v, __ATOMIC_RELAXED);
}

/*
 * Copies len bytes between shared memory (shm) and private memory (priv) with relaxed
 * atomic accesses on the shared side: bytes up to an 8-byte boundary of shm, then 8-byte
 * words, then the tail. to_shm: the writer's direction.
 */
static inline void tlsnic_shm_copy(uint8_t *shm, uint8_t *priv, size_t len, int to_shm)
{
    size_t i = 0;
    for (; i < len && ((uintptr_t)(shm + i) & 7) != 0; i++) {
        if (to_shm)
            __atomic_store_n(shm + i, priv[i], __ATOMIC_RELAXED);
        else
            priv[i] = __atomic_load_n(shm + i, __ATOMIC_RELAXED);
    }
    for (; i + 8 <= len; i += 8) {
        uint64_t w;
        if (to_shm) {
            __builtin_memcpy(&w, priv + i, 8);
            __atomic_store_n((uint64_t *)(void *)(shm + i), w, __ATOMIC_RELAXED);
        } else {
            w = __atomic_load_n((const uint64_t *)(const void *)(shm + i), __ATOMIC_RELAXED);
            __builtin_memcpy(priv + i, &w, 8);
        }
    }
    for (; i < len; i++) {
        if (to_shm)
            __atomic_store_n(shm + i, priv[i], __ATOMIC_RELAXED);
        else
            priv[i] = __atomic_load_n(shm + i, __ATOMIC_RELAXED);
    }
}

/* 1 if TCP sequence seq lies in [start, start + len) (mod 2^32). */
static inline int tlsnic_shm_seq_in(uint32_t seq, uint32_t start, uint32_t len)
{
    return (uint32_t)(seq - start) < len;
}

#endif
