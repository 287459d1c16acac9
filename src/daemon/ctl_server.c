/* tlsnicd's control channel, daemon side (see ctl.h for the protocol and its rules). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "tlsnic/ctl_server.h"
#include "tlsnic/shm_reader.h"

#define DEFAULT_MAX_CLIENTS 32u
#define DEFAULT_MAX_FLOWS 4096u
/* Entries of one FLOW_STATS reply: as many as fit with every counter this build knows. */
#define FLOW_PAGE_ROOM                                                                        \
    ((TLSNIC_CTL_MAX_PAYLOAD - TLSNIC_CTL_FLOW_PAGE_HDR_LEN) /                              \
     TLSNIC_CTL_FLOW_ENTRY_LEN(TLSNIC_CTL_FLOW_COUNTERS))
#define MAX_FDS_PER_MSG 4 /* more than ADD's two is refused; room to see and close them */

#ifndef SO_COOKIE
#define SO_COOKIE 57
#endif

struct client {
    int fd;          /* -1 = free slot */
    uint32_t serial; /* never reused: names the owner of flows */
    struct ucred cred;
};

struct owned_flow {
    bool used;
    struct tlsnic_flow flow;
    enum tlsnic_dir dir;
    uint64_t cookie;        /* SO_COOKIE of the socket that was added */
    uint32_t owner_serial;  /* control connection that added it */
    pid_t owner_pid;
    tlsnic_shm_reader *store; /* the host's record store, mapped read-only; may be NULL */
    uint32_t published;       /* flags last published into the store (| LIVE once done) */
};

struct ctl_counters {
    uint64_t connections;
    uint64_t requests;
    uint64_t refused;
    uint64_t adds;
    uint64_t dels;
    uint64_t resyncs;
    uint64_t flows_reaped; /* deleted because their control connection closed */
    uint64_t fences_lifted;
    uint64_t state_errors;
};

struct tlsnic_ctl_server {
    struct tlsnic_ctl_server_config cfg;
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    int listen_fd;
    struct client *clients;
    uint32_t max_clients;
    struct owned_flow *flows;
    uint32_t max_flows;
    uint64_t published_ns; /* last tlsnic_ctl_server_publish_flags pass */
    uint32_t n_flows;
    uint32_t next_serial;
    bool shutting_down;     /* the state file keeps what was offloaded when we stopped */
    struct ctl_counters counters;
    struct tlsnic_ctl_flow_entry ended[TLSNIC_CTL_ENDED_FLOWS]; /* ring, oldest at ended_head */
    uint32_t ended_head;
    uint32_t n_ended;
    uint8_t rx[TLSNIC_CTL_MAX_MSG + 1];
    uint8_t tx[TLSNIC_CTL_MAX_MSG];
    char payload[TLSNIC_CTL_MAX_PAYLOAD];
    struct tlsnic_ctl_flow_entry page_entries[FLOW_PAGE_ROOM];
};

/* What one request produced: status, a reason for a person, an optional payload. */
struct outcome {
    int status;
    char text[TLSNIC_CTL_MAX_TEXT];
    const void *payload;
    size_t payload_len;
};

static void set_outcome(struct outcome *o, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_outcome(struct outcome *o, int status, const char *fmt, ...)
{
    o->status = status;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(o->text, sizeof(o->text), fmt, ap);
    va_end(ap);
}

static void logf_(const tlsnic_ctl_server *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void logf_(const tlsnic_ctl_server *s, const char *fmt, ...)
{
    if (s->cfg.log == NULL)
        return;
    va_list ap;
    va_start(ap, fmt);
    fputs("tlsnicd ctl: ", s->cfg.log);
    vfprintf(s->cfg.log, fmt, ap);
    fputc('\n', s->cfg.log);
    fflush(s->cfg.log);
    va_end(ap);
}

static const char *dir_name(enum tlsnic_dir dir)
{
    return dir == TLSNIC_DIR_TX ? "tx" : "rx";
}

static void flow_text(const struct tlsnic_flow *f, char *buf, size_t cap)
{
    char l[INET6_ADDRSTRLEN] = "?", r[INET6_ADDRSTRLEN] = "?";
    inet_ntop(f->family, f->local, l, sizeof(l));
    inet_ntop(f->family, f->remote, r, sizeof(r));
    const char *fmt = f->family == AF_INET6 ? "[%s]:%u -> [%s]:%u" : "%s:%u -> %s:%u";
    snprintf(buf, cap, fmt, l, f->local_port, r, f->remote_port);
}

static bool flow_equal(const struct tlsnic_flow *a, const struct tlsnic_flow *b)
{
    return a->family == b->family && a->local_port == b->local_port &&
           a->remote_port == b->remote_port && memcmp(a->local, b->local, 16) == 0 &&
           memcmp(a->remote, b->remote, 16) == 0;
}

/* The flow a passed socket names: the only source of a 4-tuple the daemon trusts. */
static int flow_from_socket(int fd, struct tlsnic_flow *flow, uint64_t *cookie,
                            struct outcome *o)
{
    int domain = 0, type = 0, protocol = 0;
    socklen_t sl = sizeof(int);
    if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &sl) < 0) {
        set_outcome(o, -errno, "the passed fd is not a socket");
        return o->status;
    }
    sl = sizeof(int);
    int err = getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &sl);
    sl = sizeof(int);
    if (err == 0)
        err = getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &protocol, &sl);
    if (err < 0) {
        set_outcome(o, -errno, "cannot read the socket's type");
        return o->status;
    }
    if ((domain != AF_INET && domain != AF_INET6) || type != SOCK_STREAM ||
        protocol != IPPROTO_TCP) {
        set_outcome(o, -EPROTONOSUPPORT, "the passed socket is not a TCP socket");
        return o->status;
    }
    /* The cookie first: it names the socket even after its connection is gone. */
    sl = sizeof(*cookie);
    if (getsockopt(fd, SOL_SOCKET, SO_COOKIE, cookie, &sl) < 0) {
        set_outcome(o, -errno, "cannot read the socket cookie");
        return o->status;
    }
    err = tlsnic_flow_from_socket(fd, flow);
    if (err == -ENOTCONN)
        set_outcome(o, err, "the passed TCP socket is not connected");
    else if (err == -EAFNOSUPPORT)
        set_outcome(o, err, "unexpected socket address family");
    else if (err < 0)
        set_outcome(o, err, "getsockname failed");
    if (err < 0)
        return o->status;
    return 0;
}

static struct owned_flow *find_flow(tlsnic_ctl_server *s, const struct tlsnic_flow *flow,
                                    enum tlsnic_dir dir)
{
    for (uint32_t i = 0; i < s->max_flows; i++) {
        struct owned_flow *f = &s->flows[i];
        if (f->used && f->dir == dir && flow_equal(&f->flow, flow))
            return f;
    }
    return NULL;
}

static struct owned_flow *free_flow_slot(tlsnic_ctl_server *s)
{
    for (uint32_t i = 0; i < s->max_flows; i++) {
        if (!s->flows[i].used)
            return &s->flows[i];
    }
    return NULL;
}

/* A flow's FLOW_STATS entry with the device's counters as they are now. */
static void flow_entry(const tlsnic_ctl_server *s, const struct owned_flow *f,
                       struct tlsnic_ctl_flow_entry *e)
{
    memset(e, 0, sizeof(*e));
    e->flow = f->flow;
    e->dir = (uint8_t)f->dir;
    e->owner_pid = (uint32_t)f->owner_pid;
    int err = s->cfg.flow_counters == NULL
                  ? -EOPNOTSUPP
                  : s->cfg.flow_counters(s->cfg.flow_counters_ctx, &f->flow, f->dir, e->counters,
                                         TLSNIC_CTL_FLOW_COUNTERS);
    if (err < 0) {
        memset(e->counters, 0, sizeof(e->counters));
        e->flags |= TLSNIC_CTL_FLOW_NO_COUNTERS;
    }
}

/* Keeps the flow's last counters for FLOW_STATS: called just before the device's del. */
static void remember_ended(tlsnic_ctl_server *s, const struct owned_flow *f)
{
    uint32_t at = (s->ended_head + s->n_ended) % TLSNIC_CTL_ENDED_FLOWS;
    if (s->n_ended == TLSNIC_CTL_ENDED_FLOWS)
        s->ended_head = (s->ended_head + 1) % TLSNIC_CTL_ENDED_FLOWS; /* the oldest goes */
    else
        s->n_ended++;
    flow_entry(s, f, &s->ended[at]);
    s->ended[at].flags |= TLSNIC_CTL_FLOW_ENDED;
}

static void forget_flow(tlsnic_ctl_server *s, struct owned_flow *f)
{
    tlsnic_shm_reader_free(f->store); /* after the device's del: it no longer reads it */
    memset(f, 0, sizeof(*f));
    s->n_flows--;
}

struct state_list {
    struct tlsnic_flow_dir *entries;
    size_t n, cap;
    const tlsnic_ctl_server *s;
};

static void add_fenced(void *ctx, const struct tlsnic_flow *flow)
{
    struct state_list *l = ctx;
    if (l->n < l->cap)
        l->entries[l->n++] = (struct tlsnic_flow_dir){.flow = *flow, .dir = TLSNIC_DIR_TX};
}

static void add_fenced_rx(void *ctx, const struct tlsnic_flow *flow)
{
    struct state_list *l = ctx;
    if (l->n < l->cap)
        l->entries[l->n++] = (struct tlsnic_flow_dir){.flow = *flow, .dir = TLSNIC_DIR_RX};
}

/* Writes the offloaded and the still fenced flows to the state file (control path only). */
static void save_state(tlsnic_ctl_server *s)
{
    if (s->cfg.state_path == NULL || s->shutting_down)
        return;
    uint32_t fenced = (s->cfg.fence != NULL ? tlsnic_fence_count(s->cfg.fence) : 0) +
                      (s->cfg.rx_fence != NULL ? tlsnic_fence_count(s->cfg.rx_fence) : 0);
    struct state_list l = {.cap = (size_t)s->n_flows + fenced, .s = s};
    l.entries = calloc(l.cap ? l.cap : 1, sizeof(*l.entries));
    if (l.entries == NULL) {
        s->counters.state_errors++;
        return;
    }
    for (uint32_t i = 0; i < s->max_flows && l.n < l.cap; i++) {
        if (s->flows[i].used)
            l.entries[l.n++] = (struct tlsnic_flow_dir){.flow = s->flows[i].flow,
                                                        .dir = s->flows[i].dir};
    }
    /* A flow both fenced and offloaded cannot be: add lifts the fence first. */
    if (fenced > 0 && s->cfg.fence != NULL)
        tlsnic_fence_foreach(s->cfg.fence, add_fenced, &l);
    if (fenced > 0 && s->cfg.rx_fence != NULL)
        tlsnic_fence_foreach(s->cfg.rx_fence, add_fenced_rx, &l);
    int err = tlsnic_state_save(s->cfg.state_path, l.entries, l.n);
    free(l.entries);
    if (err < 0) {
        s->counters.state_errors++;
        logf_(s, "state file %s: %s", s->cfg.state_path, strerror(-err));
    }
}

/* The flow of an ADD/DEL/RESYNC: from the single socket passed with it. */
static int request_flow(int n_fds, const int *fds, int max_fds, struct tlsnic_flow *flow,
                        uint64_t *cookie, struct outcome *o)
{
    if (n_fds == 0) {
        set_outcome(o, -EBADF, "no socket passed (SCM_RIGHTS): only the socket names a flow");
        return o->status;
    }
    if (n_fds > max_fds) {
        set_outcome(o, -EINVAL, "too many fds passed");
        return o->status;
    }
    return flow_from_socket(fds[0], flow, cookie, o);
}

/* Writes the device's flags for f into the host's store, if they changed (no-op without one). */
static void publish_flags(tlsnic_ctl_server *s, struct owned_flow *f)
{
    uint32_t flags = 0;
    if (f->store == NULL || s->cfg.dev->ops->flow_flags == NULL ||
        s->cfg.dev->ops->flow_flags(s->cfg.dev, &f->flow, f->dir, &flags) < 0)
        return;
    flags |= TLSNIC_FLOW_F_LIVE;
    if (flags != f->published && tlsnic_shm_reader_publish_flags(f->store, flags) == 0)
        f->published = flags;
}

static void do_add(tlsnic_ctl_server *s, struct client *cl, const struct tlsnic_ctl_msg *m,
                   int n_fds, const int *fds, struct outcome *o)
{
    struct tlsnic_flow flow;
    uint64_t cookie;
    /* ADD: the socket, and optionally the host's record store (a sealed memfd). */
    if (request_flow(n_fds, fds, 2, &flow, &cookie, o) < 0)
        return;
    enum tlsnic_dir dir = (enum tlsnic_dir)m->dir;
    if (find_flow(s, &flow, dir) != NULL) {
        set_outcome(o, -EEXIST, "the flow is already offloaded in this direction");
        return;
    }
    struct owned_flow *slot = free_flow_slot(s);
    if (slot == NULL) {
        set_outcome(o, -ENOSPC, "flow table full (%u flows)", s->max_flows);
        return;
    }
    tlsnic_shm_reader *store = NULL;
    if (n_fds == 2) {
        int err = tlsnic_shm_reader_open(&store, fds[1]);
        if (err < 0) {
            set_outcome(o, err, "record store: %s", err == -EPERM ? "not a memfd sealed against shrinking"
                                                  : err == -EBADMSG ? "not a tlsnic store"
                                                                    : strerror(-err));
            return;
        }
    }
    /* RX: a device that decrypts writes what it did into the host's RX status, which
     * only an RX store carries; TX stores carry none. (What a device that does not say it
     * decrypts makes of an RX add is its own business: the channel carries it.) */
    const struct tlsnic_rec_store *rs = store != NULL ? tlsnic_shm_reader_store(store) : NULL;
    int rx_store = rs != NULL && rs->rx_status != NULL;
    int decrypts = (s->cfg.dev->ops->caps & TLSNIC_DEV_CAP_RX) != 0;
    if ((dir == TLSNIC_DIR_TX && rx_store) || (dir == TLSNIC_DIR_RX && decrypts && !rx_store)) {
        tlsnic_shm_reader_free(store);
        set_outcome(o, -EINVAL, dir == TLSNIC_DIR_RX ? "an RX add needs an RX store"
                                                     : "a TX add got an RX store");
        return;
    }
    int err = s->cfg.dev->ops->add(s->cfg.dev, fds[0], &flow, dir, m->info, m->info_len,
                                   m->tcp_seq, store != NULL ? tlsnic_shm_reader_store(store) : NULL);
    if (err < 0) {
        tlsnic_shm_reader_free(store);
        set_outcome(o, err, "device %s refused add: %s", s->cfg.dev->ops->name, strerror(-err));
        return;
    }
    *slot = (struct owned_flow){.used = true, .flow = flow, .dir = dir, .cookie = cookie,
                                .owner_serial = cl->serial, .owner_pid = cl->cred.pid,
                                .store = store};
    s->n_flows++;
    s->counters.adds++;
    publish_flags(s, slot);
    /* The device holds the keys again: the flow's frames may pass to it. */
    tlsnic_fence *fence = dir == TLSNIC_DIR_TX ? s->cfg.fence : s->cfg.rx_fence;
    bool lifted = fence != NULL && tlsnic_fence_lift(fence, &flow) == 0;
    s->counters.fences_lifted += lifted;
    save_state(s);
    set_outcome(o, 0, lifted ? "added (fence lifted)" : "added");
}

static struct owned_flow *find_by_cookie(tlsnic_ctl_server *s, uint64_t cookie,
                                         enum tlsnic_dir dir)
{
    for (uint32_t i = 0; i < s->max_flows; i++) {
        struct owned_flow *f = &s->flows[i];
        if (f->used && f->dir == dir && f->cookie == cookie)
            return f;
    }
    return NULL;
}

/*
 * DEL and RESYNC: the passed socket must be the very socket that was added. A socket
 * whose connection has ended (the usual case of a del at close) has no 4-tuple any more;
 * its cookie still names it.
 */
static struct owned_flow *held_flow(tlsnic_ctl_server *s, const struct tlsnic_ctl_msg *m,
                                    int n_fds, const int *fds, struct outcome *o)
{
    struct tlsnic_flow flow;
    uint64_t cookie = 0;
    if (request_flow(n_fds, fds, 1, &flow, &cookie, o) < 0) {
        struct owned_flow *f = NULL;
        if (o->status == -ENOTCONN && cookie != 0)
            f = find_by_cookie(s, cookie, (enum tlsnic_dir)m->dir);
        if (f == NULL)
            return NULL;
        set_outcome(o, 0, "ok");
        return f;
    }
    struct owned_flow *f = find_flow(s, &flow, (enum tlsnic_dir)m->dir);
    if (f == NULL) {
        set_outcome(o, -ENOENT, "no offloaded flow for this socket in direction %s",
                    dir_name((enum tlsnic_dir)m->dir));
        return NULL;
    }
    if (f->cookie != cookie) {
        set_outcome(o, -EPERM, "this socket is not the one that was added for the flow");
        return NULL;
    }
    return f;
}

static void do_del(tlsnic_ctl_server *s, const struct tlsnic_ctl_msg *m, int n_fds,
                   const int *fds, struct outcome *o)
{
    struct owned_flow *f = held_flow(s, m, n_fds, fds, o);
    tlsnic_fence *fence = m->dir == TLSNIC_DIR_TX ? s->cfg.fence : s->cfg.rx_fence;
    if (f == NULL && o->status == -ENOENT && fence != NULL) {
        /* A host stopping the offload of a fenced flow: its frames are plain from now on. */
        struct tlsnic_flow flow;
        uint64_t cookie;
        struct outcome ignored;
        if (flow_from_socket(fds[0], &flow, &cookie, &ignored) == 0 &&
            tlsnic_fence_lift(fence, &flow) == 0) {
            s->counters.fences_lifted++;
            save_state(s);
            set_outcome(o, 0, "fence lifted (the context was lost in a restart)");
        }
        return;
    }
    if (f == NULL)
        return;
    remember_ended(s, f);
    int err = s->cfg.dev->ops->del(s->cfg.dev, fds[0], &f->flow, f->dir);
    /* Forgotten either way: a device that no longer knows the flow has nothing to keep. */
    forget_flow(s, f);
    s->counters.dels++;
    save_state(s);
    if (err < 0)
        set_outcome(o, err, "device %s: del: %s", s->cfg.dev->ops->name, strerror(-err));
    else
        set_outcome(o, 0, "deleted");
}

static void do_resync(tlsnic_ctl_server *s, const struct tlsnic_ctl_msg *m, int n_fds,
                      const int *fds, struct outcome *o)
{
    struct owned_flow *f = held_flow(s, m, n_fds, fds, o);
    if (f == NULL)
        return;
    int err = s->cfg.dev->ops->resync(s->cfg.dev, fds[0], &f->flow, f->dir, m->tcp_seq,
                                      m->rec_seq);
    s->counters.resyncs++;
    if (err < 0)
        set_outcome(o, err, "device %s: resync: %s", s->cfg.dev->ops->name, strerror(-err));
    else
        set_outcome(o, 0, "resynced");
}

static void do_rekey(tlsnic_ctl_server *s, const struct tlsnic_ctl_msg *m, int n_fds,
                     const int *fds, struct outcome *o)
{
    struct owned_flow *f = held_flow(s, m, n_fds, fds, o);
    if (f == NULL)
        return;
    int err = s->cfg.dev->ops->rekey == NULL
                  ? -EOPNOTSUPP
                  : s->cfg.dev->ops->rekey(s->cfg.dev, fds[0], &f->flow, f->dir, m->info,
                                           m->info_len, m->tcp_seq);
    if (err < 0)
        set_outcome(o, err, "device %s: rekey: %s", s->cfg.dev->ops->name, strerror(-err));
    else
        set_outcome(o, 0, "rekeyed");
}

static void do_flow_flags(tlsnic_ctl_server *s, struct client *cl, const struct tlsnic_ctl_msg *m,
                          struct outcome *o)
{
    struct owned_flow *f = find_flow(s, &m->flow, (enum tlsnic_dir)m->dir);
    if (f == NULL || f->owner_serial != cl->serial) {
        set_outcome(o, -ENOENT, "no flow added over this connection with that 4-tuple");
        return;
    }
    uint32_t flags = 0;
    int err = s->cfg.dev->ops->flow_flags(s->cfg.dev, &f->flow, f->dir, &flags);
    if (err < 0) {
        set_outcome(o, err, "device %s: flow_flags: %s", s->cfg.dev->ops->name, strerror(-err));
        return;
    }
    for (int i = 0; i < 4; i++)
        s->payload[i] = (char)(flags >> (8 * i));
    o->payload = s->payload;
    o->payload_len = 4;
    set_outcome(o, 0, "ok");
}

static void do_stats(tlsnic_ctl_server *s, struct outcome *o)
{
    int n = s->cfg.stats != NULL ? s->cfg.stats(s->cfg.stats_ctx, s->payload, sizeof(s->payload))
                                 : tlsnic_ctl_server_stats_format(s, s->payload, sizeof(s->payload));
    if (n < 0) {
        set_outcome(o, n, "stats: %s", strerror(-n));
        return;
    }
    o->payload = s->payload;
    o->payload_len = (size_t)n;
    set_outcome(o, 0, "ok");
}

/*
 * FLOW_STATS: the offloaded flows (slot order), then the ended ones (oldest first), from
 * entry `first` on, as many as fit in one reply. The list may change between two pages;
 * a person's view tolerates that, and the daemon keeps no state per reader.
 */
static void do_flow_stats(tlsnic_ctl_server *s, const struct tlsnic_ctl_msg *m, struct outcome *o)
{
    struct tlsnic_ctl_flow_entry *page_entries = s->page_entries;
    struct tlsnic_ctl_flow_page page = {.total = s->n_flows + s->n_ended,
                                        .n_counters = TLSNIC_CTL_FLOW_COUNTERS};
    page.first = m->first < page.total ? m->first : page.total;
    uint32_t index = 0;
    for (uint32_t i = 0; i < s->max_flows && page.count < FLOW_PAGE_ROOM; i++) {
        if (!s->flows[i].used)
            continue;
        if (index++ >= page.first)
            flow_entry(s, &s->flows[i], &page_entries[page.count++]);
    }
    for (uint32_t i = 0; i < s->n_ended && page.count < FLOW_PAGE_ROOM; i++) {
        if (index++ >= page.first)
            page_entries[page.count++] = s->ended[(s->ended_head + i) % TLSNIC_CTL_ENDED_FLOWS];
    }
    int n = tlsnic_ctl_flow_page_encode(&page, page_entries, (uint8_t *)s->payload,
                                        sizeof(s->payload));
    if (n < 0) {
        set_outcome(o, n, "flow stats: %s", strerror(-n));
        return;
    }
    o->payload = s->payload;
    o->payload_len = (size_t)n;
    set_outcome(o, 0, "ok");
}

static void close_client(tlsnic_ctl_server *s, struct client *cl)
{
    uint64_t reaped = s->counters.flows_reaped;
    for (uint32_t i = 0; i < s->max_flows; i++) {
        struct owned_flow *f = &s->flows[i];
        if (!f->used || f->owner_serial != cl->serial)
            continue;
        char text[128];
        flow_text(&f->flow, text, sizeof(text));
        if (!s->shutting_down)
            remember_ended(s, f);
        int err = s->cfg.dev->ops->del(s->cfg.dev, -1, &f->flow, f->dir);
        logf_(s, "pid %d gone: deleting %s %s: %s", (int)cl->cred.pid, dir_name(f->dir), text,
              err < 0 ? strerror(-err) : "ok");
        forget_flow(s, f);
        s->counters.flows_reaped++;
    }
    if (s->counters.flows_reaped != reaped)
        save_state(s);
    logf_(s, "pid %d uid %u disconnected", (int)cl->cred.pid, (unsigned)cl->cred.uid);
    close(cl->fd);
    cl->fd = -1;
}

static void send_reply(tlsnic_ctl_server *s, struct client *cl, uint32_t id,
                       const struct outcome *o)
{
    struct tlsnic_ctl_msg r = {
        .type = TLSNIC_CTL_REPLY,
        .id = id,
        .status = o->status,
        .text = o->text,
        .text_len = (uint16_t)strnlen(o->text, sizeof(o->text)),
        .payload = o->payload,
        .payload_len = (uint32_t)o->payload_len,
    };
    int len = tlsnic_ctl_encode(&r, s->tx, sizeof(s->tx));
    /* A client that does not read its replies is dropped, never waited for. */
    if (len < 0 || send(cl->fd, s->tx, (size_t)len, MSG_DONTWAIT | MSG_NOSIGNAL) != len)
        close_client(s, cl);
}

static void serve_one(tlsnic_ctl_server *s, struct client *cl)
{
    int fds[MAX_FDS_PER_MSG];
    int n_fds = 0;
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int) * MAX_FDS_PER_MSG)];
    } control;
    struct iovec iov = {.iov_base = s->rx, .iov_len = sizeof(s->rx)};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
                        .msg_controllen = sizeof(control.buf)};
    ssize_t n = recvmsg(cl->fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        close_client(s, cl);
        return;
    }
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c != NULL; c = CMSG_NXTHDR(&mh, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < count && n_fds < MAX_FDS_PER_MSG; i++)
            memcpy(&fds[n_fds++], CMSG_DATA(c) + i * sizeof(int), sizeof(int));
    }
    s->counters.requests++;

    struct outcome o = {0};
    struct tlsnic_ctl_msg m;
    uint32_t id = 0;
    if (n >= TLSNIC_CTL_HDR_LEN)
        id = (uint32_t)s->rx[8] | (uint32_t)s->rx[9] << 8 | (uint32_t)s->rx[10] << 16 |
             (uint32_t)s->rx[11] << 24;
    int err = (mh.msg_flags & MSG_TRUNC) ? -EMSGSIZE : tlsnic_ctl_decode(s->rx, (size_t)n, &m);
    if (mh.msg_flags & MSG_CTRUNC) {
        set_outcome(&o, -EINVAL, "too many fds passed");
    } else if (err < 0) {
        set_outcome(&o, err, "malformed request: %s", strerror(-err));
    } else {
        switch (m.type) {
        case TLSNIC_CTL_ADD: do_add(s, cl, &m, n_fds, fds, &o); break;
        case TLSNIC_CTL_DEL: do_del(s, &m, n_fds, fds, &o); break;
        case TLSNIC_CTL_RESYNC: do_resync(s, &m, n_fds, fds, &o); break;
        case TLSNIC_CTL_REKEY: do_rekey(s, &m, n_fds, fds, &o); break;
        case TLSNIC_CTL_FLOW_FLAGS: do_flow_flags(s, cl, &m, &o); break;
        case TLSNIC_CTL_STATS: do_stats(s, &o); break;
        case TLSNIC_CTL_FLOW_STATS: do_flow_stats(s, &m, &o); break;
        default: set_outcome(&o, -EOPNOTSUPP, "a reply is not a request"); break;
        }
    }
    for (int i = 0; i < n_fds; i++)
        close(fds[i]);
    if (o.status < 0)
        s->counters.refused++;
    if (err < 0 || (m.type != TLSNIC_CTL_STATS && m.type != TLSNIC_CTL_FLOW_STATS))
        logf_(s, "pid %d uid %u: request type %u: %d %s", (int)cl->cred.pid,
              (unsigned)cl->cred.uid, err < 0 ? 0u : m.type, o.status, o.text);
    send_reply(s, cl, id, &o);
}

static void accept_one(tlsnic_ctl_server *s)
{
    int fd = accept4(s->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0)
        return;
    struct client *slot = NULL;
    for (uint32_t i = 0; i < s->max_clients && slot == NULL; i++) {
        if (s->clients[i].fd < 0)
            slot = &s->clients[i];
    }
    if (slot == NULL) {
        logf_(s, "refusing a connection: %u clients connected", s->max_clients);
        close(fd);
        return;
    }
    struct ucred cred = {.pid = 0, .uid = (uid_t)-1, .gid = (gid_t)-1};
    socklen_t cl = sizeof(cred);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) < 0) {
        close(fd);
        return;
    }
    *slot = (struct client){.fd = fd, .serial = ++s->next_serial, .cred = cred};
    s->counters.connections++;
    logf_(s, "pid %d uid %u gid %u connected", (int)cred.pid, (unsigned)cred.uid,
          (unsigned)cred.gid);
}

static int listen_on(tlsnic_ctl_server *s)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    memcpy(sa.sun_path, s->path, strlen(s->path) + 1);
    struct stat st;
    if (lstat(s->path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode))
            return -EEXIST; /* not ours to delete */
        int probe = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        if (probe < 0)
            return -errno;
        int live = connect(probe, (struct sockaddr *)&sa, sizeof(sa)) == 0;
        close(probe);
        if (live)
            return -EADDRINUSE;
        if (unlink(s->path) < 0 && errno != ENOENT)
            return -errno;
    }
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    /* The umask makes the socket 0600 from its first moment: no window for other users. */
    mode_t old = umask(0077);
    int err = bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ? -errno : 0;
    umask(old);
    if (err == 0 && chmod(s->path, 0600) < 0)
        err = -errno;
    if (err == 0 && listen(fd, 16) < 0)
        err = -errno;
    if (err < 0) {
        close(fd);
        return err;
    }
    s->listen_fd = fd;
    return 0;
}

int tlsnic_ctl_server_new(tlsnic_ctl_server **out, const struct tlsnic_ctl_server_config *cfg)
{
    if (out == NULL || cfg == NULL || cfg->path == NULL || cfg->dev == NULL)
        return -EINVAL;
    tlsnic_ctl_server *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return -ENOMEM;
    s->cfg = *cfg;
    s->listen_fd = -1;
    size_t path_len = strlen(cfg->path);
    if (path_len == 0 || path_len >= sizeof(s->path)) {
        free(s);
        return -ENAMETOOLONG;
    }
    memcpy(s->path, cfg->path, path_len + 1);
    s->cfg.path = s->path;
    if (cfg->state_path != NULL) {
        s->cfg.state_path = strdup(cfg->state_path); /* the caller's string may not last */
        if (s->cfg.state_path == NULL) {
            free(s);
            return -ENOMEM;
        }
    }
    s->max_clients = cfg->max_clients ? cfg->max_clients : DEFAULT_MAX_CLIENTS;
    s->max_flows = cfg->max_flows ? cfg->max_flows : DEFAULT_MAX_FLOWS;
    s->clients = calloc(s->max_clients, sizeof(*s->clients));
    s->flows = calloc(s->max_flows, sizeof(*s->flows));
    int err = (s->clients == NULL || s->flows == NULL) ? -ENOMEM : 0;
    for (uint32_t i = 0; s->clients != NULL && i < s->max_clients; i++)
        s->clients[i].fd = -1;
    if (err == 0)
        err = listen_on(s);
    if (err < 0) {
        free(s->clients);
        free(s->flows);
        free((char *)s->cfg.state_path);
        free(s);
        return err;
    }
    *out = s;
    return 0;
}

void tlsnic_ctl_server_free(tlsnic_ctl_server *s)
{
    if (s == NULL)
        return;
    s->shutting_down = true;
    for (uint32_t i = 0; i < s->max_clients; i++) {
        if (s->clients[i].fd >= 0)
            close_client(s, &s->clients[i]);
    }
    if (s->listen_fd >= 0) {
        close(s->listen_fd);
        unlink(s->path);
    }
    free(s->clients);
    free(s->flows);
    free((char *)s->cfg.state_path);
    free(s);
}

int tlsnic_ctl_server_poll_setup(tlsnic_ctl_server *s, struct pollfd *pfd, int cap)
{
    int n = 0;
    if (cap <= 0)
        return 0;
    pfd[n++] = (struct pollfd){.fd = s->listen_fd, .events = POLLIN};
    for (uint32_t i = 0; i < s->max_clients && n < cap; i++) {
        if (s->clients[i].fd >= 0)
            pfd[n++] = (struct pollfd){.fd = s->clients[i].fd, .events = POLLIN};
    }
    return n;
}

#define PUBLISH_EVERY_NS 1000000 /* how often hosts' stores get the device's flags */

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void tlsnic_ctl_server_publish_flags(tlsnic_ctl_server *s)
{
    uint64_t now = mono_ns();
    if (now - s->published_ns < PUBLISH_EVERY_NS)
        return;
    s->published_ns = now;
    uint32_t seen = 0;
    for (uint32_t i = 0; i < s->max_flows && seen < s->n_flows; i++) {
        if (!s->flows[i].used)
            continue;
        seen++;
        publish_flags(s, &s->flows[i]);
    }
}

void tlsnic_ctl_server_process(tlsnic_ctl_server *s, const struct pollfd *pfd, int n)
{
    tlsnic_ctl_server_publish_flags(s);
    for (int i = 1; i < n; i++) {
        if ((pfd[i].revents & (POLLIN | POLLHUP | POLLERR)) == 0)
            continue;
        for (uint32_t c = 0; c < s->max_clients; c++) {
            if (s->clients[c].fd == pfd[i].fd) {
                serve_one(s, &s->clients[c]);
                break;
            }
        }
    }
    /* Accept after serving, so a new client cannot take the slot of a pfd entry above. */
    if (n > 0 && (pfd[0].revents & POLLIN))
        accept_one(s);
}

int tlsnic_ctl_server_stats_format(const tlsnic_ctl_server *s, char *buf, size_t cap)
{
    int n = snprintf(buf, cap,
                     "ctl_flows %u\nctl_connections %llu\nctl_requests %llu\nctl_refused %llu\n"
                     "ctl_adds %llu\nctl_dels %llu\nctl_resyncs %llu\nctl_flows_reaped %llu\n"
                     "ctl_fenced %u\nctl_fences_lifted %llu\nctl_state_errors %llu\n",
                     s->n_flows, (unsigned long long)s->counters.connections,
                     (unsigned long long)s->counters.requests,
                     (unsigned long long)s->counters.refused, (unsigned long long)s->counters.adds,
                     (unsigned long long)s->counters.dels, (unsigned long long)s->counters.resyncs,
                     (unsigned long long)s->counters.flows_reaped,
                     s->cfg.fence != NULL ? tlsnic_fence_count(s->cfg.fence) : 0u,
                     (unsigned long long)s->counters.fences_lifted,
                     (unsigned long long)s->counters.state_errors);
    if (n < 0 || (size_t)n >= cap)
        return -ENOBUFS;
    return n;
}
