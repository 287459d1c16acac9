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
 * offset and length is checked against the ring.
 *
 * device_flags is the one word the daemon writes (the analog of a NIC writing a status
 * word into host memory): the flow's TLSNIC_FLOW_F_* flags | TLSNIC_FLOW_F_LIVE, so the
 * host reads them with a load instead of a control-channel round trip. The daemon maps only
 * the header's page writable. 0 (LIVE clear) means the daemon has not published: ask it.
 *
 * Writer: one thread at a time (the host socket's lock). Reader: one thread.
 * Errors: negative errno.
 */
#ifndef TLSNIC_SHMSTORE_H
#define TLSNIC_SHMSTORE_H

#include <stddef.h>
#include <stdint.h>

#include "tlsnic/devops.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TLSNIC_SHM_MAGIC 0x544c534eu /* "TLSN" */
#define TLSNIC_SHM_VERSION 3u
#define TLSNIC_SHM_HDR_LEN 4096u
#define TLSNIC_SHM_DESC_LEN 24u
#define TLSNIC_SHM_MAX_RECORDS 65536u
#define TLSNIC_SHM_DEFAULT_DATA_BYTES (8u << 20) /* twice Linux's default largest send
                                                    buffer (tcp_wmem max, 4 MB) */

/* ---- host side ---------------------------------------------------------------------- */

typedef struct tlsnic_shm_writer tlsnic_shm_writer;

/*
 * Creates a store that holds up to n_records records and data_bytes of them (0 =
 * TLSNIC_SHM_DEFAULT_DATA_BYTES); a record may be up to the largest TLS record
 * (TLSNIC_REC_MAX_WIRE_LEN), or data_bytes if that is less. *out owns it and its memfd.
 * Pages are touched only as records reach them.
 */
int tlsnic_shm_writer_new(tlsnic_shm_writer **out, uint32_t n_records, uint32_t data_bytes);
/*
 * Wipes every record the store held and gives it up. Up to 8 stores per process are kept,
 * empty, for the next tlsnic_shm_writer_new of the same size (same memfd: its pages are
 * already there, where a fresh store faults each one in on first use); the rest are
 * unmapped and closed. A forked child does not inherit the kept ones.
 */
void tlsnic_shm_writer_free(tlsnic_shm_writer *w);

/* How many given-up stores this process keeps (each holds its memfd open). */
int tlsnic_shm_writers_kept(void);

/*
 * Retains a record of len bytes starting at TCP sequence tcp_seq. Records are put in the
 * order they are sent (one TX stream per store): put and release cost O(1), not a scan.
 * -ENOSPC when n_records records or data_bytes of them are held unacknowledged,
 * -EMSGSIZE when len is 0 or more than a record may be.
 */
int tlsnic_shm_writer_put(tlsnic_shm_writer *w, uint32_t tcp_seq, uint64_t rec_seq,
                          const uint8_t *bytes, uint32_t len);

/*
 * put in two steps, without the copy: reserve returns room for a record of len bytes in
 * the data ring (-EMSGSIZE, -ENOSPC as put; -EBUSY if a reservation is open); the caller
 * writes the record there and commits it (the reader cannot see it in between).
 * The room stays valid, and the store leaves it alone, until release covers the record.
 * A commit with a len other than a record may have (0, too long) keeps the record out.
 */
int tlsnic_shm_writer_reserve(tlsnic_shm_writer *w, uint32_t len, uint8_t **room);
void tlsnic_shm_writer_commit(tlsnic_shm_writer *w, uint32_t tcp_seq, uint64_t rec_seq,
                              uint32_t len);

/* The device_flags word: 0 until the daemon publishes, then flags | TLSNIC_FLOW_F_LIVE. */
uint32_t tlsnic_shm_writer_device_flags(const tlsnic_shm_writer *w);

/* Releases every record that ends at or before acked_seq (sequence arithmetic mod 2^32). */
void tlsnic_shm_writer_release(tlsnic_shm_writer *w, uint32_t acked_seq);

/* The store as devops sees it (serves the in-process device too). Lives with w. */
const struct tlsnic_rec_store *tlsnic_shm_writer_store(tlsnic_shm_writer *w);

/* The memfd behind a store made by tlsnic_shm_writer_store, or -1 for any other store. */
int tlsnic_shm_store_fd(const struct tlsnic_rec_store *store);

/* ---- daemon side --------------------------------------------------------------------- */

typedef struct tlsnic_shm_reader tlsnic_shm_reader;

/*
 * Maps the store behind memfd read-only (the fd is not kept). -EPERM if the memfd is not
 * sealed against shrinking (the host could make the daemon fault), -EBADMSG if the
 * header is not a store's or does not fit the file.
 */
int tlsnic_shm_reader_open(tlsnic_shm_reader **out, int memfd);
void tlsnic_shm_reader_free(tlsnic_shm_reader *r);

/* Publishes the flow's flags to the host (device_flags = flags | LIVE). -EACCES if the
 * header page could not be mapped writable (the host then keeps asking over the channel). */
int tlsnic_shm_reader_publish_flags(tlsnic_shm_reader *r, uint32_t flags);

/*
 * The store for the device. get_record copies the record into the reader's own buffer:
 * out->bytes is valid until the next get_record on this reader or its free.
 */
const struct tlsnic_rec_store *tlsnic_shm_reader_store(tlsnic_shm_reader *r);

#ifdef __cplusplus
}
#endif

#endif
