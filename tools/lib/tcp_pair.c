#include "tcp_pair.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

int tcp_listen_any(unsigned short *port)
{
    int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (l < 0)
        return -errno;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof(a);
    if (bind(l, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(l, 16) < 0 ||
        getsockname(l, (struct sockaddr *)&a, &al) < 0) {
        int e = errno;
        close(l);
        return -e;
    }
    *port = ntohs(a.sin_port);
    return l;
}

int tcp_pair(int fds[2])
{
    unsigned short port;
    int l = tcp_listen_any(&port);
    if (l < 0)
        return l;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c < 0 || connect(c, (struct sockaddr *)&a, sizeof(a)) < 0) {
        int e = errno;
        if (c >= 0)
            close(c);
        close(l);
        return -e;
    }
    int s = accept4(l, NULL, NULL, SOCK_CLOEXEC);
    int e = errno;
    close(l);
    if (s < 0) {
        close(c);
        return -e;
    }
    struct timeval tv = {.tv_sec = 5};
    int one = 1;
    for (int i = 0; i < 2; i++) {
        int fd = i ? s : c;
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    fds[0] = c;
    fds[1] = s;
    return 0;
}
