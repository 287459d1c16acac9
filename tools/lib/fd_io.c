#include "fd_io.h"

#include <errno.h>
#include <poll.h>
#include <time.h>
#include <unistd.h>

#define FD_IO_MAX_CALLS 100000

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits until fd is ready for `events` or the deadline passes. */
static int wait_ready(int fd, short events, int64_t deadline)
{
    int64_t left = deadline - now_ms();
    if (left <= 0)
        return -ETIMEDOUT;
    struct pollfd pfd = {.fd = fd, .events = events};
    int n = poll(&pfd, 1, (int)left);
    if (n < 0)
        return errno == EINTR ? 0 : -errno;
    return n == 0 ? -ETIMEDOUT : 0;
}

int fd_write_all(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    int64_t deadline = now_ms() + FD_IO_TIMEOUT_MS;
    for (int calls = 0; len > 0 && calls < FD_IO_MAX_CALLS; calls++) {
        int rc = wait_ready(fd, POLLOUT, deadline);
        if (rc < 0)
            return rc;
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                continue;
            return -errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return len == 0 ? 0 : -ETIMEDOUT;
}

int fd_read_exact(int fd, void *buf, size_t len)
{
    uint8_t *p = buf;
    int64_t deadline = now_ms() + FD_IO_TIMEOUT_MS;
    for (int calls = 0; len > 0 && calls < FD_IO_MAX_CALLS; calls++) {
        int rc = wait_ready(fd, POLLIN, deadline);
        if (rc < 0)
            return rc;
        ssize_t n = read(fd, p, len);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            return -ECONNRESET;
        p += n;
        len -= (size_t)n;
    }
    return len == 0 ? 0 : -ETIMEDOUT;
}

int fd_read_record(int fd, uint8_t *rec, size_t cap)
{
    if (cap < 5)
        return -ENOBUFS;
    int rc = fd_read_exact(fd, rec, 5);
    if (rc < 0)
        return rc;
    size_t len = 5 + ((size_t)rec[3] << 8 | rec[4]);
    if (len > cap)
        return -ENOBUFS;
    rc = fd_read_exact(fd, rec + 5, len - 5);
    return rc < 0 ? rc : (int)len;
}
