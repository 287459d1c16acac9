/*
 * The kernel's struct tcp_info (from <linux/tcp.h>, which clashes with the glibc
 * <netinet/tcp.h> that ktls.h includes, hence its own file): retransmission figures of
 * the sender's socket, for resync bytes per retransmitted byte, and its segment counts
 * (the ACKs a sender received: what the host core's receive processing must have handled).
 */
#include <errno.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>

#include "eval.h"

int eval_tcp_retrans(int fd, struct eval_retrans *out)
{
    struct tcp_info ti;
    socklen_t len = sizeof(ti);
    memset(&ti, 0, sizeof(ti));
    memset(out, 0, sizeof(*out));
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0)
        return -errno;
    out->total_retrans = ti.tcpi_total_retrans;
    out->snd_mss = ti.tcpi_snd_mss;
    if (len >= offsetof(struct tcp_info, tcpi_segs_in) + sizeof(ti.tcpi_segs_in)) {
        out->segs_in = ti.tcpi_segs_in;
        out->segs_out = ti.tcpi_segs_out;
    }
    /* tcpi_bytes_retrans (Linux 4.19+): exact; else segments x MSS is the estimate. */
    if (len >= offsetof(struct tcp_info, tcpi_bytes_retrans) + sizeof(ti.tcpi_bytes_retrans))
        out->bytes_retrans = ti.tcpi_bytes_retrans;
    else
        out->bytes_retrans = (uint64_t)ti.tcpi_total_retrans * ti.tcpi_snd_mss;
    return 0;
}
