#include "tls13_keys.h"

#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>

const char *tls13_hash(uint16_t cipher)
{
    return cipher == TLS_CIPHER_AES_GCM_256 ? "SHA384" : "SHA256";
}

/* HKDF-Expand-Label(secret, label, "", out_len) of RFC 8446 7.1. 0 or -1. */
static int expand_label(const char *md, const uint8_t *secret, size_t secret_len,
                        const char *label, uint8_t *out, size_t out_len)
{
    uint8_t info[2 + 1 + 255 + 1];
    size_t l = strlen(label) + 6;
    if (l > 255)
        return -1;
    info[0] = (uint8_t)(out_len >> 8);
    info[1] = (uint8_t)out_len;
    info[2] = (uint8_t)l;
    memcpy(info + 3, "tls13 ", 6);
    memcpy(info + 9, label, strlen(label));
    info[3 + l] = 0; /* empty context */
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
    EVP_KDF_CTX *ctx = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
    int mode = EVP_KDF_HKDF_MODE_EXPAND_ONLY;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &mode),
        OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)md, 0),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)secret, secret_len),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, info, 4 + l),
        OSSL_PARAM_construct_end(),
    };
    int ok = ctx && EVP_KDF_derive(ctx, out, out_len, params) == 1;
    EVP_KDF_CTX_free(ctx);
    EVP_KDF_free(kdf);
    return ok ? 0 : -1;
}

size_t tls13_key_update(uint16_t cipher, uint8_t *secret, size_t secret_len,
                        union tlsnic_crypto_info *ci)
{
    const char *md = tls13_hash(cipher);
    size_t key_len = cipher == TLS_CIPHER_AES_GCM_128 ? 16 : 32;
    uint8_t next[64], key[32], iv[12];
    size_t ret = 0;
    if (secret_len > sizeof(next) ||
        expand_label(md, secret, secret_len, "traffic upd", next, secret_len) < 0)
        return 0;
    memcpy(secret, next, secret_len);
    if (expand_label(md, secret, secret_len, "key", key, key_len) < 0 ||
        expand_label(md, secret, secret_len, "iv", iv, sizeof(iv)) < 0)
        goto out;
    memset(ci, 0, sizeof(*ci));
    ci->info.version = TLS_1_3_VERSION;
    ci->info.cipher_type = cipher;
    switch (cipher) {
    case TLS_CIPHER_AES_GCM_128:
        memcpy(ci->aes_gcm_128.key, key, 16);
        memcpy(ci->aes_gcm_128.salt, iv, 4);
        memcpy(ci->aes_gcm_128.iv, iv + 4, 8);
        ret = sizeof(ci->aes_gcm_128);
        break;
    case TLS_CIPHER_AES_GCM_256:
        memcpy(ci->aes_gcm_256.key, key, 32);
        memcpy(ci->aes_gcm_256.salt, iv, 4);
        memcpy(ci->aes_gcm_256.iv, iv + 4, 8);
        ret = sizeof(ci->aes_gcm_256);
        break;
    case TLS_CIPHER_CHACHA20_POLY1305:
        memcpy(ci->chacha20_poly1305.key, key, 32);
        memcpy(ci->chacha20_poly1305.iv, iv, 12);
        ret = sizeof(ci->chacha20_poly1305);
        break;
    }
out:
    OPENSSL_cleanse(next, sizeof(next));
    OPENSSL_cleanse(key, sizeof(key));
    OPENSSL_cleanse(iv, sizeof(iv));
    return ret;
}
