/* The daemon as a struct tlsnic_dev: the host side of the control channel (see ctl.h). */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "tlsnic/check.h"
#include "tlsnic/ctl.h"
#include "tlsnic/shmstore.h"

#define DEFAULT_TIMEOUT_MS 5000
/* Replies to requests that timed out may still arrive; this many are skipped at most. */
#define MAX_STALE_REPLIES 64

/*
 * The host socket layer asks for a flow's flags before every record; each answer is a
 * round trip to the daemon, which cost more host CPU than the encryption the device saves.
 * So an answer is reused for FLAGS_FRESH_NS. Acting on a flag that late is safe: the device
 * has already dropped every packet it could not encrypt safely (changed plaintext, no
 * resync data) and TCP only retransmits into the same drop; the flags tell the host to
 * abort the connection.
 */
#define FLAGS_FRESH_NS 1000000ull
#define FLAGS_CACHE_SLOTS 64

struct flags_entry {
    struct tlsnic_flow flow;
    enum tlsnic_dir dir;
    uint32_t flags;
    uint64_t asked_ns; /* 0: empty */
};

struct ctl_client {
    struct tlsnic_dev dev; /* first: the ops get &dev */
    struct sockaddr_un addr;
    int fd;
    int timeout_ms;
    pthread_mutex_t lock;
    uint32_t next_id;
    char last_error[TLSNIC_CTL_MAX_TEXT + 1];
    uint8_t buf[TLSNIC_CTL_MAX_MSG];
    struct tlsnic_ctl_msg reply; /* points into buf; valid under lock after request() */
    struct flags_entry flags_cache[FLAGS_CACHE_SLOTS]; /* under lock */
};

static struct ctl_client *client_of(struct tlsnic_dev *dev)
{
    return dev->priv;
}

static uint64_t monotonic_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Field by field: struct tlsnic_flow has padding, which callers need not have zeroed. */
static int flow_equal(const struct tlsnic_flow *a, const struct tlsnic_flow *b)
{
    return a->family == b->family && a->local_port == b->local_port &&
           a->remote_port == b->remote_port && memcmp(a->local, b->local, sizeof(a->local)) == 0 &&
           memcmp(a->remote, b->remote, sizeof(a->remote)) == 0;
}

static struct flags_entry *flags_slot(struct ctl_client *cl, const struct tlsnic_flow *flow,
                                      enum tlsnic_dir dir)
{
    uint32_t h = (uint32_t)flow->local_port * 31u + flow->remote_port + (uint32_t)dir * 7u;
    for (size_t i = 0; i < sizeof(flow->remote); i++)
        h = h * 131u + flow->remote[i];
    return &cl->flags_cache[h % FLAGS_CACHE_SLOTS];
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int send_request(struct ctl_client *cl, const uint8_t *msg, size_t len,
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
    ssize_t n = sendmsg(cl->fd, &mh, MSG_NOSIGNAL);
    if (n == (ssize_t)len)
        return 0;
    if (n < 0 && errno != EPIPE && errno != ECONNRESET && errno != ENOTCONN)
        return -errno;
    return -ENODEV;
}

/*
 * One request/reply exchange. Caller holds the lock. Returns the reply status (the
 * daemon's 0 or -errno), or a local -errno (-ENODEV when the daemon is gone).
 */
static int request(struct ctl_client *cl, struct tlsnic_ctl_msg *req, const int *pass_fds,
                   int n_fds)
{
    if (cl->fd < 0)
        return -ENODEV;
    req->id = ++cl->next_id;
    int len = tlsnic_ctl_encode(req, cl->buf, sizeof(cl->buf));
    if (len < 0)
        return len;
    int err = send_request(cl, cl->buf, (size_t)len, pass_fds, n_fds);
    if (err < 0)
        return err;
    int64_t deadline = now_ms() + cl->timeout_ms;
    for (int skipped = 0; skipped <= MAX_STALE_REPLIES; skipped++) {
        int64_t left = deadline - now_ms();
        if (left <= 0)
            return -ETIMEDOUT;
        struct pollfd pfd = {.fd = cl->fd, .events = POLLIN};
        int ready = poll(&pfd, 1, (int)left);
        if (ready < 0 && errno == EINTR)
            continue;
        if (ready < 0)
            return -errno;
        if (ready == 0)
            return -ETIMEDOUT;
        ssize_t n = recv(cl->fd, cl->buf, sizeof(cl->buf), MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (n <= 0)
            return -ENODEV;
        err = tlsnic_ctl_decode(cl->buf, (size_t)n, &cl->reply);
        if (err < 0 || cl->reply.type != TLSNIC_CTL_REPLY)
            return -EBADMSG;
        if (cl->reply.id != req->id)
            continue; /* the late answer to a request that timed out */
        size_t tl = cl->reply.text_len;
        if (cl->reply.status < 0) {
            memcpy(cl->last_error, cl->reply.text, tl);
            cl->last_error[tl] = '\0';
        }
        return cl->reply.status;
    }
    return -EBADMSG;
}

static int client_add(struct tlsnic_dev *dev, int sockfd, const struct tlsnic_flow *flow,
                      enum tlsnic_dir dir, const void *crypto_info, size_t info_len,
                      uint32_t start_tcp_seq, const struct tlsnic_rec_store *store)
{
    struct ctl_client *cl = client_of(dev);
    if (sockfd < 0)
        return -EBADF;
    if (crypto_info == NULL || info_len > TLSNIC_CTL_MAX_INFO || (unsigned)dir > 1)
        return -EINVAL;
    struct tlsnic_ctl_msg req = {.type = TLSNIC_CTL_ADD, .dir = (uint8_t)dir,
                                 .tcp_seq = start_tcp_seq, .info = crypto_info,
                                 .info_len = (uint16_t)info_len};
    /* A shared-memory store travels with the socket; any other store stays host-local. */
    int fds[2] = {sockfd, tlsnic_shm_store_fd(store)};
    pthread_mutex_lock(&cl->lock);
    if (flow != NULL) /* a new flow on an old 4-tuple must not see the old one's flags */
        flags_slot(cl, flow, dir)->asked_ns = 0;
    int err = request(cl, &req, fds, fds[1] >= 0 ? 2 : 1);
    pthread_mutex_unlock(&cl->lock);
    return err;
}

static int client_del(struct tlsnic_dev *dev, int sockfd, const struct tlsnic_flow *flow,
                      enum tlsnic_dir dir)
{
    struct ctl_client *cl = client_of(dev);
    if (sockfd < 0)
        return -EBADF;
    if ((unsigned)dir > 1)
        return -EINVAL;
    struct tlsnic_ctl_msg req = {.type = TLSNIC_CTL_DEL, .dir = (uint8_t)dir};
    pthread_mutex_lock(&cl->lock);
    int err = request(cl, &req, &sockfd, 1);
    pthread_mutex_unlock(&cl->lock);
    return err;
}

static int client_resync(struct tlsnic_dev *dev, int sockfd, const struct tlsnic_flow *flow,
                         enum tlsnic_dir dir, uint32_t tcp_seq, uint64_t rec_seq)
{
    struct ctl_client *cl = client_of(dev);
    if (sockfd < 0)
        return -EBADF;
    if ((unsigned)dir > 1)
        return -EINVAL;
    struct tlsnic_ctl_msg req = {.type = TLSNIC_CTL_RESYNC, .dir = (uint8_t)dir,
                                 .tcp_seq = tcp_seq, .rec_seq = rec_seq};
    pthread_mutex_lock(&cl->lock);
    int err = request(cl, &req, &sockfd, 1);
    pthread_mutex_unlock(&cl->lock);
    return err;
}

static int client_flow_flags(struct tlsnic_dev *dev, const struct tlsnic_flow *flow,
                             enum tlsnic_dir dir, uint32_t *flags)
{
    struct ctl_client *cl = client_of(dev);
    if (flow == NULL || flags == NULL || (unsigned)dir > 1)
        return -EINVAL;
    struct tlsnic_ctl_msg req = {.type = TLSNIC_CTL_FLOW_FLAGS, .dir = (uint8_t)dir,
                                 .flow = *flow};
    uint64_t now = monotonic_ns();
    pthread_mutex_lock(&cl->lock);
    struct flags_entry *cached = flags_slot(cl, flow, dir);
    if (cached->asked_ns != 0 && cached->dir == dir && now - cached->asked_ns < FLAGS_FRESH_NS &&
        flow_equal(&cached->flow, flow)) {
        *flags = cached->flags;
        pthread_mutex_unlock(&cl->lock);
        return 0;
    }
    int err = request(cl, &req, NULL, 0);
    if (err == 0 && cl->reply.payload_len != 4)
        err = -EBADMSG;
    if (err == 0) {
        const uint8_t *p = cl->reply.payload;
        *flags = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                 (uint32_t)p[3] << 24;
        *cached = (struct flags_entry){.flow = *flow, .dir = dir, .flags = *flags,
                                       .asked_ns = now};
    }
    pthread_mutex_unlock(&cl->lock);
    return err;
}

static const struct tlsnic_dev_ops client_ops = {
    .name = "tlsnicd",
    .add = client_add,
    .del = client_del,
    .resync = client_resync,
    .flow_flags = client_flow_flags,
};

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

int tlsnic_ctl_client_open(const char *path, int timeout_ms, struct tlsnic_dev **out)
{
    if (path == NULL || out == NULL || timeout_ms < 0)
        return -EINVAL;
    size_t path_len = strlen(path);
    struct ctl_client *cl = calloc(1, sizeof(*cl));
    if (cl == NULL)
        return -ENOMEM;
    cl->addr.sun_family = AF_UNIX;
    if (path_len == 0 || path_len >= sizeof(cl->addr.sun_path)) {
        free(cl);
        return -ENAMETOOLONG;
    }
    memcpy(cl->addr.sun_path, path, path_len + 1);
    cl->fd = connect_to(&cl->addr);
    if (cl->fd < 0) {
        int err = cl->fd;
        free(cl);
        return err;
    }
    int lock_err = pthread_mutex_init(&cl->lock, NULL);
    if (lock_err != 0) {
        close(cl->fd);
        free(cl);
        return -lock_err;
    }
    cl->timeout_ms = timeout_ms ? timeout_ms : DEFAULT_TIMEOUT_MS;
    cl->dev.ops = &client_ops;
    cl->dev.priv = cl;
    *out = &cl->dev;
    return 0;
}

int tlsnic_ctl_client_fd(struct tlsnic_dev *dev)
{
    struct ctl_client *cl = client_of(dev);
    pthread_mutex_lock(&cl->lock);
    int fd = cl->fd;
    pthread_mutex_unlock(&cl->lock);
    return fd;
}

int tlsnic_ctl_client_reconnect(struct tlsnic_dev *dev)
{
    struct ctl_client *cl = client_of(dev);
    pthread_mutex_lock(&cl->lock);
    if (cl->fd >= 0)
        close(cl->fd);
    cl->fd = connect_to(&cl->addr);
    int err = cl->fd < 0 ? cl->fd : 0;
    pthread_mutex_unlock(&cl->lock);
    return err;
}

void tlsnic_ctl_client_close(struct tlsnic_dev *dev)
{
    if (dev == NULL)
        return;
    struct ctl_client *cl = client_of(dev);
    if (cl->fd >= 0)
        close(cl->fd);
    pthread_mutex_destroy(&cl->lock);
    free(cl);
}

const char *tlsnic_ctl_client_last_error(struct tlsnic_dev *dev)
{
    return client_of(dev)->last_error;
}

int tlsnic_ctl_query_stats(const char *path, char *buf, size_t cap)
{
    if (buf == NULL || cap == 0)
        return -EINVAL;
    struct tlsnic_dev *dev;
    int err = tlsnic_ctl_client_open(path, 0, &dev);
    if (err < 0)
        return err;
    struct ctl_client *cl = client_of(dev);
    struct tlsnic_ctl_msg req = {.type = TLSNIC_CTL_STATS};
    err = request(cl, &req, NULL, 0);
    if (err == 0 && cl->reply.payload_len >= cap)
        err = -ENOBUFS;
    if (err == 0) {
        memcpy(buf, cl->reply.payload, cl->reply.payload_len);
        buf[cl->reply.payload_len] = '\0';
        err = (int)cl->reply.payload_len;
    }
    tlsnic_ctl_client_close(dev);
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
    struct tlsnic_dev *dev;
    int err = tlsnic_ctl_client_open(path, 0, &dev);
    if (err < 0) {
        free(page_entries);
        return err;
    }
    struct ctl_client *cl = client_of(dev);
    size_t filled = 0;
    uint32_t listed = 0;
    uint16_t carried = TLSNIC_CTL_FLOW_COUNTERS;
    struct tlsnic_ctl_flow_page page = {0};
    for (int pages = 0; err == 0 && pages < MAX_FLOW_PAGES; pages++) {
        struct tlsnic_ctl_msg req = {.type = TLSNIC_CTL_FLOW_STATS, .first = (uint32_t)filled};
        err = request(cl, &req, NULL, 0);
        if (err == 0)
            err = tlsnic_ctl_flow_page_decode(cl->reply.payload, cl->reply.payload_len, &page,
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
    tlsnic_ctl_client_close(dev);
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
