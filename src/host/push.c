/*
 * tlsnic socket layer: the kernel's write-space callback. A non-blocking send can leave the
 * tail of a sealed record in user space (the socket was full); the kernel pushes its
 * pending records when write space frees, whatever the program does next (tls_write_space).
 * Here a helper thread, started on first need, watches every socket with TX pending for
 * POLLOUT on its own descriptor and writes the rest out. It holds a reference to each
 * socket it watches, and lets go when nothing is pending any more, or on a hard error (the
 * program's next call reports it). When the program closes the socket's last fd,
 * tlsnic_push_forget takes the socket out first, so that the release (which pushes,
 * bounded, and deletes a device context) stays in the close, as before.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "ktls_int.h"

pthread_mutex_t tlsnic_push_lock = PTHREAD_MUTEX_INITIALIZER;
#define push_lock tlsnic_push_lock
static struct tlsnic_sock **watched; /* each entry holds a reference */
static size_t n_watched, cap_watched;
static int push_efd = -1;            /* wakes the thread: a socket to watch, or one closed */
static int push_running;
static pthread_once_t push_atfork_once = PTHREAD_ONCE_INIT;

/* Wakes the thread. Call with push_lock held (the table and the eventfd are read under it). */
static void kick_locked(void)
{
    uint64_t one = 1;
    if (push_efd >= 0) {
        struct iovec iov = {.iov_base = &one, .iov_len = sizeof(one)};
        (void)tlsnic_sys.writev(push_efd, &iov, 1);
    }
}

/* Bumped when an entry is taken out by someone else than the thread (tlsnic_push_forget):
 * the thread's positions from before its poll are then stale. Under push_lock. */
static uint64_t removals;

/* 1: stop watching s. Called with push_lock held. */
static int push_one(struct tlsnic_sock *s, short revents, int *busy)
{
    if (atomic_load(&s->fds) == 0 || !tlsnic_tx_has_pending(s))
        return 1;
    if (!(revents & (POLLOUT | POLLERR | POLLHUP)))
        return 0;
    if (pthread_mutex_trylock(&s->tx.lock) != 0) {
        *busy = 1; /* a call on the socket holds it, and will write the record itself */
        return 0;
    }
    int rc = tlsnic_tx_flush_locked(s, s->kfd, MSG_DONTWAIT | MSG_NOSIGNAL);
    pthread_mutex_unlock(&s->tx.lock);
    return rc != -EAGAIN;
}

/*
 * Entries leave the list, and their references are dropped, only with push_lock held: a
 * close that takes the lock in tlsnic_push_forget therefore finds the thread holding no
 * reference of the socket, and its own is the last (the release stays in close). A
 * reference dropped here is never the last: the socket still has a program fd (else
 * tlsnic_push_forget took the entries out), or the close that took its last fd is about to
 * drop the fd's reference after this.
 */
static void *pusher(void *arg)
{
    (void)arg;
    struct pollfd *pfd = NULL;
    size_t cap = 0;
    int busy = 0;
    for (;;) {
        pthread_mutex_lock(&push_lock);
        size_t n = n_watched;
        if (n + 1 > cap) {
            size_t ncap = (n + 1) * 2;
            struct pollfd *p2 = realloc(pfd, ncap * sizeof(*pfd));
            if (p2) {
                pfd = p2;
                cap = ncap;
            }
        }
        if (n + 1 > cap)
            n = cap ? cap - 1 : 0; /* out of memory: watch what fits */
        for (size_t i = 0; i < n; i++)
            pfd[i] = (struct pollfd){.fd = watched[i]->kfd, .events = POLLOUT};
        uint64_t seen = removals;
        int efd = push_efd;
        /* tlsnic_set_sys_ops swaps the table under push_lock: copy what is used unlocked */
        int (*sys_poll)(struct pollfd *, nfds_t, int) = tlsnic_sys.poll;
        ssize_t (*sys_readv)(int, const struct iovec *, int) = tlsnic_sys.readv;
        pthread_mutex_unlock(&push_lock);
        if (!pfd) { /* no memory at all: look again in a while */
            struct timespec nap = {.tv_sec = 0, .tv_nsec = 10000000};
            nanosleep(&nap, NULL);
            continue;
        }
        pfd[n] = (struct pollfd){.fd = efd, .events = POLLIN};
        if (sys_poll(pfd, n + 1, busy ? 1 : -1) < 0)
            continue;
        if (pfd[n].revents & POLLIN) {
            uint64_t v;
            struct iovec iov = {.iov_base = &v, .iov_len = sizeof(v)};
            (void)sys_readv(efd, &iov, 1);
        }
        busy = 0;
        pthread_mutex_lock(&push_lock);
        if (removals != seen) {
            busy = 1; /* positions moved: poll again at once */
        } else {
            /* [0, n) are as polled (only appends since); downwards, so that an entry moved
             * into a done one's place is one not looked at in this round. */
            for (size_t i = n; i-- > 0;) {
                struct tlsnic_sock *s = watched[i];
                if (push_one(s, pfd[i].revents, &busy)) {
                    watched[i] = watched[--n_watched];
                    tlsnic_sock_put(s);
                }
            }
        }
        pthread_mutex_unlock(&push_lock);
    }
    return NULL;
}

void tlsnic_push_forget(struct tlsnic_sock *s)
{
    pthread_mutex_lock(&push_lock);
    for (size_t i = n_watched; i-- > 0;) {
        if (watched[i] == s) {
            watched[i] = watched[--n_watched];
            atomic_fetch_sub(&s->refs, 1); /* never the last: the caller holds one */
            removals++;
        }
    }
    pthread_mutex_unlock(&push_lock);
}

static void push_forget_in_child(void)
{
    /* The thread is not in the child; the sockets it watched are the parent's. */
    pthread_mutex_init(&push_lock, NULL);
    free(watched);
    watched = NULL;
    n_watched = cap_watched = 0;
    if (push_efd >= 0)
        close(push_efd);
    push_efd = -1;
    push_running = 0;
}

static void push_atfork(void)
{
    (void)pthread_atfork(NULL, NULL, push_forget_in_child);
}

/* With push_lock held. 0, or a negative errno (then nobody pushes: see watch). */
static int start_locked(void)
{
    if (push_running)
        return 0;
    pthread_once(&push_atfork_once, push_atfork);
    int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (efd < 0)
        return -errno;
    push_efd = efd;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old); /* the program's signals are not for it */
    pthread_t t;
    int rc = pthread_create(&t, &attr, pusher, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        close(efd);
        push_efd = -1;
        return -rc;
    }
    push_running = 1;
    return 0;
}

void tlsnic_push_watch(struct tlsnic_sock *s)
{
    atomic_fetch_add(&s->refs, 1); /* the caller holds one: s cannot be going away */
    pthread_mutex_lock(&push_lock);
    int ok = start_locked() == 0;
    if (ok && n_watched == cap_watched) {
        size_t ncap = cap_watched ? cap_watched * 2 : 16;
        struct tlsnic_sock **w = realloc(watched, ncap * sizeof(*w));
        if (w) {
            watched = w;
            cap_watched = ncap;
        } else {
            ok = 0;
        }
    }
    if (ok) {
        watched[n_watched++] = s;
        kick_locked();
    }
    pthread_mutex_unlock(&push_lock);
    if (!ok) /* no thread or no memory: the next call on the socket, poll or epoll_wait push */
        atomic_fetch_sub(&s->refs, 1); /* never the last: the caller holds one */
}
