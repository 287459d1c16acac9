/*
 * tlsnic socket layer, TX: plaintext in, records out (net/tls/tls_sw.c's sendmsg side).
 *
 * One record buffer per socket. Content accumulates in place after the header (and the
 * explicit nonce for TLS 1.2 AES-GCM), is sealed in place, and the record is written to the
 * TCP socket. If the socket takes only part of it (non-blocking, SO_SNDTIMEO, signal), the
 * rest stays pending and is written before anything else; nothing new is framed while a
 * record is pending, so user space never holds more than one record.
 */
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>

#include "ktls_int.h"

/* Sockets with ciphertext pending in user space, so an event loop knows to flush. */
atomic_int tlsnic_tx_pending_sockets;

/* Call with the TX lock held. A socket that becomes pending is handed to push.c, which
 * writes the rest when the socket has room, as the kernel's write-space callback does. */
static void count_pending(struct tlsnic_sock *s)
{
    struct tlsnic_tx *tx = &s->tx;
    int p = tx->out_off < tx->out_len;
    if (p != atomic_load_explicit(&tx->pending, memory_order_relaxed)) {
        atomic_fetch_add(&tlsnic_tx_pending_sockets, p ? 1 : -1);
        atomic_store_explicit(&tx->pending, p, memory_order_relaxed);
        if (p && !atomic_load(&s->releasing))
            tlsnic_push_watch(s);
    }
}

void tlsnic_tx_forget_pending(struct tlsnic_sock *s)
{
    s->tx.out_off = s->tx.out_len = 0;
    count_pending(s);
}

/* Without the TX lock: a hint, confirmed under the lock by tlsnic_tx_flush_locked. */
int tlsnic_tx_has_pending(struct tlsnic_sock *s)
{
    return atomic_load_explicit(&s->tx.pending, memory_order_relaxed);
}

/* Writes the pending part of the sealed record. 0, -EAGAIN (still pending), -errno. */
int tlsnic_tx_flush_locked(struct tlsnic_sock *s, int fd, int flags)
{
    struct tlsnic_tx *tx = &s->tx;
    while (tx->out_off < tx->out_len) {
        struct iovec iov = {.iov_base = tx->out + tx->out_off, .iov_len = tx->out_len - tx->out_off};
        struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};
        int send_flags = flags & (MSG_DONTWAIT | MSG_NOSIGNAL);
        ssize_t n = tlsnic_sys.send ? tlsnic_sys.send(fd, iov.iov_base, iov.iov_len, send_flags)
                                    : tlsnic_sys.sendmsg(fd, &m, send_flags);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            int rc = errno == EWOULDBLOCK ? -EAGAIN : -errno;
            count_pending(s);
            return rc;
        }
        tx->out_off += (size_t)n;
        tlsnic_dev_tx_sent(s, (size_t)n);
    }
    tx->out_off = tx->out_len = 0;
    count_pending(s);
    return 0;
}

static void count_record(const struct tlsnic_tx *tx, size_t wire_len)
{
    tlsnic_stat_add(TLSNIC_STAT_TX_RECORDS, 1);
    if (tx->dev) {
        tlsnic_stat_add(TLSNIC_STAT_TX_DEVICE_RECORDS, 1);
        tlsnic_stat_add(TLSNIC_STAT_TX_DEVICE_BYTES, (int64_t)wire_len);
    } else {
        tlsnic_stat_add(TLSNIC_STAT_TX_SW_BYTES, (int64_t)wire_len);
    }
}

/*
 * A failure that ends the TX stream. The kernel seals the record with sequence number
 * 2^64-1, finds the counter wrapping (tls_advance_record_sn) and aborts the socket with
 * EBADMSG before the record leaves: that send and every later one fail with EBADMSG (seen
 * on Linux 6.12, the reference run). tlsnic refuses to seal that record at all (the record
 * layer's EOVERFLOW, or this check) and reports the kernel's errno.
 */
static int tx_fatal(int rc)
{
    return rc == -EOVERFLOW ? -EBADMSG : rc;
}

/* -EOVERFLOW when the next record would carry sequence number 2^64-1 (software mode; the
 * device path refuses it in dev.c). */
static int last_seq_check(const struct tlsnic_tx *tx)
{
    return !tx->dev && tlsnic_rec_key_next_seq(tx->key) == UINT64_MAX ? -EOVERFLOW : 0;
}

/* Seals the open record and writes it: 0, -EAGAIN (sealed, partly pending), -errno. */
int tlsnic_tx_push_locked(struct tlsnic_sock *s, int fd, int flags)
{
    struct tlsnic_tx *tx = &s->tx;
    size_t out_len = 0;
    if (!tx->open)
        return 0;
    uint8_t *out = tx->buf;
    int rc = last_seq_check(tx);
    if (rc == 0)
        rc = tx->dev ? tlsnic_dev_tx_frame(s, fd, tx->open_type, NULL, tx->open_len, &out, &out_len)
                     : tlsnic_rec_seal(tx->key, tx->open_type, tx->buf + tx->hdr_room,
                                       tx->open_len, tx->buf, TLSNIC_REC_MAX_WIRE_LEN, &out_len);
    tx->open = 0;
    tx->open_len = 0;
    if (rc < 0)
        return tx->err = tx_fatal(rc); /* nonce space exhausted, device abort: dead */
    count_record(tx, out_len);
    tx->out = out;
    tx->out_off = 0;
    tx->out_len = out_len;
    return tlsnic_tx_flush_locked(s, fd, flags);
}

/*
 * Fast path for a record that is complete in the caller's buffer: seal straight from it
 * into the record buffer (one pass over the bytes instead of a copy and then a pass); in
 * device mode, frame it straight into the record store's slot and send from there.
 */
static int seal_direct(struct tlsnic_sock *s, int fd, uint8_t type, const uint8_t *p, size_t n,
                       int flags)
{
    struct tlsnic_tx *tx = &s->tx;
    size_t out_len = 0;
    uint8_t *out = tx->buf;
    int rc = last_seq_check(tx);
    if (rc == 0)
        rc = tx->dev ? tlsnic_dev_tx_frame(s, fd, type, p, n, &out, &out_len)
                     : tlsnic_rec_seal(tx->key, type, p, n, tx->buf, TLSNIC_REC_MAX_WIRE_LEN,
                                       &out_len);
    if (rc < 0)
        return tx->err = tx_fatal(rc);
    count_record(tx, out_len);
    tx->out = out;
    tx->out_off = 0;
    tx->out_len = out_len;
    return tlsnic_tx_flush_locked(s, fd, flags);
}

static void open_record(struct tlsnic_tx *tx, uint8_t type)
{
    if (!tx->open) {
        tx->open = 1;
        tx->open_type = type;
        tx->open_len = 0;
    }
}

static int parse_cmsgs(struct tlsnic_sock *s, int fd, const struct msghdr *msg, int flags,
                       uint8_t *record_type)
{
    if (!msg->msg_control || msg->msg_controllen == 0)
        return 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR((struct msghdr *)msg); c;
         c = CMSG_NXTHDR((struct msghdr *)msg, c)) {
        /* The kernel's CMSG_OK (tls_process_cmsg): a header whose length runs past the
         * control buffer is EINVAL, and nothing past the buffer is read. */
        size_t at = (size_t)((const char *)c - (const char *)msg->msg_control);
        TLSNIC_ENSURE(c->cmsg_len >= sizeof(struct cmsghdr) &&
                          c->cmsg_len <= msg->msg_controllen - at,
                      EINVAL);
        if (c->cmsg_level != SOL_TLS)
            continue;
        if (c->cmsg_type != TLS_SET_RECORD_TYPE)
            return -EINVAL;
        TLSNIC_ENSURE(c->cmsg_len >= CMSG_LEN(sizeof(uint8_t)), EINVAL);
        TLSNIC_ENSURE(!(flags & MSG_MORE), EINVAL);
        /* A record of another type never merges with the open one: send that first. */
        TLSNIC_TRY(tlsnic_tx_push_locked(s, fd, flags));
        *record_type = *CMSG_DATA(c);
    }
    return 0;
}

#define TX_FLAGS (MSG_MORE | MSG_DONTWAIT | MSG_NOSIGNAL | MSG_EOR)

static ssize_t sendmsg_locked(struct tlsnic_sock *s, int fd, const struct msghdr *msg, int flags)
{
    struct tlsnic_tx *tx = &s->tx;
    uint8_t record_type = TLSNIC_CT_APPLICATION_DATA;
    int wflags = flags & (MSG_DONTWAIT | MSG_NOSIGNAL);

    TLSNIC_ENSURE(!(flags & ~TX_FLAGS), EOPNOTSUPP);
    if (tx->err)
        return tx->err;
    TLSNIC_TRY(tlsnic_tx_flush_locked(s, fd, wflags));
    TLSNIC_TRY(parse_cmsgs(s, fd, msg, flags, &record_type));
    if (tx->open && tx->open_type != record_type)
        TLSNIC_TRY(tlsnic_tx_push_locked(s, fd, wflags));

    size_t iovs = 0, asked = 0;
    size_t total = tlsnic_iov_usable(msg, &iovs, &asked);
    if (total < asked) {
        /* An iovec the kernel could not read: tls_sw_sendmsg copies what the open record has
         * room for, then a record at a time, and the chunk that reaches that iovec fails
         * (EFAULT, or what went before it). */
        size_t room = tx->max_payload - (tx->open ? tx->open_len : 0), ok = 0;
        while (ok < asked) {
            size_t chunk = asked - ok < room ? asked - ok : room;
            if (chunk > total - ok)
                break;
            ok += chunk;
            room = tx->max_payload;
        }
        total = ok;
        TLSNIC_ENSURE(total > 0, EFAULT);
    }
    if (total == 0 && record_type != TLSNIC_CT_APPLICATION_DATA)
        open_record(tx, record_type);

    size_t copied = 0;
    for (size_t i = 0; i < iovs && copied < total; i++) {
        const uint8_t *p = msg->msg_iov[i].iov_base;
        size_t left = msg->msg_iov[i].iov_len;
        if (left > total - copied)
            left = total - copied;
        while (left > 0) {
            size_t rest = total - copied; /* this byte on, to the end of the call */
            if (!tx->open && (left >= tx->max_payload ||
                              (rest == left && !(flags & MSG_MORE)))) {
                size_t n = left < tx->max_payload ? left : tx->max_payload;
                int rc = seal_direct(s, fd, record_type, p, n, wflags);
                if (rc < 0 && rc != -EAGAIN)
                    return copied ? (ssize_t)copied : rc;
                copied += n;
                p += n;
                left -= n;
                if (rc == -EAGAIN)
                    return (ssize_t)copied; /* sealed: those bytes are the socket's now */
                continue;
            }
            open_record(tx, record_type);
            size_t room = tx->max_payload - tx->open_len;
            size_t n = left < room ? left : room;
            memcpy(tx->buf + tx->hdr_room + tx->open_len, p, n);
            tx->open_len += n;
            copied += n;
            p += n;
            left -= n;
            if (tx->open_len >= tx->max_payload) {
                int rc = tlsnic_tx_push_locked(s, fd, wflags);
                if (rc == -EAGAIN)
                    return (ssize_t)copied; /* sealed: those bytes are the socket's now */
                if (rc < 0)
                    return copied ? (ssize_t)copied : rc;
            }
        }
    }
    if (tx->open && (record_type != TLSNIC_CT_APPLICATION_DATA || !(flags & MSG_MORE))) {
        int rc = tlsnic_tx_push_locked(s, fd, wflags);
        if (rc < 0 && rc != -EAGAIN)
            return copied ? (ssize_t)copied : rc;
    }
    return (ssize_t)copied;
}

ssize_t tlsnic_tx_sendmsg(struct tlsnic_sock *s, int fd, const struct msghdr *msg, int flags)
{
    pthread_mutex_lock(&s->tx.lock);
    ssize_t rc = sendmsg_locked(s, fd, msg, flags);
    pthread_mutex_unlock(&s->tx.lock);
    return rc;
}

static ssize_t sendfile_locked(struct tlsnic_sock *s, int fd, int in_fd, off_t *offset,
                               size_t count)
{
    struct tlsnic_tx *tx = &s->tx;
    if (tx->err)
        return tx->err;
    TLSNIC_TRY(tlsnic_tx_flush_locked(s, fd, 0));
    if (tx->open && tx->open_type != TLSNIC_CT_APPLICATION_DATA)
        TLSNIC_TRY(tlsnic_tx_push_locked(s, fd, 0));

    size_t copied = 0;
    ssize_t rc = 0;
    while (copied < count) {
        open_record(tx, TLSNIC_CT_APPLICATION_DATA);
        size_t room = tx->max_payload - tx->open_len;
        size_t want = count - copied < room ? count - copied : room;
        uint8_t *dst = tx->buf + tx->hdr_room + tx->open_len;
        ssize_t n = offset ? tlsnic_sys.pread(in_fd, dst, want, *offset + (off_t)copied)
                           : tlsnic_sys.read(in_fd, dst, want);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            rc = -errno;
            break;
        }
        if (n == 0)
            break; /* end of file */
        tx->open_len += (size_t)n;
        copied += (size_t)n;
        if (tx->open_len >= tx->max_payload) {
            rc = tlsnic_tx_push_locked(s, fd, 0);
            if (rc < 0)
                break;
        }
    }
    if (tx->open && tx->open_len > 0 && rc >= 0)
        rc = tlsnic_tx_push_locked(s, fd, 0);
    else if (tx->open && tx->open_len == 0)
        tx->open = 0;
    if (offset)
        *offset += (off_t)copied;
    if (rc < 0 && rc != -EAGAIN && copied == 0)
        return rc;
    return (ssize_t)copied;
}

ssize_t tlsnic_tx_sendfile(struct tlsnic_sock *s, int fd, int in_fd, off_t *offset,
                           size_t count)
{
    pthread_mutex_lock(&s->tx.lock);
    ssize_t rc = sendfile_locked(s, fd, in_fd, offset, count);
    pthread_mutex_unlock(&s->tx.lock);
    return rc;
}

/*
 * On close: the kernel sends records that are already sealed and abandons an open one
 * (tls_sw_release_resources_tx). Same here, waiting at most timeout_ms for the socket.
 */
int tlsnic_tx_drain_on_close(struct tlsnic_sock *s, int fd, int timeout_ms)
{
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        int rc = tlsnic_tx_flush_locked(s, fd, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (rc != -EAGAIN)
            return rc;
        clock_gettime(CLOCK_MONOTONIC, &t1);
        long spent = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
        if (spent >= timeout_ms)
            return -ETIMEDOUT;
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        (void)tlsnic_sys.poll(&p, 1, (int)(timeout_ms - spent));
    }
}
