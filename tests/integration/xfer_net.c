#include "xfer_net.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int resolve(const char *who, const char *addr, const char *port, int passive,
                   struct addrinfo **out)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV};
    if (passive)
        hints.ai_flags |= AI_PASSIVE;
    int rc = getaddrinfo(addr, port, &hints, out);
    if (rc != 0) {
        fprintf(stderr, "%s: %s %s: %s\n", who, addr, port, gai_strerror(rc));
        return -EINVAL;
    }
    return 0;
}

int xfer_connect(const char *who, const char *addr, const char *port)
{
    struct addrinfo *ai;
    if (resolve(who, addr, port, 0, &ai) < 0)
        return -1;
    int s = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0 || connect(s, ai->ai_addr, ai->ai_addrlen) < 0) {
        fprintf(stderr, "%s send: connect: %s\n", who, strerror(errno));
        return -1;
    }
    freeaddrinfo(ai);
    return s;
}

int xfer_accept_one(const char *who, const char *addr, const char *port, int *listener)
{
    struct addrinfo *ai;
    if (resolve(who, addr, port, 1, &ai) < 0)
        return -1;
    int ls = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    if (ls < 0 || setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        bind(ls, ai->ai_addr, ai->ai_addrlen) < 0 || listen(ls, 1) < 0) {
        fprintf(stderr, "%s recv: listen: %s\n", who, strerror(errno));
        return -1;
    }
    freeaddrinfo(ai);
    fprintf(stderr, "listening\n");
    int s = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
    if (s < 0) {
        fprintf(stderr, "%s recv: accept: %s\n", who, strerror(errno));
        return -1;
    }
    *listener = ls;
    return s;
}
