/*
 * The host's end of the shared-memory record store (layout: shm_layout.h): the records a
 * device-mode socket retains until acknowledged, in a sealed memfd that tlsnicd maps.
 * Writer: one thread at a time (the host socket's lock). Errors: negative errno.
 */
#ifndef TLSNIC_SHM_WRITER_H
#define TLSNIC_SHM_WRITER_H

#include <stddef.h>
#include <stdint.h>

#include "tlsnic/devops.h"
#include "tlsnic/shm_layout.h"

#ifdef __cplusplus
extern "C" {
#endif


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

/*
 * Gives up a store a device may still map (a flow the device took over at close, a del
 * that did not answer 0): nothing is wiped while the device may read it. Kept until the
 * device writes TLSNIC_FLOW_F_UNMAPPED into its flags word (shm_layout.h), then wiped and
 * reused like a freed one; up to 16 are kept so, the oldest beyond dropped unwiped and
 * never reused (its pages go once the device unmaps them as well).
 */
void tlsnic_shm_writer_retire(tlsnic_shm_writer *w);

/*
 * A forked child's copy of its parent's store: unmaps and closes this process's handle,
 * touching no byte of the store (the parent still writes it, a device still reads it).
 */
void tlsnic_shm_writer_forget(tlsnic_shm_writer *w);

/*
 * An RX store: no records, an RX status of n_entries entries (rx_status.h; 0 = the
 * default) the device writes. The host maps the status read-only (its own words, in the
 * header page, stay writable). tlsnic_shm_writer_store(w) is then what add gets for RX
 * (rx_status set; its memfd goes to the daemon with the add), tlsnic_shm_writer_rx_status
 * the host's view. n_entries above TLSNIC_SHM_MAX_RX_ENTRIES (the daemon's bound) get that
 * many. Never kept for reuse: tlsnic_shm_writer_free and _retire unmap and close it (the
 * device may write its status until it lets go; nobody reads those pages again).
 */
int tlsnic_shm_writer_new_rx(tlsnic_shm_writer **out, uint32_t n_entries);
struct tlsnic_rxs *tlsnic_shm_writer_rx_status(tlsnic_shm_writer *w);

/* How many given-up stores this process keeps, freed and retired (each holds its memfd
 * open). */
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
 * commit closes the reservation: 0, or -EINVAL (none open), -EMSGSIZE (len 0 or longer
 * than the room reserved: the record stays out of the store).
 */
int tlsnic_shm_writer_reserve(tlsnic_shm_writer *w, uint32_t len, uint8_t **room);
int tlsnic_shm_writer_commit(tlsnic_shm_writer *w, uint32_t tcp_seq, uint64_t rec_seq,
                             uint32_t len);

/* The device_flags word: 0 until the daemon publishes, then flags | TLSNIC_FLOW_F_LIVE. */
uint32_t tlsnic_shm_writer_device_flags(const tlsnic_shm_writer *w);

/* Releases every record that ends at or before acked_seq (sequence arithmetic mod 2^32). */
void tlsnic_shm_writer_release(tlsnic_shm_writer *w, uint32_t acked_seq);

/* The store as devops sees it (serves the in-process device too). Lives with w. */
const struct tlsnic_rec_store *tlsnic_shm_writer_store(tlsnic_shm_writer *w);

/* The memfd behind a store made by tlsnic_shm_writer_store, or -1 for any other store. */
int tlsnic_shm_store_fd(const struct tlsnic_rec_store *store);

#ifdef __cplusplus
}
#endif

#endif
