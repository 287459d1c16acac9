/*
 * A self-signed certificate made in memory, for programs that need a TLS server identity
 * and have no files: the tests' handshakes (tls_pair) and `tlsnic serve`. Nothing is
 * written to disk; the key lives as long as the caller keeps it.
 *
 * Library: tlsnic_keyexport (links libssl). Errors: negative errno.
 */
#ifndef TLSNIC_SELFCERT_H
#define TLSNIC_SELFCERT_H

#include <openssl/evp.h>
#include <openssl/x509.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * A fresh P-256 key and a certificate for CN=cn signed with it (SHA-256), valid from a
 * minute ago for `days` days. The caller owns both (EVP_PKEY_free, X509_free). 0, or
 * -EINVAL (cn NULL or empty, days < 1), -ENOMEM (OpenSSL failed; ERR_get_error says why).
 */
int tlsnic_selfcert_new(const char *cn, int days, EVP_PKEY **key, X509 **cert);

#ifdef __cplusplus
}
#endif

#endif
