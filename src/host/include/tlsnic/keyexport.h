/*
 * Export an OpenSSL (libssl) connection's traffic keys in the <linux/tls.h> form that
 * tlsnic_rec_key_new and setsockopt(SOL_TLS) take. For tests, demos and programs that do
 * their handshake with libssl and then hand the record layer to tlsnic.
 *
 * TLS 1.3 traffic secrets are only visible through the keylog callback, so the SSL_CTX must
 * be prepared with tlsnic_keyexport_enable before the handshake; it chains to a keylog
 * callback that was already installed. TLS 1.2 keys come from the master secret (TLS1-PRF
 * through EVP_KDF), TLS 1.3 keys from the traffic secret (HKDF-Expand-Label through
 * EVP_KDF).
 *
 * Record sequence numbers: libssl does not publish them, so the export states what it
 * assumes: the first application-data record after the handshake, i.e. 1 for TLS 1.2 (the
 * Finished message used 0) and 0 for TLS 1.3. That holds when no post-handshake message
 * was sent in that direction: a TLS 1.3 server must be set up with
 * SSL_CTX_set_num_tickets(ctx, 0), and neither side may have sent or read application
 * data through libssl. The caller can override rec_seq in the result.
 *
 * Library: tlsnic_keyexport (links libssl). Errors: negative errno; -EINVAL for a
 * connection whose handshake is not complete or whose secrets were not logged,
 * -EOPNOTSUPP for a protocol version or cipher suite tlsnic does not offload.
 */
#ifndef TLSNIC_KEYEXPORT_H
#define TLSNIC_KEYEXPORT_H

#include <openssl/ssl.h>
#include <stddef.h>

#include "tlsnic/record.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Installs the keylog hook on ctx. Call before SSL_new. Returns 0 or -ENOMEM. */
int tlsnic_keyexport_enable(SSL_CTX *ctx);

/*
 * Fills *out with the keys that `ssl` sends with (tx = 1) or receives with (tx = 0), and
 * *out_len with the size of the struct filled (what setsockopt wants as optlen).
 * The result holds key material: wipe it (OPENSSL_cleanse) when done.
 */
int tlsnic_keyexport(SSL *ssl, int tx, union tlsnic_crypto_info *out, size_t *out_len);

/*
 * The OpenSSL name of the suite that negotiates cipher_type (TLS_CIPHER_AES_GCM_128,
 * TLS_CIPHER_AES_GCM_256, TLS_CIPHER_CHACHA20_POLY1305 of <linux/tls.h>) in tls_version
 * (TLS1_2_VERSION, TLS1_3_VERSION): for SSL_CTX_set_ciphersuites (1.3) or, with ECDHE and
 * an ECDSA certificate such as tlsnic_selfcert_new makes, SSL_CTX_set_cipher_list (1.2).
 * NULL for anything tlsnic does not offload.
 */
const char *tlsnic_keyexport_suite_name(int tls_version, uint16_t cipher_type);

#ifdef __cplusplus
}
#endif

#endif
