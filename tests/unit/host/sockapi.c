#include "sockapi.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/sendfile.h>
#include <unistd.h>

#include "tlsnic/ktls.h"
#include "tcp_pair.h"

const struct sockapi sockapi_kernel = {
    .name = "kernel",
    .setsockopt = setsockopt,
    .getsockopt = getsockopt,
    .send = send,
    .sendmsg = sendmsg,
    .sendfile = sendfile,
    .recv = recv,
    .recvmsg = recvmsg,
    .poll = poll,
    .close = close,
    .connect = connect,
};

const struct sockapi sockapi_tlsnic = {
    .name = "tlsnic",
    .setsockopt = tlsnic_setsockopt,
    .getsockopt = tlsnic_getsockopt,
    .send = tlsnic_send,
    .sendmsg = tlsnic_sendmsg,
    .sendfile = tlsnic_sendfile,
    .recv = tlsnic_recv,
    .recvmsg = tlsnic_recvmsg,
    .poll = tlsnic_poll,
    .close = tlsnic_close,
    .connect = tlsnic_connect,
};

const char *sockapi_unavailable(const struct sockapi *api)
{
    static char why[256];
    if (api != &sockapi_kernel)
        return NULL;
    int fds[2];
    if (tcp_pair(fds) < 0)
        return "no loopback TCP pair";
    int rc = setsockopt(fds[0], SOL_TCP, TCP_ULP, "tls", sizeof("tls"));
    int err = errno;
    close(fds[0]);
    close(fds[1]);
    if (rc == 0)
        return NULL;
    char ulps[128] = "?";
    FILE *f = fopen("/proc/sys/net/ipv4/tcp_available_ulp", "r");
    if (f) {
        if (!fgets(ulps, sizeof(ulps), f))
            strcpy(ulps, "?");
        fclose(f);
        ulps[strcspn(ulps, "\n")] = '\0';
    }
    snprintf(why, sizeof(why),
             "the running kernel has no kTLS: TCP_ULP \"tls\" gives %s "
             "(tcp_available_ulp: %s); kernel reference tests skipped",
             strerror(err), ulps);
    return why;
}
