/* Naming a TCP flow from its socket (devops.h): the one conversion host and daemon share. */
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

#include "tlsnic/devops.h"

/* An IPv4 peer of an AF_INET6 socket shows up v4-mapped; on the wire it is IPv4. */
static int flow_end(const struct sockaddr_storage *ss, uint8_t *family, uint8_t addr[16],
                    uint16_t *port)
{
    static const uint8_t v4_mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    memset(addr, 0, 16);
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;
        *family = AF_INET;
        memcpy(addr, &sin->sin_addr, 4);
        *port = ntohs(sin->sin_port);
        return 0;
    }
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;
        if (memcmp(sin6->sin6_addr.s6_addr, v4_mapped, 12) == 0) {
            *family = AF_INET;
            memcpy(addr, sin6->sin6_addr.s6_addr + 12, 4);
        } else {
            *family = AF_INET6;
            memcpy(addr, sin6->sin6_addr.s6_addr, 16);
        }
        *port = ntohs(sin6->sin6_port);
        return 0;
    }
    return -EAFNOSUPPORT;
}

int tlsnic_flow_from_sockaddrs(const struct sockaddr_storage *local,
                               const struct sockaddr_storage *remote, struct tlsnic_flow *flow)
{
    if (local == NULL || remote == NULL || flow == NULL)
        return -EINVAL;
    memset(flow, 0, sizeof(*flow));
    uint8_t remote_family = 0;
    if (flow_end(local, &flow->family, flow->local, &flow->local_port) < 0 ||
        flow_end(remote, &remote_family, flow->remote, &flow->remote_port) < 0 ||
        remote_family != flow->family) {
        memset(flow, 0, sizeof(*flow));
        return -EAFNOSUPPORT;
    }
    return 0;
}

int tlsnic_flow_from_socket(int fd, struct tlsnic_flow *flow)
{
    struct sockaddr_storage local, remote;
    socklen_t ll = sizeof(local), rl = sizeof(remote);
    if (flow == NULL)
        return -EINVAL;
    memset(flow, 0, sizeof(*flow));
    if (getpeername(fd, (struct sockaddr *)&remote, &rl) < 0)
        return -ENOTCONN;
    if (getsockname(fd, (struct sockaddr *)&local, &ll) < 0)
        return -errno;
    return tlsnic_flow_from_sockaddrs(&local, &remote, flow);
}
