/*
 * tlsnic socket layer: the end of a socket whose last descriptor the application closed.
 *
 * close(2) returns at once, as the kernel's does for a socket with bytes still queued:
 * what is left is done here, on the caller's thread when it needs no waiting, else by one
 * background thread per process (the closer), which holds a duplicate of the descriptor
 * until it is done. Left to do: the tail of a sealed record the socket has not taken yet
 * (a non-blocking send filled it), and in device mode the device's end of the flow: a
 * release (tlsnicd takes the socket over: it sends what is queued, encrypted, and the FIN,
 * then lets go), or, with a device that cannot, waiting for the peer's ACKs before the del
 * (dev.c, tlsnic_dev_tx_close_step). A peer that does not take the tail or acknowledge
 * within CLOSE_BUDGET_MS gets a reset: nothing more of the connection leaves. A device-mode
 * RX context sends nothing: it is ended at the first step (rxdev.c, tlsnic_dev_rx_close).
 *
 * SO_LINGER, as the kernel's tcp_close: with a linger time of 0 the connection is reset at
 * once (the pending tail is dropped; a device that takes the socket over is asked for a
 * reset); with a linger time of N seconds close(2) blocks, on the caller's thread, until
 * the peer has acknowledged every byte or N seconds have passed, and then goes on as any
 * close (what is left is done in the background).
 *
 * Forks. Several processes can hold one socket; only the process that set its TLS state up
 * (TCP_ULP: a forked child's TLS calls on it fail with EBADFD, ktls.h) ends it. A forked
 * child that closes its inherited copy (a
 * daemonizing child closing what it inherited) forgets its copy of the state and touches
 * nothing shared: not the socket (no flush of the parent's pending bytes, no SO_LINGER), not
 * the record store (no wipe: the parent writes it and the device reads it), not the device.
 * The socket ends when its owner closes it (tlsnicd then sends the FIN, whoever else still
 * holds the socket: a child that still writes to a socket its parent closed is not
 * supported), or when the owner dies (the daemon sees its control connection close).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "ktls_int.h"

#define CLOSE_BUDGET_MS 5000  /* for the peer to take the tail and acknowledge */
#define CLOSER_TICK_NS 2000000 /* how often a closing socket is looked at again */

struct closing {
    struct tlsnic_sock *s;
    int fd;                /* the closer's duplicate of the socket */
    unsigned flags;        /* TLSNIC_RELEASE_ABORT: SO_LINGER 0 */
    uint64_t deadline_ns;  /* then: a reset, and done */
    unsigned pass;         /* the closer's pass that last looked at it */
    struct closing *next;
};

static pthread_mutex_t closer_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t closer_wake; /* CLOCK_MONOTONIC */
static pthread_cond_t closer_idle; /* CLOCK_MONOTONIC */
static struct closing *closer_list; /* under closer_lock */
static int closer_count;            /* sockets the closer holds */
static int closer_running;
static pthread_once_t closer_once = PTHREAD_ONCE_INIT;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static struct timespec abs_after(uint64_t ns)
{
    uint64_t at = now_ns() + ns;
    return (struct timespec){.tv_sec = (time_t)(at / 1000000000ull),
                             .tv_nsec = (long)(at % 1000000000ull)};
}

/* Bytes the peer sent that tlsnic holds and the application never read: close(2) resets. */
static int rx_unread(const struct tlsnic_sock *s)
{
    return s->rx.have > 0 || (s->rx.ready && s->rx.off < s->rx.clen);
}

/* The application's SO_LINGER on the socket: -1 if off, else its linger time in seconds. */
static int linger_seconds(int fd)
{
    struct linger lg = {0};
    socklen_t len = sizeof(lg);
    if (tlsnic_sys.getsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, &len) < 0 || !lg.l_onoff)
        return -1;
    return lg.l_linger > 0 ? lg.l_linger : 0;
}

/*
 * One look at a closing socket (TX lock held): 0 when it is done with, 1 to look again.
 * want: TLSNIC_RELEASE_ABORT for a reset (SO_LINGER 0), else 0.
 */
static int close_step(struct tlsnic_sock *s, int fd, int final, unsigned want)
{
    unsigned flags = want | (rx_unread(s) ? TLSNIC_RELEASE_ABORT : 0);
    if (want & TLSNIC_RELEASE_ABORT)
        tlsnic_tx_forget_pending(s); /* a reset drops what is queued, as the kernel's does */
    /* RX has nothing to send: its device context ends at the first step (a no-op after). */
    tlsnic_dev_rx_close(s, fd);
    int rc = tlsnic_tx_flush_locked(s, fd, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (rc == -EAGAIN) {
        if (!final)
            return 1;
        /* The peer never took the rest of the record: the stream cannot end well. */
        flags |= TLSNIC_RELEASE_ABORT;
        tlsnic_tx_forget_pending(s);
    }
    return tlsnic_dev_tx_close_step(s, fd, flags, final);
}

/* A forked child drops what its parent's closer holds: the parent finishes those. */
static void closer_forget_in_child(void)
{
    for (struct closing *c = closer_list; c != NULL; c = c->next)
        tlsnic_sys.close(c->fd); /* the child's copy of the duplicate (memory left) */
    closer_list = NULL;
    closer_count = 0;
    closer_running = 0;
    pthread_mutex_init(&closer_lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&closer_wake, &ca);
    pthread_cond_init(&closer_idle, &ca);
    pthread_condattr_destroy(&ca);
}

static void closer_before_fork(void)
{
    pthread_mutex_lock(&closer_lock);
}

static void closer_after_fork_parent(void)
{
    pthread_mutex_unlock(&closer_lock);
}

static void closer_init(void)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&closer_wake, &ca);
    pthread_cond_init(&closer_idle, &ca);
    pthread_condattr_destroy(&ca);
    (void)pthread_atfork(closer_before_fork, closer_after_fork_parent, closer_forget_in_child);
}

/*
 * The closer: looks at every socket it holds once per pass, every CLOSER_TICK_NS, until
 * each is done; bounded per socket by its deadline (then a reset). The list's lock is not
 * held while a socket is looked at (a release is a request to tlsnicd).
 */
static void *closer_main(void *arg)
{
    (void)arg;
    unsigned pass = 0;
    pthread_mutex_lock(&closer_lock);
    for (;;) {
        while (closer_list == NULL)
            pthread_cond_wait(&closer_wake, &closer_lock);
        pass++;
        for (;;) {
            struct closing *c = closer_list;
            while (c != NULL && c->pass == pass)
                c = c->next;
            if (c == NULL)
                break;
            c->pass = pass;
            pthread_mutex_unlock(&closer_lock);
            pthread_mutex_lock(&c->s->tx.lock);
            int again = close_step(c->s, c->fd, now_ns() >= c->deadline_ns, c->flags);
            pthread_mutex_unlock(&c->s->tx.lock);
            pthread_mutex_lock(&closer_lock);
            if (again)
                continue;
            /* Closed under the lock: a fork cannot copy a descriptor that is about to go. */
            tlsnic_sock_close_kfd(c->s);
            for (struct closing **pp = &closer_list; *pp != NULL; pp = &(*pp)->next) {
                if (*pp == c) {
                    *pp = c->next;
                    break;
                }
            }
            pthread_mutex_unlock(&closer_lock);
            tlsnic_sock_free(c->s);
            free(c);
            pthread_mutex_lock(&closer_lock);
            if (--closer_count == 0)
                pthread_cond_broadcast(&closer_idle);
        }
        if (closer_list != NULL) {
            struct timespec at = abs_after(CLOSER_TICK_NS);
            pthread_cond_timedwait(&closer_wake, &closer_lock, &at);
        }
    }
    return NULL;
}

/* Hands s and fd (a duplicate) to the closer. 0, or -errno (nothing was taken). */
static int closer_take(struct tlsnic_sock *s, int fd, unsigned flags)
{
    pthread_once(&closer_once, closer_init);
    struct closing *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return -ENOMEM;
    *c = (struct closing){.s = s, .fd = fd, .flags = flags,
                          .deadline_ns = now_ns() + CLOSE_BUDGET_MS * 1000000ull};
    pthread_mutex_lock(&closer_lock);
    if (!closer_running) {
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        int err = pthread_create(&t, &attr, closer_main, NULL);
        pthread_attr_destroy(&attr);
        if (err != 0) {
            pthread_mutex_unlock(&closer_lock);
            free(c);
            return -err;
        }
        closer_running = 1;
    }
    c->next = closer_list;
    closer_list = c;
    closer_count++;
    pthread_cond_signal(&closer_wake);
    pthread_mutex_unlock(&closer_lock);
    return 0;
}

/* SO_LINGER N: steps on the caller's thread until done and every byte is acknowledged, or
 * the linger time is over. 0 when done, 1 if the rest is left to the background. */
static int linger_on_close(struct tlsnic_sock *s, int fd, int seconds)
{
    const struct timespec tick = {.tv_nsec = CLOSER_TICK_NS};
    uint64_t deadline = now_ns() + (uint64_t)seconds * 1000000000ull;
    int again;
    while ((again = close_step(s, fd, 0, 0)) && now_ns() < deadline)
        nanosleep(&tick, NULL);
    while (!again && tlsnic_sock_unacked_bytes(fd) > 0 && now_ns() < deadline)
        nanosleep(&tick, NULL);
    return again;
}

int tlsnic_close_last(struct tlsnic_sock *s, int fd)
{
    int linger = linger_seconds(fd);
    unsigned want = linger == 0 ? TLSNIC_RELEASE_ABORT : 0;
    pthread_mutex_lock(&s->tx.lock);
    if (linger > 0 ? !linger_on_close(s, fd, linger) : !close_step(s, fd, 0, want)) {
        pthread_mutex_unlock(&s->tx.lock);
        return 0;
    }
    /* Something to wait for: fd is tlsnic's own descriptor of the socket (kfd), which
     * keeps the socket while the application's are gone; the closer takes it over. */
    if (closer_take(s, fd, want) == 0) {
        pthread_mutex_unlock(&s->tx.lock);
        return 1;
    }
    /* No thread to wait with: wait here, bounded. */
    uint64_t deadline = now_ns() + CLOSE_BUDGET_MS * 1000000ull;
    while (close_step(s, fd, now_ns() >= deadline, want)) {
        struct timespec tick = {.tv_nsec = CLOSER_TICK_NS};
        nanosleep(&tick, NULL);
    }
    pthread_mutex_unlock(&s->tx.lock);
    return 0;
}

void tlsnic_close_inherited(struct tlsnic_sock *s)
{
    tlsnic_dev_tx_forget(s);
    tlsnic_dev_rx_forget(s); /* the parent's RX context and status: not ours to end */
    s->tx.out_off = s->tx.out_len = 0; /* the parent's pending bytes: the parent sends them */
}

int tlsnic_close_pending(int timeout_ms)
{
    pthread_mutex_lock(&closer_lock);
    int running = closer_running;
    pthread_mutex_unlock(&closer_lock);
    if (!running)
        return 0; /* nothing was ever handed to the closer */
    uint64_t deadline = now_ns() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0) * 1000000ull;
    pthread_mutex_lock(&closer_lock);
    while (closer_count > 0 && now_ns() < deadline) {
        struct timespec at = abs_after(deadline - now_ns());
        pthread_cond_timedwait(&closer_idle, &closer_lock, &at);
    }
    int left = closer_count;
    pthread_mutex_unlock(&closer_lock);
    return left;
}
