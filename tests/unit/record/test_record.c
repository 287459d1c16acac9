/*
 * Record layer: known answers from published vectors, round trips for the six
 * version x cipher combinations, streaming == one-shot (with checkpoints), and every
 * bad-input errno. Interop with OpenSSL's libssl lives in test_interop.c.
 */
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "tlsnic/record.h"

/* ------------------------------------------------------------------------------------------ */
/* helpers                                                                                    */

static size_t unhex(const char *text, uint8_t *out, size_t cap)
{
    size_t n = 0;
    int high = -1;
    for (const char *p = text; *p != '\0'; p++) {
        int v;
        if (*p >= '0' && *p <= '9')
            v = *p - '0';
        else if (*p >= 'a' && *p <= 'f')
            v = *p - 'a' + 10;
        else if (*p >= 'A' && *p <= 'F')
            v = *p - 'A' + 10;
        else
            continue;
        if (high < 0) {
            high = v;
        } else {
            assert_true(n < cap);
            out[n++] = (uint8_t)(high << 4 | v);
            high = -1;
        }
    }
    assert_int_equal(high, -1);
    return n;
}

static void put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

struct combo {
    uint16_t version;
    uint16_t cipher;
};

static const struct combo combos[] = {
    {TLS_1_2_VERSION, TLS_CIPHER_AES_GCM_128},      {TLS_1_2_VERSION, TLS_CIPHER_AES_GCM_256},
    {TLS_1_2_VERSION, TLS_CIPHER_CHACHA20_POLY1305}, {TLS_1_3_VERSION, TLS_CIPHER_AES_GCM_128},
    {TLS_1_3_VERSION, TLS_CIPHER_AES_GCM_256},      {TLS_1_3_VERSION, TLS_CIPHER_CHACHA20_POLY1305},
};
#define N_COMBOS (sizeof(combos) / sizeof(combos[0]))

/* Deterministic crypto_info for a combination: key bytes from `fill`, rec_seq given. */
static size_t make_info(union tlsnic_crypto_info *ci, struct combo c, uint8_t fill,
                        uint64_t rec_seq)
{
    memset(ci, 0, sizeof(*ci));
    ci->info.version = c.version;
    ci->info.cipher_type = c.cipher;
    switch (c.cipher) {
    case TLS_CIPHER_AES_GCM_128:
        memset(ci->aes_gcm_128.key, fill, sizeof(ci->aes_gcm_128.key));
        memset(ci->aes_gcm_128.salt, fill ^ 0x5a, sizeof(ci->aes_gcm_128.salt));
        put_be64(ci->aes_gcm_128.iv, 0x1122334455667788ull);
        put_be64(ci->aes_gcm_128.rec_seq, rec_seq);
        return sizeof(ci->aes_gcm_128);
    case TLS_CIPHER_AES_GCM_256:
        memset(ci->aes_gcm_256.key, fill, sizeof(ci->aes_gcm_256.key));
        memset(ci->aes_gcm_256.salt, fill ^ 0x5a, sizeof(ci->aes_gcm_256.salt));
        put_be64(ci->aes_gcm_256.iv, 0x1122334455667788ull);
        put_be64(ci->aes_gcm_256.rec_seq, rec_seq);
        return sizeof(ci->aes_gcm_256);
    default:
        memset(ci->chacha20_poly1305.key, fill, sizeof(ci->chacha20_poly1305.key));
        memset(ci->chacha20_poly1305.iv, fill ^ 0xa5, sizeof(ci->chacha20_poly1305.iv));
        put_be64(ci->chacha20_poly1305.rec_seq, rec_seq);
        return sizeof(ci->chacha20_poly1305);
    }
}

static tlsnic_rec_key *new_key(struct combo c, uint64_t rec_seq)
{
    union tlsnic_crypto_info ci;
    size_t len = make_info(&ci, c, 0x42, rec_seq);
    tlsnic_rec_key *key = NULL;
    assert_int_equal(tlsnic_rec_key_new(&key, &ci, len), 0);
    return key;
}

static uint64_t test_seed(void)
{
    const char *env = getenv("TLSNIC_SEED");
    uint64_t seed = env ? strtoull(env, NULL, 0) : (uint64_t)time(NULL);
    fprintf(stderr, "# seed %llu (set TLSNIC_SEED to repeat)\n", (unsigned long long)seed);
    return seed;
}

static uint64_t rng_next(uint64_t *state)
{
    /* splitmix64: reproducible test inputs from one printed seed */
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void fill_random(uint64_t *state, uint8_t *buf, size_t len)
{
    for (size_t i = 0; i < len; i++)
        buf[i] = (uint8_t)rng_next(state);
}

/* ------------------------------------------------------------------------------------------ */
/* Known answers: RFC 8448 section 3 (TLS 1.3, TLS_AES_128_GCM_SHA256)                        */

static size_t rfc8448_info(union tlsnic_crypto_info *ci, const char *key_hex, const char *iv_hex,
                           uint64_t rec_seq)
{
    uint8_t iv[12];
    memset(ci, 0, sizeof(*ci));
    ci->info.version = TLS_1_3_VERSION;
    ci->info.cipher_type = TLS_CIPHER_AES_GCM_128;
    assert_int_equal(unhex(key_hex, ci->aes_gcm_128.key, 16), 16);
    assert_int_equal(unhex(iv_hex, iv, sizeof(iv)), 12);
    memcpy(ci->aes_gcm_128.salt, iv, 4);
    memcpy(ci->aes_gcm_128.iv, iv + 4, 8);
    put_be64(ci->aes_gcm_128.rec_seq, rec_seq);
    return sizeof(ci->aes_gcm_128);
}

#define RFC8448_CLIENT_KEY "17 42 2d da 59 6e d5 d9 ac d8 90 e3 c6 3f 50 51"
#define RFC8448_CLIENT_IV "5b 78 92 3d ee 08 57 90 33 e5 23 d9"
#define RFC8448_SERVER_KEY "9f 02 28 3b 6c 9c 07 ef c2 6b b9 f2 ac 92 e3 56"
#define RFC8448_SERVER_IV "cf 78 2b 88 dd 83 54 9a ad f1 e9 84"
#define RFC8448_CLIENT_APP_RECORD                                                             \
    "17 03 03 00 43 a2 3f 70 54 b6 2c 94 d0 af fa fe 82 28 ba 55 cb ef ac ea 42 f9 14 aa 66 bc " \
    "ab 3f 2b 98 19 a8 a5 b4 6b 39 5b d5 4a 9a 20 44 1e 2b 62 97 4e 1f 5a 62 92 a2 97 70 14 bd " \
    "1e 3d ea e6 3a ee bb 21 69 49 15 e4"
#define RFC8448_SERVER_APP_RECORD                                                             \
    "17 03 03 00 43 2e 93 7e 11 ef 4a c7 40 e5 38 ad 36 00 5f c4 a4 69 32 fc 32 25 d0 5f 82 aa " \
    "1b 36 e3 0e fa f9 7d 90 e6 df fc 60 2d cb 50 1a 59 a8 fc c4 9c 4b f2 e5 f0 a2 1c 00 47 c2 " \
    "ab f3 32 54 0d d0 32 e1 67 c2 95 5d"
#define RFC8448_CLIENT_ALERT_RECORD                                                           \
    "17 03 03 00 13 c9 87 27 60 65 56 66 b7 4d 7f f1 15 3e fd 6d b6 d0 b0 e3"
#define RFC8448_SERVER_ALERT_RECORD                                                           \
    "17 03 03 00 13 b5 8f d6 71 66 eb f5 99 d2 47 20 cf be 7e fa 7a 88 64 a9"

static void rfc8448_payload(uint8_t payload[50])
{
    for (int i = 0; i < 50; i++)
        payload[i] = (uint8_t)i;
}

static void test_rfc8448_client_application_data_seals_to_published_record(void **state)
{
    union tlsnic_crypto_info ci;
    size_t len = rfc8448_info(&ci, RFC8448_CLIENT_KEY, RFC8448_CLIENT_IV, 0);
    tlsnic_rec_key *key;
    assert_int_equal(tlsnic_rec_key_new(&key, &ci, len), 0);

    uint8_t payload[50], expected[128], out[128];
    rfc8448_payload(payload);
    size_t expected_len = unhex(RFC8448_CLIENT_APP_RECORD, expected, sizeof(expected));
    size_t out_len = 0;
    assert_int_equal(tlsnic_rec_seal(key, TLSNIC_CT_APPLICATION_DATA, payload, sizeof(payload),
                                     out, sizeof(out), &out_len),
                     0);
    assert_int_equal(out_len, expected_len);
    assert_memory_equal(out, expected, expected_len);

    /* the next client record is the close_notify alert, sequence 1 */
    uint8_t alert[2] = {1, 0};
    expected_len = unhex(RFC8448_CLIENT_ALERT_RECORD, expected, sizeof(expected));
    assert_int_equal(
        tlsnic_rec_seal(key, TLSNIC_CT_ALERT, alert, sizeof(alert), out, sizeof(out), &out_len),
        0);
    assert_int_equal(out_len, expected_len);
    assert_memory_equal(out, expected, expected_len);
    tlsnic_rec_key_free(key);
}

static void test_rfc8448_server_application_data_opens_to_published_payload(void **state)
{
    /* The server's NewSessionTicket used sequence 0, so its data record is sequence 1. */
    union tlsnic_crypto_info ci;
    size_t len = rfc8448_info(&ci, RFC8448_SERVER_KEY, RFC8448_SERVER_IV, 1);
    tlsnic_rec_key *key;
    assert_int_equal(tlsnic_rec_key_new(&key, &ci, len), 0);

    uint8_t rec[128], payload[50], *content;
    size_t rec_len = unhex(RFC8448_SERVER_APP_RECORD, rec, sizeof(rec)), content_len;
    uint8_t type;
    rfc8448_payload(payload);
    assert_int_equal(tlsnic_rec_open(key, rec, rec_len, &type, &content, &content_len), 0);
    assert_int_equal(type, TLSNIC_CT_APPLICATION_DATA);
    assert_int_equal(content_len, 50);
    assert_memory_equal(content, payload, 50);

    rec_len = unhex(RFC8448_SERVER_ALERT_RECORD, rec, sizeof(rec));
    assert_int_equal(tlsnic_rec_open(key, rec, rec_len, &type, &content, &content_len), 0);
    assert_int_equal(type, TLSNIC_CT_ALERT);
    assert_int_equal(content_len, 2);
    assert_int_equal(content[0], 1); /* warning */
    assert_int_equal(content[1], 0); /* close_notify */
    assert_int_equal(tlsnic_rec_key_next_seq(key), 3);
    tlsnic_rec_key_free(key);
}

static void test_rfc8448_record_streamed_in_pieces_matches_published_record(void **state)
{
    union tlsnic_crypto_info ci;
    size_t len = rfc8448_info(&ci, RFC8448_CLIENT_KEY, RFC8448_CLIENT_IV, 0);
    tlsnic_rec_key *key;
    assert_int_equal(tlsnic_rec_key_new(&key, &ci, len), 0);

    uint8_t expected[128], rec[128];
    size_t expected_len = unhex(RFC8448_CLIENT_APP_RECORD, expected, sizeof(expected));
    /* the host's framing: header, plaintext body (content || type), zeroed tag room */
    memcpy(rec, expected, TLSNIC_REC_HDR_LEN);
    rfc8448_payload(rec + 5);
    rec[5 + 50] = TLSNIC_CT_APPLICATION_DATA;

    struct tlsnic_rec_stream s;
    assert_int_equal(tlsnic_rec_stream_init(&s), 0);
    assert_int_equal(tlsnic_rec_stream_begin(&s, key, 1, 0, rec, NULL), 0);
    assert_int_equal(s.body_len, 51);
    static const size_t pieces[] = {1, 7, 16, 0, 20, 7};
    size_t off = 5;
    for (size_t i = 0; i < sizeof(pieces) / sizeof(pieces[0]); i++) {
        assert_int_equal(tlsnic_rec_stream_update(&s, rec + off, rec + off, pieces[i]), 0);
        off += pieces[i];
    }
    assert_int_equal(off, 5 + 51);
    assert_int_equal(tlsnic_rec_stream_seal_final(&s, rec + off), 0);
    assert_memory_equal(rec, expected, expected_len);
    tlsnic_rec_stream_cleanup(&s);
    tlsnic_rec_key_free(key);
}

/* ------------------------------------------------------------------------------------------ */
/* Known answers for the positional keystream: the GCM spec's test cases 3 and 15 (AES-128 /
 * AES-256, no AAD, 64 bytes) and RFC 8439 2.8.2 (ChaCha20). The AAD of those vectors is not a
 * TLS AAD, so they check the body bytes; RFC 8448 above checks tags.                         */

#define GCM_KAT_PLAINTEXT                                                                     \
    "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"                        \
    "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255"

static void check_keystream_at_every_offset(const union tlsnic_crypto_info *ci, size_t info_len,
                                            const uint8_t *explicit_nonce, const uint8_t *pt,
                                            const uint8_t *ct, size_t len)
{
    tlsnic_rec_key *key;
    assert_int_equal(tlsnic_rec_key_new(&key, ci, info_len), 0);
    struct tlsnic_rec_keystream ks;
    assert_int_equal(tlsnic_rec_keystream_init(&ks), 0);
    uint8_t out[256];
    for (size_t off = 0; off < len; off++) {
        for (size_t piece = 1; off + piece <= len; piece += 13) {
            memset(out, 0, sizeof(out));
            assert_int_equal(tlsnic_rec_keystream_xor(&ks, key, 0, explicit_nonce, off, pt + off,
                                                      out, piece),
                             0);
            assert_memory_equal(out, ct + off, piece);
        }
    }
    tlsnic_rec_keystream_cleanup(&ks);
    tlsnic_rec_key_free(key);
}

static void test_keystream_matches_gcm_spec_vector_aes128(void **state)
{
    union tlsnic_crypto_info ci;
    memset(&ci, 0, sizeof(ci));
    ci.info.version = TLS_1_2_VERSION;
    ci.info.cipher_type = TLS_CIPHER_AES_GCM_128;
    unhex("feffe9928665731c6d6a8f9467308308", ci.aes_gcm_128.key, 16);
    unhex("cafebabe", ci.aes_gcm_128.salt, 4);
    uint8_t explicit_nonce[8], pt[64], ct[64];
    unhex("facedbaddecaf888", explicit_nonce, 8);
    unhex(GCM_KAT_PLAINTEXT, pt, sizeof(pt));
    unhex("42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e"
          "21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091473f5985",
          ct, sizeof(ct));
    check_keystream_at_every_offset(&ci, sizeof(ci.aes_gcm_128), explicit_nonce, pt, ct, 64);
}

static void test_keystream_matches_gcm_spec_vector_aes256(void **state)
{
    union tlsnic_crypto_info ci;
    memset(&ci, 0, sizeof(ci));
    ci.info.version = TLS_1_2_VERSION;
    ci.info.cipher_type = TLS_CIPHER_AES_GCM_256;
    unhex("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308", ci.aes_gcm_256.key,
          32);
    unhex("cafebabe", ci.aes_gcm_256.salt, 4);
    uint8_t explicit_nonce[8], pt[64], ct[64];
    unhex("facedbaddecaf888", explicit_nonce, 8);
    unhex(GCM_KAT_PLAINTEXT, pt, sizeof(pt));
    unhex("522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
          "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662898015ad",
          ct, sizeof(ct));
    check_keystream_at_every_offset(&ci, sizeof(ci.aes_gcm_256), explicit_nonce, pt, ct, 64);
}

static void test_keystream_matches_rfc8439_chacha20_vector(void **state)
{
    union tlsnic_crypto_info ci;
    memset(&ci, 0, sizeof(ci));
    ci.info.version = TLS_1_3_VERSION;
    ci.info.cipher_type = TLS_CIPHER_CHACHA20_POLY1305;
    unhex("808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f",
          ci.chacha20_poly1305.key, 32);
    /* sequence 0: the TLS nonce is the IV itself */
    unhex("070000004041424344454647", ci.chacha20_poly1305.iv, 12);
    static const char pt[] = "Ladies and Gentlemen of the class of '99: If I could offer you "
                             "only one tip for the future, sunscreen would be it.";
    uint8_t ct[114];
    assert_int_equal(
        unhex("d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d6"
              "3dbea45e8ca9671282fafb69da92728b1a71de0a9e060b2905d6a5b67ecd3b36"
              "92ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc"
              "3ff4def08e4b7a9de576d26586cec64b6116",
              ct, sizeof(ct)),
        114);
    check_keystream_at_every_offset(&ci, sizeof(ci.chacha20_poly1305), NULL,
                                    (const uint8_t *)pt, ct, 114);
}

/* ------------------------------------------------------------------------------------------ */
/* Round trips and streaming, all six combinations                                            */

static void test_seal_then_open_round_trips_every_combination_and_size(void **state)
{
    static const size_t sizes[] = {0, 1, 15, 16, 17, 1457, 4096, TLSNIC_REC_MAX_PLAINTEXT};
    static uint8_t content[TLSNIC_REC_MAX_PLAINTEXT], rec[TLSNIC_REC_MAX_WIRE_LEN];
    for (size_t i = 0; i < sizeof(content); i++)
        content[i] = (uint8_t)(i * 7 + 3);
    for (size_t c = 0; c < N_COMBOS; c++) {
        tlsnic_rec_key *tx = new_key(combos[c], 5), *rx = new_key(combos[c], 5);
        for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
            size_t rec_len;
            assert_int_equal(tlsnic_rec_seal(tx, TLSNIC_CT_APPLICATION_DATA, content, sizes[s],
                                             rec, sizeof(rec), &rec_len),
                             0);
            assert_int_equal(rec_len, sizes[s] + tlsnic_rec_key_overhead(tx));
            assert_int_equal(tlsnic_rec_parse_header(rx, rec), (int)rec_len);
            uint8_t type, *out;
            size_t out_len;
            assert_int_equal(tlsnic_rec_open(rx, rec, rec_len, &type, &out, &out_len), 0);
            assert_int_equal(type, TLSNIC_CT_APPLICATION_DATA);
            assert_int_equal(out_len, sizes[s]);
            if (sizes[s] != 0)
                assert_memory_equal(out, content, sizes[s]);
        }
        assert_int_equal(tlsnic_rec_key_next_seq(tx), 5 + 8);
        assert_int_equal(tlsnic_rec_key_next_seq(rx), 5 + 8);
        tlsnic_rec_key_free(tx);
        tlsnic_rec_key_free(rx);
    }
}

static void test_seal_in_place_gives_same_record_as_out_of_place(void **state)
{
    for (size_t c = 0; c < N_COMBOS; c++) {
        tlsnic_rec_key *a = new_key(combos[c], 0), *b = new_key(combos[c], 0);
        uint8_t content[300], rec_a[400], rec_b[400];
        for (size_t i = 0; i < sizeof(content); i++)
            content[i] = (uint8_t)i;
        size_t prefix = TLSNIC_REC_HDR_LEN + tlsnic_rec_key_explicit_nonce_len(b), len_a, len_b;
        memcpy(rec_b + prefix, content, sizeof(content));
        assert_int_equal(tlsnic_rec_seal(a, TLSNIC_CT_HANDSHAKE, content, sizeof(content), rec_a,
                                         sizeof(rec_a), &len_a),
                         0);
        assert_int_equal(tlsnic_rec_seal(b, TLSNIC_CT_HANDSHAKE, rec_b + prefix, sizeof(content),
                                         rec_b, sizeof(rec_b), &len_b),
                         0);
        assert_int_equal(len_a, len_b);
        assert_memory_equal(rec_a, rec_b, len_a);
        tlsnic_rec_key_free(a);
        tlsnic_rec_key_free(b);
    }
}

static void test_tls12_record_carries_its_content_type_in_the_header(void **state)
{
    tlsnic_rec_key *key = new_key(combos[0], 0);
    uint8_t rec[64];
    size_t rec_len;
    uint8_t alert[2] = {2, 40};
    assert_int_equal(tlsnic_rec_seal(key, TLSNIC_CT_ALERT, alert, 2, rec, sizeof(rec), &rec_len), 0);
    assert_int_equal(rec[0], TLSNIC_CT_ALERT);
    assert_int_equal(rec_len, 5 + 8 + 2 + 16);
    tlsnic_rec_key_free(key);
}

static void test_tls13_record_hides_its_content_type(void **state)
{
    tlsnic_rec_key *key = new_key(combos[3], 0), *rx = new_key(combos[3], 0);
    uint8_t rec[64], alert[2] = {2, 40}, type, *content;
    size_t rec_len, content_len;
    assert_int_equal(tlsnic_rec_seal(key, TLSNIC_CT_ALERT, alert, 2, rec, sizeof(rec), &rec_len), 0);
    assert_int_equal(rec[0], TLSNIC_CT_APPLICATION_DATA);
    assert_int_equal(rec_len, 5 + 2 + 1 + 16);
    assert_int_equal(tlsnic_rec_open(rx, rec, rec_len, &type, &content, &content_len), 0);
    assert_int_equal(type, TLSNIC_CT_ALERT);
    assert_int_equal(content_len, 2);
    tlsnic_rec_key_free(key);
    tlsnic_rec_key_free(rx);
}

/* Seals record rec_seq whose framing is in rec (header, explicit nonce, plaintext body,
 * tag room) by streaming the body in random pieces; saves a checkpoint at a random piece
 * boundary, scribbles a wrong continuation, restores and continues. */
static void stream_seal_random_pieces(tlsnic_rec_key *key, uint64_t rec_seq, uint8_t *rec,
                                      uint64_t *rng)
{
    size_t prefix = TLSNIC_REC_HDR_LEN + tlsnic_rec_key_explicit_nonce_len(key);
    const uint8_t *explicit_nonce = prefix > TLSNIC_REC_HDR_LEN ? rec + TLSNIC_REC_HDR_LEN : NULL;
    struct tlsnic_rec_stream s, ckpt;
    assert_int_equal(tlsnic_rec_stream_init(&s), 0);
    assert_int_equal(tlsnic_rec_stream_init(&ckpt), 0);
    assert_int_equal(tlsnic_rec_stream_begin(&s, key, 1, rec_seq, rec, explicit_nonce), 0);
    size_t body_len = s.body_len, off = 0;
    size_t ckpt_at = body_len ? rng_next(rng) % body_len : 0;
    int restored = 0;
    static uint8_t scratch[TLSNIC_REC_MAX_WIRE_LEN];
    for (int guard = 0; off < body_len; guard++) {
        assert_true(guard < 1000000);
        size_t piece = 1 + rng_next(rng) % (rng_next(rng) % 2 ? 16 : 3000);
        if (piece > body_len - off)
            piece = body_len - off;
        if (!restored && off >= ckpt_at) {
            assert_int_equal(tlsnic_rec_stream_copy(&ckpt, &s), 0);
            /* feed garbage into the live stream, then roll back to the checkpoint */
            memset(scratch, 0xee, piece);
            assert_int_equal(tlsnic_rec_stream_update(&s, scratch, scratch, piece), 0);
            assert_int_equal(tlsnic_rec_stream_copy(&s, &ckpt), 0);
            assert_int_equal(s.body_off, off);
            restored = 1;
        }
        assert_int_equal(tlsnic_rec_stream_update(&s, rec + prefix + off, rec + prefix + off, piece),
                         0);
        off += piece;
    }
    assert_int_equal(tlsnic_rec_stream_seal_final(&s, rec + prefix + body_len), 0);
    tlsnic_rec_stream_cleanup(&s);
    tlsnic_rec_stream_cleanup(&ckpt);
}

static void test_streaming_in_random_pieces_with_checkpoint_equals_one_shot(void **state)
{
    uint64_t rng = test_seed();
    static uint8_t content[TLSNIC_REC_MAX_PLAINTEXT], whole[TLSNIC_REC_MAX_WIRE_LEN],
        streamed[TLSNIC_REC_MAX_WIRE_LEN];
    for (int round = 0; round < 60; round++) {
        struct combo c = combos[round % N_COMBOS];
        tlsnic_rec_key *key = new_key(c, 1000 + (uint64_t)round);
        size_t len = rng_next(&rng) % 2 ? rng_next(&rng) % 64 : rng_next(&rng) % (sizeof(content) + 1);
        fill_random(&rng, content, len);
        uint8_t type = (uint8_t)(TLSNIC_CT_ALERT + rng_next(&rng) % 3);
        uint64_t rec_seq = tlsnic_rec_key_next_seq(key);
        size_t whole_len;
        assert_int_equal(
            tlsnic_rec_seal(key, type, content, len, whole, sizeof(whole), &whole_len), 0);

        /* the device's view: same header and explicit nonce, plaintext body, zero tag room */
        size_t prefix = TLSNIC_REC_HDR_LEN + tlsnic_rec_key_explicit_nonce_len(key);
        memcpy(streamed, whole, prefix);
        memcpy(streamed + prefix, content, len);
        if (c.version == TLS_1_3_VERSION)
            streamed[prefix + len++] = type;
        memset(streamed + prefix + len, 0, TLSNIC_REC_TAG_LEN);
        stream_seal_random_pieces(key, rec_seq, streamed, &rng);
        assert_memory_equal(streamed, whole, whole_len);
        tlsnic_rec_key_free(key);
    }
}

static void test_streaming_open_in_pieces_recovers_content_and_checks_tag(void **state)
{
    for (size_t c = 0; c < N_COMBOS; c++) {
        tlsnic_rec_key *tx = new_key(combos[c], 9), *rx = new_key(combos[c], 9);
        uint8_t content[3000], rec[3100];
        for (size_t i = 0; i < sizeof(content); i++)
            content[i] = (uint8_t)(i ^ 0x3c);
        size_t rec_len, prefix = TLSNIC_REC_HDR_LEN + tlsnic_rec_key_explicit_nonce_len(rx);
        assert_int_equal(tlsnic_rec_seal(tx, TLSNIC_CT_APPLICATION_DATA, content, sizeof(content),
                                         rec, sizeof(rec), &rec_len),
                         0);
        for (int tamper = 0; tamper < 2; tamper++) {
            uint8_t copy[3100];
            memcpy(copy, rec, rec_len);
            if (tamper)
                copy[prefix + 1234] ^= 0x01;
            struct tlsnic_rec_stream s;
            assert_int_equal(tlsnic_rec_stream_init(&s), 0);
            assert_int_equal(tlsnic_rec_stream_begin(&s, rx, 0, 9, copy,
                                                     prefix > 5 ? copy + 5 : NULL),
                             0);
            size_t body_len = s.body_len;
            for (size_t off = 0; off < body_len; off += 1448) {
                size_t piece = body_len - off < 1448 ? body_len - off : 1448;
                assert_int_equal(tlsnic_rec_stream_update(&s, copy + prefix + off,
                                                          copy + prefix + off, piece),
                                 0);
            }
            int rc = tlsnic_rec_stream_open_final(&s, copy + prefix + body_len);
            if (tamper) {
                assert_int_equal(rc, -EBADMSG);
            } else {
                assert_int_equal(rc, 0);
                assert_memory_equal(copy + prefix, content, sizeof(content));
            }
            tlsnic_rec_stream_cleanup(&s);
        }
        tlsnic_rec_key_free(tx);
        tlsnic_rec_key_free(rx);
    }
}

static void test_keystream_at_any_offset_matches_sealed_body(void **state)
{
    uint64_t rng = test_seed();
    static uint8_t content[TLSNIC_REC_MAX_PLAINTEXT], rec[TLSNIC_REC_MAX_WIRE_LEN],
        out[TLSNIC_REC_MAX_PLAINTEXT];
    fill_random(&rng, content, sizeof(content));
    for (size_t c = 0; c < N_COMBOS; c++) {
        tlsnic_rec_key *key = new_key(combos[c], 77);
        size_t rec_len, prefix = TLSNIC_REC_HDR_LEN + tlsnic_rec_key_explicit_nonce_len(key);
        assert_int_equal(tlsnic_rec_seal(key, TLSNIC_CT_APPLICATION_DATA, content, sizeof(content),
                                         rec, sizeof(rec), &rec_len),
                         0);
        struct tlsnic_rec_keystream ks;
        assert_int_equal(tlsnic_rec_keystream_init(&ks), 0);
        for (int i = 0; i < 200; i++) {
            size_t off = rng_next(&rng) % sizeof(content);
            size_t len = 1 + rng_next(&rng) % (sizeof(content) - off);
            assert_int_equal(tlsnic_rec_keystream_xor(&ks, key, 77, prefix > 5 ? rec + 5 : NULL,
                                                      off, content + off, out, len),
                             0);
            assert_memory_equal(out, rec + prefix + off, len);
        }
        tlsnic_rec_keystream_cleanup(&ks);
        tlsnic_rec_key_free(key);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Keys and their errors                                                                      */

static void test_crypto_info_with_unknown_version_is_einval(void **state)
{
    union tlsnic_crypto_info ci;
    size_t len = make_info(&ci, combos[0], 1, 0);
    ci.info.version = 0x0302; /* TLS 1.1 */
    tlsnic_rec_key *key = (tlsnic_rec_key *)&ci;
    assert_int_equal(tlsnic_rec_key_new(&key, &ci, len), -EINVAL);
    assert_null(key);
}

static void test_crypto_info_with_unknown_cipher_is_einval(void **state)
{
    union tlsnic_crypto_info ci;
    size_t len = make_info(&ci, combos[0], 1, 0);
    ci.info.cipher_type = 99;
    assert_int_equal(tlsnic_crypto_info_check(&ci, len), -EINVAL);
}

static void test_crypto_info_with_cipher_tlsnic_does_not_offload_is_eopnotsupp(void **state)
{
    union tlsnic_crypto_info ci;
    size_t len = make_info(&ci, combos[0], 1, 0);
    ci.info.cipher_type = TLS_CIPHER_AES_CCM_128;
    assert_int_equal(tlsnic_crypto_info_check(&ci, len), -EOPNOTSUPP);
}

/* AES-CCM-128 and ARIA-GCM: whole records in software (libssl reads them: test_interop);
 * the streaming API a device needs refuses them, and so does the device's check. */
static void test_software_only_ciphers_seal_open_and_refuse_streaming(void **state)
{
    (void)state;
    const struct combo sw[] = {{TLS_1_2_VERSION, TLS_CIPHER_AES_CCM_128},
                               {TLS_1_3_VERSION, TLS_CIPHER_AES_CCM_128},
                               {TLS_1_2_VERSION, TLS_CIPHER_ARIA_GCM_128},
                               {TLS_1_2_VERSION, TLS_CIPHER_ARIA_GCM_256}};
    for (size_t i = 0; i < sizeof(sw) / sizeof(sw[0]); i++) {
        union tlsnic_crypto_info ci;
        memset(&ci, 0x33, sizeof(ci));
        ci.info.version = sw[i].version;
        ci.info.cipher_type = sw[i].cipher;
        size_t len = tlsnic_crypto_info_size(sw[i].cipher);
        assert_int_equal(tlsnic_crypto_info_check(&ci, len), -EOPNOTSUPP);
        tlsnic_rec_key *tx, *rx;
        assert_int_equal(tlsnic_rec_key_new(&tx, &ci, len), 0);
        assert_int_equal(tlsnic_rec_key_new(&rx, &ci, len), 0);
        static uint8_t rec[TLSNIC_REC_MAX_WIRE_LEN], data[1500];
        for (size_t b = 0; b < sizeof(data); b++)
            data[b] = (uint8_t)(b * 7 + i);
        for (int r = 0; r < 3; r++) { /* sequence numbers move on alike */
            size_t n = 0;
            assert_int_equal(tlsnic_rec_seal(tx, TLSNIC_CT_APPLICATION_DATA, data, sizeof(data),
                                             rec, sizeof(rec), &n), 0);
            uint8_t type, *content;
            size_t clen;
            assert_int_equal(tlsnic_rec_open(rx, rec, n, &type, &content, &clen), 0);
            assert_int_equal(clen, sizeof(data));
            assert_memory_equal(content, data, clen);
        }
        size_t n = 0;
        assert_int_equal(tlsnic_rec_seal(tx, TLSNIC_CT_APPLICATION_DATA, data, 10, rec,
                                         sizeof(rec), &n), 0);
        rec[n - 1] ^= 1;
        uint8_t type, *content;
        size_t clen;
        assert_int_equal(tlsnic_rec_open(rx, rec, n, &type, &content, &clen), -EBADMSG);
        struct tlsnic_rec_stream st;
        assert_int_equal(tlsnic_rec_stream_init(&st), 0);
        uint8_t nonce[8] = {0};
        assert_int_equal(tlsnic_rec_stream_begin(&st, tx, 1, 1, rec,
                                                 sw[i].version == TLS_1_2_VERSION ? nonce : NULL),
                         -EOPNOTSUPP);
        tlsnic_rec_stream_cleanup(&st);
        tlsnic_rec_key_free(tx);
        tlsnic_rec_key_free(rx);
    }
}

static void test_aria_with_tls13_is_einval(void **state)
{
    (void)state;
    union tlsnic_crypto_info ci;
    memset(&ci, 0x33, sizeof(ci));
    ci.info.version = TLS_1_3_VERSION;
    ci.info.cipher_type = TLS_CIPHER_ARIA_GCM_128;
    tlsnic_rec_key *key;
    assert_int_equal(tlsnic_rec_key_new(&key, &ci, tlsnic_crypto_info_size(TLS_CIPHER_ARIA_GCM_128)),
                     -EINVAL);
}

static void test_crypto_info_with_wrong_length_is_einval(void **state)
{
    for (size_t c = 0; c < N_COMBOS; c++) {
        union tlsnic_crypto_info ci;
        size_t len = make_info(&ci, combos[c], 1, 0);
        tlsnic_rec_key *key;
        assert_int_equal(tlsnic_rec_key_new(&key, &ci, len - 1), -EINVAL);
        assert_int_equal(tlsnic_rec_key_new(&key, &ci, len + 1), -EINVAL);
        assert_int_equal(tlsnic_rec_key_new(&key, &ci, 2), -EINVAL);
        assert_int_equal(tlsnic_rec_key_new(&key, NULL, len), -EINVAL);
    }
}

static void test_key_export_reports_advanced_sequence_and_explicit_nonce(void **state)
{
    for (size_t c = 0; c < N_COMBOS; c++) {
        tlsnic_rec_key *key = new_key(combos[c], 40);
        uint8_t rec[64], one = 'x';
        size_t rec_len;
        for (int i = 0; i < 3; i++)
            assert_int_equal(
                tlsnic_rec_seal(key, TLSNIC_CT_APPLICATION_DATA, &one, 1, rec, sizeof(rec), &rec_len),
                0);
        union tlsnic_crypto_info exported, expected;
        size_t len = make_info(&expected, combos[c], 0x42, 43);
        if (combos[c].version == TLS_1_2_VERSION && combos[c].cipher == TLS_CIPHER_AES_GCM_128)
            put_be64(expected.aes_gcm_128.iv, 0x1122334455667788ull + 3);
        if (combos[c].version == TLS_1_2_VERSION && combos[c].cipher == TLS_CIPHER_AES_GCM_256)
            put_be64(expected.aes_gcm_256.iv, 0x1122334455667788ull + 3);
        assert_int_equal(tlsnic_rec_key_export(key, &exported, sizeof(exported)), (int)len);
        assert_memory_equal(&exported, &expected, len);
        assert_int_equal(tlsnic_rec_key_export(key, &exported, len - 1), -ENOBUFS);

        /* a key made from the export continues the stream: same next record */
        tlsnic_rec_key *successor;
        uint8_t rec2[64];
        size_t rec2_len;
        assert_int_equal(tlsnic_rec_key_new(&successor, &exported, len), 0);
        assert_int_equal(
            tlsnic_rec_seal(key, TLSNIC_CT_APPLICATION_DATA, &one, 1, rec, sizeof(rec), &rec_len), 0);
        assert_int_equal(tlsnic_rec_seal(successor, TLSNIC_CT_APPLICATION_DATA, &one, 1, rec2,
                                         sizeof(rec2), &rec2_len),
                         0);
        assert_int_equal(rec_len, rec2_len);
        assert_memory_equal(rec, rec2, rec_len);
        tlsnic_rec_key_free(successor);
        tlsnic_rec_key_free(key);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Bad input                                                                                  */

static void test_seal_of_more_than_2_14_bytes_is_emsgsize(void **state)
{
    static uint8_t content[TLSNIC_REC_MAX_PLAINTEXT + 1], rec[TLSNIC_REC_MAX_WIRE_LEN + 64];
    for (size_t c = 0; c < N_COMBOS; c++) {
        tlsnic_rec_key *key = new_key(combos[c], 0);
        size_t rec_len = 12345;
        assert_int_equal(tlsnic_rec_seal(key, TLSNIC_CT_APPLICATION_DATA, content, sizeof(content),
                                         rec, sizeof(rec), &rec_len),
                         -EMSGSIZE);
        assert_int_equal(rec_len, 12345);
        assert_int_equal(tlsnic_rec_key_next_seq(key), 0); /* nothing consumed */
        tlsnic_rec_key_free(key);
    }
}

static void test_seal_into_too_small_buffer_is_enobufs_and_writes_nothing(void **state)
{
    for (size_t c = 0; c < N_COMBOS; c++) {
        tlsnic_rec_key *key = new_key(combos[c], 0);
        uint8_t content[100] = {0}, rec[256];
        size_t need = sizeof(content) + tlsnic_rec_key_overhead(key), rec_len;
        memset(rec, 0xab, sizeof(rec));
        assert_int_equal(tlsnic_rec_seal(key, TLSNIC_CT_APPLICATION_DATA, content, sizeof(content),
                                         rec, need - 1, &rec_len),
                         -ENOBUFS);
        for (size_t i = 0; i < sizeof(rec); i++)
            assert_int_equal(rec[i], 0xab);
        assert_int_equal(tlsnic_rec_seal(key, TLSNIC_CT_APPLICATION_DATA, content, sizeof(content),
                                         rec, need, &rec_len),
                         0);
        assert_int_equal(rec_len, need);
        tlsnic_rec_key_free(key);
    }
}

/* A sealed record of `len` content bytes for combination c, sequence 0. */
static size_t sealed_record(struct combo c, size_t len, uint8_t *rec, size_t cap)
{
    tlsnic_rec_key *key = new_key(c, 0);
    static uint8_t content[TLSNIC_REC_MAX_PLAINTEXT];
    memset(content, 'p', sizeof(content));
    size_t rec_len;
    assert_int_equal(
        tlsnic_rec_seal(key, TLSNIC_CT_APPLICATION_DATA, content, len, rec, cap, &rec_len), 0);
    tlsnic_rec_key_free(key);
    return rec_len;
}

static int open_with_fresh_key(struct combo c, uint8_t *rec, size_t rec_len)
{
    tlsnic_rec_key *key = new_key(c, 0);
    uint8_t type, *content;
    size_t content_len;
    int rc = tlsnic_rec_open(key, rec, rec_len, &type, &content, &content_len);
    if (rc < 0)
        assert_int_equal(tlsnic_rec_key_next_seq(key), 0); /* a failed open consumes nothing */
    tlsnic_rec_key_free(key);
    return rc;
}

static void test_open_with_any_flipped_bit_is_ebadmsg(void **state)
{
    for (size_t c = 0; c < N_COMBOS; c++) {
        uint8_t rec[256], copy[256];
        size_t rec_len = sealed_record(combos[c], 40, rec, sizeof(rec));
        /* every byte after the version field: length bytes change the length check, the
         * rest (type, explicit nonce, body, tag) must fail authentication */
        for (size_t i = 0; i < rec_len; i++) {
            if (i >= 1 && i <= 4)
                continue;
            memcpy(copy, rec, rec_len);
            copy[i] ^= 0x80;
            assert_int_equal(open_with_fresh_key(combos[c], copy, rec_len), -EBADMSG);
        }
        memcpy(copy, rec, rec_len);
        assert_int_equal(open_with_fresh_key(combos[c], copy, rec_len), 0);
    }
}

static void test_open_with_wrong_sequence_number_is_ebadmsg(void **state)
{
    for (size_t c = 0; c < N_COMBOS; c++) {
        uint8_t rec[256];
        size_t rec_len = sealed_record(combos[c], 40, rec, sizeof(rec));
        tlsnic_rec_key *key = new_key(combos[c], 1); /* expects sequence 1, record is 0 */
        uint8_t type, *content;
        size_t content_len;
        assert_int_equal(tlsnic_rec_open(key, rec, rec_len, &type, &content, &content_len),
                         -EBADMSG);
        tlsnic_rec_key_free(key);
    }
}

static void test_open_with_wrong_version_bytes_is_einval(void **state)
{
    for (size_t c = 0; c < N_COMBOS; c++) {
        uint8_t rec[256];
        size_t rec_len = sealed_record(combos[c], 10, rec, sizeof(rec));
        rec[2] = 0x01; /* 0x0301 */
        assert_int_equal(open_with_fresh_key(combos[c], rec, rec_len), -EINVAL);
        tlsnic_rec_key *key = new_key(combos[c], 0);
        assert_int_equal(tlsnic_rec_parse_header(key, rec), -EINVAL);
        tlsnic_rec_key_free(key);
    }
}

static void test_oversized_record_is_emsgsize(void **state)
{
    for (size_t c = 0; c < N_COMBOS; c++) {
        tlsnic_rec_key *key = new_key(combos[c], 0);
        size_t max_data = tlsnic_rec_key_overhead(key) - TLSNIC_REC_HDR_LEN + TLSNIC_REC_MAX_PLAINTEXT;
        uint8_t hdr[5] = {TLSNIC_CT_APPLICATION_DATA, 3, 3, (uint8_t)(max_data >> 8),
                          (uint8_t)max_data};
        assert_int_equal(tlsnic_rec_parse_header(key, hdr), (int)(5 + max_data));
        max_data++;
        hdr[3] = (uint8_t)(max_data >> 8);
        hdr[4] = (uint8_t)max_data;
        assert_int_equal(tlsnic_rec_parse_header(key, hdr), -EMSGSIZE);
        hdr[3] = hdr[4] = 0xff;
        assert_int_equal(tlsnic_rec_parse_header(key, hdr), -EMSGSIZE);
        tlsnic_rec_key_free(key);
    }
}

static void test_record_shorter_than_its_overhead_is_ebadmsg(void **state)
{
    for (size_t c = 0; c < N_COMBOS; c++) {
        tlsnic_rec_key *key = new_key(combos[c], 0);
        size_t min_data = tlsnic_rec_key_explicit_nonce_len(key) + TLSNIC_REC_TAG_LEN;
        uint8_t rec[64] = {TLSNIC_CT_APPLICATION_DATA, 3, 3, 0, (uint8_t)(min_data - 1)};
        assert_int_equal(tlsnic_rec_parse_header(key, rec), -EBADMSG);
        assert_int_equal(open_with_fresh_key(combos[c], rec, 5 + min_data - 1), -EBADMSG);
        tlsnic_rec_key_free(key);
    }
}

static void test_truncated_or_overlong_record_is_ebadmsg(void **state)
{
    for (size_t c = 0; c < N_COMBOS; c++) {
        uint8_t rec[256];
        size_t rec_len = sealed_record(combos[c], 40, rec, sizeof(rec));
        assert_int_equal(open_with_fresh_key(combos[c], rec, rec_len - 1), -EBADMSG);
        assert_int_equal(open_with_fresh_key(combos[c], rec, 3), -EBADMSG);
        assert_int_equal(open_with_fresh_key(combos[c], rec, rec_len + 1), -EBADMSG);
    }
}

/* Seals a TLS 1.3 record whose inner plaintext is given verbatim (content, type, padding)
 * through the streaming API, which does not add a type byte itself. */
static size_t seal_tls13_inner(struct combo c, const uint8_t *inner, size_t inner_len,
                               uint8_t *rec)
{
    tlsnic_rec_key *key = new_key(c, 0);
    size_t data_len = inner_len + TLSNIC_REC_TAG_LEN;
    rec[0] = TLSNIC_CT_APPLICATION_DATA;
    rec[1] = rec[2] = 3;
    rec[3] = (uint8_t)(data_len >> 8);
    rec[4] = (uint8_t)data_len;
    struct tlsnic_rec_stream s;
    assert_int_equal(tlsnic_rec_stream_init(&s), 0);
    assert_int_equal(tlsnic_rec_stream_begin(&s, key, 1, 0, rec, NULL), 0);
    assert_int_equal(tlsnic_rec_stream_update(&s, inner, rec + 5, inner_len), 0);
    assert_int_equal(tlsnic_rec_stream_seal_final(&s, rec + 5 + inner_len), 0);
    tlsnic_rec_stream_cleanup(&s);
    tlsnic_rec_key_free(key);
    return 5 + data_len;
}

static void test_tls13_padding_is_stripped_on_open(void **state)
{
    for (size_t c = 3; c < N_COMBOS; c++) {
        uint8_t inner[40] = {'h', 'i', TLSNIC_CT_HANDSHAKE}; /* then 37 zero bytes of padding */
        uint8_t rec[128], type, *content;
        size_t rec_len = seal_tls13_inner(combos[c], inner, sizeof(inner), rec), content_len;
        tlsnic_rec_key *key = new_key(combos[c], 0);
        assert_int_equal(tlsnic_rec_open(key, rec, rec_len, &type, &content, &content_len), 0);
        assert_int_equal(type, TLSNIC_CT_HANDSHAKE);
        assert_int_equal(content_len, 2);
        assert_memory_equal(content, "hi", 2);
        tlsnic_rec_key_free(key);
    }
}

static void test_tls13_record_of_only_padding_is_ebadmsg(void **state)
{
    for (size_t c = 3; c < N_COMBOS; c++) {
        uint8_t inner[8] = {0}, rec[64];
        size_t rec_len = seal_tls13_inner(combos[c], inner, sizeof(inner), rec);
        assert_int_equal(open_with_fresh_key(combos[c], rec, rec_len), -EBADMSG);
    }
}

/* What a device that decrypted a record hands the host: the record with its body in the
 * clear (the keystream XORed in place; header, nonce and tag as on the wire). */
static void device_decrypt(struct combo c, uint8_t *rec, size_t rec_len, uint64_t rec_seq)
{
    tlsnic_rec_key *key = new_key(c, 0);
    struct tlsnic_rec_keystream ks;
    size_t hn = 5 + tlsnic_rec_key_explicit_nonce_len(key);
    assert_int_equal(tlsnic_rec_keystream_init(&ks), 0);
    assert_int_equal(tlsnic_rec_keystream_xor(&ks, key, rec_seq, hn > 5 ? rec + 5 : NULL, 0,
                                              rec + hn, rec + hn, rec_len - hn - 16),
                     0);
    tlsnic_rec_keystream_cleanup(&ks);
    tlsnic_rec_key_free(key);
}

static void test_accept_takes_device_plaintext_as_the_next_record(void **state)
{
    for (size_t c = 0; c < N_COMBOS; c++) {
        tlsnic_rec_key *tx = new_key(combos[c], 0), *rx = new_key(combos[c], 0);
        uint8_t rec[2][128], type, *content;
        size_t rec_len[2], content_len;
        for (int i = 0; i < 2; i++) {
            assert_int_equal(tlsnic_rec_seal(tx, i ? TLSNIC_CT_ALERT : TLSNIC_CT_APPLICATION_DATA,
                                             (const uint8_t *)"record", 6, rec[i], 128, &rec_len[i]),
                             0);
            device_decrypt(combos[c], rec[i], rec_len[i], (uint64_t)i);
        }
        assert_int_equal(tlsnic_rec_accept(rx, rec[0], rec_len[0], &type, &content, &content_len), 0);
        assert_int_equal(type, TLSNIC_CT_APPLICATION_DATA);
        assert_int_equal(content_len, 6);
        assert_memory_equal(content, "record", 6);
        assert_int_equal(tlsnic_rec_key_next_seq(rx), 1);
        assert_int_equal(tlsnic_rec_accept(rx, rec[1], rec_len[1], &type, &content, &content_len), 0);
        assert_int_equal(type, TLSNIC_CT_ALERT);
        assert_memory_equal(content, "record", 6);
        tlsnic_rec_key_free(tx);
        tlsnic_rec_key_free(rx);
    }
}

static void test_accept_strips_tls13_padding_and_finds_the_inner_type(void **state)
{
    for (size_t c = 3; c < N_COMBOS; c++) {
        uint8_t inner[40] = {'h', 'i', TLSNIC_CT_HANDSHAKE}, rec[128], type, *content;
        size_t rec_len = seal_tls13_inner(combos[c], inner, sizeof(inner), rec), content_len;
        device_decrypt(combos[c], rec, rec_len, 0);
        tlsnic_rec_key *key = new_key(combos[c], 0);
        assert_int_equal(tlsnic_rec_accept(key, rec, rec_len, &type, &content, &content_len), 0);
        assert_int_equal(type, TLSNIC_CT_HANDSHAKE);
        assert_int_equal(content_len, 2);
        assert_memory_equal(content, "hi", 2);
        tlsnic_rec_key_free(key);
    }
}

static void test_accept_refuses_what_open_refuses_and_keeps_the_sequence(void **state)
{
    for (size_t c = 0; c < N_COMBOS; c++) {
        tlsnic_rec_key *tx = new_key(combos[c], 0), *rx = new_key(combos[c], 0);
        uint8_t rec[128], type, *content;
        size_t rec_len, content_len;
        assert_int_equal(tlsnic_rec_seal(tx, TLSNIC_CT_APPLICATION_DATA, (const uint8_t *)"x", 1,
                                         rec, sizeof(rec), &rec_len),
                         0);
        assert_int_equal(tlsnic_rec_accept(rx, rec, rec_len - 1, &type, &content, &content_len),
                         -EBADMSG);
        rec[1] = 2;
        assert_int_equal(tlsnic_rec_accept(rx, rec, rec_len, &type, &content, &content_len),
                         -EINVAL);
        assert_int_equal(tlsnic_rec_key_next_seq(rx), 0);
        tlsnic_rec_key_free(tx);
        tlsnic_rec_key_free(rx);
    }
    for (size_t c = 3; c < N_COMBOS; c++) { /* all padding: no content type */
        uint8_t inner[8] = {0}, rec[64], type, *content;
        size_t rec_len = seal_tls13_inner(combos[c], inner, sizeof(inner), rec), content_len;
        device_decrypt(combos[c], rec, rec_len, 0);
        tlsnic_rec_key *key = new_key(combos[c], 0);
        assert_int_equal(tlsnic_rec_accept(key, rec, rec_len, &type, &content, &content_len),
                         -EBADMSG);
        tlsnic_rec_key_free(key);
    }
}

static void test_accept_header_checks_length_and_advances_the_sequence(void **state)
{
    for (size_t c = 0; c < N_COMBOS; c++) {
        tlsnic_rec_key *tx = new_key(combos[c], 0), *rx = new_key(combos[c], 0);
        uint8_t rec[128];
        size_t rec_len;
        assert_int_equal(tlsnic_rec_seal(tx, TLSNIC_CT_APPLICATION_DATA, (const uint8_t *)"seven!!", 7,
                                         rec, sizeof(rec), &rec_len),
                         0);
        size_t body = rec_len - 5 - tlsnic_rec_key_explicit_nonce_len(rx) - 16;
        assert_int_equal(tlsnic_rec_accept_header(rx, rec, rec_len - 1), -EBADMSG);
        assert_int_equal(tlsnic_rec_key_next_seq(rx), 0);
        assert_int_equal(tlsnic_rec_accept_header(rx, rec, rec_len), (int)body);
        assert_int_equal(body, combos[c].version == TLS_1_3_VERSION ? 8 : 7);
        assert_int_equal(tlsnic_rec_key_next_seq(rx), 1);
        rec[2] = 1;
        assert_int_equal(tlsnic_rec_accept_header(rx, rec, rec_len), -EINVAL);
        assert_int_equal(tlsnic_rec_key_next_seq(rx), 1);
        tlsnic_rec_key_free(tx);
        tlsnic_rec_key_free(rx);
    }
}

static void test_sequence_number_never_wraps(void **state)
{
    for (size_t c = 0; c < N_COMBOS; c++) {
        tlsnic_rec_key *tx = new_key(combos[c], UINT64_MAX - 1),
                       *rx = new_key(combos[c], UINT64_MAX - 1);
        uint8_t rec[3][64], one = '1';
        size_t rec_len[3];
        assert_int_equal(tlsnic_rec_seal(tx, TLSNIC_CT_APPLICATION_DATA, &one, 1, rec[0], 64,
                                         &rec_len[0]),
                         0);
        assert_int_equal(tlsnic_rec_seal(tx, TLSNIC_CT_APPLICATION_DATA, &one, 1, rec[1], 64,
                                         &rec_len[1]),
                         0); /* sequence 2^64-1 is the last one */
        assert_int_equal(tlsnic_rec_seal(tx, TLSNIC_CT_APPLICATION_DATA, &one, 1, rec[2], 64,
                                         &rec_len[2]),
                         -EOVERFLOW);
        uint8_t type, *content;
        size_t content_len;
        assert_int_equal(tlsnic_rec_open(rx, rec[0], rec_len[0], &type, &content, &content_len), 0);
        assert_int_equal(tlsnic_rec_open(rx, rec[1], rec_len[1], &type, &content, &content_len), 0);
        assert_int_equal(tlsnic_rec_open(rx, rec[1], rec_len[1], &type, &content, &content_len),
                         -EOVERFLOW);
        tlsnic_rec_key_free(tx);
        tlsnic_rec_key_free(rx);
    }
}

static void test_stream_refuses_bytes_past_the_record_body(void **state)
{
    tlsnic_rec_key *key = new_key(combos[4], 0);
    uint8_t hdr[5] = {TLSNIC_CT_APPLICATION_DATA, 3, 3, 0, 16 + 10}, buf[32] = {0}, tag[16];
    struct tlsnic_rec_stream s;
    assert_int_equal(tlsnic_rec_stream_init(&s), 0);
    assert_int_equal(tlsnic_rec_stream_begin(&s, key, 1, 0, hdr, NULL), 0);
    assert_int_equal(tlsnic_rec_stream_update(&s, buf, buf, 11), -EINVAL);
    assert_int_equal(tlsnic_rec_stream_update(&s, buf, buf, 6), 0);
    assert_int_equal(tlsnic_rec_stream_seal_final(&s, tag), -EINVAL); /* 4 bytes missing */
    assert_int_equal(tlsnic_rec_stream_update(&s, buf, buf, 5), -EINVAL);
    assert_int_equal(tlsnic_rec_stream_update(&s, buf, buf, 4), 0);
    assert_int_equal(tlsnic_rec_stream_seal_final(&s, tag), 0);
    assert_int_equal(tlsnic_rec_stream_update(&s, buf, buf, 1), -EINVAL); /* record is over */
    tlsnic_rec_stream_cleanup(&s);
    tlsnic_rec_key_free(key);
}

static void test_stream_begin_checks_explicit_nonce_presence(void **state)
{
    tlsnic_rec_key *gcm12 = new_key(combos[0], 0), *chacha12 = new_key(combos[2], 0);
    uint8_t hdr[5] = {TLSNIC_CT_APPLICATION_DATA, 3, 3, 0, 8 + 16 + 1}, nonce[8] = {0};
    struct tlsnic_rec_stream s;
    assert_int_equal(tlsnic_rec_stream_init(&s), 0);
    assert_int_equal(tlsnic_rec_stream_begin(&s, gcm12, 1, 0, hdr, NULL), -EINVAL);
    assert_int_equal(tlsnic_rec_stream_begin(&s, chacha12, 1, 0, hdr, nonce), -EINVAL);
    assert_int_equal(tlsnic_rec_stream_begin(&s, gcm12, 1, 0, hdr, nonce), 0);
    tlsnic_rec_stream_cleanup(&s);
    tlsnic_rec_key_free(gcm12);
    tlsnic_rec_key_free(chacha12);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc8448_client_application_data_seals_to_published_record),
        cmocka_unit_test(test_rfc8448_server_application_data_opens_to_published_payload),
        cmocka_unit_test(test_rfc8448_record_streamed_in_pieces_matches_published_record),
        cmocka_unit_test(test_keystream_matches_gcm_spec_vector_aes128),
        cmocka_unit_test(test_keystream_matches_gcm_spec_vector_aes256),
        cmocka_unit_test(test_keystream_matches_rfc8439_chacha20_vector),
        cmocka_unit_test(test_seal_then_open_round_trips_every_combination_and_size),
        cmocka_unit_test(test_seal_in_place_gives_same_record_as_out_of_place),
        cmocka_unit_test(test_tls12_record_carries_its_content_type_in_the_header),
        cmocka_unit_test(test_tls13_record_hides_its_content_type),
        cmocka_unit_test(test_streaming_in_random_pieces_with_checkpoint_equals_one_shot),
        cmocka_unit_test(test_streaming_open_in_pieces_recovers_content_and_checks_tag),
        cmocka_unit_test(test_keystream_at_any_offset_matches_sealed_body),
        cmocka_unit_test(test_crypto_info_with_unknown_version_is_einval),
        cmocka_unit_test(test_crypto_info_with_unknown_cipher_is_einval),
        cmocka_unit_test(test_crypto_info_with_cipher_tlsnic_does_not_offload_is_eopnotsupp),
        cmocka_unit_test(test_crypto_info_with_wrong_length_is_einval),
        cmocka_unit_test(test_software_only_ciphers_seal_open_and_refuse_streaming),
        cmocka_unit_test(test_aria_with_tls13_is_einval),
        cmocka_unit_test(test_key_export_reports_advanced_sequence_and_explicit_nonce),
        cmocka_unit_test(test_seal_of_more_than_2_14_bytes_is_emsgsize),
        cmocka_unit_test(test_seal_into_too_small_buffer_is_enobufs_and_writes_nothing),
        cmocka_unit_test(test_open_with_any_flipped_bit_is_ebadmsg),
        cmocka_unit_test(test_open_with_wrong_sequence_number_is_ebadmsg),
        cmocka_unit_test(test_open_with_wrong_version_bytes_is_einval),
        cmocka_unit_test(test_oversized_record_is_emsgsize),
        cmocka_unit_test(test_record_shorter_than_its_overhead_is_ebadmsg),
        cmocka_unit_test(test_truncated_or_overlong_record_is_ebadmsg),
        cmocka_unit_test(test_tls13_padding_is_stripped_on_open),
        cmocka_unit_test(test_tls13_record_of_only_padding_is_ebadmsg),
        cmocka_unit_test(test_sequence_number_never_wraps),
        cmocka_unit_test(test_accept_takes_device_plaintext_as_the_next_record),
        cmocka_unit_test(test_accept_header_checks_length_and_advances_the_sequence),
        cmocka_unit_test(test_accept_strips_tls13_padding_and_finds_the_inner_type),
        cmocka_unit_test(test_accept_refuses_what_open_refuses_and_keeps_the_sequence),
        cmocka_unit_test(test_stream_refuses_bytes_past_the_record_body),
        cmocka_unit_test(test_stream_begin_checks_explicit_nonce_presence),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
