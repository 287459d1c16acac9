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


/* How a device-mode TX direction ended, which says what becomes of its store. */
enum dev_end {
    END_NONE = 0,     /* not yet */
    END_RELEASED,     /* the device took the flow over: the store is its until it lets go */
    END_DELETED,      /* del answered 0: the device no longer reads the store */
    END_UNSURE,       /* del failed or was deferred, the device away: it may still read it */
    END_FORGOTTEN,    /* a forked child's copy: nothing of it is ours to end */
};

/* One record the host retains until the peer has acknowledged it. */
struct retained {
    uint64_t pos;     /* stream position (bytes since the ISN) of the first byte */
    uint64_t rec_seq;
    uint32_t len;
    uint8_t *bytes;   /* the record as framed for the device (owned), or NULL when the
                         device reads the records from the shared store (mirror) */
};

/* Where positions start: above any number of bytes the kernel can hold for the socket at
 * TLS_TX (so sent_pos - SIOCOUTQ never goes below 0). Only differences of positions mean
 * anything. */
#define POS_BASE (1ull << 40)

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
    /* A store the device can map (the socket's offload binding), or NULL: then `store`. */
    const struct tlsnic_dev_store_ops *mirror_ops;
    void *mirror;
    struct tlsnic_dev_tx *reg_prev, *reg_next; /* every context, for tlsnic_device_readd */
    atomic_int lost; /* a re-add was refused: the device will never encrypt this flow again */
    int ended;       /* enum dev_end: how the flow ended for this process (close) */
    int no_release;  /* the device refused a release: wait for the ACKs and del instead */
    pthread_mutex_t lock; /* the ring, write_pos, next_seq: read by the device's thread
                             and by tlsnic_device_readd */
    /* Retained records in stream order: a ring of ring_cap (a power of two) descriptors,
     * [ring_head, ring_head + count). Grows by doubling; no allocation per record. */
    struct retained *ring;
    size_t ring_cap, ring_head;
    size_t bytes, count;
    unsigned framed_since_reclaim;
    /* Stream positions count the bytes tlsnic wrote since TLS_TX from POS_BASE: no
     * position is ever read from the socket, so none can be torn by an ACK that arrives
     * between two system calls (see acked_pos). */
    uint64_t start_pos;   /* POS_BASE: the position at TLS_TX ... */
    uint32_t start_seq;   /* ... and its TCP sequence number (write_seq, one read) */
    uint64_t write_pos;   /* position of the next record */
    uint64_t sent_pos;    /* position after the last byte handed to the kernel: written
                             under the TX lock, read atomically without it by readd */
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

/* A forked child has one thread: a lock another thread held at the fork is free there.
 * And it starts with no context to re-add: those it inherited are its parent's (a child
 * that re-added them after a daemon restart would take the flows over; tlsnic_dev_tx_forget
 * then finds them unlinked). */
static void registry_reinit_in_child(void)
{
    pthread_mutex_init(&registry_lock, NULL);
    for (struct tlsnic_dev_tx *d = registry, *next; d; d = next) {
        next = d->reg_next;
        d->reg_prev = d->reg_next = NULL;
    }
    registry = NULL;
}

static pthread_once_t registry_once = PTHREAD_ONCE_INIT;

static void registry_init(void)
{
    (void)pthread_atfork(NULL, NULL, registry_reinit_in_child);
}

static void registry_add(struct tlsnic_dev_tx *d)
{
    pthread_once(&registry_once, registry_init);
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

/* Approximately the bytes the socket has taken since its ISN (acknowledged + queued): two
 * reads that an ACK may fall between. For counters only (the bytes sent before TLS_TX). */
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

int tlsnic_dev_tx_offer(struct tlsnic_sock *s, int fd, struct tlsnic_mode_info *m)
{
    struct tlsnic_dev *dev = s->offload.dev;
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
    int rc = len < 0 ? len : 0;
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
    d->start_pos = d->sent_pos = d->write_pos = POS_BASE;
    d->version = ci.info.version;
    d->nonce_len = tlsnic_rec_key_explicit_nonce_len(s->tx.key);
    d->key = s->tx.key;
    load_seq(&ci, &d->initial_seq, &d->initial_explicit);
    d->next_seq = d->initial_seq;
    pthread_mutex_init(&d->lock, NULL);
    const struct tlsnic_rec_store *store = &d->store;
    d->mirror_ops = s->offload.store_ops;
    if (d->mirror_ops) {
        rc = d->mirror_ops->open(s->offload.store_ctx, &d->mirror);
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

/*
 * The position up to which the peer has acknowledged, or less (never more): the socket's
 * unacknowledged bytes (SIOCOUTQ: write_seq - snd_una, one read) counted back from the
 * bytes tlsnic had written before that read. sent_pos is read first: bytes a sender
 * thread writes in between are in SIOCOUTQ but not in sent_pos, so they can only make the
 * answer smaller (release later, re-add from an earlier record), never past a byte the
 * peer has not acknowledged. 0 and *acked, or -errno.
 */
static int acked_pos(const struct tlsnic_dev_tx *d, int fd, uint64_t *acked)
{
    uint64_t sent = __atomic_load_n(&d->sent_pos, __ATOMIC_ACQUIRE);
    int outq = 0;
    if (tlsnic_sys.ioctl(fd, SIOCOUTQ, &outq) < 0)
        return -errno;
    if (outq < 0 || (uint64_t)outq > sent - d->start_pos)
        outq = (int)(sent - d->start_pos); /* bytes from before TLS_TX: none of ours acked */
    *acked = sent - (uint64_t)outq;
    return 0;
}

/* Drops the records the peer has acknowledged. Call with the TX lock held. */
void tlsnic_dev_tx_reclaim(struct tlsnic_sock *s, int fd)
{
    struct tlsnic_dev_tx *d = s->tx.dev;
    uint64_t acked;
    if (!d)
        return;
    d->framed_since_reclaim = 0;
    if (d->count == 0 || acked_pos(d, fd, &acked) < 0)
        return;
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
    struct tlsnic_dev_tx *d = s->tx.dev;
    if (d) /* one writer (the TX lock); tlsnic_device_readd reads it without that lock */
        __atomic_store_n(&d->sent_pos, d->sent_pos + n, __ATOMIC_RELEASE);
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
    /* The record with sequence number 2^64-1 is never framed: the kernel aborts the socket
     * (EBADMSG) when its counter would wrap, before that record leaves (tx.c). */
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
    /* Only a thread holding the TX lock (this one) changes the ring: while it has room,
     * nothing changes and the lock that readers take is not needed (it was a second lock
     * pair per record). Growing it replaces d->ring: readers must not see that half done. */
    int rc = 0;
    if (d->count == d->ring_cap) {
        pthread_mutex_lock(&d->lock);
        rc = ring_reserve(d);
        pthread_mutex_unlock(&d->lock);
    }
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
        TLSNIC_TRY(d->mirror_ops->commit(d->mirror, seq_of(d, d->write_pos), d->next_seq,
                                         (uint32_t)len));
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
    /* Records are released in batches: skip the ones the peer has acknowledged already
     * (acked_pos may say less than the peer has: then the context starts at an earlier
     * record, still retained, never past one the peer still waits for). */
    uint64_t acked = 0;
    int have_acked = acked_pos(d, d->fd, &acked) == 0;
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
 * Resets the connection now: a RST, and nothing more of it leaves, encrypted or not.
 * connect(AF_UNSPEC) is the kernel's tcp_disconnect(); unlike SO_LINGER 0 it does not wait
 * for the last descriptor (a forked child's copy may hold the socket open).
 */
static void reset_connection(int fd)
{
    struct sockaddr sa = {.sa_family = AF_UNSPEC};
    (void)connect(fd, &sa, sizeof(sa));
}

/* The bytes (and FIN) fd has not had acknowledged; 0 once it can send nothing more (not a
 * connection any more, or closed: reset, both FINs done). */
int tlsnic_sock_unacked_bytes(int fd)
{
    struct tcp_info ti;
    socklen_t len = sizeof(ti);
    memset(&ti, 0, sizeof(ti));
    if (tlsnic_sys.getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0 || ti.tcpi_state == TCP_CLOSE)
        return 0;
    int outq = 0;
    return tlsnic_sys.ioctl(fd, SIOCOUTQ, &outq) < 0 || outq < 0 ? 0 : outq;
}

/*
 * The application closed its last descriptor of a device-mode socket (closer.c): one step
 * of the device's end of the flow, without waiting. Call with the TX lock held, after the
 * sealed records are all in the socket (or given up: then flags has TLSNIC_RELEASE_ABORT).
 *
 * The device encrypts only flows it holds, so the context must live as long as the socket
 * can send (the kernel keeps its tls_device context until the socket is destroyed). A
 * device that can take the flow over (release: tlsnicd holds the socket) does so: one
 * request, and close(2) returns. Otherwise (an in-process device, or a daemon that refused)
 * the context stays until the peer has acknowledged every byte (SIOCOUTQ 0), then del; past
 * the budget (final), or at once with TLSNIC_RELEASE_ABORT, the connection is reset first. A device that is away (-ENODEV: a
 * restarting tlsnicd) is asked again at the next step, the context still registered so
 * that the re-add covers it; at the last step the connection is reset instead.
 * 0 when done, 1 to be called again later.
 */
int tlsnic_dev_tx_close_step(struct tlsnic_sock *s, int fd, unsigned flags, int final)
{
    struct tlsnic_dev_tx *d = s->tx.dev;
    if (!d || d->ended != END_NONE)
        return 0;
    if (d->dev->ops->release && !d->no_release) {
        int rc = d->dev->ops->release(d->dev, fd, &d->flow, TLSNIC_DIR_TX, flags);
        if (rc == 0) {
            d->ended = END_RELEASED;
            return 0;
        }
        if (rc == -ENODEV || rc == -ETIMEDOUT) {
            if (!final)
                return 1;
            reset_connection(fd);
            d->ended = END_UNSURE;
            return 0;
        }
        d->no_release = 1; /* e.g. a daemon that predates RELEASE */
    }
    tlsnic_dev_tx_reclaim(s, fd);
    int outq = tlsnic_sock_unacked_bytes(fd);
    if (outq > 0 && (flags & TLSNIC_RELEASE_ABORT)) {
        reset_connection(fd); /* as close(2) resets: at once, nothing more leaves */
        outq = 0;
    }
    if (outq > 0 && !final)
        return 1;
    if (outq > 0)
        reset_connection(fd); /* a peer that does not acknowledge in time */
    int rc = d->dev->ops->del(d->dev, fd, &d->flow, TLSNIC_DIR_TX);
    d->ended = rc == 0 ? END_DELETED : END_UNSURE;
    return 0;
}

/* The socket's descriptor for the device's requests (a re-add while it closes). */
void tlsnic_dev_tx_set_fd(struct tlsnic_sock *s, int fd)
{
    struct tlsnic_dev_tx *d = s->tx.dev;
    if (!d)
        return;
    pthread_mutex_lock(&registry_lock); /* what tlsnic_device_readd reads it under */
    d->fd = fd;
    pthread_mutex_unlock(&registry_lock);
}

/*
 * A forked child's copy of the parent's device-mode direction: the parent still sends on
 * the socket, the device still reads its store. Only this process's memory is freed; no
 * lock is taken (a thread of the parent may have held one at the fork).
 */
void tlsnic_dev_tx_forget(struct tlsnic_sock *s)
{
    struct tlsnic_dev_tx *d = s->tx.dev;
    if (!d)
        return;
    if (d->reg_prev)
        d->reg_prev->reg_next = d->reg_next;
    else if (registry == d)
        registry = d->reg_next;
    if (d->reg_next)
        d->reg_next->reg_prev = d->reg_prev;
    if (d->mirror_ops && d->mirror_ops->forget)
        d->mirror_ops->forget(d->mirror);
    while (d->count > 0)
        ring_pop(d);
    free(d->ring);
    free(d);
    s->tx.dev = NULL;
}

void tlsnic_dev_tx_free(struct tlsnic_sock *s)
{
    struct tlsnic_dev_tx *d = s->tx.dev;
    if (!d)
        return;
    registry_remove(d); /* first: a re-add must not resurrect what is being deleted */
    if (d->ended == END_NONE) { /* no close step: the descriptor was closed outside tlsnic */
        int rc = d->dev->ops->del(d->dev, d->fd, &d->flow, TLSNIC_DIR_TX);
        d->ended = rc == 0 ? END_DELETED : END_UNSURE;
    }
    /* A store the device may still read is retired, never wiped or reused under it. */
    if (d->mirror_ops && d->ended != END_DELETED && d->mirror_ops->retire)
        d->mirror_ops->retire(d->mirror);
    else if (d->mirror_ops)
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
        tlsnic_dev_tx_reclaim(s, s->kfd);
        pthread_mutex_lock(&d->lock);
        if (bytes)
            *bytes = d->bytes;
        if (records)
            *records = d->count;
        pthread_mutex_unlock(&d->lock);
    }
    pthread_mutex_unlock(&s->tx.lock);
    tlsnic_sock_put(s);
    return d ? 0 : tlsnic_errno_ret(-EINVAL);
}
