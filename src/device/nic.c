/*
 * The TLS offload device model, TX direction. See tlsnic/nic.h (src/device/include) for the contract.
 *
 * Positions inside a flow are 64-bit stream offsets from the flow's start sequence, so
 * nothing depends on 32-bit sequence wrap-around once a packet has been placed relative to
 * the expected sequence number (a window never exceeds 2^31 bytes).
 */
#include "tlsnic/nic.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "nic_int.h"
#include "tlsnic/check.h"
#include "tlsnic/frame.h"
#include "tlsnic/record.h"

#define DEFAULT_MAX_FLOWS 65536u
#define DEFAULT_REC_CKPT 512u
#define DEFAULT_INT_RANGES 2048u
#define MIN_RING 4u
#define MAX_HN (TLSNIC_REC_HDR_LEN + TLSNIC_REC_EXPLICIT_NONCE_LEN)
#define MAC_LEN 8
#define NO_SLOT UINT32_MAX
#define SCRATCH_LEN 4096
#define SEEN_SLOTS 8192 /* streams towards the host remembered without an RX context */
#define SEEN_PROBE 8

struct flow_key {
    uint8_t family;
    uint8_t dir;
    uint16_t local_port;
    uint16_t remote_port;
    uint8_t pad[2];
    uint8_t local[16];
    uint8_t remote[16];
};

/* A record of the unacknowledged window, as the device first saw it: a checkpoint. */
struct rec_desc {
    int64_t start;   /* stream offset of the header's first byte */
    uint64_t rec_seq;
    uint32_t len;    /* whole record */
    uint8_t hn;      /* header + explicit nonce */
    uint8_t tag_valid;
    uint8_t hdr[MAX_HN];
    uint8_t tag[TLSNIC_REC_TAG_LEN];
};

/* Keyed digest of the plaintext of one segment the device encrypted. */
struct int_range {
    int64_t off;
    uint32_t len;
    uint8_t mac[MAC_LEN];
};

struct txflow {
    struct flow_key key;
    tlsnic_rec_key *rkey;
    size_t nonce_len; /* explicit nonce bytes */
    struct tlsnic_rec_store store;
    uint32_t start_seq;

    /* Fast path: the record in progress at stream offset exp. */
    int64_t exp;      /* next stream offset the fast path expects */
    int64_t una;      /* peer's cumulative ACK */
    int64_t hi;       /* highest stream offset the device has handled */
    uint8_t synced;   /* exp/record state are valid */
    uint8_t begun;    /* the stream for the current record was begun */
    uint8_t integrity;
    int64_t rec_start;
    uint64_t rec_seq;
    uint32_t rec_len; /* 0 until its header was parsed */
    uint32_t pos;     /* bytes of the current record done */
    uint32_t hn_need; /* 5 until the header is parsed, then 5 + explicit nonce */
    uint32_t body_len;
    uint8_t hdr[MAX_HN];
    uint8_t tag[TLSNIC_REC_TAG_LEN];
    struct tlsnic_rec_stream cur;
    struct tlsnic_rec_stream tmp; /* host-store resync */
    struct tlsnic_rec_keystream ks;
    EVP_MAC_CTX *mac;             /* Poly1305 under a random per-flow key (see mac_of) */
    uint8_t mac_key[32];

    /* Checkpoint ring: records by start, oldest first. */
    struct rec_desc *rd;
    uint32_t rd_cap, rd_head, rd_cnt;
    /* Integrity ring: segment digests by offset, oldest first. */
    struct int_range *ir;
    uint32_t ir_cap, ir_head, ir_cnt;
    int64_t int_floor; /* below it, plaintext cannot be checked any more */

    uint32_t flags;
    struct tlsnic_nic_stats st;
};

struct slot {
    struct flow_key key;
    uint32_t next; /* bucket chain / free list */
    struct txflow *f; /* TX context (key.dir TX) ... */
    struct rxflow *r; /* ... or RX context (key.dir RX; nic_rx.c) */
};

/*
 * How far the device forwarded a stream towards the host for which it holds no RX
 * context: its own memory, read when an RX context for that stream is added. Bytes it
 * forwarded before reached the host untouched; a later copy of them (a tail loss probe, a
 * retransmission) after the add must be left alone too, or the RX status would describe
 * bytes the host does not have (it keeps the first copy). The kernel needs no such memory:
 * each skb carries its own decrypted bit. Least recently updated first out, within a probe
 * window: a stream is forgotten only when SEEN_PROBE busier ones share its window.
 */
struct seen_stream {
    struct flow_key key; /* the key its RX context would have */
    uint32_t end_seq;    /* one past the highest byte forwarded */
    uint32_t used;
    uint64_t stamp;      /* the device's frame count at the last update */
};

struct tlsnic_nic {
    struct tlsnic_nic_config cfg;
    struct tlsnic_dev dev;
    uint32_t nbuckets; /* power of two */
    uint32_t *buckets;
    struct slot *slots;
    uint32_t free_head;
    uint32_t last_hit; /* one-entry flow cache for bursts of one flow (TSO, ACK trains) */
    uint32_t nflows;
    uint32_t n_rx; /* of which RX */
    uint64_t hash_seed[2];
    struct seen_stream *seen;      /* SEEN_SLOTS */
    uint64_t seen_clock;
    EVP_MAC *poly1305;             /* fetched once; each flow has its own context */
    struct tlsnic_nic_stats st;    /* counters of deleted flows and device-wide ones */
    uint8_t scratch[SCRATCH_LEN];  /* discarded ciphertext of re-sealed prefixes */
};

/* ------------------------------------------------------------------------------------------ */
/* Flow table                                                                                 */

static void make_key(struct flow_key *k, const struct tlsnic_flow *flow, enum tlsnic_dir dir)
{
    memset(k, 0, sizeof(*k));
    k->family = flow->family;
    k->dir = (uint8_t)dir;
    k->local_port = flow->local_port;
    k->remote_port = flow->remote_port;
    size_t alen = flow->family == AF_INET ? 4 : 16;
    memcpy(k->local, flow->local, alen);
    memcpy(k->remote, flow->remote, alen);
}

/* The key of a frame's flow: the host's end is the source of a frame going to the wire
 * and the destination of one coming to the host. */
static void make_key_of_frame(struct flow_key *k, const struct tlsnic_frame *fr,
                              enum tlsnic_dir dir, int to_wire)
{
    memset(k, 0, sizeof(*k));
    k->family = fr->family;
    k->dir = (uint8_t)dir;
    k->local_port = to_wire ? fr->sport : fr->dport;
    k->remote_port = to_wire ? fr->dport : fr->sport;
    size_t alen = fr->family == AF_INET ? 4 : 16;
    memcpy(k->local, to_wire ? fr->src : fr->dst, alen);
    memcpy(k->remote, to_wire ? fr->dst : fr->src, alen);
}

/*
 * Seeded multiply-xorshift hash of the key. The seed is random per device, so which flows
 * share a bucket cannot be chosen from outside (no hash flooding by choice); chains are
 * bounded by the table size anyway.
 */
static uint32_t key_hash_full(const tlsnic_nic *nic, const struct flow_key *k)
{
    const uint8_t *b = (const uint8_t *)k;
    uint64_t h = nic->hash_seed[0];
    for (size_t i = 0; i < sizeof(*k); i += 8) {
        uint64_t w;
        memcpy(&w, b + i, 8);
        h = (h ^ w) * 0x9e3779b97f4a7c15ULL;
        h ^= h >> 29;
    }
    h = (h ^ nic->hash_seed[1]) * 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 32;
    return (uint32_t)h;
}

static uint32_t key_hash(const tlsnic_nic *nic, const struct flow_key *k)
{
    return key_hash_full(nic, k) & (nic->nbuckets - 1);
}

/* The device forwarded stream k (RX key) up to end_seq without a context for it. */
static void seen_note(tlsnic_nic *nic, const struct flow_key *k, uint32_t end_seq)
{
    uint32_t h = key_hash_full(nic, k);
    struct seen_stream *victim = NULL;
    nic->seen_clock++;
    for (uint32_t i = 0; i < SEEN_PROBE; i++) {
        struct seen_stream *e = &nic->seen[(h + i) & (SEEN_SLOTS - 1)];
        if (e->used && memcmp(&e->key, k, sizeof(*k)) == 0) {
            if ((int32_t)(end_seq - e->end_seq) > 0)
                e->end_seq = end_seq;
            e->stamp = nic->seen_clock;
            return;
        }
        if (!victim || (victim->used && (!e->used || e->stamp < victim->stamp)))
            victim = e;
    }
    *victim = (struct seen_stream){.key = *k, .end_seq = end_seq, .used = 1,
                                   .stamp = nic->seen_clock};
}

/* Takes what the device remembers of stream k: 1 and *end_seq, or 0. */
static int seen_take(tlsnic_nic *nic, const struct flow_key *k, uint32_t *end_seq)
{
    uint32_t h = key_hash_full(nic, k);
    for (uint32_t i = 0; i < SEEN_PROBE; i++) {
        struct seen_stream *e = &nic->seen[(h + i) & (SEEN_SLOTS - 1)];
        if (e->used && memcmp(&e->key, k, sizeof(*k)) == 0) {
            *end_seq = e->end_seq;
            memset(e, 0, sizeof(*e));
            return 1;
        }
    }
    return 0;
}

_Static_assert(sizeof(struct flow_key) % 8 == 0, "flow key hashed in 8-byte words");

static struct slot *lookup(const tlsnic_nic *nic, const struct flow_key *k, uint32_t **link)
{
    uint32_t *l = &nic->buckets[key_hash(nic, k)];
    for (uint32_t i = 0; *l != NO_SLOT && i < nic->cfg.max_flows; i++) {
        struct slot *s = &nic->slots[*l];
        if (memcmp(&s->key, k, sizeof(*k)) == 0) {
            if (link)
                *link = l;
            return s;
        }
        l = &s->next;
    }
    return NULL;
}

/* Packet-path lookup: the last flow hit first, then the table. */
static struct slot *lookup_pkt(tlsnic_nic *nic, const struct flow_key *k)
{
    if (nic->last_hit != NO_SLOT) {
        struct slot *s = &nic->slots[nic->last_hit];
        if ((s->f || s->r) && memcmp(&s->key, k, sizeof(*k)) == 0)
            return s;
    }
    struct slot *s = lookup(nic, k, NULL);
    if (s)
        nic->last_hit = (uint32_t)(s - nic->slots);
    return s;
}

static struct slot *find_slot(const tlsnic_nic *nic, const struct tlsnic_flow *flow,
                              enum tlsnic_dir dir)
{
    if (!nic || !flow || (flow->family != AF_INET && flow->family != AF_INET6))
        return NULL;
    struct flow_key k;
    make_key(&k, flow, dir);
    return lookup(nic, &k, NULL);
}

static struct txflow *find_flow(const tlsnic_nic *nic, const struct tlsnic_flow *flow,
                                enum tlsnic_dir dir)
{
    struct slot *s = find_slot(nic, flow, dir);
    return s ? s->f : NULL;
}

static struct rxflow *find_rx(const tlsnic_nic *nic, const struct tlsnic_flow *flow)
{
    struct slot *s = find_slot(nic, flow, TLSNIC_DIR_RX);
    return s ? s->r : NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* Flow context life                                                                          */

static void stats_add(struct tlsnic_nic_stats *a, const struct tlsnic_nic_stats *b)
{
    uint64_t *x = (uint64_t *)a;
    const uint64_t *y = (const uint64_t *)b;
    for (size_t i = 0; i < sizeof(*a) / sizeof(uint64_t); i++)
        x[i] += y[i];
}

static void flow_free(struct txflow *f)
{
    if (!f)
        return;
    tlsnic_rec_stream_cleanup(&f->cur);
    tlsnic_rec_stream_cleanup(&f->tmp);
    tlsnic_rec_keystream_cleanup(&f->ks);
    EVP_MAC_CTX_free(f->mac);
    tlsnic_rec_key_free(f->rkey);
    if (f->ir) {
        OPENSSL_cleanse(f->ir, (size_t)f->ir_cap * sizeof(struct int_range));
        free(f->ir);
    }
    size_t sz = sizeof(*f) + (size_t)f->rd_cap * sizeof(struct rec_desc);
    OPENSSL_cleanse(f, sz); /* tags, headers, record state, digest key */
    free(f);
}

static int flow_alloc(tlsnic_nic *nic, struct txflow **out, const void *crypto_info,
                      size_t info_len)
{
    size_t rd_sz = (size_t)nic->cfg.rec_checkpoints * sizeof(struct rec_desc);
    struct txflow *f = calloc(1, sizeof(*f) + rd_sz);
    TLSNIC_ENSURE(f, ENOMEM);
    f->rd = (struct rec_desc *)(f + 1);
    f->rd_cap = nic->cfg.rec_checkpoints;
    int rc = tlsnic_rec_key_new(&f->rkey, crypto_info, info_len);
    if (rc == 0)
        rc = tlsnic_rec_stream_init(&f->cur);
    if (rc == 0)
        rc = tlsnic_rec_stream_init(&f->tmp);
    if (rc == 0)
        rc = tlsnic_rec_keystream_init(&f->ks);
    if (rc == 0) {
        f->mac = EVP_MAC_CTX_new(nic->poly1305);
        if (!f->mac || RAND_bytes(f->mac_key, sizeof(f->mac_key)) != 1)
            rc = -ENOMEM;
    }
    if (rc < 0) {
        flow_free(f);
        return rc;
    }
    f->nonce_len = tlsnic_rec_key_explicit_nonce_len(f->rkey);
    *out = f;
    return 0;
}

static int integrity_on(tlsnic_nic *nic, struct txflow *f);

/* Starts a record at stream offset `start` with sequence number rec_seq (state only). */
static void rec_reset(struct txflow *f, int64_t start, uint64_t rec_seq)
{
    f->rec_start = start;
    f->rec_seq = rec_seq;
    f->rec_len = 0;
    f->pos = 0;
    f->hn_need = TLSNIC_REC_HDR_LEN;
    f->body_len = 0;
    f->begun = 0;
}

int tlsnic_nic_add(tlsnic_nic *nic, const struct tlsnic_flow *flow, enum tlsnic_dir dir,
                   const void *crypto_info, size_t info_len, uint32_t start_tcp_seq,
                   const struct tlsnic_rec_store *store)
{
    TLSNIC_ENSURE(nic && flow && crypto_info, EINVAL);
    TLSNIC_ENSURE(flow->family == AF_INET || flow->family == AF_INET6, EINVAL);
    TLSNIC_ENSURE(dir == TLSNIC_DIR_TX || dir == TLSNIC_DIR_RX, EINVAL);
    TLSNIC_TRY(tlsnic_crypto_info_check(crypto_info, info_len));
    struct flow_key k;
    make_key(&k, flow, dir);
    TLSNIC_ENSURE(!lookup(nic, &k, NULL), EEXIST);
    TLSNIC_ENSURE(nic->free_head != NO_SLOT, ENOSPC);
    if (dir == TLSNIC_DIR_RX) {
        struct rxflow *r;
        TLSNIC_TRY(nic_rx_new(&r, &nic->cfg, crypto_info, info_len, start_tcp_seq, store));
        uint32_t forwarded_end;
        if (seen_take(nic, &k, &forwarded_end))
            nic_rx_forwarded_before(r, forwarded_end);
        uint32_t idx = nic->free_head;
        struct slot *s = &nic->slots[idx];
        nic->free_head = s->next;
        s->key = k;
        s->r = r;
        uint32_t *b = &nic->buckets[key_hash(nic, &k)];
        s->next = *b;
        *b = idx;
        nic->nflows++;
        nic->n_rx++;
        nic->st.rx_tls_ctx++;
        return 0;
    }
    struct txflow *f;
    TLSNIC_TRY(flow_alloc(nic, &f, crypto_info, info_len));
    f->key = k;
    if (store)
        f->store = *store;
    f->start_seq = start_tcp_seq;
    f->synced = 1;
    if (nic->cfg.integrity) {
        int rc = integrity_on(nic, f);
        if (rc < 0) {
            flow_free(f);
            return rc;
        }
        f->integrity = 1;
    }
    rec_reset(f, 0, tlsnic_rec_key_next_seq(f->rkey));

    uint32_t idx = nic->free_head;
    struct slot *s = &nic->slots[idx];
    nic->free_head = s->next;
    s->key = k;
    s->f = f;
    uint32_t *b = &nic->buckets[key_hash(nic, &k)];
    s->next = *b;
    *b = idx;
    nic->nflows++;
    nic->st.tx_tls_ctx++;
    return 0;
}

int tlsnic_nic_del(tlsnic_nic *nic, const struct tlsnic_flow *flow, enum tlsnic_dir dir)
{
    TLSNIC_ENSURE(nic && flow, EINVAL);
    struct flow_key k;
    make_key(&k, flow, dir);
    uint32_t *link = NULL;
    struct slot *s = lookup(nic, &k, &link);
    TLSNIC_ENSURE(s, ENOENT);
    uint32_t idx = *link;
    *link = s->next;
    nic->last_hit = NO_SLOT;
    if (s->r) {
        stats_add(&nic->st, nic_rx_stats(s->r));
        nic->st.rx_tls_del++;
        nic_rx_free(s->r);
        nic->n_rx--;
    } else {
        stats_add(&nic->st, &s->f->st);
        nic->st.tx_tls_del++;
        flow_free(s->f);
    }
    memset(s, 0, sizeof(*s));
    s->next = nic->free_head;
    nic->free_head = idx;
    nic->nflows--;
    return 0;
}

int tlsnic_nic_flow_flags(tlsnic_nic *nic, const struct tlsnic_flow *flow,
                          enum tlsnic_dir dir, uint32_t *flags)
{
    TLSNIC_ENSURE(flags, EINVAL);
    struct slot *s = find_slot(nic, flow, dir);
    if (!s) {
        *flags = TLSNIC_FLOW_F_GONE;
        return -ENOENT;
    }
    *flags = s->r ? nic_rx_flags(s->r) : s->f->flags;
    return 0;
}

/* Allocates the digest ring on first use (control path); what was sent before has no
 * digest and can never be checked. */
static int integrity_on(tlsnic_nic *nic, struct txflow *f)
{
    if (!f->ir) {
        f->ir = calloc(nic->cfg.int_ranges, sizeof(struct int_range));
        TLSNIC_ENSURE(f->ir, ENOMEM);
        f->ir_cap = nic->cfg.int_ranges;
    }
    f->ir_head = 0;
    f->ir_cnt = 0;
    f->int_floor = f->hi;
    return 0;
}

int tlsnic_nic_flow_set_integrity(tlsnic_nic *nic, const struct tlsnic_flow *flow,
                                  enum tlsnic_dir dir, int on)
{
    struct txflow *f = find_flow(nic, flow, dir);
    TLSNIC_ENSURE(f, ENOENT);
    if (on && !f->integrity)
        TLSNIC_TRY(integrity_on(nic, f));
    f->integrity = on ? 1 : 0;
    return 0;
}

int tlsnic_nic_flow_stats(const tlsnic_nic *nic, const struct tlsnic_flow *flow,
                          enum tlsnic_dir dir, struct tlsnic_nic_stats *out)
{
    TLSNIC_ENSURE(out, EINVAL);
    const struct slot *s = find_slot(nic, flow, dir);
    TLSNIC_ENSURE(s, ENOENT);
    *out = s->r ? *nic_rx_stats(s->r) : s->f->st;
    return 0;
}

void tlsnic_nic_stats(const tlsnic_nic *nic, struct tlsnic_nic_stats *out)
{
    *out = nic->st;
    for (uint32_t i = 0; i < nic->cfg.max_flows; i++) {
        if (nic->slots[i].f)
            stats_add(out, &nic->slots[i].f->st);
        else if (nic->slots[i].r)
            stats_add(out, nic_rx_stats(nic->slots[i].r));
    }
}

uint32_t tlsnic_nic_flow_count(const tlsnic_nic *nic)
{
    return nic ? nic->nflows : 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Checkpoint ring                                                                            */

static struct rec_desc *rd_at(struct txflow *f, uint32_t i)
{
    return &f->rd[(f->rd_head + i) % f->rd_cap];
}

static struct rec_desc *rd_push(struct txflow *f)
{
    /* Stale entries at or past the new record (after a resync jump) go first. */
    while (f->rd_cnt && rd_at(f, f->rd_cnt - 1)->start >= f->rec_start)
        f->rd_cnt--;
    if (f->rd_cnt == f->rd_cap) { /* window larger than the ring: forget the oldest */
        f->rd_head = (f->rd_head + 1) % f->rd_cap;
        f->rd_cnt--;
    }
    struct rec_desc *d = rd_at(f, f->rd_cnt++);
    memset(d, 0, sizeof(*d));
    d->start = f->rec_start;
    d->rec_seq = f->rec_seq;
    d->len = f->rec_len;
    d->hn = (uint8_t)f->hn_need;
    memcpy(d->hdr, f->hdr, f->hn_need);
    return d;
}

/* The checkpointed record containing stream offset off, or NULL. */
static struct rec_desc *rd_find(struct txflow *f, int64_t off)
{
    uint32_t lo = 0, hi = f->rd_cnt;
    while (lo < hi) { /* first record whose end is past off */
        uint32_t mid = lo + (hi - lo) / 2;
        struct rec_desc *d = rd_at(f, mid);
        if (d->start + d->len <= off)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == f->rd_cnt)
        return NULL;
    struct rec_desc *d = rd_at(f, lo);
    return d->start <= off ? d : NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* Integrity ring                                                                             */

static struct int_range *ir_at(struct txflow *f, uint32_t i)
{
    return &f->ir[(f->ir_head + i) % f->ir_cap];
}

/*
 * Keyed digest of the plaintext of range [off, off + len): Poly1305 over (off, len, bytes)
 * under the flow's secret key, truncated to 8 bytes. The key is used for many ranges,
 * which is sound here because the digests never leave the device: Poly1305 is then an
 * almost-universal hash with a secret key, so two different plaintexts of one range
 * collide with probability about len / 2^106 (+ 2^-64 for the truncation), whatever
 * their author chose. (GMAC did the same at 1.5x the cost.)
 */
static int mac_of(struct txflow *f, int64_t off, const uint8_t *p, uint32_t len,
                  uint8_t out[MAC_LEN])
{
    uint8_t hdr[16] = {0}, tag[16];
    size_t tl;
    for (int i = 0; i < 8; i++)
        hdr[i] = (uint8_t)((uint64_t)off >> (56 - 8 * i));
    hdr[8] = (uint8_t)(len >> 24);
    hdr[9] = (uint8_t)(len >> 16);
    hdr[10] = (uint8_t)(len >> 8);
    hdr[11] = (uint8_t)len;
    if (EVP_MAC_init(f->mac, f->mac_key, sizeof(f->mac_key), NULL) != 1 ||
        EVP_MAC_update(f->mac, hdr, sizeof(hdr)) != 1 ||
        (len && EVP_MAC_update(f->mac, p, len) != 1) ||
        EVP_MAC_final(f->mac, tag, &tl, sizeof(tag)) != 1 || tl != sizeof(tag))
        return -EIO;
    memcpy(out, tag, MAC_LEN);
    OPENSSL_cleanse(tag, sizeof(tag));
    return 0;
}

static void ir_evict_oldest(struct txflow *f)
{
    struct int_range *r = ir_at(f, 0);
    if (r->off + r->len > f->int_floor)
        f->int_floor = r->off + r->len;
    f->ir_head = (f->ir_head + 1) % f->ir_cap;
    f->ir_cnt--;
}

/* First range whose end is past off (index in 0..ir_cnt). */
static uint32_t ir_lower(struct txflow *f, int64_t off)
{
    uint32_t lo = 0, hi = f->ir_cnt;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        struct int_range *r = ir_at(f, mid);
        if (r->off + r->len <= off)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Records the digest of [off, off + len) (not overlapping any range), in order. */
static int ir_insert(struct txflow *f, int64_t off, const uint8_t *p, uint32_t len)
{
    if (len == 0)
        return 0;
    struct int_range nr = {.off = off, .len = len};
    if (off < f->int_floor)
        return 0; /* older than anything the ring can hold */
    TLSNIC_TRY(mac_of(f, off, p, len, nr.mac));
    if (f->ir_cnt == f->ir_cap)
        ir_evict_oldest(f);
    if (off < f->int_floor)
        return 0;
    uint32_t at = ir_lower(f, off);
    for (uint32_t i = f->ir_cnt; i > at; i--) /* rare: only off the fast path */
        *ir_at(f, i) = *ir_at(f, i - 1);
    *ir_at(f, at) = nr;
    f->ir_cnt++;
    return 0;
}

/* Digests of the segments of a fresh range [off, off + len), cut at gso boundaries
 * (measured from the frame's first payload byte at seg_off). */
static int ir_record(struct txflow *f, int64_t seg_off, uint16_t gso, int64_t off,
                     const uint8_t *p, size_t len)
{
    int64_t end = off + (int64_t)len;
    for (int64_t a = off; a < end;) {
        int64_t b = end;
        if (gso) {
            int64_t k = (a - seg_off) / gso + 1;
            if (seg_off + k * gso < b)
                b = seg_off + k * gso;
        }
        TLSNIC_TRY(ir_insert(f, a, p + (a - off), (uint32_t)(b - a)));
        a = b;
    }
    return 0;
}

/*
 * Checks the plaintext p of an already-seen range [off, off + len) against the digests.
 * Returns 0 (all it could check matched; bytes never encrypted are then recorded),
 * -EBADMSG (changed) or -ESTALE (cannot be checked: partial overlap, evicted, acked).
 */
static int ir_check(struct txflow *f, int64_t seg_off, uint16_t gso, int64_t off,
                    const uint8_t *p, size_t len)
{
    int64_t end = off + (int64_t)len;
    if (off < f->int_floor)
        return -ESTALE;
    for (uint32_t i = ir_lower(f, off); i < f->ir_cnt; i++) {
        struct int_range *r = ir_at(f, i);
        if (r->off >= end)
            break;
        if (r->off < off || r->off + r->len > end)
            return -ESTALE;
        uint8_t m[MAC_LEN];
        TLSNIC_TRY(mac_of(f, r->off, p + (r->off - off), r->len, m));
        if (CRYPTO_memcmp(m, r->mac, MAC_LEN) != 0)
            return -EBADMSG;
    }
    /* Bytes between checked ranges were never encrypted (skipped by a store resync):
     * record them now, so their own retransmissions get checked. */
    int64_t a = off;
    for (uint32_t guard = 0; a < end; guard++) {
        if (guard > 2 * f->ir_cap + 2)
            return -EIO;
        uint32_t i = ir_lower(f, a);
        struct int_range *r = i < f->ir_cnt ? ir_at(f, i) : NULL;
        if (r && r->off <= a) {
            a = r->off + r->len;
            continue;
        }
        int64_t b = r && r->off < end ? r->off : end;
        TLSNIC_TRY(ir_record(f, seg_off, gso, a, p + (a - off), (size_t)(b - a)));
        a = b;
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Fast path                                                                                  */

static int rec_begin(struct txflow *f, struct tlsnic_rec_stream *s, uint64_t rec_seq,
                     const uint8_t *hdr, uint32_t *body_len)
{
    TLSNIC_TRY(tlsnic_rec_stream_begin(s, f->rkey, 1, rec_seq, hdr,
                                       f->nonce_len ? hdr + TLSNIC_REC_HDR_LEN : NULL));
    *body_len = s->body_len;
    return 0;
}

/* Header parsed: length of the whole record, checked against the key. */
static int rec_header_len(struct txflow *f, const uint8_t *hdr, uint32_t *rec_len)
{
    int r = tlsnic_rec_parse_header(f->rkey, hdr);
    if (r < 0)
        return r;
    TLSNIC_ENSURE((size_t)r >= TLSNIC_REC_HDR_LEN + f->nonce_len + TLSNIC_REC_TAG_LEN, EBADMSG);
    *rec_len = (uint32_t)r;
    return 0;
}

/* The current record's header is complete: start its stream and checkpoint. */
static int fp_start_record(struct txflow *f)
{
    TLSNIC_TRY(rec_begin(f, &f->cur, f->rec_seq, f->hdr, &f->body_len));
    TLSNIC_ENSURE(f->hn_need + f->body_len + TLSNIC_REC_TAG_LEN == f->rec_len, EBADMSG);
    f->begun = 1;
    rd_push(f);
    return 0;
}

static int fp_finish_body(struct txflow *f)
{
    TLSNIC_TRY(tlsnic_rec_stream_seal_final(&f->cur, f->tag));
    struct rec_desc *d = f->rd_cnt ? rd_at(f, f->rd_cnt - 1) : NULL;
    if (d && d->start == f->rec_start) {
        memcpy(d->tag, f->tag, TLSNIC_REC_TAG_LEN);
        d->tag_valid = 1;
    }
    return 0;
}

/* Encrypts the n bytes at p, which sit at stream offset f->exp, continuing the record. */
static int fp_run(struct txflow *f, uint8_t *p, size_t n)
{
    for (uint32_t guard = 0; n > 0; guard++) {
        if (guard > 4 * 65536)
            return -EIO; /* cannot happen: every pass consumes a byte or a record */
        size_t take;
        if (f->pos < f->hn_need) { /* header / explicit nonce: pass as written */
            take = f->hn_need - f->pos < n ? f->hn_need - f->pos : n;
            if (!f->begun)
                memcpy(f->hdr + f->pos, p, take);
            f->pos += (uint32_t)take;
            if (!f->begun && f->rec_len == 0 && f->pos == TLSNIC_REC_HDR_LEN) {
                TLSNIC_TRY(rec_header_len(f, f->hdr, &f->rec_len));
                f->hn_need = (uint32_t)(TLSNIC_REC_HDR_LEN + f->nonce_len);
            }
            if (!f->begun && f->rec_len && f->pos == f->hn_need) {
                TLSNIC_TRY(fp_start_record(f));
                if (f->body_len == 0)
                    TLSNIC_TRY(fp_finish_body(f));
            }
        } else if (f->pos < f->hn_need + f->body_len) { /* body: encrypt in place */
            size_t left = f->hn_need + f->body_len - f->pos;
            take = left < n ? left : n;
            TLSNIC_TRY(tlsnic_rec_stream_update(&f->cur, p, p, take));
            f->pos += (uint32_t)take;
            if (f->pos == f->hn_need + f->body_len)
                TLSNIC_TRY(fp_finish_body(f));
        } else { /* tag room: the tag */
            size_t toff = f->pos - f->hn_need - f->body_len;
            size_t left = f->rec_len - f->pos;
            take = left < n ? left : n;
            memcpy(p, f->tag + toff, take);
            f->pos += (uint32_t)take;
            if (f->pos == f->rec_len)
                rec_reset(f, f->rec_start + f->rec_len, f->rec_seq + 1);
        }
        p += take;
        n -= take;
        f->exp += (int64_t)take;
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Slow path: the host record store                                                           */

struct store_rec {
    struct tlsnic_rec_ref ref;
    int64_t start; /* stream offset */
    uint32_t hn, body_len;
};

/* Reads and checks the host's record containing stream offset off; begins f->tmp on it. */
static int store_get(tlsnic_nic *nic, struct txflow *f, int64_t off, struct store_rec *r)
{
    if (!f->store.ops || !f->store.ops->get_record)
        return -ENOENT;
    uint32_t seq = f->start_seq + (uint32_t)off;
    memset(r, 0, sizeof(*r));
    TLSNIC_TRY(f->store.ops->get_record(f->store.priv, seq, &r->ref));
    uint32_t in = seq - r->ref.tcp_seq; /* offset of `off` inside the record */
    TLSNIC_ENSURE(r->ref.bytes && r->ref.len >= TLSNIC_REC_HDR_LEN && in < r->ref.len, ENOENT);
    r->start = off - (int64_t)in;
    TLSNIC_ENSURE(r->start >= 0, ENOENT);
    uint32_t rec_len;
    TLSNIC_TRY(rec_header_len(f, r->ref.bytes, &rec_len));
    TLSNIC_ENSURE(rec_len == r->ref.len, EBADMSG);
    r->hn = (uint32_t)(TLSNIC_REC_HDR_LEN + f->nonce_len);
    TLSNIC_TRY(rec_begin(f, &f->tmp, r->ref.rec_seq, r->ref.bytes, &r->body_len));
    TLSNIC_ENSURE(r->hn + r->body_len + TLSNIC_REC_TAG_LEN == rec_len, EBADMSG);
    f->st.tx_tls_dump_packets++;
    f->st.tx_tls_dump_bytes += r->hn;
    (void)nic;
    return 0;
}

/* Re-seals body bytes [0, upto) of the store record through s (the paper's dump). */
static int store_prefix(tlsnic_nic *nic, struct txflow *f, struct tlsnic_rec_stream *s,
                        const struct store_rec *r, uint32_t upto)
{
    const uint8_t *body = r->ref.bytes + r->hn;
    for (uint32_t done = 0; done < upto;) {
        uint32_t c = upto - done < SCRATCH_LEN ? upto - done : SCRATCH_LEN;
        TLSNIC_TRY(tlsnic_rec_stream_update(s, body + done, nic->scratch, c));
        done += c;
    }
    f->st.tx_tls_resync_bytes += upto;
    f->st.tx_tls_dump_bytes += upto;
    f->st.tx_tls_ooo_crypto_bytes += upto;
    OPENSSL_cleanse(nic->scratch, upto < SCRATCH_LEN ? upto : SCRATCH_LEN);
    return 0;
}

/*
 * Encrypts p[0..n) at stream offset off (n bytes, all inside one record) from the host
 * store: begin the record, re-seal its body up to off, then this piece (and the tag).
 * *used = bytes of p consumed (the rest of p lies in later records).
 */
static int store_piece(tlsnic_nic *nic, struct txflow *f, int64_t off, uint8_t *p, size_t n,
                       size_t *used)
{
    struct store_rec r;
    TLSNIC_TRY(store_get(nic, f, off, &r));
    uint32_t a = (uint32_t)(off - r.start);
    uint32_t b = r.ref.len - a < n ? r.ref.len : a + (uint32_t)n;
    uint32_t body_end = r.hn + r.body_len;
    uint32_t pre_end = a < r.hn ? 0 : (a < body_end ? a : body_end) - r.hn;
    TLSNIC_TRY(store_prefix(nic, f, &f->tmp, &r, pre_end));
    if (b > r.hn && a < body_end) { /* the piece's own body bytes */
        uint32_t x = a > r.hn ? a : r.hn;
        uint32_t y = b < body_end ? b : body_end;
        TLSNIC_TRY(tlsnic_rec_stream_update(&f->tmp, p + (x - a), p + (x - a), y - x));
        f->st.tx_tls_ooo_crypto_bytes += y - x;
    }
    if (b > body_end) { /* tag bytes: the whole body went through the stream by now */
        uint8_t tag[TLSNIC_REC_TAG_LEN];
        TLSNIC_TRY(tlsnic_rec_stream_seal_final(&f->tmp, tag));
        uint32_t x = a > body_end ? a : body_end;
        memcpy(p + (x - a), tag + (x - body_end), b - x);
    }
    *used = b - a;
    return 0;
}

/* Re-encrypts the already-seen bytes p[0..n) at stream offset off (retransmission). */
static int rtx_run(tlsnic_nic *nic, struct txflow *f, int64_t off, uint8_t *p, size_t n,
                   int *all_ckpt)
{
    for (uint32_t guard = 0; n > 0; guard++) {
        if (guard > 65536)
            return -EIO;
        size_t used = 0;
        if (f->synced && !f->begun && off >= f->rec_start && off < f->exp) {
            /* The start of the record in progress: header bytes the device saw but could
             * not parse yet. Headers pass as the host wrote them. */
            used = (size_t)(f->exp - off) < n ? (size_t)(f->exp - off) : n;
            off += (int64_t)used;
            p += used;
            n -= used;
            continue;
        }
        struct rec_desc *d = nic->cfg.checkpoints_off ? NULL : rd_find(f, off);
        if (d) {
            uint32_t a = (uint32_t)(off - d->start);
            uint32_t b = d->len - a < n ? d->len : a + (uint32_t)n;
            uint32_t body_end = d->len - TLSNIC_REC_TAG_LEN;
            if (b > body_end && !d->tag_valid)
                goto store; /* tag not computed: let the host store serve the record */
            if (b > d->hn && a < body_end) {
                uint32_t x = a > d->hn ? a : d->hn;
                uint32_t y = b < body_end ? b : body_end;
                TLSNIC_TRY(tlsnic_rec_keystream_xor(&f->ks, f->rkey, d->rec_seq,
                                                    f->nonce_len ? d->hdr + 5 : NULL,
                                                    x - d->hn, p + (x - a), p + (x - a),
                                                    y - x));
                f->st.tx_tls_ooo_crypto_bytes += y - x;
            }
            if (b > body_end) {
                uint32_t x = a > body_end ? a : body_end;
                memcpy(p + (x - a), d->tag + (x - body_end), b - x);
            }
            used = b - a;
        } else {
        store:
            *all_ckpt = 0;
            int rc = store_piece(nic, f, off, p, n, &used);
            if (rc < 0)
                return rc;
        }
        off += (int64_t)used;
        p += used;
        n -= used;
    }
    return 0;
}

/* Fast-path state jumps to stream offset off, rebuilt from the host store. */
static int store_resync(tlsnic_nic *nic, struct txflow *f, int64_t off)
{
    struct store_rec r;
    TLSNIC_TRY(store_get(nic, f, off, &r));
    uint32_t a = (uint32_t)(off - r.start);
    uint32_t body_end = r.hn + r.body_len;
    uint32_t pre_end = a < r.hn ? 0 : (a < body_end ? a : body_end) - r.hn;
    TLSNIC_TRY(store_prefix(nic, f, &f->tmp, &r, pre_end));
    TLSNIC_TRY(tlsnic_rec_stream_copy(&f->cur, &f->tmp));
    rec_reset(f, r.start, r.ref.rec_seq);
    memcpy(f->hdr, r.ref.bytes, r.hn);
    f->rec_len = r.ref.len;
    f->hn_need = r.hn;
    f->body_len = r.body_len;
    f->pos = a;
    f->begun = 1;
    rd_push(f);
    if (a >= body_end)
        TLSNIC_TRY(fp_finish_body(f));
    f->exp = off;
    f->synced = 1;
    return 0;
}

int tlsnic_nic_resync(tlsnic_nic *nic, const struct tlsnic_flow *flow, enum tlsnic_dir dir,
                      uint32_t tcp_seq, uint64_t rec_seq)
{
    if (dir == TLSNIC_DIR_RX) {
        struct rxflow *r = find_rx(nic, flow);
        TLSNIC_ENSURE(r, ENOENT);
        return nic_rx_resync(r, tcp_seq, rec_seq);
    }
    struct txflow *f = find_flow(nic, flow, dir);
    TLSNIC_ENSURE(f, ENOENT);
    int64_t off = f->exp + (int32_t)(tcp_seq - (f->start_seq + (uint32_t)f->exp));
    /* Only forward: bytes the device already encrypted keep their checkpoints. */
    TLSNIC_ENSURE(off >= f->exp || !f->synced, EINVAL);
    TLSNIC_ENSURE(off >= f->hi, EINVAL);
    rec_reset(f, off, rec_seq);
    f->exp = off;
    f->hi = off;
    f->synced = 1;
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Packet entry points                                                                        */

static int drop(struct txflow *f, uint64_t *counter, uint32_t flag)
{
    (*counter)++;
    f->flags |= flag;
    return TLSNIC_DROP;
}

static int tx_flow(tlsnic_nic *nic, struct txflow *f, struct tlsnic_pkt *pkt,
                   const struct tlsnic_frame *fr)
{
    uint8_t *p = pkt->data + fr->payload_off;
    size_t n = fr->payload_len;
    if (n == 0)
        return TLSNIC_PASS;
    uint32_t ref_seq = f->start_seq + (uint32_t)f->exp;
    int64_t off = f->exp + (int32_t)(fr->seq - ref_seq);
    int64_t end = off + (int64_t)n;
    if (end <= 0) { /* entirely before the offload started: clear by design */
        f->st.tx_tls_skip_no_sync_data++;
        return TLSNIC_PASS;
    }
    int64_t seg_off = off;
    if (off < 0) { /* the first part predates the offload */
        p += -off;
        n -= (size_t)-off;
        off = 0;
    }
    int ooo = !f->synced || off != f->exp;
    int all_ckpt = 1;
    if (ooo)
        f->st.tx_tls_ooo++;

    /* Part 1: bytes the device handled before (retransmission). */
    int64_t old_end = end < f->exp ? end : f->exp;
    if (off < old_end) {
        size_t k = (size_t)(old_end - off);
        if (f->integrity) {
            int rc = ir_check(f, seg_off, pkt->gso_size, off, p, k);
            if (rc == -EBADMSG)
                return drop(f, &f->st.tx_tls_drop_integrity, TLSNIC_FLOW_F_INTEGRITY);
            /* Cannot be checked (acknowledged, evicted, or straddling original segments):
             * not proof of a change, so no abort flag, but never re-encrypted unchecked. */
            if (rc == -ESTALE)
                return drop(f, &f->st.tx_tls_drop_no_sync_data, TLSNIC_FLOW_F_NO_SYNC);
            if (rc < 0)
                return drop(f, &f->st.tx_tls_drop_no_sync_data, TLSNIC_FLOW_F_NO_SYNC);
        }
        if (rtx_run(nic, f, off, p, k, &all_ckpt) < 0)
            return drop(f, &f->st.tx_tls_drop_no_sync_data, TLSNIC_FLOW_F_NO_SYNC);
        p += k;
        n -= k;
        off += (int64_t)k;
    }
    /* Part 2: new bytes; a gap (or lost state) first resyncs from the host store. */
    if (n > 0) {
        if (!f->synced || off != f->exp) {
            all_ckpt = 0;
            if (store_resync(nic, f, off) < 0) {
                f->synced = 0;
                return drop(f, &f->st.tx_tls_drop_no_sync_data, TLSNIC_FLOW_F_NO_SYNC);
            }
        }
        if (f->integrity && ir_record(f, seg_off, pkt->gso_size, off, p, n) < 0)
            return drop(f, &f->st.tx_tls_drop_no_sync_data, TLSNIC_FLOW_F_NO_SYNC);
        if (fp_run(f, p, n) < 0) {
            /* Malformed record from the host or a crypto failure: no guess, no clear. */
            f->synced = 0;
            return drop(f, &f->st.tx_tls_drop_bad_frame, TLSNIC_FLOW_F_NO_SYNC);
        }
    }
    if (end > f->hi)
        f->hi = end;
    if (ooo && all_ckpt)
        f->st.tx_tls_ooo_ckpt++;
    size_t segs = pkt->gso_size ? (fr->payload_len + pkt->gso_size - 1) / pkt->gso_size : 1;
    f->st.tx_tls_encrypted_packets += segs;
    f->st.tx_tls_encrypted_bytes += (uint64_t)(end - (seg_off < 0 ? 0 : seg_off));
    if (pkt->csum == TLSNIC_CSUM_FULL)
        tlsnic_tcp_csum_fill(pkt->data, fr);
    return TLSNIC_MODIFIED;
}

int tlsnic_nic_tx(tlsnic_nic *nic, struct tlsnic_pkt *pkt)
{
    TLSNIC_ENSURE(nic && pkt && pkt->data, EINVAL);
    struct tlsnic_frame fr;
    int kind = tlsnic_frame_parse(pkt->data, pkt->len, &fr);
    if (kind < 0) {
        nic->st.tx_tls_drop_bad_frame++;
        return TLSNIC_DROP;
    }
    if (kind != TLSNIC_FRAME_TCP || nic->nflows == 0)
        return TLSNIC_PASS;
    struct flow_key k;
    make_key_of_frame(&k, &fr, TLSNIC_DIR_RX, 1);
    struct slot *s;
    if (nic->n_rx && (fr.flags & TLSNIC_TCP_ACK) && (s = lookup_pkt(nic, &k)) && s->r)
        nic_rx_ack(s->r, fr.ack); /* the host's ACK of what the RX flow carried to it */
    if (nic->nflows == nic->n_rx)
        return TLSNIC_PASS;
    k.dir = TLSNIC_DIR_TX;
    s = lookup_pkt(nic, &k);
    if (!s)
        return TLSNIC_PASS;
    return tx_flow(nic, s->f, pkt, &fr);
}

static void ack_trim(struct txflow *f, uint32_t ack)
{
    int64_t a = f->exp + (int32_t)(ack - (f->start_seq + (uint32_t)f->exp));
    if (a <= f->una || a > f->hi)
        return; /* old, duplicate, or acking bytes the device never saw */
    f->una = a;
    f->st.tx_tls_ack_trims++;
    while (f->rd_cnt && rd_at(f, 0)->start + rd_at(f, 0)->len <= a) {
        if (rd_at(f, 0)->start == f->rec_start && f->begun && f->pos < f->rec_len)
            break; /* never trim the record in progress */
        OPENSSL_cleanse(rd_at(f, 0), sizeof(struct rec_desc));
        f->rd_head = (f->rd_head + 1) % f->rd_cap;
        f->rd_cnt--;
    }
    while (f->ir_cnt && ir_at(f, 0)->off + ir_at(f, 0)->len <= a) {
        f->ir_head = (f->ir_head + 1) % f->ir_cap;
        f->ir_cnt--;
    }
    if (a > f->int_floor)
        f->int_floor = a; /* acked bytes are never checked again: sending them is doubt */
}

int tlsnic_nic_rekey(tlsnic_nic *nic, const struct tlsnic_flow *flow, enum tlsnic_dir dir,
                     const void *crypto_info, size_t info_len, uint32_t tcp_seq)
{
    TLSNIC_ENSURE(crypto_info, EINVAL);
    TLSNIC_ENSURE(dir == TLSNIC_DIR_RX, EOPNOTSUPP);
    struct rxflow *r = find_rx(nic, flow);
    TLSNIC_ENSURE(r, ENOENT);
    return nic_rx_rekey(r, crypto_info, info_len, tcp_seq);
}

int tlsnic_nic_evict(tlsnic_nic *nic, const struct tlsnic_flow *flow, enum tlsnic_dir dir)
{
    TLSNIC_ENSURE(dir == TLSNIC_DIR_RX, EOPNOTSUPP);
    struct rxflow *r = find_rx(nic, flow);
    TLSNIC_ENSURE(r, ENOENT);
    nic_rx_evict(r);
    return 0;
}

int tlsnic_nic_rx_pkt(tlsnic_nic *nic, struct tlsnic_pkt *pkt)
{
    TLSNIC_ENSURE(nic && pkt && pkt->data, EINVAL);
    struct tlsnic_frame fr;
    int kind = tlsnic_frame_parse(pkt->data, pkt->len, &fr);
    if (kind < 0) {
        if (nic->n_rx == 0)
            return TLSNIC_PASS;
        nic->st.rx_tls_drop_bad_frame++; /* cannot prove it carries no offloaded bytes */
        return TLSNIC_DROP;
    }
    if (kind != TLSNIC_FRAME_TCP)
        return TLSNIC_PASS;
    struct flow_key k;
    make_key_of_frame(&k, &fr, TLSNIC_DIR_TX, 0);
    struct slot *s;
    if ((fr.flags & TLSNIC_TCP_ACK) && nic->nflows > nic->n_rx && (s = lookup_pkt(nic, &k)) && s->f)
        ack_trim(s->f, fr.ack);
    k.dir = TLSNIC_DIR_RX;
    s = nic->n_rx ? lookup_pkt(nic, &k) : NULL;
    if (!s || !s->r) {
        if (fr.payload_len > 0)
            seen_note(nic, &k, fr.seq + (uint32_t)fr.payload_len);
        return TLSNIC_PASS;
    }
    return nic_rx_segment(s->r, pkt, &fr);
}

int tlsnic_nic_rx(tlsnic_nic *nic, const uint8_t *frame, size_t len)
{
    TLSNIC_ENSURE(nic && frame, EINVAL);
    struct tlsnic_frame fr;
    if (nic->nflows == 0 || tlsnic_frame_parse(frame, len, &fr) != TLSNIC_FRAME_TCP ||
        !(fr.flags & TLSNIC_TCP_ACK))
        return TLSNIC_PASS;
    struct flow_key k;
    make_key_of_frame(&k, &fr, TLSNIC_DIR_TX, 0);
    struct slot *s = lookup_pkt(nic, &k);
    if (s)
        ack_trim(s->f, fr.ack);
    return TLSNIC_PASS;
}

/* ------------------------------------------------------------------------------------------ */
/* Device life and the devops table                                                          */

static int op_add(struct tlsnic_dev *dev, int sockfd, const struct tlsnic_flow *flow,
                  enum tlsnic_dir dir, const void *crypto_info, size_t info_len,
                  uint32_t start_tcp_seq, const struct tlsnic_rec_store *store)
{
    return tlsnic_nic_add(dev->priv, flow, dir, crypto_info, info_len, start_tcp_seq, store);
}

static int op_del(struct tlsnic_dev *dev, int sockfd, const struct tlsnic_flow *flow,
                  enum tlsnic_dir dir)
{
    return tlsnic_nic_del(dev->priv, flow, dir);
}

static int op_resync(struct tlsnic_dev *dev, int sockfd, const struct tlsnic_flow *flow,
                     enum tlsnic_dir dir, uint32_t tcp_seq, uint64_t rec_seq)
{
    return tlsnic_nic_resync(dev->priv, flow, dir, tcp_seq, rec_seq);
}

static int op_flow_flags(struct tlsnic_dev *dev, const struct tlsnic_flow *flow,
                         enum tlsnic_dir dir, uint32_t *flags)
{
    return tlsnic_nic_flow_flags(dev->priv, flow, dir, flags);
}

static int op_rekey(struct tlsnic_dev *dev, int sockfd, const struct tlsnic_flow *flow,
                    enum tlsnic_dir dir, const void *crypto_info, size_t info_len,
                    uint32_t tcp_seq)
{
    return tlsnic_nic_rekey(dev->priv, flow, dir, crypto_info, info_len, tcp_seq);
}

static const struct tlsnic_dev_ops nic_ops = {
    .name = "tlsnic-model",
    .add = op_add,
    .del = op_del,
    .resync = op_resync,
    .flow_flags = op_flow_flags,
    .rekey = op_rekey,
    .caps = TLSNIC_DEV_CAP_RX,
};

void tlsnic_nic_config_default(struct tlsnic_nic_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->max_flows = DEFAULT_MAX_FLOWS;
    cfg->rec_checkpoints = DEFAULT_REC_CKPT;
    cfg->int_ranges = DEFAULT_INT_RANGES;
}

int tlsnic_nic_new(tlsnic_nic **out, const struct tlsnic_nic_config *cfg)
{
    TLSNIC_ENSURE(out, EINVAL);
    struct tlsnic_nic_config c;
    tlsnic_nic_config_default(&c);
    if (cfg) {
        c.checkpoints_off = cfg->checkpoints_off;
        c.integrity = cfg->integrity;
        c.rx_no_guess = cfg->rx_no_guess;
        if (cfg->rx_entries)
            c.rx_entries = cfg->rx_entries;
        if (cfg->max_flows)
            c.max_flows = cfg->max_flows;
        if (cfg->rec_checkpoints)
            c.rec_checkpoints = cfg->rec_checkpoints;
        if (cfg->int_ranges)
            c.int_ranges = cfg->int_ranges;
    }
    TLSNIC_ENSURE(c.max_flows <= (1u << 24), EINVAL);
    if (c.rec_checkpoints < MIN_RING)
        c.rec_checkpoints = MIN_RING;
    if (c.int_ranges < MIN_RING)
        c.int_ranges = MIN_RING;
    tlsnic_nic *nic = calloc(1, sizeof(*nic));
    TLSNIC_ENSURE(nic, ENOMEM);
    nic->cfg = c;
    nic->nbuckets = 1;
    while (nic->nbuckets < 2 * c.max_flows)
        nic->nbuckets <<= 1;
    nic->buckets = malloc((size_t)nic->nbuckets * sizeof(uint32_t));
    nic->slots = calloc(c.max_flows, sizeof(struct slot));
    nic->seen = calloc(SEEN_SLOTS, sizeof(struct seen_stream));
    nic->poly1305 = EVP_MAC_fetch(NULL, "POLY1305", NULL);
    if (!nic->buckets || !nic->slots || !nic->seen || !nic->poly1305 ||
        RAND_bytes((unsigned char *)nic->hash_seed, sizeof(nic->hash_seed)) != 1) {
        EVP_MAC_free(nic->poly1305);
        free(nic->buckets);
        free(nic->slots);
        free(nic->seen);
        free(nic);
        return -ENOMEM;
    }
    memset(nic->buckets, 0xff, (size_t)nic->nbuckets * sizeof(uint32_t));
    for (uint32_t i = 0; i < c.max_flows; i++)
        nic->slots[i].next = i + 1 < c.max_flows ? i + 1 : NO_SLOT;
    nic->free_head = 0;
    nic->last_hit = NO_SLOT;
    nic->dev.ops = &nic_ops;
    nic->dev.priv = nic;
    *out = nic;
    return 0;
}

void tlsnic_nic_free(tlsnic_nic *nic)
{
    if (!nic)
        return;
    for (uint32_t i = 0; i < nic->cfg.max_flows; i++) {
        flow_free(nic->slots[i].f);
        nic_rx_free(nic->slots[i].r);
    }
    EVP_MAC_free(nic->poly1305);
    free(nic->buckets);
    free(nic->slots);
    free(nic->seen);
    OPENSSL_cleanse(nic, sizeof(*nic));
    free(nic);
}

struct tlsnic_dev *tlsnic_nic_dev(tlsnic_nic *nic)
{
    return nic ? &nic->dev : NULL;
}
