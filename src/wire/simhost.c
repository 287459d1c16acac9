/* The simulated host: record framing (kTLS device-mode layout) and the record store. */
#include <errno.h>
#include <linux/tls.h>
#include <stdlib.h>
#include <string.h>

#include "tlsnic/check.h"
#include "tlsnic/record.h"
#include "tlsnic/wire.h"

struct host_rec {
    size_t off;
    uint32_t len;
    uint64_t rec_seq;
};

struct tlsnic_simhost {
    uint16_t version, cipher;
    size_t nonce_len;
    uint64_t next_seq;
    uint32_t start_seq;
    uint8_t *buf;
    size_t cap, len;
    struct host_rec *recs;
    size_t recs_cap, head, cnt; /* retained records: recs[head .. head + cnt) */
    int disabled;
    uint64_t reads;
};

static int store_get(void *priv, uint32_t tcp_seq, struct tlsnic_rec_ref *out)
{
    tlsnic_simhost *h = priv;
    if (h->disabled)
        return -ENOENT;
    size_t off = (uint32_t)(tcp_seq - h->start_seq);
    size_t lo = h->head, hi = h->head + h->cnt;
    while (lo < hi) { /* first retained record ending past off */
        size_t mid = lo + (hi - lo) / 2;
        if (h->recs[mid].off + h->recs[mid].len <= off)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == h->head + h->cnt || h->recs[lo].off > off)
        return -ENOENT;
    const struct host_rec *r = &h->recs[lo];
    out->tcp_seq = h->start_seq + (uint32_t)r->off;
    out->len = r->len;
    out->rec_seq = r->rec_seq;
    out->bytes = h->buf + r->off;
    h->reads++;
    return 0;
}

static const struct tlsnic_rec_store_ops store_ops = {.get_record = store_get};

int tlsnic_simhost_new(tlsnic_simhost **out, uint16_t version, uint16_t cipher,
                       uint64_t rec_seq, uint32_t start_seq, size_t cap)
{
    TLSNIC_ENSURE(out && cap > 0, EINVAL);
    TLSNIC_ENSURE(version == TLS_1_2_VERSION || version == TLS_1_3_VERSION, EINVAL);
    TLSNIC_ENSURE(tlsnic_crypto_info_size(cipher) != 0, EOPNOTSUPP);
    tlsnic_simhost *h = calloc(1, sizeof(*h));
    TLSNIC_ENSURE(h, ENOMEM);
    h->version = version;
    h->cipher = cipher;
    h->nonce_len = version == TLS_1_2_VERSION && cipher != TLS_CIPHER_CHACHA20_POLY1305
                       ? TLSNIC_REC_EXPLICIT_NONCE_LEN
                       : 0;
    h->next_seq = rec_seq;
    h->start_seq = start_seq;
    h->cap = cap;
    h->recs_cap = cap / (TLSNIC_REC_HDR_LEN + TLSNIC_REC_TAG_LEN) + 1;
    h->buf = calloc(1, cap);
    h->recs = calloc(h->recs_cap, sizeof(*h->recs));
    if (!h->buf || !h->recs) {
        tlsnic_simhost_free(h);
        return -ENOMEM;
    }
    *out = h;
    return 0;
}

void tlsnic_simhost_free(tlsnic_simhost *h)
{
    if (!h)
        return;
    free(h->buf);
    free(h->recs);
    free(h);
}

int tlsnic_simhost_append(tlsnic_simhost *h, const uint8_t *bytes, size_t len)
{
    TLSNIC_ENSURE(h && (bytes || len == 0), EINVAL);
    TLSNIC_ENSURE(len <= h->cap - h->len, ENOBUFS);
    memcpy(h->buf + h->len, bytes, len);
    h->len += len;
    return 0;
}

int tlsnic_simhost_write(tlsnic_simhost *h, uint8_t content_type, const uint8_t *content,
                         size_t len)
{
    TLSNIC_ENSURE(h && (content || len == 0), EINVAL);
    TLSNIC_ENSURE(len <= TLSNIC_REC_MAX_PLAINTEXT, EMSGSIZE);
    int v13 = h->version == TLS_1_3_VERSION;
    size_t body = len + (v13 ? 1 : 0);
    size_t rlen = TLSNIC_REC_HDR_LEN + h->nonce_len + body + TLSNIC_REC_TAG_LEN;
    TLSNIC_ENSURE(rlen <= h->cap - h->len && h->head + h->cnt < h->recs_cap, ENOBUFS);
    uint8_t *p = h->buf + h->len;
    size_t inner = rlen - TLSNIC_REC_HDR_LEN;
    p[0] = v13 ? TLSNIC_CT_APPLICATION_DATA : content_type;
    p[1] = 3;
    p[2] = 3;
    p[3] = (uint8_t)(inner >> 8);
    p[4] = (uint8_t)inner;
    for (size_t i = 0; i < h->nonce_len; i++)
        p[TLSNIC_REC_HDR_LEN + i] = (uint8_t)(h->next_seq >> (56 - 8 * i));
    uint8_t *b = p + TLSNIC_REC_HDR_LEN + h->nonce_len;
    if (len)
        memcpy(b, content, len);
    if (v13)
        b[len] = content_type;
    memset(b + body, 0, TLSNIC_REC_TAG_LEN); /* tag room */
    struct host_rec *r = &h->recs[h->head + h->cnt++];
    r->off = h->len;
    r->len = (uint32_t)rlen;
    r->rec_seq = h->next_seq++;
    h->len += rlen;
    return 0;
}

uint8_t *tlsnic_simhost_stream(tlsnic_simhost *h, size_t *len)
{
    *len = h->len;
    return h->buf;
}

struct tlsnic_rec_store tlsnic_simhost_store(tlsnic_simhost *h)
{
    struct tlsnic_rec_store s = {.ops = &store_ops, .priv = h};
    return s;
}

void tlsnic_simhost_release(tlsnic_simhost *h, size_t off)
{
    while (h->cnt && h->recs[h->head].off + h->recs[h->head].len <= off) {
        h->head++;
        h->cnt--;
    }
}

void tlsnic_simhost_store_disable(tlsnic_simhost *h, int on)
{
    h->disabled = on ? 1 : 0;
}

size_t tlsnic_simhost_retained(const tlsnic_simhost *h)
{
    return h->cnt;
}

uint64_t tlsnic_simhost_reads(const tlsnic_simhost *h)
{
    return h->reads;
}
