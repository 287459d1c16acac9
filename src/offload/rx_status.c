/* RX status: layout, the device's writes, the host's reads (see rx_status.h). */
#include "tlsnic/rx_status.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

#include "tlsnic/check.h"
#include "tlsnic/shm_layout.h" /* the seqlock's atomic accessors (tlsnic_shm_ld32, ...) */

#define MIN_ENTRIES 16u

static int pow2(uint32_t n)
{
    return n != 0 && (n & (n - 1)) == 0;
}

int tlsnic_rxs_format(void *region, uint32_t n_entries)
{
    TLSNIC_ENSURE(region && pow2(n_entries) && n_entries >= MIN_ENTRIES &&
                      n_entries <= TLSNIC_RXS_MAX_ENTRIES,
                  EINVAL);
    memset(region, 0, tlsnic_rxs_region_len(n_entries));
    struct tlsnic_rxs_hdr *h = region;
    h->magic = TLSNIC_RXS_MAGIC;
    h->version = TLSNIC_RXS_VERSION;
    h->n_entries = n_entries;
    /* Every slot's id differs from the id that could first land in it (0 .. n-1). */
    struct tlsnic_rxs_entry *e = (struct tlsnic_rxs_entry *)((uint8_t *)region + TLSNIC_RXS_HDR_LEN);
    for (uint32_t i = 0; i < n_entries; i++)
        e[i].id = i - 1;
    return 0;
}

int tlsnic_rxs_view(struct tlsnic_rxs *v, void *region, size_t len, struct tlsnic_rxs_host *host)
{
    TLSNIC_ENSURE(v && region && host, EINVAL);
    TLSNIC_ENSURE(len >= TLSNIC_RXS_HDR_LEN, EBADMSG);
    struct tlsnic_rxs_hdr *h = region;
    uint32_t n = __atomic_load_n(&h->n_entries, __ATOMIC_RELAXED);
    TLSNIC_ENSURE(h->magic == TLSNIC_RXS_MAGIC && h->version == TLSNIC_RXS_VERSION, EBADMSG);
    TLSNIC_ENSURE(pow2(n) && n >= MIN_ENTRIES && n <= TLSNIC_RXS_MAX_ENTRIES, EBADMSG);
    TLSNIC_ENSURE(tlsnic_rxs_region_len(n) <= len, EBADMSG);
    v->hdr = h;
    v->ent = (struct tlsnic_rxs_entry *)((uint8_t *)region + TLSNIC_RXS_HDR_LEN);
    v->host = host;
    v->n = n; /* read once: the view never trusts a later value */
    return 0;
}

struct rxs_block {
    struct tlsnic_rxs view;
    struct tlsnic_rxs_host host;
    size_t region_len;
    _Alignas(64) uint8_t region[];
};

uint32_t tlsnic_rxs_entries_for(size_t rcvbuf)
{
    uint32_t n = TLSNIC_RXS_DEFAULT_ENTRIES;
    while (n < TLSNIC_RXS_MAX_ENTRIES && (size_t)n * 1024 < rcvbuf)
        n *= 2;
    return n;
}

int tlsnic_rxs_new(struct tlsnic_rxs **out, uint32_t n_entries)
{
    TLSNIC_ENSURE(out, EINVAL);
    if (n_entries == 0)
        n_entries = TLSNIC_RXS_DEFAULT_ENTRIES;
    TLSNIC_ENSURE(pow2(n_entries) && n_entries >= MIN_ENTRIES &&
                      n_entries <= TLSNIC_RXS_MAX_ENTRIES,
                  EINVAL);
    size_t rl = tlsnic_rxs_region_len(n_entries);
    struct rxs_block *b = aligned_alloc(64, (sizeof(*b) + rl + 63) & ~(size_t)63);
    TLSNIC_ENSURE(b, ENOMEM);
    memset(b, 0, sizeof(*b));
    b->region_len = rl;
    int rc = tlsnic_rxs_format(b->region, n_entries);
    if (rc == 0)
        rc = tlsnic_rxs_view(&b->view, b->region, rl, &b->host);
    if (rc < 0) {
        free(b);
        return rc;
    }
    *out = &b->view;
    return 0;
}

void tlsnic_rxs_free(struct tlsnic_rxs *s)
{
    if (!s)
        return;
    struct rxs_block *b = (struct rxs_block *)s; /* view is the block's first member */
    OPENSSL_cleanse(b->region, b->region_len);   /* nonces and record positions */
    free(b);
}

/* ------------------------------------------------------------------------------------------ */
/* Device                                                                                     */

static struct tlsnic_rxs_entry *slot_of(const struct tlsnic_rxs *s, uint64_t id)
{
    return &s->ent[id & (s->n - 1)];
}

/*
 * A seqlock per slot, its sequence word being the slot's id: a reader that meets the slot
 * mid-write sees an id that is not the one it looks for (id - 1 while it changes). The
 * device and the host are two processes (or two threads) on one mapping, so every field
 * goes through relaxed atomics ordered by the id's release / acquire and the fences, as the
 * record store's descriptors do (shm_layout.h): no data race in C11 terms, and TSan can
 * check it (tests/unit/offload/test_rx_status.c runs a device thread against a reader).
 */
void tlsnic_rxs_put(struct tlsnic_rxs *s, uint64_t id, const struct tlsnic_rxs_entry *e)
{
    struct tlsnic_rxs_entry *d = slot_of(s, id);
    tlsnic_shm_st32(&d->id, (uint32_t)id - 1);
    __atomic_thread_fence(__ATOMIC_RELEASE);
    tlsnic_shm_st32(&d->tcp_seq, e->tcp_seq);
    tlsnic_shm_st32(&d->len, e->len);
    tlsnic_shm_st64(&d->rec_seq, e->rec_seq);
    tlsnic_shm_copy(d->explicit_nonce, (uint8_t *)e->explicit_nonce, sizeof(d->explicit_nonce), 1);
    tlsnic_shm_st32(&d->state, e->state);
    __atomic_store_n(&d->epoch, e->epoch, __ATOMIC_RELAXED);
    __atomic_store_n(&d->hn, e->hn, __ATOMIC_RELAXED);
    __atomic_store_n(&d->flags, e->flags, __ATOMIC_RELAXED);
    tlsnic_shm_st32(&d->gap_seq, e->gap_seq);
    __atomic_store_n(&d->id, (uint32_t)id, __ATOMIC_RELEASE);
    __atomic_store_n(&s->hdr->head, id + 1, __ATOMIC_RELEASE);
}

void tlsnic_rxs_set_state(struct tlsnic_rxs *s, uint64_t id, uint32_t state)
{
    __atomic_store_n(&slot_of(s, id)->state, state, __ATOMIC_RELEASE);
}

void tlsnic_rxs_request(struct tlsnic_rxs *s, uint32_t tcp_seq)
{
    __atomic_store_n(&s->hdr->req_seq, tcp_seq, __ATOMIC_RELAXED);
    __atomic_fetch_add(&s->hdr->req_gen, 1, __ATOMIC_RELEASE);
}

void tlsnic_rxs_set_dev_epoch(struct tlsnic_rxs *s, uint32_t epoch)
{
    __atomic_store_n(&s->hdr->dev_epoch, epoch, __ATOMIC_RELAXED);
}

void tlsnic_rxs_set_hi(struct tlsnic_rxs *s, uint32_t seq)
{
    __atomic_store_n(&s->hdr->hi_seq, seq, __ATOMIC_RELAXED);
    if (__atomic_load_n(&s->hdr->hi_valid, __ATOMIC_RELAXED) != 1)
        __atomic_store_n(&s->hdr->hi_valid, 1, __ATOMIC_RELEASE);
}

int tlsnic_rxs_hi(const struct tlsnic_rxs *s, uint32_t *seq)
{
    if (__atomic_load_n(&s->hdr->hi_valid, __ATOMIC_ACQUIRE) != 1)
        return 0;
    *seq = __atomic_load_n(&s->hdr->hi_seq, __ATOMIC_RELAXED);
    return 1;
}

static int read_entry(const struct tlsnic_rxs *s, uint64_t id, struct tlsnic_rxs_entry *out);

int tlsnic_rxs_get(const struct tlsnic_rxs *s, uint64_t id, struct tlsnic_rxs_entry *out)
{
    TLSNIC_ENSURE(s && out, EINVAL);
    return read_entry(s, id, out);
}

int tlsnic_rxs_consumed(const struct tlsnic_rxs *s, uint32_t *seq)
{
    if (__atomic_load_n(&s->host->consumed_valid, __ATOMIC_ACQUIRE) != 1)
        return 0;
    *seq = __atomic_load_n(&s->host->consumed_seq, __ATOMIC_RELAXED);
    return 1;
}

uint32_t tlsnic_rxs_host_epoch(const struct tlsnic_rxs *s)
{
    return __atomic_load_n(&s->host->epoch, __ATOMIC_ACQUIRE);
}

uint32_t tlsnic_rxs_host_received(const struct tlsnic_rxs *s)
{
    return __atomic_load_n(&s->host->received_len, __ATOMIC_ACQUIRE);
}

/* ------------------------------------------------------------------------------------------ */
/* Host                                                                                       */

int tlsnic_rxs_reader_init(struct tlsnic_rxs_reader *r, struct tlsnic_rxs *s)
{
    TLSNIC_ENSURE(r && s, EINVAL);
    memset(r, 0, sizeof(*r));
    r->s = s;
    r->req_gen_seen = __atomic_load_n(&s->hdr->req_gen, __ATOMIC_ACQUIRE);
    return tlsnic_rec_keystream_init(&r->ks);
}

void tlsnic_rxs_reader_cleanup(struct tlsnic_rxs_reader *r)
{
    if (!r)
        return;
    tlsnic_rec_keystream_cleanup(&r->ks);
    r->s = NULL;
}

/* Copies entry id out of the ring; 0, or -ESTALE if the slot holds another entry now. */
static int read_entry(const struct tlsnic_rxs *s, uint64_t id, struct tlsnic_rxs_entry *out)
{
    /* The host's mapping is read-only: the accessors only load. */
    struct tlsnic_rxs_entry *d = slot_of(s, id);
    if (__atomic_load_n(&d->id, __ATOMIC_ACQUIRE) != (uint32_t)id)
        return -ESTALE;
    out->tcp_seq = tlsnic_shm_ld32(&d->tcp_seq);
    out->len = tlsnic_shm_ld32(&d->len);
    out->rec_seq = tlsnic_shm_ld64(&d->rec_seq);
    tlsnic_shm_copy(d->explicit_nonce, out->explicit_nonce, sizeof(out->explicit_nonce), 0);
    out->state = __atomic_load_n(&d->state, __ATOMIC_ACQUIRE); /* set_state's release */
    out->epoch = __atomic_load_n(&d->epoch, __ATOMIC_RELAXED);
    out->hn = __atomic_load_n(&d->hn, __ATOMIC_RELAXED);
    out->flags = __atomic_load_n(&d->flags, __ATOMIC_RELAXED);
    out->gap_seq = tlsnic_shm_ld32(&d->gap_seq);
    out->id = (uint32_t)id;
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    if (__atomic_load_n(&d->id, __ATOMIC_RELAXED) != (uint32_t)id)
        return -ESTALE;
    return 0;
}

/* The key an entry was decrypted under, or NULL. */
static const tlsnic_rec_key *key_of(const struct tlsnic_rxs_keys *k, const struct tlsnic_rxs_entry *e)
{
    const tlsnic_rec_key *key = NULL;
    if (e->epoch == (uint16_t)k->epoch)
        key = k->cur;
    else if (k->prev && e->epoch == (uint16_t)(k->epoch - 1))
        key = k->prev;
    if (key && (size_t)e->hn != TLSNIC_REC_HDR_LEN + tlsnic_rec_key_explicit_nonce_len(key))
        return NULL;
    return key;
}

/*
 * Visits the entries whose record extent overlaps [seq, seq + len), in stream order:
 * fn(ctx, entry, offset of the entry's first byte relative to seq). Entries wholly before
 * seq are passed over for good (the host reads in stream order). Returns fn's first
 * negative value, or 0.
 */
typedef int (*visit_fn)(void *ctx, const struct tlsnic_rxs_entry *e, int64_t rel);

static int visit(struct tlsnic_rxs_reader *r, uint32_t seq, size_t len, visit_fn fn, void *ctx)
{
    struct tlsnic_rxs *s = r->s;
    uint64_t head = __atomic_load_n(&s->hdr->head, __ATOMIC_ACQUIRE);
    if (r->next > head || head - r->next > s->n) /* a device that restarted its ids, or
                                                    released more than the host read */
        r->next = head > s->n ? head - s->n : 0;
    int prefix = 1; /* still passing over entries before seq */
    for (uint64_t id = r->next; id < head; id++) {
        struct tlsnic_rxs_entry e;
        if (read_entry(s, id, &e) < 0) {
            if (prefix)
                r->next = id + 1; /* released: the host no longer needs it */
            continue;
        }
        int64_t rel = (int32_t)(e.tcp_seq - seq);
        if (rel >= (int64_t)len)
            break; /* entries are in stream order: the rest start later */
        if (rel + (int64_t)e.len <= 0) {
            if (prefix)
                r->next = id + 1;
            continue;
        }
        prefix = 0;
        TLSNIC_TRY(fn(ctx, &e, rel));
    }
    return 0;
}

struct restore_ctx {
    struct tlsnic_rxs_reader *r;
    const struct tlsnic_rxs_keys *k;
    uint8_t *buf;
    int64_t from, to; /* restore buf[from, to) (relative to seq) */
    uint32_t restored;
};

static int restore_one(void *ctx, const struct tlsnic_rxs_entry *e, int64_t rel)
{
    struct restore_ctx *c = ctx;
    uint32_t dec = TLSNIC_RXS_STATE_DEC(e->state);
    if (dec == 0)
        return 0;
    int64_t a = rel + e->hn, b = a + dec; /* the decrypted span, relative to seq */
    int64_t x = a > c->from ? a : c->from, y = b < c->to ? b : c->to;
    if (x >= y)
        return 0;
    const tlsnic_rec_key *key = key_of(c->k, e);
    TLSNIC_ENSURE(key && (uint64_t)e->hn + dec <= e->len, EBADMSG);
    TLSNIC_TRY(tlsnic_rec_keystream_xor(&c->r->ks, key, e->rec_seq,
                                        e->hn > TLSNIC_REC_HDR_LEN ? e->explicit_nonce : NULL,
                                        (uint64_t)(x - a), c->buf + x, c->buf + x,
                                        (size_t)(y - x)));
    c->restored += (uint32_t)(y - x);
    return 0;
}

static int restore_range(struct tlsnic_rxs_reader *r, const struct tlsnic_rxs_keys *k,
                         uint32_t seq, uint8_t *buf, size_t len, size_t from, uint32_t *restored)
{
    struct restore_ctx c = {.r = r, .k = k, .buf = buf, .from = (int64_t)from,
                            .to = (int64_t)len};
    int rc = visit(r, seq, len, restore_one, &c);
    *restored = c.restored;
    return rc < 0 ? -EBADMSG : 0;
}

int tlsnic_rxs_restore(struct tlsnic_rxs_reader *r, const struct tlsnic_rxs_keys *k,
                       uint32_t seq, uint8_t *buf, size_t len)
{
    TLSNIC_ENSURE(r && r->s && k && k->cur && (buf || len == 0), EINVAL);
    uint32_t restored = 0;
    TLSNIC_TRY(restore_range(r, k, seq, buf, len, 0, &restored));
    return (int)restored;
}

struct scan_ctx {
    int count;
    int have_first;
    struct tlsnic_rxs_entry first; /* the entry that starts at seq, if any */
};

static int scan_one(void *ctx, const struct tlsnic_rxs_entry *e, int64_t rel)
{
    struct scan_ctx *c = ctx;
    c->count++;
    if (rel == 0 && !c->have_first) {
        c->first = *e;
        c->have_first = 1;
    }
    return 0;
}

/* The judgement of tlsnic_rxs_record, without touching the bytes: 1 if verified whole. */
static int judge(struct tlsnic_rxs_reader *r, const struct tlsnic_rxs_keys *k, uint32_t seq,
                 size_t len, const uint8_t *explicit_nonce, uint64_t rec_seq,
                 struct tlsnic_rxs_info *info)
{
    memset(info, 0, sizeof(*info));
    struct scan_ctx c = {0};
    TLSNIC_TRY(visit(r, seq, len, scan_one, &c));
    info->entries = (uint8_t)(c.count > 255 ? 255 : c.count);
    if (c.count == 0)
        return 0; /* untouched: ciphertext as on the wire */
    if (c.have_first && (c.first.flags & TLSNIC_RXS_F_AFTER_GAP)) {
        info->after_gap = 1;
        info->gap_seq = c.first.gap_seq;
    }
    size_t hn = TLSNIC_REC_HDR_LEN + tlsnic_rec_key_explicit_nonce_len(k->cur);
    const struct tlsnic_rxs_entry *e = &c.first;
    uint32_t dec = TLSNIC_RXS_STATE_DEC(e->state);
    uint32_t verdict = TLSNIC_RXS_STATE_VERDICT(e->state);
    int whole = c.have_first && e->len == len && e->hn == hn && len >= hn + TLSNIC_REC_TAG_LEN &&
                dec == len - hn - TLSNIC_REC_TAG_LEN;
    if (c.count == 1 && whole && verdict == TLSNIC_RXS_OK && e->rec_seq == rec_seq &&
        e->epoch == (uint16_t)k->epoch &&
        (hn == TLSNIC_REC_HDR_LEN ||
         (explicit_nonce &&
          memcmp(e->explicit_nonce, explicit_nonce, TLSNIC_REC_EXPLICIT_NONCE_LEN) == 0)))
        return 1;
    info->device_bad = whole && verdict == TLSNIC_RXS_BAD;
    return 0;
}

int tlsnic_rxs_record(struct tlsnic_rxs_reader *r, const struct tlsnic_rxs_keys *k,
                      uint32_t seq, uint8_t *rec, size_t len, size_t from, uint64_t rec_seq,
                      struct tlsnic_rxs_info *info)
{
    TLSNIC_ENSURE(r && r->s && k && k->cur && rec && from <= len, EINVAL);
    struct tlsnic_rxs_info dummy;
    if (!info)
        info = &dummy;
    size_t hn = TLSNIC_REC_HDR_LEN + tlsnic_rec_key_explicit_nonce_len(k->cur);
    int v = judge(r, k, seq, len, len >= hn ? rec + TLSNIC_REC_HDR_LEN : NULL, rec_seq, info);
    if (v != 0 || info->entries == 0)
        return v;
    uint32_t restored = 0;
    TLSNIC_TRY(restore_range(r, k, seq, rec, len, from, &restored));
    info->restored = restored;
    return 0;
}

int tlsnic_rxs_verified(struct tlsnic_rxs_reader *r, const struct tlsnic_rxs_keys *k,
                        uint32_t seq, size_t len, const uint8_t *explicit_nonce,
                        uint64_t rec_seq, struct tlsnic_rxs_info *info)
{
    TLSNIC_ENSURE(r && r->s && k && k->cur && info, EINVAL);
    return judge(r, k, seq, len, explicit_nonce, rec_seq, info);
}

unsigned tlsnic_rxs_plan(struct tlsnic_rxs_reader *r, const struct tlsnic_rxs_keys *k,
                         uint32_t seq, uint64_t rec_seq, uint32_t *lens, unsigned max)
{
    if (!r || !r->s || !k || !k->cur || !lens)
        return 0;
    struct tlsnic_rxs *s = r->s;
    size_t hn = TLSNIC_REC_HDR_LEN + tlsnic_rec_key_explicit_nonce_len(k->cur);
    uint64_t head = __atomic_load_n(&s->hdr->head, __ATOMIC_ACQUIRE);
    uint64_t id = r->next;
    if (id > head || head - id > s->n)
        id = head > s->n ? head - s->n : 0;
    unsigned n = 0;
    for (; id < head && n < max; id++) {
        struct tlsnic_rxs_entry e;
        if (read_entry(s, id, &e) < 0)
            continue;
        int64_t rel = (int32_t)(e.tcp_seq - seq);
        if (rel < 0 && rel + (int64_t)e.len <= 0)
            continue; /* before seq: already read */
        uint32_t dec = TLSNIC_RXS_STATE_DEC(e.state);
        if (rel != 0 || e.hn != hn || e.len < hn + TLSNIC_REC_TAG_LEN ||
            e.len > TLSNIC_REC_MAX_WIRE_LEN || dec != e.len - hn - TLSNIC_REC_TAG_LEN ||
            TLSNIC_RXS_STATE_VERDICT(e.state) != TLSNIC_RXS_OK || e.rec_seq != rec_seq + n ||
            e.epoch != (uint16_t)k->epoch)
            break;
        lens[n++] = e.len;
        seq += e.len;
    }
    return n;
}

int tlsnic_rxs_pending(struct tlsnic_rxs_reader *r, const struct tlsnic_rxs_keys *k,
                       uint32_t seq, uint64_t rec_seq, uint32_t *len)
{
    if (!r || !r->s || !k || !k->cur || !len)
        return 0;
    struct tlsnic_rxs *s = r->s;
    size_t hn = TLSNIC_REC_HDR_LEN + tlsnic_rec_key_explicit_nonce_len(k->cur);
    uint64_t head = __atomic_load_n(&s->hdr->head, __ATOMIC_ACQUIRE);
    uint64_t id = r->next;
    if (id > head || head - id > s->n)
        id = head > s->n ? head - s->n : 0;
    for (; id < head; id++) {
        struct tlsnic_rxs_entry e;
        if (read_entry(s, id, &e) < 0)
            continue;
        int64_t rel = (int32_t)(e.tcp_seq - seq);
        if (rel < 0 && rel + (int64_t)e.len <= 0)
            continue;
        if (rel != 0 || e.hn != hn || e.len < hn + TLSNIC_REC_TAG_LEN ||
            e.len > TLSNIC_REC_MAX_WIRE_LEN || e.rec_seq != rec_seq ||
            e.epoch != (uint16_t)k->epoch ||
            TLSNIC_RXS_STATE_VERDICT(e.state) > TLSNIC_RXS_OK)
            return 0;
        *len = e.len;
        return 1;
    }
    return 0;
}

void tlsnic_rxs_consume(struct tlsnic_rxs_reader *r, uint32_t seq)
{
    struct tlsnic_rxs_host *h = r->s->host;
    __atomic_store_n(&h->consumed_seq, seq, __ATOMIC_RELAXED);
    if (__atomic_load_n(&h->consumed_valid, __ATOMIC_RELAXED) != 1)
        __atomic_store_n(&h->consumed_valid, 1, __ATOMIC_RELEASE);
}

void tlsnic_rxs_set_host_epoch(struct tlsnic_rxs *s, uint32_t epoch)
{
    __atomic_store_n(&s->host->epoch, epoch, __ATOMIC_RELEASE);
}

void tlsnic_rxs_set_host_received(struct tlsnic_rxs *s, uint32_t len)
{
    __atomic_store_n(&s->host->received_len, len, __ATOMIC_RELEASE);
}

int tlsnic_rxs_poll_request(struct tlsnic_rxs_reader *r, uint32_t *seq)
{
    uint32_t g = __atomic_load_n(&r->s->hdr->req_gen, __ATOMIC_ACQUIRE);
    if (g == r->req_gen_seen)
        return 0;
    r->req_gen_seen = g;
    *seq = __atomic_load_n(&r->s->hdr->req_seq, __ATOMIC_RELAXED);
    return 1;
}

/* ------------------------------------------------------------------------------------------ */
/* For a driver that marks packets                                                            */

int tlsnic_rxs_span_verified(const struct tlsnic_rxs *s, uint32_t seq, uint32_t len)
{
    if (!s || len == 0)
        return 0;
    uint64_t head = __atomic_load_n(&s->hdr->head, __ATOMIC_ACQUIRE);
    int64_t front = len; /* [front, len) is covered by checked records */
    /* Newest first: entries are in stream order, so the first record that ends before the
     * range ends the search. Relative positions are signed 32-bit distances to seq. */
    for (uint64_t id = head; id-- > 0 && head - id <= s->n;) {
        struct tlsnic_rxs_entry e;
        if (read_entry(s, id, &e) < 0)
            break;
        int64_t start = (int32_t)(e.tcp_seq - seq);
        int64_t end = start + e.len;
        if (end <= 0)
            break;
        if (start >= (int64_t)len)
            continue;
        if (e.len < (uint32_t)e.hn + TLSNIC_REC_TAG_LEN)
            return 0;
        int64_t lo = start > 0 ? start : 0;
        int64_t hi = end < (int64_t)len ? end : (int64_t)len;
        int64_t body_lo = start + e.hn, body_hi = end - TLSNIC_REC_TAG_LEN;
        int64_t dec_hi = body_lo + TLSNIC_RXS_STATE_DEC(e.state);
        int64_t in_lo = lo > body_lo ? lo : body_lo, in_hi = hi < body_hi ? hi : body_hi;
        if (in_lo < in_hi && in_hi > dec_hi)
            return 0; /* body bytes in the range the device did not decrypt */
        uint32_t verdict = TLSNIC_RXS_STATE_VERDICT(e.state);
        if (verdict == TLSNIC_RXS_BAD || verdict == TLSNIC_RXS_RECHECK)
            return 0; /* a record the device cannot vouch for, wherever the range is */
        if (end <= (int64_t)len && verdict != TLSNIC_RXS_OK)
            return 0; /* the record ends in the range with its tag not yet checked */
        if (hi < front)
            return 0; /* bytes between this record and the next no entry covers */
        if (lo < front)
            front = lo;
    }
    return front == 0;
}
