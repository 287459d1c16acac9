/*
 * The one place that reads the kernel's struct tcp_info from <linux/tcp.h>: glibc's
 * <netinet/tcp.h> has an older, shorter one without tcpi_bytes_acked, and the two headers
 * cannot meet in one translation unit.
 */
#include <errno.h>
#include <stdio.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include "tcpinfo.h"

int tlsnic_tcp_bytes_acked(int fd, tlsnic_getsockopt_fn getsockopt_fn, uint64_t *out)
{
    struct tcp_info ti;
    socklen_t len = sizeof(ti);
    memset(&ti, 0, sizeof(ti));
    if (getsockopt_fn(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0)
        return -1;
    if (len < offsetof(struct tcp_info, tcpi_bytes_acked) + sizeof(ti.tcpi_bytes_acked))
        return -2; /* kernel older than 4.1 */
    *out = ti.tcpi_bytes_acked;
    return 0;
}

static int queue_seq(int fd, int which, tlsnic_setsockopt_fn setsockopt_fn,
                     tlsnic_getsockopt_fn getsockopt_fn, uint32_t *seq);

int tlsnic_tcp_send_seq(int fd, tlsnic_setsockopt_fn setsockopt_fn,
                        tlsnic_getsockopt_fn getsockopt_fn, uint32_t *seq)
{
    return queue_seq(fd, TCP_SEND_QUEUE, setsockopt_fn, getsockopt_fn, seq);
}

int tlsnic_tcp_recv_seq(int fd, tlsnic_setsockopt_fn setsockopt_fn,
                        tlsnic_getsockopt_fn getsockopt_fn, tlsnic_ioctl_fn ioctl_fn,
                        uint32_t *seq, uint32_t *queued)
{
    for (int attempt = 0; attempt < 64; attempt++) {
        int before = 0, after = 0;
        uint32_t rcv_nxt;
        if (ioctl_fn(fd, SIOCINQ, &before) < 0 ||
            queue_seq(fd, TCP_RECV_QUEUE, setsockopt_fn, getsockopt_fn, &rcv_nxt) < 0 ||
            ioctl_fn(fd, SIOCINQ, &after) < 0)
            return -1;
        if (before == after) { /* nothing arrived while rcv_nxt was read */
            *seq = rcv_nxt - (uint32_t)after;
            if (queued)
                *queued = after > 0 ? (uint32_t)after : 0;
            return 0;
        }
    }
    errno = EAGAIN;
    return -1;
}

/* The sequence number of a queue (TCP_SEND_QUEUE: write_seq; TCP_RECV_QUEUE: rcv_nxt). */
static int queue_seq(int fd, int which, tlsnic_setsockopt_fn setsockopt_fn,
                     tlsnic_getsockopt_fn getsockopt_fn, uint32_t *seq)
{
    /* Repair mode holds the socket still for the two calls; CRIU reads live connections
       the same way. Leaving it without a window probe changes nothing on the wire.
       Leaving it also clears the socket's SO_REUSEADDR (sk_reuse = SK_NO_REUSE): a server
       whose accepted socket lost it could not bind its port again while that connection
       sits in TIME_WAIT, so it is put back. */
    int on = TCP_REPAIR_ON, off = TCP_REPAIR_OFF_NO_WP, queue = which;
    int reuse = 0;
    socklen_t reuse_len = sizeof(reuse);
    if (getsockopt_fn(fd, SOL_SOCKET, SO_REUSEADDR, &reuse, &reuse_len) < 0)
        return -1;
    if (setsockopt_fn(fd, IPPROTO_TCP, TCP_REPAIR, &on, sizeof(on)) < 0)
        return -1;
    socklen_t len = sizeof(*seq);
    int rc = setsockopt_fn(fd, IPPROTO_TCP, TCP_REPAIR_QUEUE, &queue, sizeof(queue));
    if (rc == 0)
        rc = getsockopt_fn(fd, IPPROTO_TCP, TCP_QUEUE_SEQ, seq, &len);
    int saved = errno;
    (void)setsockopt_fn(fd, IPPROTO_TCP, TCP_REPAIR, &off, sizeof(off));
    if (reuse && setsockopt_fn(fd, SOL_SOCKET, SO_REUSEADDR, &reuse, sizeof(reuse)) < 0 && rc == 0)
        return -1;
    errno = saved;
    return rc < 0 ? -1 : 0;
}

size_t tlsnic_tcp_rmem_max(void)
{
    size_t max = 6u << 20;
    FILE *f = fopen("/proc/sys/net/ipv4/tcp_rmem", "re");
    if (f) {
        unsigned long lo, def, hi;
        if (fscanf(f, "%lu %lu %lu", &lo, &def, &hi) == 3 && hi > 0)
            max = hi;
        fclose(f);
    }
    return max;
}
