/* tlsnicd's control channel, daemon side (see ctl_proto.h for the protocol and its rules). */
#include <arpa/inet.h>
#include <errno.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "tlsnic/ctl_server.h"
#include "tlsnic/shm_reader.h"

#define DEFAULT_MAX_CLIENTS 32u
#define DEFAULT_MAX_FLOWS 4096u
#define DEFAULT_FINISH_TIMEOUT_MS 60000u
#define DEFAULT_LINGER_MS 5000u
#define FINISH_CHECK_NS 5000000 /* how often finishing sockets are looked at */
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

/* How a finishing flow's connection ends (the order matters: a later request only
 * strengthens it). */
enum finish_how {
    FINISH_KEEP = 0,  /* a DEL: the connection stays the host's; the context waits */
    FINISH_CLOSE = 1, /* as close(2) of the last descriptor: a FIN after the queued bytes */
    FINISH_ABORT = 2, /* a reset: unread data, SO_LINGER {1, 0}, asked, or too slow */
};

static const char *const how_name[] = {"del", "close", "reset"};

struct owned_flow {
    bool used;
    bool ctx;               /* the device holds a context (false: a fenced flow, finishing) */
    bool finishing;         /* released, host gone or deleted: ends when the socket is done */
    uint8_t how;            /* enum finish_how, while finishing */
    struct tlsnic_flow flow;
    enum tlsnic_dir dir;
    int sock;               /* the socket itself, held: the context lives while it can send */
    uint64_t finish_from_ns, finish_by_ns; /* finishing since; reset when still not done */
    const char *why;        /* what started the finish (for the log) */
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
    uint64_t flows_reaped; /* their control connection closed (the host went away) */
    uint64_t fences_lifted;
    uint64_t state_errors;
    uint64_t releases;       /* RELEASE requests taken */
    uint64_t finished;       /* finishing flows whose socket had nothing more to send */
    uint64_t finish_resets;  /* ... ended with a reset (asked for, or past the timeout) */
    uint64_t finish_timeouts;/* ... of those, past the finish timeout */
    uint64_t linger_full;    /* deleted TX flows not fenced: the linger set was full */
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
    uint64_t finish_checked_ns; /* last look at the finishing sockets */
    uint64_t finish_timeout_ns;
    uint64_t linger_ns;
    uint64_t fence_syn_lifts_saved; /* tlsnic_fence_lifted_by_syn at the last save */
    uint32_t n_flows;       /* used slots (finishing ones too) */
    uint32_t n_finishing;
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

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
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
    if (f->finishing)
        e->flags |= TLSNIC_CTL_FLOW_FINISHING;
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
    s->ended[at].flags = (uint8_t)((s->ended[at].flags & ~TLSNIC_CTL_FLOW_FINISHING) |
                                   TLSNIC_CTL_FLOW_ENDED);
}

/* After the device's del: it no longer reads the store, nor needs the socket. */
static void forget_flow(tlsnic_ctl_server *s, struct owned_flow *f)
{
    if (s->shutting_down)
        tlsnic_shm_reader_free(f->store); /* a restart may need it: the host keeps it */
    else
        tlsnic_shm_reader_let_go(f->store); /* the host may reuse it now */
    if (f->sock >= 0)
        close(f->sock);
    if (f->finishing)
        s->n_finishing--;
    memset(f, 0, sizeof(*f));
    f->sock = -1;
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

/* Writes the offloaded and the still fenced flows (TX and RX) to the state file (control
 * path only). 0, or -errno (counted and logged). */
static int save_state(tlsnic_ctl_server *s)
{
    if (s->cfg.state_path == NULL || s->shutting_down)
        return 0;
    s->fence_syn_lifts_saved = tlsnic_fence_lifted_by_syn(s->cfg.fence) +
                               tlsnic_fence_lifted_by_syn(s->cfg.rx_fence);
    uint32_t fenced = (s->cfg.fence != NULL ? tlsnic_fence_count(s->cfg.fence) : 0) +
                      (s->cfg.rx_fence != NULL ? tlsnic_fence_count(s->cfg.rx_fence) : 0);
    struct state_list l = {.cap = (size_t)s->n_flows + fenced, .s = s};
    l.entries = calloc(l.cap ? l.cap : 1, sizeof(*l.entries));
    if (l.entries == NULL) {
        s->counters.state_errors++;
        return -ENOMEM;
    }
    for (uint32_t i = 0; i < s->max_flows && l.n < l.cap; i++) {
        if (s->flows[i].used && s->flows[i].ctx) /* the others are fenced: listed below */
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
    return err;
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

/* ---- the end of a flow: the context lives as long as the socket can send ---------------- */

/*
 * Ends the connection at once with a reset: nothing more of it leaves, encrypted or not.
 * connect(AF_UNSPEC) is tcp_disconnect(): a RST whatever other descriptors hold the socket
 * (closing ours with SO_LINGER 0 would reset it only if ours were the last).
 */
static void reset_connection(int fd)
{
    struct sockaddr sa = {.sa_family = AF_UNSPEC};
    if (fd >= 0)
        (void)connect(fd, &sa, sizeof(sa));
}

/*
 * True when the socket can send no byte of the flow any more: closed (reset, or both FINs
 * done), or every byte it took, and its FIN if it sent one, acknowledged (SIOCOUTQ is
 * write_seq - snd_una, and write_seq counts the FIN). What may still leave then is a bare
 * FIN or ACK, which carries no record.
 */
static bool socket_done(int fd)
{
    struct tcp_info ti;
    socklen_t len = sizeof(ti);
    memset(&ti, 0, sizeof(ti));
    if (fd < 0 || getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0 || ti.tcpi_state == TCP_CLOSE)
        return true;
    int outq = 0;
    return ioctl(fd, SIOCOUTQ, &outq) < 0 || outq <= 0;
}

/* The unacknowledged bytes of a socket (for a person), or -1. */
static int socket_outq(int fd)
{
    int outq = -1;
    return fd >= 0 && ioctl(fd, SIOCOUTQ, &outq) == 0 ? outq : -1;
}

/*
 * A TX flow whose context is deleted (or whose restart fence is lifted) may still have
 * frames on their way to the device: sent by the socket before it closed (a reset) or before
 * the ACK that made it done (a retransmission), queued in the host's qdisc and TUN. The
 * kernel's tls_device keeps its context until the socket's last skb is freed; tlsnicd's
 * TUN orphans them, so the daemon cannot see them: it fences the 4-tuple for linger_ns
 * instead (payload dropped, never sent in the clear; a new connection's SYN lifts it).
 */
static void linger(tlsnic_ctl_server *s, const struct owned_flow *f)
{
    if (s->cfg.linger == NULL || f->dir != TLSNIC_DIR_TX || s->shutting_down)
        return;
    uint64_t now = mono_ns();
    tlsnic_fence_expire(s->cfg.linger, now);
    if (tlsnic_fence_add_until(s->cfg.linger, &f->flow, now + s->linger_ns) < 0)
        s->counters.linger_full++;
}

/* Deletes the context (or lifts the fence of a flow without one) and forgets the flow. */
static int end_flow(tlsnic_ctl_server *s, struct owned_flow *f, const char *what)
{
    char text[128];
    flow_text(&f->flow, text, sizeof(text));
    int err = 0;
    linger(s, f); /* first: nothing of the flow passes the gate from here on */
    if (f->ctx) {
        if (!s->shutting_down)
            remember_ended(s, f);
        err = s->cfg.dev->ops->del(s->cfg.dev, f->sock, &f->flow, f->dir);
    } else if (s->cfg.fence != NULL && tlsnic_fence_lift(s->cfg.fence, &f->flow) == 0) {
        s->counters.fences_lifted++;
    }
    if (f->finishing) {
        s->counters.finished++;
        logf_(s, "%s %s %s: %s after %llu ms (%s)%s", f->ctx ? "flow" : "fenced flow",
              dir_name(f->dir), text, what,
              (unsigned long long)((mono_ns() - f->finish_from_ns) / 1000000), f->why,
              err < 0 ? ", device del failed" : "");
    }
    forget_flow(s, f);
    return err;
}

/*
 * Starts (or strengthens) the end of a flow. how FINISH_CLOSE is close(2) of the last
 * descriptor, as tcp_close() does it: a reset if the application asked for one (SO_LINGER
 * {1, 0}, readable here since the socket is shared) or left received bytes unread, else a
 * FIN after the queued bytes, which the device keeps encrypting meanwhile.
 */
static void start_finish(tlsnic_ctl_server *s, struct owned_flow *f, enum finish_how how,
                         const char *why)
{
    if (how == FINISH_CLOSE) {
        struct linger l = {0};
        socklen_t ll = sizeof(l);
        int inq = 0;
        if (getsockopt(f->sock, SOL_SOCKET, SO_LINGER, &l, &ll) == 0 && l.l_onoff && l.l_linger == 0)
            how = FINISH_ABORT;
        else if (ioctl(f->sock, SIOCINQ, &inq) == 0 && inq > 0)
            how = FINISH_ABORT;
    }
    if (!f->finishing) {
        f->finishing = true;
        s->n_finishing++;
        f->finish_from_ns = mono_ns();
        f->finish_by_ns = f->finish_from_ns + s->finish_timeout_ns;
        f->why = why;
    } else if (how <= f->how) {
        return;
    }
    f->how = (uint8_t)how;
    if (how == FINISH_ABORT) {
        reset_connection(f->sock);
        s->counters.finish_resets++;
    } else if (how == FINISH_CLOSE) {
        (void)shutdown(f->sock, SHUT_WR);
    }
    char text[128];
    flow_text(&f->flow, text, sizeof(text));
    logf_(s, "%s %s %s: finishing (%s, %s), %d bytes unacknowledged", f->ctx ? "flow" : "fenced flow",
          dir_name(f->dir), text, why, how_name[how], socket_outq(f->sock));
}

/* Ends the flow if its socket is done. True if it ended. */
static bool finish_if_done(tlsnic_ctl_server *s, struct owned_flow *f)
{
    if (!socket_done(f->sock))
        return false;
    end_flow(s, f, "done");
    return true;
}

/* Looks at every finishing socket: ends those that are done, resets those past the timeout. */
static void finish_pass(tlsnic_ctl_server *s, bool now)
{
    uint64_t t = mono_ns();
    if (s->n_finishing == 0 || (!now && t - s->finish_checked_ns < FINISH_CHECK_NS))
        return;
    s->finish_checked_ns = t;
    uint32_t todo = s->n_finishing, seen = 0, ended = 0;
    for (uint32_t i = 0; i < s->max_flows && seen < todo; i++) {
        struct owned_flow *f = &s->flows[i];
        if (!f->used || !f->finishing)
            continue;
        seen++;
        if (socket_done(f->sock)) {
            end_flow(s, f, "done");
            ended++;
        } else if (t >= f->finish_by_ns) {
            /* Not done in time (a peer that stopped reading or acknowledging): a reset, so
             * that nothing more is sent, then the context can go. */
            reset_connection(f->sock);
            s->counters.finish_resets++;
            s->counters.finish_timeouts++;
            end_flow(s, f, "reset: finish timeout");
            ended++;
        }
    }
    if (ended > 0)
        save_state(s);
}

void tlsnic_ctl_server_finish_pass(tlsnic_ctl_server *s)
{
    finish_pass(s, false);
}

int tlsnic_ctl_server_timeout_ms(const tlsnic_ctl_server *s)
{
    return s->n_finishing > 0 ? (int)(FINISH_CHECK_NS / 1000000) : -1;
}

/*
 * A DEL or RELEASE for a flow the device lost in a restart (fenced, no context): its
 * payload is dropped until the host adds it again or the socket can send no more. The
 * socket is held and the fence stays until then. True if the request was taken so.
 */
static bool finish_fenced(tlsnic_ctl_server *s, int *fds, enum finish_how how,
                          struct outcome *o)
{
    struct tlsnic_flow flow;
    uint64_t cookie;
    struct outcome ignored;
    if (s->cfg.fence == NULL || flow_from_socket(fds[0], &flow, &cookie, &ignored) < 0 ||
        !tlsnic_fence_contains(s->cfg.fence, &flow))
        return false;
    struct owned_flow *slot = free_flow_slot(s);
    if (slot == NULL) {
        /* No room to wait for the socket: end it now rather than let its records out. */
        reset_connection(fds[0]);
        s->counters.finish_resets++;
        if (tlsnic_fence_lift(s->cfg.fence, &flow) == 0)
            s->counters.fences_lifted++;
        save_state(s);
        set_outcome(o, 0, "fenced flow reset (flow table full)");
        return true;
    }
    *slot = (struct owned_flow){.used = true, .ctx = false, .flow = flow, .dir = TLSNIC_DIR_TX,
                                .sock = fds[0], .cookie = cookie};
    fds[0] = -1; /* held */
    s->n_flows++;
    start_finish(s, slot, how, "fenced since a restart");
    if (finish_if_done(s, slot)) {
        save_state(s);
        set_outcome(o, 0, "fence lifted (the context was lost in a restart)");
    } else {
        set_outcome(o, how == FINISH_KEEP ? -EINPROGRESS : 0,
                    "fenced (the context was lost in a restart) until the socket is done");
    }
    return true;
}

/*
 * A DEL or RELEASE of RX for a flow the device lost in a restart (fenced towards the host,
 * no context): the host stops offloading it, and reads what arrives from now on as it is
 * (its RX status tells it what the lost device decided). The fence goes at once.
 */
static void lift_rx_fence(tlsnic_ctl_server *s, const int *fds, struct outcome *o)
{
    struct tlsnic_flow flow;
    uint64_t cookie;
    struct outcome ignored;
    if (s->cfg.rx_fence != NULL && flow_from_socket(fds[0], &flow, &cookie, &ignored) == 0 &&
        tlsnic_fence_lift(s->cfg.rx_fence, &flow) == 0) {
        s->counters.fences_lifted++;
        save_state(s);
        set_outcome(o, 0, "fence lifted (the context was lost in a restart)");
    }
}

static void do_add(tlsnic_ctl_server *s, struct client *cl, const struct tlsnic_ctl_msg *m,
                   int n_fds, int *fds, struct outcome *o)
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
        char why[160];
        int err = tlsnic_shm_reader_open_why(&store, fds[1], why, sizeof(why));
        if (err < 0) {
            set_outcome(o, err, "record store refused: %s", why);
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
    /* The socket is kept: the context lives as long as it can send (see ctl_proto.h). */
    *slot = (struct owned_flow){.used = true, .ctx = true, .flow = flow, .dir = dir,
                                .sock = fds[0], .cookie = cookie, .owner_serial = cl->serial,
                                .owner_pid = cl->cred.pid, .store = store};
    fds[0] = -1;
    s->n_flows++;
    /* A restart must know the flow, or it would let its records out in the clear: a flow
     * the state file cannot record is not offloaded. */
    tlsnic_fence *fence = dir == TLSNIC_DIR_TX ? s->cfg.fence : s->cfg.rx_fence;
    bool fenced = tlsnic_fence_contains(fence, &flow); /* the state file lists it already */
    if (!fenced && save_state(s) < 0) {
        end_flow(s, slot, "state file");
        set_outcome(o, -EIO, "the state file cannot record the flow: not offloaded");
        return;
    }
    s->counters.adds++;
    publish_flags(s, slot);
    /* The device holds the keys again: the flow's frames may pass to it. */
    bool lifted = fenced && tlsnic_fence_lift(fence, &flow) == 0;
    s->counters.fences_lifted += lifted;
    if (lifted)
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
                   int *fds, struct outcome *o)
{
    struct owned_flow *f = held_flow(s, m, n_fds, fds, o);
    if (f == NULL && o->status == -ENOENT && m->dir == TLSNIC_DIR_RX) {
        lift_rx_fence(s, fds, o);
        return;
    }
    if (f == NULL && o->status == -ENOENT && m->dir == TLSNIC_DIR_TX) {
        finish_fenced(s, fds, FINISH_KEEP, o);
        return;
    }
    if (f == NULL)
        return;
    s->counters.dels++;
    /* Bytes still unacknowledged would be retransmitted in the clear without the context.
     * (An RX context has nothing to send: it goes at once.) */
    int outq = socket_outq(f->sock);
    if (f->dir == TLSNIC_DIR_TX && !socket_done(f->sock)) {
        start_finish(s, f, FINISH_KEEP, "del");
        set_outcome(o, -EINPROGRESS, "%d bytes unacknowledged: the context is deleted once "
                    "they are", outq);
        return;
    }
    int err = end_flow(s, f, "deleted");
    save_state(s);
    if (err < 0)
        set_outcome(o, err, "device %s: del: %s", s->cfg.dev->ops->name, strerror(-err));
    else
        set_outcome(o, 0, "deleted");
}

/* RELEASE: the application closed the socket; the daemon ends the connection (ctl_proto.h). */
static void do_release(tlsnic_ctl_server *s, const struct tlsnic_ctl_msg *m, int n_fds,
                       int *fds, struct outcome *o)
{
    enum finish_how how = (m->release_flags & TLSNIC_CTL_RELEASE_ABORT) ? FINISH_ABORT : FINISH_CLOSE;
    struct owned_flow *f = held_flow(s, m, n_fds, fds, o);
    if (f == NULL && o->status == -ENOENT && m->dir == TLSNIC_DIR_RX) {
        lift_rx_fence(s, fds, o);
        return;
    }
    if (f == NULL && o->status == -ENOENT && m->dir == TLSNIC_DIR_TX) {
        finish_fenced(s, fds, how, o);
        return;
    }
    if (f == NULL)
        return;
    s->counters.releases++;
    if (f->dir == TLSNIC_DIR_RX) {
        /* Nothing of an RX context leaves: the program will read no more, so its status
         * has no reader. Deleted at once; the connection's end is TX's (or the kernel's). */
        int err = end_flow(s, f, "released");
        save_state(s);
        if (err < 0)
            set_outcome(o, 0, "released (device %s: del: %s)", s->cfg.dev->ops->name,
                        strerror(-err));
        else
            set_outcome(o, 0, "released and deleted (RX)");
        return;
    }
    start_finish(s, f, how, "released");
    if (finish_if_done(s, f)) {
        save_state(s);
        set_outcome(o, 0, "released and deleted");
    } else {
        set_outcome(o, 0, "released: the device keeps the context until the socket is done");
    }
}

static void do_resync(tlsnic_ctl_server *s, const struct tlsnic_ctl_msg *m, int n_fds,
                      int *fds, struct outcome *o)
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
                     int *fds, struct outcome *o)
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

/*
 * The control connection closed: the host process died, exited, or was killed (or the
 * daemon dropped it). Its sockets may still hold records to send: each flow it added is
 * finished as close(2) would end its connection, not deleted (see ctl_proto.h).
 */
static void close_client(tlsnic_ctl_server *s, struct client *cl)
{
    uint64_t reaped = s->counters.flows_reaped;
    for (uint32_t i = 0; i < s->max_flows; i++) {
        struct owned_flow *f = &s->flows[i];
        if (!f->used || f->owner_serial != cl->serial)
            continue;
        f->owner_serial = 0; /* serials start at 1: no connection owns it now */
        s->counters.flows_reaped++;
        if (s->shutting_down) {
            end_flow(s, f, "daemon stopping");
            continue;
        }
        if (f->dir == TLSNIC_DIR_RX) {
            end_flow(s, f, "host gone"); /* nothing to send; nobody reads its status */
            continue;
        }
        start_finish(s, f, FINISH_CLOSE, "host gone");
        finish_if_done(s, f);
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
        case TLSNIC_CTL_RELEASE: do_release(s, &m, n_fds, fds, &o); break;
        case TLSNIC_CTL_RESYNC: do_resync(s, &m, n_fds, fds, &o); break;
        case TLSNIC_CTL_REKEY: do_rekey(s, &m, n_fds, fds, &o); break;
        case TLSNIC_CTL_FLOW_FLAGS: do_flow_flags(s, cl, &m, &o); break;
        case TLSNIC_CTL_STATS: do_stats(s, &o); break;
        case TLSNIC_CTL_FLOW_STATS: do_flow_stats(s, &m, &o); break;
        default: set_outcome(&o, -EOPNOTSUPP, "a reply is not a request"); break;
        }
    }
    for (int i = 0; i < n_fds; i++)
        if (fds[i] >= 0) /* -1: kept (the socket of an ADD, of a fenced DEL / RELEASE) */
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
    s->finish_timeout_ns = (uint64_t)(cfg->finish_timeout_ms ? cfg->finish_timeout_ms
                                                             : DEFAULT_FINISH_TIMEOUT_MS) * 1000000ull;
    s->linger_ns = (uint64_t)(cfg->linger_ms ? cfg->linger_ms : DEFAULT_LINGER_MS) * 1000000ull;
    s->clients = calloc(s->max_clients, sizeof(*s->clients));
    s->flows = calloc(s->max_flows, sizeof(*s->flows));
    int err = (s->clients == NULL || s->flows == NULL) ? -ENOMEM : 0;
    for (uint32_t i = 0; s->clients != NULL && i < s->max_clients; i++)
        s->clients[i].fd = -1;
    for (uint32_t i = 0; s->flows != NULL && i < s->max_flows; i++)
        s->flows[i].sock = -1;
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
    /* Flows whose host is gone, still finishing: the state file keeps them (fenced at the
     * next start); their sockets are ours to close. */
    for (uint32_t i = 0; i < s->max_flows; i++) {
        if (s->flows[i].used)
            end_flow(s, &s->flows[i], "daemon stopping");
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
    finish_pass(s, false);
    tlsnic_fence_expire(s->cfg.linger, mono_ns());
    /* Fences the packet path lifted (a new connection's SYN): the state file follows. */
    if (tlsnic_fence_lifted_by_syn(s->cfg.fence) + tlsnic_fence_lifted_by_syn(s->cfg.rx_fence) !=
        s->fence_syn_lifts_saved)
        save_state(s);
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
                     "ctl_fenced %u\nctl_fences_lifted %llu\nctl_state_errors %llu\n"
                     "ctl_releases %llu\nctl_finishing %u\nctl_finished %llu\n"
                     "ctl_finish_resets %llu\nctl_finish_timeouts %llu\n"
                     "ctl_lingering %u\nctl_linger_full %llu\n",
                     s->n_flows, (unsigned long long)s->counters.connections,
                     (unsigned long long)s->counters.requests,
                     (unsigned long long)s->counters.refused, (unsigned long long)s->counters.adds,
                     (unsigned long long)s->counters.dels, (unsigned long long)s->counters.resyncs,
                     (unsigned long long)s->counters.flows_reaped,
                     s->cfg.fence != NULL ? tlsnic_fence_count(s->cfg.fence) : 0u,
                     (unsigned long long)s->counters.fences_lifted,
                     (unsigned long long)s->counters.state_errors,
                     (unsigned long long)s->counters.releases, s->n_finishing,
                     (unsigned long long)s->counters.finished,
                     (unsigned long long)s->counters.finish_resets,
                     (unsigned long long)s->counters.finish_timeouts,
                     s->cfg.linger != NULL ? tlsnic_fence_count(s->cfg.linger) : 0u,
                     (unsigned long long)s->counters.linger_full);
    if (n < 0 || (size_t)n >= cap)
        return -ENOBUFS;
    return n;
}
