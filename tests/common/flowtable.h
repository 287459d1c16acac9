/*
 * A test device: a flow table that keeps the contexts it is given (keys wiped on free)
 * and does nothing else. Stands behind the control server in tests where the device model
 * is not the subject.
 */
#ifndef TLSNIC_TEST_FLOWTABLE_H
#define TLSNIC_TEST_FLOWTABLE_H

#include <stdint.h>

#include "tlsnic/devops.h"

struct tlsnic_flowtable;

/* max_flows 0 = 4096. *out owns the table; free with tlsnic_flowtable_free (wipes keys). */
int tlsnic_flowtable_new(struct tlsnic_flowtable **out, uint32_t max_flows);
void tlsnic_flowtable_free(struct tlsnic_flowtable *t);
/* The table as a device (lives as long as the table). Offloads TX and RX alike. */
struct tlsnic_dev *tlsnic_flowtable_dev(struct tlsnic_flowtable *t);
uint32_t tlsnic_flowtable_count(const struct tlsnic_flowtable *t);

#endif
