/*
 * tlsnic_attach_daemon: the host socket layer offloads to tlsnicd by itself. A ctl server
 * with a flow-table device runs in a thread of this process, as tlsnicd runs it, and is
 * stopped and started again to play a daemon that dies and comes back.
 * Needs root (device mode reads TCP sequence numbers with TCP_REPAIR): exit 77 otherwise.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/wait.h>
#include <time.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cmocka.h>

#include "tcp_pair.h"
#include "tlsnic/attach.h"
#include "tlsnic/shm_writer.h"
#include "flowtable.h"
#include "tlsnic/ctl_client.h"
#include "tlsnic/ctl_server.h"
#include "tlsnic/ktls.h"

struct daemon {
    struct tlsnic_flowtable *table;
    tlsnic_ctl_server *server;
    pthread_t thread;
    atomic_int stop; /* the serving thread reads it */
};

static char ctl_path[108];

static void *serve(void *arg)
{
    struct daemon *d = arg;
    while (!atomic_load(&d->stop)) {
        struct pollfd pfd[16];
        int n = tlsnic_ctl_server_poll_setup(d->server, pfd, 16);
        /* as tlsnicd: processed after every wake-up, so finishing flows are looked at */
        if (poll(pfd, (nfds_t)n, 10) >= 0)
            tlsnic_ctl_server_process(d->server, pfd, n);
    }
    return NULL;
}

static void daemon_start(struct daemon *d)
{
    memset(d, 0, sizeof(*d));
    assert_int_equal(tlsnic_flowtable_new(&d->table, 0), 0);
    struct tlsnic_ctl_server_config cfg = {.path = ctl_path,
                                           .dev = tlsnic_flowtable_dev(d->table)};
    assert_int_equal(tlsnic_ctl_server_new(&d->server, &cfg), 0);
    assert_int_equal(pthread_create(&d->thread, NULL, serve, d), 0);
}

/* Like SIGKILL as far as the host can tell: its control connection ends. */
static void daemon_stop(struct daemon *d)
{
    atomic_store(&d->stop, 1);
    pthread_join(d->thread, NULL);
    tlsnic_ctl_server_free(d->server);
    tlsnic_flowtable_free(d->table);
}

struct conn {
    int fd, peer;
};

static void conn_tls_tx(struct conn *c)
{
    int fds[2];
    assert_int_equal(tcp_pair(fds), 0);
    c->fd = fds[0];
    c->peer = fds[1];
    struct tls12_crypto_info_aes_gcm_128 ci;
    memset(&ci, 0x5e, sizeof(ci));
    ci.info.version = TLS_1_2_VERSION;
    ci.info.cipher_type = TLS_CIPHER_AES_GCM_128;
    assert_int_equal(tlsnic_setsockopt(c->fd, SOL_TCP, TCP_ULP, "tls", 4), 0);
    assert_int_equal(tlsnic_setsockopt(c->fd, SOL_TLS, TLS_TX, &ci, sizeof(ci)), 0);
}

static void conn_close(struct conn *c)
{
    tlsnic_close(c->fd);
    close(c->peer);
}

/* The daemon ends a closed socket's flow once the socket has nothing more to send: waits
 * (bounded: 3 s) until it holds `want` flows, and returns how many it holds. */
static uint32_t daemon_flows_become(const struct daemon *d, uint32_t want)
{
    uint32_t n = tlsnic_flowtable_count(d->table);
    for (int i = 0; i < 300 && n != want; i++) {
        usleep(10000);
        n = tlsnic_flowtable_count(d->table);
    }
    return n;
}

static struct tlsnic_mode_info tx_mode(const struct conn *c)
{
    struct tlsnic_mode_info m;
    assert_int_equal(tlsnic_get_mode(c->fd, TLSNIC_DIR_TX, &m), 0);
    return m;
}

/* How many record stores (memfds named by shmstore.c) this process holds. */
/* Stores in use: open store memfds, less the ones kept for reuse (shmstore.h). */
static int shm_stores_open(void)
{
    DIR *dir = opendir("/proc/self/fd");
    assert_non_null(dir);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(dir)) != NULL) {
        char link[300], target[256];
        snprintf(link, sizeof(link), "/proc/self/fd/%s", e->d_name);
        ssize_t len = readlink(link, target, sizeof(target) - 1);
        if (len > 0) {
            target[len] = '\0';
            n += strstr(target, "memfd:tlsnic-rec-store") != NULL;
        }
    }
    closedir(dir);
    return n - tlsnic_shm_writers_kept();
}

static void no_daemon_listening_leaves_tx_in_software_as_unreachable(void **state)
{
    (void)state;
    struct conn c;
    conn_tls_tx(&c);
    struct tlsnic_mode_info m = tx_mode(&c);
    assert_int_equal(m.mode, TLSNIC_MODE_SW);
    assert_int_equal(m.reason, TLSNIC_SW_REASON_DEVICE_UNREACHABLE);
    assert_true(m.dev_errno == -ENOENT || m.dev_errno == -ECONNREFUSED);
    assert_int_equal(shm_stores_open(), 0);
    assert_int_equal(tlsnic_send(c.fd, "sw", 2, 0), 2);
    conn_close(&c);
}

static void listening_daemon_takes_tx_with_a_shared_memory_store(void **state)
{
    (void)state;
    struct daemon d;
    daemon_start(&d);
    struct conn c;
    conn_tls_tx(&c);
    struct tlsnic_mode_info m = tx_mode(&c);
    assert_int_equal(m.mode, TLSNIC_MODE_DEVICE);
    assert_int_equal(tlsnic_flowtable_count(d.table), 1);
    assert_int_equal(shm_stores_open(), 1);
    conn_close(&c);
    assert_int_equal(daemon_flows_become(&d, 0), 0);
    assert_int_equal(shm_stores_open(), 0);
    daemon_stop(&d);
}

static void restarted_daemon_gets_the_flow_again_and_meanwhile_new_sockets_stay_software(void **state)
{
    (void)state;
    struct daemon d;
    daemon_start(&d);
    struct conn c;
    conn_tls_tx(&c);
    assert_int_equal(tx_mode(&c).mode, TLSNIC_MODE_DEVICE);
    const uint64_t readd0 = tlsnic_stat_get(TLSNIC_STAT_TX_DEVICE_READD);

    daemon_stop(&d);
    struct conn during;
    conn_tls_tx(&during);
    struct tlsnic_mode_info m = tx_mode(&during);
    assert_int_equal(m.mode, TLSNIC_MODE_SW);
    assert_true(m.reason == TLSNIC_SW_REASON_DEVICE_GONE ||
                m.reason == TLSNIC_SW_REASON_DEVICE_UNREACHABLE);

    daemon_start(&d);
    int i;
    /* bounded: 3 s; the watcher retries every TLSNIC_ATTACH_RETRY_MS, and counts the
       re-add once the daemon's reply is in */
    for (i = 0; i < 300 && (tlsnic_flowtable_count(d.table) == 0 ||
                            tlsnic_stat_get(TLSNIC_STAT_TX_DEVICE_READD) == readd0); i++)
        usleep(10000);
    assert_int_equal(tlsnic_flowtable_count(d.table), 1); /* c, not the software socket */
    assert_int_equal(tlsnic_stat_get(TLSNIC_STAT_TX_DEVICE_READD), readd0 + 1);
    assert_int_equal(tx_mode(&c).mode, TLSNIC_MODE_DEVICE);
    conn_close(&during);
    conn_close(&c);
    assert_int_equal(daemon_flows_become(&d, 0), 0);
    daemon_stop(&d);
}

static uint64_t ctl_connections(const struct daemon *d)
{
    char text[4096];
    assert_true(tlsnic_ctl_server_stats_format(d->server, text, sizeof(text)) > 0);
    const char *p = strstr(text, "ctl_connections ");
    assert_non_null(p);
    return strtoull(p + strlen("ctl_connections "), NULL, 10);
}

static void forked_child_offloads_over_its_own_connection(void **state)
{
    (void)state;
    struct daemon d;
    daemon_start(&d);
    struct conn c;
    conn_tls_tx(&c); /* the parent is connected */
    assert_int_equal(tx_mode(&c).mode, TLSNIC_MODE_DEVICE);
    const uint64_t connections = ctl_connections(&d);
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        struct conn cc;
        conn_tls_tx(&cc);
        _exit(tx_mode(&cc).mode == TLSNIC_MODE_DEVICE ? 0 : 1);
    }
    int status = -1;
    for (int i = 0; i < 500 && waitpid(child, &status, WNOHANG) == 0; i++)
        usleep(10000); /* bounded: 5 s */
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    /* A connection of its own: sharing the parent's would mix up the replies. */
    assert_int_equal(ctl_connections(&d), connections + 1);
    conn_close(&c);
    daemon_stop(&d);
}

/* Fills the connection until the kernel refuses more (the peer does not read), then lets
 * the record left pending in user space go: unacknowledged bytes, nothing pending. */
static size_t fill_window(const struct conn *c)
{
    static uint8_t chunk[16384];
    size_t sent = 0;
    for (int i = 0; i < 4096; i++) { /* bounded: 64 MB */
        ssize_t n = tlsnic_send(c->fd, chunk, sizeof(chunk), MSG_DONTWAIT);
        if (n < 0)
            break;
        sent += (size_t)n;
    }
    assert_int_equal(errno, EAGAIN);
    static uint8_t sink[32768];
    size_t taken = 0;
    for (int i = 0; i < 200 && tlsnic_flush(c->fd) != 0; i++) {
        ssize_t n = recv(c->peer, sink, sizeof(sink), 0);
        assert_true(n > 0);
        taken += (size_t)n;
    }
    assert_int_equal(tlsnic_flush(c->fd), 0);
    int outq = 0;
    assert_int_equal(ioctl(c->fd, SIOCOUTQ, &outq), 0);
    assert_true(outq > 0);
    return sent;
}

static void close_returns_at_once_and_the_daemon_ends_the_flow_once_it_is_acknowledged(void **state)
{
    (void)state;
    struct daemon d;
    daemon_start(&d);
    struct conn c;
    conn_tls_tx(&c);
    assert_int_equal(tx_mode(&c).mode, TLSNIC_MODE_DEVICE);
    fill_window(&c);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(tlsnic_close(c.fd), 0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    long us = (t1.tv_sec - t0.tv_sec) * 1000000 + (t1.tv_nsec - t0.tv_nsec) / 1000;
    print_message("      tlsnic_close with %s unacknowledged: %ld us\n", "a full window", us);
    assert_true(us < 50000); /* one request to the daemon, no wait for the peer */
    /* The daemon holds the socket: the flow stays while bytes are unacknowledged. */
    usleep(50000);
    assert_int_equal(tlsnic_flowtable_count(d.table), 1);
    /* The peer reads it all, then the FIN; only then does the daemon let go. */
    static uint8_t buf[65536];
    ssize_t n;
    for (int i = 0; i < 100000 && (n = read(c.peer, buf, sizeof(buf))) > 0; i++)
        ;
    assert_int_equal(n, 0);
    assert_int_equal(daemon_flows_become(&d, 0), 0);
    assert_int_equal(shm_stores_open(), 0); /* the store came back once the daemon let go */
    close(c.peer);
    daemon_stop(&d);
}

static void a_forked_child_closing_its_copy_leaves_the_parents_flow_offloaded(void **state)
{
    (void)state;
    struct daemon d;
    daemon_start(&d);
    struct conn c;
    conn_tls_tx(&c);
    assert_int_equal(tx_mode(&c).mode, TLSNIC_MODE_DEVICE);
    assert_int_equal(tlsnic_send(c.fd, "before", 6, 0), 6);
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0)
        _exit(tlsnic_close(c.fd) == 0 ? 0 : 1);
    int status = -1;
    for (int i = 0; i < 500 && waitpid(child, &status, WNOHANG) == 0; i++)
        usleep(10000); /* bounded: 5 s */
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    usleep(50000);
    assert_int_equal(tlsnic_flowtable_count(d.table), 1);
    assert_int_equal(tx_mode(&c).mode, TLSNIC_MODE_DEVICE);
    assert_int_equal(tlsnic_send(c.fd, "after", 5, 0), 5);
    conn_close(&c);
    assert_int_equal(daemon_flows_become(&d, 0), 0);
    daemon_stop(&d);
}

static void attaching_twice_is_EALREADY(void **state)
{
    (void)state;
    assert_int_equal(tlsnic_attach_daemon(ctl_path), -EALREADY);
    assert_string_equal(tlsnic_attach_path(), ctl_path);
}

int main(void)
{
    if (geteuid() != 0) {
        printf("SKIP: device mode reads TCP sequence numbers with TCP_REPAIR (root)\n");
        return 77;
    }
    snprintf(ctl_path, sizeof(ctl_path), "/tmp/tlsnic-attach-test-%d.sock", (int)getpid());
    unlink(ctl_path);
    if (tlsnic_attach_daemon(ctl_path) != 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(no_daemon_listening_leaves_tx_in_software_as_unreachable),
        cmocka_unit_test(listening_daemon_takes_tx_with_a_shared_memory_store),
        cmocka_unit_test(restarted_daemon_gets_the_flow_again_and_meanwhile_new_sockets_stay_software),
        cmocka_unit_test(forked_child_offloads_over_its_own_connection),
        cmocka_unit_test(close_returns_at_once_and_the_daemon_ends_the_flow_once_it_is_acknowledged),
        cmocka_unit_test(a_forked_child_closing_its_copy_leaves_the_parents_flow_offloaded),
        cmocka_unit_test(attaching_twice_is_EALREADY),
    };
    int rc = cmocka_run_group_tests_name("attach", tests, NULL, NULL);
    unlink(ctl_path);
    return rc;
}
