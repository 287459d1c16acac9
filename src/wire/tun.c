/* TUN open with virtio-net headers and TSO, inside a network namespace (see tun.h). */
#include "tlsnic/tun.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

static int netns_path(const char *netns, char *path, size_t cap)
{
    int n = netns[0] == '/' ? snprintf(path, cap, "%s", netns)
                            : snprintf(path, cap, "/run/netns/%s", netns);
    if (n < 0 || (size_t)n >= cap)
        return -ENAMETOOLONG;
    if (netns[0] != '/' && strchr(netns, '/') != NULL)
        return -EINVAL;
    return 0;
}

static int tun_attach(const char *ifname)
{
    struct ifreq ifr;
    if (strlen(ifname) >= sizeof(ifr.ifr_name) || ifname[0] == '\0')
        return -EINVAL;
    int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    memset(&ifr, 0, sizeof(ifr));
    memcpy(ifr.ifr_name, ifname, strlen(ifname));
    ifr.ifr_flags = IFF_TUN | IFF_NO_PI | IFF_VNET_HDR;
    int hdr_len = TLSNIC_TUN_VNET_HDR_LEN;
    /* TUN_F_CSUM is the precondition of TSO: without it the kernel offers no GSO. */
    unsigned int offload = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6;
    int err = 0;
    if (ioctl(fd, TUNSETIFF, &ifr) < 0 || ioctl(fd, TUNSETVNETHDRSZ, &hdr_len) < 0 ||
        ioctl(fd, TUNSETOFFLOAD, offload) < 0)
        err = -errno;
    if (err < 0) {
        close(fd);
        return err;
    }
    return fd;
}

int tlsnic_tun_open(const char *netns, const char *ifname)
{
    if (ifname == NULL)
        return -EINVAL;
    if (netns == NULL)
        return tun_attach(ifname);

    char path[PATH_MAX];
    int err = netns_path(netns, path, sizeof(path));
    if (err < 0)
        return err;
    int self_ns = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (self_ns < 0)
        return -errno;
    int target_ns = open(path, O_RDONLY | O_CLOEXEC);
    if (target_ns < 0) {
        err = -errno;
        close(self_ns);
        return err;
    }
    int fd;
    if (setns(target_ns, CLONE_NEWNET) < 0) {
        fd = -errno;
    } else {
        fd = tun_attach(ifname);
        /* Failing to return would leave the daemon's later sockets in the wrong place. */
        if (setns(self_ns, CLONE_NEWNET) < 0) {
            int back = -errno;
            if (fd >= 0)
                close(fd);
            fd = back;
        }
    }
    close(target_ns);
    close(self_ns);
    return fd;
}
