/*
 * The TLS offload device model, RX direction: records decrypted in place on their way to
 * the host, and what was done written into the flow's RX status. Contract: tlsnic/nic.h
 * ("RX"); the status: rx_status.h (src/offload).
 *
 * A cursor follows the stream at hi, the end of the highest byte the device has
 * forwarded. New bytes (at or past hi) are the only ones the device may decide about;
 * bytes before hi were decided when their first copy passed, and the flow's entries say
 * how (decided once). The cursor either knows the record structure at hi (where the
 * current record started, and once its header was read, its length) or searches for a
 * header. Records are counted along a chain: a run of records followed from one known
 * start; a chain's record sequence numbers are known (from add, a host answer, a hint, or
 * a placed header proven by its tag) or not yet. A record is decrypted only when the
 * cursor enters it at its first byte with its sequence number known: its body is
 * decrypted as it passes and its tag checked at its last byte, all in order. A gap stops
 * that record (the entry keeps the prefix it decrypted) and, if the next header fell into
 * the gap, the structure is lost.
 *
 * Positions are 64-bit stream offsets from the flow's start sequence number, as on TX.
 * Nothing here allocates: the entry ring and the streams are made at add.
 */
#include <errno.h>
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

#include "nic_int.h"
#include "tlsnic/check.h"
#include "tlsnic/record.h"
#include "tlsnic/rx_status.h"

#define HIST 64             /* record boundaries remembered (rekey, hints, answers) */
#define MAX_HN (TLSNIC_REC_HDR_LEN + TLSNIC_REC_EXPLICIT_NONCE_LEN)
#define DEFAULT_ENTRIES TLSNIC_RXS_MAX_ENTRIES /* as many as the host's status has */
#define MIN_ENTRIES 16u
#define GUESS_FAILS_MAX 3   /* placed headers proven wrong before the device stops placing */
#define MAX_EXTENT (TLSNIC_REC_MAX_WIRE_LEN + 256)
#define MAX_RECEIVED (1u << 30) /* a host's received_len beyond this is not believed */

/* The device's own copy of a status entry (the host's copy is a mirror). */
struct rxent {
    int64_t start;    /* stream offset of the record's first byte */
    uint32_t len;     /* whole record */
    uint32_t dec;     /* body bytes decrypted from the body's start */
    uint64_t rec_seq;
    uint8_t nonce[8]; /* explicit nonce (TLS 1.2 AES-GCM) */
    uint8_t hn;
    uint8_t verdict;  /* enum tlsnic_rxs_verdict */
    uint8_t tainted;  /* a later copy of its bytes passed before its tag was checked */
    uint8_t flags;    /* TLSNIC_RXS_F_* */
    uint16_t epoch;
    uint32_t gap_seq;
};

struct bnd {
    int64_t pos;
    uint64_t idx;
    uint32_t chain;
};

struct rxflow {
    tlsnic_rec_key *key;  /* keys of the current epoch ... */
    tlsnic_rec_key *prev; /* ... and of the one before (later copies of older bytes) */
    uint16_t epoch;
    uint8_t tls13;
    uint8_t nonce_len;
    uint8_t no_guess;
    uint8_t evicted;
    uint32_t start_seq;
    int64_t hi;
    int64_t acked;     /* the host's TCP acknowledged the stream up to here */

    /* The cursor. */
    uint8_t known;     /* the current record's start is known */
    uint8_t begun;     /* its header (+ nonce) was read and the record begun */
    uint8_t dec;       /* it is being decrypted */
    uint8_t hold;      /* TLS 1.3 KeyUpdate: decrypt nothing until rekey */
    int64_t rec_start;
    uint32_t rec_len;  /* 0 until the header was read */
    uint32_t hn;       /* header + explicit nonce */
    uint8_t hdr[MAX_HN];
    uint32_t chain;
    uint64_t idx;      /* index of the current record in its chain */
    uint8_t seq_known; /* rec_seq of record idx is seq_base + idx */
    uint8_t guessed;   /* ... placed by the device, not yet proven by a tag */
    uint64_t seq_base;
    uint64_t ent_id;   /* entry of the record being decrypted */
    struct tlsnic_rec_stream cur;
    uint8_t tag[TLSNIC_REC_TAG_LEN];
    uint8_t first, last_nz; /* first and last non-zero body byte (TLS 1.3 KeyUpdate) */

    /* Placing headers after a gap. */
    uint8_t anchor_ok;     /* a boundary whose record sequence number is proven */
    int64_t anchor_pos;
    uint64_t anchor_seq;
    uint32_t typical_len;  /* length of the last whole record followed */
    uint8_t delta_ok;      /* TLS 1.2 AES-GCM: explicit nonce - rec_seq of the peer */
    uint64_t delta;
    uint32_t guess_fails;
    uint8_t gap_on;        /* a gap was met and no record was decrypted since; */
    int64_t gap_at;

    /* The outstanding resync request, and a hint at a future boundary. */
    uint8_t req_on;
    int64_t req_pos;
    uint32_t req_chain;
    uint64_t req_idx;
    uint8_t hint_on;
    int64_t hint_pos;
    uint64_t hint_seq;

    struct bnd hist[HIST];
    uint32_t hist_head, hist_n;

    /* Entries: ids [tail, head), slot id & (cap - 1); ids match the host's status. */
    struct rxent *ent;
    uint32_t cap;
    uint64_t tail, head;
    struct tlsnic_rxs *rxs;
    struct tlsnic_rec_keystream ks;

    uint32_t flags;
    struct tlsnic_nic_stats st;
};

static uint64_t be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

static int64_t rel(const struct rxflow *r, uint32_t seq)
{
    return r->hi + (int32_t)(seq - (r->start_seq + (uint32_t)r->hi));
}

static uint32_t seq_of(const struct rxflow *r, int64_t off)
{
    return r->start_seq + (uint32_t)off;
}

static struct rxent *ent_at(const struct rxflow *r, uint64_t id)
{
    return &r->ent[id & (r->cap - 1)];
}

/* ------------------------------------------------------------------------------------------ */
/* Entries                                                                                    */

static void mirror_state(struct rxflow *r, uint64_t id)
{
    const struct rxent *e = ent_at(r, id);
    tlsnic_rxs_set_state(r->rxs, id, TLSNIC_RXS_STATE(e->dec, e->verdict));
}

/* Entries of records the host has read are of no use any more (TCP drops later copies). */
static void release(struct rxflow *r)
{
    uint32_t c;
    if (r->tail == r->head || !tlsnic_rxs_consumed(r->rxs, &c))
        return;
    int64_t pos = rel(r, c);
    if (pos > r->hi)
        return; /* the host claims to have read what was never sent: ignore it */
    while (r->tail < r->head) {
        const struct rxent *e = ent_at(r, r->tail);
        if (e->start + e->len > pos || (r->dec && r->tail == r->ent_id))
            break;
        r->tail++;
    }
}

static int room(struct rxflow *r)
{
    if (r->head - r->tail >= r->cap)
        release(r);
    return r->head - r->tail < r->cap;
}

/* ------------------------------------------------------------------------------------------ */
/* Later copies: the decisions already made                                                   */

static const tlsnic_rec_key *key_for(const struct rxflow *r, uint16_t epoch)
{
    if (epoch == r->epoch)
        return r->key;
    if (r->prev && epoch == (uint16_t)(r->epoch - 1))
        return r->prev;
    return NULL;
}

/*
 * Gives p[0..k), at stream offsets [off, off + k) < hi, the treatment their first copy
 * got: the entries' keystream over their decrypted spans, nothing elsewhere. A copy of
 * bytes the host's TCP may still take (not yet acknowledged by the host: its first copy
 * may be lost, or held out of order and replaced) makes the verdict of their record
 * RECHECK, now or when it comes: the device cannot prove the copy is the one it
 * authenticated. 1 if bytes changed, 0 if none, -ENOKEY if a span's key is gone (the
 * copy must not reach the host).
 */
static int apply_old(struct rxflow *r, int64_t off, uint8_t *p, size_t k)
{
    int64_t end = off + (int64_t)k;
    uint64_t lo = r->tail, hi = r->head;
    while (lo < hi) { /* first entry starting at or after end */
        uint64_t mid = lo + (hi - lo) / 2;
        if (ent_at(r, mid)->start < end)
            lo = mid + 1;
        else
            hi = mid;
    }
    int changed = 0;
    for (uint64_t id = lo; id > r->tail;) {
        id--;
        struct rxent *e = ent_at(r, id);
        if (e->start + MAX_EXTENT <= off)
            break; /* entries are in stream order; none before this one reaches off */
        if (e->start + e->len <= off)
            continue;
        int64_t a = e->start + e->hn, b = a + e->dec;
        int64_t x = a > off ? a : off, y = b < end ? b : end;
        if (x < y) {
            const tlsnic_rec_key *key = key_for(r, e->epoch);
            if (!key)
                return -ENOKEY;
            TLSNIC_TRY(tlsnic_rec_keystream_xor(&r->ks, key, e->rec_seq,
                                                e->hn > TLSNIC_REC_HDR_LEN ? e->nonce : NULL,
                                                (uint64_t)(x - a), p + (x - off),
                                                p + (x - off), (size_t)(y - x)));
            changed = 1;
        }
        int64_t reach_end = e->start + e->len < end ? e->start + e->len : end;
        if (reach_end <= r->acked)
            continue; /* the host's TCP drops this copy: it has those bytes in order */
        if (e->verdict == TLSNIC_RXS_OK || e->verdict == TLSNIC_RXS_BAD) {
            e->verdict = TLSNIC_RXS_RECHECK;
            mirror_state(r, id);
            r->st.rx_tls_recheck++;
        } else if (e->verdict == TLSNIC_RXS_PENDING && !e->tainted) {
            e->tainted = 1; /* its verdict, when it comes, is only for the device */
            r->st.rx_tls_recheck++;
        }
    }
    return changed;
}

/* ------------------------------------------------------------------------------------------ */
/* The cursor                                                                                 */

static void hist_push(struct rxflow *r)
{
    struct bnd *b = &r->hist[(r->hist_head + r->hist_n) % HIST];
    if (r->hist_n == HIST)
        r->hist_head = (r->hist_head + 1) % HIST;
    else
        r->hist_n++;
    *b = (struct bnd){.pos = r->rec_start, .idx = r->idx, .chain = r->chain};
}

/* The index of the record of the current chain that starts at pos, or -1. */
static int hist_find(const struct rxflow *r, int64_t pos, uint64_t *idx)
{
    for (uint32_t i = 0; i < r->hist_n; i++) {
        const struct bnd *b = &r->hist[(r->hist_head + i) % HIST];
        if (b->pos == pos && b->chain == r->chain) {
            *idx = b->idx;
            return 0;
        }
    }
    return -1;
}

/* A new chain whose first record starts at pos (record sequence numbers unknown). */
static void chain_start(struct rxflow *r, int64_t pos)
{
    r->known = 1;
    r->begun = 0;
    r->dec = 0;
    r->rec_start = pos;
    r->rec_len = 0;
    r->chain++;
    r->idx = 0;
    r->seq_known = 0;
    r->guessed = 0;
}

/* The structure at hi is lost (a gap over a header, a bad header). */
static void lose(struct rxflow *r)
{
    r->known = 0;
    r->begun = 0;
    r->dec = 0; /* the entry keeps what was decrypted; its tag is never checked */
    r->chain++;
}

/* The record at the cursor ends: the next one starts right after it. */
static void next_record(struct rxflow *r)
{
    if (r->seq_known && !r->guessed) {
        r->anchor_ok = 1;
        r->anchor_pos = r->rec_start + r->rec_len;
        r->anchor_seq = r->seq_base + r->idx + 1;
    }
    r->typical_len = r->rec_len;
    r->rec_start += r->rec_len;
    r->rec_len = 0;
    r->begun = 0;
    r->dec = 0;
    r->idx++;
}

static int header_len(const struct rxflow *r, const uint8_t *h)
{
    if (r->tls13 ? h[0] != TLSNIC_CT_APPLICATION_DATA
                 : (h[0] < TLSNIC_CT_CHANGE_CIPHER_SPEC || h[0] > TLSNIC_CT_APPLICATION_DATA))
        return -EINVAL;
    int len = tlsnic_rec_parse_header(r->key, h);
    if (len < 0)
        return len;
    if ((uint32_t)len < r->hn + TLSNIC_REC_TAG_LEN + (r->tls13 ? 1u : 0u))
        return -EBADMSG;
    return len;
}

/* Offset in p[0..n) of the first byte that looks like a record header with all 5 bytes
 * inside p, or n. */
static size_t find_header(const struct rxflow *r, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i + TLSNIC_REC_HDR_LEN <= n; i++) {
        /* The first 0x03 at or after i + 1 is the earliest version byte: its type byte
         * sits right before it. */
        const uint8_t *q = memchr(p + i + 1, 3, n - i - 1);
        if (!q || (size_t)(q - p) - 1 + TLSNIC_REC_HDR_LEN > n)
            return n;
        i = (size_t)(q - p) - 1;
        if (p[i + 2] == 3 && header_len(r, p + i) > 0)
            return i;
    }
    return n;
}

/*
 * Places the current record of a chain whose sequence numbers are unknown, without the
 * host: by the explicit nonce (TLS 1.2 AES-GCM: the peer's nonce - sequence number is
 * constant, learned from a verified record) or by position (every record since the last
 * proven boundary had the length of the last one). The record's tag proves it or not.
 */
static void try_place(struct rxflow *r)
{
    if (r->seq_known || r->no_guess || r->guess_fails >= GUESS_FAILS_MAX || r->evicted)
        return;
    uint64_t seq;
    if (r->nonce_len) {
        if (!r->delta_ok)
            return;
        seq = be64(r->hdr + TLSNIC_REC_HDR_LEN) - r->delta;
        if (r->anchor_ok) {
            int64_t span = r->rec_start - r->anchor_pos;
            uint64_t most = span > 0 ? (uint64_t)span / (r->hn + TLSNIC_REC_TAG_LEN) + 1 : 1;
            if (span < 0 || seq < r->anchor_seq || seq - r->anchor_seq > most)
                return;
        }
    } else {
        if (!r->anchor_ok || r->typical_len == 0)
            return;
        int64_t span = r->rec_start - r->anchor_pos;
        if (span < 0 || span % r->typical_len != 0)
            return;
        seq = r->anchor_seq + (uint64_t)(span / r->typical_len);
    }
    r->seq_known = 1;
    r->guessed = 1;
    r->seq_base = seq - r->idx;
    r->st.rx_tls_resync_placed++;
}

/* Asks the host where the current record of this chain belongs (device-request mode). */
static void request(struct rxflow *r)
{
    if (r->seq_known || r->evicted || (r->req_on && r->req_chain == r->chain))
        return;
    r->req_on = 1;
    r->req_pos = r->rec_start;
    r->req_chain = r->chain;
    r->req_idx = r->idx;
    tlsnic_rxs_request(r->rxs, seq_of(r, r->rec_start));
    r->st.rx_tls_resync_req_start++;
    r->st.rx_tls_resync_req_pkt++;
}

/* Header and nonce read: decrypt the record if it is known and there is room. */
static void begin_record(struct rxflow *r)
{
    r->begun = 1;
    if (!r->seq_known) {
        try_place(r);
        request(r);
    }
    if (!r->seq_known || r->hold || r->evicted)
        return;
    if (!room(r)) {
        r->st.rx_tls_no_room++;
        return;
    }
    uint64_t rec_seq = r->seq_base + r->idx;
    if (tlsnic_rec_stream_begin(&r->cur, r->key, 0, rec_seq, r->hdr,
                                r->nonce_len ? r->hdr + TLSNIC_REC_HDR_LEN : NULL) < 0 ||
        r->hn + r->cur.body_len + TLSNIC_REC_TAG_LEN != r->rec_len)
        return;
    uint64_t id = r->head++;
    struct rxent *e = ent_at(r, id);
    *e = (struct rxent){.start = r->rec_start, .len = r->rec_len, .rec_seq = rec_seq,
                        .hn = (uint8_t)r->hn, .verdict = TLSNIC_RXS_PENDING, .epoch = r->epoch};
    if (r->gap_on) {
        e->flags = TLSNIC_RXS_F_AFTER_GAP;
        e->gap_seq = seq_of(r, r->gap_at);
        r->gap_on = 0;
    }
    if (r->nonce_len)
        memcpy(e->nonce, r->hdr + TLSNIC_REC_HDR_LEN, 8);
    struct tlsnic_rxs_entry se = {.tcp_seq = seq_of(r, e->start), .len = e->len,
                                  .rec_seq = e->rec_seq,
                                  .state = TLSNIC_RXS_STATE(0, TLSNIC_RXS_PENDING),
                                  .epoch = e->epoch, .hn = e->hn, .flags = e->flags,
                                  .gap_seq = e->gap_seq};
    memcpy(se.explicit_nonce, e->nonce, 8);
    tlsnic_rxs_put(r->rxs, id, &se);
    r->ent_id = id;
    r->dec = 1;
    r->first = r->last_nz = 0;
}

/* The last tag byte arrived in order: the verdict. */
static void finish_record(struct rxflow *r)
{
    struct rxent *e = ent_at(r, r->ent_id);
    int ok = tlsnic_rec_stream_open_final(&r->cur, r->tag) == 0;
    e->verdict = e->tainted ? TLSNIC_RXS_RECHECK : ok ? TLSNIC_RXS_OK : TLSNIC_RXS_BAD;
    mirror_state(r, r->ent_id);
    r->dec = 0;
    if (ok) {
        r->st.rx_tls_rec_ok++;
        r->st.rx_tls_rec_bytes += e->len;
        r->guessed = 0; /* a placed header proven by its own tag */
        if (r->nonce_len) {
            r->delta = be64(e->nonce) - e->rec_seq;
            r->delta_ok = 1;
        }
        if (r->tls13 && r->last_nz == TLSNIC_CT_HANDSHAKE && r->first == 24 /* KeyUpdate */) {
            r->hold = 1;
            r->st.rx_tls_hold++;
        }
        return;
    }
    r->st.rx_tls_err++;
    if (r->guessed) { /* the place was wrong: ask the host from the next record on */
        r->st.rx_tls_resync_place_bad++;
        r->guess_fails++;
        r->seq_known = 0;
        r->guessed = 0;
    }
}

/* A hint (the host's next-record hint) for the boundary at hi. */
static void take_hint(struct rxflow *r)
{
    if (!r->hint_on || r->hint_pos != r->hi)
        return;
    r->hint_on = 0;
    if (!(r->known && r->rec_start == r->hi && r->rec_len == 0))
        chain_start(r, r->hi);
    r->seq_known = 1;
    r->guessed = 0;
    r->seq_base = r->hint_seq - r->idx;
    r->st.rx_tls_resync_res_ok++;
}

/* The cursor meets a gap of g unseen bytes at hi. */
static void gap(struct rxflow *r, int64_t g)
{
    r->dec = 0;
    r->gap_on = 1;
    r->gap_at = r->hi + g; /* where the device sees data again */
    if (r->known) {
        if (r->rec_len == 0) {
            lose(r);
        } else {
            int64_t left = r->rec_start + r->rec_len - r->hi;
            r->begun = 1; /* a record with a hole is never decrypted, nor its nonce read */
            if (g == left) {
                r->hi += g;
                next_record(r);
                return;
            }
            if (g > left) {
                if (r->seq_known && !r->guessed) { /* the next boundary is still proven */
                    r->anchor_ok = 1;
                    r->anchor_pos = r->rec_start + r->rec_len;
                    r->anchor_seq = r->seq_base + r->idx + 1;
                }
                r->typical_len = r->rec_len;
                lose(r);
            }
        }
    }
    if (r->hint_on && r->hint_pos < r->hi + g) {
        r->hint_on = 0; /* passed without the device seeing it */
        r->st.rx_tls_resync_res_skip++;
    }
    r->hi += g;
}

/*
 * New bytes p[0..n) at hi, in order: follow, decrypt, verify. *changed = 1 if bytes were
 * decrypted.
 */
static void run(struct rxflow *r, uint8_t *p, size_t n, int *changed)
{
    for (uint32_t guard = 0; n > 0 && guard < 4u * 65536u; guard++) {
        take_hint(r);
        if (!r->known) {
            if (r->evicted) {
                r->hi += (int64_t)n;
                return;
            }
            size_t i = find_header(r, p, n);
            r->hi += (int64_t)i;
            p += i;
            n -= i;
            if (n == 0)
                return;
            chain_start(r, r->hi);
        }
        uint32_t pos = (uint32_t)(r->hi - r->rec_start);
        uint32_t need = r->rec_len ? r->hn : TLSNIC_REC_HDR_LEN;
        size_t take;
        if (pos < need) { /* header, explicit nonce: they pass as they are */
            take = need - pos < n ? need - pos : n;
            memcpy(r->hdr + pos, p, take);
            if (r->rec_len == 0 && pos + take == TLSNIC_REC_HDR_LEN) {
                int len = header_len(r, r->hdr);
                if (len < 0) { /* not a record here: the chain was wrong */
                    r->hi += (int64_t)take;
                    p += take;
                    n -= take;
                    lose(r);
                    continue;
                }
                r->rec_len = (uint32_t)len;
                hist_push(r);
            }
            if (r->rec_len && pos + take == r->hn && !r->begun)
                begin_record(r);
        } else if (pos < r->rec_len - TLSNIC_REC_TAG_LEN) { /* body */
            uint32_t body_off = pos - r->hn;
            take = r->rec_len - TLSNIC_REC_TAG_LEN - pos < n ? r->rec_len - TLSNIC_REC_TAG_LEN - pos : n;
            if (r->dec) {
                if (tlsnic_rec_stream_update(&r->cur, p, p, take) < 0) {
                    r->dec = 0; /* cannot happen with a begun stream; never a half guess */
                } else {
                    struct rxent *e = ent_at(r, r->ent_id);
                    e->dec += (uint32_t)take;
                    mirror_state(r, r->ent_id);
                    if (body_off == 0)
                        r->first = p[0];
                    for (size_t j = take; j > 0; j--) {
                        if (p[j - 1]) {
                            r->last_nz = p[j - 1];
                            break;
                        }
                    }
                    *changed = 1;
                }
            }
        } else { /* tag */
            uint32_t toff = pos - (r->rec_len - TLSNIC_REC_TAG_LEN);
            take = r->rec_len - pos < n ? r->rec_len - pos : n;
            if (r->dec) {
                memcpy(r->tag + toff, p, take);
                if (toff + take == TLSNIC_REC_TAG_LEN)
                    finish_record(r);
            }
        }
        r->hi += (int64_t)take;
        p += take;
        n -= take;
        if (r->rec_len && r->hi == r->rec_start + r->rec_len)
            next_record(r);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Packet entry                                                                               */

int nic_rx_segment(struct rxflow *r, struct tlsnic_pkt *pkt, const struct tlsnic_frame *fr)
{
    uint8_t *p = pkt->data + fr->payload_off;
    size_t n = fr->payload_len;
    if (n == 0)
        return TLSNIC_PASS;
    if (pkt->csum == TLSNIC_CSUM_FULL && !tlsnic_tcp_csum_ok(pkt->data, fr))
        return TLSNIC_PASS; /* the host drops it: it must not move the device either */
    int64_t off = rel(r, fr->seq);
    int64_t end = off + (int64_t)n;
    if (end <= 0)
        return TLSNIC_PASS; /* before the offload started */
    if (off < 0) {
        p += -off;
        n -= (size_t)-off;
        off = 0;
    }
    int changed = 0;
    if (off != r->hi)
        r->st.rx_tls_ooo++;
    int64_t old_end = end < r->hi ? end : r->hi;
    if (off < old_end) {
        size_t k = (size_t)(old_end - off);
        int rc = apply_old(r, off, p, k);
        if (rc < 0) {
            r->st.rx_tls_drop_no_key++;
            return TLSNIC_DROP;
        }
        changed |= rc;
        p += k;
        n -= k;
        off += (int64_t)k;
    }
    if (n > 0) {
        if (off > r->hi)
            gap(r, off - r->hi);
        run(r, p, n, &changed);
        tlsnic_rxs_set_hi(r->rxs, seq_of(r, r->hi));
    }
    if (!changed)
        return TLSNIC_PASS;
    size_t segs = pkt->gso_size ? (fr->payload_len + pkt->gso_size - 1) / pkt->gso_size : 1;
    r->st.rx_tls_decrypted_packets += segs;
    r->st.rx_tls_decrypted_bytes += fr->payload_len;
    if (pkt->csum == TLSNIC_CSUM_FULL)
        tlsnic_tcp_csum_fill(pkt->data, fr);
    return TLSNIC_MODIFIED;
}

/* ------------------------------------------------------------------------------------------ */
/* Control path                                                                               */

int nic_rx_resync(struct rxflow *r, uint32_t tcp_seq, uint64_t rec_seq)
{
    int64_t pos = rel(r, tcp_seq);
    if (r->req_on && pos == r->req_pos) { /* the answer to our request */
        r->req_on = 0;
        r->st.rx_tls_resync_req_end++;
        int ours = r->known && r->chain == r->req_chain;
        if (rec_seq == TLSNIC_RESYNC_REJECT) {
            r->st.rx_tls_resync_res_skip++;
            if (ours && !r->seq_known)
                lose(r); /* a false header: search again */
            return 0;
        }
        if (!ours || (r->seq_known && !r->guessed)) {
            r->st.rx_tls_resync_res_skip++;
            return 0;
        }
        if (r->guessed && r->seq_base + r->req_idx != rec_seq)
            r->dec = 0; /* placed wrongly: the record in progress is not the one we thought */
        r->seq_base = rec_seq - r->req_idx;
        r->seq_known = 1;
        r->guessed = 0;
        r->st.rx_tls_resync_res_ok++;
        return 0;
    }
    if (rec_seq == TLSNIC_RESYNC_REJECT) { /* about a request we already replaced */
        r->st.rx_tls_resync_res_skip++;
        return 0;
    }
    /* Unasked: where a record starts (the next-record hint). */
    uint64_t idx;
    if (r->known && hist_find(r, pos, &idx) == 0) {
        if (!r->seq_known || r->guessed || r->seq_base + idx != rec_seq) {
            if (r->seq_known && r->seq_base + idx != rec_seq)
                r->dec = 0;
            r->seq_base = rec_seq - idx;
            r->seq_known = 1;
            r->guessed = 0;
            r->st.rx_tls_resync_res_ok++;
        }
        return 0;
    }
    if (pos >= r->hi && !r->evicted) {
        r->hint_on = 1;
        r->hint_pos = pos;
        r->hint_seq = rec_seq;
        return 0;
    }
    r->st.rx_tls_resync_res_skip++;
    return 0;
}

int nic_rx_rekey(struct rxflow *r, const void *crypto_info, size_t info_len, uint32_t tcp_seq)
{
    TLSNIC_TRY(tlsnic_crypto_info_check(crypto_info, info_len));
    const struct tls_crypto_info *ci = crypto_info;
    TLSNIC_ENSURE(r->tls13 && ci->version == TLS_1_3_VERSION &&
                      ci->cipher_type == tlsnic_rec_key_cipher(r->key),
                  EOPNOTSUPP);
    tlsnic_rec_key *nk;
    TLSNIC_TRY(tlsnic_rec_key_new(&nk, crypto_info, info_len));
    uint64_t new_seq = tlsnic_rec_key_next_seq(nk);
    int64_t pos = rel(r, tcp_seq);
    /* The record in progress was begun under the old key: it stays so (its stream holds
     * its key, kept as prev). One begun under the key before that, which goes now (a host
     * that rekeys twice before the device reached the first KeyUpdate's end: its own flow
     * only), is not decrypted any further: the stream must not use a freed key, and its
     * entry keeps the prefix it decrypted (whose later copies the device can no longer
     * treat alike: dropped, as for any key it no longer has). */
    if (r->dec && r->prev != NULL && r->cur.key == r->prev)
        r->dec = 0;
    tlsnic_rec_key_free(r->prev);
    r->prev = r->key;
    r->key = nk;
    r->epoch++;
    tlsnic_rxs_set_dev_epoch(r->rxs, r->epoch);
    r->hold = 0;
    r->anchor_ok = 0;
    r->delta_ok = 0;
    r->st.rx_tls_rekey++;
    uint64_t idx;
    if (r->known && hist_find(r, pos, &idx) == 0 && idx <= r->idx) {
        r->dec = 0; /* the record in progress was begun under the old key, and is not */
        r->seq_base = new_seq - idx;
        r->seq_known = 1;
        r->guessed = 0;
    } else if (r->known && r->rec_len && pos == r->rec_start + r->rec_len) {
        r->seq_base = new_seq - (r->idx + 1); /* the current record is the last old one */
        r->seq_known = 1;
        r->guessed = 0;
    } else if (pos >= r->hi) {
        r->seq_known = 0;
        r->hint_on = 1;
        r->hint_pos = pos;
        r->hint_seq = new_seq;
    } else {
        r->dec = 0;
        r->seq_known = 0; /* asked for at the next header */
        r->req_on = 0;
    }
    return 0;
}

void nic_rx_evict(struct rxflow *r)
{
    r->evicted = 1;
    r->dec = 0;
    r->known = 0;
    r->req_on = 0;
    r->hint_on = 0;
    r->flags |= TLSNIC_FLOW_F_GONE;
    tlsnic_rec_stream_cleanup(&r->cur); /* what a NIC frees; keys stay for later copies */
}

void nic_rx_ack(struct rxflow *r, uint32_t ack)
{
    int64_t a = rel(r, ack);
    if (a > r->acked && a <= r->hi)
        r->acked = a;
}

const struct tlsnic_nic_stats *nic_rx_stats(const struct rxflow *r)
{
    return &r->st;
}

uint32_t nic_rx_flags(const struct rxflow *r)
{
    return r->flags;
}

void nic_rx_free(struct rxflow *r)
{
    if (!r)
        return;
    tlsnic_rec_stream_cleanup(&r->cur);
    tlsnic_rec_keystream_cleanup(&r->ks);
    tlsnic_rec_key_free(r->key);
    tlsnic_rec_key_free(r->prev);
    if (r->ent) {
        OPENSSL_cleanse(r->ent, (size_t)r->cap * sizeof(*r->ent));
        free(r->ent);
    }
    OPENSSL_cleanse(r, sizeof(*r));
    free(r);
}

/*
 * A status that already holds entries (the host adds again after the device restarted):
 * the decisions in it stand. Bytes before the old device's hi were forwarded by it, so
 * they are old here too; the structure after them is unknown until a request is answered.
 * What is read there is the host's memory: entries out of order or inconsistent stop the
 * adoption (the device then cannot apply them, and drops later copies it cannot place).
 */
static void adopt(struct rxflow *r)
{
    uint32_t hseq;
    if (!tlsnic_rxs_hi(r->rxs, &hseq))
        return;
    int64_t hi = (int32_t)(hseq - r->start_seq);
    if (hi <= 0)
        return;
    r->hi = hi;
    r->known = 0;
    r->epoch = (uint16_t)tlsnic_rxs_host_epoch(r->rxs);
    uint64_t head = __atomic_load_n(&r->rxs->hdr->head, __ATOMIC_ACQUIRE);
    uint64_t first = head > r->cap ? head - r->cap : 0;
    r->tail = r->head = head;
    int64_t last = INT64_MIN;
    for (uint64_t id = first; id < head; id++) {
        struct tlsnic_rxs_entry se;
        if (tlsnic_rxs_get(r->rxs, id, &se) < 0)
            continue;
        struct rxent e = {.start = (int32_t)(se.tcp_seq - r->start_seq), .len = se.len,
                          .dec = TLSNIC_RXS_STATE_DEC(se.state),
                          .verdict = (uint8_t)TLSNIC_RXS_STATE_VERDICT(se.state),
                          .rec_seq = se.rec_seq, .hn = se.hn, .epoch = se.epoch,
                          .flags = se.flags, .gap_seq = se.gap_seq};
        memcpy(e.nonce, se.explicit_nonce, 8);
        if (e.start + e.hn + e.dec <= 0)
            continue; /* read by the host already */
        if (e.start < last || e.len > MAX_EXTENT || e.hn != r->hn ||
            (uint64_t)e.hn + e.dec + TLSNIC_REC_TAG_LEN > e.len || e.start + e.len > hi + MAX_EXTENT)
            break;
        last = e.start;
        if (r->tail == head)
            r->tail = id;
        *ent_at(r, id) = e;
    }
    if (r->tail == head)
        r->tail = r->head = head;
}

void nic_rx_forwarded_before(struct rxflow *r, uint32_t end_seq)
{
    int64_t end = (int32_t)(end_seq - r->start_seq);
    if (end <= r->hi)
        return;
    /* Decided (untouched) up to there; the records after it are found as after a gap. */
    r->hi = end;
    r->known = 0;
    tlsnic_rxs_set_hi(r->rxs, end_seq);
}

int nic_rx_new(struct rxflow **out, const struct tlsnic_nic_config *cfg, const void *crypto_info,
               size_t info_len, uint32_t start_tcp_seq, const struct tlsnic_rec_store *store)
{
    TLSNIC_ENSURE(store && store->rx_status && store->rx_status->n >= MIN_ENTRIES, EINVAL);
    TLSNIC_TRY(tlsnic_crypto_info_check(crypto_info, info_len));
    struct rxflow *r = calloc(1, sizeof(*r));
    TLSNIC_ENSURE(r, ENOMEM);
    uint32_t want = cfg->rx_entries ? cfg->rx_entries : DEFAULT_ENTRIES;
    uint32_t cap = MIN_ENTRIES;
    while (cap * 2 <= want && cap * 2 <= store->rx_status->n)
        cap *= 2;
    r->cap = cap;
    r->ent = calloc(cap, sizeof(*r->ent));
    int rc = r->ent ? tlsnic_rec_key_new(&r->key, crypto_info, info_len) : -ENOMEM;
    if (rc == 0)
        rc = tlsnic_rec_stream_init(&r->cur);
    if (rc == 0)
        rc = tlsnic_rec_keystream_init(&r->ks);
    if (rc < 0) {
        nic_rx_free(r);
        return rc;
    }
    r->rxs = store->rx_status;
    r->tls13 = tlsnic_rec_key_version(r->key) == TLS_1_3_VERSION;
    r->nonce_len = (uint8_t)tlsnic_rec_key_explicit_nonce_len(r->key);
    r->hn = TLSNIC_REC_HDR_LEN + r->nonce_len;
    r->no_guess = cfg->rx_no_guess;
    r->start_seq = start_tcp_seq;
    r->known = 1; /* the host added us at a record boundary */
    r->rec_start = 0;
    r->chain = 1;
    r->seq_known = 1;
    r->seq_base = tlsnic_rec_key_next_seq(r->key);
    hist_push(r);
    adopt(r);
    /* What the host's TCP already held when it added us passed before we had the flow.
     * (A host word: a wrong value only leaves more of its own records to it.) */
    uint32_t received = tlsnic_rxs_host_received(r->rxs);
    if (received > 0 && received <= MAX_RECEIVED)
        nic_rx_forwarded_before(r, start_tcp_seq + received);
    tlsnic_rxs_set_dev_epoch(r->rxs, r->epoch);
    *out = r;
    return 0;
}
