/* One end of a control connection to tlsnicd (see ctl_chan.h). */
#include "tlsnic/ctl_chan.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "tlsnic/check.h"

/* Replies to requests that timed out may still arrive; this many are skipped at most. */
#define MAX_STALE_REPLIES 64

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
static int send_request(const struct tlsnic_ctl_chan *ch, const uint8_t *msg, size_t len,
                        const int *pass_fds, int n_fds)
{
    struct iovec iov = {.iov_base = (void *)msg, .iov_len = len};
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int) * 2)];
    } control;
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    if (n_fds < 0 || n_fds > 2)
        return -EINVAL;
    if (n_fds > 0) {
        memset(&control, 0, sizeof(control));
        mh.msg_control = control.buf;
        mh.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)n_fds);
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)n_fds);
        memcpy(CMSG_DATA(c), pass_fds, sizeof(int) * (size_t)n_fds);
    }
    ssize_t n = sendmsg(ch->fd, &mh, MSG_NOSIGNAL);
    if (n == (ssize_t)len)
        return 0;
    if (n < 0 && errno != EPIPE && errno != ECONNRESET && errno != ENOTCONN)
        return -errno;
    return -ENODEV;
}

static int connect_to(const struct sockaddr_un *sa)
{
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) < 0) {
        int err = -errno;
        close(fd);
        return err;
    }
    return fd;
}

int tlsnic_ctl_chan_open(struct tlsnic_ctl_chan *ch, const char *path, int timeout_ms)
{
    if (ch == NULL || path == NULL || timeout_ms < 0)
        return -EINVAL;
    memset(ch, 0, sizeof(*ch));
    ch->fd = -1;
    size_t path_len = strlen(path);
    ch->addr.sun_family = AF_UNIX;
    if (path_len == 0 || path_len >= sizeof(ch->addr.sun_path))
        return -ENAMETOOLONG;
    memcpy(ch->addr.sun_path, path, path_len + 1);
    ch->timeout_ms = timeout_ms ? timeout_ms : TLSNIC_CTL_DEFAULT_TIMEOUT_MS;
    ch->fd = connect_to(&ch->addr);
    return ch->fd < 0 ? ch->fd : 0;
}

int tlsnic_ctl_chan_reconnect(struct tlsnic_ctl_chan *ch)
{
    if (ch->fd >= 0)
        close(ch->fd);
    ch->fd = connect_to(&ch->addr);
    return ch->fd < 0 ? ch->fd : 0;
}

void tlsnic_ctl_chan_close(struct tlsnic_ctl_chan *ch)
{
    if (ch == NULL)
        return;
    if (ch->fd >= 0)
        close(ch->fd);
    ch->fd = -1;
}

int tlsnic_ctl_chan_call(struct tlsnic_ctl_chan *ch, struct tlsnic_ctl_msg *req,
                         const int *pass_fds, int n_fds)
{
    if (ch->fd < 0)
        return -ENODEV;
    req->id = ++ch->next_id;
    int len = tlsnic_ctl_encode(req, ch->buf, sizeof(ch->buf));
    if (len < 0)
        return len;
    int err = send_request(ch, ch->buf, (size_t)len, pass_fds, n_fds);
    if (err < 0)
        return err;
    int64_t deadline = now_ms() + ch->timeout_ms;
    for (int skipped = 0; skipped <= MAX_STALE_REPLIES; skipped++) {
        int64_t left = deadline - now_ms();
        if (left <= 0)
            return -ETIMEDOUT;
        struct pollfd pfd = {.fd = ch->fd, .events = POLLIN};
        int ready = poll(&pfd, 1, (int)left);
        if (ready < 0 && errno == EINTR)
            continue;
        if (ready < 0)
            return -errno;
        if (ready == 0)
            return -ETIMEDOUT;
        ssize_t n = recv(ch->fd, ch->buf, sizeof(ch->buf), MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (n <= 0)
            return -ENODEV;
        err = tlsnic_ctl_decode(ch->buf, (size_t)n, &ch->reply);
        if (err < 0 || ch->reply.type != TLSNIC_CTL_REPLY)
            return -EBADMSG;
        if (ch->reply.id != req->id)
            continue; /* the late answer to a request that timed out */
        size_t tl = ch->reply.text_len;
        if (ch->reply.status < 0) {
            memcpy(ch->last_error, ch->reply.text, tl);
            ch->last_error[tl] = '\0';
        }
        return ch->reply.status;
    }
    return -EBADMSG;
}

int tlsnic_ctl_query_stats(const char *path, char *buf, size_t cap)
{
    if (buf == NULL || cap == 0)
        return -EINVAL;
    struct tlsnic_ctl_chan *ch = malloc(sizeof(*ch));
    if (ch == NULL)
        return -ENOMEM;
    int err = tlsnic_ctl_chan_open(ch, path, 0);
    if (err < 0) {
        free(ch);
        return err;
    }
    struct tlsnic_ctl_msg req = {.type = TLSNIC_CTL_STATS};
    err = tlsnic_ctl_chan_call(ch, &req, NULL, 0);
    if (err == 0 && ch->reply.payload_len >= cap)
        err = -ENOBUFS;
    if (err == 0) {
        memcpy(buf, ch->reply.payload, ch->reply.payload_len);
        buf[ch->reply.payload_len] = '\0';
        err = (int)ch->reply.payload_len;
    }
    tlsnic_ctl_chan_close(ch);
    free(ch);
    return err;
}

/* Pages asked for at most: enough for a full flow table and the ended flows. */
#define MAX_FLOW_PAGES 1024

int tlsnic_ctl_query_flow_stats(const char *path, struct tlsnic_ctl_flow_entry *out, size_t cap,
                                uint32_t *total, uint16_t *n_counters)
{
    TLSNIC_ENSURE(out != NULL || cap == 0, EINVAL);
    struct tlsnic_ctl_flow_entry *page_entries = calloc(TLSNIC_CTL_FLOW_PAGE_MAX,
                                                        sizeof(*page_entries));
    TLSNIC_ENSURE(page_entries != NULL, ENOMEM);
    struct tlsnic_ctl_chan *ch = malloc(sizeof(*ch));
    int err = ch == NULL ? -ENOMEM : tlsnic_ctl_chan_open(ch, path, 0);
    if (err < 0) {
        free(ch);
        free(page_entries);
        return err;
    }
    size_t filled = 0;
    uint32_t listed = 0;
    uint16_t carried = TLSNIC_CTL_FLOW_COUNTERS;
    struct tlsnic_ctl_flow_page page = {0};
    for (int pages = 0; err == 0 && pages < MAX_FLOW_PAGES; pages++) {
        struct tlsnic_ctl_msg req = {.type = TLSNIC_CTL_FLOW_STATS, .first = (uint32_t)filled};
        err = tlsnic_ctl_chan_call(ch, &req, NULL, 0);
        if (err == 0)
            err = tlsnic_ctl_flow_page_decode(ch->reply.payload, ch->reply.payload_len, &page,
                                              page_entries, TLSNIC_CTL_FLOW_PAGE_MAX);
        if (err < 0)
            break;
        listed = page.total;
        if (page.n_counters < carried)
            carried = page.n_counters;
        for (uint32_t i = 0; i < page.count && filled < cap; i++)
            out[filled++] = page_entries[i];
        /* Done when the list is read or out is full; a page that adds nothing ends it too
         * (the list shrank under us). */
        if (filled >= cap || filled >= page.total || page.count == 0)
            break;
    }
    tlsnic_ctl_chan_close(ch);
    free(ch);
    free(page_entries);
    if (err < 0)
        return err;
    /* Counters this build does not know were dropped by keeping only the first ones. */
    for (size_t i = 0; i < filled; i++)
        memset(out[i].counters + carried, 0, sizeof(out[i].counters) - carried * sizeof(uint64_t));
    if (total != NULL)
        *total = listed;
    if (n_counters != NULL)
        *n_counters = carried;
    return (int)filled;
}
