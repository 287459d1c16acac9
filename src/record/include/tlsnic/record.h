/*
 * tlsnic record layer: TLS 1.2 and TLS 1.3 record protection with AES-128-GCM, AES-256-GCM
 * and ChaCha20-Poly1305, and in software only (whole records: no device takes them) with
 * AES-128-CCM, ARIA-128/256-GCM (TLS 1.2) and SM4-GCM / SM4-CCM where libcrypto has them.
 * All primitives come from OpenSSL's libcrypto (EVP).
 *
 * Keys come in as the Linux UAPI structs of <linux/tls.h>, exactly as a program hands them
 * to setsockopt(SOL_TLS, TLS_TX / TLS_RX). One key object serves one direction.
 *
 * Error convention: every function that can fail returns 0 (or a length) on success and a
 * negative errno on failure, as the kernel's net/tls does:
 *   -EINVAL      malformed argument, unknown version or cipher, wrong crypto_info length,
 *                wrong record version bytes
 *   -EOPNOTSUPP  tlsnic_crypto_info_check / the streaming API: a cipher tlsnic runs in
 *                software only (CCM, ARIA, SM4): a device does not take it
 *   -ENOENT      a cipher <linux/tls.h> knows that this libcrypto lacks (SM4 before OpenSSL
 *                3.2): the kernel's answer when it has no such crypto algorithm
 *   -EMSGSIZE    plaintext above 2^14 bytes, or a ciphertext record above the protocol limit
 *   -EBADMSG     authentication failed, record shorter than its overhead, TLS 1.3 record
 *                with no content type, truncated record
 *   -ENOBUFS     the caller's output buffer is too small (nothing is written then)
 *   -EOVERFLOW   the record sequence number space is exhausted: never reuse a nonce
 *   -ENOMEM      allocation failed
 *
 * Record layout on the wire, for a record carrying n bytes of content:
 *
 *   header (5) | explicit nonce (8, TLS 1.2 AES-GCM only) | encrypted body | tag (16)
 *
 * where the encrypted body is the content (TLS 1.2) or content || content type (TLS 1.3,
 * tlsnic sends no padding and strips any padding it receives).
 */
#ifndef TLSNIC_RECORD_H
#define TLSNIC_RECORD_H

#include <linux/tls.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TLSNIC_REC_HDR_LEN 5
#define TLSNIC_REC_TAG_LEN 16
#define TLSNIC_REC_EXPLICIT_NONCE_LEN 8 /* TLS 1.2 AES-GCM */
#define TLSNIC_REC_MAX_PLAINTEXT (1u << 14)
/* Largest possible record on the wire: 2^14 content + explicit nonce + type + tag + header. */
#define TLSNIC_REC_MAX_WIRE_LEN                                                               \
    (TLSNIC_REC_HDR_LEN + TLSNIC_REC_EXPLICIT_NONCE_LEN + TLSNIC_REC_MAX_PLAINTEXT + 1 +       \
     TLSNIC_REC_TAG_LEN)

/* TLS content types (RFC 8446, 5). */
#define TLSNIC_CT_CHANGE_CIPHER_SPEC 20
#define TLSNIC_CT_ALERT 21
#define TLSNIC_CT_HANDSHAKE 22
#define TLSNIC_CT_APPLICATION_DATA 23

/* Any of the crypto_info structs tlsnic accepts; `info` is the common prefix. */
union tlsnic_crypto_info {
    struct tls_crypto_info info;
    struct tls12_crypto_info_aes_gcm_128 aes_gcm_128;
    struct tls12_crypto_info_aes_gcm_256 aes_gcm_256;
    struct tls12_crypto_info_chacha20_poly1305 chacha20_poly1305;
    struct tls12_crypto_info_aes_ccm_128 aes_ccm_128;   /* software only */
    struct tls12_crypto_info_aria_gcm_128 aria_gcm_128; /* software only, TLS 1.2 */
    struct tls12_crypto_info_aria_gcm_256 aria_gcm_256; /* software only, TLS 1.2 */
    struct tls12_crypto_info_sm4_gcm sm4_gcm;           /* software only, if libcrypto has it */
    struct tls12_crypto_info_sm4_ccm sm4_ccm;           /* software only, if libcrypto has it */
};

/*
 * Checks a crypto_info the way the kernel's setsockopt(SOL_TLS) does (version
 * TLS_1_2_VERSION or TLS_1_3_VERSION, a cipher <linux/tls.h> knows, ARIA only with TLS 1.2,
 * info_len exactly the size of that cipher's struct), and that a device can take it (the
 * streaming API runs it). Returns 0, -EINVAL, or -EOPNOTSUPP for a software-only cipher.
 * tlsnic_rec_key_new makes the same checks but the last.
 */
int tlsnic_crypto_info_check(const void *crypto_info, size_t info_len);

/* Size of the crypto_info struct of a TLS_CIPHER_* value <linux/tls.h> knows; 0 otherwise. */
size_t tlsnic_crypto_info_size(uint16_t cipher_type);

/* Human-readable name ("AES-128-GCM", ...) of a TLS_CIPHER_* value; "unknown" otherwise. */
const char *tlsnic_cipher_name(uint16_t cipher_type);

/* ------------------------------------------------------------------------------------------ */
/* Keys: one direction of one connection.                                                     */

typedef struct tlsnic_rec_key tlsnic_rec_key;

/*
 * Creates a key from a crypto_info (copied; the caller may wipe its own copy at once).
 * The key's next record sequence number starts at crypto_info->rec_seq. Any cipher the
 * kernel's UAPI knows: -ENOENT when this libcrypto lacks it (SM4 on OpenSSL 3.0). Keys of
 * software-only ciphers seal and open whole records; the streaming API and the positional
 * keystream refuse them with -EOPNOTSUPP.
 * On success *out owns a new key, freed (and wiped) with tlsnic_rec_key_free.
 */
int tlsnic_rec_key_new(tlsnic_rec_key **out, const void *crypto_info, size_t info_len);

/* Wipes all key material and frees. NULL is accepted. */
void tlsnic_rec_key_free(tlsnic_rec_key *key);

uint16_t tlsnic_rec_key_version(const tlsnic_rec_key *key); /* TLS_1_2_VERSION, ... */
uint16_t tlsnic_rec_key_cipher(const tlsnic_rec_key *key);  /* TLS_CIPHER_* */

/* Sequence number the next tlsnic_rec_seal / tlsnic_rec_open uses. */
uint64_t tlsnic_rec_key_next_seq(const tlsnic_rec_key *key);

/* Bytes between the header and the encrypted body: 8 for TLS 1.2 AES-GCM, else 0. */
size_t tlsnic_rec_key_explicit_nonce_len(const tlsnic_rec_key *key);

/* Bytes a record adds to its content: header + explicit nonce + inner type + tag. */
size_t tlsnic_rec_key_overhead(const tlsnic_rec_key *key);

/*
 * Copies the crypto_info this key was made from, with rec_seq (and for TLS 1.2 AES-GCM the
 * explicit nonce) advanced to the key's next sequence number: what getsockopt(TLS_TX)
 * returns, and what a device needs to take over the direction. Returns its size, or
 * -ENOBUFS if cap is too small.
 */
int tlsnic_rec_key_export(const tlsnic_rec_key *key, union tlsnic_crypto_info *out,
                          size_t cap);

/* ------------------------------------------------------------------------------------------ */
/* Whole records.                                                                             */

/*
 * Parses a record header (5 bytes) received for this key and returns the total length of
 * the record (header included, > 0), or, checked in the kernel's order (tls_rx_msg_size),
 * -EMSGSIZE (longer than the protocol allows), -EBADMSG (shorter than the overhead),
 * -EINVAL (legacy version is not 0x0303).
 */
int tlsnic_rec_parse_header(const tlsnic_rec_key *key, const uint8_t hdr[TLSNIC_REC_HDR_LEN]);

/*
 * Seals one record of `content_type` carrying content[0..content_len) with the key's next
 * sequence number, which then advances. Writes the whole record to out (cap bytes
 * available) and its length to *out_len. content may be out + explicit nonce + header
 * (in place); any other overlap is undefined. TLS 1.3 records go out with outer type 23.
 * Errors: -EMSGSIZE (content_len > 2^14), -ENOBUFS, -EOVERFLOW, -EINVAL.
 */
int tlsnic_rec_seal(tlsnic_rec_key *key, uint8_t content_type, const uint8_t *content,
                    size_t content_len, uint8_t *out, size_t cap, size_t *out_len);

/*
 * Opens one complete record (rec_len must be exactly the length its header gives) in
 * place with the key's next sequence number, which advances only on success. On success
 * *content points into rec, *content_len is its length and *content_type its real type
 * (TLS 1.3 inner type, padding stripped). On failure the record is garbage and the key
 * must not be used again for this stream (as in the kernel, the connection is dead).
 */
int tlsnic_rec_open(tlsnic_rec_key *key, uint8_t *rec, size_t rec_len, uint8_t *content_type,
                    uint8_t **content, size_t *content_len);

/*
 * tlsnic_rec_open of the record numbered rec_seq, leaving the key's sequence number alone:
 * for looking at records after the next one (MSG_PEEK across records) without taking them.
 */
int tlsnic_rec_open_at(tlsnic_rec_key *key, uint64_t rec_seq, uint8_t *rec, size_t rec_len,
                       uint8_t *content_type, uint8_t **content, size_t *content_len);

/*
 * Takes a record whose body a device already decrypted and authenticated (RX offload:
 * the device's verdict, rx_status.h) as the key's next record: checks the header and the
 * length as tlsnic_rec_open does, finds the content as tlsnic_rec_open would after
 * decryption (TLS 1.3: inner type, padding stripped) and advances the key's sequence
 * number. No crypto. Errors as tlsnic_rec_open (-EBADMSG: no content type in a TLS 1.3
 * record, truncated record); on error the key does not advance.
 */
int tlsnic_rec_accept(tlsnic_rec_key *key, uint8_t *rec, size_t rec_len, uint8_t *content_type,
                      uint8_t **content, size_t *content_len);

/* tlsnic_rec_accept leaving the key's sequence number alone (as tlsnic_rec_open_at: a
 * device-verified record after the next one, for MSG_PEEK across records). */
int tlsnic_rec_accept_at(tlsnic_rec_key *key, uint8_t *rec, size_t rec_len,
                         uint8_t *content_type, uint8_t **content, size_t *content_len);

/*
 * tlsnic_rec_accept for a record whose body was placed apart from its header (the host's
 * batched RX path scatters a device-verified body straight into the program's buffer):
 * checks the header against rec_len (the whole record's length) as tlsnic_rec_open does
 * and advances the key's sequence number. The caller finds the content type itself (TLS
 * 1.3: the body's last non-zero byte). Returns the body length (explicit nonce and tag
 * excluded) or the errors of tlsnic_rec_accept; on error the key does not advance.
 */
int tlsnic_rec_accept_header(tlsnic_rec_key *key, const uint8_t hdr[TLSNIC_REC_HDR_LEN],
                             size_t rec_len);

/* ------------------------------------------------------------------------------------------ */
/* Streaming: one record fed in pieces, as a device meets it in TCP segments.                 */

/*
 * The state of one record between pieces. A plain struct the caller owns (on its stack,
 * in a flow context, in an array of checkpoints); it holds one libcrypto context, set up
 * by tlsnic_rec_stream_init and released by tlsnic_rec_stream_cleanup. Everything else in
 * it is plain data. A checkpoint is a second stream that tlsnic_rec_stream_copy filled:
 * copying back restores the exact state, so a record can be resumed from any byte offset
 * that was saved.
 *
 * libcrypto does not expose the GHASH / Poly1305 accumulator, so the authentication state
 * lives inside the EVP context; that is why a checkpoint is a stream, not raw bytes.
 *
 * ChaCha20-Poly1305 records are streamed as RFC 8439 composes them, from EVP ChaCha20 and
 * EVP_MAC Poly1305, with the keystream made ahead in 1 KB batches: libcrypto's AEAD charges
 * a partly wasted 16-block batch for every update that is not a multiple of 1 KB, which
 * made 1448-byte pieces cost 40% more than whole records.
 */
struct tlsnic_rec_stream {
    void *evp;                  /* EVP_CIPHER_CTX *, owned (AES-GCM records) */
    void *chacha;               /* ChaCha20-Poly1305 state, owned; made on first use */
    const tlsnic_rec_key *key;  /* key of the record in progress; not owned */
    uint64_t keyed_id;          /* id of the key the EVP context holds (0: none) */
    uint64_t rec_seq;           /* sequence number of the record in progress */
    uint32_t body_len;          /* bytes of encrypted body (TLS 1.3: content + type + pad) */
    uint32_t body_off;          /* bytes of the body fed so far */
    uint8_t seal;               /* 1 = sealing, 0 = opening */
    uint8_t active;             /* a record is in progress */
};

/* Prepares a stream for use (allocates its EVP context). -ENOMEM on failure. */
int tlsnic_rec_stream_init(struct tlsnic_rec_stream *s);

/* Releases the EVP context (its key schedule is wiped by libcrypto). Idempotent. */
void tlsnic_rec_stream_cleanup(struct tlsnic_rec_stream *s);

/*
 * Starts sealing (seal = 1) or opening (seal = 0) record rec_seq. hdr is the record's
 * 5-byte header as it is on the wire (its length covers explicit nonce, body and tag);
 * explicit_nonce is the 8 bytes after the header for TLS 1.2 AES-GCM and must be NULL
 * otherwise. The stream does not use the key's own sequence counter: the caller (a
 * device) owns sequencing, and re-sealing a record with the same seq and bytes gives the
 * same output. The key must outlive the record. Errors: -EINVAL (header inconsistent
 * with the key), -EMSGSIZE, -EBADMSG (shorter than the overhead).
 */
int tlsnic_rec_stream_begin(struct tlsnic_rec_stream *s, const tlsnic_rec_key *key, int seal,
                            uint64_t rec_seq, const uint8_t hdr[TLSNIC_REC_HDR_LEN],
                            const uint8_t *explicit_nonce);

/*
 * Feeds the next len bytes of the body (any length, including 0): in is plaintext when
 * sealing and ciphertext when opening; the result goes to out. in == out is allowed.
 * Feeding past body_len gives -EINVAL and changes nothing.
 */
int tlsnic_rec_stream_update(struct tlsnic_rec_stream *s, const uint8_t *in, uint8_t *out,
                             size_t len);

/* Ends a sealed record once the whole body was fed; writes the tag. -EINVAL otherwise. */
int tlsnic_rec_stream_seal_final(struct tlsnic_rec_stream *s, uint8_t tag[TLSNIC_REC_TAG_LEN]);

/* Ends an opened record and checks the tag: 0, or -EBADMSG. */
int tlsnic_rec_stream_open_final(struct tlsnic_rec_stream *s,
                                 const uint8_t tag[TLSNIC_REC_TAG_LEN]);

/* Makes dst an exact copy of src (save or restore a checkpoint). Both must be initialised. */
int tlsnic_rec_stream_copy(struct tlsnic_rec_stream *dst, const struct tlsnic_rec_stream *src);

/* ------------------------------------------------------------------------------------------ */
/* Positional keystream: the body bytes of any record at any offset, without the tag.        */

/*
 * AES-GCM and ChaCha20-Poly1305 encrypt with a counter-mode keystream, so the ciphertext
 * of body bytes [off, off + len) of record rec_seq depends only on the key, the nonce and
 * off. A device re-encrypting a retransmitted segment uses this to pay for the segment's
 * own bytes instead of the record prefix; the tag it needs comes from its own
 * checkpoints. (Authentication of a partial record is impossible by construction.)
 */
struct tlsnic_rec_keystream {
    void *evp;                 /* EVP_CIPHER_CTX * in CTR / ChaCha20 mode, owned */
    uint64_t keyed_id;         /* id of the key the EVP context holds (0: none) */
};

int tlsnic_rec_keystream_init(struct tlsnic_rec_keystream *ks);
void tlsnic_rec_keystream_cleanup(struct tlsnic_rec_keystream *ks);

/*
 * XORs in[0..len) with the keystream at body offset off of record rec_seq (explicit_nonce
 * as for tlsnic_rec_stream_begin) into out; the same call encrypts and decrypts.
 */
int tlsnic_rec_keystream_xor(struct tlsnic_rec_keystream *ks, const tlsnic_rec_key *key,
                             uint64_t rec_seq, const uint8_t *explicit_nonce, uint64_t off,
                             const uint8_t *in, uint8_t *out, size_t len);

#ifdef __cplusplus
}
#endif

#endif
