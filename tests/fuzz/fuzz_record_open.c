/*
 * Fuzz target: bytes from the network through record parsing and opening, for every
 * version x cipher. Oracles, for every record of the input:
 *   - tlsnic_rec_parse_header / tlsnic_rec_open return 0 or a documented errno and never
 *     touch memory outside the record (an exactly-sized copy: ASan sees overreads);
 *   - a record opens only with the right key: one that opens does not open under a key
 *     that differs in one bit, nor under the right key at the next sequence number;
 *   - the three ways to open agree: the whole record, the streaming form fed in pieces
 *     (the device's way), and the positional keystream at an offset give the same verdict
 *     and the same plaintext;
 *   - an opened record re-encodes to the same bytes: sealing its content again at its
 *     sequence number gives the input back, unless the input had TLS 1.3 padding or a
 *     TLS 1.2 explicit nonce other than the one tlsnic writes (both legal for a peer).
 * Input: byte 0 picks the combination (bits 0-2) and where the streamed record is cut
 * (bits 3-7); the rest is a stream of records.
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tlsnic/record.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
size_t LLVMFuzzerSeedInput(size_t i, uint8_t *buf, size_t cap);

static const uint16_t versions[2] = {TLS_1_2_VERSION, TLS_1_3_VERSION};
static const uint16_t ciphers[3] = {TLS_CIPHER_AES_GCM_128, TLS_CIPHER_AES_GCM_256,
                                    TLS_CIPHER_CHACHA20_POLY1305};

/* The key of combination `selector` (0-5), starting at rec_seq, with one key bit flipped
 * if flip (a wrong key). */
static tlsnic_rec_key *make_key(uint8_t selector, uint64_t rec_seq, int flip)
{
    union tlsnic_crypto_info ci;
    memset(&ci, 0x17, sizeof(ci));
    ci.info.version = versions[selector % 2];
    ci.info.cipher_type = ciphers[(selector / 2) % 3];
    uint8_t seq[8];
    for (int i = 0; i < 8; i++)
        seq[i] = (uint8_t)(rec_seq >> (56 - 8 * i));
    uint8_t *key_bytes;
    switch (ci.info.cipher_type) {
    case TLS_CIPHER_AES_GCM_128:
        memcpy(ci.aes_gcm_128.rec_seq, seq, 8);
        key_bytes = ci.aes_gcm_128.key;
        break;
    case TLS_CIPHER_AES_GCM_256:
        memcpy(ci.aes_gcm_256.rec_seq, seq, 8);
        key_bytes = ci.aes_gcm_256.key;
        break;
    default:
        memcpy(ci.chacha20_poly1305.rec_seq, seq, 8);
        key_bytes = ci.chacha20_poly1305.key;
        break;
    }
    if (flip)
        key_bytes[rec_seq % 16] ^= (uint8_t)(1u << (rec_seq % 8));
    tlsnic_rec_key *key = NULL;
    if (tlsnic_rec_key_new(&key, &ci, tlsnic_crypto_info_size(ci.info.cipher_type)) != 0)
        abort();
    return key;
}

static int is_documented(int rc)
{
    return rc == 0 || rc == -EINVAL || rc == -EMSGSIZE || rc == -EBADMSG || rc == -EOVERFLOW;
}

/* Well-formed inputs to mutate: a few valid records for each combination. */
size_t LLVMFuzzerSeedInput(size_t i, uint8_t *buf, size_t cap)
{
    if (i >= 6 || cap < 1 + 3 * (64 + 40))
        return 0;
    buf[0] = (uint8_t)(i | (i << 4));
    tlsnic_rec_key *key = make_key((uint8_t)i, 0, 0);
    size_t len = 1;
    static const uint8_t content[64] = "tlsnic fuzz seed content, any bytes will do here.";
    static const uint8_t types[3] = {TLSNIC_CT_APPLICATION_DATA, TLSNIC_CT_HANDSHAKE,
                                     TLSNIC_CT_ALERT};
    for (int r = 0; r < 3; r++) {
        size_t rec_len;
        if (tlsnic_rec_seal(key, types[r], content, 20 * (size_t)r + 1, buf + len, cap - len,
                            &rec_len) != 0)
            abort();
        len += rec_len;
    }
    tlsnic_rec_key_free(key);
    return len;
}

/* Opens rec (a copy: opening is in place) with a fresh key; 0 if it opened. */
static int opens_with(uint8_t selector, uint64_t rec_seq, int flip, const uint8_t *rec,
                      size_t len)
{
    uint8_t *copy = malloc(len);
    if (copy == NULL)
        abort();
    memcpy(copy, rec, len);
    tlsnic_rec_key *key = make_key(selector, rec_seq, flip);
    uint8_t type, *content;
    size_t content_len;
    int rc = tlsnic_rec_open(key, copy, len, &type, &content, &content_len);
    if (!is_documented(rc))
        abort();
    tlsnic_rec_key_free(key);
    free(copy);
    return rc;
}

/*
 * Opens rec with the streaming form, cut in up to three pieces at cut, and checks the
 * verdict and plaintext against the whole-record open (whole_rc; body = the decrypted
 * body when whole_rc == 0), then the keystream at an offset against the same plaintext.
 */
static void check_stream(const tlsnic_rec_key *key, uint64_t rec_seq, const uint8_t *rec,
                         size_t len, unsigned cut, int whole_rc, const uint8_t *body,
                         size_t body_len)
{
    size_t nonce_len = tlsnic_rec_key_explicit_nonce_len(key);
    struct tlsnic_rec_stream s;
    if (tlsnic_rec_stream_init(&s) != 0)
        abort();
    int rc = tlsnic_rec_stream_begin(&s, key, 0, rec_seq, rec, nonce_len ? rec + TLSNIC_REC_HDR_LEN : NULL);
    if (rc != 0) {
        /* a header the stream refuses is one the whole open refused too */
        if (!is_documented(rc) || whole_rc == 0)
            abort();
        tlsnic_rec_stream_cleanup(&s);
        return;
    }
    if (s.body_len + nonce_len + TLSNIC_REC_HDR_LEN + TLSNIC_REC_TAG_LEN != len)
        abort();
    const uint8_t *in = rec + TLSNIC_REC_HDR_LEN + nonce_len;
    uint8_t *out = malloc(s.body_len ? s.body_len : 1);
    if (out == NULL)
        abort();
    size_t a = s.body_len ? (cut * 37u) % (s.body_len + 1) : 0;
    size_t b = a + (s.body_len - a) / 2;
    const size_t cuts[4] = {0, a, b, s.body_len};
    for (int k = 0; k < 3; k++)
        if (tlsnic_rec_stream_update(&s, in + cuts[k], out + cuts[k], cuts[k + 1] - cuts[k]) != 0)
            abort();
    if (tlsnic_rec_stream_update(&s, in, out, 1) != -EINVAL) /* past the body: refused */
        abort();
    rc = tlsnic_rec_stream_open_final(&s, in + s.body_len);
    if ((rc == 0) != (whole_rc == 0) && !(whole_rc == -EBADMSG && rc == 0))
        abort();
    if (rc == 0 && whole_rc == 0 && memcmp(out, body, body_len) != 0)
        abort(); /* streamed plaintext differs from the whole record's */
    if (rc == 0 && whole_rc == -EBADMSG) {
        /* The tag held: the whole open may refuse only for TLS 1.3 padding with no type. */
        for (size_t i = 0; i < s.body_len; i++)
            if (out[i] != 0 || tlsnic_rec_key_version(key) != TLS_1_3_VERSION)
                abort();
    }
    if (rc == 0 && s.body_len > 0) {
        /* The keystream at offset a decrypts the rest of the body to the same bytes. */
        struct tlsnic_rec_keystream ks;
        if (tlsnic_rec_keystream_init(&ks) != 0)
            abort();
        size_t n = s.body_len - a;
        uint8_t *ko = malloc(n ? n : 1);
        if (ko == NULL)
            abort();
        if (tlsnic_rec_keystream_xor(&ks, key, rec_seq, nonce_len ? rec + TLSNIC_REC_HDR_LEN : NULL,
                                     a, in + a, ko, n) != 0 ||
            memcmp(ko, out + a, n) != 0)
            abort();
        free(ko);
        tlsnic_rec_keystream_cleanup(&ks);
    }
    free(out);
    tlsnic_rec_stream_cleanup(&s);
}

/* Seals content again at rec_seq: the input record back, unless it is not canonical. */
static void check_reseal(uint8_t selector, uint64_t rec_seq, const uint8_t *rec, size_t len,
                         uint8_t type, const uint8_t *content, size_t content_len)
{
    tlsnic_rec_key *key = make_key(selector, rec_seq, 0);
    static uint8_t out[TLSNIC_REC_MAX_WIRE_LEN];
    size_t out_len;
    if (tlsnic_rec_seal(key, type, content, content_len, out, sizeof(out), &out_len) != 0)
        abort();
    size_t nonce_len = tlsnic_rec_key_explicit_nonce_len(key);
    int padded = tlsnic_rec_key_version(key) == TLS_1_3_VERSION &&
                 len != TLSNIC_REC_HDR_LEN + content_len + 1 + TLSNIC_REC_TAG_LEN;
    int other_nonce = nonce_len != 0 && memcmp(out + TLSNIC_REC_HDR_LEN, rec + TLSNIC_REC_HDR_LEN, nonce_len) != 0;
    if (!padded && !other_nonce && (out_len != len || memcmp(out, rec, len) != 0))
        abort(); /* an opened record that does not re-encode to its own bytes */
    tlsnic_rec_key_free(key);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t selector = (uint8_t)(data[0] % 8 % 6);
    unsigned cut = data[0] >> 3;
    tlsnic_rec_key *key = make_key(selector, 0, 0);
    size_t off = 1;
    while (size - off >= TLSNIC_REC_HDR_LEN) {
        int total = tlsnic_rec_parse_header(key, data + off);
        if (!is_documented(total < 0 ? total : 0))
            abort();
        if (total < 0 || (size_t)total > size - off)
            break;
        const uint8_t *orig = data + off;
        uint8_t *rec = malloc((size_t)total);
        if (rec == NULL)
            abort();
        memcpy(rec, orig, (size_t)total);
        uint64_t rec_seq = tlsnic_rec_key_next_seq(key);
        uint8_t type, *content;
        size_t content_len;
        int rc = tlsnic_rec_open(key, rec, (size_t)total, &type, &content, &content_len);
        if (!is_documented(rc))
            abort();
        if (rc == 0 && (content < rec || content + content_len > rec + total ||
                        content_len > TLSNIC_REC_MAX_PLAINTEXT))
            abort();
        size_t nonce_len = tlsnic_rec_key_explicit_nonce_len(key);
        size_t body_len = (size_t)total - TLSNIC_REC_HDR_LEN - nonce_len - TLSNIC_REC_TAG_LEN;
        check_stream(key, rec_seq, orig, (size_t)total, cut, rc,
                     rec + TLSNIC_REC_HDR_LEN + nonce_len, rc == 0 ? body_len : 0);
        if (rc == 0) {
            if (opens_with(selector, rec_seq, 1, orig, (size_t)total) == 0 ||
                opens_with(selector, rec_seq + 1, 0, orig, (size_t)total) == 0)
                abort(); /* a record opened under a key or sequence number not its own */
            check_reseal(selector, rec_seq, orig, (size_t)total, type, content, content_len);
        }
        free(rec);
        if (rc != 0)
            break; /* as in the kernel, the stream is dead after a bad record */
        off += (size_t)total;
    }
    tlsnic_rec_key_free(key);
    return 0;
}
