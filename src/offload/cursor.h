/*
 * Bounded cursors for parsing and building network input/output (internal). A read or
 * write past the end sets the sticky `bad` flag, yields zeros and moves nothing: check
 * `bad` once at the end instead of after every field.
 */
#ifndef TLSNIC_CTL_CURSOR_H
#define TLSNIC_CTL_CURSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct rcursor {
    const uint8_t *p;
    size_t left;
    bool bad;
};

static inline const uint8_t *rc_take(struct rcursor *c, size_t n)
{
    if (c->bad || n > c->left) {
        c->bad = true;
        return NULL;
    }
    const uint8_t *at = c->p;
    c->p += n;
    c->left -= n;
    return at;
}

static inline uint64_t rc_le(struct rcursor *c, size_t n)
{
    const uint8_t *at = rc_take(c, n);
    uint64_t v = 0;
    for (size_t i = 0; at != NULL && i < n; i++)
        v |= (uint64_t)at[i] << (8 * i);
    return v;
}

static inline uint8_t rc_u8(struct rcursor *c) { return (uint8_t)rc_le(c, 1); }
static inline uint16_t rc_u16(struct rcursor *c) { return (uint16_t)rc_le(c, 2); }
static inline uint32_t rc_u32(struct rcursor *c) { return (uint32_t)rc_le(c, 4); }
static inline uint64_t rc_u64(struct rcursor *c) { return rc_le(c, 8); }

/* Reserved bytes must be zero: a peer that sets them speaks another protocol. */
static inline void rc_zeros(struct rcursor *c, size_t n)
{
    const uint8_t *at = rc_take(c, n);
    for (size_t i = 0; at != NULL && i < n; i++) {
        if (at[i] != 0)
            c->bad = true;
    }
}

struct wcursor {
    uint8_t *p;
    size_t left;
    bool bad;
};

static inline uint8_t *wc_take(struct wcursor *c, size_t n)
{
    if (c->bad || n > c->left) {
        c->bad = true;
        return NULL;
    }
    uint8_t *at = c->p;
    c->p += n;
    c->left -= n;
    return at;
}

static inline void wc_le(struct wcursor *c, uint64_t v, size_t n)
{
    uint8_t *at = wc_take(c, n);
    for (size_t i = 0; at != NULL && i < n; i++)
        at[i] = (uint8_t)(v >> (8 * i));
}

static inline void wc_bytes(struct wcursor *c, const void *src, size_t n)
{
    uint8_t *at = wc_take(c, n);
    if (at != NULL && n > 0)
        memcpy(at, src, n);
}

static inline void wc_zeros(struct wcursor *c, size_t n)
{
    uint8_t *at = wc_take(c, n);
    if (at != NULL)
        memset(at, 0, n);
}

#endif
