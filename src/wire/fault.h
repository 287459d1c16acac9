/*
 * Deterministic fault decisions for the wire (internal to the daemon). One PRNG stream
 * per direction, seeded from (seed, direction), three draws per frame whatever the
 * outcome, so the decision for the i-th frame of a direction depends on (seed, dir, i)
 * only, not on the interleaving of the two directions.
 */
#ifndef TLSNIC_CTL_FAULT_H
#define TLSNIC_CTL_FAULT_H

#include <stdint.h>

struct tlsnic_prng {
    uint64_t s[4]; /* xoshiro256** state */
};

void tlsnic_prng_seed(struct tlsnic_prng *p, uint64_t seed);
uint64_t tlsnic_prng_next(struct tlsnic_prng *p);

#define TLSNIC_FAULT_LOSE 0x1u
#define TLSNIC_FAULT_DUP 0x2u
#define TLSNIC_FAULT_REORDER 0x4u

/*
 * The faults for the next frame: a TLSNIC_FAULT_* mask (LOSE excludes the others).
 * *reorder_depth gets 1..3: how many later frames overtake a reordered one.
 */
uint32_t tlsnic_fault_decide(struct tlsnic_prng *p, uint32_t loss_ppm, uint32_t dup_ppm,
                             uint32_t reorder_ppm, uint32_t *reorder_depth);

#endif
