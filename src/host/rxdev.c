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
    uint8_t registered;                 /* in this process's registry (under its lock) */
};

/*
 * The device-mode RX contexts of this process: what tlsnic_device_readd walks. A forked
 * child starts with none: the contexts it inherited are its parent's (the parent re-adds
 * them after a daemon restart; a child that did would take the flows over).
 */
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct tlsnic_dev_rx *registry;
static pthread_once_t registry_once = PTHREAD_ONCE_INIT;

static void registry_forget_in_child(void)
{
    pthread_mutex_init(&registry_lock, NULL); /* another thread may have held it */
    for (struct tlsnic_dev_rx *d = registry; d; d = d->reg_next)
        d->registered = 0;
    registry = NULL;
}

static void registry_init(void)
{
    (void)pthread_atfork(NULL, NULL, registry_forget_in_child);
}

static void registry_add(struct tlsnic_dev_rx *d)
{
    pthread_once(&registry_once, registry_init);
    pthread_mutex_lock(&registry_lock);
    d->reg_prev = NULL;
    d->reg_next = registry;
    if (registry)
        registry->reg_prev = d;
    registry = d;
    d->registered = 1;
    pthread_mutex_unlock(&registry_lock);
}

/* Call with registry_lock held (or in a forked child, which has one thread). */
static void registry_unlink(struct tlsnic_dev_rx *d)
{
    if (!d->registered)
        return;
    if (d->reg_prev)
        d->reg_prev->reg_next = d->reg_next;
    else
        registry = d->reg_next;
    if (d->reg_next)
        d->reg_next->reg_prev = d->reg_prev;
    d->reg_prev = d->reg_next = NULL;
    d->registered = 0;
}

static void registry_remove(struct tlsnic_dev_rx *d)
{
    pthread_mutex_lock(&registry_lock);
    registry_unlink(d);
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

int tlsnic_dev_rx_offer(struct tlsnic_sock *s, int fd, struct tlsnic_mode_info *m)
{
    struct tlsnic_dev *dev = s->offload.dev;
    struct tlsnic_flow flow;
    if (tlsnic_flow_from_socket(fd, &flow) < 0) {
        m->reason = TLSNIC_SW_REASON_NOT_A_FLOW;
        return 0;
    }
    struct tlsnic_dev_rx *d = calloc(1, sizeof(*d));
    if (!d)
        return -ENOMEM;
    /* The device places records by TCP sequence number: where the program's reading is. */
    uint32_t received = 0; /* already in the kernel socket: passed the device before the add */
    if (tlsnic_tcp_recv_seq(fd, tlsnic_sys.setsockopt, tlsnic_sys.getsockopt, tlsnic_sys.ioctl,
                            &d->start_seq, &received) < 0) {
        m->reason = TLSNIC_SW_REASON_NO_TCP_SEQ;
        m->dev_errno = -errno;
        free(d);
        return 0;
    }
    /* The status where the device can write it: the socket's binding's store (tlsnicd:
     * shared memory), else this process's memory (an in-process device). */
    void *ctx = s->offload.store_ctx;
    const struct tlsnic_dev_store_ops *ops = s->offload.store_ops;
    int rc = 0;
    if (ops && ops->open_rx && ops->rx_status && ops->view && ops->close &&
        ops->open_rx(ctx, &d->mirror) == 0) {
        d->mirror_ops = ops;
        d->rxs = ops->rx_status(d->mirror);
        d->store = *ops->view(d->mirror);
    } else {
        rc = tlsnic_rxs_new(&d->rxs, tlsnic_rxs_entries_for(tlsnic_tcp_rmem_max()));
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
    tlsnic_rxs_set_host_received(d->rxs, received);
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

/* ------------------------------------------------------------------------------------------ */
/* MSG_PEEK past the record in hand (rx.c, peek_ahead): looks only, on a copy of the reader,  */
/* so that nothing of the reading's state moves (the reader passes over entries for good).    */

/* TCP sequence number of the byte `ahead` bytes after the record in hand. */
static uint32_t ahead_seq(const struct tlsnic_rx *rx, size_t ahead)
{
    return rx->dev->start_seq + (uint32_t)(rx->dev->pos + rx->need + ahead);
}

int tlsnic_dev_rx_peek_header(struct tlsnic_rx *rx, size_t ahead, uint8_t *hdr)
{
    struct tlsnic_dev_rx *d = rx->dev;
    struct tlsnic_rxs_reader look = d->rd; /* (its keystream context is only borrowed) */
    struct tlsnic_rxs_keys k = keys_of(rx);
    int rc = tlsnic_rxs_restore(&look, &k, ahead_seq(rx, ahead), hdr, TLSNIC_REC_HDR_LEN);
    return rc < 0 ? rc : 0;
}

int tlsnic_dev_rx_peek_open(struct tlsnic_rx *rx, size_t ahead, uint64_t rec_seq, uint8_t *rec,
                            size_t len, uint8_t *type, uint8_t **content, size_t *content_len)
{
    struct tlsnic_dev_rx *d = rx->dev;
    struct tlsnic_rxs_reader look = d->rd;
    struct tlsnic_rxs_keys k = keys_of(rx);
    int v = tlsnic_rxs_record(&look, &k, ahead_seq(rx, ahead), rec, len, TLSNIC_REC_HDR_LEN,
                              rec_seq, NULL);
    if (v < 0)
        return v;
    /* Verified by the device: its plaintext as it is; else what was on the wire, opened. */
    return v == 1 ? tlsnic_rec_accept_at(rx->key, rec, len, type, content, content_len)
                  : tlsnic_rec_open_at(rx->key, rec_seq, rec, len, type, content, content_len);
}

/* ------------------------------------------------------------------------------------------ */
/* The batched path: device-verified records straight into the program's buffer.              */

#define BULK_RECS 64                    /* records per batch */
#define BULK_IOV (BULK_RECS * 2 + 16)   /* content and trailer per record, plus content
                                           split over the program's iovecs */

/* Where the program's bytes [at, ...) go: a cursor over its iovecs. */
struct app_cursor {
    const struct msghdr *msg;
    size_t i, off; /* iovec index, offset in it */
};

static void app_seek(struct app_cursor *c, const struct msghdr *msg, size_t at)
{
    c->msg = msg;
    c->i = 0;
    c->off = at;
    while (c->i < msg->msg_iovlen && c->off >= msg->msg_iov[c->i].iov_len) {
        c->off -= msg->msg_iov[c->i].iov_len;
        c->i++;
    }
}

/* Appends the next n bytes of the program's buffer to iov (*ni < cap): 0, or -1 if out of
 * iovecs (the batch ends before this record). */
static int app_take(struct app_cursor *c, struct iovec *iov, size_t *ni, size_t cap, size_t n)
{
    struct app_cursor save = *c;
    size_t start = *ni;
    while (n > 0) {
        if (*ni == cap || c->i >= c->msg->msg_iovlen) {
            *c = save;
            *ni = start;
            return -1;
        }
        size_t l = c->msg->msg_iov[c->i].iov_len - c->off;
        if (l > n)
            l = n;
        iov[(*ni)++] = (struct iovec){(uint8_t *)c->msg->msg_iov[c->i].iov_base + c->off, l};
        n -= l;
        c->off += l;
        if (c->off == c->msg->msg_iov[c->i].iov_len) {
            c->i++;
            c->off = 0;
        }
    }
    return 0;
}

/* Zeroes n bytes of the program's buffer from byte at: what a look or a read put there
 * that is not delivered (it may be plaintext no one verified). */
static void app_zero(const struct msghdr *msg, size_t at, size_t n)
{
    struct app_cursor c;
    app_seek(&c, msg, at);
    while (n > 0 && c.i < msg->msg_iovlen) {
        size_t l = msg->msg_iov[c.i].iov_len - c.off;
        if (l > n)
            l = n;
        memset((uint8_t *)msg->msg_iov[c.i].iov_base + c.off, 0, l);
        n -= l;
        c.i++;
        c.off = 0;
    }
}

/* One record delivered without its bytes ever being in rx->buf (the bookkeeping of
 * tlsnic_dev_rx_open and tlsnic_dev_rx_release for a device-verified record). */
static void bulk_account(struct tlsnic_dev_rx *d, uint32_t seq, uint64_t rec_seq,
                         const struct tlsnic_rxs_info *info)
{
    if (info->after_gap)
        resync_distance(d, info->gap_seq);
    struct rec_start *h = &d->hist[(d->hist_head + d->hist_n) % HIST];
    if (d->hist_n == HIST)
        d->hist_head = (d->hist_head + 1) % HIST;
    else
        d->hist_n++;
    *h = (struct rec_start){.seq = seq, .rec_seq = rec_seq, .idx = d->idx};
    d->idx++;
    d->untouched = 0;
}

/* One record taken: the bookkeeping of a device-verified record delivered by this path. */
static void bulk_done(struct tlsnic_rx *rx, uint32_t seq, size_t take, unsigned records)
{
    struct tlsnic_dev_rx *d = rx->dev;
    d->pos += take;
    tlsnic_rxs_consume(&d->rd, seq);
    set_boundary(d, seq, tlsnic_rec_key_next_seq(rx->key));
    tlsnic_stat_add(TLSNIC_STAT_RX_RECORDS, records);
    tlsnic_stat_add(TLSNIC_STAT_RX_DEVICE_RECORDS, records);
    tlsnic_stat_add(TLSNIC_STAT_RX_DEVICE_BYTES, (int64_t)take);
}

/* Judges the record at the reading position, its bytes read: 1 if it is device-verified
 * application data (the key then takes it), 0 if the ordinary path must open it. */
static int bulk_judge(struct tlsnic_rx *rx, const struct tlsnic_rxs_keys *k, uint32_t seq,
                      size_t len, const uint8_t *hdr, uint8_t inner_type)
{
    struct tlsnic_dev_rx *d = rx->dev;
    int tls13 = rx->version == TLS_1_3_VERSION;
    size_t hn = TLSNIC_REC_HDR_LEN + tlsnic_rec_key_explicit_nonce_len(rx->key);
    uint64_t rec_seq = tlsnic_rec_key_next_seq(rx->key);
    answer(d, seq, rec_seq);
    if (hdr[0] != TLSNIC_CT_APPLICATION_DATA || (tls13 && inner_type != TLSNIC_CT_APPLICATION_DATA))
        return 0; /* a control record, or TLS 1.3 padding */
    struct tlsnic_rxs_info info;
    if (tlsnic_rxs_verified(&d->rd, k, seq, len, hn > TLSNIC_REC_HDR_LEN ? hdr + TLSNIC_REC_HDR_LEN : NULL,
                            rec_seq, &info) != 1 ||
        tlsnic_rec_accept_header(rx->key, hdr, len) < 0)
        return 0;
    bulk_account(d, seq, rec_seq, &info);
    return 1;
}

/* A record laid out apart: [0, hn) in head, the content in the program's buffer from
 * byte at, the trailer in trail. */
struct split {
    uint8_t *head, *trail;
    const struct msghdr *msg;
    size_t at, hn, content, len;
};

/* The iovecs for the record's bytes [from, to): how many (0: the program's buffer has too
 * many pieces for cap). */
static size_t split_iov(const struct split *sp, size_t from, size_t to, struct iovec *iov, size_t cap)
{
    size_t ni = 0, hc = sp->hn + sp->content;
    if (from < to && from < sp->hn) {
        size_t e = to < sp->hn ? to : sp->hn;
        iov[ni++] = (struct iovec){sp->head + from, e - from};
        from = e;
    }
    if (from < to && from < hc) {
        size_t e = to < hc ? to : hc;
        struct app_cursor c;
        app_seek(&c, sp->msg, sp->at + (from - sp->hn));
        if (app_take(&c, iov, &ni, cap - 1, e - from) < 0)
            return 0;
        from = e;
    }
    if (from < to)
        iov[ni++] = (struct iovec){sp->trail + (from - hc), to - from};
    return ni;
}

/* The first have bytes of a record laid out apart go to rx->buf, for the ordinary path
 * to go on with (it parses the header and, with all of the record there, opens it). */
static void split_stash(struct tlsnic_rx *rx, const struct split *sp, size_t have)
{
    struct iovec iov[BULK_IOV];
    size_t ni = have ? split_iov(sp, 0, have, iov, BULK_IOV) : 0, off = 0;
    for (size_t i = 0; i < ni; i++) {
        memmove(rx->buf + off, iov[i].iov_base, iov[i].iov_len);
        off += iov[i].iov_len;
    }
    rx->have = off;
    rx->need = 0;
}

/* Reads the record's bytes [*have, to), consuming them as they arrive (MSG_WAITALL: one
 * call, unless a signal, a timeout or the end of the stream cuts it short). 1 when all
 * are there, else what ended it (0 at the end of the stream, or -errno; -ENOBUFS: too
 * many pieces in the program's buffer). */
static int split_read(int fd, const struct split *sp, size_t *have, size_t to)
{
    struct iovec iov[BULK_IOV];
    for (size_t guard = 0; *have < to && guard <= to; guard++) {
        size_t ni = split_iov(sp, *have, to, iov, BULK_IOV);
        if (ni == 0)
            return -ENOBUFS;
        struct msghdr m = {.msg_iov = iov, .msg_iovlen = ni};
        ssize_t r = tlsnic_sys.recvmsg(fd, &m, MSG_WAITALL);
        if (r > 0)
            *have += (size_t)r;
        else if (r == 0)
            return 0;
        else if (errno != EINTR)
            return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    }
    return *have == to ? 1 : -EIO;
}

/*
 * A program that would wait, and the record at the reading position is not all there
 * yet: it is read as it arrives, its content straight into the program's buffer (no copy
 * through rx->buf, no peek of its last byte), in one call that consumes the pieces as
 * they come (MSG_WAITALL), and judged once whole. (Not waited for with MSG_PEEK: a record
 * the receive buffer cannot hold, with the skb overhead, would never complete there.)
 * Its header (taken already into rx->buf, seen by the last look, or read first) is
 * checked against the device's record length before anything past it is taken.
 */
static ssize_t bulk_in_pieces(struct tlsnic_rx *rx, int fd, const struct tlsnic_rxs_keys *k,
                              const struct msghdr *msg, size_t at, size_t len,
                              const uint8_t *seen)
{
    struct tlsnic_dev_rx *d = rx->dev;
    int tls13 = rx->version == TLS_1_3_VERSION;
    size_t hn = TLSNIC_REC_HDR_LEN + tlsnic_rec_key_explicit_nonce_len(rx->key);
    size_t tl = (tls13 ? 1 : 0) + TLSNIC_REC_TAG_LEN;
    uint8_t head[TLSNIC_REC_HDR_LEN + TLSNIC_REC_EXPLICIT_NONCE_LEN], trail[1 + TLSNIC_REC_TAG_LEN];
    struct split sp = {.head = head, .trail = trail, .msg = msg, .at = at, .hn = hn,
                       .content = len - hn - tl, .len = len};
    uint32_t seq = d->start_seq + (uint32_t)d->pos;
    size_t have = rx->have; /* taken already: up to hn bytes, in rx->buf */
    memcpy(head, rx->buf, have);
    int rc = 1;
    if (!seen && have < TLSNIC_REC_HDR_LEN)
        rc = split_read(fd, &sp, &have, TLSNIC_REC_HDR_LEN);
    if (rc == 1) {
        if (!seen)
            seen = head;
        uint8_t h[TLSNIC_REC_HDR_LEN];
        memcpy(h, seen, sizeof(h));
        if (tlsnic_dev_rx_header(rx, h) == 0 && memcmp(h, seen, sizeof(h)) == 0 &&
            tlsnic_rec_parse_header(rx->key, h) == (int)len)
            rc = split_read(fd, &sp, &have, len);
        else
            rc = 0; /* not the record the device described: the ordinary path */
    }
    if (rc == 1 && bulk_judge(rx, k, seq, len, head, tls13 ? trail[0] : 0)) {
        rx->have = 0;
        bulk_done(rx, seq + (uint32_t)len, len, 1);
        return (ssize_t)sp.content;
    }
    /* Cut short (end of stream, timeout, signal), or not device-verified: what was read
     * goes on through the ordinary path, which reports the end or the error, or opens
     * the record (restoring what the device decrypted). */
    split_stash(rx, &sp, have);
    if (have > hn)
        app_zero(msg, at, (have < hn + sp.content ? have : hn + sp.content) - hn);
    return rc < 0 && rc != -ENOBUFS ? rc : 0;
}

ssize_t tlsnic_dev_rx_bulk(struct tlsnic_rx *rx, int fd, const struct msghdr *msg, size_t at,
                           size_t room, int block)
{
    struct tlsnic_dev_rx *d = rx->dev;
    int tls13 = rx->version == TLS_1_3_VERSION;
    size_t hn = TLSNIC_REC_HDR_LEN + tlsnic_rec_key_explicit_nonce_len(rx->key);
    size_t tl = (tls13 ? 1 : 0) + TLSNIC_REC_TAG_LEN; /* trailer */
    size_t pre = rx->have; /* the record's first bytes, taken already (rx->buf) */
    if (pre > hn)
        return 0;
    struct tlsnic_rxs_keys k = keys_of(rx);
    uint32_t seq0 = d->start_seq + (uint32_t)d->pos;
    uint64_t rec_seq0 = tlsnic_rec_key_next_seq(rx->key);
    uint32_t lens[BULK_RECS];
    unsigned planned = tlsnic_rxs_plan(&d->rd, &k, seq0, rec_seq0, lens, BULK_RECS);
    int arriving = 0; /* the device is decrypting the first record as it arrives */
    if (planned == 0) {
        if (!tlsnic_rxs_pending(&d->rd, &k, seq0, rec_seq0, &lens[0]))
            return block ? 0 : -EINPROGRESS; /* a caller with data returns it */
        planned = 1;
        arriving = 1;
    }
    size_t content0 = lens[0] - hn - tl;
    if (!block && (arriving || content0 > room))
        return -EINPROGRESS; /* better taken whole by the next call */
    if (content0 > room || (tls13 && lens[0] == hn + TLSNIC_REC_TAG_LEN))
        return 0;
    if (arriving)
        return bulk_in_pieces(rx, fd, &k, msg, at, lens[0], NULL);

    /* One scatter: content into the program's buffer, the rest apart: the first header
     * (+ explicit nonce; less what was taken already), then after each content the
     * record's trailer (a TLS 1.3 record's last body byte, its content type if unpadded;
     * the tag) together with the next record's header: two pieces per record. */
    uint8_t head[TLSNIC_REC_HDR_LEN + TLSNIC_REC_EXPLICIT_NONCE_LEN];
    uint8_t trail[BULK_RECS][1 + TLSNIC_REC_TAG_LEN + TLSNIC_REC_HDR_LEN +
                             TLSNIC_REC_EXPLICIT_NONCE_LEN];
    struct iovec iov[BULK_IOV];
    size_t ni = 0, used = 0;
    unsigned n = 0;
    struct app_cursor cur;
    app_seek(&cur, msg, at);
    memcpy(head, rx->buf, pre);
    if (pre < hn)
        iov[ni++] = (struct iovec){head + pre, hn - pre};
    for (; n < planned; n++) {
        size_t body = lens[n] - hn - TLSNIC_REC_TAG_LEN;
        size_t content = tls13 ? body - 1 : body;
        if ((tls13 && body == 0) || used + content > room)
            break;
        size_t mark = ni;
        if (app_take(&cur, iov, &ni, BULK_IOV - 1, content) < 0) {
            ni = mark;
            break;
        }
        iov[ni++] = (struct iovec){trail[n], tl + hn};
        used += content;
    }
    if (n == 0)
        return 0;
    struct msghdr m = {.msg_iov = iov, .msg_iovlen = ni};
    ssize_t got = tlsnic_sys.recvmsg(fd, &m, MSG_PEEK | MSG_DONTWAIT);
    if (got == 0 || (got < 0 && errno != EAGAIN && errno != EWOULDBLOCK))
        return 0; /* the end of the stream, or an error: the ordinary path reports it */
    size_t avail = pre + (got > 0 ? (size_t)got : 0); /* from the record's first byte */
    size_t written = 0; /* content bytes the look put into the program's buffer */
    for (size_t r = 0, off = 0; r < n && off + hn < avail; off += lens[r], r++) {
        size_t c = lens[r] - hn - tl;
        written += avail - (off + hn) < c ? avail - (off + hn) : c;
    }
    if (avail < lens[0]) {
        app_zero(msg, at, written);
        if (!block)
            return -EINPROGRESS;
        return bulk_in_pieces(rx, fd, &k, msg, at, lens[0], avail >= TLSNIC_REC_HDR_LEN ? head : NULL);
    }

    /* Judge each record now that its bytes are read (a later copy the device forwards
     * before this point revokes the verdict): stop at the first that is not verified
     * whole application data. Only the records taken leave the kernel socket. */
    size_t take = 0, delivered = 0;
    uint32_t seq = seq0;
    unsigned i = 0;
    for (; i < n && take + lens[i] <= avail; i++) {
        const uint8_t *hdr = i == 0 ? head : trail[i - 1] + tl;
        if (!bulk_judge(rx, &k, seq, lens[i], hdr, tls13 ? trail[i][0] : 0))
            break;
        take += lens[i];
        delivered += lens[i] - hn - tl;
        seq += lens[i];
    }
    if (written > delivered)
        app_zero(msg, at + delivered, written - delivered);
    if (i == 0)
        return 0;
    for (size_t left = take - pre; left > 0;) {
        ssize_t r = tlsnic_sys.recv(fd, NULL, left, MSG_TRUNC | MSG_DONTWAIT);
        if (r <= 0) {
            if (r < 0 && errno == EINTR)
                continue;
            /* The bytes were peeked under the RX lock: only someone reading the socket
             * behind tlsnic's back gets here. The stream is lost. */
            return rx->err = -EIO;
        }
        left -= (size_t)r;
    }
    rx->have = 0;
    bulk_done(rx, seq, take, i);
    return (ssize_t)delivered;
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

static void rx_dev_destroy(struct tlsnic_sock *s, struct tlsnic_dev_rx *d)
{
    tlsnic_rec_key_free(d->prev_key);
    pthread_mutex_destroy(&d->lock);
    OPENSSL_cleanse(d, sizeof(*d));
    free(d);
    s->rx.dev = NULL;
}

/*
 * The end of the RX context when the application closed the socket (closer.c: its first
 * step, before any wait for TX; close(2) still returns at once: one request at most). An
 * RX context has nothing to send, so unlike TX it is not kept while the socket lives: a
 * device that can take a flow over (release: tlsnicd) is asked to let go of it (it deletes
 * the context at once), any other gets its del. Only then does the status go: closed once
 * the device answered 0, else retired (the device may still write it: it is never reused).
 */
void tlsnic_dev_rx_close(struct tlsnic_sock *s, int fd)
{
    struct tlsnic_dev_rx *d = s->rx.dev;
    if (!d)
        return;
    registry_remove(d); /* first: a re-add must not resurrect what is being deleted */
    if (fd < 0)
        fd = d->fd;
    int rc = d->dev->ops->release ? d->dev->ops->release(d->dev, fd, &d->flow, TLSNIC_DIR_RX, 0)
                                  : -EOPNOTSUPP;
    if (rc < 0 && rc != -ENODEV && rc != -ETIMEDOUT) /* refused (an older daemon): del */
        rc = d->dev->ops->del(d->dev, fd, &d->flow, TLSNIC_DIR_RX);
    tlsnic_rxs_reader_cleanup(&d->rd);
    if (d->mirror_ops && rc < 0 && d->mirror_ops->retire)
        d->mirror_ops->retire(d->mirror);
    else if (d->mirror_ops)
        d->mirror_ops->close(d->mirror);
    else if (rc == 0 || rc == -ENOENT)
        tlsnic_rxs_free(d->rxs); /* an in-process device no longer holds it */
    /* (else: an in-process device that did not let go keeps its pointer: leaked, never
     * freed under it) */
    d->rxs = NULL;
    rx_dev_destroy(s, d);
}

/*
 * A forked child's copy: the parent still reads the stream and the device still writes
 * the status. Only this process's memory goes: no request, no byte of a shared status
 * touched, no lock taken (a thread of the parent may have held one at the fork).
 */
void tlsnic_dev_rx_forget(struct tlsnic_sock *s)
{
    struct tlsnic_dev_rx *d = s->rx.dev;
    if (!d)
        return;
    registry_unlink(d); /* the child's registry starts empty (registry_forget_in_child) */
    tlsnic_rxs_reader_cleanup(&d->rd);
    if (d->mirror_ops && d->mirror_ops->forget)
        d->mirror_ops->forget(d->mirror);
    else if (!d->mirror_ops)
        tlsnic_rxs_free(d->rxs); /* the child's private copy of in-process memory */
    d->rxs = NULL;
    tlsnic_rec_key_free(d->prev_key);
    OPENSSL_cleanse(d, sizeof(*d));
    free(d);
    s->rx.dev = NULL;
}

void tlsnic_dev_rx_free(struct tlsnic_sock *s)
{
    /* Normally ended by the close step already; else (no close step ran) ended here. */
    tlsnic_dev_rx_close(s, -1);
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
    /* The old device's decisions are in the status (its hi); none from before any add. */
    tlsnic_rxs_set_host_received(d->rxs, 0);
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
