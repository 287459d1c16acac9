/*
 * Internal to src/device: what the flow table (nic.c) and the RX data path (nic_rx.c)
 * share. Not installed; nothing outside src/device includes it.
 */
#ifndef TLSNIC_NIC_INT_H
#define TLSNIC_NIC_INT_H

#include <stdint.h>

#include "tlsnic/frame.h"
#include "tlsnic/nic.h"

struct rxflow; /* one RX context (nic_rx.c) */

/* RX context life (control path). */
/* The device forwarded the stream up to end_seq before it had this context: those bytes
 * went to the host untouched, and so must every later copy of them. */
void nic_rx_forwarded_before(struct rxflow *r, uint32_t end_seq);
int nic_rx_new(struct rxflow **out, const struct tlsnic_nic_config *cfg, const void *crypto_info,
               size_t info_len, uint32_t start_tcp_seq, const struct tlsnic_rec_store *store);
void nic_rx_free(struct rxflow *r);
int nic_rx_resync(struct rxflow *r, uint32_t tcp_seq, uint64_t rec_seq);
int nic_rx_rekey(struct rxflow *r, const void *crypto_info, size_t info_len, uint32_t tcp_seq);
void nic_rx_evict(struct rxflow *r);
/* The host acknowledged the received stream up to ack (its frame towards the wire). */
void nic_rx_ack(struct rxflow *r, uint32_t ack);
const struct tlsnic_nic_stats *nic_rx_stats(const struct rxflow *r);
uint32_t nic_rx_flags(const struct rxflow *r);

/* One parsed TCP frame of the flow towards the host: an enum tlsnic_verdict. */
int nic_rx_segment(struct rxflow *r, struct tlsnic_pkt *pkt, const struct tlsnic_frame *fr);

#endif
