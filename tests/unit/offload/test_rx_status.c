/*
 * The RX status (src/offload/rx_status.c): the device's entries as the host reads them.
 * The "device" here is the test: it seals records with the record layer, decrypts what it
 * likes in place with the positional keystream and publishes entries; the host side must
 * use exactly the records the device verified and turn everything else back into what was
 * on the wire, so that the record layer opens it.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "tlsnic/rx_status.h"

#define ISS 0xfffffc00u /* sequence numbers wrap inside the stream */

struct combo {
    uint16_t version, cipher;
};
static const struct combo combos[] = {
    {TLS_1_2_VERSION, TLS_CIPHER_AES_GCM_128},      {TLS_1_2_VERSION, TLS_CIPHER_AES_GCM_256},
    {TLS_1_2_VERSION, TLS_CIPHER_CHACHA20_POLY1305}, {TLS_1_3_VERSION, TLS_CIPHER_AES_GCM_128},
    {TLS_1_3_VERSION, TLS_CIPHER_AES_GCM_256},      {TLS_1_3_VERSION, TLS_CIPHER_CHACHA20_POLY1305},
};
#define N_COMBOS (sizeof(combos) / sizeof(combos[0]))

static size_t make_info(union tlsnic_crypto_info *ci, struct combo c, uint8_t fill)
{
    memset(ci, 0, sizeof(*ci));
    ci->info.version = c.version;
    ci->info.cipher_type = c.cipher;
    size_t len = tlsnic_crypto_info_size(c.cipher);
    memset((uint8_t *)ci + sizeof(ci->info), fill, len - sizeof(ci->info));
    uint8_t *rs = c.cipher == TLS_CIPHER_AES_GCM_128   ? ci->aes_gcm_128.rec_seq
                  : c.cipher == TLS_CIPHER_AES_GCM_256 ? ci->aes_gcm_256.rec_seq
                                                       : ci->chacha20_poly1305.rec_seq;
    memset(rs, 0, 8);
    return len;
}

static tlsnic_rec_key *key_of(struct combo c, uint8_t fill)
{
    union tlsnic_crypto_info ci;
    size_t len = make_info(&ci, c, fill);
    tlsnic_rec_key *k;
    assert_int_equal(tlsnic_rec_key_new(&k, &ci, len), 0);
    return k;
}

/* A stream of n sealed records of content_len bytes each ("r<i>..."), from ISS on. */
struct stream {
    struct combo c;
    uint8_t buf[8192];
    uint8_t wire[8192]; /* as on the wire, for comparison */
    size_t len;
    uint32_t start[8]; /* record i at offset start[i] */
    uint32_t rlen[8];
    size_t n, hn;
};

static void stream_make(struct stream *st, struct combo c, size_t n, size_t content_len)
{
    memset(st, 0, sizeof(*st));
    st->c = c;
    tlsnic_rec_key *tx = key_of(c, 0x42);
    st->hn = 5 + tlsnic_rec_key_explicit_nonce_len(tx);
    for (size_t i = 0; i < n; i++) {
        uint8_t content[512];
        assert_true(content_len <= sizeof(content));
        memset(content, 'a' + (int)i, content_len);
        size_t l;
        assert_int_equal(tlsnic_rec_seal(tx, TLSNIC_CT_APPLICATION_DATA, content, content_len,
                                         st->buf + st->len, sizeof(st->buf) - st->len, &l),
                         0);
        st->start[i] = (uint32_t)st->len;
        st->rlen[i] = (uint32_t)l;
        st->len += l;
    }
    st->n = n;
    memcpy(st->wire, st->buf, st->len);
    tlsnic_rec_key_free(tx);
}

/* The device: decrypts dec_len body bytes of record i in place and publishes entry id. */
static void dev_decrypt(struct tlsnic_rxs *s, struct stream *st, uint64_t id, size_t i,
                        uint32_t dec_len, uint32_t verdict, uint64_t rec_seq, uint16_t epoch,
                        uint8_t fill)
{
    tlsnic_rec_key *k = key_of(st->c, fill);
    struct tlsnic_rec_keystream ks;
    assert_int_equal(tlsnic_rec_keystream_init(&ks), 0);
    uint8_t *rec = st->buf + st->start[i];
    assert_int_equal(tlsnic_rec_keystream_xor(&ks, k, rec_seq, st->hn > 5 ? rec + 5 : NULL, 0,
                                              rec + st->hn, rec + st->hn, dec_len),
                     0);
    struct tlsnic_rxs_entry e = {.tcp_seq = ISS + st->start[i], .len = st->rlen[i],
                                 .rec_seq = rec_seq, .state = TLSNIC_RXS_STATE(dec_len, verdict),
                                 .epoch = epoch, .hn = (uint8_t)st->hn};
    if (st->hn > 5)
        memcpy(e.explicit_nonce, rec + 5, 8);
    tlsnic_rxs_put(s, id, &e);
    tlsnic_rec_keystream_cleanup(&ks);
    tlsnic_rec_key_free(k);
}

static uint32_t body_len(const struct stream *st, size_t i)
{
    return st->rlen[i] - (uint32_t)st->hn - 16;
}

struct host {
    struct tlsnic_rxs *s;
    struct tlsnic_rxs_reader r;
    tlsnic_rec_key *key, *prev;
    struct tlsnic_rxs_keys k;
};

static void host_init(struct host *h, struct combo c)
{
    memset(h, 0, sizeof(*h));
    assert_int_equal(tlsnic_rxs_new(&h->s, 16), 0);
    assert_int_equal(tlsnic_rxs_reader_init(&h->r, h->s), 0);
    h->key = key_of(c, 0x42);
    h->k = (struct tlsnic_rxs_keys){.cur = h->key, .epoch = 0};
}

static void host_fini(struct host *h)
{
    tlsnic_rxs_reader_cleanup(&h->r);
    tlsnic_rxs_free(h->s);
    tlsnic_rec_key_free(h->key);
    tlsnic_rec_key_free(h->prev);
}

/* The host's reading of record i: header restore, then the record. Returns the device
 * verdict (1 verified, 0 software) and checks the content either way. */
static int host_read(struct host *h, struct stream *st, size_t i, struct tlsnic_rxs_info *info)
{
    uint8_t *rec = st->buf + st->start[i];
    uint32_t seq = ISS + st->start[i];
    assert_true(tlsnic_rxs_restore(&h->r, &h->k, seq, rec, 5) >= 0);
    int v = tlsnic_rxs_record(&h->r, &h->k, seq, rec, st->rlen[i], 5,
                              tlsnic_rec_key_next_seq(h->key), info);
    assert_true(v >= 0);
    uint8_t type, *content;
    size_t clen;
    if (v == 1) {
        assert_int_equal(tlsnic_rec_accept(h->key, rec, st->rlen[i], &type, &content, &clen), 0);
    } else {
        assert_memory_equal(rec, st->wire + st->start[i], st->rlen[i]);
        assert_int_equal(tlsnic_rec_open(h->key, rec, st->rlen[i], &type, &content, &clen), 0);
    }
    assert_int_equal(type, TLSNIC_CT_APPLICATION_DATA);
    for (size_t j = 0; j < clen; j++)
        assert_int_equal(content[j], 'a' + (int)i);
    tlsnic_rxs_consume(&h->r, seq + st->rlen[i]);
    return v;
}

static void test_format_and_view_refuse_what_is_not_a_status(void **state)
{
    uint8_t region[TLSNIC_RXS_HDR_LEN + 16 * TLSNIC_RXS_ENTRY_LEN];
    struct tlsnic_rxs_host hw = {0};
    struct tlsnic_rxs v;
    assert_int_equal(tlsnic_rxs_format(region, 12), -EINVAL); /* not a power of two */
    assert_int_equal(tlsnic_rxs_format(region, 16), 0);
    assert_int_equal(tlsnic_rxs_view(&v, region, sizeof(region), &hw), 0);
    assert_int_equal(v.n, 16);
    assert_int_equal(tlsnic_rxs_view(&v, region, sizeof(region) - 1, &hw), -EBADMSG);
    region[0] ^= 1;
    assert_int_equal(tlsnic_rxs_view(&v, region, sizeof(region), &hw), -EBADMSG);
    region[0] ^= 1;
    ((struct tlsnic_rxs_hdr *)region)->n_entries = 1u << 30;
    assert_int_equal(tlsnic_rxs_view(&v, region, sizeof(region), &hw), -EBADMSG);
}

static void test_untouched_records_are_opened_in_software(void **state)
{
    for (size_t c = 0; c < N_COMBOS; c++) {
        struct stream st;
        struct host h;
        stream_make(&st, combos[c], 3, 100);
        host_init(&h, combos[c]);
        for (size_t i = 0; i < 3; i++) {
            struct tlsnic_rxs_info info;
            assert_int_equal(host_read(&h, &st, i, &info), 0);
            assert_int_equal(info.entries, 0);
            assert_int_equal(info.restored, 0);
        }
        host_fini(&h);
    }
}

static void test_verified_record_is_used_without_host_crypto(void **state)
{
    for (size_t c = 0; c < N_COMBOS; c++) {
        struct stream st;
        struct host h;
        stream_make(&st, combos[c], 4, 200);
        host_init(&h, combos[c]);
        for (size_t i = 0; i < 4; i++)
            dev_decrypt(h.s, &st, i, i, body_len(&st, i), TLSNIC_RXS_OK, i, 0, 0x42);
        for (size_t i = 0; i < 4; i++)
            assert_int_equal(host_read(&h, &st, i, NULL), 1);
        host_fini(&h);
    }
}

static void test_verdict_with_another_sequence_number_is_not_trusted(void **state)
{
    for (size_t c = 0; c < N_COMBOS; c++) {
        struct stream st;
        struct host h;
        stream_make(&st, combos[c], 2, 64);
        host_init(&h, combos[c]);
        /* The device resynced wrongly: record 1 decrypted as record 5 and "verified". */
        dev_decrypt(h.s, &st, 0, 0, body_len(&st, 0), TLSNIC_RXS_OK, 0, 0, 0x42);
        dev_decrypt(h.s, &st, 1, 1, body_len(&st, 1), TLSNIC_RXS_OK, 5, 0, 0x42);
        assert_int_equal(host_read(&h, &st, 0, NULL), 1);
        struct tlsnic_rxs_info info;
        assert_int_equal(host_read(&h, &st, 1, &info), 0);
        assert_int_equal(info.restored, body_len(&st, 1));
        host_fini(&h);
    }
}

static void test_record_decrypted_in_part_is_restored_and_opened(void **state)
{
    for (size_t c = 0; c < N_COMBOS; c++) {
        struct stream st;
        struct host h;
        stream_make(&st, combos[c], 2, 300);
        host_init(&h, combos[c]);
        dev_decrypt(h.s, &st, 0, 0, 77, TLSNIC_RXS_PENDING, 0, 0, 0x42); /* gap after 77 */
        dev_decrypt(h.s, &st, 1, 1, body_len(&st, 1), TLSNIC_RXS_OK, 1, 0, 0x42);
        struct tlsnic_rxs_info info;
        assert_int_equal(host_read(&h, &st, 0, &info), 0);
        assert_int_equal(info.restored, 77);
        assert_int_equal(info.entries, 1);
        assert_int_equal(host_read(&h, &st, 1, NULL), 1);
        host_fini(&h);
    }
}

static void test_device_tag_failure_leaves_the_check_to_the_host(void **state)
{
    for (size_t c = 0; c < N_COMBOS; c++) {
        struct stream st;
        struct host h;
        stream_make(&st, combos[c], 1, 50);
        host_init(&h, combos[c]);
        st.buf[st.start[0] + st.rlen[0] - 1] ^= 0x10; /* the tag, on the wire */
        st.wire[st.start[0] + st.rlen[0] - 1] ^= 0x10;
        dev_decrypt(h.s, &st, 0, 0, body_len(&st, 0), TLSNIC_RXS_BAD, 0, 0, 0x42);
        uint8_t *rec = st.buf + st.start[0];
        struct tlsnic_rxs_info info;
        assert_int_equal(tlsnic_rxs_record(&h.r, &h.k, ISS, rec, st.rlen[0], 0, 0, &info), 0);
        assert_true(info.device_bad);
        assert_memory_equal(rec, st.wire, st.rlen[0]);
        uint8_t type, *content;
        size_t clen;
        assert_int_equal(tlsnic_rec_open(h.key, rec, st.rlen[0], &type, &content, &clen), -EBADMSG);
        host_fini(&h);
    }
}

static void test_revoked_verdict_makes_the_host_check(void **state)
{
    struct stream st;
    struct host h;
    stream_make(&st, combos[0], 1, 50);
    host_init(&h, combos[0]);
    dev_decrypt(h.s, &st, 0, 0, body_len(&st, 0), TLSNIC_RXS_OK, 0, 0, 0x42);
    tlsnic_rxs_set_state(h.s, 0, TLSNIC_RXS_STATE(body_len(&st, 0), TLSNIC_RXS_RECHECK));
    struct tlsnic_rxs_info info;
    assert_int_equal(host_read(&h, &st, 0, &info), 0);
    assert_int_equal(info.restored, body_len(&st, 0));
    host_fini(&h);
}

static void test_spans_of_the_previous_key_are_restored_with_it(void **state)
{
    for (size_t c = 3; c < N_COMBOS; c++) { /* TLS 1.3 rekeys */
        struct stream st;
        struct host h;
        stream_make(&st, combos[c], 1, 80);
        host_init(&h, combos[c]);
        /* The device missed a KeyUpdate: it decrypted with the old key (epoch 0), the
         * host already runs epoch 1. */
        dev_decrypt(h.s, &st, 0, 0, body_len(&st, 0), TLSNIC_RXS_BAD, 0, 0, 0x77);
        h.prev = key_of(combos[c], 0x77);
        h.k = (struct tlsnic_rxs_keys){.cur = h.key, .prev = h.prev, .epoch = 1};
        assert_int_equal(host_read(&h, &st, 0, NULL), 0);
        host_fini(&h);
    }
}

static void test_span_of_an_unknown_key_is_ebadmsg(void **state)
{
    struct stream st;
    struct host h;
    stream_make(&st, combos[3], 1, 80);
    host_init(&h, combos[3]);
    dev_decrypt(h.s, &st, 0, 0, 10, TLSNIC_RXS_PENDING, 0, 7, 0x42);
    uint8_t *rec = st.buf;
    assert_int_equal(tlsnic_rxs_record(&h.r, &h.k, ISS, rec, st.rlen[0], 0, 0, NULL), -EBADMSG);
    host_fini(&h);
}

static void test_header_decrypted_by_a_false_record_is_restored_first(void **state)
{
    for (size_t c = 0; c < N_COMBOS; c++) {
        struct stream st;
        struct host h;
        stream_make(&st, combos[c], 2, 100);
        host_init(&h, combos[c]);
        /* A "record" the device placed 20 bytes before record 1 (a false header): its body
         * span covers record 1's header. */
        tlsnic_rec_key *k = key_of(combos[c], 0x42);
        struct tlsnic_rec_keystream ks;
        assert_int_equal(tlsnic_rec_keystream_init(&ks), 0);
        uint32_t at = st.start[1] - 20;
        uint8_t nonce[8] = {9, 9, 9, 9, 9, 9, 9, 9};
        uint32_t dec = 60;
        assert_int_equal(tlsnic_rec_keystream_xor(&ks, k, 9, st.hn > 5 ? nonce : NULL, 0,
                                                  st.buf + at + st.hn, st.buf + at + st.hn, dec),
                         0);
        struct tlsnic_rxs_entry e = {.tcp_seq = ISS + at, .len = 200, .rec_seq = 9,
                                     .state = TLSNIC_RXS_STATE(dec, TLSNIC_RXS_BAD),
                                     .hn = (uint8_t)st.hn};
        memcpy(e.explicit_nonce, nonce, 8);
        tlsnic_rxs_put(h.s, 0, &e);
        assert_int_equal(host_read(&h, &st, 0, NULL), 0);
        struct tlsnic_rxs_info info;
        assert_int_equal(host_read(&h, &st, 1, &info), 0);
        tlsnic_rec_keystream_cleanup(&ks);
        tlsnic_rec_key_free(k);
        host_fini(&h);
    }
}

static void test_reused_slot_is_not_read_as_the_old_entry(void **state)
{
    struct stream st;
    struct host h;
    stream_make(&st, combos[0], 1, 40);
    host_init(&h, combos[0]);
    /* Entry id 16 lands in slot 0; a reader still at id 0 must not take it for id 0. */
    dev_decrypt(h.s, &st, 16, 0, body_len(&st, 0), TLSNIC_RXS_OK, 0, 0, 0x42);
    h.r.next = 0;
    assert_int_equal(host_read(&h, &st, 0, NULL), 1); /* found as id 16 */
    host_fini(&h);
}

static void test_plan_gives_the_verified_records_ahead_and_stops_at_the_first_other(void **state)
{
    for (size_t c = 0; c < N_COMBOS; c++) {
        struct stream st;
        struct host h;
        stream_make(&st, combos[c], 5, 100);
        host_init(&h, combos[c]);
        for (size_t i = 0; i < 3; i++)
            dev_decrypt(h.s, &st, i, i, body_len(&st, i), TLSNIC_RXS_OK, i, 0, 0x42);
        dev_decrypt(h.s, &st, 3, 3, body_len(&st, 3), TLSNIC_RXS_PENDING, 3, 0, 0x42);
        dev_decrypt(h.s, &st, 4, 4, body_len(&st, 4), TLSNIC_RXS_OK, 4, 0, 0x42);
        uint32_t lens[8];
        assert_int_equal(tlsnic_rxs_plan(&h.r, &h.k, ISS, 0, lens, 8), 3);
        for (size_t i = 0; i < 3; i++)
            assert_int_equal(lens[i], st.rlen[i]);
        assert_int_equal(tlsnic_rxs_plan(&h.r, &h.k, ISS, 0, lens, 2), 2);
        assert_int_equal(tlsnic_rxs_plan(&h.r, &h.k, ISS, 7, lens, 8), 0); /* not the host's numbers */
        assert_int_equal(tlsnic_rxs_plan(&h.r, &h.k, ISS + st.start[3], 3, lens, 8), 0);
        assert_int_equal(tlsnic_rxs_plan(&h.r, &h.k, ISS + 1, 0, lens, 8), 0); /* not a start */
        host_fini(&h);
    }
}

static void test_verified_judges_without_touching_the_bytes(void **state)
{
    for (size_t c = 0; c < N_COMBOS; c++) {
        struct stream st;
        struct host h;
        stream_make(&st, combos[c], 2, 100);
        host_init(&h, combos[c]);
        dev_decrypt(h.s, &st, 0, 0, body_len(&st, 0), TLSNIC_RXS_OK, 0, 0, 0x42);
        dev_decrypt(h.s, &st, 1, 1, body_len(&st, 1), TLSNIC_RXS_OK, 1, 0, 0x42);
        tlsnic_rxs_set_state(h.s, 1, TLSNIC_RXS_STATE(body_len(&st, 1), TLSNIC_RXS_RECHECK));
        const uint8_t *nonce0 = st.hn > 5 ? st.buf + st.start[0] + 5 : NULL;
        struct tlsnic_rxs_info info;
        assert_int_equal(tlsnic_rxs_verified(&h.r, &h.k, ISS, st.rlen[0], nonce0, 0, &info), 1);
        assert_int_equal(tlsnic_rxs_verified(&h.r, &h.k, ISS, st.rlen[0], nonce0, 1, &info), 0);
        assert_int_equal(tlsnic_rxs_verified(&h.r, &h.k, ISS, st.rlen[0] - 1, nonce0, 0, &info), 0);
        if (st.hn > 5) {
            uint8_t other[8] = {0};
            assert_int_equal(tlsnic_rxs_verified(&h.r, &h.k, ISS, st.rlen[0], other, 0, &info), 0);
            assert_int_equal(tlsnic_rxs_verified(&h.r, &h.k, ISS, st.rlen[0], NULL, 0, &info), 0);
        }
        const uint8_t *nonce1 = st.hn > 5 ? st.buf + st.start[1] + 5 : NULL;
        assert_int_equal(tlsnic_rxs_verified(&h.r, &h.k, ISS + st.start[1], st.rlen[1], nonce1, 1, &info), 0);
        /* the device's plaintext stays as it is: judging is not restoring */
        assert_memory_not_equal(st.buf + st.start[1] + st.hn, st.wire + st.start[1] + st.hn, body_len(&st, 1));
        host_fini(&h);
    }
}

static void test_pending_names_a_record_the_device_is_decrypting(void **state)
{
    struct stream st;
    struct host h;
    stream_make(&st, combos[0], 3, 100);
    host_init(&h, combos[0]);
    dev_decrypt(h.s, &st, 0, 0, 40, TLSNIC_RXS_PENDING, 0, 0, 0x42);
    dev_decrypt(h.s, &st, 1, 1, body_len(&st, 1), TLSNIC_RXS_BAD, 1, 0, 0x42);
    uint32_t len = 0;
    assert_int_equal(tlsnic_rxs_pending(&h.r, &h.k, ISS, 0, &len), 1);
    assert_int_equal(len, st.rlen[0]);
    assert_int_equal(tlsnic_rxs_pending(&h.r, &h.k, ISS, 1, &len), 0); /* another number */
    assert_int_equal(tlsnic_rxs_pending(&h.r, &h.k, ISS + st.start[1], 1, &len), 0); /* failed */
    assert_int_equal(tlsnic_rxs_pending(&h.r, &h.k, ISS + st.start[2], 2, &len), 0); /* none */
    host_fini(&h);
}

static void test_status_is_sized_for_a_record_per_kilobyte_of_receive_window(void **state)
{
    assert_int_equal(tlsnic_rxs_entries_for(0), TLSNIC_RXS_DEFAULT_ENTRIES);
    assert_int_equal(tlsnic_rxs_entries_for(6u << 20), 8192);   /* Linux's default max */
    assert_int_equal(tlsnic_rxs_entries_for(32u << 20), 32768); /* a raised tcp_rmem */
    assert_int_equal(tlsnic_rxs_entries_for((size_t)1 << 40), TLSNIC_RXS_MAX_ENTRIES);
}

static void test_request_is_seen_once_and_consumed_reaches_the_device(void **state)
{
    struct tlsnic_rxs *s;
    struct tlsnic_rxs_reader r;
    assert_int_equal(tlsnic_rxs_new(&s, 0), 0);
    assert_int_equal(s->n, TLSNIC_RXS_DEFAULT_ENTRIES);
    assert_int_equal(tlsnic_rxs_reader_init(&r, s), 0);
    uint32_t seq;
    assert_int_equal(tlsnic_rxs_poll_request(&r, &seq), 0);
    tlsnic_rxs_request(s, 12345);
    assert_int_equal(tlsnic_rxs_poll_request(&r, &seq), 1);
    assert_int_equal(seq, 12345);
    assert_int_equal(tlsnic_rxs_poll_request(&r, &seq), 0);
    assert_int_equal(tlsnic_rxs_consumed(s, &seq), 0);
    tlsnic_rxs_consume(&r, 777);
    assert_int_equal(tlsnic_rxs_consumed(s, &seq), 1);
    assert_int_equal(seq, 777);
    tlsnic_rxs_set_host_epoch(s, 3);
    assert_int_equal(tlsnic_rxs_host_epoch(s), 3);
    tlsnic_rxs_reader_cleanup(&r);
    tlsnic_rxs_free(s);
}

/* ------------------------------------------------------------------------------------------ */
/* The seqlock with a device thread: what ThreadSanitizer checks (scripts/test-tsan.sh).     */

/* Every field of entry id is a function of id: a torn copy shows. */
static struct tlsnic_rxs_entry entry_of(uint64_t id)
{
    struct tlsnic_rxs_entry e = {.tcp_seq = (uint32_t)id * 100u, .len = 100 + (uint32_t)(id % 1000),
                                 .rec_seq = id ^ 0x5a5a5a5aull, .state = TLSNIC_RXS_STATE(id % 1000, TLSNIC_RXS_OK),
                                 .epoch = (uint16_t)id, .hn = (uint8_t)(5 + id % 9),
                                 .flags = (uint8_t)(id & 1), .gap_seq = (uint32_t)id * 7u};
    memset(e.explicit_nonce, (int)(id & 0xff), sizeof(e.explicit_nonce));
    return e;
}

struct device_thread {
    struct tlsnic_rxs *s;
    _Atomic int stop;
    uint64_t written;
};

/* ------------------------------------------------------------------------------------------ */
/* The kernel's decrypted mark (tlsnic_rxs_span_verified): what one packet may promise.      */

static struct tlsnic_rxs *status_with(struct stream *st, size_t n, const uint32_t *verdicts,
                                      const uint32_t *dec_lens)
{
    struct tlsnic_rxs *s;
    assert_int_equal(tlsnic_rxs_new(&s, 16), 0);
    uint64_t id = 0;
    for (size_t i = 0; i < n; i++) {
        if (verdicts[i] == UINT32_MAX)
            continue; /* the device left record i alone */
        uint32_t dec = dec_lens ? dec_lens[i] : body_len(st, i);
        dev_decrypt(s, st, id++, i, dec, verdicts[i], i, 0, 0x42);
    }
    return s;
}

static void test_span_inside_verified_records_may_be_marked(void **state)
{
    (void)state;
    struct stream st;
    stream_make(&st, combos[0], 3, 100);
    const uint32_t ok[3] = {TLSNIC_RXS_OK, TLSNIC_RXS_OK, TLSNIC_RXS_OK};
    struct tlsnic_rxs *s = status_with(&st, 3, ok, NULL);
    assert_int_equal(tlsnic_rxs_span_verified(s, ISS, (uint32_t)st.len), 1);
    assert_int_equal(tlsnic_rxs_span_verified(s, ISS + st.start[1], st.rlen[1]), 1);
    assert_int_equal(tlsnic_rxs_span_verified(s, ISS + st.start[1] + 20, 30), 1);
    assert_int_equal(tlsnic_rxs_span_verified(s, ISS + st.start[1] + 20, st.rlen[1]), 1);
    tlsnic_rxs_free(s);
}

static void test_span_with_bytes_no_record_covers_is_not_marked(void **state)
{
    (void)state;
    struct stream st;
    stream_make(&st, combos[0], 3, 100);
    const uint32_t v[3] = {TLSNIC_RXS_OK, UINT32_MAX, TLSNIC_RXS_OK};
    struct tlsnic_rxs *s = status_with(&st, 3, v, NULL);
    assert_int_equal(tlsnic_rxs_span_verified(s, ISS, (uint32_t)st.len), 0);
    assert_int_equal(tlsnic_rxs_span_verified(s, ISS + st.start[1] + 10, 20), 0);
    assert_int_equal(tlsnic_rxs_span_verified(s, ISS + st.start[2] - 1, 2), 0);
    assert_int_equal(tlsnic_rxs_span_verified(s, ISS + st.start[2], st.rlen[2] + 1), 0);
    assert_int_equal(tlsnic_rxs_span_verified(s, ISS, st.rlen[0]), 1);
    assert_int_equal(tlsnic_rxs_span_verified(s, ISS + st.start[2], st.rlen[2]), 1);
    tlsnic_rxs_free(s);
}

static void test_span_with_body_bytes_left_encrypted_is_not_marked(void **state)
{
    (void)state;
    struct stream st;
    stream_make(&st, combos[0], 2, 100);
    /* A gap ended the device's fast path halfway through record 1's body. */
    const uint32_t v[2] = {TLSNIC_RXS_OK, TLSNIC_RXS_PENDING};
    const uint32_t dec[2] = {body_len(&st, 0), body_len(&st, 1) / 2};
    struct tlsnic_rxs *s = status_with(&st, 2, v, dec);
    uint32_t body1 = ISS + st.start[1] + (uint32_t)st.hn;
    assert_int_equal(tlsnic_rxs_span_verified(s, body1, dec[1]), 1);
    assert_int_equal(tlsnic_rxs_span_verified(s, body1, dec[1] + 1), 0);
    assert_int_equal(tlsnic_rxs_span_verified(s, body1 + dec[1], 10), 0);
    tlsnic_rxs_free(s);
}

static void test_span_where_a_record_ends_unverified_is_not_marked(void **state)
{
    (void)state;
    struct stream st;
    stream_make(&st, combos[3], 1, 100);
    const uint32_t end = ISS + st.rlen[0];
    /* Not yet checked: its body may be marked, its end may not. */
    const uint32_t pending[1] = {TLSNIC_RXS_PENDING};
    struct tlsnic_rxs *s = status_with(&st, 1, pending, NULL);
    assert_int_equal(tlsnic_rxs_span_verified(s, ISS, st.rlen[0] - 16), 1);
    assert_int_equal(tlsnic_rxs_span_verified(s, end - 16, 16), 0);
    tlsnic_rxs_free(s);
    /* Failed or revoked: nothing of it. */
    const uint32_t bad[2][1] = {{TLSNIC_RXS_BAD}, {TLSNIC_RXS_RECHECK}};
    for (int i = 0; i < 2; i++) {
        stream_make(&st, combos[3], 1, 100);
        s = status_with(&st, 1, bad[i], NULL);
        assert_int_equal(tlsnic_rxs_span_verified(s, ISS, st.rlen[0]), 0);
        assert_int_equal(tlsnic_rxs_span_verified(s, ISS, 40), 0);
        tlsnic_rxs_free(s);
    }
}

static void test_span_across_the_sequence_number_wrap_is_judged_as_any_other(void **state)
{
    (void)state;
    struct stream st;
    stream_make(&st, combos[0], 8, 300); /* from ISS = 2^32 - 1024 past 2^32 */
    assert_true(st.len > 1024);
    uint32_t v[8];
    for (size_t i = 0; i < 8; i++)
        v[i] = TLSNIC_RXS_OK;
    struct tlsnic_rxs *s = status_with(&st, 8, v, NULL);
    assert_int_equal(tlsnic_rxs_span_verified(s, ISS, (uint32_t)st.len), 1);
    assert_int_equal(tlsnic_rxs_span_verified(s, 0xfffffff0u, 32), 1);
    assert_int_equal(tlsnic_rxs_span_verified(s, ISS + (uint32_t)st.len - 8, 9), 0);
    tlsnic_rxs_free(s);
}

static void *device_writes(void *arg)
{
    struct device_thread *t = arg;
    for (uint64_t id = 0; !__atomic_load_n(&t->stop, __ATOMIC_RELAXED) && id < 4000000; id++) {
        struct tlsnic_rxs_entry e = entry_of(id);
        tlsnic_rxs_put(t->s, id, &e);
        t->written = id + 1;
    }
    return NULL;
}

/* A host reading the entries while the device keeps reusing their slots (16 of them) never
 * gets a torn entry: the copy is whole, or -ESTALE. */
static void test_reader_never_gets_a_torn_entry_from_a_device_thread(void **state)
{
    (void)state;
    struct tlsnic_rxs *s;
    assert_int_equal(tlsnic_rxs_new(&s, 16), 0);
    struct device_thread t = {.s = s};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, device_writes, &t), 0);
    long whole = 0;
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (long i = 0; whole < 20000; i++) { /* bounded: 20000 whole entries or 2 seconds */
        if ((i & 1023) == 0) {
            clock_gettime(CLOCK_MONOTONIC, &now);
            if (now.tv_sec - start.tv_sec >= 2)
                break;
        }
        uint64_t head = __atomic_load_n(&s->hdr->head, __ATOMIC_ACQUIRE);
        if (head == 0)
            continue;
        uint64_t id = head - 1 - (uint64_t)(i % 3); /* the newest, or slightly older */
        if (id >= head)
            continue;
        struct tlsnic_rxs_entry got;
        if (tlsnic_rxs_get(s, id, &got) != 0)
            continue;
        struct tlsnic_rxs_entry want = entry_of(id);
        want.id = got.id = (uint32_t)id;
        if (memcmp(&got, &want, sizeof(got)) != 0)
            fail_msg("torn entry %llu", (unsigned long long)id);
        whole++;
    }
    __atomic_store_n(&t.stop, 1, __ATOMIC_RELAXED);
    pthread_join(th, NULL);
    assert_true(whole > 0);
    tlsnic_rxs_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format_and_view_refuse_what_is_not_a_status),
        cmocka_unit_test(test_untouched_records_are_opened_in_software),
        cmocka_unit_test(test_verified_record_is_used_without_host_crypto),
        cmocka_unit_test(test_verdict_with_another_sequence_number_is_not_trusted),
        cmocka_unit_test(test_record_decrypted_in_part_is_restored_and_opened),
        cmocka_unit_test(test_device_tag_failure_leaves_the_check_to_the_host),
        cmocka_unit_test(test_revoked_verdict_makes_the_host_check),
        cmocka_unit_test(test_spans_of_the_previous_key_are_restored_with_it),
        cmocka_unit_test(test_span_of_an_unknown_key_is_ebadmsg),
        cmocka_unit_test(test_header_decrypted_by_a_false_record_is_restored_first),
        cmocka_unit_test(test_reused_slot_is_not_read_as_the_old_entry),
        cmocka_unit_test(test_request_is_seen_once_and_consumed_reaches_the_device),
        cmocka_unit_test(test_status_is_sized_for_a_record_per_kilobyte_of_receive_window),
        cmocka_unit_test(test_plan_gives_the_verified_records_ahead_and_stops_at_the_first_other),
        cmocka_unit_test(test_verified_judges_without_touching_the_bytes),
        cmocka_unit_test(test_pending_names_a_record_the_device_is_decrypting),
        cmocka_unit_test(test_reader_never_gets_a_torn_entry_from_a_device_thread),
        cmocka_unit_test(test_span_inside_verified_records_may_be_marked),
        cmocka_unit_test(test_span_with_bytes_no_record_covers_is_not_marked),
        cmocka_unit_test(test_span_with_body_bytes_left_encrypted_is_not_marked),
        cmocka_unit_test(test_span_where_a_record_ends_unverified_is_not_marked),
        cmocka_unit_test(test_span_across_the_sequence_number_wrap_is_judged_as_any_other),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
