/*
 * Traffic key export from libssl into the <linux/tls.h> structs (see keyexport.h).
 *
 * TLS 1.3: libssl only reveals the application traffic secrets through the keylog
 * callback, as NSS key log lines. tlsnic_keyexport_enable installs a callback that keeps
 * CLIENT_TRAFFIC_SECRET_0 and SERVER_TRAFFIC_SECRET_0 per SSL (ex_data, wiped when the SSL
 * is freed) and then hands the line to whatever callback was installed before.
 * Key and IV follow by HKDF-Expand-Label (RFC 8446, 7.1 and 7.3).
 *
 * TLS 1.2: the key block is TLS1-PRF(master_secret, "key expansion",
 * server_random || client_random) (RFC 5246, 6.3); the AEAD suites have no MAC keys, so it
 * is client_write_key | server_write_key | client_write_IV | server_write_IV.
 *
 * The structs are filled the way the kernel and OpenSSL's own kTLS code expect them.
 */
#include "tlsnic/keyexport.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/obj_mac.h>
#include <openssl/ssl.h>

#define TLS13_SECRET_MAX EVP_MAX_MD_SIZE
#define TLS12_MASTER_SECRET_LEN 48
#define TLS_RANDOM_LEN 32
#define AEAD_NONCE_LEN 12
#define GCM_SALT_LEN 4
#define KEY_MAX 32

/* What the keylog hook kept for one SSL. */
struct tls13_secrets {
    uint8_t client[TLS13_SECRET_MAX];
    uint8_t server[TLS13_SECRET_MAX];
    size_t client_len; /* 0: not logged (yet) */
    size_t server_len;
};

/* What the keylog hook needs per SSL_CTX: the callback it replaced. */
struct ctx_hook {
    SSL_CTX_keylog_cb_func chained;
};

static CRYPTO_ONCE ex_index_once = CRYPTO_ONCE_STATIC_INIT;
static int ssl_ex_index = -1;
static int ctx_ex_index = -1;

static void secrets_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
                         void *argp)
{
    OPENSSL_clear_free(ptr, sizeof(struct tls13_secrets));
}

/* SSL_dup copies ex_data pointers unless told otherwise: give the copy its own secrets. */
static int secrets_dup(CRYPTO_EX_DATA *to, const CRYPTO_EX_DATA *from, void **from_d, int idx,
                       long argl, void *argp)
{
    if (*from_d == NULL)
        return 1;
    struct tls13_secrets *copy = OPENSSL_memdup(*from_d, sizeof(struct tls13_secrets));
    *from_d = copy;
    return copy != NULL;
}

static void hook_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
                      void *argp)
{
    OPENSSL_free(ptr);
}

static void ex_index_init(void)
{
    ssl_ex_index = SSL_get_ex_new_index(0, NULL, NULL, secrets_dup, secrets_free);
    ctx_ex_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, hook_free);
}

static int ex_index_ready(void)
{
    if (!CRYPTO_THREAD_run_once(&ex_index_once, ex_index_init))
        return 0;
    return ssl_ex_index >= 0 && ctx_ex_index >= 0;
}

static int hex_nibble(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decodes exactly the hex string hex (NUL-terminated) into out; returns its length or -1. */
static int hex_decode(const char *hex, uint8_t *out, size_t cap)
{
    size_t n = 0;
    while (hex[0] != '\0' && hex[0] != '\n') {
        int hi = hex_nibble(hex[0]);
        int lo = hi < 0 ? -1 : hex_nibble(hex[1]);
        if (lo < 0 || n == cap)
            return -1;
        out[n++] = (uint8_t)(hi << 4 | lo);
        hex += 2;
    }
    return (int)n;
}

/* Keeps the secret of an NSS key log line "LABEL <client_random> <secret>" if it is one of ours. */
static void keep_secret(SSL *ssl, const char *line)
{
    static const char client_label[] = "CLIENT_TRAFFIC_SECRET_0 ";
    static const char server_label[] = "SERVER_TRAFFIC_SECRET_0 ";
    int is_client = strncmp(line, client_label, sizeof(client_label) - 1) == 0;
    int is_server = strncmp(line, server_label, sizeof(server_label) - 1) == 0;
    if (!is_client && !is_server)
        return;

    const char *random_hex = line + sizeof(client_label) - 1;
    const char *secret_hex = strchr(random_hex, ' ');
    if (secret_hex == NULL)
        return;
    secret_hex++;

    struct tls13_secrets *secrets = SSL_get_ex_data(ssl, ssl_ex_index);
    if (secrets == NULL) {
        secrets = OPENSSL_zalloc(sizeof(*secrets));
        if (secrets == NULL)
            return; /* tlsnic_keyexport will report the secret as missing */
        if (!SSL_set_ex_data(ssl, ssl_ex_index, secrets)) {
            OPENSSL_free(secrets);
            return;
        }
    }
    uint8_t *dst = is_client ? secrets->client : secrets->server;
    size_t *dst_len = is_client ? &secrets->client_len : &secrets->server_len;
    int n = hex_decode(secret_hex, dst, TLS13_SECRET_MAX);
    if (n <= 0) {
        OPENSSL_cleanse(dst, TLS13_SECRET_MAX);
        *dst_len = 0;
        return;
    }
    *dst_len = (size_t)n;
}

static void keylog_hook(const SSL *ssl, const char *line)
{
    /* libssl passes a const SSL but the connection is ours to annotate. */
    SSL *mutable_ssl = (SSL *)ssl;
    keep_secret(mutable_ssl, line);

    const struct ctx_hook *hook = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), ctx_ex_index);
    if (hook != NULL && hook->chained != NULL)
        hook->chained(ssl, line);
}

int tlsnic_keyexport_enable(SSL_CTX *ctx)
{
    if (ctx == NULL)
        return -EINVAL;
    if (!ex_index_ready())
        return -ENOMEM;
    SSL_CTX_keylog_cb_func current = SSL_CTX_get_keylog_callback(ctx);
    if (current == keylog_hook)
        return 0; /* already enabled: chaining to ourselves would loop */

    struct ctx_hook *hook = SSL_CTX_get_ex_data(ctx, ctx_ex_index);
    if (hook == NULL) {
        hook = OPENSSL_zalloc(sizeof(*hook));
        if (hook == NULL)
            return -ENOMEM;
        if (!SSL_CTX_set_ex_data(ctx, ctx_ex_index, hook)) {
            OPENSSL_free(hook);
            return -ENOMEM;
        }
    }
    hook->chained = current;
    SSL_CTX_set_keylog_callback(ctx, keylog_hook);
    return 0;
}

/* ------------------------------------------------------------------------------------------ */

struct suite {
    uint16_t version;     /* TLS_1_2_VERSION / TLS_1_3_VERSION */
    uint16_t cipher_type; /* TLS_CIPHER_* */
    size_t key_len;
    size_t iv_len;        /* TLS 1.2 key block IV: 4 (GCM salt) or 12 (ChaCha20) */
    const EVP_MD *md;     /* PRF / HKDF hash */
};

static int suite_of(SSL *ssl, struct suite *suite)
{
    if (!SSL_is_init_finished(ssl))
        return -EINVAL;
    const SSL_CIPHER *cipher = SSL_get_current_cipher(ssl);
    if (cipher == NULL)
        return -EINVAL;

    switch (SSL_version(ssl)) {
    case TLS1_2_VERSION:
        suite->version = TLS_1_2_VERSION;
        break;
    case TLS1_3_VERSION:
        suite->version = TLS_1_3_VERSION;
        break;
    default:
        return -EOPNOTSUPP;
    }

    switch (SSL_CIPHER_get_cipher_nid(cipher)) {
    case NID_aes_128_gcm:
        suite->cipher_type = TLS_CIPHER_AES_GCM_128;
        suite->key_len = TLS_CIPHER_AES_GCM_128_KEY_SIZE;
        suite->iv_len = TLS_CIPHER_AES_GCM_128_SALT_SIZE;
        break;
    case NID_aes_256_gcm:
        suite->cipher_type = TLS_CIPHER_AES_GCM_256;
        suite->key_len = TLS_CIPHER_AES_GCM_256_KEY_SIZE;
        suite->iv_len = TLS_CIPHER_AES_GCM_256_SALT_SIZE;
        break;
    case NID_chacha20_poly1305:
        suite->cipher_type = TLS_CIPHER_CHACHA20_POLY1305;
        suite->key_len = TLS_CIPHER_CHACHA20_POLY1305_KEY_SIZE;
        suite->iv_len = TLS_CIPHER_CHACHA20_POLY1305_IV_SIZE;
        break;
    case NID_aes_128_ccm:
        /* The kernel's CCM has a 16-byte tag: not the CCM_8 suites. */
        if (strstr(SSL_CIPHER_get_name(cipher), "CCM8") || strstr(SSL_CIPHER_get_name(cipher), "CCM_8"))
            return -EOPNOTSUPP;
        suite->cipher_type = TLS_CIPHER_AES_CCM_128;
        suite->key_len = TLS_CIPHER_AES_CCM_128_KEY_SIZE;
        suite->iv_len = TLS_CIPHER_AES_CCM_128_SALT_SIZE;
        break;
    case NID_aria_128_gcm:
        suite->cipher_type = TLS_CIPHER_ARIA_GCM_128;
        suite->key_len = TLS_CIPHER_ARIA_GCM_128_KEY_SIZE;
        suite->iv_len = TLS_CIPHER_ARIA_GCM_128_SALT_SIZE;
        break;
    case NID_aria_256_gcm:
        suite->cipher_type = TLS_CIPHER_ARIA_GCM_256;
        suite->key_len = TLS_CIPHER_ARIA_GCM_256_KEY_SIZE;
        suite->iv_len = TLS_CIPHER_ARIA_GCM_256_SALT_SIZE;
        break;
    default:
        return -EOPNOTSUPP;
    }

    suite->md = SSL_CIPHER_get_handshake_digest(cipher);
    if (suite->md == NULL)
        return -EOPNOTSUPP;
    return 0;
}

static int kdf_derive(const char *name, const OSSL_PARAM *params, uint8_t *out, size_t len)
{
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, name, NULL);
    if (kdf == NULL)
        return -EOPNOTSUPP;
    EVP_KDF_CTX *kctx = EVP_KDF_CTX_new(kdf);
    EVP_KDF_free(kdf);
    if (kctx == NULL)
        return -ENOMEM;
    int ok = EVP_KDF_derive(kctx, out, len, params);
    EVP_KDF_CTX_free(kctx);
    return ok == 1 ? 0 : -EINVAL;
}

/* HKDF-Expand-Label(secret, label, "", len), RFC 8446 7.1. */
static int hkdf_expand_label(const EVP_MD *md, const uint8_t *secret, size_t secret_len,
                             const char *label, uint8_t *out, size_t len)
{
    static const char prefix[] = "tls13 ";
    size_t label_len = strlen(prefix) + strlen(label);
    uint8_t info[2 + 1 + 255 + 1];
    if (label_len > 255 || len > UINT16_MAX)
        return -EINVAL;

    size_t n = 0;
    info[n++] = (uint8_t)(len >> 8);
    info[n++] = (uint8_t)len;
    info[n++] = (uint8_t)label_len;
    memcpy(info + n, prefix, strlen(prefix));
    n += strlen(prefix);
    memcpy(info + n, label, strlen(label));
    n += strlen(label);
    info[n++] = 0; /* empty context */

    int mode = EVP_KDF_HKDF_MODE_EXPAND_ONLY;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)EVP_MD_get0_name(md), 0),
        OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &mode),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)secret, secret_len),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, info, n),
        OSSL_PARAM_construct_end(),
    };
    return kdf_derive(OSSL_KDF_NAME_HKDF, params, out, len);
}

static void put_be64(uint8_t out[8], uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        out[i] = (uint8_t)v;
        v >>= 8;
    }
}

/*
 * Fills the UAPI struct from a key and a 12-byte AEAD nonce base (TLS 1.3, or TLS 1.2
 * ChaCha20) or a 4-byte implicit IV (TLS 1.2 AES-GCM).
 */
static int fill_crypto_info(const struct suite *suite, const uint8_t *key, const uint8_t *iv,
                            uint64_t rec_seq, union tlsnic_crypto_info *out, size_t *out_len)
{
    memset(out, 0, sizeof(*out));
    out->info.version = suite->version;
    out->info.cipher_type = suite->cipher_type;
    int tls12 = suite->version == TLS_1_2_VERSION;

    switch (suite->cipher_type) {
    case TLS_CIPHER_AES_GCM_128:
    case TLS_CIPHER_AES_CCM_128:   /* the same layout: key 16, salt 4, iv 8 */
    case TLS_CIPHER_ARIA_GCM_128: {
        struct tls12_crypto_info_aes_gcm_128 *ci = &out->aes_gcm_128;
        memcpy(ci->key, key, sizeof(ci->key));
        memcpy(ci->salt, iv, sizeof(ci->salt));
        if (tls12)
            put_be64(ci->iv, rec_seq); /* explicit nonce = record sequence, as OpenSSL sends */
        else
            memcpy(ci->iv, iv + GCM_SALT_LEN, sizeof(ci->iv));
        put_be64(ci->rec_seq, rec_seq);
        *out_len = sizeof(*ci);
        return 0;
    }
    case TLS_CIPHER_AES_GCM_256:
    case TLS_CIPHER_ARIA_GCM_256: { /* the same layout: key 32, salt 4, iv 8 */
        struct tls12_crypto_info_aes_gcm_256 *ci = &out->aes_gcm_256;
        memcpy(ci->key, key, sizeof(ci->key));
        memcpy(ci->salt, iv, sizeof(ci->salt));
        if (tls12)
            put_be64(ci->iv, rec_seq);
        else
            memcpy(ci->iv, iv + GCM_SALT_LEN, sizeof(ci->iv));
        put_be64(ci->rec_seq, rec_seq);
        *out_len = sizeof(*ci);
        return 0;
    }
    case TLS_CIPHER_CHACHA20_POLY1305: {
        struct tls12_crypto_info_chacha20_poly1305 *ci = &out->chacha20_poly1305;
        memcpy(ci->key, key, sizeof(ci->key));
        memcpy(ci->iv, iv, sizeof(ci->iv));
        put_be64(ci->rec_seq, rec_seq);
        *out_len = sizeof(*ci);
        return 0;
    }
    default:
        return -EOPNOTSUPP;
    }
}

static int export_tls13(SSL *ssl, const struct suite *suite, int client_side,
                        union tlsnic_crypto_info *out, size_t *out_len)
{
    const struct tls13_secrets *secrets = SSL_get_ex_data(ssl, ssl_ex_index);
    if (secrets == NULL)
        return -EINVAL;
    const uint8_t *secret = client_side ? secrets->client : secrets->server;
    size_t secret_len = client_side ? secrets->client_len : secrets->server_len;
    if (secret_len == 0 || secret_len != (size_t)EVP_MD_get_size(suite->md))
        return -EINVAL;

    uint8_t key[KEY_MAX];
    uint8_t iv[AEAD_NONCE_LEN];
    int rc = hkdf_expand_label(suite->md, secret, secret_len, "key", key, suite->key_len);
    if (rc == 0)
        rc = hkdf_expand_label(suite->md, secret, secret_len, "iv", iv, sizeof(iv));
    if (rc == 0)
        rc = fill_crypto_info(suite, key, iv, 0, out, out_len);
    OPENSSL_cleanse(key, sizeof(key));
    OPENSSL_cleanse(iv, sizeof(iv));
    return rc;
}

static int export_tls12(SSL *ssl, const struct suite *suite, int client_side,
                        union tlsnic_crypto_info *out, size_t *out_len)
{
    static const char label[] = "key expansion";
    uint8_t master[TLS12_MASTER_SECRET_LEN];
    uint8_t seed[sizeof(label) - 1 + 2 * TLS_RANDOM_LEN];
    uint8_t block[2 * KEY_MAX + 2 * AEAD_NONCE_LEN];
    size_t block_len = 2 * suite->key_len + 2 * suite->iv_len;

    SSL_SESSION *session = SSL_get_session(ssl);
    if (session == NULL)
        return -EINVAL;
    if (SSL_SESSION_get_master_key(session, master, sizeof(master)) != sizeof(master))
        return -EINVAL;

    memcpy(seed, label, sizeof(label) - 1);
    uint8_t *randoms = seed + sizeof(label) - 1;
    int rc = -EINVAL;
    if (SSL_get_server_random(ssl, randoms, TLS_RANDOM_LEN) == TLS_RANDOM_LEN &&
        SSL_get_client_random(ssl, randoms + TLS_RANDOM_LEN, TLS_RANDOM_LEN) == TLS_RANDOM_LEN) {
        OSSL_PARAM params[] = {
            OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST,
                                             (char *)EVP_MD_get0_name(suite->md), 0),
            OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SECRET, master, sizeof(master)),
            OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SEED, seed, sizeof(seed)),
            OSSL_PARAM_construct_end(),
        };
        rc = kdf_derive(OSSL_KDF_NAME_TLS1_PRF, params, block, block_len);
    }

    if (rc == 0) {
        const uint8_t *client_key = block;
        const uint8_t *server_key = client_key + suite->key_len;
        const uint8_t *client_iv = server_key + suite->key_len;
        const uint8_t *server_iv = client_iv + suite->iv_len;
        /* The Finished message was record 0 in each direction. */
        rc = fill_crypto_info(suite, client_side ? client_key : server_key,
                              client_side ? client_iv : server_iv, 1, out, out_len);
    }
    OPENSSL_cleanse(master, sizeof(master));
    OPENSSL_cleanse(block, sizeof(block));
    return rc;
}

int tlsnic_keyexport(SSL *ssl, int tx, union tlsnic_crypto_info *out, size_t *out_len)
{
    if (ssl == NULL || out == NULL || out_len == NULL)
        return -EINVAL;
    if (!ex_index_ready())
        return -ENOMEM;

    struct suite suite;
    int rc = suite_of(ssl, &suite);
    if (rc < 0)
        return rc;

    /* The client sends with the client's keys; the server receives with them. */
    int client_side = SSL_is_server(ssl) ? !tx : tx;
    if (suite.version == TLS_1_3_VERSION)
        rc = export_tls13(ssl, &suite, client_side, out, out_len);
    else
        rc = export_tls12(ssl, &suite, client_side, out, out_len);
    if (rc < 0)
        OPENSSL_cleanse(out, sizeof(*out));
    return rc;
}

const char *tlsnic_keyexport_suite_name(int tls_version, uint16_t cipher_type)
{
    if (tls_version == TLS1_3_VERSION) {
        switch (cipher_type) {
        case TLS_CIPHER_AES_GCM_128: return "TLS_AES_128_GCM_SHA256";
        case TLS_CIPHER_AES_GCM_256: return "TLS_AES_256_GCM_SHA384";
        case TLS_CIPHER_CHACHA20_POLY1305: return "TLS_CHACHA20_POLY1305_SHA256";
        case TLS_CIPHER_AES_CCM_128: return "TLS_AES_128_CCM_SHA256";
        }
    } else if (tls_version == TLS1_2_VERSION) {
        switch (cipher_type) {
        case TLS_CIPHER_AES_GCM_128: return "ECDHE-ECDSA-AES128-GCM-SHA256";
        case TLS_CIPHER_AES_GCM_256: return "ECDHE-ECDSA-AES256-GCM-SHA384";
        case TLS_CIPHER_CHACHA20_POLY1305: return "ECDHE-ECDSA-CHACHA20-POLY1305";
        case TLS_CIPHER_AES_CCM_128: return "ECDHE-ECDSA-AES128-CCM";
        case TLS_CIPHER_ARIA_GCM_128: return "ECDHE-ECDSA-ARIA128-GCM-SHA256";
        case TLS_CIPHER_ARIA_GCM_256: return "ECDHE-ECDSA-ARIA256-GCM-SHA384";
        }
    }
    return NULL;
}
