/*
 * The in-memory self-signed certificate: signed by its own key, named as asked, valid now
 * and for the days asked, and usable as a TLS server identity.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "tlsnic/keyexport.h"
#include "selfcert.h"

static void the_certificate_is_signed_by_its_own_key(void **state)
{
    EVP_PKEY *key = NULL;
    X509 *cert = NULL;
    assert_int_equal(tlsnic_selfcert_new("tlsnic-unit", 1, &key, &cert), 0);
    assert_int_equal(X509_verify(cert, key), 1);
    assert_int_equal(X509_check_private_key(cert, key), 1);
    assert_int_equal(X509_NAME_cmp(X509_get_subject_name(cert), X509_get_issuer_name(cert)), 0);
    X509_free(cert);
    EVP_PKEY_free(key);
}

static void the_certificate_names_the_common_name_asked_for(void **state)
{
    EVP_PKEY *key = NULL;
    X509 *cert = NULL;
    assert_int_equal(tlsnic_selfcert_new("tlsnic-serve", 1, &key, &cert), 0);
    char cn[64] = "";
    assert_true(X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn,
                                          sizeof(cn)) > 0);
    assert_string_equal(cn, "tlsnic-serve");
    X509_free(cert);
    EVP_PKEY_free(key);
}

static void the_certificate_is_valid_now_and_for_the_days_asked(void **state)
{
    EVP_PKEY *key = NULL;
    X509 *cert = NULL;
    assert_int_equal(tlsnic_selfcert_new("tlsnic-unit", 3, &key, &cert), 0);
    time_t now = time(NULL);
    time_t in_two_days = now + 2 * 86400, in_four_days = now + 4 * 86400;
    assert_true(X509_cmp_time(X509_get0_notBefore(cert), &now) < 0);
    assert_true(X509_cmp_time(X509_get0_notAfter(cert), &in_two_days) > 0);
    assert_true(X509_cmp_time(X509_get0_notAfter(cert), &in_four_days) < 0);
    X509_free(cert);
    EVP_PKEY_free(key);
}

static void a_server_context_takes_it_as_its_identity(void **state)
{
    EVP_PKEY *key = NULL;
    X509 *cert = NULL;
    assert_int_equal(tlsnic_selfcert_new("tlsnic-unit", 1, &key, &cert), 0);
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    assert_non_null(ctx);
    assert_int_equal(SSL_CTX_use_certificate(ctx, cert), 1);
    assert_int_equal(SSL_CTX_use_PrivateKey(ctx, key), 1);
    assert_int_equal(SSL_CTX_check_private_key(ctx), 1);
    /* Its ECDSA key fits the TLS 1.2 suites tlsnic offloads. */
    assert_int_equal(SSL_CTX_set_cipher_list(ctx, tlsnic_keyexport_suite_name(TLS1_2_VERSION,
                                                                               TLS_CIPHER_AES_GCM_128)), 1);
    SSL_CTX_free(ctx);
    X509_free(cert);
    EVP_PKEY_free(key);
}

static void bad_arguments_are_refused(void **state)
{
    EVP_PKEY *key = NULL;
    X509 *cert = NULL;
    assert_int_equal(tlsnic_selfcert_new("", 1, &key, &cert), -EINVAL);
    assert_int_equal(tlsnic_selfcert_new(NULL, 1, &key, &cert), -EINVAL);
    assert_int_equal(tlsnic_selfcert_new("x", 0, &key, &cert), -EINVAL);
    assert_null(key);
    assert_null(cert);
}

/* The ciphers tlsnic runs and libssl has a suite for: the device's three, and in software
 * AES-128-CCM and ARIA-GCM (TLS 1.2 only); not SM4 (no libssl suite in OpenSSL 3.0). */
static void suite_names_cover_exactly_the_ciphers_tlsnic_runs(void **state)
{
    assert_string_equal(tlsnic_keyexport_suite_name(TLS1_3_VERSION, TLS_CIPHER_AES_GCM_256),
                        "TLS_AES_256_GCM_SHA384");
    assert_string_equal(tlsnic_keyexport_suite_name(TLS1_2_VERSION, TLS_CIPHER_CHACHA20_POLY1305),
                        "ECDHE-ECDSA-CHACHA20-POLY1305");
    assert_string_equal(tlsnic_keyexport_suite_name(TLS1_3_VERSION, TLS_CIPHER_AES_CCM_128),
                        "TLS_AES_128_CCM_SHA256");
    assert_string_equal(tlsnic_keyexport_suite_name(TLS1_2_VERSION, TLS_CIPHER_ARIA_GCM_256),
                        "ECDHE-ECDSA-ARIA256-GCM-SHA384");
    assert_null(tlsnic_keyexport_suite_name(TLS1_1_VERSION, TLS_CIPHER_AES_GCM_128));
    assert_null(tlsnic_keyexport_suite_name(TLS1_3_VERSION, TLS_CIPHER_ARIA_GCM_128));
    assert_null(tlsnic_keyexport_suite_name(TLS1_3_VERSION, TLS_CIPHER_SM4_GCM));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(the_certificate_is_signed_by_its_own_key),
        cmocka_unit_test(the_certificate_names_the_common_name_asked_for),
        cmocka_unit_test(the_certificate_is_valid_now_and_for_the_days_asked),
        cmocka_unit_test(a_server_context_takes_it_as_its_identity),
        cmocka_unit_test(bad_arguments_are_refused),
        cmocka_unit_test(suite_names_cover_exactly_the_ciphers_tlsnic_runs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
