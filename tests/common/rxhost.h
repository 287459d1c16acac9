/*
 * Test support for RX offload: a host that reads a received stream the way tlsnic's host
 * does (src/host, device mode): for each record, restore the header, then take the
 * device's verified plaintext or restore the record and open it in software; answer the
 * device's resync requests (confirm or reject) as its reading passes them; publish how far
 * it read; give next-record hints after records it had to decrypt itself. It checks every
 * record's content against what the peer sealed and counts what the device did.
 * Header-only (static). The device is driven through a struct tlsnic_dev (devops.h).
 */
#ifndef TLSNIC_TEST_RXHOST_H
#define TLSNIC_TEST_RXHOST_H

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tlsnic/devops.h"
#include "tlsnic/record.h"
#include "tlsnic/rx_status.h"

/* What record i of a test stream carries: content_len(i) bytes of a pattern. */
static inline uint8_t rxh_byte(size_t rec, size_t j)
{
    return (uint8_t)('A' + (rec * 7 + j * 13 + (j >> 7)) % 53);
}

#define RXH_MAX_RUNS 4096

struct rxhost {
    /* set by the test */
    tlsnic_rec_key *key;           /* the host's RX key (owned by the test) */
    tlsnic_rec_key *prev_key;      /* previous epoch's, if any */
    uint32_t epoch;
    struct tlsnic_rxs *rxs;
    struct tlsnic_dev *dev;
    struct tlsnic_flow flow;
    uint32_t start_seq;            /* TCP sequence number of stream offset 0 */
    int hints;                     /* give next-record hints */
    size_t (*content_len)(size_t rec); /* expected content length of record i (NULL: any) */
    const uint8_t *(*expected)(size_t rec); /* its content (NULL: the rxh_byte pattern) */
    int stop_on_keyupdate;         /* stop after a TLS 1.3 KeyUpdate record (rekey test) */
    /* state */
    struct tlsnic_rxs_reader rd;
    size_t pos;                    /* stream offset of the next record */
    size_t nrec, dev_ok, restored_recs, device_bad;
    int err;                       /* first error (the stream is dead after it) */
    int keyupdate;                 /* a KeyUpdate record was read */
    int req_on;
    uint32_t req_seq;
    size_t *starts;                /* stream offset of every record read */
    uint64_t *seqs;
    size_t starts_cap;
    size_t confirms, rejects, hints_sent, sw_streak;
    size_t run, runs[RXH_MAX_RUNS], nruns;
    size_t dist[RXH_MAX_RUNS], ndist; /* records from a gap to the next decrypted record */
    uint8_t rec[TLSNIC_REC_MAX_WIRE_LEN + 256];
};

static inline int rxh_init(struct rxhost *h)
{
    h->starts_cap = 1 << 16;
    h->starts = calloc(h->starts_cap, sizeof(*h->starts));
    h->seqs = calloc(h->starts_cap, sizeof(*h->seqs));
    if (!h->starts || !h->seqs)
        return -ENOMEM;
    return tlsnic_rxs_reader_init(&h->rd, h->rxs);
}

static inline void rxh_fini(struct rxhost *h)
{
    tlsnic_rxs_reader_cleanup(&h->rd);
    free(h->starts);
    free(h->seqs);
}

static inline void rxh_answer(struct rxhost *h, uint32_t x, uint64_t rec_seq)
{
    if (h->dev && h->dev->ops->resync)
        h->dev->ops->resync(h->dev, -1, &h->flow, TLSNIC_DIR_RX, x, rec_seq);
    if (rec_seq == TLSNIC_RESYNC_REJECT)
        h->rejects++;
    else
        h->confirms++;
}

/* A request for x: answered now if the reading is past it, else kept. */
static inline void rxh_request(struct rxhost *h, uint32_t x)
{
    int64_t off = (int32_t)(x - (h->start_seq + (uint32_t)h->pos)) + (int64_t)h->pos;
    if (off >= (int64_t)h->pos) {
        h->req_on = 1;
        h->req_seq = x;
        return;
    }
    size_t lo = 0, hi = h->nrec < h->starts_cap ? h->nrec : h->starts_cap;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if ((int64_t)h->starts[mid] < off)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < h->nrec && lo < h->starts_cap && (int64_t)h->starts[lo] == off)
        rxh_answer(h, x, h->seqs[lo]);
    else
        rxh_answer(h, x, TLSNIC_RESYNC_REJECT);
}

static inline void rxh_end_run(struct rxhost *h)
{
    if (h->run && h->nruns < RXH_MAX_RUNS)
        h->runs[h->nruns++] = h->run;
    h->run = 0;
}

/*
 * Reads every whole record in stream[h->pos .. avail). Returns 0, or the first error
 * (also kept in h->err; nothing is read after it). Content is checked: a wrong byte is
 * -EILSEQ, which no host may ever produce.
 */
static inline int rxh_read(struct rxhost *h, const uint8_t *stream, size_t avail)
{
    struct tlsnic_rxs_keys k = {.cur = h->key, .prev = h->prev_key, .epoch = h->epoch};
    while (!h->err && !(h->stop_on_keyupdate && h->keyupdate)) {
        uint32_t x;
        if (tlsnic_rxs_poll_request(&h->rd, &x))
            rxh_request(h, x);
        if (avail - h->pos < TLSNIC_REC_HDR_LEN)
            break;
        uint32_t seq = h->start_seq + (uint32_t)h->pos;
        memcpy(h->rec, stream + h->pos, TLSNIC_REC_HDR_LEN);
        int rc = tlsnic_rxs_restore(&h->rd, &k, seq, h->rec, TLSNIC_REC_HDR_LEN);
        int len = rc < 0 ? rc : tlsnic_rec_parse_header(h->key, h->rec);
        if (len < 0)
            return h->err = len;
        if (avail - h->pos < (size_t)len)
            break;
        if (h->req_on) { /* the reading reaches a pending request */
            int32_t d = (int32_t)(h->req_seq - seq);
            if (d == 0)
                rxh_answer(h, h->req_seq, tlsnic_rec_key_next_seq(h->key)), h->req_on = 0;
            else if (d < 0)
                rxh_answer(h, h->req_seq, TLSNIC_RESYNC_REJECT), h->req_on = 0;
        }
        memcpy(h->rec + TLSNIC_REC_HDR_LEN, stream + h->pos + TLSNIC_REC_HDR_LEN,
               (size_t)len - TLSNIC_REC_HDR_LEN);
        uint64_t rec_seq = tlsnic_rec_key_next_seq(h->key);
        struct tlsnic_rxs_info info;
        int v = tlsnic_rxs_record(&h->rd, &k, seq, h->rec, (size_t)len, TLSNIC_REC_HDR_LEN,
                                  rec_seq, &info);
        uint8_t type = 0, *content = NULL;
        size_t clen = 0;
        if (v < 0)
            rc = v;
        else if (v == 1)
            rc = tlsnic_rec_accept(h->key, h->rec, (size_t)len, &type, &content, &clen);
        else
            rc = tlsnic_rec_open(h->key, h->rec, (size_t)len, &type, &content, &clen);
        if (rc < 0)
            return h->err = rc;
        if (h->nrec < h->starts_cap) {
            h->starts[h->nrec] = h->pos;
            h->seqs[h->nrec] = rec_seq;
        }
        if (type == TLSNIC_CT_HANDSHAKE && clen > 0 && content[0] == 24) {
            h->keyupdate = 1;
        } else {
            if (h->content_len && clen != h->content_len(h->nrec))
                return h->err = -EILSEQ;
            const uint8_t *want = h->expected ? h->expected(h->nrec) : NULL;
            for (size_t j = 0; j < clen; j++)
                if (content[j] != (want ? want[j] : rxh_byte(h->nrec, j)))
                    return h->err = -EILSEQ;
        }
        h->nrec++;
        h->pos += (size_t)len;
        if (info.after_gap) {
            /* The record in which the device saw data again: the last one starting at
             * or before gap_seq. */
            int64_t g = (int32_t)(info.gap_seq - (h->start_seq + (uint32_t)h->pos)) + (int64_t)h->pos;
            size_t n = h->nrec < h->starts_cap ? h->nrec : h->starts_cap, i = n;
            while (i > 0 && (int64_t)h->starts[i - 1] > g)
                i--;
            if (i > 0 && i < n && h->ndist < RXH_MAX_RUNS)
                h->dist[h->ndist++] = n - i; /* 1: the record right after it */
        }
        if (v == 1) {
            h->dev_ok++;
            rxh_end_run(h);
            h->sw_streak = 0;
        } else {
            h->run++;
            h->sw_streak = info.entries ? 0 : h->sw_streak + 1;
            h->restored_recs += info.restored > 0;
            h->device_bad += info.device_bad;
        }
        tlsnic_rxs_consume(&h->rd, h->start_seq + (uint32_t)h->pos);
        /* The kernel's next-record hint: records without any device work in a row, and
         * nothing more received: the next record is one the device has not seen. */
        if (h->hints && h->sw_streak >= 2 && h->pos == avail && h->dev && !h->req_on) {
            h->dev->ops->resync(h->dev, -1, &h->flow, TLSNIC_DIR_RX,
                                h->start_seq + (uint32_t)h->pos, tlsnic_rec_key_next_seq(h->key));
            h->hints_sent++;
            h->sw_streak = 0;
        }
    }
    return h->err;
}

static inline int rxh_cmp_size(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return x < y ? -1 : x > y;
}

/* Median and largest resync distance: records from the one in which the device saw data
 * again after a gap to the next one it decrypted (1: the very next). 0 if no gap. */
static inline void rxh_dist(struct rxhost *h, size_t *median, size_t *max)
{
    *median = *max = 0;
    if (!h->ndist)
        return;
    qsort(h->dist, h->ndist, sizeof(h->dist[0]), rxh_cmp_size);
    *median = h->dist[h->ndist / 2];
    *max = h->dist[h->ndist - 1];
}

/* Median and largest run of records in a row the device did not verify (0 if none). */
static inline void rxh_runs(struct rxhost *h, size_t *median, size_t *max)
{
    rxh_end_run(h);
    *median = *max = 0;
    if (!h->nruns)
        return;
    qsort(h->runs, h->nruns, sizeof(h->runs[0]), rxh_cmp_size);
    *median = h->runs[h->nruns / 2];
    *max = h->runs[h->nruns - 1];
}

#endif
