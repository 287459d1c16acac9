/*
 * The tlsnic record layer against a TLS stack it did not write: libssl handshakes with
 * itself over a socketpair, the client's keys are exported, and then
 *   - records tlsnic seals on the client's fd are read by the libssl server (SSL_read),
 *   - records the libssl server writes (SSL_write) are opened by tlsnic,
 *   - records tlsnic seals through the streaming API, fed in odd pieces, are read too,
 *   - libssl's records opened by the streaming API in pieces, and reproduced at any offset
 *     by the positional keystream: what a receiving / retransmitting device does.
 * Every test runs once per protocol version x cipher; its name says which.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>

#include "fd_io.h"
#include "tls_pair.h"
#include "tlsnic/record.h"

#define ALERT_LEVEL_WARNING 1
#define ALERT_LEVEL_FATAL 2
#define ALERT_CLOSE_NOTIFY 0
#define ALERT_HANDSHAKE_FAILURE 40

struct combo {
    int version;
    uint16_t cipher;
    const char *name;
    int streams; /* a device can take it: the streaming API and the keystream run it */
};

static const struct combo combos[] = {
    {TLS1_2_VERSION, TLS_CIPHER_AES_GCM_128, "TLS1.2/AES-128-GCM", 1},
    {TLS1_2_VERSION, TLS_CIPHER_AES_GCM_256, "TLS1.2/AES-256-GCM", 1},
    {TLS1_2_VERSION, TLS_CIPHER_CHACHA20_POLY1305, "TLS1.2/CHACHA20-POLY1305", 1},
    {TLS1_3_VERSION, TLS_CIPHER_AES_GCM_128, "TLS1.3/AES-128-GCM", 1},
    {TLS1_3_VERSION, TLS_CIPHER_AES_GCM_256, "TLS1.3/AES-256-GCM", 1},
    {TLS1_3_VERSION, TLS_CIPHER_CHACHA20_POLY1305, "TLS1.3/CHACHA20-POLY1305", 1},
    /* software only (whole records): what the kernel also runs, and libssl too */
    {TLS1_2_VERSION, TLS_CIPHER_AES_CCM_128, "TLS1.2/AES-128-CCM", 0},
    {TLS1_3_VERSION, TLS_CIPHER_AES_CCM_128, "TLS1.3/AES-128-CCM", 0},
    {TLS1_2_VERSION, TLS_CIPHER_ARIA_GCM_128, "TLS1.2/ARIA-128-GCM", 0},
    {TLS1_2_VERSION, TLS_CIPHER_ARIA_GCM_256, "TLS1.2/ARIA-256-GCM", 0},
};
#define N_COMBOS (sizeof(combos) / sizeof(combos[0]))

/* The client's side of a connection is tlsnic; the server stays libssl. */
struct fixture {
    struct tls_pair pair;
    tlsnic_rec_key *client_tx; /* seals what the libssl server reads */
    tlsnic_rec_key *client_rx; /* opens what the libssl server writes */
};

static uint8_t wire[TLSNIC_REC_MAX_WIRE_LEN + 64];
static uint8_t payload[TLSNIC_REC_MAX_PLAINTEXT];
static uint8_t received[TLSNIC_REC_MAX_PLAINTEXT + 1];

static int setup(void **state)
{
    const struct combo *combo = *state;
    struct fixture *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return -1;
    if (tls_pair_new(&f->pair, combo->version, combo->cipher, NULL) != 0 ||
        tls_pair_rec_key(f->pair.client, 1, &f->client_tx) != 0 ||
        tls_pair_rec_key(f->pair.client, 0, &f->client_rx) != 0) {
        ERR_print_errors_fp(stderr);
        tlsnic_rec_key_free(f->client_tx);
        tlsnic_rec_key_free(f->client_rx);
        tls_pair_free(&f->pair);
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    tlsnic_rec_key_free(f->client_tx);
    tlsnic_rec_key_free(f->client_rx);
    tls_pair_free(&f->pair);
    free(f);
    return 0;
}

static void fill_payload(size_t len)
{
    assert_int_equal(RAND_bytes(payload, (int)len), 1);
}

static void seal_and_send(struct fixture *f, uint8_t type, const uint8_t *content, size_t len)
{
    size_t wire_len = 0;
    assert_int_equal(tlsnic_rec_seal(f->client_tx, type, content, len, wire, sizeof(wire),
                                     &wire_len),
                     0);
    assert_int_equal(wire_len, len + tlsnic_rec_key_overhead(f->client_tx));
    assert_int_equal(fd_write_all(f->pair.client_fd, wire, wire_len), 0);
}

/* SSL_read on the server until len bytes came, each record checked against content. */
static void server_reads(struct fixture *f, const uint8_t *content, size_t len)
{
    size_t got = 0;
    for (int reads = 0; got < len && reads < 64; reads++) {
        int n = SSL_read(f->pair.server, received + got, (int)(sizeof(received) - got));
        assert_true(n > 0);
        got += (size_t)n;
    }
    assert_int_equal(got, len);
    assert_memory_equal(received, content, len);
}

/* ------------------------------------------------------------------------------------------ */
/* (a) tlsnic seals, libssl reads.                                                             */

static void sealed_records_of_1_1457_and_16384_bytes_are_read_byte_exact(void **state)
{
    struct fixture *f = *state;
    static const size_t sizes[] = {1, 1457, TLSNIC_REC_MAX_PLAINTEXT};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        fill_payload(sizes[i]);
        seal_and_send(f, TLSNIC_CT_APPLICATION_DATA, payload, sizes[i]);
        server_reads(f, payload, sizes[i]);
    }
}

static void many_sealed_records_in_one_write_keep_their_sequence(void **state)
{
    struct fixture *f = *state;
    enum { RECORDS = 40, RECORD_LEN = 333 };
    static uint8_t burst[RECORDS * (RECORD_LEN + 64)];
    size_t burst_len = 0;
    fill_payload(RECORDS * RECORD_LEN);
    for (int i = 0; i < RECORDS; i++) {
        size_t wire_len = 0;
        assert_int_equal(tlsnic_rec_seal(f->client_tx, TLSNIC_CT_APPLICATION_DATA,
                                         payload + i * RECORD_LEN, RECORD_LEN,
                                         burst + burst_len, sizeof(burst) - burst_len,
                                         &wire_len),
                         0);
        burst_len += wire_len;
    }
    assert_int_equal(fd_write_all(f->pair.client_fd, burst, burst_len), 0);
    server_reads(f, payload, RECORDS * RECORD_LEN);
}

static void sealed_close_notify_alert_is_a_clean_shutdown(void **state)
{
    struct fixture *f = *state;
    const uint8_t alert[2] = {ALERT_LEVEL_WARNING, ALERT_CLOSE_NOTIFY};
    seal_and_send(f, TLSNIC_CT_ALERT, alert, sizeof(alert));
    int n = SSL_read(f->pair.server, received, sizeof(received));
    assert_int_equal(n, 0);
    assert_int_equal(SSL_get_error(f->pair.server, n), SSL_ERROR_ZERO_RETURN);
    assert_true(SSL_get_shutdown(f->pair.server) & SSL_RECEIVED_SHUTDOWN);
}

static void sealed_fatal_alert_is_reported_as_that_alert(void **state)
{
    struct fixture *f = *state;
    const uint8_t alert[2] = {ALERT_LEVEL_FATAL, ALERT_HANDSHAKE_FAILURE};
    ERR_clear_error();
    seal_and_send(f, TLSNIC_CT_ALERT, alert, sizeof(alert));
    int n = SSL_read(f->pair.server, received, sizeof(received));
    assert_true(n <= 0);
    assert_int_equal(SSL_get_error(f->pair.server, n), SSL_ERROR_SSL);
    assert_int_equal(ERR_GET_REASON(ERR_peek_last_error()),
                     SSL_AD_REASON_OFFSET + ALERT_HANDSHAKE_FAILURE);
    ERR_clear_error();
}

static void sealed_record_with_a_flipped_tag_bit_is_rejected(void **state)
{
    struct fixture *f = *state;
    fill_payload(100);
    size_t wire_len = 0;
    assert_int_equal(tlsnic_rec_seal(f->client_tx, TLSNIC_CT_APPLICATION_DATA, payload, 100,
                                     wire, sizeof(wire), &wire_len),
                     0);
    wire[wire_len - 1] ^= 0x01;
    assert_int_equal(fd_write_all(f->pair.client_fd, wire, wire_len), 0);
    ERR_clear_error();
    int n = SSL_read(f->pair.server, received, sizeof(received));
    assert_true(n <= 0);
    assert_int_equal(SSL_get_error(f->pair.server, n), SSL_ERROR_SSL);
    assert_int_equal(ERR_GET_REASON(ERR_peek_last_error()), SSL_R_DECRYPTION_FAILED_OR_BAD_RECORD_MAC);
    ERR_clear_error();
}

/* ------------------------------------------------------------------------------------------ */
/* (b) libssl writes, tlsnic opens.                                                            */

static void open_next_record(struct fixture *f, uint8_t *type, uint8_t **content,
                             size_t *content_len)
{
    int rec_len = fd_read_record(f->pair.client_fd, wire, sizeof(wire));
    assert_true(rec_len > 0);
    assert_int_equal(tlsnic_rec_parse_header(f->client_rx, wire), rec_len);
    assert_int_equal(tlsnic_rec_open(f->client_rx, wire, (size_t)rec_len, type, content,
                                     content_len),
                     0);
}

static void openssl_records_of_1_1457_and_16384_bytes_are_opened_byte_exact(void **state)
{
    struct fixture *f = *state;
    static const size_t sizes[] = {1, 1457, TLSNIC_REC_MAX_PLAINTEXT};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        fill_payload(sizes[i]);
        assert_int_equal(SSL_write(f->pair.server, payload, (int)sizes[i]), (int)sizes[i]);
        uint8_t type = 0;
        uint8_t *content = NULL;
        size_t content_len = 0;
        open_next_record(f, &type, &content, &content_len);
        assert_int_equal(type, TLSNIC_CT_APPLICATION_DATA);
        assert_int_equal(content_len, sizes[i]);
        assert_memory_equal(content, payload, sizes[i]);
    }
}

static void openssl_close_notify_is_opened_as_an_alert(void **state)
{
    struct fixture *f = *state;
    assert_true(SSL_shutdown(f->pair.server) >= 0);
    uint8_t type = 0;
    uint8_t *content = NULL;
    size_t content_len = 0;
    open_next_record(f, &type, &content, &content_len);
    assert_int_equal(type, TLSNIC_CT_ALERT);
    assert_int_equal(content_len, 2);
    assert_int_equal(content[0], ALERT_LEVEL_WARNING);
    assert_int_equal(content[1], ALERT_CLOSE_NOTIFY);
}

static void openssl_record_with_a_flipped_ciphertext_bit_is_ebadmsg(void **state)
{
    struct fixture *f = *state;
    fill_payload(500);
    assert_int_equal(SSL_write(f->pair.server, payload, 500), 500);
    int rec_len = fd_read_record(f->pair.client_fd, wire, sizeof(wire));
    assert_true(rec_len > 0);
    wire[rec_len / 2] ^= 0x80;
    uint8_t type = 0;
    uint8_t *content = NULL;
    size_t content_len = 0;
    assert_int_equal(tlsnic_rec_open(f->client_rx, wire, (size_t)rec_len, &type, &content,
                                     &content_len),
                     -EBADMSG);
}

/* ------------------------------------------------------------------------------------------ */
/* (c) the streaming API, fed in odd pieces, seals records libssl reads.                       */

/* Header of a record whose encrypted body is body_len bytes, as tlsnic sends it. */
static void record_header(const tlsnic_rec_key *key, size_t body_len, uint8_t hdr[5])
{
    size_t len = tlsnic_rec_key_explicit_nonce_len(key) + body_len + TLSNIC_REC_TAG_LEN;
    hdr[0] = TLSNIC_CT_APPLICATION_DATA;
    hdr[1] = 3;
    hdr[2] = 3;
    hdr[3] = (uint8_t)(len >> 8);
    hdr[4] = (uint8_t)len;
}

/*
 * Lays out record rec_seq carrying content[0..len) in wire, and returns the offset of its
 * body; *body_len is the bytes to stream (TLS 1.3: content then the inner type byte).
 */
static size_t stream_layout(const tlsnic_rec_key *key, uint64_t rec_seq, const uint8_t *content,
                            size_t len, size_t *body_len)
{
    int tls13 = tlsnic_rec_key_version(key) == TLS_1_3_VERSION;
    size_t nonce_len = tlsnic_rec_key_explicit_nonce_len(key);
    *body_len = len + (tls13 ? 1 : 0);
    record_header(key, *body_len, wire);
    for (size_t i = 0; i < nonce_len; i++) /* explicit nonce = sequence number, as libssl */
        wire[TLSNIC_REC_HDR_LEN + i] = (uint8_t)(rec_seq >> (8 * (nonce_len - 1 - i)));
    size_t body = TLSNIC_REC_HDR_LEN + nonce_len;
    memcpy(wire + body, content, len);
    if (tls13)
        wire[body + len] = TLSNIC_CT_APPLICATION_DATA;
    return body;
}

/* Feeds wire[body + from .. body + to) in place, in pieces cycling through `pieces`. */
static void stream_feed(struct tlsnic_rec_stream *s, size_t body, size_t from, size_t to,
                        const size_t *pieces, size_t n_pieces)
{
    size_t off = from;
    for (size_t i = 0; off < to; i++) {
        size_t piece = pieces[i % n_pieces];
        if (piece > to - off)
            piece = to - off;
        assert_int_equal(tlsnic_rec_stream_update(s, wire + body + off, wire + body + off, piece),
                         0);
        off += piece;
    }
}

static void stream_sealed_records_fed_in_odd_pieces_are_read_byte_exact(void **state)
{
    struct fixture *f = *state;
    static const size_t sizes[] = {1, 1457, 4000, TLSNIC_REC_MAX_PLAINTEXT};
    static const size_t pieces[] = {1, 7, 0, 13, 1448, 3, 255, 16, 4097};
    uint64_t rec_seq = tlsnic_rec_key_next_seq(f->client_tx);
    struct tlsnic_rec_stream s;
    assert_int_equal(tlsnic_rec_stream_init(&s), 0);
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++, rec_seq++) {
        fill_payload(sizes[i]);
        size_t body_len = 0;
        size_t body = stream_layout(f->client_tx, rec_seq, payload, sizes[i], &body_len);
        const uint8_t *nonce = body > TLSNIC_REC_HDR_LEN ? wire + TLSNIC_REC_HDR_LEN : NULL;
        assert_int_equal(tlsnic_rec_stream_begin(&s, f->client_tx, 1, rec_seq, wire, nonce), 0);
        stream_feed(&s, body, 0, body_len, pieces, sizeof(pieces) / sizeof(pieces[0]));
        assert_int_equal(tlsnic_rec_stream_seal_final(&s, wire + body + body_len), 0);
        assert_int_equal(fd_write_all(f->pair.client_fd, wire, body + body_len + TLSNIC_REC_TAG_LEN),
                         0);
        server_reads(f, payload, sizes[i]);
    }
    tlsnic_rec_stream_cleanup(&s);
}

static void stream_resumed_from_a_mid_record_checkpoint_is_read_byte_exact(void **state)
{
    struct fixture *f = *state;
    enum { LEN = 5000, CHECKPOINT_AT = 2897 };
    static const size_t pieces[] = {1448, 11};
    static uint8_t discarded[LEN + 1];
    uint64_t rec_seq = tlsnic_rec_key_next_seq(f->client_tx);
    struct tlsnic_rec_stream s, checkpoint;
    assert_int_equal(tlsnic_rec_stream_init(&s), 0);
    assert_int_equal(tlsnic_rec_stream_init(&checkpoint), 0);

    fill_payload(LEN);
    size_t body_len = 0;
    size_t body = stream_layout(f->client_tx, rec_seq, payload, LEN, &body_len);
    const uint8_t *nonce = body > TLSNIC_REC_HDR_LEN ? wire + TLSNIC_REC_HDR_LEN : NULL;
    assert_int_equal(tlsnic_rec_stream_begin(&s, f->client_tx, 1, rec_seq, wire, nonce), 0);
    stream_feed(&s, body, 0, CHECKPOINT_AT, pieces, 2);
    assert_int_equal(tlsnic_rec_stream_copy(&checkpoint, &s), 0);

    /* Run the rest once and throw it away (a segment that was lost), then resume. */
    memcpy(discarded, wire + body + CHECKPOINT_AT, body_len - CHECKPOINT_AT);
    stream_feed(&s, body, CHECKPOINT_AT, body_len, pieces, 2);
    memcpy(wire + body + CHECKPOINT_AT, discarded, body_len - CHECKPOINT_AT);
    assert_int_equal(tlsnic_rec_stream_copy(&s, &checkpoint), 0);
    stream_feed(&s, body, CHECKPOINT_AT, body_len, pieces, 2);
    assert_int_equal(tlsnic_rec_stream_seal_final(&s, wire + body + body_len), 0);

    assert_int_equal(fd_write_all(f->pair.client_fd, wire, body + body_len + TLSNIC_REC_TAG_LEN), 0);
    server_reads(f, payload, LEN);
    tlsnic_rec_stream_cleanup(&s);
    tlsnic_rec_stream_cleanup(&checkpoint);
}

/* ------------------------------------------------------------------------------------------ */
/* (d) what a receiving device does: libssl's records opened in pieces, or at any offset.     */

static void openssl_records_opened_by_the_stream_in_odd_pieces_are_byte_exact(void **state)
{
    struct fixture *f = *state;
    static const size_t sizes[] = {1, 1457, TLSNIC_REC_MAX_PLAINTEXT};
    static const size_t pieces[] = {3, 1448, 0, 1, 517};
    uint64_t rec_seq = tlsnic_rec_key_next_seq(f->client_rx);
    size_t nonce_len = tlsnic_rec_key_explicit_nonce_len(f->client_rx);
    size_t body = TLSNIC_REC_HDR_LEN + nonce_len;
    int tls13 = tlsnic_rec_key_version(f->client_rx) == TLS_1_3_VERSION;
    struct tlsnic_rec_stream s;
    assert_int_equal(tlsnic_rec_stream_init(&s), 0);
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++, rec_seq++) {
        fill_payload(sizes[i]);
        assert_int_equal(SSL_write(f->pair.server, payload, (int)sizes[i]), (int)sizes[i]);
        int rec_len = fd_read_record(f->pair.client_fd, wire, sizeof(wire));
        assert_true(rec_len > 0);
        size_t body_len = (size_t)rec_len - body - TLSNIC_REC_TAG_LEN;
        assert_int_equal(body_len, sizes[i] + (tls13 ? 1 : 0));
        const uint8_t *nonce = nonce_len ? wire + TLSNIC_REC_HDR_LEN : NULL;
        assert_int_equal(tlsnic_rec_stream_begin(&s, f->client_rx, 0, rec_seq, wire, nonce), 0);
        stream_feed(&s, body, 0, body_len, pieces, sizeof(pieces) / sizeof(pieces[0]));
        assert_int_equal(tlsnic_rec_stream_open_final(&s, wire + body + body_len), 0);
        assert_memory_equal(wire + body, payload, sizes[i]);
        if (tls13)
            assert_int_equal(wire[body + sizes[i]], TLSNIC_CT_APPLICATION_DATA);
    }
    tlsnic_rec_stream_cleanup(&s);
}

static void keystream_at_any_offset_reproduces_openssl_ciphertext(void **state)
{
    struct fixture *f = *state;
    enum { LEN = 4000 };
    static const size_t offsets[] = {0, 1, 15, 16, 63, 64, 1448, 2896, LEN - 1};
    static uint8_t plain_body[LEN + 1], piece[LEN + 1];
    uint64_t rec_seq = tlsnic_rec_key_next_seq(f->client_rx);
    size_t nonce_len = tlsnic_rec_key_explicit_nonce_len(f->client_rx);
    size_t body = TLSNIC_REC_HDR_LEN + nonce_len;
    int tls13 = tlsnic_rec_key_version(f->client_rx) == TLS_1_3_VERSION;
    size_t body_len = LEN + (tls13 ? 1 : 0);

    fill_payload(LEN);
    memcpy(plain_body, payload, LEN);
    plain_body[LEN] = TLSNIC_CT_APPLICATION_DATA;
    assert_int_equal(SSL_write(f->pair.server, payload, LEN), LEN);
    int rec_len = fd_read_record(f->pair.client_fd, wire, sizeof(wire));
    assert_int_equal(rec_len, (int)(body + body_len + TLSNIC_REC_TAG_LEN));

    struct tlsnic_rec_keystream ks;
    assert_int_equal(tlsnic_rec_keystream_init(&ks), 0);
    const uint8_t *nonce = nonce_len ? wire + TLSNIC_REC_HDR_LEN : NULL;
    for (size_t i = 0; i < sizeof(offsets) / sizeof(offsets[0]); i++) {
        size_t off = offsets[i], len = body_len - off;
        assert_int_equal(tlsnic_rec_keystream_xor(&ks, f->client_rx, rec_seq, nonce, off,
                                                  plain_body + off, piece, len),
                         0);
        assert_memory_equal(piece, wire + body + off, len);
    }
    tlsnic_rec_keystream_cleanup(&ks);
}

/* A software-only cipher: whole records work (above); what a device would need does not. */
static void streaming_api_refuses_a_software_only_cipher(void **state)
{
    struct fixture *f = *state;
    struct tlsnic_rec_stream st;
    assert_int_equal(tlsnic_rec_stream_init(&st), 0);
    uint8_t hdr[TLSNIC_REC_HDR_LEN], nonce[8] = {0};
    record_header(f->client_tx, 100, hdr);
    const uint8_t *explicit_nonce = tlsnic_rec_key_explicit_nonce_len(f->client_tx) ? nonce : NULL;
    assert_int_equal(tlsnic_rec_stream_begin(&st, f->client_tx, 1, 1, hdr, explicit_nonce),
                     -EOPNOTSUPP);
    tlsnic_rec_stream_cleanup(&st);
    struct tlsnic_rec_keystream ks;
    assert_int_equal(tlsnic_rec_keystream_init(&ks), 0);
    uint8_t buf[16] = {0};
    assert_int_equal(tlsnic_rec_keystream_xor(&ks, f->client_tx, 1, explicit_nonce, 0, buf,
                                              buf, sizeof(buf)),
                     -EOPNOTSUPP);
    tlsnic_rec_keystream_cleanup(&ks);
    union tlsnic_crypto_info ci;
    assert_true(tlsnic_rec_key_export(f->client_tx, &ci, sizeof(ci)) > 0);
    assert_int_equal(tlsnic_crypto_info_check(&ci, tlsnic_crypto_info_size(ci.info.cipher_type)),
                     -EOPNOTSUPP); /* what a device's add checks */
    OPENSSL_cleanse(&ci, sizeof(ci));
}

/* ------------------------------------------------------------------------------------------ */

enum { ALL, STREAMING, SW_ONLY }; /* which combos a behaviour runs for */

static const struct {
    const char *name;
    CMUnitTestFunction fn;
    int runs_for;
} behaviours[] = {
#define BEHAVIOUR(fn, which) {#fn, fn, which}
    BEHAVIOUR(sealed_records_of_1_1457_and_16384_bytes_are_read_byte_exact, ALL),
    BEHAVIOUR(many_sealed_records_in_one_write_keep_their_sequence, ALL),
    BEHAVIOUR(sealed_close_notify_alert_is_a_clean_shutdown, ALL),
    BEHAVIOUR(sealed_fatal_alert_is_reported_as_that_alert, ALL),
    BEHAVIOUR(sealed_record_with_a_flipped_tag_bit_is_rejected, ALL),
    BEHAVIOUR(openssl_records_of_1_1457_and_16384_bytes_are_opened_byte_exact, ALL),
    BEHAVIOUR(openssl_close_notify_is_opened_as_an_alert, ALL),
    BEHAVIOUR(openssl_record_with_a_flipped_ciphertext_bit_is_ebadmsg, ALL),
    BEHAVIOUR(stream_sealed_records_fed_in_odd_pieces_are_read_byte_exact, STREAMING),
    BEHAVIOUR(stream_resumed_from_a_mid_record_checkpoint_is_read_byte_exact, STREAMING),
    BEHAVIOUR(openssl_records_opened_by_the_stream_in_odd_pieces_are_byte_exact, STREAMING),
    BEHAVIOUR(keystream_at_any_offset_reproduces_openssl_ciphertext, STREAMING),
    BEHAVIOUR(streaming_api_refuses_a_software_only_cipher, SW_ONLY),
#undef BEHAVIOUR
};
#define N_BEHAVIOURS (sizeof(behaviours) / sizeof(behaviours[0]))

int main(void)
{
    static struct CMUnitTest tests[N_BEHAVIOURS * N_COMBOS];
    static char names[N_BEHAVIOURS * N_COMBOS][160];
    size_t n = 0;
    for (size_t b = 0; b < N_BEHAVIOURS; b++) {
        for (size_t c = 0; c < N_COMBOS; c++) {
            if ((behaviours[b].runs_for == STREAMING && !combos[c].streams) ||
                (behaviours[b].runs_for == SW_ONLY && combos[c].streams))
                continue;
            snprintf(names[n], sizeof(names[n]), "%s [%s]", behaviours[b].name, combos[c].name);
            tests[n] = (struct CMUnitTest){
                .name = names[n],
                .test_func = behaviours[b].fn,
                .setup_func = setup,
                .teardown_func = teardown,
                .initial_state = (void *)&combos[c],
            };
            n++;
        }
    }
    return _cmocka_run_group_tests("interop", tests, n, NULL, NULL);
}
