/*
 * The one place that reads the kernel's struct tcp_info from <linux/tcp.h>: glibc's
 * <netinet/tcp.h> has an older, shorter one without tcpi_bytes_acked, and the two headers
 * cannot meet in one translation unit.
 */
#include <linux/tcp.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
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
