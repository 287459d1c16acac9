/* The simulated wire: TCP-like sender, faulty link, reassembling receiver. See wire.h. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "tlsnic/check.h"
#include "tlsnic/frame.h"
#include "tlsnic/wire.h"

#define LINK_SLOTS 2048
#define SLOT_LEN 1536
#define MAX_MSS 1440
#define HDR_ROOM 100 /* IPv6 (40) + TCP with up to 40 bytes of options (60) */
#define MAX_TSO 65000
#define PEER_ISS 0x10000000u /* the ACKing side's sequence number (peer, or host in RX mode) */
#define MAX_SACK 3

struct seg_slot {
    uint32_t len;
    uint8_t data[SLOT_LEN];
};

struct skb {
    size_t off;
    uint32_t len;
    uint8_t sacked;
};

struct tlsnic_simwire {
    struct tlsnic_simwire_config cfg;
    tlsnic_simhost *host;
    struct tlsnic_wire_hook hook;
    struct tlsnic_flow flow;
    uint64_t rng;
    void (*observer)(void *, const uint8_t *, size_t);
    void *observer_priv;
    int (*tamper)(void *, uint8_t *, size_t);
    void *tamper_priv;

    /* sender */
    size_t una, nxt;
    struct skb *skbs; /* unacknowledged sent segments, in order: [skb_head, +skb_cnt) */
    size_t skb_cap, skb_head, skb_cnt;
    int need_rexmit;
    uint16_t ip_id;
    uint8_t frame[HDR_ROOM + MAX_TSO];

    /* link */
    struct seg_slot *link;
    size_t link_n;

    /* receiver */
    uint8_t *rbuf;
    uint8_t *have; /* one byte per stream byte: simple and bounded by max_stream */
    size_t rcv_nxt, rcv_max;

    struct tlsnic_simwire_stats st;
};

static uint64_t rnd(tlsnic_simwire *w)
{
    uint64_t z = (w->rng += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static int chance(tlsnic_simwire *w, uint16_t pm)
{
    return pm && rnd(w) % 1000 < pm;
}

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
    put16(p, (uint16_t)(v >> 16));
    put16(p + 2, (uint16_t)v);
}

/* IPv4 header checksum over 20 bytes. */
static uint16_t ip_csum(const uint8_t *h)
{
    uint32_t s = 0;
    for (int i = 0; i < 20; i += 2)
        s += (uint32_t)(h[i] << 8 | h[i + 1]);
    while (s >> 16)
        s = (s & 0xffff) + (s >> 16);
    return (uint16_t)~s;
}

/* Writes IP + TCP headers for a plen-byte payload into buf; returns the header length.
 * The caller puts the payload right after and fills the TCP checksum. */
static size_t build_hdr(tlsnic_simwire *w, uint8_t *buf, int from_peer, uint32_t seq,
                        uint32_t ack, uint8_t flags, const uint8_t *opts, size_t optlen,
                        size_t plen)
{
    const uint8_t *src = from_peer ? w->flow.remote : w->flow.local;
    const uint8_t *dst = from_peer ? w->flow.local : w->flow.remote;
    uint16_t sport = from_peer ? w->flow.remote_port : w->flow.local_port;
    uint16_t dport = from_peer ? w->flow.local_port : w->flow.remote_port;
    size_t thl = 20 + optlen, ihl;
    if (optlen > 40) /* callers pass at most 28 bytes of SACK option */
        optlen = 0, thl = 20;
    if (w->flow.family == AF_INET) {
        ihl = 20;
        memset(buf, 0, 20);
        buf[0] = 0x45;
        put16(buf + 2, (uint16_t)(ihl + thl + plen));
        put16(buf + 4, w->ip_id++);
        put16(buf + 6, 0x4000); /* DF */
        buf[8] = 64;
        buf[9] = 6;
        memcpy(buf + 12, src, 4);
        memcpy(buf + 16, dst, 4);
        put16(buf + 10, ip_csum(buf));
    } else {
        ihl = 40;
        memset(buf, 0, 40);
        buf[0] = 0x60;
        put16(buf + 4, (uint16_t)(thl + plen));
        buf[6] = 6;
        buf[7] = 64;
        memcpy(buf + 8, src, 16);
        memcpy(buf + 24, dst, 16);
    }
    uint8_t *t = buf + ihl;
    memset(t, 0, 20);
    put16(t, sport);
    put16(t + 2, dport);
    put32(t + 4, seq);
    put32(t + 8, ack);
    t[12] = (uint8_t)((thl / 4) << 4);
    t[13] = flags;
    put16(t + 14, 65535);
    if (optlen)
        memcpy(t + 20, opts, optlen);
    return ihl + thl;
}

/* ------------------------------------------------------------------------------------------ */
/* Link and receiver                                                                          */

static int link_put(tlsnic_simwire *w, const uint8_t *frame, size_t len)
{
    TLSNIC_ENSURE(len <= SLOT_LEN, EMSGSIZE);
    TLSNIC_ENSURE(w->link_n < LINK_SLOTS, ENOBUFS);
    w->st.segs_wire++;
    if (chance(w, w->cfg.loss_pm)) {
        w->st.segs_lost++;
        return 0;
    }
    int copies = 1;
    if (chance(w, w->cfg.dup_pm) && w->link_n + 1 < LINK_SLOTS) {
        copies = 2;
        w->st.segs_dup++;
    }
    for (int i = 0; i < copies; i++) {
        struct seg_slot *s = &w->link[w->link_n++];
        s->len = (uint32_t)len;
        memcpy(s->data, frame, len);
    }
    return 0;
}

static void sender_ack(tlsnic_simwire *w, const uint8_t *frame, size_t len);

static void receiver_ack(tlsnic_simwire *w)
{
    uint8_t opts[4 + 8 * MAX_SACK];
    size_t ol = 0;
    if (w->rcv_max > w->rcv_nxt) { /* SACK blocks above the hole */
        uint8_t *blk = opts + 4;
        int n = 0;
        size_t i = w->rcv_nxt;
        while (i < w->rcv_max && n < MAX_SACK) {
            while (i < w->rcv_max && !w->have[i])
                i++;
            size_t s = i;
            while (i < w->rcv_max && w->have[i])
                i++;
            if (i > s) {
                put32(blk + 8 * n, w->cfg.start_seq + (uint32_t)s);
                put32(blk + 8 * n + 4, w->cfg.start_seq + (uint32_t)i);
                n++;
            }
        }
        if (n) {
            opts[0] = 1;
            opts[1] = 1;
            opts[2] = 5;
            opts[3] = (uint8_t)(2 + 8 * n);
            ol = 4 + 8 * (size_t)n;
        }
    }
    uint8_t buf[HDR_ROOM];
    size_t hl = build_hdr(w, buf, !w->cfg.rx, PEER_ISS, w->cfg.start_seq + (uint32_t)w->rcv_nxt,
                          TLSNIC_TCP_ACK, opts, ol, 0);
    struct tlsnic_frame fr;
    if (tlsnic_frame_parse(buf, hl, &fr) == TLSNIC_FRAME_TCP)
        tlsnic_tcp_csum_fill(buf, &fr);
    w->st.acks++;
    if (chance(w, w->cfg.ack_loss_pm)) {
        w->st.acks_lost++;
        return;
    }
    if (w->cfg.rx && w->hook.tx) { /* the host's ACK on its way out, past the device */
        struct tlsnic_pkt pkt = {.data = buf, .len = hl, .csum = TLSNIC_CSUM_FULL};
        w->hook.tx(w->hook.priv, &pkt);
    } else if (!w->cfg.rx && w->hook.rx) {
        w->hook.rx(w->hook.priv, buf, hl);
    }
    sender_ack(w, buf, hl);
}

static void receiver_input(tlsnic_simwire *w, const uint8_t *frame, size_t len)
{
    struct tlsnic_frame fr;
    if (tlsnic_frame_parse(frame, len, &fr) != TLSNIC_FRAME_TCP)
        return;
    w->st.segs_rcvd++;
    if (!tlsnic_tcp_csum_ok(frame, &fr)) {
        w->st.csum_errors++;
        return;
    }
    size_t off = (uint32_t)(fr.seq - w->cfg.start_seq);
    const uint8_t *p = frame + fr.payload_off;
    size_t n = fr.payload_len;
    if (off > w->cfg.max_stream || n > w->cfg.max_stream - off)
        return;
    /* Out-of-order bytes may be replaced by a later copy (Linux drops an out-of-order skb
     * that a new one covers); bytes delivered in order never are. */
    int replace = w->cfg.rx && chance(w, w->cfg.keep_last_pm);
    int replaced = 0;
    for (size_t i = 0; i < n; i++) {
        if (w->have[off + i]) {
            if (w->rbuf[off + i] != p[i]) {
                w->st.dup_mismatch++;
                w->st.ooo_mismatch += off + i >= w->rcv_nxt;
            }
            if (replace && off + i >= w->rcv_nxt) {
                w->rbuf[off + i] = p[i];
                replaced = 1;
            }
        } else {
            w->rbuf[off + i] = p[i];
            w->have[off + i] = 1;
        }
    }
    w->st.replaced += (uint64_t)replaced;
    if (off + n > w->rcv_max)
        w->rcv_max = off + n;
    while (w->rcv_nxt < w->rcv_max && w->have[w->rcv_nxt])
        w->rcv_nxt++;
    receiver_ack(w);
}

static void deliver(tlsnic_simwire *w)
{
    size_t n = w->link_n;
    for (size_t i = 0; i + 1 < n; i++) {
        if (!chance(w, w->cfg.reorder_pm))
            continue;
        size_t span = n - i - 1 < 8 ? n - i - 1 : 8;
        size_t j = i + 1 + (size_t)(rnd(w) % span);
        struct seg_slot tmp = w->link[i];
        w->link[i] = w->link[j];
        w->link[j] = tmp;
        w->st.segs_reordered++;
    }
    for (size_t i = 0; i < n; i++) {
        struct seg_slot *sl = &w->link[i];
        struct tlsnic_frame fr;
        int tcp = tlsnic_frame_parse(sl->data, sl->len, &fr) == TLSNIC_FRAME_TCP;
        int t = tcp && w->tamper && fr.payload_len ? w->tamper(w->tamper_priv, sl->data, sl->len) : 0;
        if (t < 0) {
            w->st.segs_lost++;
            continue;
        }
        if (t > 0) {
            tlsnic_tcp_csum_fill(sl->data, &fr);
            w->st.tampered++;
        }
        if (w->cfg.rx && w->hook.rx_pkt && tcp) {
            struct tlsnic_pkt pkt = {.data = sl->data, .len = sl->len, .csum = TLSNIC_CSUM_FULL};
            w->st.frames_tx++;
            int v = w->hook.rx_pkt(w->hook.priv, &pkt);
            if (v < 0 || v == TLSNIC_DROP) {
                w->st.dev_dropped++;
                continue;
            }
            if (v == TLSNIC_MODIFIED)
                w->st.dev_modified++;
        }
        if (w->observer)
            w->observer(w->observer_priv, sl->data, sl->len);
        receiver_input(w, sl->data, sl->len);
    }
    w->link_n = 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Sender                                                                                     */

static void sender_ack(tlsnic_simwire *w, const uint8_t *frame, size_t len)
{
    struct tlsnic_frame fr;
    if (tlsnic_frame_parse(frame, len, &fr) != TLSNIC_FRAME_TCP)
        return;
    size_t a = (uint32_t)(fr.ack - w->cfg.start_seq);
    if (a > w->una && a <= w->nxt)
        w->una = a;
    while (w->skb_cnt && w->skbs[w->skb_head].off + w->skbs[w->skb_head].len <= w->una) {
        w->skb_head = (w->skb_head + 1) % w->skb_cap;
        w->skb_cnt--;
    }
    /* SACK blocks: mark whole segments. */
    const uint8_t *o = frame + fr.l4_off + 20;
    const uint8_t *oend = frame + fr.payload_off;
    for (int guard = 0; o < oend && guard < 40; guard++) {
        if (o[0] == 0)
            break;
        if (o[0] == 1) {
            o++;
            continue;
        }
        if (oend - o < 2 || o[1] < 2 || o[1] > oend - o)
            break;
        if (o[0] == 5) {
            for (int b = 0; b + 8 <= o[1] - 2; b += 8) {
                const uint8_t *q = o + 2 + b;
                uint32_t l = (uint32_t)q[0] << 24 | (uint32_t)q[1] << 16 | q[2] << 8 | q[3];
                uint32_t r = (uint32_t)q[4] << 24 | (uint32_t)q[5] << 16 | q[6] << 8 | q[7];
                size_t lo = (uint32_t)(l - w->cfg.start_seq), hi = (uint32_t)(r - w->cfg.start_seq);
                for (size_t i = 0; i < w->skb_cnt; i++) {
                    struct skb *s = &w->skbs[(w->skb_head + i) % w->skb_cap];
                    if (s->off >= lo && s->off + s->len <= hi)
                        s->sacked = 1;
                }
            }
        }
        o += o[1];
    }
}

/*
 * Sends stream bytes [off, off + len) as one frame (TSO when gso and len > mss) through
 * the device, then onto the link.
 */
static int xmit(tlsnic_simwire *w, size_t off, size_t len, int allow_tso)
{
    size_t slen;
    uint8_t *stream = tlsnic_simhost_stream(w->host, &slen);
    TLSNIC_ENSURE(off <= slen && len <= slen - off && len <= MAX_TSO, EINVAL);
    uint16_t mss = w->cfg.mss;
    int tso = allow_tso && len > mss;
    uint32_t seq = w->cfg.start_seq + (uint32_t)off;
    int from_peer = w->cfg.rx;
    size_t hl = build_hdr(w, w->frame, from_peer, seq, PEER_ISS, TLSNIC_TCP_ACK | TLSNIC_TCP_PSH,
                          NULL, 0, len);
    memcpy(w->frame + hl, stream + off, len);
    struct tlsnic_frame fr;
    TLSNIC_ENSURE(tlsnic_frame_parse(w->frame, hl + len, &fr) == TLSNIC_FRAME_TCP, EIO);
    struct tlsnic_pkt pkt = {.data = w->frame, .len = hl + len};
    if (tso) {
        pkt.gso_size = mss;
        pkt.csum = TLSNIC_CSUM_OFFLOAD;
        uint16_t ps = tlsnic_tcp_pseudo_csum(&fr, fr.payload_off + len - fr.l4_off);
        put16(w->frame + fr.l4_off + 16, ps);
    } else {
        pkt.csum = TLSNIC_CSUM_FULL;
        tlsnic_tcp_csum_fill(w->frame, &fr); /* the host's checksum over its plaintext */
    }
    if (!w->cfg.rx)
        w->st.frames_tx++;
    int v = w->hook.tx && !w->cfg.rx ? w->hook.tx(w->hook.priv, &pkt) : TLSNIC_PASS;
    if (v < 0 || v == TLSNIC_DROP) {
        w->st.dev_dropped++;
        return 0;
    }
    if (v == TLSNIC_MODIFIED)
        w->st.dev_modified++;
    if (!tso)
        return link_put(w, w->frame, hl + len);
    /* Segmentation after the device, as the NIC's TSO engine does. */
    uint8_t seg[SLOT_LEN];
    for (size_t done = 0; done < len;) {
        size_t n = len - done < mss ? len - done : mss;
        size_t shl = build_hdr(w, seg, from_peer, seq + (uint32_t)done, PEER_ISS,
                               TLSNIC_TCP_ACK | (done + n == len ? TLSNIC_TCP_PSH : 0), NULL,
                               0, n);
        memcpy(seg + shl, w->frame + hl + done, n);
        struct tlsnic_frame sf;
        TLSNIC_ENSURE(tlsnic_frame_parse(seg, shl + n, &sf) == TLSNIC_FRAME_TCP, EIO);
        tlsnic_tcp_csum_fill(seg, &sf);
        TLSNIC_TRY(link_put(w, seg, shl + n));
        done += n;
    }
    return 0;
}

/* Link slots one frame of len bytes can take (duplicates included). */
static size_t slots_for(const tlsnic_simwire *w, size_t len)
{
    return 2 * ((len + w->cfg.mss - 1) / w->cfg.mss + 1);
}

static int resend_skb(tlsnic_simwire *w, const struct skb *s)
{
    if (w->link_n + slots_for(w, s->len) > LINK_SLOTS)
        return -ENOBUFS;
    w->st.rexmits++;
    if (w->cfg.tso_max && s->len > w->cfg.mss && chance(w, w->cfg.split_rexmit_pm)) {
        for (size_t d = 0; d < s->len; d += w->cfg.mss) {
            size_t n = s->len - d < w->cfg.mss ? s->len - d : w->cfg.mss;
            TLSNIC_TRY(xmit(w, s->off + d, n, 0));
        }
        return 0;
    }
    return xmit(w, s->off, s->len, w->cfg.tso_max != 0);
}

static int do_rexmit(tlsnic_simwire *w)
{
    for (size_t i = 0; i < w->skb_cnt; i++) {
        struct skb *s = &w->skbs[(w->skb_head + i) % w->skb_cap];
        if (w->cfg.rexmit == TLSNIC_REXMIT_SELECTIVE && s->sacked)
            continue;
        struct skb part = *s;
        if (part.off < w->una) { /* partly acknowledged: trim the head */
            part.len -= (uint32_t)(w->una - part.off);
            part.off = w->una;
        }
        int rc = resend_skb(w, &part);
        if (rc == -ENOBUFS)
            break;
        TLSNIC_TRY(rc);
    }
    return 0;
}

static int send_new(tlsnic_simwire *w)
{
    size_t avail;
    (void)tlsnic_simhost_stream(w->host, &avail);
    size_t fmax = w->cfg.tso_max ? w->cfg.tso_max : w->cfg.mss;
    for (uint32_t guard = 0; guard < LINK_SLOTS; guard++) {
        size_t limit = w->una + w->cfg.window < avail ? w->una + w->cfg.window : avail;
        if (w->nxt >= limit || w->skb_cnt == w->skb_cap)
            break;
        size_t len = limit - w->nxt < fmax ? limit - w->nxt : fmax;
        if (w->link_n + slots_for(w, len) > LINK_SLOTS)
            break;
        struct skb *s = &w->skbs[(w->skb_head + w->skb_cnt++) % w->skb_cap];
        s->off = w->nxt;
        s->len = (uint32_t)len;
        s->sacked = 0;
        w->nxt += len;
        TLSNIC_TRY(xmit(w, s->off, len, w->cfg.tso_max != 0));
    }
    return 0;
}

int tlsnic_simwire_step(tlsnic_simwire *w)
{
    size_t una0 = w->una;
    w->st.rounds++;
    if (w->need_rexmit) {
        w->need_rexmit = 0;
        TLSNIC_TRY(do_rexmit(w));
    }
    if (w->skb_cnt && chance(w, w->cfg.spurious_pm)) {
        struct skb s = w->skbs[(w->skb_head + rnd(w) % w->skb_cnt) % w->skb_cap];
        if (s.off >= w->una) {
            int rc = resend_skb(w, &s);
            if (rc < 0 && rc != -ENOBUFS)
                return rc;
        }
    }
    TLSNIC_TRY(send_new(w));
    deliver(w);
    if (w->una == una0 && w->una < w->nxt)
        w->need_rexmit = 1;
    tlsnic_simhost_release(w->host, w->una);
    size_t avail;
    (void)tlsnic_simhost_stream(w->host, &avail);
    return w->una == avail ? 1 : 0;
}

int tlsnic_simwire_run(tlsnic_simwire *w, uint32_t max_rounds)
{
    for (uint32_t i = 0; i < max_rounds; i++) {
        int rc = tlsnic_simwire_step(w);
        if (rc != 0)
            return rc < 0 ? rc : 0;
    }
    return -ETIMEDOUT;
}

int tlsnic_simwire_retransmit(tlsnic_simwire *w, size_t off, size_t len)
{
    TLSNIC_ENSURE(w && len > 0 && off + len <= w->nxt, EINVAL);
    TLSNIC_ENSURE(w->link_n + slots_for(w, len) <= LINK_SLOTS, ENOBUFS);
    w->st.rexmits++;
    return xmit(w, off, len, w->cfg.tso_max != 0);
}

/* ------------------------------------------------------------------------------------------ */

static int nic_tx(void *priv, struct tlsnic_pkt *pkt)
{
    return tlsnic_nic_tx(priv, pkt);
}

static int nic_rx(void *priv, const uint8_t *frame, size_t len)
{
    return tlsnic_nic_rx(priv, frame, len);
}

static int nic_rx_pkt(void *priv, struct tlsnic_pkt *pkt)
{
    return tlsnic_nic_rx_pkt(priv, pkt);
}

struct tlsnic_wire_hook tlsnic_wire_hook_nic(tlsnic_nic *nic)
{
    struct tlsnic_wire_hook h = {.tx = nic_tx, .rx = nic_rx, .priv = nic, .rx_pkt = nic_rx_pkt};
    return h;
}

int tlsnic_simwire_new(tlsnic_simwire **out, const struct tlsnic_simwire_config *cfg,
                       tlsnic_simhost *h, struct tlsnic_wire_hook hook)
{
    TLSNIC_ENSURE(out && cfg && h && cfg->max_stream > 0, EINVAL);
    tlsnic_simwire *w = calloc(1, sizeof(*w));
    TLSNIC_ENSURE(w, ENOMEM);
    w->cfg = *cfg;
    if (!w->cfg.family)
        w->cfg.family = AF_INET;
    if (!w->cfg.mss)
        w->cfg.mss = 1400;
    if (!w->cfg.window)
        w->cfg.window = 65536;
    int bad = (w->cfg.family != AF_INET && w->cfg.family != AF_INET6) ||
              w->cfg.mss > MAX_MSS || w->cfg.tso_max > MAX_TSO ||
              (w->cfg.tso_max && w->cfg.tso_max < w->cfg.mss);
    if (bad) {
        free(w);
        return -EINVAL;
    }
    w->host = h;
    w->hook = hook;
    w->rng = cfg->seed;
    w->flow.family = w->cfg.family;
    w->flow.local_port = 40000;
    w->flow.remote_port = 443;
    if (w->cfg.family == AF_INET) {
        const uint8_t l[4] = {198, 18, 0, 1}, r[4] = {198, 18, 0, 2};
        memcpy(w->flow.local, l, 4);
        memcpy(w->flow.remote, r, 4);
    } else {
        const uint8_t l[16] = {0x20, 0x01, 0x0d, 0xb8, [15] = 1};
        const uint8_t r[16] = {0x20, 0x01, 0x0d, 0xb8, [15] = 2};
        memcpy(w->flow.local, l, 16);
        memcpy(w->flow.remote, r, 16);
    }
    w->skb_cap = w->cfg.window / w->cfg.mss + 2;
    w->skbs = calloc(w->skb_cap, sizeof(*w->skbs));
    w->link = calloc(LINK_SLOTS, sizeof(*w->link));
    w->rbuf = calloc(1, w->cfg.max_stream);
    w->have = calloc(1, w->cfg.max_stream);
    if (!w->skbs || !w->link || !w->rbuf || !w->have) {
        tlsnic_simwire_free(w);
        return -ENOMEM;
    }
    *out = w;
    return 0;
}

void tlsnic_simwire_free(tlsnic_simwire *w)
{
    if (!w)
        return;
    free(w->skbs);
    free(w->link);
    free(w->rbuf);
    free(w->have);
    free(w);
}

void tlsnic_simwire_flow(const tlsnic_simwire *w, struct tlsnic_flow *flow)
{
    *flow = w->flow;
}

void tlsnic_simwire_set_hook(tlsnic_simwire *w, struct tlsnic_wire_hook hook)
{
    w->hook = hook;
}

void tlsnic_simwire_set_tamper(tlsnic_simwire *w,
                               int (*fn)(void *priv, uint8_t *frame, size_t len), void *priv)
{
    w->tamper = fn;
    w->tamper_priv = priv;
}

void tlsnic_simwire_set_observer(tlsnic_simwire *w,
                                 void (*fn)(void *priv, const uint8_t *frame, size_t len),
                                 void *priv)
{
    w->observer = fn;
    w->observer_priv = priv;
}

const uint8_t *tlsnic_simwire_received(const tlsnic_simwire *w, size_t *len)
{
    *len = w->rcv_nxt;
    return w->rbuf;
}

size_t tlsnic_simwire_acked(const tlsnic_simwire *w)
{
    return w->una;
}

void tlsnic_simwire_stats(const tlsnic_simwire *w, struct tlsnic_simwire_stats *out)
{
    *out = w->st;
}
