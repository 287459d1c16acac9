/*
 * Interop test support: the TLS 1.3 key schedule step a KeyUpdate takes (RFC 8446 7.2),
 * done here with libcrypto's HKDF so that the peer's TLS stack, not tlsnic, judges the keys.
 */
#ifndef TLSNIC_TEST_TLS13_KEYS_H
#define TLSNIC_TEST_TLS13_KEYS_H

#include <stddef.h>
#include <stdint.h>

#include "tlsnic/record.h"

/* The HKDF hash of a TLS 1.3 suite: "SHA384" for AES-256-GCM, else "SHA256". */
const char *tls13_hash(uint16_t cipher);

/*
 * secret = HKDF-Expand-Label(secret, "traffic upd", "", len), then the crypto_info of the
 * new secret (key, iv, rec_seq 0) into *ci. Returns the crypto_info size, or 0 on failure.
 */
size_t tls13_key_update(uint16_t cipher, uint8_t *secret, size_t secret_len,
                        union tlsnic_crypto_info *ci);

#endif
