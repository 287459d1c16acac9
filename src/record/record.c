/*
 * TLS record protection on OpenSSL EVP. See tlsnic/record.h (src/record/include) for the contract.
 *
 * Nonces (RFC 5288 / RFC 7905 / RFC 8446 5.3):
 *   TLS 1.2 AES-GCM:   salt (4) || explicit nonce (8, carried in the record)
 *   everything else:   static IV (12) XOR (0^32 || seq as 64-bit big endian)
 * Additional data:
 *   TLS 1.2: seq (8) || type (1) || 0x0303 || plaintext length (2)
 *   TLS 1.3: the record header (5)
 */
#include "tlsnic/record.h"

#include <errno.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define NONCE_LEN 12
#define TLS12_AAD_LEN 13
#define LEGACY_VERSION_MAJOR 3
#define LEGACY_VERSION_MINOR 3

/* One error check for every EVP call: libcrypto failures that are not authentication
 * failures mean a broken context, reported as -EINVAL (the kernel's crypto API does the
 * same for a misconfigured tfm). */
#define EVP_CHECK(call)                                                                       \
    do {                                                                                      \
        if ((call) != 1)                                                                      \
            return -EINVAL;                                                                   \
    } while (0)

/*
 * Per-record AEAD calls, the cheap way: OpenSSL 3 turns the legacy ctrl calls into
 * parameter lists it parses by name (strcmp) on every record; asking with the parameter
 * itself skips one round of that (a 1441-byte AES-128-GCM record: 495 -> 472 ns).
 */
static int aead_set_nonce(EVP_CIPHER_CTX *evp, const uint8_t *nonce, int enc)
{
    return EVP_CipherInit_ex2(evp, NULL, NULL, nonce, enc, NULL);
}

static int aead_get_tag(EVP_CIPHER_CTX *evp, uint8_t tag[TLSNIC_REC_TAG_LEN])
{
    OSSL_PARAM params[2] = {
        OSSL_PARAM_construct_octet_string(OSSL_CIPHER_PARAM_AEAD_TAG, tag, TLSNIC_REC_TAG_LEN),
        OSSL_PARAM_construct_end()};
    return EVP_CIPHER_CTX_get_params(evp, params);
}

static int aead_set_tag(EVP_CIPHER_CTX *evp, uint8_t tag[TLSNIC_REC_TAG_LEN])
{
    OSSL_PARAM params[2] = {
        OSSL_PARAM_construct_octet_string(OSSL_CIPHER_PARAM_AEAD_TAG, tag, TLSNIC_REC_TAG_LEN),
        OSSL_PARAM_construct_end()};
    return EVP_CIPHER_CTX_set_params(evp, params);
}

struct tlsnic_rec_key {
    union tlsnic_crypto_info info; /* as given; rec_seq / iv are the starting values */
    size_t info_len;
    uint64_t id; /* unique per key object, so cached EVP key schedules are never stale */
    uint16_t version;
    uint16_t cipher;
    const EVP_CIPHER *aead;
    const EVP_CIPHER *keystream; /* AES-CTR or ChaCha20 with the same key; NULL: the key
                                    does not stream (CCM, and what a device never takes) */
    EVP_CIPHER *fetched[2];      /* aead / keystream when fetched by name (freed with the key) */
    int ccm;                     /* AES-CCM: one-shot EVP calls, length and tag up front */
    const uint8_t *key_bytes;    /* points into info */
    size_t key_len;
    uint8_t static_iv[NONCE_LEN]; /* TLS 1.2 GCM: salt then zeros; else the 12-byte IV */
    size_t explicit_nonce_len;
    uint64_t initial_seq;
    uint64_t initial_explicit; /* TLS 1.2 GCM: explicit nonce of record initial_seq */
    uint64_t next_seq;
    int seq_exhausted; /* sequence number 2^64-1 was used: no record may follow */
    EVP_CIPHER_CTX *evp; /* whole-record seal/open */
    int evp_keyed_for;   /* -1: not keyed, 1: encrypt, 0: decrypt */
};

static atomic_uint_fast64_t next_key_id = 1;

static uint64_t load_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | p[i];
    return v;
}

static void store_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

static void store_be16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

size_t tlsnic_crypto_info_size(uint16_t cipher_type)
{
    switch (cipher_type) {
    case TLS_CIPHER_AES_GCM_128:
        return sizeof(struct tls12_crypto_info_aes_gcm_128);
    case TLS_CIPHER_AES_GCM_256:
        return sizeof(struct tls12_crypto_info_aes_gcm_256);
    case TLS_CIPHER_CHACHA20_POLY1305:
        return sizeof(struct tls12_crypto_info_chacha20_poly1305);
    case TLS_CIPHER_AES_CCM_128:
        return sizeof(struct tls12_crypto_info_aes_ccm_128);
    case TLS_CIPHER_ARIA_GCM_128:
        return sizeof(struct tls12_crypto_info_aria_gcm_128);
    case TLS_CIPHER_ARIA_GCM_256:
        return sizeof(struct tls12_crypto_info_aria_gcm_256);
    case TLS_CIPHER_SM4_GCM:
        return sizeof(struct tls12_crypto_info_sm4_gcm);
    case TLS_CIPHER_SM4_CCM:
        return sizeof(struct tls12_crypto_info_sm4_ccm);
    default:
        return 0;
    }
}

const char *tlsnic_cipher_name(uint16_t cipher_type)
{
    switch (cipher_type) {
    case TLS_CIPHER_AES_GCM_128:
        return "AES-128-GCM";
    case TLS_CIPHER_AES_GCM_256:
        return "AES-256-GCM";
    case TLS_CIPHER_CHACHA20_POLY1305:
        return "CHACHA20-POLY1305";
    case TLS_CIPHER_AES_CCM_128:
        return "AES-128-CCM";
    case TLS_CIPHER_ARIA_GCM_128:
        return "ARIA-128-GCM";
    case TLS_CIPHER_ARIA_GCM_256:
        return "ARIA-256-GCM";
    case TLS_CIPHER_SM4_GCM:
        return "SM4-GCM";
    case TLS_CIPHER_SM4_CCM:
        return "SM4-CCM";
    default:
        return "unknown";
    }
}

/* The ciphers a device can take: those the streaming API runs. */
static int cipher_streams(uint16_t cipher_type)
{
    return cipher_type == TLS_CIPHER_AES_GCM_128 || cipher_type == TLS_CIPHER_AES_GCM_256 ||
           cipher_type == TLS_CIPHER_CHACHA20_POLY1305;
}

/* The kernel's checks (tls_main.c): version, a cipher the UAPI knows (ARIA only with TLS
 * 1.2), the length of that cipher's struct. */
static int crypto_info_check_uapi(const void *crypto_info, size_t info_len)
{
    struct tls_crypto_info hdr;

    if (crypto_info == NULL || info_len < sizeof(hdr))
        return -EINVAL;
    memcpy(&hdr, crypto_info, sizeof(hdr));
    if (hdr.version != TLS_1_2_VERSION && hdr.version != TLS_1_3_VERSION)
        return -EINVAL;
    size_t want = tlsnic_crypto_info_size(hdr.cipher_type);
    if (want == 0)
        return -EINVAL;
    if ((hdr.cipher_type == TLS_CIPHER_ARIA_GCM_128 || hdr.cipher_type == TLS_CIPHER_ARIA_GCM_256) &&
        hdr.version != TLS_1_2_VERSION)
        return -EINVAL;
    if (info_len != want)
        return -EINVAL;
    return 0;
}

int tlsnic_crypto_info_check(const void *crypto_info, size_t info_len)
{
    int rc = crypto_info_check_uapi(crypto_info, info_len);
    if (rc < 0)
        return rc;
    struct tls_crypto_info hdr;
    memcpy(&hdr, crypto_info, sizeof(hdr));
    return cipher_streams(hdr.cipher_type) ? 0 : -EOPNOTSUPP;
}

/* A cipher of this libcrypto by name; NULL if it lacks it (then the kernel's ENOENT). */
static const EVP_CIPHER *fetch(tlsnic_rec_key *key, int slot, const char *name)
{
    key->fetched[slot] = EVP_CIPHER_fetch(NULL, name, NULL);
    return key->fetched[slot];
}

int tlsnic_rec_key_new(tlsnic_rec_key **out, const void *crypto_info, size_t info_len)
{
    if (out == NULL)
        return -EINVAL;
    *out = NULL;
    int rc = crypto_info_check_uapi(crypto_info, info_len);
    if (rc < 0)
        return rc;

    tlsnic_rec_key *key = OPENSSL_zalloc(sizeof(*key));
    if (key == NULL)
        return -ENOMEM;
    memcpy(&key->info, crypto_info, info_len);
    key->info_len = info_len;
    key->id = atomic_fetch_add(&next_key_id, 1);
    key->version = key->info.info.version;
    key->cipher = key->info.info.cipher_type;
    key->evp_keyed_for = -1;

    const uint8_t *rec_seq;
    switch (key->cipher) {
    case TLS_CIPHER_AES_GCM_128: {
        const struct tls12_crypto_info_aes_gcm_128 *ci = &key->info.aes_gcm_128;
        key->aead = EVP_aes_128_gcm();
        key->keystream = EVP_aes_128_ctr();
        key->key_bytes = ci->key;
        key->key_len = sizeof(ci->key);
        memcpy(key->static_iv, ci->salt, sizeof(ci->salt));
        if (key->version == TLS_1_3_VERSION)
            memcpy(key->static_iv + sizeof(ci->salt), ci->iv, sizeof(ci->iv));
        key->initial_explicit = load_be64(ci->iv);
        rec_seq = ci->rec_seq;
        break;
    }
    case TLS_CIPHER_AES_GCM_256: {
        const struct tls12_crypto_info_aes_gcm_256 *ci = &key->info.aes_gcm_256;
        key->aead = EVP_aes_256_gcm();
        key->keystream = EVP_aes_256_ctr();
        key->key_bytes = ci->key;
        key->key_len = sizeof(ci->key);
        memcpy(key->static_iv, ci->salt, sizeof(ci->salt));
        if (key->version == TLS_1_3_VERSION)
            memcpy(key->static_iv + sizeof(ci->salt), ci->iv, sizeof(ci->iv));
        key->initial_explicit = load_be64(ci->iv);
        rec_seq = ci->rec_seq;
        break;
    }
    case TLS_CIPHER_CHACHA20_POLY1305: {
        const struct tls12_crypto_info_chacha20_poly1305 *ci = &key->info.chacha20_poly1305;
        key->aead = EVP_chacha20_poly1305();
        key->keystream = EVP_chacha20();
        key->key_bytes = ci->key;
        key->key_len = sizeof(ci->key);
        memcpy(key->static_iv, ci->iv, sizeof(ci->iv));
        rec_seq = ci->rec_seq;
        break;
    }
    default: {
        /*
         * AES-CCM-128, ARIA-GCM, SM4-GCM / SM4-CCM: the layout of AES-GCM (salt, explicit
         * nonce in TLS 1.2), software only (no keystream: a device never takes them). The
         * 128-bit ones share AES-GCM-128's struct layout, ARIA-256 AES-GCM-256's.
         */
        static const struct {
            uint16_t cipher;
            const char *aead;
            int ccm;
        } sw[] = {
            {TLS_CIPHER_AES_CCM_128, "AES-128-CCM", 1},
            {TLS_CIPHER_ARIA_GCM_128, "ARIA-128-GCM", 0},
            {TLS_CIPHER_ARIA_GCM_256, "ARIA-256-GCM", 0},
            {TLS_CIPHER_SM4_GCM, "SM4-GCM", 0},
            {TLS_CIPHER_SM4_CCM, "SM4-CCM", 1},
        };
        size_t i = 0;
        while (i < sizeof(sw) / sizeof(sw[0]) && sw[i].cipher != key->cipher)
            i++;
        int wide = key->cipher == TLS_CIPHER_ARIA_GCM_256;
        const uint8_t *k = wide ? key->info.aes_gcm_256.key : key->info.aes_gcm_128.key;
        const uint8_t *salt = wide ? key->info.aes_gcm_256.salt : key->info.aes_gcm_128.salt;
        const uint8_t *iv = wide ? key->info.aes_gcm_256.iv : key->info.aes_gcm_128.iv;
        key->aead = i < sizeof(sw) / sizeof(sw[0]) ? fetch(key, 0, sw[i].aead) : NULL;
        if (key->aead == NULL) {
            tlsnic_rec_key_free(key);
            return -ENOENT; /* this libcrypto lacks it: crypto_alloc_aead's answer */
        }
        key->ccm = sw[i].ccm;
        key->key_bytes = k;
        key->key_len = wide ? 32 : 16;
        memcpy(key->static_iv, salt, 4);
        if (key->version == TLS_1_3_VERSION)
            memcpy(key->static_iv + 4, iv, 8);
        key->initial_explicit = load_be64(iv);
        rec_seq = wide ? key->info.aes_gcm_256.rec_seq : key->info.aes_gcm_128.rec_seq;
        break;
    }
    }
    key->explicit_nonce_len = (key->version == TLS_1_2_VERSION &&
                               key->cipher != TLS_CIPHER_CHACHA20_POLY1305) /* RFC 5288, 6655, 6209 */
                                  ? TLSNIC_REC_EXPLICIT_NONCE_LEN
                                  : 0;
    key->initial_seq = load_be64(rec_seq);
    key->next_seq = key->initial_seq;

    key->evp = EVP_CIPHER_CTX_new();
    if (key->evp == NULL || key->aead == NULL ||
        (key->keystream == NULL && cipher_streams(key->cipher))) {
        tlsnic_rec_key_free(key);
        return -ENOMEM;
    }
    *out = key;
    return 0;
}

void tlsnic_rec_key_free(tlsnic_rec_key *key)
{
    if (key == NULL)
        return;
    EVP_CIPHER_CTX_free(key->evp); /* libcrypto cleanses the key schedule */
    EVP_CIPHER_free(key->fetched[0]);
    EVP_CIPHER_free(key->fetched[1]);
    OPENSSL_clear_free(key, sizeof(*key));
}

uint16_t tlsnic_rec_key_version(const tlsnic_rec_key *key)
{
    return key->version;
}

uint16_t tlsnic_rec_key_cipher(const tlsnic_rec_key *key)
{
    return key->cipher;
}

uint64_t tlsnic_rec_key_next_seq(const tlsnic_rec_key *key)
{
    return key->next_seq;
}

size_t tlsnic_rec_key_explicit_nonce_len(const tlsnic_rec_key *key)
{
    return key->explicit_nonce_len;
}

/* Bytes of a record besides its header that are not content: explicit nonce, tag, and
 * for TLS 1.3 the inner content type (the kernel's cipher_overhead + tail_size). */
static size_t body_overhead(const tlsnic_rec_key *key)
{
    return key->explicit_nonce_len + TLSNIC_REC_TAG_LEN +
           (key->version == TLS_1_3_VERSION ? 1 : 0);
}

size_t tlsnic_rec_key_overhead(const tlsnic_rec_key *key)
{
    return TLSNIC_REC_HDR_LEN + body_overhead(key);
}

/* Explicit nonce of record rec_seq: advances with the sequence number, as the kernel
 * advances crypto_info->iv, from whatever value the program installed. */
static uint64_t explicit_nonce_of(const tlsnic_rec_key *key, uint64_t rec_seq)
{
    return key->initial_explicit + (rec_seq - key->initial_seq);
}

int tlsnic_rec_key_export(const tlsnic_rec_key *key, union tlsnic_crypto_info *out, size_t cap)
{
    if (key == NULL || out == NULL)
        return -EINVAL;
    if (cap < key->info_len)
        return -ENOBUFS;
    memcpy(out, &key->info, key->info_len);
    switch (key->cipher) {
    case TLS_CIPHER_AES_GCM_128:
        store_be64(out->aes_gcm_128.rec_seq, key->next_seq);
        if (key->version == TLS_1_2_VERSION)
            store_be64(out->aes_gcm_128.iv, explicit_nonce_of(key, key->next_seq));
        break;
    case TLS_CIPHER_AES_GCM_256:
        store_be64(out->aes_gcm_256.rec_seq, key->next_seq);
        if (key->version == TLS_1_2_VERSION)
            store_be64(out->aes_gcm_256.iv, explicit_nonce_of(key, key->next_seq));
        break;
    case TLS_CIPHER_CHACHA20_POLY1305:
        store_be64(out->chacha20_poly1305.rec_seq, key->next_seq);
        break;
    case TLS_CIPHER_ARIA_GCM_256: /* AES-GCM-256's layout */
        store_be64(out->aes_gcm_256.rec_seq, key->next_seq);
        if (key->version == TLS_1_2_VERSION)
            store_be64(out->aes_gcm_256.iv, explicit_nonce_of(key, key->next_seq));
        break;
    default: /* AES-GCM-128's layout: CCM, ARIA-128, SM4 */
        store_be64(out->aes_gcm_128.rec_seq, key->next_seq);
        if (key->version == TLS_1_2_VERSION)
            store_be64(out->aes_gcm_128.iv, explicit_nonce_of(key, key->next_seq));
        break;
    }
    return (int)key->info_len;
}

static void make_nonce(const tlsnic_rec_key *key, uint64_t rec_seq,
                       const uint8_t *explicit_nonce, uint8_t nonce[NONCE_LEN])
{
    memcpy(nonce, key->static_iv, NONCE_LEN);
    if (key->explicit_nonce_len != 0) {
        memcpy(nonce + 4, explicit_nonce, TLSNIC_REC_EXPLICIT_NONCE_LEN);
        return;
    }
    uint8_t seq_be[8];
    store_be64(seq_be, rec_seq);
    for (int i = 0; i < 8; i++)
        nonce[4 + i] ^= seq_be[i];
}

/* Additional data of a record whose body (ciphertext without explicit nonce and tag) is
 * body_len bytes. Returns the AAD length. */
static size_t make_aad(const tlsnic_rec_key *key, uint64_t rec_seq,
                       const uint8_t hdr[TLSNIC_REC_HDR_LEN], size_t body_len,
                       uint8_t aad[TLS12_AAD_LEN])
{
    if (key->version == TLS_1_3_VERSION) {
        memcpy(aad, hdr, TLSNIC_REC_HDR_LEN);
        return TLSNIC_REC_HDR_LEN;
    }
    store_be64(aad, rec_seq);
    aad[8] = hdr[0];
    aad[9] = LEGACY_VERSION_MAJOR;
    aad[10] = LEGACY_VERSION_MINOR;
    store_be16(aad + 11, (uint16_t)body_len);
    return TLS12_AAD_LEN;
}

/* The kernel's tls_rx_msg_size checks, in its order and with its errnos. Returns the
 * length field of the header (bytes after the header). */
static int check_header(const tlsnic_rec_key *key, const uint8_t hdr[TLSNIC_REC_HDR_LEN])
{
    size_t data_len = ((size_t)hdr[3] << 8) | hdr[4];
    if (data_len > TLSNIC_REC_MAX_PLAINTEXT + body_overhead(key))
        return -EMSGSIZE;
    if (data_len < key->explicit_nonce_len + TLSNIC_REC_TAG_LEN)
        return -EBADMSG;
    if (hdr[1] != LEGACY_VERSION_MAJOR || hdr[2] != LEGACY_VERSION_MINOR)
        return -EINVAL; /* last: a header both too long and of another version is EMSGSIZE */
    return (int)data_len;
}

int tlsnic_rec_parse_header(const tlsnic_rec_key *key, const uint8_t hdr[TLSNIC_REC_HDR_LEN])
{
    if (key == NULL || hdr == NULL)
        return -EINVAL;
    int data_len = check_header(key, hdr);
    if (data_len < 0)
        return data_len;
    return TLSNIC_REC_HDR_LEN + data_len;
}

/* Keys the whole-record EVP context for one direction of use (once, in practice). */
static int key_evp_for(tlsnic_rec_key *key, int enc)
{
    if (key->evp_keyed_for == enc)
        return 0;
    key->evp_keyed_for = -1;
    EVP_CHECK(EVP_CipherInit_ex(key->evp, key->aead, NULL, key->key_bytes, NULL, enc));
    key->evp_keyed_for = enc;
    return 0;
}

/* Takes the next sequence number, refusing to wrap (a wrap would reuse a nonce). */
static int take_seq(tlsnic_rec_key *key, uint64_t *rec_seq)
{
    if (key->seq_exhausted)
        return -EOVERFLOW;
    *rec_seq = key->next_seq;
    return 0;
}

static void advance_seq(tlsnic_rec_key *key)
{
    if (key->next_seq == UINT64_MAX)
        key->seq_exhausted = 1;
    else
        key->next_seq++;
}

static int ranges_overlap(const uint8_t *a, size_t a_len, const uint8_t *b, size_t b_len)
{
    uintptr_t a0 = (uintptr_t)a, b0 = (uintptr_t)b;
    return a0 < b0 + b_len && b0 < a0 + a_len;
}

/*
 * CCM (RFC 6655 / RFC 8446 with a 16-byte tag) through EVP, which takes a CCM message in
 * one piece: tag length and nonce length first (and on decryption the expected tag), then
 * key and nonce, the message length, the AAD, the message. In place. On decryption a bad
 * tag fails the message update: -EBADMSG.
 */
static int ccm_crypt(tlsnic_rec_key *key, int enc, const uint8_t nonce[NONCE_LEN],
                     const uint8_t *aad, size_t aad_len, uint8_t *buf, size_t len,
                     uint8_t tag[TLSNIC_REC_TAG_LEN])
{
    EVP_CIPHER_CTX *evp = key->evp;
    int outl;
    key->evp_keyed_for = -1; /* re-keyed per record: the whole-record path's cache is not */
    EVP_CHECK(EVP_CipherInit_ex(evp, key->aead, NULL, NULL, NULL, enc));
    EVP_CHECK(EVP_CIPHER_CTX_ctrl(evp, EVP_CTRL_AEAD_SET_IVLEN, NONCE_LEN, NULL));
    EVP_CHECK(EVP_CIPHER_CTX_ctrl(evp, EVP_CTRL_AEAD_SET_TAG, TLSNIC_REC_TAG_LEN, enc ? NULL : tag));
    EVP_CHECK(EVP_CipherInit_ex(evp, NULL, NULL, key->key_bytes, nonce, enc));
    EVP_CHECK(EVP_CipherUpdate(evp, NULL, &outl, NULL, (int)len));
    EVP_CHECK(EVP_CipherUpdate(evp, NULL, &outl, aad, (int)aad_len));
    if (EVP_CipherUpdate(evp, buf, &outl, buf, (int)len) != 1) {
        if (enc)
            return -EINVAL;
        OPENSSL_cleanse(buf, len); /* never leave unauthenticated plaintext behind */
        return -EBADMSG;
    }
    if (enc) {
        uint8_t unused[16];
        EVP_CHECK(EVP_CipherFinal_ex(evp, unused, &outl));
        EVP_CHECK(EVP_CIPHER_CTX_ctrl(evp, EVP_CTRL_AEAD_GET_TAG, TLSNIC_REC_TAG_LEN, tag));
    }
    return 0;
}

int tlsnic_rec_seal(tlsnic_rec_key *key, uint8_t content_type, const uint8_t *content,
                    size_t content_len, uint8_t *out, size_t cap, size_t *out_len)
{
    if (key == NULL || out == NULL || out_len == NULL || (content == NULL && content_len))
        return -EINVAL;
    if (content_len > TLSNIC_REC_MAX_PLAINTEXT)
        return -EMSGSIZE;
    int tls13 = key->version == TLS_1_3_VERSION;
    size_t body_len = content_len + (tls13 ? 1 : 0);
    size_t rec_len = TLSNIC_REC_HDR_LEN + key->explicit_nonce_len + body_len + TLSNIC_REC_TAG_LEN;
    if (cap < rec_len)
        return -ENOBUFS;
    uint8_t *body = out + TLSNIC_REC_HDR_LEN + key->explicit_nonce_len;
    if (content_len != 0 && content != body && ranges_overlap(content, content_len, out, rec_len))
        return -EINVAL;

    uint64_t rec_seq;
    int rc = take_seq(key, &rec_seq);
    if (rc < 0)
        return rc;
    if (!key->ccm) {
        rc = key_evp_for(key, 1);
        if (rc < 0)
            return rc;
    }

    uint8_t *hdr = out;
    hdr[0] = tls13 ? TLSNIC_CT_APPLICATION_DATA : content_type;
    hdr[1] = LEGACY_VERSION_MAJOR;
    hdr[2] = LEGACY_VERSION_MINOR;
    store_be16(hdr + 3, (uint16_t)(rec_len - TLSNIC_REC_HDR_LEN));
    if (key->explicit_nonce_len != 0)
        store_be64(out + TLSNIC_REC_HDR_LEN, explicit_nonce_of(key, rec_seq));

    uint8_t nonce[NONCE_LEN], aad[TLS12_AAD_LEN];
    make_nonce(key, rec_seq, out + TLSNIC_REC_HDR_LEN, nonce);
    size_t aad_len = make_aad(key, rec_seq, hdr, content_len, aad);

    if (key->ccm) { /* one piece: content (and TLS 1.3's type) in place, then encrypted */
        if (content_len != 0 && content != body)
            memcpy(body, content, content_len);
        if (tls13)
            body[content_len] = content_type;
        rc = ccm_crypt(key, 1, nonce, aad, aad_len, body, body_len, body + body_len);
        if (rc < 0)
            return rc;
        advance_seq(key);
        *out_len = rec_len;
        return 0;
    }
    int outl;
    EVP_CHECK(aead_set_nonce(key->evp, nonce, 1));
    EVP_CHECK(EVP_EncryptUpdate(key->evp, NULL, &outl, aad, (int)aad_len));
    if (content_len != 0)
        EVP_CHECK(EVP_EncryptUpdate(key->evp, body, &outl, content, (int)content_len));
    if (tls13)
        EVP_CHECK(EVP_EncryptUpdate(key->evp, body + content_len, &outl, &content_type, 1));
    EVP_CHECK(EVP_EncryptFinal_ex(key->evp, body + body_len, &outl));
    EVP_CHECK(aead_get_tag(key->evp, body + body_len));
    advance_seq(key);
    *out_len = rec_len;
    return 0;
}

/* TLS 1.3 inner plaintext: content || type || zeros. Finds the type from the end. */
static int strip_tls13_padding(const uint8_t *inner, size_t inner_len, uint8_t *content_type,
                               size_t *content_len)
{
    size_t i = inner_len;
    while (i > 0 && inner[i - 1] == 0)
        i--;
    if (i == 0)
        return -EBADMSG; /* all padding, no content type */
    *content_type = inner[i - 1];
    *content_len = i - 1;
    return 0;
}

/* The arguments of an open checked, and rec_len checked to be exactly one whole record:
 * the record's data length (after the header), or -EINVAL / -EBADMSG (truncated, or
 * trailing bytes that belong to no record) / check_header's error. */
static int whole_record_len(const tlsnic_rec_key *key, const uint8_t *rec, size_t rec_len,
                            const uint8_t *content_type, uint8_t *const *content,
                            const size_t *content_len)
{
    if (key == NULL || rec == NULL || content_type == NULL || content == NULL ||
        content_len == NULL)
        return -EINVAL;
    if (rec_len < TLSNIC_REC_HDR_LEN)
        return -EBADMSG;
    int data_len = check_header(key, rec);
    if (data_len < 0)
        return data_len;
    if (rec_len != TLSNIC_REC_HDR_LEN + (size_t)data_len)
        return -EBADMSG;
    return data_len;
}

/* Opens rec as record number rec_seq; the key's counter is the callers' business. */
static int open_as(tlsnic_rec_key *key, uint64_t rec_seq, uint8_t *rec, size_t rec_len,
                   uint8_t *content_type, uint8_t **content, size_t *content_len)
{
    int data_len = whole_record_len(key, rec, rec_len, content_type, content, content_len);
    if (data_len < 0)
        return data_len;

    int rc = key->ccm ? 0 : key_evp_for(key, 0);
    if (rc < 0)
        return rc;

    uint8_t *explicit_nonce = rec + TLSNIC_REC_HDR_LEN;
    uint8_t *body = explicit_nonce + key->explicit_nonce_len;
    size_t body_len = (size_t)data_len - key->explicit_nonce_len - TLSNIC_REC_TAG_LEN;
    uint8_t *tag = body + body_len;

    uint8_t nonce[NONCE_LEN], aad[TLS12_AAD_LEN];
    make_nonce(key, rec_seq, explicit_nonce, nonce);
    size_t aad_len = make_aad(key, rec_seq, rec, body_len, aad);

    if (key->ccm) {
        rc = ccm_crypt(key, 0, nonce, aad, aad_len, body, body_len, tag);
        if (rc < 0)
            return rc;
    } else {
        int outl;
        EVP_CHECK(aead_set_nonce(key->evp, nonce, 0));
        EVP_CHECK(EVP_DecryptUpdate(key->evp, NULL, &outl, aad, (int)aad_len));
        if (body_len != 0)
            EVP_CHECK(EVP_DecryptUpdate(key->evp, body, &outl, body, (int)body_len));
        EVP_CHECK(aead_set_tag(key->evp, tag));
        if (EVP_DecryptFinal_ex(key->evp, tag, &outl) != 1) {
            OPENSSL_cleanse(body, body_len); /* never leave unauthenticated plaintext behind */
            return -EBADMSG;
        }
    }

    if (key->version == TLS_1_3_VERSION) {
        rc = strip_tls13_padding(body, body_len, content_type, content_len);
        if (rc < 0)
            return rc;
    } else {
        *content_type = rec[0];
        *content_len = body_len;
    }
    *content = body;
    return 0;
}

int tlsnic_rec_open(tlsnic_rec_key *key, uint8_t *rec, size_t rec_len, uint8_t *content_type,
                    uint8_t **content, size_t *content_len)
{
    uint64_t rec_seq;
    if (key == NULL)
        return -EINVAL;
    int rc = take_seq(key, &rec_seq);
    if (rc == 0)
        rc = open_as(key, rec_seq, rec, rec_len, content_type, content, content_len);
    if (rc == 0)
        advance_seq(key);
    return rc;
}

int tlsnic_rec_open_at(tlsnic_rec_key *key, uint64_t rec_seq, uint8_t *rec, size_t rec_len,
                       uint8_t *content_type, uint8_t **content, size_t *content_len)
{
    return open_as(key, rec_seq, rec, rec_len, content_type, content, content_len);
}

/* A device-decrypted record's content (tlsnic_rec_accept without the sequence number). */
static int accept_content(tlsnic_rec_key *key, uint8_t *rec, size_t rec_len,
                          uint8_t *content_type, uint8_t **content, size_t *content_len)
{
    int data_len = whole_record_len(key, rec, rec_len, content_type, content, content_len);
    if (data_len < 0)
        return data_len;
    uint8_t *body = rec + TLSNIC_REC_HDR_LEN + key->explicit_nonce_len;
    size_t body_len = (size_t)data_len - key->explicit_nonce_len - TLSNIC_REC_TAG_LEN;
    if (key->version == TLS_1_3_VERSION) {
        int rc = strip_tls13_padding(body, body_len, content_type, content_len);
        if (rc < 0)
            return rc;
    } else {
        *content_type = rec[0];
        *content_len = body_len;
    }
    *content = body;
    return 0;
}

int tlsnic_rec_accept_at(tlsnic_rec_key *key, uint8_t *rec, size_t rec_len,
                         uint8_t *content_type, uint8_t **content, size_t *content_len)
{
    return accept_content(key, rec, rec_len, content_type, content, content_len);
}

int tlsnic_rec_accept(tlsnic_rec_key *key, uint8_t *rec, size_t rec_len, uint8_t *content_type,
                      uint8_t **content, size_t *content_len)
{
    if (key == NULL)
        return -EINVAL;
    uint64_t rec_seq;
    int rc = take_seq(key, &rec_seq);
    if (rc == 0)
        rc = accept_content(key, rec, rec_len, content_type, content, content_len);
    if (rc < 0)
        return rc;
    advance_seq(key);
    return 0;
}

int tlsnic_rec_accept_header(tlsnic_rec_key *key, const uint8_t hdr[TLSNIC_REC_HDR_LEN],
                             size_t rec_len)
{
    if (key == NULL || hdr == NULL)
        return -EINVAL;
    int data_len = check_header(key, hdr);
    if (data_len < 0)
        return data_len;
    if (rec_len != TLSNIC_REC_HDR_LEN + (size_t)data_len)
        return -EBADMSG;
    uint64_t rec_seq;
    int rc = take_seq(key, &rec_seq);
    if (rc < 0)
        return rc;
    advance_seq(key);
    return data_len - (int)key->explicit_nonce_len - TLSNIC_REC_TAG_LEN;
}

/* ------------------------------------------------------------------------------------------ */
/* ChaCha20-Poly1305 streaming (RFC 8439 2.8) composed from EVP ChaCha20 and EVP_MAC Poly1305. */

#define CHACHA_BLOCK 64
#define CHACHA_KS_BATCH 1024 /* libcrypto's widest ChaCha20 batch: 16 blocks */
#define POLY1305_KEY_LEN 32

struct chacha_stream {
    EVP_CIPHER_CTX *chacha; /* keystream generator, continues block by block */
    EVP_MAC_CTX *poly;
    uint64_t keyed_id;
    uint64_t aad_len;
    uint32_t ks_used; /* keystream bytes of ks already applied */
    uint32_t ks_len;  /* keystream bytes in ks */
    uint8_t ks[CHACHA_KS_BATCH];
};

static EVP_MAC *poly1305_mac;
static pthread_once_t poly1305_once = PTHREAD_ONCE_INIT;

static void fetch_poly1305(void)
{
    poly1305_mac = EVP_MAC_fetch(NULL, "POLY1305", NULL);
}

static const uint8_t zero_block[CHACHA_KS_BATCH];

static void chacha_stream_free(struct chacha_stream *cs)
{
    if (cs == NULL)
        return;
    EVP_CIPHER_CTX_free(cs->chacha);
    EVP_MAC_CTX_free(cs->poly);
    OPENSSL_clear_free(cs, sizeof(*cs));
}

static struct chacha_stream *chacha_stream_new(void)
{
    pthread_once(&poly1305_once, fetch_poly1305);
    if (poly1305_mac == NULL)
        return NULL;
    struct chacha_stream *cs = OPENSSL_zalloc(sizeof(*cs));
    if (cs == NULL)
        return NULL;
    cs->chacha = EVP_CIPHER_CTX_new();
    cs->poly = EVP_MAC_CTX_new(poly1305_mac);
    if (cs->chacha == NULL || cs->poly == NULL) {
        chacha_stream_free(cs);
        return NULL;
    }
    return cs;
}

static int poly_update_padded(EVP_MAC_CTX *poly, uint64_t len_so_far)
{
    size_t rem = (size_t)(len_so_far % 16);
    if (rem != 0 && EVP_MAC_update(poly, zero_block, 16 - rem) != 1)
        return -EINVAL;
    return 0;
}

static int chacha_begin(struct chacha_stream *cs, const tlsnic_rec_key *key,
                        const uint8_t nonce[NONCE_LEN], const uint8_t *aad, size_t aad_len)
{
    uint8_t iv[16] = {0}; /* 32-bit little-endian block counter 0, then the nonce */
    memcpy(iv + 4, nonce, NONCE_LEN);
    if (cs->keyed_id != key->id) {
        cs->keyed_id = 0;
        EVP_CHECK(EVP_EncryptInit_ex(cs->chacha, key->keystream, NULL, key->key_bytes, iv));
        cs->keyed_id = key->id;
    } else {
        EVP_CHECK(EVP_EncryptInit_ex(cs->chacha, NULL, NULL, NULL, iv));
    }
    /* block 0 keys Poly1305; the body's keystream starts at block 1 */
    uint8_t block0[CHACHA_BLOCK];
    int outl;
    EVP_CHECK(EVP_EncryptUpdate(cs->chacha, block0, &outl, zero_block, CHACHA_BLOCK));
    int ok = EVP_MAC_init(cs->poly, block0, POLY1305_KEY_LEN, NULL);
    OPENSSL_cleanse(block0, sizeof(block0));
    if (ok != 1)
        return -EINVAL;
    EVP_CHECK(EVP_MAC_update(cs->poly, aad, aad_len));
    cs->aad_len = aad_len;
    cs->ks_used = cs->ks_len = 0;
    return poly_update_padded(cs->poly, aad_len);
}

/* 16 bytes at a time: SSE2 on x86-64, whatever the target has elsewhere. */
typedef uint8_t xor_vec __attribute__((vector_size(16)));

/* XORs len bytes with the keystream. The EVP ChaCha20 context only ever moves in whole
 * batches: spans that cover whole batches are encrypted directly, the rest is XORed with
 * a batch made ahead into cs->ks. */
static int chacha_xor(struct chacha_stream *cs, const uint8_t *in, uint8_t *out, size_t len)
{
    while (len > 0) {
        if (cs->ks_used == cs->ks_len && len >= CHACHA_KS_BATCH) {
            /* whole batches: encrypt straight from in to out, no keystream copy */
            size_t direct = len - len % CHACHA_KS_BATCH;
            int outl;
            EVP_CHECK(EVP_EncryptUpdate(cs->chacha, out, &outl, in, (int)direct));
            in += direct;
            out += direct;
            len -= direct;
            continue;
        }
        if (cs->ks_used == cs->ks_len) {
            int outl;
            EVP_CHECK(EVP_EncryptUpdate(cs->chacha, cs->ks, &outl, zero_block, CHACHA_KS_BATCH));
            cs->ks_len = CHACHA_KS_BATCH;
            cs->ks_used = 0;
        }
        size_t n = cs->ks_len - cs->ks_used;
        if (n > len)
            n = len;
        const uint8_t *ks = cs->ks + cs->ks_used;
        size_t i = 0;
        for (; i + sizeof(xor_vec) <= n; i += sizeof(xor_vec)) {
            xor_vec a, b;
            memcpy(&a, in + i, sizeof(a));
            memcpy(&b, ks + i, sizeof(b));
            a ^= b;
            memcpy(out + i, &a, sizeof(a));
        }
        for (; i < n; i++)
            out[i] = in[i] ^ ks[i];
        cs->ks_used += (uint32_t)n;
        in += n;
        out += n;
        len -= n;
    }
    return 0;
}

static int chacha_update(struct chacha_stream *cs, int seal, const uint8_t *in, uint8_t *out,
                         size_t len)
{
    if (!seal) /* the MAC covers ciphertext: take it before in-place decryption overwrites it */
        EVP_CHECK(EVP_MAC_update(cs->poly, in, len));
    int rc = chacha_xor(cs, in, out, len);
    if (rc < 0)
        return rc;
    if (seal)
        EVP_CHECK(EVP_MAC_update(cs->poly, out, len));
    return 0;
}

static int chacha_final(struct chacha_stream *cs, uint64_t body_len,
                        uint8_t tag[TLSNIC_REC_TAG_LEN])
{
    int rc = poly_update_padded(cs->poly, body_len);
    if (rc < 0)
        return rc;
    uint8_t lengths[16];
    for (int i = 0; i < 8; i++) {
        lengths[i] = (uint8_t)(cs->aad_len >> (8 * i));
        lengths[8 + i] = (uint8_t)(body_len >> (8 * i));
    }
    EVP_CHECK(EVP_MAC_update(cs->poly, lengths, sizeof(lengths)));
    size_t tag_len = 0;
    EVP_CHECK(EVP_MAC_final(cs->poly, tag, &tag_len, TLSNIC_REC_TAG_LEN));
    OPENSSL_cleanse(cs->ks, sizeof(cs->ks));
    cs->ks_used = cs->ks_len = 0;
    return tag_len == TLSNIC_REC_TAG_LEN ? 0 : -EINVAL;
}

static int chacha_copy(struct chacha_stream *dst, const struct chacha_stream *src)
{
    EVP_MAC_CTX *poly = EVP_MAC_CTX_dup(src->poly);
    if (poly == NULL)
        return -ENOMEM;
    dst->keyed_id = 0;
    if (EVP_CIPHER_CTX_copy(dst->chacha, src->chacha) != 1) {
        EVP_MAC_CTX_free(poly);
        return -EINVAL;
    }
    EVP_MAC_CTX_free(dst->poly);
    dst->poly = poly;
    dst->keyed_id = src->keyed_id;
    dst->aad_len = src->aad_len;
    dst->ks_used = src->ks_used;
    dst->ks_len = src->ks_len;
    memcpy(dst->ks, src->ks, src->ks_len);
    return 0;
}

/* ------------------------------------------------------------------------------------------ */

int tlsnic_rec_stream_init(struct tlsnic_rec_stream *s)
{
    if (s == NULL)
        return -EINVAL;
    memset(s, 0, sizeof(*s));
    s->evp = EVP_CIPHER_CTX_new();
    return s->evp != NULL ? 0 : -ENOMEM;
}

void tlsnic_rec_stream_cleanup(struct tlsnic_rec_stream *s)
{
    if (s == NULL)
        return;
    EVP_CIPHER_CTX_free(s->evp);
    chacha_stream_free(s->chacha);
    memset(s, 0, sizeof(*s));
}

int tlsnic_rec_stream_begin(struct tlsnic_rec_stream *s, const tlsnic_rec_key *key, int seal,
                            uint64_t rec_seq, const uint8_t hdr[TLSNIC_REC_HDR_LEN],
                            const uint8_t *explicit_nonce)
{
    if (s == NULL || s->evp == NULL || key == NULL || hdr == NULL)
        return -EINVAL;
    if (!cipher_streams(key->cipher))
        return -EOPNOTSUPP; /* software-only cipher: no device takes it */
    if ((explicit_nonce != NULL) != (key->explicit_nonce_len != 0))
        return -EINVAL;
    int data_len = check_header(key, hdr);
    if (data_len < 0)
        return data_len;
    size_t body_len = (size_t)data_len - key->explicit_nonce_len - TLSNIC_REC_TAG_LEN;
    if (key->version == TLS_1_3_VERSION && body_len == 0)
        return -EBADMSG; /* no room for the inner content type */

    s->active = 0;
    seal = seal ? 1 : 0;
    uint8_t nonce[NONCE_LEN], aad[TLS12_AAD_LEN];
    make_nonce(key, rec_seq, explicit_nonce, nonce);
    size_t aad_len = make_aad(key, rec_seq, hdr, body_len, aad);
    if (key->cipher == TLS_CIPHER_CHACHA20_POLY1305) {
        if (s->chacha == NULL && (s->chacha = chacha_stream_new()) == NULL)
            return -ENOMEM;
        int rc = chacha_begin(s->chacha, key, nonce, aad, aad_len);
        if (rc < 0)
            return rc;
    } else {
        EVP_CIPHER_CTX *evp = s->evp;
        if (s->keyed_id != key->id || s->seal != seal) {
            s->keyed_id = 0;
            EVP_CHECK(EVP_CipherInit_ex(evp, key->aead, NULL, key->key_bytes, NULL, seal));
            s->keyed_id = key->id;
        }
        int outl;
        EVP_CHECK(aead_set_nonce(evp, nonce, seal));
        EVP_CHECK(EVP_CipherUpdate(evp, NULL, &outl, aad, (int)aad_len));
    }

    s->key = key;
    s->rec_seq = rec_seq;
    s->body_len = (uint32_t)body_len;
    s->body_off = 0;
    s->seal = (uint8_t)seal;
    s->active = 1;
    return 0;
}

int tlsnic_rec_stream_update(struct tlsnic_rec_stream *s, const uint8_t *in, uint8_t *out,
                             size_t len)
{
    if (s == NULL || !s->active)
        return -EINVAL;
    if (len > (size_t)(s->body_len - s->body_off))
        return -EINVAL;
    if (len == 0)
        return 0;
    if (in == NULL || out == NULL)
        return -EINVAL;
    if (s->key->cipher == TLS_CIPHER_CHACHA20_POLY1305) {
        int rc = chacha_update(s->chacha, s->seal, in, out, len);
        if (rc < 0)
            return rc;
    } else {
        int outl;
        EVP_CHECK(EVP_CipherUpdate(s->evp, out, &outl, in, (int)len));
    }
    s->body_off += (uint32_t)len;
    return 0;
}

int tlsnic_rec_stream_seal_final(struct tlsnic_rec_stream *s, uint8_t tag[TLSNIC_REC_TAG_LEN])
{
    if (s == NULL || !s->active || !s->seal || s->body_off != s->body_len || tag == NULL)
        return -EINVAL;
    s->active = 0;
    if (s->key->cipher == TLS_CIPHER_CHACHA20_POLY1305)
        return chacha_final(s->chacha, s->body_len, tag);
    uint8_t unused[16];
    int outl;
    EVP_CHECK(EVP_EncryptFinal_ex(s->evp, unused, &outl));
    EVP_CHECK(aead_get_tag(s->evp, tag));
    return 0;
}

int tlsnic_rec_stream_open_final(struct tlsnic_rec_stream *s,
                                 const uint8_t tag[TLSNIC_REC_TAG_LEN])
{
    if (s == NULL || !s->active || s->seal || s->body_off != s->body_len || tag == NULL)
        return -EINVAL;
    uint8_t tag_copy[TLSNIC_REC_TAG_LEN], unused[16];
    int outl;
    s->active = 0;
    if (s->key->cipher == TLS_CIPHER_CHACHA20_POLY1305) {
        uint8_t expected[TLSNIC_REC_TAG_LEN];
        int rc = chacha_final(s->chacha, s->body_len, expected);
        if (rc < 0)
            return rc;
        return CRYPTO_memcmp(expected, tag, TLSNIC_REC_TAG_LEN) == 0 ? 0 : -EBADMSG;
    }
    memcpy(tag_copy, tag, sizeof(tag_copy));
    EVP_CHECK(aead_set_tag(s->evp, tag_copy));
    if (EVP_DecryptFinal_ex(s->evp, unused, &outl) != 1)
        return -EBADMSG;
    return 0;
}

int tlsnic_rec_stream_copy(struct tlsnic_rec_stream *dst, const struct tlsnic_rec_stream *src)
{
    if (dst == NULL || src == NULL || dst->evp == NULL || src->evp == NULL)
        return -EINVAL;
    if (dst == src)
        return 0;
    if (src->chacha != NULL) {
        if (dst->chacha == NULL && (dst->chacha = chacha_stream_new()) == NULL)
            return -ENOMEM;
        int rc = chacha_copy(dst->chacha, src->chacha);
        if (rc < 0)
            return rc;
    }
    dst->keyed_id = 0;
    if (src->keyed_id != 0)
        EVP_CHECK(EVP_CIPHER_CTX_copy(dst->evp, src->evp));
    void *dst_evp = dst->evp, *dst_chacha = dst->chacha;
    *dst = *src;
    dst->evp = dst_evp;
    dst->chacha = dst_chacha;
    return 0;
}

/* ------------------------------------------------------------------------------------------ */

int tlsnic_rec_keystream_init(struct tlsnic_rec_keystream *ks)
{
    if (ks == NULL)
        return -EINVAL;
    memset(ks, 0, sizeof(*ks));
    ks->evp = EVP_CIPHER_CTX_new();
    return ks->evp != NULL ? 0 : -ENOMEM;
}

void tlsnic_rec_keystream_cleanup(struct tlsnic_rec_keystream *ks)
{
    if (ks == NULL)
        return;
    EVP_CIPHER_CTX_free(ks->evp);
    memset(ks, 0, sizeof(*ks));
}

int tlsnic_rec_keystream_xor(struct tlsnic_rec_keystream *ks, const tlsnic_rec_key *key,
                             uint64_t rec_seq, const uint8_t *explicit_nonce, uint64_t off,
                             const uint8_t *in, uint8_t *out, size_t len)
{
    if (ks == NULL || ks->evp == NULL || key == NULL)
        return -EINVAL;
    if (!cipher_streams(key->cipher))
        return -EOPNOTSUPP;
    if ((explicit_nonce != NULL) != (key->explicit_nonce_len != 0))
        return -EINVAL;
    if (off > TLSNIC_REC_MAX_PLAINTEXT + 256 || len > TLSNIC_REC_MAX_PLAINTEXT + 256 - off)
        return -EINVAL; /* beyond any record body: the counter would leave its range */
    if (len == 0)
        return 0;
    if (in == NULL || out == NULL)
        return -EINVAL;

    uint8_t nonce[NONCE_LEN], iv[16];
    make_nonce(key, rec_seq, explicit_nonce, nonce);
    size_t block, skip;
    if (key->cipher == TLS_CIPHER_CHACHA20_POLY1305) {
        /* EVP ChaCha20 IV: 32-bit little-endian block counter || nonce; block 0 keyed
         * Poly1305, the body starts at block 1 (RFC 8439 2.8). */
        block = 1 + off / 64;
        skip = off % 64;
        iv[0] = (uint8_t)block;
        iv[1] = (uint8_t)(block >> 8);
        iv[2] = (uint8_t)(block >> 16);
        iv[3] = (uint8_t)(block >> 24);
        memcpy(iv + 4, nonce, NONCE_LEN);
    } else {
        /* GCM: counter block nonce || 32-bit big-endian counter; J0 = 1 makes the tag
         * mask, the body starts at counter 2 (SP 800-38D 7.1). */
        block = 2 + off / 16;
        skip = off % 16;
        memcpy(iv, nonce, NONCE_LEN);
        iv[12] = (uint8_t)(block >> 24);
        iv[13] = (uint8_t)(block >> 16);
        iv[14] = (uint8_t)(block >> 8);
        iv[15] = (uint8_t)block;
    }

    EVP_CIPHER_CTX *evp = ks->evp;
    int outl;
    if (ks->keyed_id != key->id) {
        ks->keyed_id = 0;
        EVP_CHECK(EVP_EncryptInit_ex(evp, key->keystream, NULL, key->key_bytes, iv));
        ks->keyed_id = key->id;
    } else {
        EVP_CHECK(EVP_EncryptInit_ex(evp, NULL, NULL, NULL, iv));
    }
    if (skip != 0) {
        uint8_t discard[64] = {0};
        EVP_CHECK(EVP_EncryptUpdate(evp, discard, &outl, discard, (int)skip));
    }
    while (len > 0) {
        int chunk = len > INT_MAX / 2 ? INT_MAX / 2 : (int)len;
        EVP_CHECK(EVP_EncryptUpdate(evp, out, &outl, in, chunk));
        in += chunk;
        out += chunk;
        len -= (size_t)chunk;
    }
    return 0;
}
