/* Fault PRNG: xoshiro256** seeded by splitmix64 (see fault.h). */
#include "fault.h"

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

void tlsnic_prng_seed(struct tlsnic_prng *p, uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        p->s[i] = splitmix64(&seed);
}

uint64_t tlsnic_prng_next(struct tlsnic_prng *p)
{
    uint64_t *s = p->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

/* Uniform in [0, 1e6) from the top bits (the low bits of xoshiro** are fine too). */
static uint32_t draw_ppm(struct tlsnic_prng *p)
{
    return (uint32_t)(((tlsnic_prng_next(p) >> 32) * 1000000ull) >> 32);
}

uint32_t tlsnic_fault_decide(struct tlsnic_prng *p, uint32_t loss_ppm, uint32_t dup_ppm,
                             uint32_t reorder_ppm, uint32_t *reorder_depth)
{
    uint32_t lose = draw_ppm(p);
    uint32_t dup = draw_ppm(p);
    uint64_t reorder = tlsnic_prng_next(p);
    *reorder_depth = 1 + (uint32_t)((reorder & 0xffff) % 3);
    if (lose < loss_ppm)
        return TLSNIC_FAULT_LOSE;
    uint32_t mask = 0;
    if (dup < dup_ppm)
        mask |= TLSNIC_FAULT_DUP;
    if ((uint32_t)((((reorder >> 32) & 0xffffffffull) * 1000000ull) >> 32) < reorder_ppm)
        mask |= TLSNIC_FAULT_REORDER;
    return mask;
}
