/*
 * The socket API the kTLS semantics tests are written against: one table for the Linux
 * kernel's own kTLS (the reference, where the running kernel has the "tls" ULP) and one
 * for tlsnic. A test only ever calls through the table, so the same test judges both.
 */
#ifndef TLSNIC_TEST_SOCKAPI_H
#define TLSNIC_TEST_SOCKAPI_H

#include <poll.h>
#include <sys/socket.h>
#include <sys/types.h>

struct sockapi {
    const char *name;
    int (*setsockopt)(int fd, int level, int optname, const void *optval, socklen_t optlen);
    int (*getsockopt)(int fd, int level, int optname, void *optval, socklen_t *optlen);
    ssize_t (*send)(int fd, const void *buf, size_t len, int flags);
    ssize_t (*sendmsg)(int fd, const struct msghdr *msg, int flags);
    ssize_t (*sendfile)(int out_fd, int in_fd, off_t *offset, size_t count);
    ssize_t (*recv)(int fd, void *buf, size_t len, int flags);
    ssize_t (*recvmsg)(int fd, struct msghdr *msg, int flags);
    int (*poll)(struct pollfd *fds, nfds_t nfds, int timeout);
    int (*close)(int fd);
    int (*connect)(int fd, const struct sockaddr *addr, socklen_t len);
};

extern const struct sockapi sockapi_kernel;
extern const struct sockapi sockapi_tlsnic;

/*
 * NULL if api can run kTLS sockets here; otherwise why not (for the skip message).
 * For the kernel: whether TCP_ULP "tls" is accepted on a connected loopback socket.
 */
const char *sockapi_unavailable(const struct sockapi *api);

#endif
