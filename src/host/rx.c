/*
 * tlsnic socket layer, RX: records in, plaintext out (net/tls/tls_sw.c's recvmsg side).
 *
 * Readiness rule: bytes are taken from the kernel socket only up to the end of the record
 * being assembled, and the last byte of a record is only peeked (MSG_PEEK) until the
 * program has read all of that record's plaintext. So:
 *   - a partial record is fully in user space and the fd is readable only when more of it
 *     arrives (no spinning on a readable fd that cannot make progress);
 *   - a decrypted record with unread plaintext keeps one byte in the kernel socket, so the
 *     fd stays readable (no hang in poll while tlsnic holds data).
 * Device mode (RX offload) adds a batched path (rxdev.c, tlsnic_dev_rx_bulk): records the
 * device verified go from the kernel socket straight into the program's buffer, whole
 * records only, so nothing is held; anything else goes the way above.
 */
#include <errno.h>
#include <openssl/crypto.h>
#include <stdlib.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/uio.h>

#include "ktls_int.h"

#define TLSNIC_HS_KEY_UPDATE 24

static ssize_t sys_recv(int fd, uint8_t *buf, size_t len, int flags)
{
    for (;;) {
        ssize_t n = tlsnic_sys.recv(fd, buf, len, flags);
        if (n >= 0)
            return n;
        if (errno != EINTR)
            return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    }
}

/* The program has read the whole record: take its last byte out of the kernel socket. */
static void rx_release(struct tlsnic_rx *rx, int fd)
{
    if (rx->last_held) {
        uint8_t b;
        (void)sys_recv(fd, &b, 1, MSG_DONTWAIT);
    }
    if (rx->dev)
        tlsnic_dev_rx_release(rx, fd);
    rx->have = rx->need = 0;
    rx->ready = rx->last_held = 0;
    rx->content = NULL;
    rx->clen = rx->off = 0;
}

/*
 * Makes rx hold a decrypted record. Returns 1, 0 at end of stream, or a negative errno
 * (-EAGAIN when the record is not complete and flags has MSG_DONTWAIT or the socket is
 * non-blocking; a record error is sticky: the stream is dead, as in the kernel).
 */
/*
 * After a malformed header the kernel stops its record parser and reports the error once
 * (through sk_err); later reads find no record: EAGAIN when non-blocking, else they wait
 * for the end of the stream (0) or SO_RCVTIMEO (EAGAIN), as tls_rx_rec_wait does.
 */
static int rx_dead(int fd, int flags)
{
    int fl = tlsnic_sys.fcntl(fd, F_GETFL);
    if ((flags & MSG_DONTWAIT) || (fl >= 0 && (fl & O_NONBLOCK)))
        return -EAGAIN;
    struct timeval tv = {0};
    socklen_t l = sizeof(tv);
    int timeout = -1;
    if (tlsnic_sys.getsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, &l) == 0 &&
        (tv.tv_sec > 0 || tv.tv_usec > 0))
        timeout = (int)(tv.tv_sec * 1000 + (tv.tv_usec + 999) / 1000);
    /* The bytes after the bad header stay readable: wait for the peer's end only. */
    struct pollfd p = {.fd = fd, .events = POLLRDHUP};
    int n = tlsnic_sys.poll(&p, 1, timeout);
    if (n < 0)
        return -errno;
    return n == 0 ? -EAGAIN : 0;
}

static int rx_fill(struct tlsnic_rx *rx, int fd, int flags)
{
    for (;;) {
        if (rx->ready)
            return 1;
        if (rx->err)
            return rx->err;
        if (rx->dead) {
            int e = rx->dead_err; /* reported once */
            rx->dead_err = 0;
            return e ? e : rx_dead(fd, flags);
        }
        if (rx->rekey_pending)
            return -EKEYEXPIRED;
        ssize_t n;
        if (rx->have < TLSNIC_REC_HDR_LEN) {
            n = sys_recv(fd, rx->buf + rx->have, TLSNIC_REC_HDR_LEN - rx->have, flags);
            if (n <= 0)
                return (int)n;
            rx->have += (size_t)n;
            if (rx->have < TLSNIC_REC_HDR_LEN)
                continue;
        }
        if (rx->need == 0) { /* the header is there (read here, or by the batched path) */
            if (rx->dev && tlsnic_dev_rx_header(rx, rx->buf) < 0)
                return rx->err = -EBADMSG;
            int len = tlsnic_rec_parse_header(rx->key, rx->buf);
            if (len >= 0 && ((size_t)len > TLSNIC_RX_BUF_LEN || (size_t)len <= TLSNIC_REC_HDR_LEN))
                len = -EMSGSIZE;
            if (len < 0) {
                rx->dead = 1; /* reported once, as the kernel's sk_err */
                rx->dead_err = len;
                continue;
            }
            rx->need = (size_t)len;
        }
        if (rx->have + 1 < rx->need) {
            n = sys_recv(fd, rx->buf + rx->have, rx->need - 1 - rx->have, flags);
            if (n <= 0)
                return (int)n;
            rx->have += (size_t)n;
            continue;
        }
        if (rx->have < rx->need) { /* else the batched path took all of it */
            n = sys_recv(fd, rx->buf + rx->have, 1, flags | MSG_PEEK);
            if (n <= 0)
                return (int)n;
            rx->have = rx->need;
            rx->last_held = 1;
        }

        uint8_t type = 0;
        int rc = rx->dev ? tlsnic_dev_rx_open(rx, rx->buf, rx->need, &type, &rx->content, &rx->clen)
                         : tlsnic_rec_open(rx->key, rx->buf, rx->need, &type, &rx->content, &rx->clen);
        if (rc == 0 && !rx->dev)
            tlsnic_stat_add(TLSNIC_STAT_RX_SW_BYTES, (int64_t)rx->need);
        if (rc < 0) {
            if (rc == -EBADMSG)
                tlsnic_stat_add(TLSNIC_STAT_DECRYPT_ERROR, 1);
            return rx->err = rc;
        }
        tlsnic_stat_add(TLSNIC_STAT_RX_RECORDS, 1);
        rx->type = type;
        rx->off = 0;
        rx->ready = 1;
        if (rx->version == TLS_1_3_VERSION && type == TLSNIC_CT_HANDSHAKE && rx->clen > 0 &&
            rx->content[0] == TLSNIC_HS_KEY_UPDATE) {
            /* Records after this one are under the next key: stop until TLS_RX. */
            rx->rekey_pending = 1;
            tlsnic_stat_add(TLSNIC_STAT_RX_REKEY_RECEIVED, 1);
        }
        if (rx->clen == 0 && type == TLSNIC_CT_APPLICATION_DATA)
            rx_release(rx, fd); /* an empty data record carries nothing: skip it */
    }
}

/* TLS_GET_RECORD_TYPE cmsg as the kernel's put_cmsg writes it; -1 if it did not fit. */
static int put_type_cmsg(struct msghdr *msg, uint8_t type)
{
    if (!msg->msg_control || msg->msg_controllen < CMSG_LEN(sizeof(type))) {
        msg->msg_flags |= MSG_CTRUNC;
        msg->msg_controllen = 0;
        return -1;
    }
    struct cmsghdr *c = (struct cmsghdr *)msg->msg_control;
    c->cmsg_level = SOL_TLS;
    c->cmsg_type = TLS_GET_RECORD_TYPE;
    c->cmsg_len = CMSG_LEN(sizeof(type));
    *CMSG_DATA(c) = type;
    size_t used = CMSG_SPACE(sizeof(type));
    if (used > msg->msg_controllen)
        used = msg->msg_controllen;
    msg->msg_controllen = used;
    return 0;
}

/* Copies src into the iovecs of msg starting at byte offset `at`. */
static void copy_to_iov(const struct msghdr *msg, size_t at, const uint8_t *src, size_t len)
{
    for (size_t i = 0; i < msg->msg_iovlen && len > 0; i++) {
        size_t l = msg->msg_iov[i].iov_len;
        if (at >= l) {
            at -= l;
            continue;
        }
        size_t n = l - at < len ? l - at : len;
        memcpy((uint8_t *)msg->msg_iov[i].iov_base + at, src, n);
        src += n;
        len -= n;
        at = 0;
    }
}

/*
 * MSG_PEEK past the record in hand. The kernel keeps every record it decrypted on its
 * rx_list, so a peek goes on across data records as a read does (and with MSG_WAITALL
 * waits for more). tlsnic looks at the bytes after the record in hand without taking them
 * (MSG_PEEK on the kernel socket; its first byte is the held last byte of the record in
 * hand) and opens copies of those records at their own sequence numbers. Stops at a record
 * of another type, an incomplete one (unless wait), one that does not open (the read that
 * takes it will say why), or after PEEK_AHEAD_MAX bytes.
 */
#define PEEK_AHEAD_MAX (256u * 1024u)

static void peek_ahead(struct tlsnic_rx *rx, int fd, struct msghdr *msg, size_t *copied,
                       size_t asked, size_t usable, int wait)
{
    size_t cap = 64u * 1024u, have = 0, off = rx->last_held ? 1 : 0, need = off + TLSNIC_REC_HDR_LEN;
    uint64_t seq = tlsnic_rec_key_next_seq(rx->key);
    uint8_t *buf = malloc(cap);
    int peeked = 0; /* buf holds the queue's first `have` bytes as of the last peek */
    for (int round = 0; buf && *copied < asked && round < 4096; round++) {
        if (!peeked || have < need) {
            if (need > PEEK_AHEAD_MAX)
                break;
            if (need > cap) {
                size_t ncap = need * 2 < PEEK_AHEAD_MAX ? need * 2 : PEEK_AHEAD_MAX;
                uint8_t *b = malloc(ncap);
                if (!b)
                    break;
                OPENSSL_cleanse(buf, have);
                free(buf);
                buf = b;
                cap = ncap;
            }
            ssize_t n = sys_recv(fd, buf, cap, MSG_PEEK | MSG_DONTWAIT);
            if (n >= 0 && (size_t)n < need && wait) /* the kernel waits for the bytes */
                n = sys_recv(fd, buf, need, MSG_PEEK | MSG_WAITALL);
            if (n < 0 || (size_t)n < need)
                break;
            have = (size_t)n;
            peeked = 1;
        }
        if (have - off < TLSNIC_REC_HDR_LEN) {
            need = off + TLSNIC_REC_HDR_LEN;
            peeked = 0;
            continue;
        }
        /* Device mode: bytes the device decrypted are made again what was on the wire
         * (header here, body in the open), in this copy only. */
        size_t ahead = off - (rx->last_held ? 1 : 0);
        if (rx->dev && tlsnic_dev_rx_peek_header(rx, ahead, buf + off) < 0)
            break;
        int len = tlsnic_rec_parse_header(rx->key, buf + off);
        if (len <= TLSNIC_REC_HDR_LEN || (size_t)len > TLSNIC_RX_BUF_LEN)
            break;
        if (have - off < (size_t)len) {
            need = off + (size_t)len;
            peeked = 0;
            continue;
        }
        uint8_t type, *content;
        size_t clen;
        int rc = rx->dev ? tlsnic_dev_rx_peek_open(rx, ahead, seq, buf + off, (size_t)len, &type,
                                                   &content, &clen)
                         : tlsnic_rec_open_at(rx->key, seq, buf + off, (size_t)len, &type, &content,
                                              &clen);
        if (rc < 0 || type != TLSNIC_CT_APPLICATION_DATA)
            break;
        size_t take = clen < asked - *copied ? clen : asked - *copied;
        if (take > usable - *copied)
            break; /* it would reach an iovec the kernel cannot write */
        copy_to_iov(msg, *copied, content, take);
        *copied += take;
        off += (size_t)len;
        need = off + TLSNIC_REC_HDR_LEN;
        seq++;
    }
    if (buf) {
        OPENSSL_cleanse(buf, have); /* plaintext of records not taken yet */
        free(buf);
    }
}

static ssize_t recvmsg_locked(struct tlsnic_sock *s, int fd, struct msghdr *msg, int flags)
{
    struct tlsnic_rx *rx = &s->rx;
    int peek = flags & MSG_PEEK;
    int waitall = flags & MSG_WAITALL;
    int dontwait = flags & MSG_DONTWAIT;
    int has_control = msg->msg_control != NULL;
    size_t iovs = 0, asked = 0;
    /* total: the bytes up to an iovec the kernel could not write (then < asked) */
    size_t total = tlsnic_iov_usable(msg, &iovs, &asked);
    msg->msg_flags = 0;
    if (asked == 0) {
        if (has_control)
            msg->msg_controllen = 0;
        return 0;
    }

    size_t copied = 0;
    uint8_t control = 0;
    int cmsg_ok = 0;
    while (copied < asked) {
        if (rx->dev && !peek && !rx->ready && rx->need == 0 && !rx->err && !rx->dead &&
            !rx->rekey_pending && (control == 0 || control == TLSNIC_CT_APPLICATION_DATA) &&
            copied < total) {
            /* Only into the usable iovecs (total): a record that would reach one the kernel
             * cannot write is left to the ordinary path below, which says EFAULT. */
            ssize_t b = tlsnic_dev_rx_bulk(rx, fd, msg, copied, total - copied,
                                           !dontwait && (copied == 0 || waitall));
            if (b == -EINPROGRESS && copied > 0 && !waitall)
                break; /* the next record is better taken whole by the next call */
            if (b < 0 && b != -EINPROGRESS) {
                if (copied > 0)
                    break;
                if (has_control)
                    msg->msg_controllen = 0;
                return b;
            }
            if (b > 0) {
                if (control == 0) {
                    control = TLSNIC_CT_APPLICATION_DATA;
                    cmsg_ok = put_type_cmsg(msg, control) == 0;
                }
                copied += (size_t)b;
                continue;
            }
        }
        int more_wait = copied == 0 || waitall;
        int rc = rx_fill(rx, fd, (dontwait || !more_wait) ? MSG_DONTWAIT : 0);
        if (rc <= 0) {
            if (copied > 0)
                break;
            if (has_control)
                msg->msg_controllen = 0;
            return rc;
        }
        if (control == 0) {
            control = rx->type;
            cmsg_ok = put_type_cmsg(msg, control) == 0;
            if (control != TLSNIC_CT_APPLICATION_DATA && !cmsg_ok)
                return -EIO; /* the record stays; a recvmsg with a cmsg buffer gets it */
        } else if (rx->type != control) {
            break; /* never two record types in one call */
        }
        size_t n = rx->clen - rx->off;
        if (n > asked - copied)
            n = asked - copied;
        if (n > total - copied) {
            /* The kernel's copy of this record would reach the unreadable iovec: it fails
             * and the record stays whole for the next call (EFAULT, or what went before). */
            if (copied > 0)
                break;
            if (has_control)
                msg->msg_controllen = 0;
            return -EFAULT;
        }
        copy_to_iov(msg, copied, rx->content + rx->off, n);
        copied += n;
        if (peek) {
            if (control == TLSNIC_CT_APPLICATION_DATA && n == rx->clen - rx->off &&
                copied < asked)
                peek_ahead(rx, fd, msg, &copied, asked, total, waitall && !dontwait);
            break;
        }
        rx->off += n;
        if (rx->off == rx->clen)
            rx_release(rx, fd);
        if (control != TLSNIC_CT_APPLICATION_DATA)
            break; /* control records come one per call */
    }
    if (!cmsg_ok && has_control)
        msg->msg_controllen = 0;
    return (ssize_t)copied;
}

ssize_t tlsnic_rx_recvmsg(struct tlsnic_sock *s, int fd, struct msghdr *msg, int flags)
{
    /* A sender that now waits for the answer must not leave its last record behind. */
    if (atomic_load(&s->tx_on) && tlsnic_tx_has_pending(s) && pthread_mutex_trylock(&s->tx.lock) == 0) {
        (void)tlsnic_tx_flush_locked(s, fd, MSG_DONTWAIT | MSG_NOSIGNAL);
        pthread_mutex_unlock(&s->tx.lock);
    }
    pthread_mutex_lock(&s->rx.lock);
    ssize_t rc = recvmsg_locked(s, fd, msg, flags);
    pthread_mutex_unlock(&s->rx.lock);
    return rc;
}

/*
 * For poll / select / epoll: whether a read can return something now, as the kernel's
 * poll on a kTLS socket says readable only for a whole record (or an error, or the end).
 * 1: a read would (a record, an error, the end); 0: not (a partial record: its bytes are
 * taken into user space, so the fd stops being readable until more arrives); 2: no read
 * can until the program acts (a TLS 1.3 KeyUpdate waits for TLS_RX keys, a malformed
 * header was reported): the caller stops asking the kernel for POLLIN, whose bytes stay;
 * -1: another thread is reading (trust the kernel's answer).
 */
int tlsnic_rx_poll(struct tlsnic_sock *s, int fd)
{
    struct tlsnic_rx *rx = &s->rx;
    if (pthread_mutex_trylock(&rx->lock) != 0)
        return -1;
    int r;
    if (rx->ready || rx->err || (rx->dead && rx->dead_err)) {
        r = 1;
    } else if (rx->rekey_pending || rx->dead) {
        r = 2;
    } else {
        int rc = rx_fill(rx, fd, MSG_DONTWAIT);
        r = rc == -EAGAIN ? 0 : 1;
        if (rc < 0 && rc != -EAGAIN && rx->dead) { /* the error just found: keep it */
            rx->dead_err = rc;
            r = 1;
        }
    }
    pthread_mutex_unlock(&rx->lock);
    return r;
}
