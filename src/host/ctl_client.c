/* The daemon as a struct tlsnic_dev: the host side of the control channel (ctl_client.h). */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "tlsnic/ctl_client.h"

#include "tlsnic/check.h"
#include "tlsnic/ctl_chan.h"
#include "tlsnic/shm_writer.h"


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
    pthread_mutex_t lock;
    struct tlsnic_ctl_chan chan;                       /* under lock */
    struct flags_entry flags_cache[FLAGS_CACHE_SLOTS]; /* under lock */
};

/* One request/reply exchange. Caller holds the lock. */
static int request(struct ctl_client *cl, struct tlsnic_ctl_msg *req, const int *pass_fds,
                   int n_fds)
{
    return tlsnic_ctl_chan_call(&cl->chan, req, pass_fds, n_fds);
}

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

static int client_release(struct tlsnic_dev *dev, int sockfd, const struct tlsnic_flow *flow,
                          enum tlsnic_dir dir, unsigned flags)
{
    struct ctl_client *cl = client_of(dev);
    (void)flow;
    if (sockfd < 0)
        return -EBADF;
    if ((unsigned)dir > 1 || (flags & ~TLSNIC_RELEASE_ABORT) != 0)
        return -EINVAL;
    struct tlsnic_ctl_msg req = {.type = TLSNIC_CTL_RELEASE, .dir = (uint8_t)dir,
                                 .release_flags = (flags & TLSNIC_RELEASE_ABORT)
                                                      ? TLSNIC_CTL_RELEASE_ABORT : 0};
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
    if (err == 0 && cl->chan.reply.payload_len != 4)
        err = -EBADMSG;
    if (err == 0) {
        const uint8_t *p = cl->chan.reply.payload;
        *flags = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                 (uint32_t)p[3] << 24;
        *cached = (struct flags_entry){.flow = *flow, .dir = dir, .flags = *flags,
                                       .asked_ns = now};
    }
    pthread_mutex_unlock(&cl->lock);
    return err;
}

static int client_rekey(struct tlsnic_dev *dev, int sockfd, const struct tlsnic_flow *flow,
                        enum tlsnic_dir dir, const void *crypto_info, size_t info_len,
                        uint32_t tcp_seq)
{
    struct ctl_client *cl = client_of(dev);
    if (sockfd < 0)
        return -EBADF;
    if (crypto_info == NULL || info_len > TLSNIC_CTL_MAX_INFO || (unsigned)dir > 1)
        return -EINVAL;
    struct tlsnic_ctl_msg req = {.type = TLSNIC_CTL_REKEY, .dir = (uint8_t)dir,
                                 .tcp_seq = tcp_seq, .info = crypto_info,
                                 .info_len = (uint16_t)info_len};
    pthread_mutex_lock(&cl->lock);
    int err = request(cl, &req, &sockfd, 1);
    pthread_mutex_unlock(&cl->lock);
    return err;
}

/*
 * No TLSNIC_DEV_CAP_RX here: RX through tlsnicd needs the RX status in shared memory,
 * which the client alone does not set up (a host given this device keeps RX in software).
 * attach.c, which installs the shared-memory store ops, offers RX through it.
 */
static const struct tlsnic_dev_ops client_ops = {
    .name = "tlsnicd",
    .add = client_add,
    .del = client_del,
    .resync = client_resync,
    .flow_flags = client_flow_flags,
    .release = client_release,
    .rekey = client_rekey,
};

int tlsnic_ctl_client_open(const char *path, int timeout_ms, struct tlsnic_dev **out)
{
    if (path == NULL || out == NULL || timeout_ms < 0)
        return -EINVAL;
    struct ctl_client *cl = calloc(1, sizeof(*cl));
    if (cl == NULL)
        return -ENOMEM;
    int err = tlsnic_ctl_chan_open(&cl->chan, path, timeout_ms);
    int lock_err = err == 0 ? pthread_mutex_init(&cl->lock, NULL) : 0;
    if (err < 0 || lock_err != 0) {
        tlsnic_ctl_chan_close(&cl->chan);
        free(cl);
        return err < 0 ? err : -lock_err;
    }
    cl->dev.ops = &client_ops;
    cl->dev.priv = cl;
    *out = &cl->dev;
    return 0;
}

int tlsnic_ctl_client_fd(struct tlsnic_dev *dev)
{
    struct ctl_client *cl = client_of(dev);
    pthread_mutex_lock(&cl->lock);
    int fd = cl->chan.fd;
    pthread_mutex_unlock(&cl->lock);
    return fd;
}

int tlsnic_ctl_client_reconnect(struct tlsnic_dev *dev)
{
    struct ctl_client *cl = client_of(dev);
    pthread_mutex_lock(&cl->lock);
    int err = tlsnic_ctl_chan_reconnect(&cl->chan);
    pthread_mutex_unlock(&cl->lock);
    return err;
}

void tlsnic_ctl_client_close(struct tlsnic_dev *dev)
{
    if (dev == NULL)
        return;
    struct ctl_client *cl = client_of(dev);
    tlsnic_ctl_chan_close(&cl->chan);
    pthread_mutex_destroy(&cl->lock);
    free(cl);
}

const char *tlsnic_ctl_client_last_error(struct tlsnic_dev *dev)
{
    return client_of(dev)->chan.last_error;
}
