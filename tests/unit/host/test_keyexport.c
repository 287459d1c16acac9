/*
 * tlsnic_keyexport against libssl itself: the exported keys must decrypt, with plain EVP
 * and the nonce rules of RFC 5288 / RFC 7905 / RFC 8446, the records libssl wrote. This
 * judges the key export without the tlsnic record layer.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>

#include "fd_io.h"
#include "tls_pair.h"
#include "tlsnic/keyexport.h"

struct combo {
    int version;
    uint16_t cipher;
};

static const struct combo combos[] = {
    {TLS1_2_VERSION, TLS_CIPHER_AES_GCM_128}, {TLS1_2_VERSION, TLS_CIPHER_AES_GCM_256},
    {TLS1_2_VERSION, TLS_CIPHER_CHACHA20_POLY1305}, {TLS1_3_VERSION, TLS_CIPHER_AES_GCM_128},
    {TLS1_3_VERSION, TLS_CIPHER_AES_GCM_256}, {TLS1_3_VERSION, TLS_CIPHER_CHACHA20_POLY1305},
};
#define N_COMBOS (sizeof(combos) / sizeof(combos[0]))

static uint64_t be64(const uint8_t b[8])
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | b[i];
    return v;
}

static size_t uapi_size(uint16_t cipher)
{
    switch (cipher) {
    case TLS_CIPHER_AES_GCM_128:
        return sizeof(struct tls12_crypto_info_aes_gcm_128);
    case TLS_CIPHER_AES_GCM_256:
        return sizeof(struct tls12_crypto_info_aes_gcm_256);
    default:
        return sizeof(struct tls12_crypto_info_chacha20_poly1305);
    }
}

/* Key, 12-byte nonce base (TLS 1.2 GCM: salt then zeros) and rec_seq of an export. */
static void unpack(const union tlsnic_crypto_info *ci, const uint8_t **key, size_t *key_len,
                   uint8_t nonce_base[12], uint64_t *rec_seq, const EVP_CIPHER **cipher)
{
    memset(nonce_base, 0, 12);
    switch (ci->info.cipher_type) {
    case TLS_CIPHER_AES_GCM_128:
        *key = ci->aes_gcm_128.key;
        *key_len = sizeof(ci->aes_gcm_128.key);
        memcpy(nonce_base, ci->aes_gcm_128.salt, 4);
        if (ci->info.version == TLS_1_3_VERSION)
            memcpy(nonce_base + 4, ci->aes_gcm_128.iv, 8);
        *rec_seq = be64(ci->aes_gcm_128.rec_seq);
        *cipher = EVP_aes_128_gcm();
        break;
    case TLS_CIPHER_AES_GCM_256:
        *key = ci->aes_gcm_256.key;
        *key_len = sizeof(ci->aes_gcm_256.key);
        memcpy(nonce_base, ci->aes_gcm_256.salt, 4);
        if (ci->info.version == TLS_1_3_VERSION)
            memcpy(nonce_base + 4, ci->aes_gcm_256.iv, 8);
        *rec_seq = be64(ci->aes_gcm_256.rec_seq);
        *cipher = EVP_aes_256_gcm();
        break;
    default:
        *key = ci->chacha20_poly1305.key;
        *key_len = sizeof(ci->chacha20_poly1305.key);
        memcpy(nonce_base, ci->chacha20_poly1305.iv, 12);
        *rec_seq = be64(ci->chacha20_poly1305.rec_seq);
        *cipher = EVP_chacha20_poly1305();
        break;
    }
}

/*
 * Decrypts one record rec[0..len) with plain EVP under the exported keys; returns the
 * content length (TLS 1.3: inner type stripped into *type), or -1 if the tag is wrong.
 */
static int evp_open(const union tlsnic_crypto_info *ci, uint8_t *rec, size_t len, uint8_t *type,
                    uint8_t *out)
{
    const uint8_t *key;
    size_t key_len;
    uint8_t nonce[12];
    uint64_t seq;
    const EVP_CIPHER *cipher;
    unpack(ci, &key, &key_len, nonce, &seq, &cipher);
    int tls12_gcm = ci->info.version == TLS_1_2_VERSION &&
                    ci->info.cipher_type != TLS_CIPHER_CHACHA20_POLY1305;

    size_t body_off = 5;
    if (tls12_gcm) {
        memcpy(nonce + 4, rec + 5, 8);
        body_off += 8;
    } else {
        for (int i = 0; i < 8; i++)
            nonce[4 + i] ^= (uint8_t)(seq >> (56 - 8 * i));
    }
    assert_true(len >= body_off + 16);
    size_t body_len = len - body_off - 16;

    uint8_t aad[13];
    size_t aad_len;
    if (ci->info.version == TLS_1_2_VERSION) {
        for (int i = 0; i < 8; i++)
            aad[i] = (uint8_t)(seq >> (56 - 8 * i));
        aad[8] = rec[0];
        aad[9] = rec[1];
        aad[10] = rec[2];
        aad[11] = (uint8_t)(body_len >> 8);
        aad[12] = (uint8_t)body_len;
        aad_len = 13;
    } else {
        memcpy(aad, rec, 5);
        aad_len = 5;
    }

    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    assert_non_null(ctx);
    int outl = 0, finl = 0;
    assert_int_equal(EVP_DecryptInit_ex(ctx, cipher, NULL, NULL, NULL), 1);
    assert_int_equal(EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_IVLEN, 12, NULL), 1);
    assert_int_equal(EVP_DecryptInit_ex(ctx, NULL, NULL, key, nonce), 1);
    assert_int_equal(EVP_DecryptUpdate(ctx, NULL, &outl, aad, (int)aad_len), 1);
    assert_int_equal(EVP_DecryptUpdate(ctx, out, &outl, rec + body_off, (int)body_len), 1);
    assert_int_equal(EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, 16, rec + len - 16), 1);
    int ok = EVP_DecryptFinal_ex(ctx, out + outl, &finl);
    EVP_CIPHER_CTX_free(ctx);
    if (ok != 1)
        return -1;

    size_t n = body_len;
    if (ci->info.version == TLS_1_2_VERSION) {
        *type = rec[0];
    } else {
        while (n > 0 && out[n - 1] == 0)
            n--;
        assert_true(n > 0);
        *type = out[--n];
    }
    return (int)n;
}

/* What one end writes with SSL_write, the other end's fd receives; evp_open must read it. */
static void check_direction(SSL *writer, int reader_fd, const union tlsnic_crypto_info *tx)
{
    static uint8_t rec[17000], plain[17000];
    const char msg[] = "records written by libssl, opened with exported keys";
    assert_int_equal(SSL_write(writer, msg, sizeof(msg)), sizeof(msg));
    int len = fd_read_record(reader_fd, rec, sizeof(rec));
    assert_true(len > 0);
    assert_int_equal(rec[0], TLSNIC_CT_APPLICATION_DATA);
    uint8_t type = 0;
    int n = evp_open(tx, rec, (size_t)len, &type, plain);
    assert_int_equal(n, sizeof(msg));
    assert_int_equal(type, TLSNIC_CT_APPLICATION_DATA);
    assert_memory_equal(plain, msg, sizeof(msg));
}

static void exported_tx_keys_decrypt_what_libssl_sends(void **state)
{
    for (size_t i = 0; i < N_COMBOS; i++) {
        struct tls_pair p;
        assert_int_equal(tls_pair_new(&p, combos[i].version, combos[i].cipher, NULL), 0);
        union tlsnic_crypto_info client_tx, server_tx;
        size_t len = 0;
        assert_int_equal(tlsnic_keyexport(p.client, 1, &client_tx, &len), 0);
        assert_int_equal(len, uapi_size(combos[i].cipher));
        assert_int_equal(tlsnic_keyexport(p.server, 1, &server_tx, &len), 0);
        assert_int_equal(client_tx.info.cipher_type, combos[i].cipher);
        assert_int_equal(client_tx.info.version, combos[i].version);
        check_direction(p.client, p.server_fd, &client_tx);
        check_direction(p.server, p.client_fd, &server_tx);
        OPENSSL_cleanse(&client_tx, sizeof(client_tx));
        OPENSSL_cleanse(&server_tx, sizeof(server_tx));
        tls_pair_free(&p);
    }
}

static void one_sides_tx_keys_are_the_other_sides_rx_keys(void **state)
{
    for (size_t i = 0; i < N_COMBOS; i++) {
        struct tls_pair p;
        assert_int_equal(tls_pair_new(&p, combos[i].version, combos[i].cipher, NULL), 0);
        union tlsnic_crypto_info client_tx, client_rx, server_tx, server_rx;
        size_t len = 0;
        memset(&client_tx, 0, sizeof(client_tx));
        memset(&client_rx, 0xaa, sizeof(client_rx));
        memset(&server_tx, 0, sizeof(server_tx));
        memset(&server_rx, 0xaa, sizeof(server_rx));
        assert_int_equal(tlsnic_keyexport(p.client, 1, &client_tx, &len), 0);
        assert_int_equal(tlsnic_keyexport(p.client, 0, &client_rx, &len), 0);
        assert_int_equal(tlsnic_keyexport(p.server, 1, &server_tx, &len), 0);
        assert_int_equal(tlsnic_keyexport(p.server, 0, &server_rx, &len), 0);
        assert_memory_equal(&client_tx, &server_rx, len);
        assert_memory_equal(&server_tx, &client_rx, len);
        assert_memory_not_equal(&client_tx, &server_tx, len);
        tls_pair_free(&p);
    }
}

static void first_record_sequence_is_1_for_tls12_and_0_for_tls13(void **state)
{
    for (size_t i = 0; i < N_COMBOS; i++) {
        struct tls_pair p;
        assert_int_equal(tls_pair_new(&p, combos[i].version, combos[i].cipher, NULL), 0);
        union tlsnic_crypto_info tx;
        size_t len = 0;
        assert_int_equal(tlsnic_keyexport(p.client, 1, &tx, &len), 0);
        const uint8_t *key;
        size_t key_len;
        uint8_t nonce[12];
        uint64_t seq;
        const EVP_CIPHER *cipher;
        unpack(&tx, &key, &key_len, nonce, &seq, &cipher);
        assert_int_equal(seq, combos[i].version == TLS1_2_VERSION ? 1 : 0);
        if (combos[i].version == TLS1_2_VERSION && combos[i].cipher != TLS_CIPHER_CHACHA20_POLY1305) {
            const uint8_t *iv = combos[i].cipher == TLS_CIPHER_AES_GCM_128 ? tx.aes_gcm_128.iv
                                                                           : tx.aes_gcm_256.iv;
            assert_int_equal(be64(iv), 1); /* explicit nonce starts at the sequence number */
        }
        tls_pair_free(&p);
    }
}

static void export_before_the_handshake_is_einval(void **state)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    assert_non_null(ctx);
    assert_int_equal(tlsnic_keyexport_enable(ctx), 0);
    SSL *ssl = SSL_new(ctx);
    assert_non_null(ssl);
    union tlsnic_crypto_info tx;
    size_t len = 0;
    assert_int_equal(tlsnic_keyexport(ssl, 1, &tx, &len), -EINVAL);
    SSL_free(ssl);
    SSL_CTX_free(ctx);
}

static int chained_lines;
static void counting_keylog(const SSL *ssl, const char *line)
{
    chained_lines++;
}

static void enable_twice_keeps_one_hook_and_chains_to_the_previous_callback(void **state)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    assert_non_null(ctx);
    SSL_CTX_set_keylog_callback(ctx, counting_keylog);
    assert_int_equal(tlsnic_keyexport_enable(ctx), 0);
    assert_int_equal(tlsnic_keyexport_enable(ctx), 0);
    SSL_CTX_keylog_cb_func hook = SSL_CTX_get_keylog_callback(ctx);
    assert_ptr_not_equal(hook, counting_keylog);

    SSL *ssl = SSL_new(ctx);
    assert_non_null(ssl);
    chained_lines = 0;
    hook(ssl, "CLIENT_TRAFFIC_SECRET_0 00 0102");
    assert_int_equal(chained_lines, 1);
    SSL_free(ssl);
    SSL_CTX_free(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(exported_tx_keys_decrypt_what_libssl_sends),
        cmocka_unit_test(one_sides_tx_keys_are_the_other_sides_rx_keys),
        cmocka_unit_test(first_record_sequence_is_1_for_tls12_and_0_for_tls13),
        cmocka_unit_test(export_before_the_handshake_is_einval),
        cmocka_unit_test(enable_twice_keeps_one_hook_and_chains_to_the_previous_callback),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
