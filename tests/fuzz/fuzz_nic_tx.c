/*
 * Fuzz target: frames from the host (and ACKs from the peer) through the device's packet
 * path. Whatever the bytes, tlsnic_nic_tx returns a verdict and never touches memory
 * outside the frame; a frame the device rewrites keeps its length; the canary planted in
 * the host's records, wherever a frame of the flow carries it past the flow's start, never
 * comes out of the device unchanged.
 * Input: byte 0 = options (bit 0 IPv6 flow, bit 1 integrity, bit 2 checkpoints off,
 * bit 3 host store off, bits 4-7 cipher/version); then frames: u16 length (bit 15 = frame
 * from the peer), that many bytes.
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "nic_testgen.h"
#include "tlsnic/nic.h"
#include "tlsnic/wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
size_t LLVMFuzzerSeedInput(size_t i, uint8_t *buf, size_t cap);

#define ISS 1000u

static tlsnic_simhost *make_host(uint8_t opt, const struct tg_combo *c)
{
    tlsnic_simhost *h;
    if (tlsnic_simhost_new(&h, c->version, c->cipher, 1, ISS, 8192) != 0)
        abort();
    uint8_t content[600];
    memset(content, 'x', sizeof(content));
    memcpy(content + 100, "PLAINTEXT-CANARY", 16);
    for (int r = 0; r < 4; r++)
        if (tlsnic_simhost_write(h, TLSNIC_CT_APPLICATION_DATA, content, 150 * (size_t)r + 117))
            abort();
    return h;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t opt = data[0];
    const struct tg_combo *c = &tg_combos[(opt >> 4) % 6];
    struct tlsnic_nic_config cfg;
    tlsnic_nic_config_default(&cfg);
    cfg.max_flows = 4;
    cfg.rec_checkpoints = 8;
    cfg.int_ranges = 8;
    cfg.integrity = (opt >> 1) & 1;
    cfg.checkpoints_off = (opt >> 2) & 1;
    tlsnic_nic *nic;
    if (tlsnic_nic_new(&nic, &cfg) != 0)
        abort();
    tlsnic_simhost *h = make_host(opt, c);
    tlsnic_simhost_store_disable(h, (opt >> 3) & 1);
    union tlsnic_crypto_info ci;
    size_t cl = tg_crypto_info(&ci, c->version, c->cipher, 1, 42);
    struct tlsnic_flow fl = tg_flow(opt & 1 ? AF_INET6 : AF_INET);
    struct tlsnic_rec_store st = tlsnic_simhost_store(h);
    if (tlsnic_nic_add(nic, &fl, TLSNIC_DIR_TX, &ci, cl, ISS, &st) != 0)
        abort();
    static uint8_t orig[1 << 16];
    size_t off = 1;
    for (int guard = 0; guard < 64 && size - off >= 2; guard++) {
        size_t len = (size_t)(data[off] << 8 | data[off + 1]);
        int from_peer = len >> 15;
        len &= 0x7fff;
        off += 2;
        if (len > size - off)
            len = size - off;
        uint8_t *frame = malloc(len ? len : 1); /* exact size: overreads are caught */
        if (!frame)
            abort();
        memcpy(frame, data + off, len);
        off += len;
        if (from_peer) {
            if (tlsnic_nic_rx(nic, frame, len) != TLSNIC_PASS)
                abort();
        } else {
            struct tlsnic_pkt pkt = {.data = frame, .len = len,
                                     .gso_size = (uint16_t)(len > 2000 ? 1400 : 0)};
            memcpy(orig, frame, len);
            int v = tlsnic_nic_tx(nic, &pkt);
            if (v != TLSNIC_PASS && v != TLSNIC_MODIFIED && v != TLSNIC_DROP)
                abort();
            /*
             * The host's plaintext is the canary where the frame carried it: there it must
             * not come out unchanged. (Not "no canary in the output": the fuzzer learns the
             * ciphertext of the canary from the comparisons below and feeds it in, and the
             * device, rightly, turns it into the canary.)
             */
            struct tlsnic_frame fr;
            if (v != TLSNIC_DROP && tlsnic_frame_parse(frame, len, &fr) == TLSNIC_FRAME_TCP &&
                fr.sport == fl.local_port && fr.dport == fl.remote_port &&
                memcmp(fr.src, fl.local, fl.family == AF_INET ? 4 : 16) == 0 &&
                memcmp(fr.dst, fl.remote, fl.family == AF_INET ? 4 : 16) == 0 &&
                (int32_t)(fr.seq - ISS) >= 0 && (int32_t)(fr.seq - ISS) < (1 << 20)) {
                const uint8_t *in = orig + fr.payload_off, *out = frame + fr.payload_off;
                for (const uint8_t *at = in; (at = memmem(at, fr.payload_len - (size_t)(at - in),
                                                         "PLAINTEXT-CANARY", 16)) != NULL; at++)
                    if (memcmp(out + (at - in), at, 16) == 0)
                        abort(); /* plaintext of an offloaded record left the device */
            }
        }
        free(frame);
    }
    tlsnic_nic_free(nic);
    tlsnic_simhost_free(h);
    return 0;
}

/* Well-formed inputs: the flow's stream cut into a few segments, plus an ACK. */
size_t LLVMFuzzerSeedInput(size_t i, uint8_t *buf, size_t cap)
{
    if (i >= 12)
        return 0;
    uint8_t opt = (uint8_t)((i % 6) << 4 | (i >= 6 ? 3 : 0));
    const struct tg_combo *c = &tg_combos[(opt >> 4) % 6];
    tlsnic_simhost *h = make_host(opt, c);
    size_t slen;
    uint8_t *s = tlsnic_simhost_stream(h, &slen);
    struct tlsnic_flow fl = tg_flow(opt & 1 ? AF_INET6 : AF_INET);
    size_t len = 0;
    buf[len++] = opt;
    const size_t cuts[][2] = {{0, 300}, {600, 500}, {300, 300}, {0, 300}};
    for (int k = 0; k < 4; k++) {
        uint8_t f[1600];
        size_t fl_len = tg_frame(f, sizeof(f), &fl, 0, ISS + (uint32_t)cuts[k][0], 1,
                                 TLSNIC_TCP_ACK, s + cuts[k][0], cuts[k][1]);
        if (len + 2 + fl_len > cap)
            break;
        buf[len++] = (uint8_t)(fl_len >> 8);
        buf[len++] = (uint8_t)fl_len;
        memcpy(buf + len, f, fl_len);
        len += fl_len;
    }
    uint8_t a[100];
    size_t al = tg_frame(a, sizeof(a), &fl, 1, 5, ISS + 300, TLSNIC_TCP_ACK, NULL, 0);
    if (len + 2 + al <= cap) {
        buf[len++] = (uint8_t)(0x80 | al >> 8);
        buf[len++] = (uint8_t)al;
        memcpy(buf + len, a, al);
        len += al;
    }
    (void)slen;
    tlsnic_simhost_free(h);
    return len;
}
