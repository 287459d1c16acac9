/*
 * Test support: a real OpenSSL handshake between two SSL objects over a connected stream
 * socket pair, so tests can check tlsnic against a TLS stack it did not write.
 *
 * The server certificate is a self-signed EC key made in memory (no files). The server
 * sends no session tickets, so after the handshake the first application-data record in
 * each direction has the sequence number tlsnic_keyexport assumes (see keyexport.h).
 * Library: tlsnic_testutil.
 */
#ifndef TLSNIC_TEST_TLS_PAIR_H
#define TLSNIC_TEST_TLS_PAIR_H

#include <linux/tls.h>
#include <openssl/ssl.h>
#include <stdint.h>

#include "tlsnic/record.h"

struct tls_pair {
    SSL_CTX *server_ctx;
    SSL_CTX *client_ctx;
    SSL *server;
    SSL *client;
    int server_fd; /* the server's end of the stream */
    int client_fd; /* the client's end */
};

/* The suites tlsnic offloads, for demos that try each: TLS 1.2 and 1.3 x AES-128-GCM,
 * AES-256-GCM, ChaCha20-Poly1305 (version as OpenSSL's TLS1_x_VERSION). */
struct tls_pair_suite {
    int version;
    uint16_t cipher; /* TLS_CIPHER_* of <linux/tls.h> */
};
#define TLS_PAIR_N_SUITES 6
extern const struct tls_pair_suite tls_pair_suites[TLS_PAIR_N_SUITES];

/*
 * Handshakes with exactly this protocol version (TLS1_2_VERSION or TLS1_3_VERSION) and
 * cipher (TLS_CIPHER_AES_GCM_128, TLS_CIPHER_AES_GCM_256, TLS_CIPHER_CHACHA20_POLY1305
 * from <linux/tls.h>). With fds == NULL a fresh AF_UNIX socketpair is used; otherwise
 * fds[0] is the server's end and fds[1] the client's (e.g. a connected TCP pair), and
 * tls_pair_free closes them. Both contexts have tlsnic_keyexport_enable applied.
 * Returns 0 or a negative errno (-EPROTO: the handshake failed; ERR_print_errors shows why).
 */
int tls_pair_new(struct tls_pair *p, int tls_version, uint16_t cipher_type, const int *fds);

/* Frees everything tls_pair_new made and closes both fds. Safe on a zeroed struct. */
void tls_pair_free(struct tls_pair *p);

/*
 * A record-layer key (tlsnic_rec_key_new) made from the keys ssl exports for one direction
 * (tx: its sending keys, else its receiving ones) through tlsnic_keyexport; the exported
 * crypto_info is wiped. *key is the caller's. Returns 0 or a negative errno.
 */
int tls_pair_rec_key(SSL *ssl, int tx, tlsnic_rec_key **key);

#endif
