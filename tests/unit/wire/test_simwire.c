/*
 * The device over the simulated wire: a host frames records, a TCP-like sender sends them
 * through the device, the link loses / duplicates / reorders from a seed, and the stream
 * the receiver reassembles is read by OpenSSL (a real handshake, keys exported with
 * tlsnic_keyexport) and by the record layer; every byte must match what the host wrote.
 * Seeds are printed on failure.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "nic_testgen.h"
#include "tlsnic/nic.h"
#include "tlsnic/wire.h"
#ifdef TLSNIC_HAVE_TLS_PAIR
#include "tls_pair.h"
#include "tlsnic/keyexport.h"
#else
/* Without tls_pair the runs are verified by the record layer alone. */
struct tls_pair {
    SSL *server, *client;
    int server_fd, client_fd;
};
static void tls_pair_free(struct tls_pair *p)
{
    (void)p;
}
#endif

#define STREAM_CAP (1024 * 1024)
#define MAX_ROUNDS 20000

static const char CANARY[] = "PLAINTEXT-CANARY";
#define CANARY_LEN (sizeof(CANARY) - 1)

struct scan {
    uint64_t frames;
    uint64_t hits;
};

/* Every segment on the link: search its TCP payload for the canary's first half. */
static void scan_frame(void *priv, const uint8_t *frame, size_t len)
{
    struct scan *s = priv;
    struct tlsnic_frame fr;
    if (tlsnic_frame_parse(frame, len, &fr) != TLSNIC_FRAME_TCP)
        return;
    s->frames++;
    const uint8_t *p = frame + fr.payload_off;
    for (size_t i = 0; i + 8 <= fr.payload_len; i++)
        if (memcmp(p + i, CANARY, 8) == 0)
            s->hits++;
}

struct run {
    /* inputs */
    const struct tg_combo *combo;
    struct tlsnic_simwire_config wcfg;
    struct tlsnic_nic_config ncfg;
    const size_t *sizes;
    size_t nsizes, nrecords;
    int openssl;    /* verify with OpenSSL (else keys are random, record layer verifies) */
    int no_device;  /* control: the hook passes frames untouched */
    /* outputs */
    struct tlsnic_simwire_stats ws;
    struct tlsnic_nic_stats ns;
    struct scan scan;
    uint32_t flags;
    int run_rc;
    /* live objects (kept for tests that step by hand) */
    tlsnic_nic *nic;
    tlsnic_simhost *h;
    tlsnic_simwire *w;
    struct tls_pair pair;
    union tlsnic_crypto_info ci;
    size_t ci_len;
    uint8_t *plain; /* application bytes written, in order */
    size_t plain_len;
};

static void fill_content(uint8_t *buf, size_t n, size_t rec)
{
    for (size_t j = 0; j < n; j++)
        buf[j] = (uint8_t)('a' + (rec * 7 + j) % 26);
    for (size_t j = 0; j + CANARY_LEN <= n; j += 97) /* markers, dense */
        memcpy(buf + j, CANARY, CANARY_LEN);
}

static void run_setup(struct run *r)
{
    memset(&r->pair, 0, sizeof(r->pair));
    uint64_t rec_seq;
#ifndef TLSNIC_HAVE_TLS_PAIR
    r->openssl = 0;
#endif
    if (r->openssl) {
#ifdef TLSNIC_HAVE_TLS_PAIR
        assert_int_equal(tls_pair_new(&r->pair, r->combo->version == TLS_1_2_VERSION
                                                    ? TLS1_2_VERSION
                                                    : TLS1_3_VERSION,
                                      r->combo->cipher, NULL),
                         0);
        assert_int_equal(tlsnic_keyexport(r->pair.server, 1, &r->ci, &r->ci_len), 0);
        rec_seq = 0;
        for (int i = 0; i < 8; i++) {
            const uint8_t *rs = r->combo->cipher == TLS_CIPHER_AES_GCM_128
                                    ? r->ci.aes_gcm_128.rec_seq
                                : r->combo->cipher == TLS_CIPHER_AES_GCM_256
                                    ? r->ci.aes_gcm_256.rec_seq
                                    : r->ci.chacha20_poly1305.rec_seq;
            rec_seq = rec_seq << 8 | rs[i];
        }
#endif
    } else {
        rec_seq = 5;
        r->ci_len = tg_crypto_info(&r->ci, r->combo->version, r->combo->cipher, rec_seq,
                                   r->wcfg.seed);
    }
    r->wcfg.max_stream = STREAM_CAP;
    assert_int_equal(tlsnic_nic_new(&r->nic, &r->ncfg), 0);
    assert_int_equal(tlsnic_simhost_new(&r->h, r->combo->version, r->combo->cipher, rec_seq,
                                        r->wcfg.start_seq, STREAM_CAP),
                     0);
    struct tlsnic_wire_hook hook = tlsnic_wire_hook_nic(r->nic);
    if (r->no_device)
        memset(&hook, 0, sizeof(hook));
    assert_int_equal(tlsnic_simwire_new(&r->w, &r->wcfg, r->h, hook), 0);
    struct tlsnic_flow fl;
    tlsnic_simwire_flow(r->w, &fl);
    struct tlsnic_rec_store st = tlsnic_simhost_store(r->h);
    assert_int_equal(tlsnic_nic_add(r->nic, &fl, TLSNIC_DIR_TX, &r->ci, r->ci_len,
                                    r->wcfg.start_seq, &st),
                     0);
    memset(&r->scan, 0, sizeof(r->scan));
    tlsnic_simwire_set_observer(r->w, scan_frame, &r->scan);
    r->plain = malloc(STREAM_CAP);
    assert_non_null(r->plain);
    r->plain_len = 0;
    static uint8_t buf[TLSNIC_REC_MAX_PLAINTEXT];
    for (size_t i = 0; i < r->nrecords; i++) {
        size_t n = r->sizes[i % r->nsizes];
        fill_content(buf, n, i);
        assert_int_equal(tlsnic_simhost_write(r->h, TLSNIC_CT_APPLICATION_DATA, buf, n), 0);
        memcpy(r->plain + r->plain_len, buf, n);
        r->plain_len += n;
    }
}

static void run_collect(struct run *r)
{
    tlsnic_simwire_stats(r->w, &r->ws);
    struct tlsnic_flow fl;
    tlsnic_simwire_flow(r->w, &fl);
    assert_int_equal(tlsnic_nic_flow_stats(r->nic, &fl, TLSNIC_DIR_TX, &r->ns), 0);
    assert_int_equal(tlsnic_nic_flow_flags(r->nic, &fl, TLSNIC_DIR_TX, &r->flags), 0);
}

static void run_teardown(struct run *r)
{
    tlsnic_simwire_free(r->w);
    tlsnic_simhost_free(r->h);
    tlsnic_nic_free(r->nic);
    tls_pair_free(&r->pair);
    free(r->plain);
    OPENSSL_cleanse(&r->ci, sizeof(r->ci));
}

/* Feeds the ciphertext stream to the client SSL through the server's socket end. */
static int openssl_reads_exactly(struct run *r, const uint8_t *stream, size_t len)
{
    int fd = r->pair.client_fd;
    if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0)
        return -1;
    static uint8_t got[16384];
    size_t off = 0, pos = 0;
    for (int guard = 0; guard < 1000000 && (off < len || pos < r->plain_len); guard++) {
        if (off < len) {
            size_t c = len - off < 8192 ? len - off : 8192;
            ssize_t w = write(r->pair.server_fd, stream + off, c);
            if (w <= 0)
                return -1;
            off += (size_t)w;
        }
        for (;;) {
            int n = SSL_read(r->pair.client, got, sizeof(got));
            if (n <= 0) {
                int e = SSL_get_error(r->pair.client, n);
                if (e == SSL_ERROR_WANT_READ)
                    break;
                fprintf(stderr, "SSL_read error %d at plaintext %zu\n", e, pos);
                ERR_print_errors_fp(stderr);
                return -1;
            }
            if (pos + (size_t)n > r->plain_len || memcmp(r->plain + pos, got, (size_t)n)) {
                fprintf(stderr, "OpenSSL read differs at plaintext %zu\n", pos);
                return -1;
            }
            pos += (size_t)n;
        }
        if (off == len && pos < r->plain_len)
            break;
    }
    return pos == r->plain_len ? 0 : -1;
}

/* The common verdict of a complete run: every byte right, by two independent readers. */
static void assert_delivered_exactly(struct run *r)
{
    size_t len, hl;
    const uint8_t *rx = tlsnic_simwire_received(r->w, &len);
    const uint8_t *host = tlsnic_simhost_stream(r->h, &hl);
    if (r->run_rc != 0 || len != hl)
        fprintf(stderr, "%s: run rc %d, %zu of %zu bytes (seed %llu)\n", r->combo->name,
                r->run_rc, len, hl, (unsigned long long)r->wcfg.seed);
    assert_int_equal(r->run_rc, 0);
    assert_int_equal(len, hl);
    assert_int_equal(r->ws.csum_errors, 0);
    assert_int_equal(r->ws.dup_mismatch, 0);
    assert_int_equal(r->scan.hits, 0);
    assert_int_equal(r->flags, 0);
    long n = tg_check_stream(&r->ci, r->ci_len, rx, len, host, hl, r->wcfg.seed);
    assert_int_equal(n, (long)r->nrecords);
    if (r->openssl && openssl_reads_exactly(r, rx, len) != 0) {
        fprintf(stderr, "%s: OpenSSL verification failed (seed %llu)\n", r->combo->name,
                (unsigned long long)r->wcfg.seed);
        fail();
    }
}

static void run_full(struct run *r)
{
    run_setup(r);
    r->run_rc = tlsnic_simwire_run(r->w, MAX_ROUNDS);
    run_collect(r);
}

static const size_t paper_sizes[] = {1, 1457, 16384, 300, 4096, 2, 9000, 1457, 64, 16383};

static uint64_t seed_base(void)
{
    const char *e = getenv("TLSNIC_SEED");
    return e ? strtoull(e, NULL, 0) : 20161001;
}

/* ------------------------------------------------------------------------------------------ */

static void test_all_six_clean_wire_read_by_openssl(void **state)
{
    for (int c = 0; c < 6; c++) {
        struct run r = {.combo = &tg_combos[c], .sizes = paper_sizes, .nsizes = 10,
                        .nrecords = 20, .openssl = 1};
        r.wcfg.seed = seed_base() + (uint64_t)c;
        r.wcfg.start_seq = 0xfff00000u;
        run_full(&r);
        assert_delivered_exactly(&r);
        assert_int_equal(r.ns.tx_tls_ooo, 0);
        run_teardown(&r);
    }
}

static void test_all_six_faulty_wire_read_by_openssl(void **state)
{
    uint64_t ooo = 0, lost = 0;
    for (int c = 0; c < 6; c++) {
        for (int rm = 0; rm < 2; rm++) {
            struct run r = {.combo = &tg_combos[c], .sizes = paper_sizes, .nsizes = 10,
                            .nrecords = 30, .openssl = 1};
            r.wcfg.seed = seed_base() * 31 + (uint64_t)(c * 2 + rm);
            r.wcfg.start_seq = (uint32_t)(r.wcfg.seed * 2654435761u);
            r.wcfg.loss_pm = 40;
            r.wcfg.dup_pm = 30;
            r.wcfg.reorder_pm = 60;
            r.wcfg.ack_loss_pm = 30;
            r.wcfg.spurious_pm = 200;
            r.wcfg.rexmit = (uint8_t)rm;
            r.wcfg.window = 16384;
            run_full(&r);
            assert_delivered_exactly(&r);
            ooo += r.ns.tx_tls_ooo;
            lost += r.ws.segs_lost;
            run_teardown(&r);
        }
    }
    assert_true(ooo > 12 && lost > 12); /* the faults really hit the device */
}

static void test_tso_frames_over_faulty_wire(void **state)
{
    for (int c = 0; c < 6; c += 2) {
        struct run r = {.combo = &tg_combos[c], .sizes = paper_sizes, .nsizes = 10,
                        .nrecords = 40, .openssl = 1};
        r.wcfg.seed = seed_base() + 100 + (uint64_t)c;
        r.wcfg.mss = 1400;
        r.wcfg.tso_max = 1400 * 46;
        r.wcfg.window = 256 * 1024;
        r.wcfg.loss_pm = 20;
        r.wcfg.reorder_pm = 30;
        r.wcfg.spurious_pm = 300;
        r.wcfg.split_rexmit_pm = 500;
        r.ncfg.integrity = 1;
        run_full(&r);
        assert_delivered_exactly(&r);
        assert_true(r.ns.tx_tls_encrypted_packets > r.ws.frames_tx - r.ws.dev_dropped);
        run_teardown(&r);
    }
}

static void test_ipv6_over_faulty_wire(void **state)
{
    for (int c = 1; c < 6; c += 2) {
        struct run r = {.combo = &tg_combos[c], .sizes = paper_sizes, .nsizes = 10,
                        .nrecords = 20, .openssl = 1};
        r.wcfg.family = AF_INET6;
        r.wcfg.mss = 1440;
        r.wcfg.seed = seed_base() + 200 + (uint64_t)c;
        r.wcfg.loss_pm = 50;
        r.wcfg.dup_pm = 50;
        r.wcfg.reorder_pm = 50;
        run_full(&r);
        assert_delivered_exactly(&r);
        run_teardown(&r);
    }
}

static void test_tiny_segments_split_every_header_over_faulty_wire(void **state)
{
    const size_t sizes[] = {0, 1, 2, 30, 7};
    for (int c = 0; c < 6; c++) {
        struct run r = {.combo = &tg_combos[c], .sizes = sizes, .nsizes = 5, .nrecords = 25,
                        .openssl = 1};
        r.wcfg.mss = 7;
        r.wcfg.window = 4096;
        r.wcfg.seed = seed_base() + 300 + (uint64_t)c;
        r.wcfg.loss_pm = 30;
        r.wcfg.reorder_pm = 100;
        r.wcfg.rexmit = TLSNIC_REXMIT_SELECTIVE;
        run_full(&r);
        assert_delivered_exactly(&r);
        run_teardown(&r);
    }
}

static void test_checkpoints_disabled_resyncs_from_host_store(void **state)
{
    uint64_t dumps = 0;
    for (int c = 0; c < 6; c++) {
        struct run r = {.combo = &tg_combos[c], .sizes = paper_sizes, .nsizes = 10,
                        .nrecords = 20, .openssl = 1};
        r.wcfg.seed = seed_base() + 400 + (uint64_t)c;
        r.wcfg.loss_pm = 50;
        r.wcfg.reorder_pm = 50;
        r.wcfg.spurious_pm = 200;
        r.wcfg.window = 16384;
        r.ncfg.checkpoints_off = 1;
        run_full(&r);
        assert_delivered_exactly(&r);
        assert_int_equal(r.ns.tx_tls_ooo_ckpt, 0);
        assert_true(r.ns.tx_tls_dump_packets >= (r.ns.tx_tls_ooo ? 1 : 0));
        dumps += r.ns.tx_tls_dump_packets;
        run_teardown(&r);
    }
    assert_true(dumps > 6);
}

static void test_checkpoints_serve_retransmissions_without_host_store(void **state)
{
    struct run r = {.combo = &tg_combos[0], .sizes = paper_sizes, .nsizes = 10,
                    .nrecords = 40};
    r.wcfg.seed = seed_base() + 450;
    r.wcfg.window = 16384;
    r.wcfg.loss_pm = 100; /* ~100 segments: P(no loss at all) < 1e-4 */
    r.wcfg.spurious_pm = 300;
    run_setup(&r);
    tlsnic_simhost_store_disable(r.h, 1);
    r.run_rc = tlsnic_simwire_run(r.w, MAX_ROUNDS);
    run_collect(&r);
    /* Go-back-N never jumps ahead of the device, so checkpoints alone suffice. */
    assert_delivered_exactly(&r);
    assert_true(r.ns.tx_tls_ooo_ckpt > 0);
    assert_int_equal(r.ns.tx_tls_dump_packets, 0);
    run_teardown(&r);
}

static void test_no_checkpoints_no_store_drops_and_never_sends_clear(void **state)
{
    struct run r = {.combo = &tg_combos[3], .sizes = paper_sizes, .nsizes = 10,
                    .nrecords = 10};
    r.wcfg.seed = seed_base() + 500;
    r.wcfg.loss_pm = 100;
    r.ncfg.checkpoints_off = 1;
    run_setup(&r);
    tlsnic_simhost_store_disable(r.h, 1);
    assert_true(tlsnic_simwire_step(r.w) >= 0);
    assert_int_equal(tlsnic_simwire_retransmit(r.w, 0, 1000), 0); /* forced, any time */
    r.run_rc = tlsnic_simwire_run(r.w, 200);
    run_collect(&r);
    if (r.ws.segs_lost > 0)
        assert_int_equal(r.run_rc, -ETIMEDOUT); /* the lost bytes can never be sent */
    assert_true(r.ws.dev_dropped > 0);
    assert_true(r.ns.tx_tls_drop_no_sync_data > 0);
    assert_true(r.flags & TLSNIC_FLOW_F_NO_SYNC);
    assert_true(r.scan.frames > 0);
    assert_int_equal(r.scan.hits, 0);
    assert_int_equal(r.ws.dup_mismatch, 0);
    run_teardown(&r);
}

static void test_canary_scan_finds_plaintext_without_device(void **state)
{
    /* Control for the canary scan: the same stream without the device shows markers. */
    struct run r = {.combo = &tg_combos[0], .sizes = paper_sizes, .nsizes = 10,
                    .nrecords = 10, .no_device = 1};
    r.wcfg.seed = seed_base() + 600;
    run_full(&r);
    assert_true(r.scan.hits > 100);
    run_teardown(&r);
}

static void test_canary_never_on_wire_under_faults(void **state)
{
    for (int c = 0; c < 6; c++) {
        struct run r = {.combo = &tg_combos[c], .sizes = paper_sizes, .nsizes = 10,
                        .nrecords = 30};
        r.wcfg.seed = seed_base() + 700 + (uint64_t)c;
        r.wcfg.mss = (uint16_t)(100 + c * 211);
        r.wcfg.loss_pm = 80;
        r.wcfg.dup_pm = 80;
        r.wcfg.reorder_pm = 80;
        r.wcfg.spurious_pm = 500;
        r.wcfg.rexmit = (uint8_t)(c & 1);
        r.ncfg.checkpoints_off = (uint8_t)(c >= 3);
        run_full(&r);
        assert_delivered_exactly(&r); /* includes scan.hits == 0 */
        assert_true(r.scan.frames > 100);
        run_teardown(&r);
    }
}

static void test_changed_bytes_before_retransmission_dropped_and_flagged(void **state)
{
    for (int c = 0; c < 6; c++) {
        struct run r = {.combo = &tg_combos[c], .sizes = paper_sizes, .nsizes = 10,
                        .nrecords = 20};
        r.wcfg.seed = seed_base() + 800 + (uint64_t)c;
        r.wcfg.loss_pm = 300;
        r.ncfg.integrity = 1;
        run_setup(&r);
        /* Step until a segment was lost: bytes the device encrypted that the peer lacks. */
        size_t una = 0;
        int stepped = 0;
        for (; stepped < 100; stepped++) {
            assert_int_equal(tlsnic_simwire_step(r.w), 0);
            una = tlsnic_simwire_acked(r.w);
            struct tlsnic_simwire_stats ws;
            tlsnic_simwire_stats(r.w, &ws);
            if (ws.segs_lost > 0 && ws.frames_tx > 0)
                break;
        }
        assert_true(stepped < 100);
        size_t hl;
        uint8_t *s = tlsnic_simhost_stream(r.h, &hl);
        s[una] ^= 0x20; /* first unacknowledged byte, sent once, changes in host memory */
        r.run_rc = tlsnic_simwire_run(r.w, 50);
        run_collect(&r);
        assert_int_equal(r.run_rc, -ETIMEDOUT);
        assert_true(r.ns.tx_tls_drop_integrity > 0);
        assert_true(r.flags & TLSNIC_FLOW_F_INTEGRITY);
        assert_int_equal(r.ws.dup_mismatch, 0);
        assert_true(tlsnic_simwire_acked(r.w) <= una);
        run_teardown(&r);
    }
}

static void test_unchanged_retransmissions_pass_integrity_check(void **state)
{
    for (int c = 0; c < 6; c++) {
        struct run r = {.combo = &tg_combos[c], .sizes = paper_sizes, .nsizes = 10,
                        .nrecords = 20, .openssl = 1};
        r.wcfg.seed = seed_base() + 900 + (uint64_t)c;
        r.wcfg.loss_pm = 60;
        r.wcfg.dup_pm = 30;
        r.wcfg.spurious_pm = 300;
        r.wcfg.rexmit = (uint8_t)(c & 1);
        r.ncfg.integrity = 1;
        run_full(&r);
        assert_delivered_exactly(&r);
        assert_int_equal(r.ns.tx_tls_drop_integrity, 0);
        run_teardown(&r);
    }
}

static void test_same_seed_same_run(void **state)
{
    struct tlsnic_simwire_stats a;
    for (int i = 0; i < 2; i++) {
        struct run r = {.combo = &tg_combos[1], .sizes = paper_sizes, .nsizes = 10,
                        .nrecords = 15};
        r.wcfg.seed = seed_base() + 1000;
        r.wcfg.loss_pm = 70;
        r.wcfg.dup_pm = 70;
        r.wcfg.reorder_pm = 70;
        run_full(&r);
        if (i == 0)
            a = r.ws;
        else
            assert_memory_equal(&a, &r.ws, sizeof(a));
        run_teardown(&r);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_all_six_clean_wire_read_by_openssl),
        cmocka_unit_test(test_all_six_faulty_wire_read_by_openssl),
        cmocka_unit_test(test_tso_frames_over_faulty_wire),
        cmocka_unit_test(test_ipv6_over_faulty_wire),
        cmocka_unit_test(test_tiny_segments_split_every_header_over_faulty_wire),
        cmocka_unit_test(test_checkpoints_disabled_resyncs_from_host_store),
        cmocka_unit_test(test_checkpoints_serve_retransmissions_without_host_store),
        cmocka_unit_test(test_no_checkpoints_no_store_drops_and_never_sends_clear),
        cmocka_unit_test(test_canary_scan_finds_plaintext_without_device),
        cmocka_unit_test(test_canary_never_on_wire_under_faults),
        cmocka_unit_test(test_changed_bytes_before_retransmission_dropped_and_flagged),
        cmocka_unit_test(test_unchanged_retransmissions_pass_integrity_check),
        cmocka_unit_test(test_same_seed_same_run),
    };
    printf("test_simwire: seed base %llu (set TLSNIC_SEED to change)\n",
           (unsigned long long)seed_base());
    return cmocka_run_group_tests(tests, NULL, NULL);
}
