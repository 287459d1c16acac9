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
static int rx_fill(struct tlsnic_rx *rx, int fd, int flags)
{
    for (;;) {
        if (rx->ready)
            return 1;
        if (rx->err)
            return rx->err;
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
            if (len < 0)
                return rx->err = len;
            if ((size_t)len > TLSNIC_RX_BUF_LEN || (size_t)len <= TLSNIC_REC_HDR_LEN)
                return rx->err = -EMSGSIZE;
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

static ssize_t recvmsg_locked(struct tlsnic_sock *s, int fd, struct msghdr *msg, int flags)
{
    struct tlsnic_rx *rx = &s->rx;
    int peek = flags & MSG_PEEK;
    int waitall = flags & MSG_WAITALL;
    int dontwait = flags & MSG_DONTWAIT;
    int has_control = msg->msg_control != NULL;
    size_t total = 0;
    for (size_t i = 0; i < msg->msg_iovlen; i++)
        total += msg->msg_iov[i].iov_len;
    msg->msg_flags = 0;
    if (total == 0) {
        if (has_control)
            msg->msg_controllen = 0;
        return 0;
    }

    size_t copied = 0;
    uint8_t control = 0;
    int cmsg_ok = 0;
    while (copied < total) {
        if (rx->dev && !peek && !rx->ready && rx->need == 0 && !rx->err && !rx->rekey_pending &&
            (control == 0 || control == TLSNIC_CT_APPLICATION_DATA)) {
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
        if (n > total - copied)
            n = total - copied;
        copy_to_iov(msg, copied, rx->content + rx->off, n);
        copied += n;
        if (peek)
            break;
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
    if (s->tx.key && tlsnic_tx_has_pending(s) && pthread_mutex_trylock(&s->tx.lock) == 0) {
        (void)tlsnic_tx_flush_locked(s, fd, MSG_DONTWAIT | MSG_NOSIGNAL);
        pthread_mutex_unlock(&s->tx.lock);
    }
    pthread_mutex_lock(&s->rx.lock);
    ssize_t rc = recvmsg_locked(s, fd, msg, flags);
    pthread_mutex_unlock(&s->rx.lock);
    return rc;
}
