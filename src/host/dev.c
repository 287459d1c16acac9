/*
 * tlsnic socket layer, device mode (TX): records framed for the device, retained until
 * acknowledged, and looked up by the device through the record store (the analog of
 * net/tls/tls_device.c: tls_push_record keeps records, tls_get_record finds them,
 * clean_acked_data releases them).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>

#include "ktls_int.h"
#include "tcpinfo.h"

#define LINGER_TICK_NS 2000000 /* how often a closing device-mode socket looks for ACKs */

/* One record the host retains until the peer has acknowledged it. */
struct retained {
    uint64_t pos;     /* stream position (bytes since the ISN) of the first byte */
    uint64_t rec_seq;
    uint32_t len;
    uint8_t *bytes;   /* the record as framed for the device (owned), or NULL when the
                         device reads the records from the shared store (mirror) */
};

/* Records framed between two looks at the socket's acknowledgements: one SIOCOUTQ per
 * RECLAIM_EVERY records instead of one per record (a system call each). The store then
 * holds at most this many acknowledged records on top of the unacknowledged window. */
#define RECLAIM_EVERY 16u
#define RING_MIN_CAP 64u

struct tlsnic_dev_tx {
    struct tlsnic_dev *dev;
    int fd;
    struct tlsnic_flow flow;
    struct tlsnic_rec_store store;
    const tlsnic_rec_key *key;   /* borrowed: the socket's TX key (device mode never rekeys) */
    /* A store the device can map (tlsnic_set_device_store), or NULL: then `store`. */
    const struct tlsnic_dev_store_ops *mirror_ops;
    void *mirror;
    struct tlsnic_dev_tx *reg_prev, *reg_next; /* every context, for tlsnic_device_readd */
    atomic_int lost; /* a re-add was refused: the device will never encrypt this flow again */
    pthread_mutex_t lock; /* the ring, write_pos, next_seq: read by the device's thread
                             and by tlsnic_device_readd */
    /* Retained records in stream order: a ring of ring_cap (a power of two) descriptors,
     * [ring_head, ring_head + count). Grows by doubling; no allocation per record. */
    struct retained *ring;
    size_t ring_cap, ring_head;
    size_t bytes, count;
    unsigned framed_since_reclaim;
    uint64_t start_pos;   /* stream position at TLS_TX ... */
    uint32_t start_seq;   /* ... and its TCP sequence number */
    uint64_t write_pos;   /* position of the next record */
    uint64_t sent_pos;    /* position after the last byte handed to the kernel */
    uint64_t next_seq;    /* record sequence number of the next record */
    uint64_t initial_seq, initial_explicit;
    size_t nonce_len;
    uint16_t version;
};

static struct retained *ring_at(const struct tlsnic_dev_tx *d, size_t i)
{
    return &d->ring[(d->ring_head + i) & (d->ring_cap - 1)];
}

/* Room for one more descriptor. Call with d->lock held. 0 or -ENOMEM. */
static int ring_reserve(struct tlsnic_dev_tx *d)
{
    if (d->count < d->ring_cap)
        return 0;
    size_t cap = d->ring_cap ? d->ring_cap * 2 : RING_MIN_CAP;
    struct retained *ring = malloc(cap * sizeof(*ring));
    if (!ring)
        return -ENOMEM;
    for (size_t i = 0; i < d->count; i++)
        ring[i] = *ring_at(d, i);
    free(d->ring);
    d->ring = ring;
    d->ring_cap = cap;
    d->ring_head = 0;
    return 0;
}

/* Drops the oldest retained record. Call with d->lock held and d->count > 0. */
static void ring_pop(struct tlsnic_dev_tx *d)
{
    struct retained *r = ring_at(d, 0);
    d->bytes -= r->len;
    d->count--;
    d->ring_head = (d->ring_head + 1) & (d->ring_cap - 1);
    if (r->bytes)
        OPENSSL_clear_free(r->bytes, r->len);
    r->bytes = NULL;
}

/* TCP sequence number of stream position pos. */
static uint32_t seq_of(const struct tlsnic_dev_tx *d, uint64_t pos)
{
    return d->start_seq + (uint32_t)(pos - d->start_pos);
}

static int store_get_record(void *priv, uint32_t tcp_seq, struct tlsnic_rec_ref *out)
{
    struct tlsnic_dev_tx *d = priv;
    int rc = -ENOENT;
    if (d->mirror_ops) /* the bytes live in the shared store, which the device was given */
        return -ENOENT;
    pthread_mutex_lock(&d->lock);
    for (size_t i = 0; i < d->count; i++) {
        const struct retained *r = ring_at(d, i);
        if ((uint32_t)(tcp_seq - seq_of(d, r->pos)) < r->len) {
            out->tcp_seq = seq_of(d, r->pos);
            out->len = r->len;
            out->rec_seq = r->rec_seq;
            out->bytes = r->bytes;
            rc = 0;
            break;
        }
    }
    pthread_mutex_unlock(&d->lock);
    return rc;
}

static const struct tlsnic_rec_store_ops store_ops = {.get_record = store_get_record};

/* The device-mode contexts of this process: what tlsnic_device_readd walks. */
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct tlsnic_dev_tx *registry;

static _Atomic(const struct tlsnic_dev_store_ops *) mirror_ops_set;
static _Atomic(void *) mirror_ctx_set;

void tlsnic_set_device_store(const struct tlsnic_dev_store_ops *ops, void *ctx)
{
    atomic_store(&mirror_ctx_set, ctx);
    atomic_store(&mirror_ops_set, ops);
}

const struct tlsnic_dev_store_ops *tlsnic_dev_store_get(void **ctx)
{
    const struct tlsnic_dev_store_ops *ops = atomic_load(&mirror_ops_set);
    *ctx = atomic_load(&mirror_ctx_set);
    return ops;
}

static void registry_add(struct tlsnic_dev_tx *d)
{
    pthread_mutex_lock(&registry_lock);
    d->reg_prev = NULL;
    d->reg_next = registry;
    if (registry)
        registry->reg_prev = d;
    registry = d;
    pthread_mutex_unlock(&registry_lock);
}

static void registry_remove(struct tlsnic_dev_tx *d)
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

/* Stream position of the next byte the socket will take: snd_una - ISN + queued bytes. */
int tlsnic_stream_pos(int fd, uint64_t *pos)
{
    uint64_t acked = 0;
    int outq = 0;
    int rc = tlsnic_tcp_bytes_acked(fd, tlsnic_sys.getsockopt, &acked);
    if (rc < 0)
        return rc == -1 ? -errno : -EOPNOTSUPP;
    if (tlsnic_sys.ioctl(fd, SIOCOUTQ, &outq) < 0)
        return -errno;
    *pos = acked + (uint64_t)outq; /* bytes_acked counts the SYN */
    return 0;
}

static void load_seq(const union tlsnic_crypto_info *ci, uint64_t *seq, uint64_t *explicit_iv)
{
    const uint8_t *rs, *iv = NULL;
    switch (ci->info.cipher_type) {
    case TLS_CIPHER_AES_GCM_128:
        rs = ci->aes_gcm_128.rec_seq;
        iv = ci->aes_gcm_128.iv;
        break;
    case TLS_CIPHER_AES_GCM_256:
        rs = ci->aes_gcm_256.rec_seq;
        iv = ci->aes_gcm_256.iv;
        break;
    default:
        rs = ci->chacha20_poly1305.rec_seq;
        break;
    }
    *seq = *explicit_iv = 0;
    for (int i = 0; i < 8; i++) {
        *seq = (*seq << 8) | rs[i];
        if (iv)
            *explicit_iv = (*explicit_iv << 8) | iv[i];
    }
}

int tlsnic_dev_tx_offer(struct tlsnic_sock *s, int fd, struct tlsnic_dev *dev,
                        struct tlsnic_mode_info *m)
{
    struct tlsnic_flow flow;
    if (tlsnic_flow_from_socket(fd, &flow) < 0) {
        m->reason = TLSNIC_SW_REASON_NOT_A_FLOW;
        return 0;
    }
    struct tlsnic_dev_tx *d = calloc(1, sizeof(*d));
    if (!d)
        return -ENOMEM;
    /* The device places records by TCP sequence number: without it, no offload. */
    if (tlsnic_tcp_send_seq(fd, tlsnic_sys.setsockopt, tlsnic_sys.getsockopt, &d->start_seq) < 0) {
        m->reason = TLSNIC_SW_REASON_NO_TCP_SEQ;
        m->dev_errno = -errno;
        free(d);
        return 0;
    }
    union tlsnic_crypto_info ci;
    int len = tlsnic_rec_key_export(s->tx.key, &ci, sizeof(ci));
    int rc = len < 0 ? len : tlsnic_stream_pos(fd, &d->write_pos);
    if (rc < 0) {
        OPENSSL_cleanse(&ci, sizeof(ci));
        free(d);
        return rc;
    }
    d->dev = dev;
    d->fd = fd;
    d->flow = flow;
    d->store.ops = &store_ops;
    d->store.priv = d;
    d->start_pos = d->sent_pos = d->write_pos;
    d->version = ci.info.version;
    d->nonce_len = tlsnic_rec_key_explicit_nonce_len(s->tx.key);
    d->key = s->tx.key;
    load_seq(&ci, &d->initial_seq, &d->initial_explicit);
    d->next_seq = d->initial_seq;
    pthread_mutex_init(&d->lock, NULL);
    const struct tlsnic_rec_store *store = &d->store;
    d->mirror_ops = atomic_load(&mirror_ops_set);
    if (d->mirror_ops) {
        rc = d->mirror_ops->open(atomic_load(&mirror_ctx_set), &d->mirror);
        if (rc < 0)
            d->mirror_ops = NULL;
        else
            store = d->mirror_ops->view(d->mirror);
    }
    if (rc == 0)
        rc = dev->ops->add(dev, fd, &flow, TLSNIC_DIR_TX, &ci, (size_t)len, d->start_seq, store);
    OPENSSL_cleanse(&ci, sizeof(ci));
    if (rc < 0) {
        if (d->mirror_ops)
            d->mirror_ops->close(d->mirror);
        pthread_mutex_destroy(&d->lock);
        free(d);
        m->dev_errno = rc;
        switch (rc) {
        case -ENOSPC: m->reason = TLSNIC_SW_REASON_TABLE_FULL; break;
        case -EOPNOTSUPP: m->reason = TLSNIC_SW_REASON_CIPHER_NOT_OFFLOADED; break;
        case -ENODEV: m->reason = TLSNIC_SW_REASON_DEVICE_GONE; break;
        case -ENOENT:
        case -ECONNREFUSED: m->reason = TLSNIC_SW_REASON_DEVICE_UNREACHABLE; break;
        default: m->reason = TLSNIC_SW_REASON_DEVICE_REFUSED; break;
        }
        return 0;
    }
    registry_add(d);
    s->tx.dev = d;
    m->mode = TLSNIC_MODE_DEVICE;
    m->reason = TLSNIC_SW_REASON_NONE;
    m->dev_errno = 0;
    return 0;
}

/* Drops the records the peer has acknowledged. Call with the TX lock held. */
void tlsnic_dev_tx_reclaim(struct tlsnic_sock *s, int fd)
{
    struct tlsnic_dev_tx *d = s->tx.dev;
    int outq = 0;
    if (!d)
        return;
    d->framed_since_reclaim = 0;
    if (d->count == 0 || tlsnic_sys.ioctl(fd, SIOCOUTQ, &outq) < 0 || outq < 0)
        return;
    uint64_t acked = d->sent_pos - (uint64_t)outq;
    pthread_mutex_lock(&d->lock);
    while (d->count > 0 && ring_at(d, 0)->pos + ring_at(d, 0)->len <= acked)
        ring_pop(d);
    pthread_mutex_unlock(&d->lock);
    if (d->mirror_ops)
        d->mirror_ops->release(d->mirror, seq_of(d, acked));
}

static void put_be64(uint8_t *p, uint64_t v);

void tlsnic_dev_tx_sent(struct tlsnic_sock *s, size_t n)
{
    if (s->tx.dev)
        s->tx.dev->sent_pos += n;
}

static void put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

#define MIRROR_FULL_WAIT_NS 5000000000ll
#define MIRROR_NAP_MIN_NS 50000   /* ACKs come back within a round trip: look again soon, */
#define MIRROR_NAP_MAX_NS 1000000 /* then less often for a peer that is slow to ACK */

/*
 * A full device-readable store holds only records the peer has not acknowledged yet (or
 * acknowledged since the last look: records are released every RECLAIM_EVERY): look at
 * the ACKs at once, then wait for more (bounded) rather than send a record the device
 * could not resync from. rc is the store's answer; 1: try again, else what to return.
 */
static int mirror_wait(struct tlsnic_sock *s, int fd, int64_t *waited_ns, int rc)
{
    if (rc != -ENOSPC)
        return rc;
    if (*waited_ns >= MIRROR_FULL_WAIT_NS)
        return -ENOBUFS;
    if (*waited_ns > 0 || s->tx.dev->framed_since_reclaim == 0) {
        int64_t nap_ns = *waited_ns < MIRROR_NAP_MIN_NS ? MIRROR_NAP_MIN_NS : *waited_ns;
        if (nap_ns > MIRROR_NAP_MAX_NS)
            nap_ns = MIRROR_NAP_MAX_NS;
        struct timespec nap = {.tv_sec = 0, .tv_nsec = (long)nap_ns};
        nanosleep(&nap, NULL);
        *waited_ns += nap_ns;
    } else {
        *waited_ns = 1; /* the next full store is a real one: nap from then on */
    }
    tlsnic_dev_tx_reclaim(s, fd);
    return 1; /* try again */
}

static int mirror_reserve(struct tlsnic_sock *s, int fd, uint32_t len, uint8_t **room)
{
    struct tlsnic_dev_tx *d = s->tx.dev;
    for (int64_t waited_ns = 0;;) {
        int rc = mirror_wait(s, fd, &waited_ns, d->mirror_ops->reserve(d->mirror, len, room));
        if (rc <= 0)
            return rc;
    }
}

static int mirror_put(struct tlsnic_sock *s, int fd, const uint8_t *rec, uint32_t len)
{
    struct tlsnic_dev_tx *d = s->tx.dev;
    for (int64_t waited_ns = 0;;) {
        int rc = d->mirror_ops->put(d->mirror, seq_of(d, d->write_pos), d->next_seq, rec, len);
        rc = mirror_wait(s, fd, &waited_ns, rc);
        if (rc <= 0)
            return rc;
    }
}

/* The flags the device raised for the flow: from the store if the device writes them there
 * (a load), else asked (flow_flags). 0, or a negative errno (then nothing is known). */
static int device_flags(const struct tlsnic_dev_tx *d, uint32_t *flags)
{
    if (d->mirror_ops && d->mirror_ops->device_flags) {
        uint32_t published = d->mirror_ops->device_flags(d->mirror);
        if (published & TLSNIC_FLOW_F_LIVE) {
            *flags = published & ~TLSNIC_FLOW_F_LIVE;
            return 0;
        }
    }
    if (!d->dev->ops->flow_flags)
        return -EOPNOTSUPP;
    return d->dev->ops->flow_flags(d->dev, &d->flow, TLSNIC_DIR_TX, flags);
}

static int mirror_can_reserve(const struct tlsnic_dev_tx *d)
{
    return d->mirror_ops && d->mirror_ops->reserve && d->mirror_ops->commit;
}

/*
 * Frames a record for the device: the content is at `content`, or, if NULL, already in
 * the open record (tx->buf + hdr_room). The record is framed in the store's room when the
 * store can reserve (*out then points there and stays valid until the peer acknowledges
 * the record), else in tx->buf; a copy is retained for the device. 0, or a negative errno.
 */
int tlsnic_dev_tx_frame(struct tlsnic_sock *s, int fd, uint8_t type, const uint8_t *content,
                        size_t n, uint8_t **out, size_t *out_len)
{
    struct tlsnic_tx *tx = &s->tx;
    struct tlsnic_dev_tx *d = tx->dev;
    uint32_t flags = 0;
    if (atomic_load(&d->lost)) {
        shutdown(fd, SHUT_RDWR);
        return -ECONNABORTED;
    }
    if (device_flags(d, &flags) == 0 && (flags & (TLSNIC_FLOW_F_INTEGRITY | TLSNIC_FLOW_F_GONE))) {
        shutdown(fd, SHUT_RDWR);
        return -ECONNABORTED;
    }
    TLSNIC_ENSURE(n <= TLSNIC_REC_MAX_PLAINTEXT, EMSGSIZE);
    TLSNIC_ENSURE(d->next_seq != UINT64_MAX, EOVERFLOW);
    if (++d->framed_since_reclaim >= RECLAIM_EVERY)
        tlsnic_dev_tx_reclaim(s, fd);

    int tls13 = d->version == TLS_1_3_VERSION;
    size_t body = n + (tls13 ? 1 : 0);
    size_t len = TLSNIC_REC_HDR_LEN + d->nonce_len + body + TLSNIC_REC_TAG_LEN;
    uint8_t *retained_copy = NULL;
    if (!d->mirror_ops) {
        retained_copy = malloc(len); /* the in-process device reads tlsnic's own copy */
        if (!retained_copy)
            return -ENOMEM;
    }
    pthread_mutex_lock(&d->lock);
    int rc = ring_reserve(d);
    pthread_mutex_unlock(&d->lock);
    if (rc < 0) {
        free(retained_copy);
        return rc;
    }
    if (!content)
        content = tx->buf + TLSNIC_REC_HDR_LEN + d->nonce_len;
    uint8_t *b = tx->buf;
    if (mirror_can_reserve(d))
        TLSNIC_TRY(mirror_reserve(s, fd, (uint32_t)len, &b));
    b[0] = tls13 ? TLSNIC_CT_APPLICATION_DATA : type;
    b[1] = 3;
    b[2] = 3;
    b[3] = (uint8_t)((len - TLSNIC_REC_HDR_LEN) >> 8);
    b[4] = (uint8_t)(len - TLSNIC_REC_HDR_LEN);
    if (d->nonce_len)
        put_be64(b + TLSNIC_REC_HDR_LEN, d->initial_explicit + (d->next_seq - d->initial_seq));
    uint8_t *c = b + TLSNIC_REC_HDR_LEN + d->nonce_len;
    if (content != c)
        memcpy(c, content, n);
    if (tls13)
        c[n] = type;
    memset(c + body, 0, TLSNIC_REC_TAG_LEN);

    if (mirror_can_reserve(d))
        d->mirror_ops->commit(d->mirror, seq_of(d, d->write_pos), d->next_seq, (uint32_t)len);
    else if (d->mirror_ops)
        TLSNIC_TRY(mirror_put(s, fd, b, (uint32_t)len));
    else
        memcpy(retained_copy, b, len);
    pthread_mutex_lock(&d->lock);
    d->count++;
    *ring_at(d, d->count - 1) = (struct retained){
        .pos = d->write_pos, .rec_seq = d->next_seq, .len = (uint32_t)len, .bytes = retained_copy};
    d->bytes += len;
    d->write_pos += len;
    d->next_seq++;
    pthread_mutex_unlock(&d->lock);
    *out = b;
    *out_len = len;
    return 0;
}

/* getsockopt(TLS_TX) in device mode: the sequence numbers are the ones tlsnic framed. */
static void set_seq(const struct tlsnic_dev_tx *d, union tlsnic_crypto_info *ci, uint64_t seq)
{
    uint8_t *rs = ci->info.cipher_type == TLS_CIPHER_AES_GCM_128   ? ci->aes_gcm_128.rec_seq
                  : ci->info.cipher_type == TLS_CIPHER_AES_GCM_256 ? ci->aes_gcm_256.rec_seq
                                                                   : ci->chacha20_poly1305.rec_seq;
    put_be64(rs, seq);
    if (ci->info.cipher_type == TLS_CIPHER_AES_GCM_128 && d->nonce_len)
        put_be64(ci->aes_gcm_128.iv, d->initial_explicit + (seq - d->initial_seq));
    else if (ci->info.cipher_type == TLS_CIPHER_AES_GCM_256 && d->nonce_len)
        put_be64(ci->aes_gcm_256.iv, d->initial_explicit + (seq - d->initial_seq));
}

void tlsnic_dev_tx_patch_info(const struct tlsnic_sock *s, union tlsnic_crypto_info *ci)
{
    set_seq(s->tx.dev, ci, s->tx.dev->next_seq);
}

/* One context again, from its first unacknowledged record (or the next one, if none). */
static int readd_one(struct tlsnic_dev_tx *d)
{
    union tlsnic_crypto_info ci;
    int len = tlsnic_rec_key_export(d->key, &ci, sizeof(ci));
    if (len < 0)
        return len;
    /* Records are released in batches: skip the ones the peer has acknowledged already. */
    uint64_t acked = 0;
    int have_acked = tlsnic_tcp_bytes_acked(d->fd, tlsnic_sys.getsockopt, &acked) == 0;
    pthread_mutex_lock(&d->lock);
    size_t first = 0;
    while (have_acked && first < d->count &&
           ring_at(d, first)->pos + ring_at(d, first)->len <= acked)
        first++;
    uint64_t pos = first < d->count ? ring_at(d, first)->pos : d->write_pos;
    uint64_t rec_seq = first < d->count ? ring_at(d, first)->rec_seq : d->next_seq;
    pthread_mutex_unlock(&d->lock);
    set_seq(d, &ci, rec_seq);
    const struct tlsnic_rec_store *store =
        d->mirror_ops ? d->mirror_ops->view(d->mirror) : &d->store;
    int rc = d->dev->ops->add(d->dev, d->fd, &d->flow, TLSNIC_DIR_TX, &ci, (size_t)len,
                              seq_of(d, pos), store);
    OPENSSL_cleanse(&ci, sizeof(ci));
    return rc;
}

int tlsnic_device_readd(struct tlsnic_dev *dev)
{
    int added = 0, first_err = 0;
    int rx = tlsnic_dev_rx_readd(dev); /* RX first: a reader waits on nothing of ours */
    if (rx > 0)
        added += rx;
    else if (rx < 0)
        first_err = rx;
    pthread_mutex_lock(&registry_lock);
    for (struct tlsnic_dev_tx *d = registry; d; d = d->reg_next) {
        if (d->dev != dev)
            continue;
        int rc = readd_one(d);
        if (rc < 0 && first_err == 0)
            first_err = rc;
        /* Refused (not merely gone again): the records framed for the device can never be
           sent encrypted; the connection is aborted at its next send, as for F_GONE. */
        if (rc < 0 && rc != -ENODEV && rc != -ETIMEDOUT)
            atomic_store(&d->lost, 1);
        if (rc == 0) {
            added++;
            tlsnic_stat_add(TLSNIC_STAT_TX_DEVICE_READD, 1);
        }
    }
    pthread_mutex_unlock(&registry_lock);
    return first_err < 0 ? first_err : added;
}

/*
 * Close in device mode, before the del: the device encrypts only flows it holds, so bytes
 * the kernel still has unacknowledged would leave (or be retransmitted) after the del with
 * their records in the clear (invariant 1). The kernel keeps a device context until the
 * socket is destroyed; tlsnic cannot follow the socket past close(2), so it waits, bounded,
 * until the peer has acknowledged everything (SIOCOUTQ 0), releasing records as ACKs come.
 * A peer that does not acknowledge in time gets a reset instead (SO_LINGER 0): the kernel
 * then sends nothing more of the connection, encrypted or not. Call with the TX lock held.
 * 0, or -ETIMEDOUT (reset armed).
 */
int tlsnic_dev_tx_linger(struct tlsnic_sock *s, int fd, int timeout_ms)
{
    if (!s->tx.dev)
        return 0;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        int outq = 0;
        if (tlsnic_sys.ioctl(fd, SIOCOUTQ, &outq) < 0 || outq <= 0)
            return 0; /* not a connection any more, or nothing left unacknowledged */
        tlsnic_dev_tx_reclaim(s, fd);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        long spent = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
        if (spent >= timeout_ms)
            break;
        struct timespec tick = {.tv_nsec = LINGER_TICK_NS};
        nanosleep(&tick, NULL);
    }
    struct linger reset = {.l_onoff = 1, .l_linger = 0};
    (void)tlsnic_sys.setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, sizeof(reset));
    return -ETIMEDOUT;
}

void tlsnic_dev_tx_free(struct tlsnic_sock *s)
{
    struct tlsnic_dev_tx *d = s->tx.dev;
    if (!d)
        return;
    registry_remove(d); /* first: a re-add must not resurrect what is being deleted */
    d->dev->ops->del(d->dev, d->fd, &d->flow, TLSNIC_DIR_TX);
    if (d->mirror_ops)
        d->mirror_ops->close(d->mirror);
    while (d->count > 0)
        ring_pop(d);
    free(d->ring);
    pthread_mutex_destroy(&d->lock);
    free(d);
    s->tx.dev = NULL;
}

int tlsnic_tx_retained(int fd, size_t *bytes, size_t *records)
{
    struct tlsnic_sock *s = tlsnic_sock_get(fd);
    if (!s)
        return tlsnic_errno_ret(-EBADF);
    pthread_mutex_lock(&s->tx.lock);
    struct tlsnic_dev_tx *d = s->tx.dev;
    if (d) {
        tlsnic_dev_tx_reclaim(s, fd);
        pthread_mutex_lock(&d->lock);
        if (bytes)
            *bytes = d->bytes;
        if (records)
            *records = d->count;
        pthread_mutex_unlock(&d->lock);
    }
    pthread_mutex_unlock(&s->tx.lock);
    return d ? 0 : tlsnic_errno_ret(-EINVAL);
}
