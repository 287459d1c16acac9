/*
 * tlsnic socket layer, device mode (RX): records the device decrypted on their way in
 * (the analog of net/tls/tls_device.c's RX side: tls_device_decrypted,
 * tls_device_reencrypt, tls_device_rx_resync_*). The device says what it did through
 * the RX status (rx_status.h); a user-space host cannot see per-packet marks, so it reads
 * that status for each record it takes from the socket:
 *   - a record the device decrypted and verified whole: its plaintext is used as it is;
 *   - anything else: the device's keystream is XORed back over what it decrypted (a
 *     record decrypted in part, or whose verdict was revoked or failed), which makes the
 *     record exactly what was on the wire, and it is opened in software. EBADMSG comes
 *     from that software check only: a device tag failure is never taken on trust.
 * It answers the device's resync requests as its own reading passes them (the kernel's
 * device-request mode), tells the device where the next record starts after records it
 * had to decrypt itself when nothing more is queued (next-record hint), switches the
 * device's keys at the record after a TLS 1.3 KeyUpdate, and publishes how far it read.
 */
#include <errno.h>
#include <linux/sockios.h>
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "ktls_int.h"
#include "tcpinfo.h"
#include "tlsnic/rx_status.h"

#define HIST 64             /* record starts remembered: late requests, resync distances */
#define HINT_AFTER 2        /* records without any device work before a hint (the kernel's) */

struct rec_start {
    uint32_t seq;
    uint64_t rec_seq;
    uint64_t idx;
};

struct tlsnic_dev_rx {
    struct tlsnic_dev *dev;
    int fd;
    struct tlsnic_flow flow;
    struct tlsnic_rxs *rxs;             /* the status the device writes */
    struct tlsnic_rec_store store;      /* what add was given */
    const struct tlsnic_dev_store_ops *mirror_ops; /* a store the device can map, or NULL */
    void *mirror;
    struct tlsnic_rxs_reader rd;
    tlsnic_rec_key *prev_key;           /* the epoch before the current one (restore) */
    uint32_t epoch;
    uint32_t start_seq;                 /* TCP sequence number of stream position 0 */
    uint64_t pos;                       /* stream position of the record being read */
    uint64_t idx;                       /* records read */
    uint8_t req_on;
    uint32_t req_seq;
    struct rec_start hist[HIST];
    unsigned hist_n, hist_head;
    unsigned untouched;                 /* records in a row without any device work */
    pthread_mutex_t lock;               /* boundary below: read by tlsnic_device_readd */
    uint32_t boundary_seq;              /* the next record not yet opened ... */
    uint64_t boundary_rec_seq;          /* ... and its record sequence number */
    const tlsnic_rec_key *key;          /* the current key (owned by the socket) */
    struct tlsnic_dev_rx *reg_prev, *reg_next;
};

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct tlsnic_dev_rx *registry;

static void registry_add(struct tlsnic_dev_rx *d)
{
    pthread_mutex_lock(&registry_lock);
    d->reg_prev = NULL;
    d->reg_next = registry;
    if (registry)
        registry->reg_prev = d;
    registry = d;
    pthread_mutex_unlock(&registry_lock);
}

static void registry_remove(struct tlsnic_dev_rx *d)
{
    pthread_mutex_lock(&registry_lock);
    if (d->reg_prev)
        d->reg_prev->reg_next = d->reg_next;
    else
        registry = d->reg_next;
    if (d->reg_next)
        d->reg_next->reg_prev = d->reg_prev;
    pthread_mutex_unlock(&registry_lock);
}

static void set_boundary(struct tlsnic_dev_rx *d, uint32_t seq, uint64_t rec_seq)
{
    pthread_mutex_lock(&d->lock);
    d->boundary_seq = seq;
    d->boundary_rec_seq = rec_seq;
    pthread_mutex_unlock(&d->lock);
}

static void free_status(struct tlsnic_dev_rx *d)
{
    tlsnic_rxs_reader_cleanup(&d->rd);
    if (d->mirror_ops)
        d->mirror_ops->close(d->mirror);
    else
        tlsnic_rxs_free(d->rxs);
    d->rxs = NULL;
}

static int add_reason(int rc)
{
    switch (rc) {
    case -ENOSPC: return TLSNIC_SW_REASON_TABLE_FULL;
    case -EOPNOTSUPP: return TLSNIC_SW_REASON_RX_NOT_OFFERED;
    case -ENODEV: return TLSNIC_SW_REASON_DEVICE_GONE;
    case -ENOENT:
    case -ECONNREFUSED: return TLSNIC_SW_REASON_DEVICE_UNREACHABLE;
    default: return TLSNIC_SW_REASON_DEVICE_REFUSED;
    }
}

int tlsnic_dev_rx_offer(struct tlsnic_sock *s, int fd, struct tlsnic_dev *dev,
                        struct tlsnic_mode_info *m)
{
    struct tlsnic_flow flow;
    if (tlsnic_flow_from_socket(fd, &flow) < 0) {
        m->reason = TLSNIC_SW_REASON_NOT_A_FLOW;
        return 0;
    }
    struct tlsnic_dev_rx *d = calloc(1, sizeof(*d));
    if (!d)
        return -ENOMEM;
    /* The device places records by TCP sequence number: where the program's reading is. */
    if (tlsnic_tcp_recv_seq(fd, tlsnic_sys.setsockopt, tlsnic_sys.getsockopt, tlsnic_sys.ioctl,
                            &d->start_seq) < 0) {
        m->reason = TLSNIC_SW_REASON_NO_TCP_SEQ;
        m->dev_errno = -errno;
        free(d);
        return 0;
    }
    void *ctx = NULL;
    const struct tlsnic_dev_store_ops *ops = tlsnic_dev_store_get(&ctx);
    int rc = 0;
    if (ops && ops->open_rx && ops->rx_status && ops->view && ops->close &&
        ops->open_rx(ctx, &d->mirror) == 0) {
        d->mirror_ops = ops;
        d->rxs = ops->rx_status(d->mirror);
        d->store = *ops->view(d->mirror);
    } else {
        rc = tlsnic_rxs_new(&d->rxs, 0);
        d->store = (struct tlsnic_rec_store){.rx_status = d->rxs};
    }
    if (rc == 0)
        rc = tlsnic_rxs_reader_init(&d->rd, d->rxs);
    if (rc < 0) {
        free_status(d);
        free(d);
        return rc;
    }
    tlsnic_rxs_set_host_epoch(d->rxs, 0);
    union tlsnic_crypto_info ci;
    int len = tlsnic_rec_key_export(s->rx.key, &ci, sizeof(ci));
    rc = len < 0 ? len
                 : dev->ops->add(dev, fd, &flow, TLSNIC_DIR_RX, &ci, (size_t)len, d->start_seq,
                                 &d->store);
    OPENSSL_cleanse(&ci, sizeof(ci));
    if (rc < 0) {
        free_status(d);
        free(d);
        m->dev_errno = rc;
        m->reason = add_reason(rc);
        return 0;
    }
    d->dev = dev;
    d->fd = fd;
    d->flow = flow;
    d->key = s->rx.key;
    pthread_mutex_init(&d->lock, NULL);
    set_boundary(d, d->start_seq, tlsnic_rec_key_next_seq(s->rx.key));
    registry_add(d);
    s->rx.dev = d;
    m->mode = TLSNIC_MODE_DEVICE;
    m->reason = TLSNIC_SW_REASON_NONE;
    m->dev_errno = 0;
    return 0;
}

static struct tlsnic_rxs_keys keys_of(const struct tlsnic_rx *rx)
{
    return (struct tlsnic_rxs_keys){.cur = rx->key, .prev = rx->dev->prev_key,
                                    .epoch = rx->dev->epoch};
}

int tlsnic_dev_rx_header(struct tlsnic_rx *rx, uint8_t *hdr)
{
    struct tlsnic_dev_rx *d = rx->dev;
    struct tlsnic_rxs_keys k = keys_of(rx);
    int rc = tlsnic_rxs_restore(&d->rd, &k, d->start_seq + (uint32_t)d->pos, hdr,
                                TLSNIC_REC_HDR_LEN);
    return rc < 0 ? rc : 0;
}

static void resync(struct tlsnic_dev_rx *d, uint32_t seq, uint64_t rec_seq)
{
    if (d->dev->ops->resync &&
        d->dev->ops->resync(d->dev, d->fd, &d->flow, TLSNIC_DIR_RX, seq, rec_seq) == 0)
        tlsnic_stat_add(TLSNIC_STAT_RX_DEVICE_RESYNC, 1);
}

static const struct rec_start *hist_find(const struct tlsnic_dev_rx *d, uint32_t seq)
{
    for (unsigned i = 0; i < d->hist_n; i++) {
        const struct rec_start *h = &d->hist[(d->hist_head + i) % HIST];
        if (h->seq == seq)
            return h;
    }
    return NULL;
}

/* The device's resync request, answered once the reading reaches it (seq: the record
 * about to be opened, with record sequence number rec_seq). */
static void answer(struct tlsnic_dev_rx *d, uint32_t seq, uint64_t rec_seq)
{
    uint32_t x;
    while (tlsnic_rxs_poll_request(&d->rd, &x)) {
        d->req_on = 1;
        d->req_seq = x;
    }
    if (!d->req_on)
        return;
    int32_t ahead = (int32_t)(d->req_seq - seq);
    if (ahead > 0)
        return; /* not read that far yet */
    d->req_on = 0;
    if (ahead == 0) {
        resync(d, d->req_seq, rec_seq);
        return;
    }
    const struct rec_start *h = hist_find(d, d->req_seq);
    resync(d, d->req_seq, h ? h->rec_seq : TLSNIC_RESYNC_REJECT); /* inside a record: no */
}

/* How many records the device took to decrypt again after a gap (its entry says where it
 * saw data again): from the record holding gap_seq to this one, idx. */
static void resync_distance(struct tlsnic_dev_rx *d, uint32_t gap_seq)
{
    uint64_t dist = HIST + 1; /* older than what is remembered */
    for (unsigned i = d->hist_n; i > 0; i--) {
        const struct rec_start *h = &d->hist[(d->hist_head + i - 1) % HIST];
        if ((int32_t)(gap_seq - h->seq) >= 0) {
            dist = d->idx - h->idx;
            break;
        }
    }
    tlsnic_stat_add(TLSNIC_STAT_RX_RESYNC_GAPS, 1);
    tlsnic_stat_add(TLSNIC_STAT_RX_RESYNC_RECORDS, (int64_t)dist);
    if (dist <= 2)
        tlsnic_stat_add(TLSNIC_STAT_RX_RESYNC_WITHIN2, 1);
}

int tlsnic_dev_rx_open(struct tlsnic_rx *rx, uint8_t *rec, size_t len, uint8_t *type,
                       uint8_t **content, size_t *content_len)
{
    struct tlsnic_dev_rx *d = rx->dev;
    uint32_t seq = d->start_seq + (uint32_t)d->pos;
    uint64_t rec_seq = tlsnic_rec_key_next_seq(rx->key);
    answer(d, seq, rec_seq);
    struct tlsnic_rxs_keys k = keys_of(rx);
    struct tlsnic_rxs_info info;
    int v = tlsnic_rxs_record(&d->rd, &k, seq, rec, len, TLSNIC_REC_HDR_LEN, rec_seq, &info);
    int rc;
    if (v < 0)
        rc = v; /* decrypted under a key no longer held: neither form can be trusted */
    else if (v == 1)
        rc = tlsnic_rec_accept(rx->key, rec, len, type, content, content_len);
    else
        rc = tlsnic_rec_open(rx->key, rec, len, type, content, content_len);
    if (info.after_gap)
        resync_distance(d, info.gap_seq);
    struct rec_start *h = &d->hist[(d->hist_head + d->hist_n) % HIST];
    if (d->hist_n == HIST)
        d->hist_head = (d->hist_head + 1) % HIST;
    else
        d->hist_n++;
    *h = (struct rec_start){.seq = seq, .rec_seq = rec_seq, .idx = d->idx};
    d->idx++;
    if (rc < 0)
        return rc;
    if (v == 1) {
        tlsnic_stat_add(TLSNIC_STAT_RX_DEVICE_RECORDS, 1);
        tlsnic_stat_add(TLSNIC_STAT_RX_DEVICE_BYTES, (int64_t)len);
    } else {
        tlsnic_stat_add(TLSNIC_STAT_RX_SW_BYTES, (int64_t)len);
        if (info.restored) {
            tlsnic_stat_add(TLSNIC_STAT_RX_REENCRYPT_RECORDS, 1);
            tlsnic_stat_add(TLSNIC_STAT_RX_REENCRYPT_BYTES, info.restored);
        }
        if (info.device_bad)
            tlsnic_stat_add(TLSNIC_STAT_RX_DEVICE_TAG_FAIL, 1);
    }
    d->untouched = info.entries ? 0 : d->untouched + 1;
    set_boundary(d, seq + (uint32_t)len, tlsnic_rec_key_next_seq(rx->key));
    return 0;
}

void tlsnic_dev_rx_release(struct tlsnic_rx *rx, int fd)
{
    struct tlsnic_dev_rx *d = rx->dev;
    d->pos += rx->need;
    uint32_t next = d->start_seq + (uint32_t)d->pos;
    tlsnic_rxs_consume(&d->rd, next);
    /* The kernel's next-record hint: records the device did nothing for, and nothing more
     * queued, so the next record is one the device has not seen yet. Right after TLS_RX one
     * such record is enough: it was in the socket before the device had the flow (the
     * TLS 1.2 Finished, the start of a response), so the device cannot know where the
     * records after it start. */
    unsigned after = d->idx <= 2 ? 1 : HINT_AFTER;
    if (d->untouched >= after && !d->req_on) {
        int inq = -1;
        if (tlsnic_sys.ioctl(fd, SIOCINQ, &inq) == 0 && inq == 0) {
            resync(d, next, tlsnic_rec_key_next_seq(rx->key));
            d->untouched = 0;
        }
    }
}

void tlsnic_dev_rx_rekey(struct tlsnic_rx *rx, int fd, tlsnic_rec_key *old_key,
                         const tlsnic_rec_key *new_key, const void *crypto_info, size_t len)
{
    struct tlsnic_dev_rx *d = rx->dev;
    tlsnic_rec_key_free(d->prev_key);
    d->prev_key = old_key;
    d->epoch++;
    tlsnic_rxs_set_host_epoch(d->rxs, d->epoch);
    /* The first record under the new key: the next one not opened yet. */
    uint32_t at = d->start_seq + (uint32_t)(d->pos + (rx->ready ? rx->need : 0));
    pthread_mutex_lock(&d->lock);
    d->key = new_key;
    pthread_mutex_unlock(&d->lock);
    set_boundary(d, at, tlsnic_rec_key_next_seq(new_key));
    if (d->dev->ops->rekey)
        (void)d->dev->ops->rekey(d->dev, fd, &d->flow, TLSNIC_DIR_RX, crypto_info, len, at);
    /* A device that could not take the keys decrypts nothing more with the old ones past
     * the KeyUpdate (it holds), or, having missed it, under the old epoch, which the host
     * restores with prev_key. */
}

void tlsnic_dev_rx_free(struct tlsnic_sock *s)
{
    struct tlsnic_dev_rx *d = s->rx.dev;
    if (!d)
        return;
    registry_remove(d); /* first: a re-add must not resurrect what is being deleted */
    d->dev->ops->del(d->dev, d->fd, &d->flow, TLSNIC_DIR_RX); /* before its status goes */
    free_status(d);
    tlsnic_rec_key_free(d->prev_key);
    pthread_mutex_destroy(&d->lock);
    OPENSSL_cleanse(d, sizeof(*d));
    free(d);
    s->rx.dev = NULL;
}

/* After a device restart: the context again, at the next record boundary, same status. */
static int readd_one(struct tlsnic_dev_rx *d)
{
    union tlsnic_crypto_info ci;
    pthread_mutex_lock(&d->lock);
    int len = tlsnic_rec_key_export(d->key, &ci, sizeof(ci));
    uint32_t at = d->boundary_seq;
    uint64_t rec_seq = d->boundary_rec_seq;
    pthread_mutex_unlock(&d->lock);
    if (len < 0)
        return len;
    uint8_t *rs = ci.info.cipher_type == TLS_CIPHER_AES_GCM_128   ? ci.aes_gcm_128.rec_seq
                  : ci.info.cipher_type == TLS_CIPHER_AES_GCM_256 ? ci.aes_gcm_256.rec_seq
                                                                  : ci.chacha20_poly1305.rec_seq;
    for (int i = 7; i >= 0; i--, rec_seq >>= 8)
        rs[i] = (uint8_t)rec_seq;
    int rc = d->dev->ops->add(d->dev, d->fd, &d->flow, TLSNIC_DIR_RX, &ci, (size_t)len, at,
                              &d->store);
    OPENSSL_cleanse(&ci, sizeof(ci));
    return rc;
}

int tlsnic_dev_rx_readd(struct tlsnic_dev *dev)
{
    int added = 0, first_err = 0;
    pthread_mutex_lock(&registry_lock);
    for (struct tlsnic_dev_rx *d = registry; d; d = d->reg_next) {
        if (d->dev != dev)
            continue;
        int rc = readd_one(d);
        if (rc < 0 && first_err == 0)
            first_err = rc;
        if (rc == 0) {
            added++;
            tlsnic_stat_add(TLSNIC_STAT_RX_DEVICE_READD, 1);
        }
    }
    pthread_mutex_unlock(&registry_lock);
    return first_err < 0 ? first_err : added;
}
