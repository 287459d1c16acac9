/* Sockets and clocks shared by the bench's sender and receiver (eval_net.h). */
#include "eval_net.h"

#include <errno.h>
#include <stdio.h>
#include <sys/socket.h>
#include <time.h>

double eval_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

double eval_tv_s(struct timeval tv)
{
    return (double)tv.tv_sec + (double)tv.tv_usec * 1e-6;
}

int eval_set_timeouts(int fd, long secs)
{
    struct timeval tv = {.tv_sec = secs};
    if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0)
        return -errno;
    return 0;
}

int eval_resolve(const char *addr, int port, int passive, struct addrinfo **out)
{
    char portstr[16];
    snprintf(portstr, sizeof(portstr), "%d", port);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | (passive ? AI_PASSIVE : 0)};
    int rc = getaddrinfo(addr, portstr, &hints, out);
    if (rc != 0) {
        fprintf(stderr, "bench: %s:%d: %s\n", addr, port, gai_strerror(rc));
        return -EINVAL;
    }
    return 0;
}
