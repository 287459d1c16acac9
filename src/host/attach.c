/* The host socket layer using tlsnicd by itself (see tlsnic/attach.h). */
#include "tlsnic/attach.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "tlsnic/ctl_client.h"
#include "tlsnic/ktls.h"
#include "tlsnic/rx_status.h"
#include "tlsnic/shm_writer.h"
#include "tcpinfo.h"

/* The device ktls sees: the control client once connected, "unreachable" before. */
struct attach {
    struct tlsnic_dev dev;
    pthread_mutex_t lock;                 /* connecting, starting the watcher */
    _Atomic(struct tlsnic_dev *) client;  /* set at the first connection and never freed
                                             (process lifetime); a forked child forgets it */
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    uint32_t slots;
    int debug;
    atomic_ulong readded;
};

static struct attach the_attach;
static atomic_int attached;

__attribute__((format(printf, 2, 3))) static void note(const struct attach *a, const char *fmt,
                                                       ...)
{
    if (!a->debug)
        return;
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    fprintf(stderr, "tlsnic-attach: %s\n", line);
}

/* True when the control connection has ended (EOF / hangup); a pending reply is not an end. */
static int connection_ended(int fd, short revents)
{
    if (fd < 0 || (revents & (POLLHUP | POLLERR | POLLNVAL)))
        return 1;
    if (!(revents & POLLIN))
        return 0;
    char c;
    ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR);
}

static int connection_alive(struct tlsnic_dev *client)
{
    int fd = tlsnic_ctl_client_fd(client);
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    if (fd >= 0 && poll(&pfd, 1, 0) < 0)
        return 1; /* cannot tell: let the next request find out */
    return !connection_ended(fd, fd >= 0 ? pfd.revents : 0);
}

/* Set while this thread re-adds: an add that fails then must not reconnect (again). */
static _Thread_local int readding;

/*
 * If the control connection has ended: one attempt to connect again and, when a daemon
 * listens, re-add every context. Serialised, so that two threads never both reconnect
 * (a second reconnect would end the connection that owns the re-added flows). 0 when the
 * connection is alive afterwards, else the negative errno of connect.
 */
static int reconnect_and_readd(struct attach *a)
{
    struct tlsnic_dev *client = atomic_load(&a->client);
    pthread_mutex_lock(&a->lock);
    int err = 0;
    if (!connection_alive(client)) {
        err = tlsnic_ctl_client_reconnect(client);
        if (err == 0) {
            readding = 1;
            int n = tlsnic_device_readd(&a->dev);
            readding = 0;
            if (n > 0)
                atomic_fetch_add(&a->readded, (unsigned long)n);
            note(a, "daemon back at %s: %d context(s) re-added%s", a->path, n < 0 ? 0 : n,
                 n < 0 ? " (some refused)" : "");
        }
    }
    pthread_mutex_unlock(&a->lock);
    return err;
}

/*
 * Waits for the daemon to go away, then for one to listen again, then re-adds. Runs for
 * the life of the process (the contexts it looks after live as long).
 */
static void *watch_daemon(void *arg)
{
    struct attach *a = arg;
    struct tlsnic_dev *client = atomic_load(&a->client);
    for (;;) {
        int fd = tlsnic_ctl_client_fd(client);
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (fd >= 0) {
            int ready = poll(&pfd, 1, 1000);
            if (ready < 0 && errno == EINTR)
                continue;
            if (ready == 0)
                continue; /* the fd may have been replaced by a reconnect elsewhere */
            if (ready < 0 || !connection_ended(fd, pfd.revents)) {
                /* A reply that a request will read: give it the time to. */
                poll(NULL, 0, 10);
                continue;
            }
        }
        note(a, "daemon gone; reconnecting to %s every %d ms", a->path, TLSNIC_ATTACH_RETRY_MS);
        while (reconnect_and_readd(a) < 0)
            poll(NULL, 0, TLSNIC_ATTACH_RETRY_MS);
    }
    return NULL;
}

/* Connects on first use; 0 and the client, or the negative errno of connect. */
static int client_get(struct attach *a, struct tlsnic_dev **out)
{
    struct tlsnic_dev *client = atomic_load(&a->client);
    if (client) {
        *out = client;
        return 0;
    }
    pthread_mutex_lock(&a->lock);
    int err = 0;
    client = atomic_load(&a->client);
    if (!client) {
        err = tlsnic_ctl_client_open(a->path, 0, &client);
        if (err == 0) {
            pthread_t t;
            pthread_attr_t attr;
            pthread_attr_init(&attr);
            pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
            atomic_store(&a->client, client);
            int terr = pthread_create(&t, &attr, watch_daemon, a);
            pthread_attr_destroy(&attr);
            if (terr != 0)
                note(a, "no watcher thread (%s): a daemon restart will not be survived",
                     strerror(terr));
            note(a, "connected to the daemon at %s", a->path);
        } else {
            note(a, "no daemon at %s (%s): software", a->path, strerror(-err));
        }
    }
    pthread_mutex_unlock(&a->lock);
    *out = client;
    return err;
}

static int attach_add(struct tlsnic_dev *dev, int sockfd, const struct tlsnic_flow *flow,
                      enum tlsnic_dir dir, const void *crypto_info, size_t info_len,
                      uint32_t start_tcp_seq, const struct tlsnic_rec_store *store)
{
    struct tlsnic_dev *client;
    int err = client_get(dev->priv, &client);
    if (err < 0)
        return err;
    err = client->ops->add(client, sockfd, flow, dir, crypto_info, info_len, start_tcp_seq,
                           store);
    /* The daemon restarted and the watcher has not noticed yet: do its job now, once. */
    if (err == -ENODEV && !readding && reconnect_and_readd(dev->priv) == 0)
        err = client->ops->add(client, sockfd, flow, dir, crypto_info, info_len,
                               start_tcp_seq, store);
    return err;
}

static int attach_del(struct tlsnic_dev *dev, int sockfd, const struct tlsnic_flow *flow,
                      enum tlsnic_dir dir)
{
    struct tlsnic_dev *client = atomic_load(&((struct attach *)dev->priv)->client);
    return client ? client->ops->del(client, sockfd, flow, dir) : -ENODEV;
}

static int attach_resync(struct tlsnic_dev *dev, int sockfd, const struct tlsnic_flow *flow,
                         enum tlsnic_dir dir, uint32_t tcp_seq, uint64_t rec_seq)
{
    struct tlsnic_dev *client = atomic_load(&((struct attach *)dev->priv)->client);
    return client ? client->ops->resync(client, sockfd, flow, dir, tcp_seq, rec_seq) : -ENODEV;
}

static int attach_flow_flags(struct tlsnic_dev *dev, const struct tlsnic_flow *flow,
                             enum tlsnic_dir dir, uint32_t *flags)
{
    struct tlsnic_dev *client = atomic_load(&((struct attach *)dev->priv)->client);
    return client ? client->ops->flow_flags(client, flow, dir, flags) : -ENODEV;
}

static int attach_release(struct tlsnic_dev *dev, int sockfd, const struct tlsnic_flow *flow,
                          enum tlsnic_dir dir, unsigned flags)
{
    struct tlsnic_dev *client = atomic_load(&((struct attach *)dev->priv)->client);
    if (!client)
        return -ENODEV;
    int err = client->ops->release(client, sockfd, flow, dir, flags);
    /* The daemon restarted and the watcher has not re-added yet: do its job now, once (the
       closing context is still registered, so the re-add covers it). */
    if (err == -ENODEV && !readding && reconnect_and_readd(dev->priv) == 0)
        err = client->ops->release(client, sockfd, flow, dir, flags);
    return err;
}

static int attach_rekey(struct tlsnic_dev *dev, int sockfd, const struct tlsnic_flow *flow,
                        enum tlsnic_dir dir, const void *crypto_info, size_t info_len,
                        uint32_t tcp_seq)
{
    struct tlsnic_dev *client = atomic_load(&((struct attach *)dev->priv)->client);
    return client && client->ops->rekey
               ? client->ops->rekey(client, sockfd, flow, dir, crypto_info, info_len, tcp_seq)
               : -ENODEV;
}

/* RX too: the store ops below give every RX context its status in shared memory. A daemon
 * whose device does not decrypt refuses the add, and RX stays in software. */
static const struct tlsnic_dev_ops attach_ops = {
    .name = "tlsnicd",
    .add = attach_add,
    .del = attach_del,
    .resync = attach_resync,
    .flow_flags = attach_flow_flags,
    .release = attach_release,
    .rekey = attach_rekey,
    .caps = TLSNIC_DEV_CAP_RX,
};

/* ---- the record store in shared memory ------------------------------------------------ */

static int shm_open_store(void *ctx, void **store)
{
    const uint32_t *n_slots = ctx;
    return tlsnic_shm_writer_new((tlsnic_shm_writer **)store, *n_slots, 0);
}

static int shm_put(void *store, uint32_t tcp_seq, uint64_t rec_seq, const uint8_t *rec,
                   uint32_t len)
{
    return tlsnic_shm_writer_put(store, tcp_seq, rec_seq, rec, len);
}

static int shm_reserve(void *store, uint32_t len, uint8_t **room)
{
    return tlsnic_shm_writer_reserve(store, len, room);
}

static int shm_commit(void *store, uint32_t tcp_seq, uint64_t rec_seq, uint32_t len)
{
    return tlsnic_shm_writer_commit(store, tcp_seq, rec_seq, len);
}

static uint32_t shm_device_flags(void *store)
{
    return tlsnic_shm_writer_device_flags(store);
}

static void shm_release(void *store, uint32_t acked_seq)
{
    tlsnic_shm_writer_release(store, acked_seq);
}

static const struct tlsnic_rec_store *shm_view(void *store)
{
    return tlsnic_shm_writer_store(store);
}

static void shm_close(void *store)
{
    tlsnic_shm_writer_free(store);
}

static void shm_retire(void *store)
{
    tlsnic_shm_writer_retire(store);
}

static void shm_forget(void *store)
{
    tlsnic_shm_writer_forget(store);
}

static int shm_open_rx(void *ctx, void **store)
{
    (void)ctx;
    return tlsnic_shm_writer_new_rx((tlsnic_shm_writer **)store,
                                    tlsnic_rxs_entries_for(tlsnic_tcp_rmem_max()));
}

static struct tlsnic_rxs *shm_rx_status(void *store)
{
    return tlsnic_shm_writer_rx_status(store);
}

const struct tlsnic_dev_store_ops tlsnic_attach_shm_store_ops = {
    .open = shm_open_store,
    .put = shm_put,
    .reserve = shm_reserve,
    .commit = shm_commit,
    .device_flags = shm_device_flags,
    .release = shm_release,
    .view = shm_view,
    .close = shm_close,
    .retire = shm_retire,
    .forget = shm_forget,
    .open_rx = shm_open_rx,
    .rx_status = shm_rx_status,
};

/* ---- setup ------------------------------------------------------------------------------ */

/*
 * A forked child (nginx workers, ...) has no watcher thread and must not share the parent's
 * control connection (replies would go to whichever process reads first): it forgets the
 * connection, leaving the fd to the parent (CLOEXEC closes it at exec), and connects on its
 * own at its first offer. The client struct is left behind: its lock may have been held
 * by a thread that does not exist in the child.
 */
static void forget_connection_in_child(void)
{
    atomic_store(&the_attach.client, NULL);
    pthread_mutex_init(&the_attach.lock, NULL);
}

int tlsnic_attach_daemon(const char *path)
{
    if (path == NULL)
        path = getenv("TLSNIC_CTL");
    if (path == NULL || path[0] == '\0')
        path = TLSNIC_ATTACH_DEFAULT_CTL;
    if (strcmp(path, "off") == 0)
        return 0;
    if (strlen(path) >= sizeof(the_attach.path))
        return -ENAMETOOLONG;
    int expected = 0;
    if (!atomic_compare_exchange_strong(&attached, &expected, 1))
        return -EALREADY;
    struct attach *a = &the_attach;
    pthread_mutex_init(&a->lock, NULL);
    memcpy(a->path, path, strlen(path) + 1);
    a->slots = TLSNIC_ATTACH_DEFAULT_SLOTS;
    const char *slots = getenv("TLSNIC_SHM_SLOTS");
    if (slots != NULL) {
        unsigned long n = strtoul(slots, NULL, 10);
        if (n >= 16 && n <= TLSNIC_SHM_MAX_RECORDS)
            a->slots = (uint32_t)n;
    }
    a->debug = getenv("TLSNIC_ATTACH_DEBUG") != NULL;
    a->dev.ops = &attach_ops;
    a->dev.priv = a;
    pthread_atfork(NULL, NULL, forget_connection_in_child);
    struct tlsnic_offload off = {.dev = &a->dev, .store_ops = &tlsnic_attach_shm_store_ops,
                                 .store_ctx = &a->slots};
    tlsnic_set_default_offload(&off);
    return 0;
}

const char *tlsnic_attach_path(void)
{
    return atomic_load(&attached) ? the_attach.path : "";
}

unsigned long tlsnic_attach_restarts_seen(void)
{
    return atomic_load(&the_attach.readded);
}
