/*
 * The daemon's end of the shared-memory record store (layout: shm_layout.h): maps a
 * host's memfd read-only (the header page writable, for device_flags) and serves the
 * device's get_record from it. The host's memory is input: every offset and length read
 * there is checked. Reader: one thread. Errors: negative errno.
 */
#ifndef TLSNIC_SHM_READER_H
#define TLSNIC_SHM_READER_H

#include <stddef.h>
#include <stdint.h>

#include "tlsnic/devops.h"
#include "tlsnic/shm_layout.h"

#ifdef __cplusplus
extern "C" {
#endif


typedef struct tlsnic_shm_reader tlsnic_shm_reader;

/*
 * Maps the store behind memfd read-only (the fd is not kept): exactly the header page,
 * descriptors and ring the header names, never more of the file. -EPERM if the memfd is
 * not sealed against shrinking (the host could make the daemon fault), -EBADMSG if the
 * header is not a store's, names sizes past the limits of shm_layout.h (more than
 * TLSNIC_SHM_MAX_RECORDS descriptors, a ring over TLSNIC_SHM_MAX_DATA_BYTES, a largest
 * record over the ring or TLSNIC_SHM_MAX_RECORD_LEN) or does not fit the file.
 */
int tlsnic_shm_reader_open(tlsnic_shm_reader **out, int memfd);
/* The same, with why it refused (for a person: the daemon's reply) in why[0..cap). */
int tlsnic_shm_reader_open_why(tlsnic_shm_reader **out, int memfd, char *why, size_t cap);
void tlsnic_shm_reader_free(tlsnic_shm_reader *r);
/*
 * Frees after telling the host the device is done with the store: writes
 * TLSNIC_FLOW_F_GONE | TLSNIC_FLOW_F_UNMAPPED | TLSNIC_FLOW_F_LIVE into its flags word
 * (when the header page is mapped writable), the last thing the daemon writes there.
 */
void tlsnic_shm_reader_let_go(tlsnic_shm_reader *r);

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
