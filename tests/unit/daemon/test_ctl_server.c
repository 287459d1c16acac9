/*
 * Control channel, daemon and client together over a real Unix socket: a flow is named by
 * the TCP socket passed with the request and by nothing else, so a process that does not
 * hold the socket can neither add nor delete it; refusals carry their errno and a reason.
 *
 * The daemon side runs in a thread of the test; the test observes it only through the
 * protocol (STATS), never through shared memory. TCP sockets are loopback connections.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <linux/tls.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <linux/sockios.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "tcp_pair.h"
#include "flowtable.h"
#include "tlsnic/ctl_client.h"
#include "tlsnic/ctl_server.h"

struct fixture {
    char dir[64];
    char path[128];
    struct tlsnic_flowtable *table;
    tlsnic_ctl_server *server;
    pthread_t thread;
    int stop_pipe[2];
    struct tlsnic_dev *client;
    int tcp_local, tcp_remote; /* a connected TCP pair: local is the "host" socket */
    tlsnic_fence *fence;       /* stateful fixture only */
    char state_path[128];
    int with_counters;         /* counters fixture: the device reports per-flow counters */
    uint32_t finish_timeout_ms; /* 0: the server's default */
    int state_path_always;      /* a state file even without a fence */
    tlsnic_fence *linger;       /* linger fixture only */
    _Atomic uint64_t counter_base; /* what they are: counter k of a flow = base + k */
};

/* The counters fixture's device counters; -ENOENT for flows on port 9 (a lost context). */
static int fake_flow_counters(void *ctx, const struct tlsnic_flow *flow, enum tlsnic_dir dir,
                              uint64_t *out, size_t cap)
{
    struct fixture *f = ctx;
    if (flow->remote_port == 9)
        return -ENOENT;
    for (size_t k = 0; k < cap; k++)
        out[k] = f->counter_base + k + (dir == TLSNIC_DIR_RX ? 1000 : 0);
    return 0;
}

static void *serve(void *arg)
{
    struct fixture *f = arg;
    for (;;) {
        struct pollfd pfd[40];
        pfd[0] = (struct pollfd){.fd = f->stop_pipe[0], .events = POLLIN};
        int n = tlsnic_ctl_server_poll_setup(f->server, pfd + 1, 39);
        int timeout = tlsnic_ctl_server_timeout_ms(f->server); /* finishing flows: a few ms */
        if (poll(pfd, (nfds_t)n + 1, timeout >= 0 ? timeout : 1000) < 0)
            continue;
        if (pfd[0].revents)
            return NULL;
        tlsnic_ctl_server_process(f->server, pfd + 1, n);
    }
}

/* A connected loopback pair (tools/lib/tcp_pair.c): local is the connecting end. */
static void connected_pair(int *local, int *remote)
{
    int fds[2];
    assert_int_equal(tcp_pair(fds), 0);
    *local = fds[0];
    *remote = fds[1];
}

static void start_server(struct fixture *f)
{
    struct tlsnic_ctl_server_config cfg = {.path = f->path, .dev = tlsnic_flowtable_dev(f->table),
                                           .fence = f->fence,
                                           .state_path = f->fence || f->state_path_always
                                                             ? f->state_path : NULL,
                                           .flow_counters = f->with_counters ? fake_flow_counters : NULL,
                                           .flow_counters_ctx = f,
                                           .finish_timeout_ms = f->finish_timeout_ms,
                                           .linger = f->linger,
                                           .linger_ms = f->linger ? 300 : 0};
    assert_int_equal(tlsnic_ctl_server_new(&f->server, &cfg), 0);
}

static void *serve(void *arg);

/* Stops the server thread and frees the server (the client stays, disconnected). */
static void stop_server_thread_and_free(struct fixture *f)
{
    assert_int_equal(write(f->stop_pipe[1], "x", 1), 1);
    pthread_join(f->thread, NULL);
    char c;
    assert_int_equal(read(f->stop_pipe[0], &c, 1), 1);
    tlsnic_ctl_server_free(f->server);
    f->server = NULL;
}

/* A new server on the same path with the fixture's settings, and the client reconnected. */
static void restart_server(struct fixture *f)
{
    start_server(f);
    assert_int_equal(pthread_create(&f->thread, NULL, serve, f), 0);
    assert_int_equal(tlsnic_ctl_client_reconnect(f->client), 0);
}

static int setup_common(void **state, int stateful, int counters)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    f->with_counters = counters;
    f->finish_timeout_ms = stateful == 2 ? 300 : 0; /* 2: the short finish timeout fixture */
    snprintf(f->dir, sizeof(f->dir), "/tmp/tlsnic-ctl-test.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof(f->path), "%s/ctl.sock", f->dir);
    snprintf(f->state_path, sizeof(f->state_path), "%s/state", f->dir);
    assert_int_equal(tlsnic_flowtable_new(&f->table, 8), 0);
    if (stateful == 1)
        assert_int_equal(tlsnic_fence_new(&f->fence, 8), 0);
    if (stateful == 3) /* the linger fixture: deleted flows fenced for 300 ms */
        assert_int_equal(tlsnic_fence_new(&f->linger, 8), 0);
    start_server(f);
    assert_int_equal(pipe2(f->stop_pipe, O_CLOEXEC), 0);
    assert_int_equal(pthread_create(&f->thread, NULL, serve, f), 0);
    assert_int_equal(tlsnic_ctl_client_open(f->path, 2000, &f->client), 0);
    connected_pair(&f->tcp_local, &f->tcp_remote);
    *state = f;
    return 0;
}

static int setup(void **state)
{
    return setup_common(state, 0, 0);
}

static int setup_stateful(void **state)
{
    return setup_common(state, 1, 0);
}

static int setup_counters(void **state)
{
    return setup_common(state, 0, 1);
}

static int setup_short_finish(void **state)
{
    return setup_common(state, 2, 0);
}

static int setup_linger(void **state)
{
    return setup_common(state, 3, 0);
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    tlsnic_ctl_client_close(f->client);
    if (f->server != NULL) { /* NULL: a test stopped it and failed before restarting it */
        assert_int_equal(write(f->stop_pipe[1], "x", 1), 1);
        pthread_join(f->thread, NULL);
        tlsnic_ctl_server_free(f->server);
    }
    tlsnic_flowtable_free(f->table);
    tlsnic_fence_free(f->fence);
    tlsnic_fence_free(f->linger);
    unlink(f->state_path);
    close(f->stop_pipe[0]);
    close(f->stop_pipe[1]);
    if (f->tcp_local >= 0)
        close(f->tcp_local);
    close(f->tcp_remote);
    rmdir(f->dir);
    free(f);
    return 0;
}

static struct tls12_crypto_info_aes_gcm_128 good_info(void)
{
    struct tls12_crypto_info_aes_gcm_128 ci;
    memset(&ci, 0x11, sizeof(ci));
    ci.info.version = TLS_1_2_VERSION;
    ci.info.cipher_type = TLS_CIPHER_AES_GCM_128;
    return ci;
}

static int add(struct tlsnic_dev *dev, int sockfd, enum tlsnic_dir dir)
{
    struct tls12_crypto_info_aes_gcm_128 ci = good_info();
    return dev->ops->add(dev, sockfd, NULL, dir, &ci, sizeof(ci), 1000, NULL);
}

/* The daemon's flow count, read through the protocol. */
static long flows_in_daemon(const struct fixture *f)
{
    static char text[TLSNIC_CTL_MAX_MSG];
    assert_true(tlsnic_ctl_query_stats(f->path, text, sizeof(text)) > 0);
    const char *p = strstr(text, "ctl_flows ");
    assert_non_null(p);
    return strtol(p + strlen("ctl_flows "), NULL, 10);
}

static struct tlsnic_flow flow_of(int fd)
{
    struct sockaddr_in l, r;
    socklen_t ll = sizeof(l), rl = sizeof(r);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&l, &ll), 0);
    assert_int_equal(getpeername(fd, (struct sockaddr *)&r, &rl), 0);
    struct tlsnic_flow flow = {.family = AF_INET, .local_port = ntohs(l.sin_port),
                               .remote_port = ntohs(r.sin_port)};
    memcpy(flow.local, &l.sin_addr, 4);
    memcpy(flow.remote, &r.sin_addr, 4);
    return flow;
}

/* Sends a hand-made request on a fresh connection, passing fd if >= 0; returns the status. */
static int raw_request(const struct fixture *f, const uint8_t *msg, size_t len, int fd)
{
    int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    strcpy(sa.sun_path, f->path);
    assert_int_equal(connect(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
    struct iovec iov = {.iov_base = (void *)msg, .iov_len = len};
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int))];
    } control;
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    if (fd >= 0) {
        memset(&control, 0, sizeof(control));
        mh.msg_control = control.buf;
        mh.msg_controllen = sizeof(control.buf);
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &fd, sizeof(int));
    }
    assert_int_equal(sendmsg(s, &mh, 0), (ssize_t)len);
    static uint8_t reply[TLSNIC_CTL_MAX_MSG];
    struct pollfd pfd = {.fd = s, .events = POLLIN};
    assert_int_equal(poll(&pfd, 1, 2000), 1);
    ssize_t n = recv(s, reply, sizeof(reply), 0);
    assert_true(n > 0);
    struct tlsnic_ctl_msg m;
    assert_int_equal(tlsnic_ctl_decode(reply, (size_t)n, &m), 0);
    assert_int_equal(m.type, TLSNIC_CTL_REPLY);
    assert_true(m.text_len > 0); /* every answer says why */
    close(s);
    return m.status;
}

static void add_with_the_socket_offloads_its_flow(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(add(f->client, f->tcp_local, TLSNIC_DIR_TX), 0);
    assert_int_equal(flows_in_daemon(f), 1);
    struct tlsnic_flow flow = flow_of(f->tcp_local);
    uint32_t flags = 99;
    assert_int_equal(f->client->ops->flow_flags(f->client, &flow, TLSNIC_DIR_TX, &flags), 0);
    assert_int_equal(flags, 0);
}

static void add_ignores_a_flow_argument_that_names_another_connection(void **state)
{
    struct fixture *f = *state;
    struct tlsnic_flow lie = flow_of(f->tcp_remote); /* the other end's 4-tuple */
    struct tls12_crypto_info_aes_gcm_128 ci = good_info();
    assert_int_equal(f->client->ops->add(f->client, f->tcp_local, &lie, TLSNIC_DIR_TX, &ci,
                                         sizeof(ci), 0, NULL),
                     0);
    uint32_t flags;
    struct tlsnic_flow real = flow_of(f->tcp_local);
    assert_int_equal(f->client->ops->flow_flags(f->client, &real, TLSNIC_DIR_TX, &flags), 0);
    assert_int_equal(f->client->ops->flow_flags(f->client, &lie, TLSNIC_DIR_TX, &flags), -ENOENT);
}

static void add_without_a_socket_is_refused_with_ebadf(void **state)
{
    struct fixture *f = *state;
    uint8_t msg[128];
    struct tls12_crypto_info_aes_gcm_128 ci = good_info();
    struct tlsnic_ctl_msg m = {.type = TLSNIC_CTL_ADD, .info = (const uint8_t *)&ci,
                               .info_len = sizeof(ci)};
    int len = tlsnic_ctl_encode(&m, msg, sizeof(msg));
    assert_true(len > 0);
    assert_int_equal(raw_request(f, msg, (size_t)len, -1), -EBADF);
    assert_int_equal(add(f->client, -1, TLSNIC_DIR_TX), -EBADF);
    assert_int_equal(flows_in_daemon(f), 0);
}

static void add_with_a_pipe_is_refused_with_enotsock(void **state)
{
    struct fixture *f = *state;
    int p[2];
    assert_int_equal(pipe(p), 0);
    assert_int_equal(add(f->client, p[0], TLSNIC_DIR_TX), -ENOTSOCK);
    assert_string_equal(tlsnic_ctl_client_last_error(f->client), "the passed fd is not a socket");
    close(p[0]);
    close(p[1]);
}

static void add_with_a_udp_socket_is_refused(void **state)
{
    struct fixture *f = *state;
    int u = socket(AF_INET, SOCK_DGRAM, 0);
    assert_int_equal(add(f->client, u, TLSNIC_DIR_TX), -EPROTONOSUPPORT);
    close(u);
}

static void add_with_an_unconnected_tcp_socket_is_refused(void **state)
{
    struct fixture *f = *state;
    int t = socket(AF_INET, SOCK_STREAM, 0);
    assert_int_equal(add(f->client, t, TLSNIC_DIR_TX), -ENOTCONN);
    close(t);
}

static void add_of_an_offloaded_flow_is_refused_with_eexist(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(add(f->client, f->tcp_local, TLSNIC_DIR_TX), 0);
    assert_int_equal(add(f->client, f->tcp_local, TLSNIC_DIR_TX), -EEXIST);
    assert_int_equal(add(f->client, f->tcp_local, TLSNIC_DIR_RX), 0); /* other direction */
}

static void add_with_a_bad_crypto_info_is_refused_by_the_device(void **state)
{
    struct fixture *f = *state;
    struct tls12_crypto_info_aes_gcm_128 ci = good_info();
    ci.info.version = 0x0301; /* TLS 1.0 */
    assert_int_equal(f->client->ops->add(f->client, f->tcp_local, NULL, TLSNIC_DIR_TX, &ci,
                                         sizeof(ci), 0, NULL),
                     -EINVAL);
    assert_int_equal(flows_in_daemon(f), 0);
}

static void del_with_the_socket_removes_the_flow(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(add(f->client, f->tcp_local, TLSNIC_DIR_TX), 0);
    assert_int_equal(f->client->ops->del(f->client, f->tcp_local, NULL, TLSNIC_DIR_TX), 0);
    assert_int_equal(flows_in_daemon(f), 0);
    assert_int_equal(f->client->ops->del(f->client, f->tcp_local, NULL, TLSNIC_DIR_TX), -ENOENT);
}

static void del_after_the_connection_ended_is_accepted(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(add(f->client, f->tcp_local, TLSNIC_DIR_TX), 0);
    /* Both FINs exchanged: the socket is still held but names no 4-tuple any more. */
    assert_int_equal(shutdown(f->tcp_local, SHUT_WR), 0);
    char c;
    assert_int_equal(read(f->tcp_remote, &c, 1), 0);
    close(f->tcp_remote);
    f->tcp_remote = socket(AF_INET, SOCK_STREAM, 0); /* teardown closes something */
    assert_int_equal(read(f->tcp_local, &c, 1), 0);
    struct sockaddr_storage peer;
    socklen_t pl = sizeof(peer);
    assert_int_equal(getpeername(f->tcp_local, (struct sockaddr *)&peer, &pl), -1);
    assert_int_equal(errno, ENOTCONN);
    assert_int_equal(f->client->ops->del(f->client, f->tcp_local, NULL, TLSNIC_DIR_TX), 0);
    assert_int_equal(flows_in_daemon(f), 0);
}

static void del_with_an_unconnected_socket_that_was_never_added_is_refused(void **state)
{
    struct fixture *f = *state;
    int t = socket(AF_INET, SOCK_STREAM, 0);
    assert_int_equal(f->client->ops->del(f->client, t, NULL, TLSNIC_DIR_TX), -ENOTCONN);
    close(t);
}

static void del_with_another_socket_is_refused(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(add(f->client, f->tcp_local, TLSNIC_DIR_TX), 0);
    int other_local, other_remote;
    connected_pair(&other_local, &other_remote);
    assert_int_equal(f->client->ops->del(f->client, other_local, NULL, TLSNIC_DIR_TX), -ENOENT);
    assert_int_equal(flows_in_daemon(f), 1);
    close(other_local);
    close(other_remote);
}

static void del_that_names_the_flow_in_the_message_is_refused(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(add(f->client, f->tcp_local, TLSNIC_DIR_TX), 0);
    /* A DEL body followed by the victim's 4-tuple, as a forger would try. */
    uint8_t msg[128];
    struct tlsnic_ctl_msg m = {.type = TLSNIC_CTL_DEL};
    int len = tlsnic_ctl_encode(&m, msg, sizeof(msg));
    struct tlsnic_flow victim = flow_of(f->tcp_local);
    memcpy(msg + len, &victim, sizeof(victim));
    len += (int)sizeof(victim);
    msg[0] = (uint8_t)len;
    assert_int_equal(raw_request(f, msg, (size_t)len, -1), -EBADMSG);
    /* Without the appended bytes it is a well-formed DEL, refused for want of the socket. */
    len = tlsnic_ctl_encode(&m, msg, sizeof(msg));
    assert_int_equal(raw_request(f, msg, (size_t)len, -1), -EBADF);
    assert_int_equal(flows_in_daemon(f), 1);
}

/*
 * The specification in one test: another process, with a control connection of its own
 * and a TCP socket of its own but not this one, can neither delete nor re-add the flow.
 */
static void a_process_without_the_socket_cannot_add_or_del_its_flow(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(add(f->client, f->tcp_local, TLSNIC_DIR_TX), 0);
    struct tlsnic_flow victim = flow_of(f->tcp_local);
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        /* The child gives up every fd of the victim connection it inherited. */
        close(f->tcp_local);
        close(f->tcp_remote);
        struct tlsnic_dev *dev;
        if (tlsnic_ctl_client_open(f->path, 2000, &dev) < 0)
            _exit(10);
        int own_local, own_remote;
        connected_pair(&own_local, &own_remote);
        struct tls12_crypto_info_aes_gcm_128 ci = good_info();
        uint32_t flags;
        int code = 0;
        if (dev->ops->del(dev, -1, &victim, TLSNIC_DIR_TX) != -EBADF)
            code = 11;
        else if (dev->ops->del(dev, own_local, &victim, TLSNIC_DIR_TX) != -ENOENT)
            code = 12;
        else if (dev->ops->add(dev, -1, &victim, TLSNIC_DIR_TX, &ci, sizeof(ci), 0, NULL) != -EBADF)
            code = 13;
        else if (dev->ops->resync(dev, own_local, &victim, TLSNIC_DIR_TX, 1, 1) != -ENOENT)
            code = 14;
        else if (dev->ops->flow_flags(dev, &victim, TLSNIC_DIR_TX, &flags) != -ENOENT)
            code = 15;
        tlsnic_ctl_client_close(dev);
        _exit(code);
    }
    int status;
    assert_int_equal(waitpid(child, &status, 0), child);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_int_equal(flows_in_daemon(f), 1);
    uint32_t flags;
    assert_int_equal(f->client->ops->flow_flags(f->client, &victim, TLSNIC_DIR_TX, &flags), 0);
}

static void resync_with_the_socket_is_accepted(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(add(f->client, f->tcp_local, TLSNIC_DIR_TX), 0);
    assert_int_equal(f->client->ops->resync(f->client, f->tcp_local, NULL, TLSNIC_DIR_TX, 5000, 3), 0);
    assert_int_equal(f->client->ops->resync(f->client, f->tcp_local, NULL, TLSNIC_DIR_RX, 5000, 3),
                     -ENOENT);
}

static struct tlsnic_ctl_flow_entry listed[64];
static int flow_list(const struct fixture *f);

/* A counter of the daemon's STATS, read through the protocol. */
static long daemon_stat(const struct fixture *f, const char *name)
{
    static char text[TLSNIC_CTL_MAX_MSG];
    char key[64];
    snprintf(key, sizeof(key), "\n%s ", name);
    text[0] = '\n';
    assert_true(tlsnic_ctl_query_stats(f->path, text + 1, sizeof(text) - 1) > 0);
    const char *p = strstr(text, key);
    assert_non_null(p);
    return strtol(p + strlen(key), NULL, 10);
}

/* Waits (bounded: 3 s) until the daemon holds `want` flows; returns how many it holds. */
static long flows_become(const struct fixture *f, long want)
{
    long flows = -1;
    for (int i = 0; i < 300 && flows != want; i++) {
        flows = flows_in_daemon(f);
        if (flows != want)
            usleep(10000);
    }
    return flows;
}

/* Small buffers, then the host's end writes until the kernel refuses more: the peer reads
 * nothing, so that much stays unacknowledged. Returns the bytes written. */
static size_t fill_unacknowledged(int local, int remote)
{
    int small = 65536;
    setsockopt(remote, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    setsockopt(local, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
    static uint8_t chunk[16384];
    memset(chunk, 0x55, sizeof(chunk));
    size_t sent = 0;
    for (int i = 0; i < 4096; i++) { /* bounded: 64 MB */
        ssize_t n = send(local, chunk, sizeof(chunk), MSG_DONTWAIT);
        if (n <= 0)
            break;
        sent += (size_t)n;
    }
    int outq = 0;
    assert_int_equal(ioctl(local, SIOCOUTQ, &outq), 0);
    assert_true(outq > 0);
    return sent;
}

/* Reads the peer's end until EOF or an error (bounded: 5 s without data). Returns the bytes
 * read; *how gets 0 for an orderly end (FIN), else -errno (-ECONNRESET: a reset). */
static size_t read_to_end(int remote, int *how)
{
    static uint8_t buf[65536];
    size_t got = 0;
    for (int i = 0; i < 100000; i++) {
        struct pollfd pfd = {.fd = remote, .events = POLLIN};
        if (poll(&pfd, 1, 5000) != 1) {
            *how = -ETIMEDOUT;
            return got;
        }
        ssize_t n = recv(remote, buf, sizeof(buf), 0);
        if (n <= 0) {
            *how = n == 0 ? 0 : -errno;
            return got;
        }
        got += (size_t)n;
    }
    *how = -E2BIG;
    return got;
}

static int release(struct tlsnic_dev *dev, int sockfd, unsigned flags)
{
    return dev->ops->release(dev, sockfd, NULL, TLSNIC_DIR_TX, flags);
}

static void the_daemon_holds_the_socket_the_host_closed_while_the_flow_is_offloaded(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(add(f->client, f->tcp_local, TLSNIC_DIR_TX), 0);
    /* Without a RELEASE the host's close ends nothing: the device context must outlive it
     * for as long as the socket may send, and only the daemon's reference says so. */
    close(f->tcp_local);
    f->tcp_local = -1;
    struct pollfd pfd = {.fd = f->tcp_remote, .events = POLLIN};
    assert_int_equal(poll(&pfd, 1, 200), 0);
    assert_int_equal(flows_in_daemon(f), 1);
}

static void release_ends_the_connection_with_a_fin_and_deletes_the_flow(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(add(f->client, f->tcp_local, TLSNIC_DIR_TX), 0);
    assert_int_equal(send(f->tcp_local, "last words", 10, 0), 10);
    assert_int_equal(release(f->client, f->tcp_local, 0), 0);
    close(f->tcp_local); /* the host's close, as tlsnic_close does it right after */
    f->tcp_local = -1;
    int how = 1;
    assert_int_equal(read_to_end(f->tcp_remote, &how), 10);
    assert_int_equal(how, 0); /* a FIN after the bytes, not a reset */
    assert_int_equal(flows_become(f, 0), 0);
    assert_int_equal(daemon_stat(f, "ctl_releases"), 1);
    assert_int_equal(daemon_stat(f, "ctl_finished"), 1);
    assert_int_equal(daemon_stat(f, "ctl_finish_resets"), 0);
}

static void a_released_flow_stays_offloaded_until_its_bytes_are_acknowledged(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(add(f->client, f->tcp_local, TLSNIC_DIR_TX), 0);
    size_t sent = fill_unacknowledged(f->tcp_local, f->tcp_remote);
    assert_int_equal(release(f->client, f->tcp_local, 0), 0);
    close(f->tcp_local);
    f->tcp_local = -1;
    /* Bytes the kernel still has to send or retransmit: the context stays, listed as
     * finishing. */
    usleep(100000);
    assert_int_equal(flows_in_daemon(f), 1);
    assert_int_equal(daemon_stat(f, "ctl_finishing"), 1);
    assert_int_equal(flow_list(f), 1);
    assert_int_equal(listed[0].flags & TLSNIC_CTL_FLOW_FINISHING, TLSNIC_CTL_FLOW_FINISHING);
    /* The peer reads: everything arrives, then the FIN, and only then the flow goes. */
    int how = 1;
    assert_int_equal(read_to_end(f->tcp_remote, &how), sent);
    assert_int_equal(how, 0);
    assert_int_equal(flows_become(f, 0), 0);
    assert_int_equal(daemon_stat(f, "ctl_finishing"), 0);
    assert_int_equal(flow_list(f), 1);
    assert_int_equal(listed[0].flags & (TLSNIC_CTL_FLOW_ENDED | TLSNIC_CTL_FLOW_FINISHING),
                     TLSNIC_CTL_FLOW_ENDED);
}

static void a_release_after_the_peer_closed_ends_once_the_last_fin_is_acknowledged(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(add(f->client, f->tcp_local, TLSNIC_DIR_TX), 0);
    assert_int_equal(shutdown(f->tcp_remote, SHUT_WR), 0); /* the peer closes first */
    char c;
    assert_int_equal(read(f->tcp_local, &c, 1), 0);        /* CLOSE_WAIT */
    assert_int_equal(send(f->tcp_local, "reply", 5, 0), 5);
    assert_int_equal(release(f->client, f->tcp_local, 0), 0); /* LAST_ACK, then closed */
    int how = 1;
    assert_int_equal(read_to_end(f->tcp_remote, &how), 5);
    assert_int_equal(how, 0);
    assert_int_equal(flows_become(f, 0), 0);
    assert_int_equal(daemon_stat(f, "ctl_finish_resets"), 0);
}

/*
 * Frames the socket sent before it closed may still be queued on their way to the device
 * when the daemon deletes the context (nginx under wrk: a reset closed the socket, its last
 * segment, queued in the TUN, then left in the clear): the 4-tuple stays fenced for the
 * linger time after the delete, then the fence goes.
 */
static void a_deleted_flow_stays_fenced_while_its_frames_may_still_be_queued(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(add(f->client, f->tcp_local, TLSNIC_DIR_TX), 0);
    assert_int_equal(daemon_stat(f, "ctl_lingering"), 0);
    assert_int_equal(send(f->tcp_local, "last words", 10, 0), 10);
    assert_int_equal(release(f->client, f->tcp_local, 0), 0);
    close(f->tcp_local);
    f->tcp_local = -1;
    int how = 1;
    assert_int_equal(read_to_end(f->tcp_remote, &how), 10);
    assert_int_equal(flows_become(f, 0), 0);
    assert_int_equal(daemon_stat(f, "ctl_lingering"), 1); /* fenced with the delete */
    long lingering = 1;
    for (int i = 0; i < 60 && lingering != 0; i++) { /* 300 ms, looked at for up to 3 s */
        usleep(50000);
        lingering = daemon_stat(f, "ctl_lingering");
    }
    assert_int_equal(lingering, 0);
    assert_int_equal(daemon_stat(f, "ctl_linger_full"), 0);
}

static void release_with_abort_resets_the_connection(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(add(f->client, f->tcp_local, TLSNIC_DIR_TX), 0);
    fill_unacknowledged(f->tcp_local, f->tcp_remote);
    assert_int_equal(release(f->client, f->tcp_local, TLSNIC_RELEASE_ABORT), 0);
    int how = 1;
    read_to_end(f->tcp_remote, &how);
    assert_int_equal(how, -ECONNRESET);
    assert_int_equal(flows_become(f, 0), 0);
    assert_int_equal(daemon_stat(f, "ctl_finish_resets"), 1);
}

static void release_of_a_socket_with_so_linger_zero_resets_it(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(add(f->client, f->tcp_local, TLSNIC_DIR_TX), 0);
    fill_unacknowledged(f->tcp_local, f->tcp_remote);
    /* What the application asked of close(2), read by the daemon from the shared socket. */
    struct linger reset = {.l_onoff = 1, .l_linger = 0};
    assert_int_equal(setsockopt(f->tcp_local, SOL_SOCKET, SO_LINGER, &reset, sizeof(reset)), 0);
    assert_int_equal(release(f->client, f->tcp_local, 0), 0);
    int how = 1;
    read_to_end(f->tcp_remote, &how);
    assert_int_equal(how, -ECONNRESET);
    assert_int_equal(flows_become(f, 0), 0);
}

static void release_of_a_socket_with_unread_bytes_resets_it(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(add(f->client, f->tcp_local, TLSNIC_DIR_TX), 0);
    assert_int_equal(send(f->tcp_remote, "unread", 6, 0), 6);
    usleep(20000);
    assert_int_equal(release(f->client, f->tcp_local, 0), 0);
    int how = 1;
    read_to_end(f->tcp_remote, &how);
    assert_int_equal(how, -ECONNRESET); /* as the kernel's close of a socket with unread data */
    assert_int_equal(flows_become(f, 0), 0);
}

static void a_finishing_flow_that_never_finishes_is_reset_after_the_finish_timeout(void **state)
{
    struct fixture *f = *state; /* finish timeout: 300 ms */
    assert_int_equal(add(f->client, f->tcp_local, TLSNIC_DIR_TX), 0);
    fill_unacknowledged(f->tcp_local, f->tcp_remote);
    assert_int_equal(release(f->client, f->tcp_local, 0), 0);
    /* The peer reads nothing: after the timeout the connection is reset, then deleted. */
    assert_int_equal(flows_become(f, 0), 0);
    assert_int_equal(daemon_stat(f, "ctl_finish_timeouts"), 1);
    int how = 1;
    read_to_end(f->tcp_remote, &how);
    assert_int_equal(how, -ECONNRESET);
}

static void del_with_bytes_unacknowledged_keeps_the_context_until_they_are(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(add(f->client, f->tcp_local, TLSNIC_DIR_TX), 0);
    size_t sent = fill_unacknowledged(f->tcp_local, f->tcp_remote);
    assert_int_equal(f->client->ops->del(f->client, f->tcp_local, NULL, TLSNIC_DIR_TX),
                     -EINPROGRESS);
    usleep(50000);
    assert_int_equal(flows_in_daemon(f), 1);
    /* The connection is left as it was: the host still writes, the peer reads it all. */
    assert_int_equal(send(f->tcp_local, "more", 4, 0), 4);
    static uint8_t buf[65536];
    size_t got = 0;
    for (int i = 0; i < 100000 && got < sent + 4; i++) {
        ssize_t n = recv(f->tcp_remote, buf, sizeof(buf), 0);
        assert_true(n > 0);
        got += (size_t)n;
    }
    assert_int_equal(got, sent + 4);
    assert_int_equal(flows_become(f, 0), 0);
}

static void closing_the_control_connection_finishes_its_flows_as_close_would(void **state)
{
    struct fixture *f = *state;
    struct tlsnic_dev *second;
    assert_int_equal(tlsnic_ctl_client_open(f->path, 2000, &second), 0);
    assert_int_equal(add(second, f->tcp_local, TLSNIC_DIR_TX), 0);
    size_t sent = fill_unacknowledged(f->tcp_local, f->tcp_remote);
    /* The host process dies (SIGKILL, exit without close): its descriptors close... */
    tlsnic_ctl_client_close(second);
    close(f->tcp_local);
    f->tcp_local = -1;
    usleep(100000);
    /* ... but the records it queued are still the device's to encrypt: kept, finishing. */
    assert_int_equal(flows_in_daemon(f), 1);
    assert_int_equal(daemon_stat(f, "ctl_finishing"), 1);
    int how = 1;
    assert_int_equal(read_to_end(f->tcp_remote, &how), sent);
    assert_int_equal(how, 0); /* all of it, then the FIN close(2) would have sent */
    assert_int_equal(flows_become(f, 0), 0);
}

/* An RX context has nothing to send: DEL and RELEASE of RX delete it at once, whatever the
 * socket still has unacknowledged (that is TX's, which keeps its own context). */
static void rx_flows_are_deleted_at_once_by_del_and_release(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(add(f->client, f->tcp_local, TLSNIC_DIR_TX), 0);
    assert_int_equal(add(f->client, f->tcp_local, TLSNIC_DIR_RX), 0);
    size_t sent = fill_unacknowledged(f->tcp_local, f->tcp_remote);
    assert_int_equal(f->client->ops->del(f->client, f->tcp_local, NULL, TLSNIC_DIR_RX), 0);
    assert_int_equal(flows_in_daemon(f), 1);
    assert_int_equal(add(f->client, f->tcp_local, TLSNIC_DIR_RX), 0);
    assert_int_equal(f->client->ops->release(f->client, f->tcp_local, NULL, TLSNIC_DIR_RX, 0), 0);
    assert_int_equal(flows_in_daemon(f), 1);
    assert_int_equal(daemon_stat(f, "ctl_finishing"), 0);
    assert_int_equal(f->client->ops->del(f->client, f->tcp_local, NULL, TLSNIC_DIR_RX), -ENOENT);
    /* TX is released as usual: finished once the peer has it all. */
    assert_int_equal(release(f->client, f->tcp_local, 0), 0);
    close(f->tcp_local);
    f->tcp_local = -1;
    int how = 1;
    assert_int_equal(read_to_end(f->tcp_remote, &how), sent);
    assert_int_equal(how, 0);
    assert_int_equal(flows_become(f, 0), 0);
}

/* A host that goes away: its TX flows finish as close(2) would, its RX flows go at once. */
static void closing_the_control_connection_deletes_its_rx_flows_at_once(void **state)
{
    struct fixture *f = *state;
    struct tlsnic_dev *second;
    assert_int_equal(tlsnic_ctl_client_open(f->path, 2000, &second), 0);
    assert_int_equal(add(second, f->tcp_local, TLSNIC_DIR_TX), 0);
    assert_int_equal(add(second, f->tcp_local, TLSNIC_DIR_RX), 0);
    size_t sent = fill_unacknowledged(f->tcp_local, f->tcp_remote);
    tlsnic_ctl_client_close(second);
    close(f->tcp_local);
    f->tcp_local = -1;
    assert_int_equal(flows_become(f, 1), 1); /* TX, finishing */
    assert_int_equal(daemon_stat(f, "ctl_finishing"), 1);
    int how = 1;
    assert_int_equal(read_to_end(f->tcp_remote, &how), sent);
    assert_int_equal(how, 0);
    assert_int_equal(flows_become(f, 0), 0);
}

static void an_add_the_state_file_cannot_record_is_refused(void **state)
{
    struct fixture *f = *state;
    /* A state file in a directory that does not exist: a restart would not know the flow. */
    stop_server_thread_and_free(f);
    snprintf(f->state_path, sizeof(f->state_path), "%s/missing/state", f->dir);
    f->state_path_always = 1;
    restart_server(f);
    assert_int_equal(add(f->client, f->tcp_local, TLSNIC_DIR_TX), -EIO);
    assert_int_equal(flows_in_daemon(f), 0);
    assert_int_equal(daemon_stat(f, "ctl_state_errors"), 1);
}

static void release_of_a_fenced_flow_keeps_the_fence_until_the_socket_is_done(void **state)
{
    struct fixture *f = *state;
    struct tlsnic_flow flow = flow_of(f->tcp_local);
    assert_int_equal(tlsnic_fence_add(f->fence, &flow), 0); /* as a restart leaves it */
    size_t sent = fill_unacknowledged(f->tcp_local, f->tcp_remote);
    assert_int_equal(release(f->client, f->tcp_local, 0), 0);
    close(f->tcp_local);
    f->tcp_local = -1;
    usleep(50000);
    assert_int_equal(daemon_stat(f, "ctl_fenced"), 1);
    int how = 1;
    assert_int_equal(read_to_end(f->tcp_remote, &how), sent);
    assert_int_equal(how, 0);
    long fenced = 1;
    for (int i = 0; i < 300 && fenced != 0; i++) { /* bounded: 3 s */
        fenced = daemon_stat(f, "ctl_fenced");
        if (fenced != 0)
            usleep(10000);
    }
    assert_int_equal(fenced, 0);
    assert_int_equal(flows_in_daemon(f), 0);
}

static void closing_the_control_connection_deletes_its_flows(void **state)
{
    struct fixture *f = *state;
    struct tlsnic_dev *second;
    assert_int_equal(tlsnic_ctl_client_open(f->path, 2000, &second), 0);
    assert_int_equal(add(second, f->tcp_local, TLSNIC_DIR_TX), 0);
    assert_int_equal(flows_in_daemon(f), 1);
    tlsnic_ctl_client_close(second);
    long flows = -1;
    for (int i = 0; i < 200 && flows != 0; i++) { /* bounded: 2 s */
        flows = flows_in_daemon(f);
        if (flows != 0)
            usleep(10000);
    }
    assert_int_equal(flows, 0);
}

static void flow_flags_of_another_connections_flow_is_refused(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(add(f->client, f->tcp_local, TLSNIC_DIR_TX), 0);
    struct tlsnic_dev *second;
    assert_int_equal(tlsnic_ctl_client_open(f->path, 2000, &second), 0);
    struct tlsnic_flow flow = flow_of(f->tcp_local);
    uint32_t flags;
    assert_int_equal(second->ops->flow_flags(second, &flow, TLSNIC_DIR_TX, &flags), -ENOENT);
    tlsnic_ctl_client_close(second);
}

static void malformed_request_gets_an_error_reply_and_the_connection_stays(void **state)
{
    struct fixture *f = *state;
    uint8_t junk[20] = {20, 0, 0, 0, 9, 9};
    assert_int_equal(raw_request(f, junk, sizeof(junk), -1), -EPROTO);
    assert_int_equal(add(f->client, f->tcp_local, TLSNIC_DIR_TX), 0);
}

static void control_socket_is_mode_0600(void **state)
{
    struct fixture *f = *state;
    struct stat st;
    assert_int_equal(lstat(f->path, &st), 0);
    assert_true(S_ISSOCK(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0600);
}

static void a_second_daemon_on_a_live_socket_is_refused(void **state)
{
    struct fixture *f = *state;
    tlsnic_ctl_server *second;
    struct tlsnic_ctl_server_config cfg = {.path = f->path, .dev = tlsnic_flowtable_dev(f->table)};
    assert_int_equal(tlsnic_ctl_server_new(&second, &cfg), -EADDRINUSE);
}

static void a_stale_socket_file_is_replaced(void **state)
{
    (void)state;
    char dir[] = "/tmp/tlsnic-ctl-stale.XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[128];
    snprintf(path, sizeof(path), "%s/ctl.sock", dir);
    /* A socket file nobody listens on: what a crashed daemon leaves. */
    int s = socket(AF_UNIX, SOCK_SEQPACKET, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    strcpy(sa.sun_path, path);
    assert_int_equal(bind(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
    close(s);
    struct tlsnic_flowtable *t;
    assert_int_equal(tlsnic_flowtable_new(&t, 1), 0);
    tlsnic_ctl_server *srv;
    struct tlsnic_ctl_server_config cfg = {.path = path, .dev = tlsnic_flowtable_dev(t)};
    assert_int_equal(tlsnic_ctl_server_new(&srv, &cfg), 0);
    tlsnic_ctl_server_free(srv);
    tlsnic_flowtable_free(t);
    assert_int_equal(access(path, F_OK), -1); /* free unlinks it */
    rmdir(dir);
}

static void a_full_flow_table_is_refused_with_enospc(void **state)
{
    struct fixture *f = *state; /* the table holds 8 */
    int locals[9], remotes[9];
    for (int i = 0; i < 9; i++)
        connected_pair(&locals[i], &remotes[i]);
    for (int i = 0; i < 8; i++)
        assert_int_equal(add(f->client, locals[i], TLSNIC_DIR_TX), 0);
    assert_int_equal(add(f->client, locals[8], TLSNIC_DIR_TX), -ENOSPC);
    for (int i = 0; i < 9; i++) {
        close(locals[i]);
        close(remotes[i]);
    }
}

static int state_file_lines(const struct fixture *f)
{
    FILE *in = fopen(f->state_path, "r");
    if (in == NULL)
        return -1;
    int lines = 0, c;
    while ((c = fgetc(in)) != EOF)
        lines += c == '\n';
    fclose(in);
    return lines;
}

static void stop_server_thread(struct fixture *f)
{
    assert_int_equal(write(f->stop_pipe[1], "x", 1), 1);
    pthread_join(f->thread, NULL);
    char c;
    assert_int_equal(read(f->stop_pipe[0], &c, 1), 1);
}

static void the_state_file_lists_offloaded_flows_and_outlives_the_daemon(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(add(f->client, f->tcp_local, TLSNIC_DIR_TX), 0);
    assert_int_equal(state_file_lines(f), 1);
    /* The daemon stops (cleanly here; SIGKILL leaves the file as it was anyway), and only
     * then its host notices. */
    stop_server_thread(f);
    tlsnic_ctl_server_free(f->server);
    f->server = NULL;
    tlsnic_ctl_client_close(f->client);
    f->client = NULL;
    assert_int_equal(state_file_lines(f), 1);
    /* The next daemon fences the flow until its host adds it again. */
    assert_int_equal(tlsnic_state_load(f->state_path, f->fence), 1);
    start_server(f);
    assert_int_equal(pthread_create(&f->thread, NULL, serve, f), 0);
    assert_int_equal(tlsnic_ctl_client_open(f->path, 2000, &f->client), 0);
    assert_int_equal(add(f->client, f->tcp_local, TLSNIC_DIR_TX), 0);
    assert_string_equal(tlsnic_ctl_client_last_error(f->client), "");
    assert_int_equal(flows_in_daemon(f), 1);
    static char text[TLSNIC_CTL_MAX_MSG];
    assert_true(tlsnic_ctl_query_stats(f->path, text, sizeof(text)) > 0);
    assert_non_null(strstr(text, "ctl_fenced 0\nctl_fences_lifted 1\n"));
}

static void del_removes_the_flow_from_the_state_file(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(add(f->client, f->tcp_local, TLSNIC_DIR_TX), 0);
    assert_int_equal(f->client->ops->del(f->client, f->tcp_local, NULL, TLSNIC_DIR_TX), 0);
    assert_int_equal(state_file_lines(f), 0);
}

static void del_of_a_fenced_flow_lifts_its_fence(void **state)
{
    struct fixture *f = *state;
    struct tlsnic_flow flow = flow_of(f->tcp_local);
    assert_int_equal(tlsnic_fence_add(f->fence, &flow), 0); /* as a restart leaves it */
    assert_int_equal(f->client->ops->del(f->client, f->tcp_local, NULL, TLSNIC_DIR_TX), 0);
    static char text[TLSNIC_CTL_MAX_MSG];
    assert_true(tlsnic_ctl_query_stats(f->path, text, sizeof(text)) > 0);
    assert_non_null(strstr(text, "ctl_fenced 0\n"));
    assert_int_equal(state_file_lines(f), 0);
}

static void a_reconnected_client_can_add_again(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(add(f->client, f->tcp_local, TLSNIC_DIR_TX), 0);
    assert_int_equal(tlsnic_ctl_client_reconnect(f->client), 0);
    long flows = -1;
    for (int i = 0; i < 200 && flows != 0; i++) { /* the old connection's flows are reaped */
        flows = flows_in_daemon(f);
        if (flows != 0)
            usleep(10000);
    }
    assert_int_equal(flows, 0);
    assert_int_equal(add(f->client, f->tcp_local, TLSNIC_DIR_TX), 0);
}

/* ---- FLOW_STATS ---- */

/* The daemon's flow list through the protocol; returns its length (all of it fits). */
static int flow_list(const struct fixture *f)
{
    uint32_t total = 0;
    uint16_t n_counters = 0;
    int n = tlsnic_ctl_query_flow_stats(f->path, listed, 64, &total, &n_counters);
    assert_true(n >= 0);
    assert_int_equal(n, total);
    assert_int_equal(n_counters, TLSNIC_CTL_FLOW_COUNTERS);
    return n;
}

static void flow_stats_lists_an_offloaded_flow_with_its_4tuple_direction_owner_and_counters(void **state)
{
    struct fixture *f = *state;
    f->counter_base = 500;
    assert_int_equal(add(f->client, f->tcp_local, TLSNIC_DIR_TX), 0);
    assert_int_equal(flow_list(f), 1);
    struct tlsnic_flow flow = flow_of(f->tcp_local);
    assert_memory_equal(&listed[0].flow, &flow, sizeof(flow));
    assert_int_equal(listed[0].dir, TLSNIC_DIR_TX);
    assert_int_equal(listed[0].flags, 0);
    assert_int_equal(listed[0].owner_pid, getpid());
    for (unsigned k = 0; k < TLSNIC_CTL_FLOW_COUNTERS; k++)
        assert_int_equal(listed[0].counters[k], 500 + k);
}

static void flow_stats_reads_the_counters_at_each_request(void **state)
{
    struct fixture *f = *state;
    f->counter_base = 1;
    assert_int_equal(add(f->client, f->tcp_local, TLSNIC_DIR_TX), 0);
    assert_int_equal(flow_list(f), 1);
    assert_int_equal(listed[0].counters[TLSNIC_CTL_FC_tx_tls_encrypted_bytes], 1 + TLSNIC_CTL_FC_tx_tls_encrypted_bytes);
    f->counter_base = 70000;
    assert_int_equal(flow_list(f), 1);
    assert_int_equal(listed[0].counters[TLSNIC_CTL_FC_tx_tls_encrypted_bytes], 70000 + TLSNIC_CTL_FC_tx_tls_encrypted_bytes);
}

static void flow_stats_keeps_a_deleted_flow_as_ended_with_its_counters_at_the_delete(void **state)
{
    struct fixture *f = *state;
    f->counter_base = 20000000;
    assert_int_equal(add(f->client, f->tcp_local, TLSNIC_DIR_TX), 0);
    assert_int_equal(f->client->ops->del(f->client, f->tcp_local, NULL, TLSNIC_DIR_TX), 0);
    f->counter_base = 3; /* the device forgot the flow: later readings must not show */
    assert_int_equal(flow_list(f), 1);
    struct tlsnic_flow flow = flow_of(f->tcp_local);
    assert_memory_equal(&listed[0].flow, &flow, sizeof(flow));
    assert_int_equal(listed[0].flags, TLSNIC_CTL_FLOW_ENDED);
    assert_int_equal(listed[0].counters[0], 20000000);
}

static void flow_stats_lists_offloaded_flows_before_ended_ones(void **state)
{
    struct fixture *f = *state;
    int local2, remote2;
    connected_pair(&local2, &remote2);
    assert_int_equal(add(f->client, f->tcp_local, TLSNIC_DIR_TX), 0);
    assert_int_equal(f->client->ops->del(f->client, f->tcp_local, NULL, TLSNIC_DIR_TX), 0);
    assert_int_equal(add(f->client, local2, TLSNIC_DIR_RX), 0);
    assert_int_equal(flow_list(f), 2);
    assert_int_equal(listed[0].dir, TLSNIC_DIR_RX);
    assert_int_equal(listed[0].flags, 0);
    assert_int_equal(listed[0].counters[0], 1000);
    assert_int_equal(listed[1].dir, TLSNIC_DIR_TX);
    assert_int_equal(listed[1].flags, TLSNIC_CTL_FLOW_ENDED);
    close(local2);
    close(remote2);
}

static void flow_stats_keeps_the_flows_of_a_closed_control_connection_as_ended(void **state)
{
    struct fixture *f = *state;
    struct tlsnic_dev *second;
    assert_int_equal(tlsnic_ctl_client_open(f->path, 2000, &second), 0);
    f->counter_base = 42;
    assert_int_equal(add(second, f->tcp_local, TLSNIC_DIR_TX), 0);
    tlsnic_ctl_client_close(second);
    int n = 0;
    for (int i = 0; i < 200; i++) { /* bounded: 2 s until the daemon saw the close */
        n = flow_list(f);
        if (n == 1 && listed[0].flags == TLSNIC_CTL_FLOW_ENDED)
            break;
        usleep(10000);
    }
    assert_int_equal(n, 1);
    assert_int_equal(listed[0].flags, TLSNIC_CTL_FLOW_ENDED);
    assert_int_equal(listed[0].counters[0], 42);
}

static void flow_stats_remembers_only_the_last_ended_flows(void **state)
{
    struct fixture *f = *state;
    for (unsigned i = 0; i < TLSNIC_CTL_ENDED_FLOWS + 3; i++) {
        f->counter_base = i;
        assert_int_equal(add(f->client, f->tcp_local, TLSNIC_DIR_TX), 0);
        assert_int_equal(f->client->ops->del(f->client, f->tcp_local, NULL, TLSNIC_DIR_TX), 0);
    }
    assert_int_equal(flow_list(f), TLSNIC_CTL_ENDED_FLOWS);
    /* Oldest first: the three oldest were dropped. */
    for (unsigned i = 0; i < TLSNIC_CTL_ENDED_FLOWS; i++)
        assert_int_equal(listed[i].counters[0], i + 3);
}

static void flow_stats_marks_a_flow_the_device_has_no_counters_for(void **state)
{
    struct fixture *f = *state; /* the plain fixture: no counter source at all */
    assert_int_equal(add(f->client, f->tcp_local, TLSNIC_DIR_TX), 0);
    assert_int_equal(flow_list(f), 1);
    assert_int_equal(listed[0].flags, TLSNIC_CTL_FLOW_NO_COUNTERS);
    assert_int_equal(listed[0].counters[0], 0);
}

static void flow_stats_from_past_the_end_is_an_empty_page(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(add(f->client, f->tcp_local, TLSNIC_DIR_TX), 0);
    /* By hand, to see the page itself. */
    int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    strcpy(sa.sun_path, f->path);
    assert_int_equal(connect(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
    static uint8_t msg[TLSNIC_CTL_MAX_MSG];
    struct tlsnic_ctl_msg req = {.type = TLSNIC_CTL_FLOW_STATS, .id = 1, .first = 5};
    int len = tlsnic_ctl_encode(&req, msg, sizeof(msg));
    assert_int_equal(send(s, msg, (size_t)len, 0), len);
    ssize_t n = recv(s, msg, sizeof(msg), 0);
    assert_true(n > 0);
    struct tlsnic_ctl_msg reply;
    assert_int_equal(tlsnic_ctl_decode(msg, (size_t)n, &reply), 0);
    assert_int_equal(reply.status, 0);
    struct tlsnic_ctl_flow_page page;
    assert_int_equal(tlsnic_ctl_flow_page_decode(reply.payload, reply.payload_len, &page, listed, 64), 0);
    assert_int_equal(page.total, 1);
    assert_int_equal(page.first, 1);
    assert_int_equal(page.count, 0);
    close(s);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(add_with_the_socket_offloads_its_flow),
        T(add_ignores_a_flow_argument_that_names_another_connection),
        T(add_without_a_socket_is_refused_with_ebadf),
        T(add_with_a_pipe_is_refused_with_enotsock),
        T(add_with_a_udp_socket_is_refused),
        T(add_with_an_unconnected_tcp_socket_is_refused),
        T(add_of_an_offloaded_flow_is_refused_with_eexist),
        T(add_with_a_bad_crypto_info_is_refused_by_the_device),
        T(del_with_the_socket_removes_the_flow),
        T(del_after_the_connection_ended_is_accepted),
        T(del_with_an_unconnected_socket_that_was_never_added_is_refused),
        T(del_with_another_socket_is_refused),
        T(del_that_names_the_flow_in_the_message_is_refused),
        T(a_process_without_the_socket_cannot_add_or_del_its_flow),
        T(resync_with_the_socket_is_accepted),
        T(the_daemon_holds_the_socket_the_host_closed_while_the_flow_is_offloaded),
        T(release_ends_the_connection_with_a_fin_and_deletes_the_flow),
        T(a_released_flow_stays_offloaded_until_its_bytes_are_acknowledged),
        T(a_release_after_the_peer_closed_ends_once_the_last_fin_is_acknowledged),
        cmocka_unit_test_setup_teardown(a_deleted_flow_stays_fenced_while_its_frames_may_still_be_queued,
                                        setup_linger, teardown),
        T(release_with_abort_resets_the_connection),
        T(release_of_a_socket_with_so_linger_zero_resets_it),
        T(release_of_a_socket_with_unread_bytes_resets_it),
        cmocka_unit_test_setup_teardown(a_finishing_flow_that_never_finishes_is_reset_after_the_finish_timeout,
                                        setup_short_finish, teardown),
        T(del_with_bytes_unacknowledged_keeps_the_context_until_they_are),
        T(closing_the_control_connection_deletes_its_flows),
        T(closing_the_control_connection_finishes_its_flows_as_close_would),
        T(rx_flows_are_deleted_at_once_by_del_and_release),
        T(closing_the_control_connection_deletes_its_rx_flows_at_once),
        T(an_add_the_state_file_cannot_record_is_refused),
        cmocka_unit_test_setup_teardown(release_of_a_fenced_flow_keeps_the_fence_until_the_socket_is_done,
                                        setup_stateful, teardown),
        T(flow_flags_of_another_connections_flow_is_refused),
        T(malformed_request_gets_an_error_reply_and_the_connection_stays),
        T(control_socket_is_mode_0600),
        T(a_second_daemon_on_a_live_socket_is_refused),
        cmocka_unit_test(a_stale_socket_file_is_replaced),
        T(a_full_flow_table_is_refused_with_enospc),
        T(a_reconnected_client_can_add_again),
        cmocka_unit_test_setup_teardown(the_state_file_lists_offloaded_flows_and_outlives_the_daemon,
                                        setup_stateful, teardown),
        cmocka_unit_test_setup_teardown(del_removes_the_flow_from_the_state_file, setup_stateful,
                                        teardown),
        cmocka_unit_test_setup_teardown(del_of_a_fenced_flow_lifts_its_fence, setup_stateful,
                                        teardown),
#define TC(name) cmocka_unit_test_setup_teardown(name, setup_counters, teardown)
        TC(flow_stats_lists_an_offloaded_flow_with_its_4tuple_direction_owner_and_counters),
        TC(flow_stats_reads_the_counters_at_each_request),
        TC(flow_stats_keeps_a_deleted_flow_as_ended_with_its_counters_at_the_delete),
        TC(flow_stats_lists_offloaded_flows_before_ended_ones),
        TC(flow_stats_keeps_the_flows_of_a_closed_control_connection_as_ended),
        TC(flow_stats_remembers_only_the_last_ended_flows),
        T(flow_stats_marks_a_flow_the_device_has_no_counters_for),
        T(flow_stats_from_past_the_end_is_an_empty_page),
    };
    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
