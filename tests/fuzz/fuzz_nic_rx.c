/*
 * Fuzz target: the device's RX path. A peer's sealed records are cut into segments the
 * input chooses (any offset, length, order, repetition, with bits flipped or not), mixed
 * with garbage frames, host ACKs, resync answers and hints that may lie, rekeys, eviction
 * and consumed_seq writes. Whatever happens:
 *   - tlsnic_nic_rx_pkt returns a verdict and never touches memory outside the frame;
 *   - decided once: an unchanged copy of stream bytes comes out exactly as the first copy
 *     did (until the host's consumed_seq lets the device forget, or a rekey);
 *   - a host reading the first copies (rx_status restore / verify, tests/common/rxhost.h)
 *     gets an error or the peer's plaintext, never a wrong byte.
 * Input: byte 0 = options (bit 0 IPv6, bit 1 no placing, bit 2 16 status entries, bit 3
 * the flow is added later: segments before the add pass a device without the flow, and
 * decided once holds across the add; bits 4-7 cipher/version); then operations: a byte
 * op and its arguments.
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "nic_testgen.h"
#include "rxhost.h"
#include "tlsnic/nic.h"
#include "tlsnic/rx_status.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
size_t LLVMFuzzerSeedInput(size_t i, uint8_t *buf, size_t cap);

#define ISS 0xfffff800u
#define STREAM_CAP 8192
#define OPS_MAX 96

struct cur {
    const uint8_t *p;
    size_t left;
};

static unsigned get8(struct cur *c)
{
    if (!c->left)
        return 0;
    c->left--;
    return *c->p++;
}

static unsigned get16(struct cur *c)
{
    unsigned hi = get8(c);
    return hi << 8 | get8(c);
}

static size_t g_len[16];

static size_t len_of(size_t i)
{
    return i < 16 ? g_len[i] : 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    struct cur in = {data, size};
    uint8_t opt = (uint8_t)get8(&in);
    const struct tg_combo *c = &tg_combos[(opt >> 4) % 6];
    struct tlsnic_nic_config cfg;
    tlsnic_nic_config_default(&cfg);
    cfg.max_flows = 4;
    cfg.rx_no_guess = (opt >> 1) & 1;
    cfg.rx_entries = (opt >> 2) & 1 ? 16 : 64;
    tlsnic_nic *nic;
    struct tlsnic_rxs *rxs;
    if (tlsnic_nic_new(&nic, &cfg) != 0 || tlsnic_rxs_new(&rxs, 64) != 0)
        abort();
    union tlsnic_crypto_info ci;
    size_t cl = tg_crypto_info(&ci, c->version, c->cipher, 3, 42);
    tlsnic_rec_key *peer, *hk;
    if (tlsnic_rec_key_new(&peer, &ci, cl) || tlsnic_rec_key_new(&hk, &ci, cl))
        abort();
    static uint8_t stream[STREAM_CAP], out[STREAM_CAP], have[STREAM_CAP];
    size_t len = 0;
    for (size_t r = 0; r < 6; r++) {
        uint8_t content[1200];
        g_len[r] = 90 + 211 * r;
        for (size_t j = 0; j < g_len[r]; j++)
            content[j] = rxh_byte(r, j);
        size_t l;
        if (tlsnic_rec_seal(peer, TLSNIC_CT_APPLICATION_DATA, content, g_len[r], stream + len,
                            STREAM_CAP - len, &l))
            abort();
        len += l;
    }
    memset(have, 0, sizeof(have));
    struct tlsnic_flow fl = tg_flow(opt & 1 ? AF_INET6 : AF_INET);
    struct tlsnic_rec_store st = {.rx_status = rxs};
    int added = !((opt >> 3) & 1);
    if (added && tlsnic_nic_add(nic, &fl, TLSNIC_DIR_RX, &ci, cl, ISS, &st) != 0)
        abort();
    int forgot = 0; /* consumed_seq written, or a rekey: later copies may differ */
    static uint8_t frame[2048];
    for (int op_i = 0; op_i < OPS_MAX && in.left; op_i++) {
        unsigned op = get8(&in);
        switch (op % 8) {
        case 0: case 1: case 2: case 3: { /* a segment of the stream */
            size_t off = get16(&in) % len, n = get16(&in) % 1500 + 1;
            if (n > len - off)
                n = len - off;
            uint8_t seg[1500];
            memcpy(seg, stream + off, n);
            int flipped = op & 0x10;
            if (flipped)
                seg[get16(&in) % n] ^= (uint8_t)(1u << (op >> 5));
            size_t flen = tg_frame(frame, sizeof(frame), &fl, 1, ISS + (uint32_t)off, 1,
                                   TLSNIC_TCP_ACK, seg, n);
            struct tlsnic_pkt pkt = {.data = frame, .len = flen, .csum = TLSNIC_CSUM_FULL};
            int v = tlsnic_nic_rx_pkt(nic, &pkt);
            if (v != TLSNIC_PASS && v != TLSNIC_MODIFIED && v != TLSNIC_DROP)
                abort();
            if (v == TLSNIC_DROP || pkt.len != flen)
                break;
            size_t hl = flen - n;
            for (size_t i = 0; i < n; i++) {
                if (flipped)
                    continue;
                if (have[off + i] == 1 && !forgot && out[off + i] != frame[hl + i])
                    abort(); /* decided once */
                if (!have[off + i]) {
                    out[off + i] = frame[hl + i];
                    have[off + i] = 1;
                }
            }
            if (flipped) { /* a flipped copy the host keeps (it had nothing there) */
                for (size_t i = 0; i < n; i++)
                    if (!have[off + i]) {
                        out[off + i] = frame[hl + i];
                        have[off + i] = 2;
                    }
            }
            break;
        }
        case 4: { /* a garbage frame */
            size_t n = get8(&in) + 1;
            if (n > in.left)
                n = in.left;
            uint8_t *f = malloc(n ? n : 1); /* exact size: overreads are caught */
            if (!f)
                abort();
            memcpy(f, in.p, n);
            in.p += n;
            in.left -= n;
            struct tlsnic_pkt pkt = {.data = f, .len = n, .csum = op & 0x10 ? TLSNIC_CSUM_OFFLOAD
                                                                              : TLSNIC_CSUM_FULL};
            int v = tlsnic_nic_rx_pkt(nic, &pkt);
            if (v < 0 || v > TLSNIC_DROP)
                abort();
            free(f);
            break;
        }
        case 5: { /* an answer or a hint, true or not */
            uint32_t seq = ISS + (uint32_t)(get16(&in) % (len + 64));
            uint64_t rs = op & 0x10 ? TLSNIC_RESYNC_REJECT : get8(&in) % 12;
            tlsnic_nic_resync(nic, &fl, TLSNIC_DIR_RX, seq, rs);
            break;
        }
        case 6: { /* the host's ACK; or a rekey (TLS 1.3), an eviction; or the late add */
            if (!added && (op & 0x10)) {
                /* What the host says its TCP already holds: up to the first byte it lacks
                 * (the truth), or less (the device's own memory must cover the rest). */
                size_t held = 0;
                while (held < len && have[held] == 1)
                    held++;
                tlsnic_rxs_set_host_received(rxs, (uint32_t)(op & 0x20 ? held : held / 2));
                if (tlsnic_nic_add(nic, &fl, TLSNIC_DIR_RX, &ci, cl, ISS, &st) != 0)
                    abort();
                added = 1;
                break;
            }
            if (op & 0x10) {
                if (op & 0x20) {
                    tlsnic_nic_evict(nic, &fl, TLSNIC_DIR_RX);
                } else {
                    union tlsnic_crypto_info ci2;
                    size_t cl2 = tg_crypto_info(&ci2, c->version, c->cipher, 0, op);
                    if (tlsnic_nic_rekey(nic, &fl, TLSNIC_DIR_RX, &ci2, cl2,
                                         ISS + (uint32_t)(get16(&in) % len)) == 0)
                        forgot = 1;
                }
                break;
            }
            size_t flen = tg_frame(frame, sizeof(frame), &fl, 0, 7, ISS + (uint32_t)(get16(&in) % (len + 1)),
                                   TLSNIC_TCP_ACK, NULL, 0);
            struct tlsnic_pkt pkt = {.data = frame, .len = flen, .csum = TLSNIC_CSUM_FULL};
            tlsnic_nic_tx(nic, &pkt);
            break;
        }
        default: { /* the host's consumed_seq */
            struct tlsnic_rxs_reader rd;
            if (tlsnic_rxs_reader_init(&rd, rxs) != 0)
                abort();
            tlsnic_rxs_consume(&rd, ISS + (uint32_t)(get16(&in) % (len + 1)));
            tlsnic_rxs_reader_cleanup(&rd);
            forgot = 1;
            break;
        }
        }
    }
    /* The host reads what its TCP kept: an error or the plaintext, never a wrong byte. */
    size_t avail = 0;
    while (avail < len && have[avail])
        avail++;
    if (!forgot) {
        static struct rxhost h;
        memset(&h, 0, sizeof(h));
        h.key = hk;
        h.rxs = rxs;
        h.start_seq = ISS;
        h.content_len = len_of;
        if (rxh_init(&h) != 0)
            abort();
        int rc = rxh_read(&h, out, avail);
        if (rc == -EILSEQ)
            abort();
        rxh_fini(&h);
    }
    tlsnic_nic_free(nic);
    tlsnic_rxs_free(rxs);
    tlsnic_rec_key_free(peer);
    tlsnic_rec_key_free(hk);
    return 0;
}

/* Well-formed inputs to mutate: the stream in order in pieces, with a repeat and a gap. */
size_t LLVMFuzzerSeedInput(size_t i, uint8_t *buf, size_t cap)
{
    if (i >= 6 || cap < 256)
        return 0;
    size_t n = 0;
    buf[n++] = (uint8_t)(i << 4);
    for (unsigned off = 0; off < 5000 && n + 5 <= cap; off += 400) {
        if (i % 2 && off == 1200)
            continue; /* a gap */
        buf[n++] = 0;
        buf[n++] = (uint8_t)(off >> 8);
        buf[n++] = (uint8_t)off;
        buf[n++] = 399 >> 8;
        buf[n++] = 399 & 0xff;
    }
    return n;
}
