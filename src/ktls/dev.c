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

#include "ktls_int.h"
#include "tcpinfo.h"

struct retained {
    struct retained *next;
    uint64_t pos;     /* stream position (bytes since the ISN) of the first byte */
    uint64_t rec_seq;
    uint32_t len;
    uint8_t bytes[];  /* the record as framed for the device */
};

struct tlsnic_dev_tx {
    struct tlsnic_dev *dev;
    int fd;
    struct tlsnic_flow flow;
    struct tlsnic_rec_store store;
    pthread_mutex_t lock; /* the list: the device may read it from its own thread */
    struct retained *head, *tail;
    size_t bytes, count;
    uint64_t start_pos;   /* stream position at TLS_TX ... */
    uint32_t start_seq;   /* ... and its TCP sequence number */
    uint64_t write_pos;   /* position of the next record */
    uint64_t sent_pos;    /* position after the last byte handed to the kernel */
    uint64_t next_seq;    /* record sequence number of the next record */
    uint64_t initial_seq, initial_explicit;
    size_t nonce_len;
    uint16_t version;
};

/* TCP sequence number of stream position pos. */
static uint32_t seq_of(const struct tlsnic_dev_tx *d, uint64_t pos)
{
    return d->start_seq + (uint32_t)(pos - d->start_pos);
}

static int store_get_record(void *priv, uint32_t tcp_seq, struct tlsnic_rec_ref *out)
{
    struct tlsnic_dev_tx *d = priv;
    int rc = -ENOENT;
    pthread_mutex_lock(&d->lock);
    for (struct retained *r = d->head; r; r = r->next) {
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

static int flow_of(int fd, struct tlsnic_flow *f)
{
    struct sockaddr_storage l, r;
    socklen_t ll = sizeof(l), rl = sizeof(r);
    memset(f, 0, sizeof(*f));
    if (getsockname(fd, (struct sockaddr *)&l, &ll) < 0 ||
        getpeername(fd, (struct sockaddr *)&r, &rl) < 0 || l.ss_family != r.ss_family)
        return -ENOTCONN;
    f->family = (uint8_t)l.ss_family;
    if (l.ss_family == AF_INET) {
        const struct sockaddr_in *a = (const void *)&l, *b = (const void *)&r;
        memcpy(f->local, &a->sin_addr, 4);
        memcpy(f->remote, &b->sin_addr, 4);
        f->local_port = ntohs(a->sin_port);
        f->remote_port = ntohs(b->sin_port);
        return 0;
    }
    if (l.ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const void *)&l, *b = (const void *)&r;
        memcpy(f->local, &a->sin6_addr, 16);
        memcpy(f->remote, &b->sin6_addr, 16);
        f->local_port = ntohs(a->sin6_port);
        f->remote_port = ntohs(b->sin6_port);
        return 0;
    }
    return -EAFNOSUPPORT;
}

/* Stream position of the next byte the socket will take: snd_una - ISN + queued bytes. */
static int stream_pos_now(int fd, uint64_t *pos)
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
    if (flow_of(fd, &flow) < 0) {
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
    int rc = len < 0 ? len : stream_pos_now(fd, &d->write_pos);
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
    load_seq(&ci, &d->initial_seq, &d->initial_explicit);
    d->next_seq = d->initial_seq;
    pthread_mutex_init(&d->lock, NULL);
    rc = dev->ops->add(dev, fd, &flow, TLSNIC_DIR_TX, &ci, (size_t)len, d->start_seq, &d->store);
    OPENSSL_cleanse(&ci, sizeof(ci));
    if (rc < 0) {
        pthread_mutex_destroy(&d->lock);
        free(d);
        m->dev_errno = rc;
        switch (rc) {
        case -ENOSPC: m->reason = TLSNIC_SW_REASON_TABLE_FULL; break;
        case -EOPNOTSUPP: m->reason = TLSNIC_SW_REASON_CIPHER_NOT_OFFLOADED; break;
        case -ENODEV: m->reason = TLSNIC_SW_REASON_DEVICE_GONE; break;
        default: m->reason = TLSNIC_SW_REASON_DEVICE_REFUSED; break;
        }
        return 0;
    }
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
    if (!d || !d->head || tlsnic_sys.ioctl(fd, SIOCOUTQ, &outq) < 0 || outq < 0)
        return;
    uint64_t acked = d->sent_pos - (uint64_t)outq;
    pthread_mutex_lock(&d->lock);
    while (d->head && d->head->pos + d->head->len <= acked) {
        struct retained *r = d->head;
        d->head = r->next;
        if (!d->head)
            d->tail = NULL;
        d->bytes -= r->len;
        d->count--;
        OPENSSL_cleanse(r->bytes, r->len);
        free(r);
    }
    pthread_mutex_unlock(&d->lock);
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

/*
 * Frames the open record (content at buf + hdr_room, or at `content` if not NULL) for the
 * device, retains a copy and leaves it in buf for writing. 0, or a negative errno.
 */
int tlsnic_dev_tx_frame(struct tlsnic_sock *s, int fd, uint8_t type, const uint8_t *content,
                        size_t n, size_t *out_len)
{
    struct tlsnic_tx *tx = &s->tx;
    struct tlsnic_dev_tx *d = tx->dev;
    uint32_t flags = 0;
    if (d->dev->ops->flow_flags &&
        d->dev->ops->flow_flags(d->dev, &d->flow, TLSNIC_DIR_TX, &flags) == 0 &&
        (flags & (TLSNIC_FLOW_F_INTEGRITY | TLSNIC_FLOW_F_GONE))) {
        shutdown(fd, SHUT_RDWR);
        return -ECONNABORTED;
    }
    TLSNIC_ENSURE(n <= TLSNIC_REC_MAX_PLAINTEXT, EMSGSIZE);
    TLSNIC_ENSURE(d->next_seq != UINT64_MAX, EOVERFLOW);
    tlsnic_dev_tx_reclaim(s, fd);

    int tls13 = d->version == TLS_1_3_VERSION;
    size_t body = n + (tls13 ? 1 : 0);
    size_t len = TLSNIC_REC_HDR_LEN + d->nonce_len + body + TLSNIC_REC_TAG_LEN;
    uint8_t *b = tx->buf;
    b[0] = tls13 ? TLSNIC_CT_APPLICATION_DATA : type;
    b[1] = 3;
    b[2] = 3;
    b[3] = (uint8_t)((len - TLSNIC_REC_HDR_LEN) >> 8);
    b[4] = (uint8_t)(len - TLSNIC_REC_HDR_LEN);
    if (d->nonce_len)
        put_be64(b + TLSNIC_REC_HDR_LEN, d->initial_explicit + (d->next_seq - d->initial_seq));
    uint8_t *c = b + TLSNIC_REC_HDR_LEN + d->nonce_len;
    if (content && content != c)
        memcpy(c, content, n);
    if (tls13)
        c[n] = type;
    memset(c + body, 0, TLSNIC_REC_TAG_LEN);

    struct retained *r = malloc(sizeof(*r) + len);
    if (!r)
        return -ENOMEM;
    r->next = NULL;
    r->pos = d->write_pos;
    r->rec_seq = d->next_seq;
    r->len = (uint32_t)len;
    memcpy(r->bytes, b, len);
    pthread_mutex_lock(&d->lock);
    if (d->tail)
        d->tail->next = r;
    else
        d->head = r;
    d->tail = r;
    d->bytes += len;
    d->count++;
    pthread_mutex_unlock(&d->lock);
    d->write_pos += len;
    d->next_seq++;
    *out_len = len;
    return 0;
}

/* getsockopt(TLS_TX) in device mode: the sequence numbers are the ones tlsnic framed. */
void tlsnic_dev_tx_patch_info(const struct tlsnic_sock *s, union tlsnic_crypto_info *ci)
{
    const struct tlsnic_dev_tx *d = s->tx.dev;
    uint8_t *rs = ci->info.cipher_type == TLS_CIPHER_AES_GCM_128   ? ci->aes_gcm_128.rec_seq
                  : ci->info.cipher_type == TLS_CIPHER_AES_GCM_256 ? ci->aes_gcm_256.rec_seq
                                                                   : ci->chacha20_poly1305.rec_seq;
    put_be64(rs, d->next_seq);
    if (ci->info.cipher_type == TLS_CIPHER_AES_GCM_128 && d->nonce_len)
        put_be64(ci->aes_gcm_128.iv, d->initial_explicit + (d->next_seq - d->initial_seq));
    else if (ci->info.cipher_type == TLS_CIPHER_AES_GCM_256 && d->nonce_len)
        put_be64(ci->aes_gcm_256.iv, d->initial_explicit + (d->next_seq - d->initial_seq));
}

void tlsnic_dev_tx_free(struct tlsnic_sock *s)
{
    struct tlsnic_dev_tx *d = s->tx.dev;
    if (!d)
        return;
    d->dev->ops->del(d->dev, d->fd, &d->flow, TLSNIC_DIR_TX);
    for (struct retained *r = d->head; r;) {
        struct retained *next = r->next;
        OPENSSL_cleanse(r->bytes, r->len);
        free(r);
        r = next;
    }
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
