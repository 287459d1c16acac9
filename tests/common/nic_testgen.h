/*
 * Test support for the device model: crypto_info from a seed, L3 frame building, and a
 * stream checker that opens every record with the record layer. Header-only (static).
 */
#ifndef TLSNIC_TEST_NIC_TESTGEN_H
#define TLSNIC_TEST_NIC_TESTGEN_H

#include <linux/tls.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "tlsnic/devops.h"
#include "tlsnic/frame.h"
#include "tlsnic/record.h"

static inline uint64_t tg_rnd(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static inline void tg_fill(uint64_t *s, void *p, size_t n)
{
    uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        b[i] = (uint8_t)tg_rnd(s);
}

/* The six combinations every data-path test runs. */
struct tg_combo {
    uint16_t version, cipher;
    const char *name;
};
static const struct tg_combo tg_combos[6] = {
    {TLS_1_2_VERSION, TLS_CIPHER_AES_GCM_128, "TLS1.2 AES-128-GCM"},
    {TLS_1_2_VERSION, TLS_CIPHER_AES_GCM_256, "TLS1.2 AES-256-GCM"},
    {TLS_1_2_VERSION, TLS_CIPHER_CHACHA20_POLY1305, "TLS1.2 ChaCha20-Poly1305"},
    {TLS_1_3_VERSION, TLS_CIPHER_AES_GCM_128, "TLS1.3 AES-128-GCM"},
    {TLS_1_3_VERSION, TLS_CIPHER_AES_GCM_256, "TLS1.3 AES-256-GCM"},
    {TLS_1_3_VERSION, TLS_CIPHER_CHACHA20_POLY1305, "TLS1.3 ChaCha20-Poly1305"},
};

/* Random keys for (version, cipher); record sequence numbers start at rec_seq. */
static inline size_t tg_crypto_info(union tlsnic_crypto_info *ci, uint16_t version,
                                    uint16_t cipher, uint64_t rec_seq, uint64_t seed)
{
    memset(ci, 0, sizeof(*ci));
    ci->info.version = version;
    ci->info.cipher_type = cipher;
    uint8_t seq[8];
    for (int i = 0; i < 8; i++)
        seq[i] = (uint8_t)(rec_seq >> (56 - 8 * i));
    switch (cipher) {
    case TLS_CIPHER_AES_GCM_128:
        tg_fill(&seed, ci->aes_gcm_128.key, sizeof(ci->aes_gcm_128.key));
        tg_fill(&seed, ci->aes_gcm_128.iv, sizeof(ci->aes_gcm_128.iv));
        tg_fill(&seed, ci->aes_gcm_128.salt, sizeof(ci->aes_gcm_128.salt));
        memcpy(ci->aes_gcm_128.rec_seq, seq, 8);
        return sizeof(ci->aes_gcm_128);
    case TLS_CIPHER_AES_GCM_256:
        tg_fill(&seed, ci->aes_gcm_256.key, sizeof(ci->aes_gcm_256.key));
        tg_fill(&seed, ci->aes_gcm_256.iv, sizeof(ci->aes_gcm_256.iv));
        tg_fill(&seed, ci->aes_gcm_256.salt, sizeof(ci->aes_gcm_256.salt));
        memcpy(ci->aes_gcm_256.rec_seq, seq, 8);
        return sizeof(ci->aes_gcm_256);
    default:
        tg_fill(&seed, ci->chacha20_poly1305.key, sizeof(ci->chacha20_poly1305.key));
        tg_fill(&seed, ci->chacha20_poly1305.iv, sizeof(ci->chacha20_poly1305.iv));
        memcpy(ci->chacha20_poly1305.rec_seq, seq, 8);
        return sizeof(ci->chacha20_poly1305);
    }
}

static inline struct tlsnic_flow tg_flow(int family)
{
    struct tlsnic_flow f;
    memset(&f, 0, sizeof(f));
    f.family = (uint8_t)family;
    f.local_port = 40000;
    f.remote_port = 443;
    if (family == AF_INET) {
        const uint8_t l[4] = {198, 18, 0, 1}, r[4] = {198, 18, 0, 2};
        memcpy(f.local, l, 4);
        memcpy(f.remote, r, 4);
    } else {
        f.local[0] = 0x20, f.local[1] = 0x01, f.local[2] = 0x0d, f.local[3] = 0xb8;
        memcpy(f.remote, f.local, 16);
        f.local[15] = 1;
        f.remote[15] = 2;
    }
    return f;
}

/*
 * Builds an L3 frame host -> peer (from_peer = 0) or back, with `flags`, seq/ack and
 * payload; a valid TCP checksum. Returns its length (0 if cap is too small).
 */
static inline size_t tg_frame(uint8_t *buf, size_t cap, const struct tlsnic_flow *fl,
                              int from_peer, uint32_t seq, uint32_t ack, uint8_t flags,
                              const uint8_t *payload, size_t plen)
{
    size_t ihl = fl->family == AF_INET ? 20 : 40;
    size_t tot = ihl + 20 + plen;
    if (tot > cap || tot > 65535)
        return 0;
    memset(buf, 0, ihl + 20);
    const uint8_t *src = from_peer ? fl->remote : fl->local;
    const uint8_t *dst = from_peer ? fl->local : fl->remote;
    uint16_t sp = from_peer ? fl->remote_port : fl->local_port;
    uint16_t dp = from_peer ? fl->local_port : fl->remote_port;
    if (fl->family == AF_INET) {
        buf[0] = 0x45;
        buf[2] = (uint8_t)(tot >> 8), buf[3] = (uint8_t)tot;
        buf[6] = 0x40;
        buf[8] = 64, buf[9] = 6;
        memcpy(buf + 12, src, 4);
        memcpy(buf + 16, dst, 4);
    } else {
        buf[0] = 0x60;
        buf[4] = (uint8_t)((tot - 40) >> 8), buf[5] = (uint8_t)(tot - 40);
        buf[6] = 6, buf[7] = 64;
        memcpy(buf + 8, src, 16);
        memcpy(buf + 24, dst, 16);
    }
    uint8_t *t = buf + ihl;
    t[0] = (uint8_t)(sp >> 8), t[1] = (uint8_t)sp;
    t[2] = (uint8_t)(dp >> 8), t[3] = (uint8_t)dp;
    for (int i = 0; i < 4; i++) {
        t[4 + i] = (uint8_t)(seq >> (24 - 8 * i));
        t[8 + i] = (uint8_t)(ack >> (24 - 8 * i));
    }
    t[12] = 5 << 4;
    t[13] = flags;
    t[14] = 0xff, t[15] = 0xff;
    if (plen)
        memcpy(t + 20, payload, plen);
    struct tlsnic_frame fr;
    if (tlsnic_frame_parse(buf, tot, &fr) == TLSNIC_FRAME_TCP)
        tlsnic_tcp_csum_fill(buf, &fr);
    return tot;
}

/*
 * Opens every record of stream[0..len) with a key made from ci and checks that record i
 * carries exactly the plaintext framed at host[rec_off_i ..] (the host's framed stream,
 * same layout). Returns the number of records checked, or -1 (and prints why).
 */
static inline long tg_check_stream(const union tlsnic_crypto_info *ci, size_t ci_len,
                                   const uint8_t *stream, size_t len, const uint8_t *host,
                                   size_t host_len, uint64_t seed)
{
    tlsnic_rec_key *k = NULL;
    if (tlsnic_rec_key_new(&k, ci, ci_len) < 0)
        return -1;
    static uint8_t rec[TLSNIC_REC_MAX_WIRE_LEN + 64];
    size_t off = 0;
    long n = 0;
    size_t nl = tlsnic_rec_key_explicit_nonce_len(k);
    int v13 = tlsnic_rec_key_version(k) == TLS_1_3_VERSION;
    while (off < len) {
        if (len - off < TLSNIC_REC_HDR_LEN || off + TLSNIC_REC_HDR_LEN > host_len)
            goto bad;
        size_t rl = (size_t)TLSNIC_REC_HDR_LEN + (stream[off + 3] << 8 | stream[off + 4]);
        if (rl > sizeof(rec) || rl > len - off || rl > host_len - off)
            goto bad;
        memcpy(rec, stream + off, rl);
        uint8_t type, *content;
        size_t clen;
        int rc = tlsnic_rec_open(k, rec, rl, &type, &content, &clen);
        if (rc < 0) {
            fprintf(stderr, "record %ld at %zu: open failed %d (seed %llu)\n", n, off, rc,
                    (unsigned long long)seed);
            tlsnic_rec_key_free(k);
            return -1;
        }
        const uint8_t *want = host + off + TLSNIC_REC_HDR_LEN + nl;
        size_t wlen = rl - TLSNIC_REC_HDR_LEN - nl - TLSNIC_REC_TAG_LEN - (v13 ? 1 : 0);
        uint8_t wtype = v13 ? want[wlen] : host[off];
        if (clen != wlen || type != wtype || memcmp(content, want, clen) != 0) {
            fprintf(stderr, "record %ld at %zu: content differs (seed %llu)\n", n, off,
                    (unsigned long long)seed);
            tlsnic_rec_key_free(k);
            return -1;
        }
        off += rl;
        n++;
    }
    tlsnic_rec_key_free(k);
    return n;
bad:
    fprintf(stderr, "stream malformed at %zu (seed %llu)\n", off, (unsigned long long)seed);
    tlsnic_rec_key_free(k);
    return -1;
}

#endif
