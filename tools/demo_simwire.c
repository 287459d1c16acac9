/*
 * The in-process half of `tlsnic demo` that needs no root: the device model (src/device) on
 * the simulated wire (src/wire). For each TLS version x cipher, libssl handshakes with
 * itself; the server's traffic keys go to the device; a host frames 4 MB of records in the
 * clear (as a device-mode socket does) and keeps them until acknowledged; a TCP-like sender
 * with TSO pushes them through the device over a link that loses and reorders 1 % of the
 * segments; what arrives is read by libssl's client, byte for byte. The device's counters
 * show the resyncs that retransmissions cost it.
 */
#include "demo_simwire.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>

#include "tls_pair.h"
#include "tlsnic/keyexport.h"
#include "tlsnic/nic.h"
#include "tlsnic/record.h"
#include "tlsnic/wire.h"

#define STREAM_BYTES (4u << 20)                   /* content per combination */
#define STREAM_CAP (STREAM_BYTES + (STREAM_BYTES / 16384 + 2) * 64)
#define MAX_ROUNDS 200000
#define START_SEQ 0x7ffff000u                     /* wraps 2^32 early on: the device must cope */
#define MAX_FEED_STEPS 100000

static uint64_t rec_seq_of(const union tlsnic_crypto_info *ci)
{
    const uint8_t *rs = ci->info.cipher_type == TLS_CIPHER_AES_GCM_128   ? ci->aes_gcm_128.rec_seq
                        : ci->info.cipher_type == TLS_CIPHER_AES_GCM_256 ? ci->aes_gcm_256.rec_seq
                                                                         : ci->chacha20_poly1305.rec_seq;
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | rs[i];
    return v;
}

/* Feeds the received stream to libssl's client; 0 when it read exactly `plain`. */
static int client_reads_exactly(struct tls_pair *p, const uint8_t *stream, size_t len,
                                const uint8_t *plain, size_t plain_len)
{
    if (fcntl(p->client_fd, F_SETFL, fcntl(p->client_fd, F_GETFL) | O_NONBLOCK) < 0)
        return -errno;
    static uint8_t got[16384];
    size_t off = 0, pos = 0;
    for (int step = 0; step < MAX_FEED_STEPS && pos < plain_len; step++) {
        if (off < len) {
            size_t c = len - off < 8192 ? len - off : 8192;
            ssize_t w = write(p->server_fd, stream + off, c);
            if (w <= 0)
                return -EIO;
            off += (size_t)w;
        }
        for (;;) {
            int n = SSL_read(p->client, got, sizeof(got));
            if (n <= 0) {
                if (SSL_get_error(p->client, n) == SSL_ERROR_WANT_READ)
                    break;
                return -EBADMSG;
            }
            if (pos + (size_t)n > plain_len || memcmp(plain + pos, got, (size_t)n) != 0)
                return -EBADMSG;
            pos += (size_t)n;
        }
        if (off == len && pos < plain_len)
            break;
    }
    return pos == plain_len ? 0 : -EPROTO;
}

struct combo_result {
    struct tlsnic_nic_stats dev;
    struct tlsnic_simwire_stats wire;
    size_t records;
    const char *failed;
};

static int run_one(int ssl_version, uint16_t cipher, uint64_t seed, uint8_t *plain,
                   struct combo_result *r)
{
    struct tls_pair p;
    union tlsnic_crypto_info ci;
    size_t ci_len = 0;
    tlsnic_nic *nic = NULL;
    tlsnic_simhost *h = NULL;
    tlsnic_simwire *w = NULL;
    int rc = tls_pair_new(&p, ssl_version, cipher, NULL);
    if (rc < 0) {
        r->failed = "handshake";
        return rc;
    }
    rc = tlsnic_keyexport(p.server, 1, &ci, &ci_len);
    uint16_t version = ssl_version == TLS1_3_VERSION ? TLS_1_3_VERSION : TLS_1_2_VERSION;
    if (rc == 0)
        rc = tlsnic_nic_new(&nic, NULL);
    if (rc == 0)
        rc = tlsnic_simhost_new(&h, version, cipher, rec_seq_of(&ci), START_SEQ, STREAM_CAP);
    struct tlsnic_simwire_config cfg = {.mss = 1400, .tso_max = 65000, .window = 1 << 20,
                                        .seed = seed, .loss_pm = 10, .reorder_pm = 10,
                                        .rexmit = TLSNIC_REXMIT_SELECTIVE,
                                        .start_seq = START_SEQ, .max_stream = STREAM_CAP};
    if (rc == 0)
        rc = tlsnic_simwire_new(&w, &cfg, h, tlsnic_wire_hook_nic(nic));
    struct tlsnic_flow flow;
    if (rc == 0) {
        tlsnic_simwire_flow(w, &flow);
        struct tlsnic_rec_store store = tlsnic_simhost_store(h);
        rc = tlsnic_nic_add(nic, &flow, TLSNIC_DIR_TX, &ci, ci_len, START_SEQ, &store);
    }
    OPENSSL_cleanse(&ci, sizeof(ci));
    if (rc < 0) {
        r->failed = "setup";
        goto out;
    }
    if (RAND_bytes(plain, (int)STREAM_BYTES) != 1) {
        rc = -EIO;
        r->failed = "random content";
        goto out;
    }
    for (size_t off = 0; off < STREAM_BYTES && rc == 0; off += TLSNIC_REC_MAX_PLAINTEXT) {
        size_t n = STREAM_BYTES - off < TLSNIC_REC_MAX_PLAINTEXT ? STREAM_BYTES - off
                                                                 : TLSNIC_REC_MAX_PLAINTEXT;
        rc = tlsnic_simhost_write(h, TLSNIC_CT_APPLICATION_DATA, plain + off, n);
        r->records++;
    }
    if (rc == 0)
        rc = tlsnic_simwire_run(w, MAX_ROUNDS);
    if (rc < 0) {
        r->failed = "transfer";
        goto out;
    }
    tlsnic_simwire_stats(w, &r->wire);
    tlsnic_nic_flow_stats(nic, &flow, TLSNIC_DIR_TX, &r->dev);
    size_t len = 0;
    const uint8_t *rx = tlsnic_simwire_received(w, &len);
    rc = client_reads_exactly(&p, rx, len, plain, STREAM_BYTES);
    if (rc < 0)
        r->failed = "libssl read";
out:
    tlsnic_simwire_free(w);
    tlsnic_simhost_free(h);
    tlsnic_nic_free(nic);
    tls_pair_free(&p);
    return rc;
}

int tlsnic_demo_simwire(void)
{
    const size_t n_combos = TLS_PAIR_N_SUITES;
    uint8_t *plain = malloc(STREAM_BYTES);
    if (!plain)
        return 1;
    int failures = 0;
    printf("\nThe device model on the simulated wire: libssl's server keys in the device, %u MB\n"
           "of records framed in the clear, TSO, 1 %% of segments lost and 1 %% reordered;\n"
           "libssl's client reads what arrives.\n\n",
           STREAM_BYTES >> 20);
    printf("| version | cipher            | records | device encrypted (bytes) | out of order | from checkpoints | resync bytes | host-store reads | lost / reordered | libssl read |\n");
    printf("|---------|-------------------|---------|--------------------------|--------------|------------------|--------------|------------------|------------------|-------------|\n");
    for (size_t i = 0; i < n_combos; i++) {
        struct combo_result r;
        memset(&r, 0, sizeof(r));
        int rc = run_one(tls_pair_suites[i].version, tls_pair_suites[i].cipher, 1000 + i, plain, &r);
        printf("| %s | %-17s | %7zu | %23" PRIu64 " | %12" PRIu64 " | %16" PRIu64
               " | %12" PRIu64 " | %16" PRIu64 " | %7" PRIu64 " / %-6" PRIu64 " | %-11s |\n",
               tls_pair_suites[i].version == TLS1_3_VERSION ? "TLS 1.3" : "TLS 1.2",
               tlsnic_cipher_name(tls_pair_suites[i].cipher), r.records, r.dev.tx_tls_encrypted_bytes,
               r.dev.tx_tls_ooo, r.dev.tx_tls_ooo_ckpt, r.dev.tx_tls_resync_bytes,
               r.dev.tx_tls_dump_packets, r.wire.segs_lost, r.wire.segs_reordered,
               rc == 0 ? "exact" : r.failed);
        if (rc < 0) {
            ERR_clear_error();
            failures++;
        }
    }
    free(plain);
    printf("\n%zu of %zu transfers through the device model read back exactly by libssl.\n",
           n_combos - (size_t)failures, n_combos);
    return failures == 0 ? 0 : 1;
}
