/*
 * The record store over the control channel: an ADD that carries the host's store memfd
 * gives the device a store it reads the host's records from; a store the daemon could
 * not map safely is refused; the mapping goes away with the flow. RX: an RX store carries
 * the RX status the device writes and the host reads; a device that decrypts gets RX adds
 * only with an RX store; REKEY reaches the device.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
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
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "tcp_pair.h"
#include "flowtable.h"
#include "tlsnic/ctl_client.h"
#include "tlsnic/ctl_server.h"
#include "tlsnic/shm_reader.h"
#include "tlsnic/rx_status.h"
#include "tlsnic/shm_writer.h"

/* A device that, at add, reads the record at the start sequence through the store. */
struct spy {
    struct tlsnic_dev dev;
    int adds;
    int got_store;
    struct tlsnic_rec_ref first; /* bytes copied below */
    uint8_t first_bytes[64];
    _Atomic uint32_t flags; /* what flow_flags reports */
};

static int spy_add(struct tlsnic_dev *dev, int sockfd, const struct tlsnic_flow *flow,
                   enum tlsnic_dir dir, const void *crypto_info, size_t info_len,
                   uint32_t start_tcp_seq, const struct tlsnic_rec_store *store)
{
    struct spy *s = dev->priv;
    s->adds++;
    if (store != NULL && store->ops->get_record(store->priv, start_tcp_seq, &s->first) == 0) {
        s->got_store = 1;
        memcpy(s->first_bytes, s->first.bytes, s->first.len < 64 ? s->first.len : 64);
    }
    return 0;
}

static int spy_del(struct tlsnic_dev *dev, int sockfd, const struct tlsnic_flow *flow,
                   enum tlsnic_dir dir)
{
    return 0;
}

static int spy_resync(struct tlsnic_dev *dev, int sockfd, const struct tlsnic_flow *flow,
                      enum tlsnic_dir dir, uint32_t tcp_seq, uint64_t rec_seq)
{
    return 0;
}

static int spy_flags(struct tlsnic_dev *dev, const struct tlsnic_flow *flow, enum tlsnic_dir dir,
                     uint32_t *flags)
{
    struct spy *s = dev->priv;
    *flags = s->flags;
    return 0;
}

static const struct tlsnic_dev_ops spy_ops = {
    .name = "spy", .add = spy_add, .del = spy_del, .resync = spy_resync, .flow_flags = spy_flags};

/* The same spy as a device that decrypts: at an RX add it writes one entry and a resync
 * request into the RX status; a rekey reads the host's consumed_seq there. */
static struct tlsnic_rxs *spy_rxs;
static uint32_t spy_rekey_seq, spy_consumed;
static int spy_rekeys;

static int spy_rx_add(struct tlsnic_dev *dev, int sockfd, const struct tlsnic_flow *flow,
                      enum tlsnic_dir dir, const void *crypto_info, size_t info_len,
                      uint32_t start_tcp_seq, const struct tlsnic_rec_store *store)
{
    struct spy *s = dev->priv;
    s->adds++;
    if (dir != TLSNIC_DIR_RX || store == NULL || store->rx_status == NULL)
        return -EINVAL;
    spy_rxs = store->rx_status;
    struct tlsnic_rxs_entry e = {.tcp_seq = start_tcp_seq, .len = 100, .rec_seq = 7,
                                 .state = TLSNIC_RXS_STATE(71, TLSNIC_RXS_OK), .hn = 13};
    tlsnic_rxs_put(spy_rxs, 0, &e);
    tlsnic_rxs_request(spy_rxs, start_tcp_seq + 100);
    return 0;
}

static int spy_rekey(struct tlsnic_dev *dev, int sockfd, const struct tlsnic_flow *flow,
                     enum tlsnic_dir dir, const void *crypto_info, size_t info_len,
                     uint32_t tcp_seq)
{
    spy_rekeys++;
    spy_rekey_seq = tcp_seq;
    if (spy_rxs)
        tlsnic_rxs_consumed(spy_rxs, &spy_consumed);
    return 0;
}

static const struct tlsnic_dev_ops spy_rx_ops = {
    .name = "spy-rx", .add = spy_rx_add, .del = spy_del, .resync = spy_resync,
    .flow_flags = spy_flags, .rekey = spy_rekey, .caps = TLSNIC_DEV_CAP_RX};

struct fixture {
    char dir[64], path[128];
    struct spy spy;
    tlsnic_ctl_server *server;
    pthread_t thread;
    int stop_pipe[2];
    struct tlsnic_dev *client;
    int tcp_local, tcp_remote;
    tlsnic_shm_writer *w;
};

static void *serve(void *arg)
{
    struct fixture *f = arg;
    for (;;) {
        struct pollfd pfd[40];
        pfd[0] = (struct pollfd){.fd = f->stop_pipe[0], .events = POLLIN};
        int n = tlsnic_ctl_server_poll_setup(f->server, pfd + 1, 39);
        if (poll(pfd, (nfds_t)n + 1, 1000) < 0)
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

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    snprintf(f->dir, sizeof(f->dir), "/tmp/tlsnic-store-test.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof(f->path), "%s/ctl.sock", f->dir);
    f->spy.dev = (struct tlsnic_dev){.ops = &spy_ops, .priv = &f->spy};
    struct tlsnic_ctl_server_config cfg = {.path = f->path, .dev = &f->spy.dev};
    assert_int_equal(tlsnic_ctl_server_new(&f->server, &cfg), 0);
    assert_int_equal(pipe2(f->stop_pipe, O_CLOEXEC), 0);
    assert_int_equal(pthread_create(&f->thread, NULL, serve, f), 0);
    assert_int_equal(tlsnic_ctl_client_open(f->path, 2000, &f->client), 0);
    connected_pair(&f->tcp_local, &f->tcp_remote);
    assert_int_equal(tlsnic_shm_writer_new(&f->w, 8, 0), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    tlsnic_ctl_client_close(f->client);
    assert_int_equal(write(f->stop_pipe[1], "x", 1), 1);
    pthread_join(f->thread, NULL);
    tlsnic_ctl_server_free(f->server);
    tlsnic_shm_writer_free(f->w);
    close(f->stop_pipe[0]);
    close(f->stop_pipe[1]);
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

/* Read-only shared mappings of a host store in this process (the daemon's side). */
static int daemon_store_mappings(void)
{
    FILE *maps = fopen("/proc/self/maps", "r");
    assert_non_null(maps);
    char line[512];
    int n = 0;
    while (fgets(line, sizeof(line), maps) != NULL)
        n += strstr(line, "tlsnic-rec-store") != NULL && strstr(line, " r--s ") != NULL;
    fclose(maps);
    return n;
}

/* Sends an ADD with the given fds on a fresh connection; returns the reply status. */
static int raw_add(const struct fixture *f, const int *fds, int n_fds)
{
    struct tls12_crypto_info_aes_gcm_128 ci = good_info();
    uint8_t msg[128];
    struct tlsnic_ctl_msg m = {.type = TLSNIC_CTL_ADD, .info = (const uint8_t *)&ci,
                               .info_len = sizeof(ci)};
    int len = tlsnic_ctl_encode(&m, msg, sizeof(msg));
    int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    strcpy(sa.sun_path, f->path);
    assert_int_equal(connect(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
    struct iovec iov = {.iov_base = msg, .iov_len = (size_t)len};
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int) * 3)];
    } control;
    memset(&control, 0, sizeof(control));
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
                        .msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)n_fds)};
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)n_fds);
    memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)n_fds);
    assert_int_equal(sendmsg(s, &mh, 0), len);
    static uint8_t reply[TLSNIC_CTL_MAX_MSG];
    struct pollfd pfd = {.fd = s, .events = POLLIN};
    assert_int_equal(poll(&pfd, 1, 2000), 1);
    ssize_t n = recv(s, reply, sizeof(reply), 0);
    struct tlsnic_ctl_msg r;
    assert_int_equal(tlsnic_ctl_decode(reply, (size_t)n, &r), 0);
    close(s);
    return r.status;
}

static void the_device_reads_the_hosts_records_through_the_store(void **state)
{
    struct fixture *f = *state;
    uint8_t rec[300];
    for (size_t i = 0; i < sizeof(rec); i++)
        rec[i] = (uint8_t)i;
    assert_int_equal(tlsnic_shm_writer_put(f->w, 5000, 3, rec, sizeof(rec)), 0);
    struct tls12_crypto_info_aes_gcm_128 ci = good_info();
    assert_int_equal(f->client->ops->add(f->client, f->tcp_local, NULL, TLSNIC_DIR_TX, &ci,
                                         sizeof(ci), 5100, tlsnic_shm_writer_store(f->w)),
                     0);
    assert_int_equal(f->spy.adds, 1);
    assert_int_equal(f->spy.got_store, 1);
    assert_int_equal(f->spy.first.tcp_seq, 5000);
    assert_int_equal(f->spy.first.rec_seq, 3);
    assert_int_equal(f->spy.first.len, sizeof(rec));
    assert_memory_equal(f->spy.first_bytes, rec, 64);
}

static void the_devices_flags_reach_the_hosts_store_without_a_request(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(tlsnic_shm_writer_device_flags(f->w), 0); /* nothing published yet */
    struct tls12_crypto_info_aes_gcm_128 ci = good_info();
    assert_int_equal(f->client->ops->add(f->client, f->tcp_local, NULL, TLSNIC_DIR_TX, &ci,
                                         sizeof(ci), 5100, tlsnic_shm_writer_store(f->w)),
                     0);
    /* Published with the add: live, nothing raised. */
    assert_int_equal(tlsnic_shm_writer_device_flags(f->w), TLSNIC_FLOW_F_LIVE);
    f->spy.flags = TLSNIC_FLOW_F_INTEGRITY;
    uint32_t seen = 0;
    for (int i = 0; i < 300 && !(seen & TLSNIC_FLOW_F_INTEGRITY); i++) {
        usleep(10000);
        seen = tlsnic_shm_writer_device_flags(f->w);
    }
    assert_int_equal(seen, TLSNIC_FLOW_F_LIVE | TLSNIC_FLOW_F_INTEGRITY);
}

static void a_store_that_is_not_a_sealed_memfd_is_refused(void **state)
{
    struct fixture *f = *state;
    int unsealed = memfd_create("tlsnic-rec-store", MFD_CLOEXEC);
    assert_int_equal(ftruncate(unsealed, 1 << 16), 0);
    int fds[2] = {f->tcp_local, unsealed};
    assert_int_equal(raw_add(f, fds, 2), -EPERM);
    assert_int_equal(f->spy.adds, 0);
    close(unsealed);
}

static void three_fds_are_refused(void **state)
{
    struct fixture *f = *state;
    int store = tlsnic_shm_store_fd(tlsnic_shm_writer_store(f->w));
    int fds[3] = {f->tcp_local, store, store};
    assert_int_equal(raw_add(f, fds, 3), -EINVAL);
    assert_int_equal(f->spy.adds, 0);
}

static void a_host_that_goes_away_frees_its_share(void **state)
{
    struct fixture *f = *state;
    struct tls12_crypto_info_aes_gcm_128 ci = good_info();
    int before = daemon_store_mappings();
    assert_int_equal(f->client->ops->add(f->client, f->tcp_local, NULL, TLSNIC_DIR_TX, &ci,
                                         sizeof(ci), 0, tlsnic_shm_writer_store(f->w)),
                     0);
    assert_int_equal(daemon_store_mappings(), before + 1);
    tlsnic_ctl_client_close(f->client); /* the host goes away */
    f->client = NULL;
    int now = -1;
    for (int i = 0; i < 200 && now != before; i++) { /* bounded: 2 s */
        now = daemon_store_mappings();
        if (now != before)
            usleep(10000);
    }
    assert_int_equal(now, before);
}

static void del_unmaps_the_store(void **state)
{
    struct fixture *f = *state;
    struct tls12_crypto_info_aes_gcm_128 ci = good_info();
    int before = daemon_store_mappings();
    assert_int_equal(f->client->ops->add(f->client, f->tcp_local, NULL, TLSNIC_DIR_TX, &ci,
                                         sizeof(ci), 0, tlsnic_shm_writer_store(f->w)),
                     0);
    assert_int_equal(f->client->ops->del(f->client, f->tcp_local, NULL, TLSNIC_DIR_TX), 0);
    assert_int_equal(daemon_store_mappings(), before);
}

static struct tls13_ci {
    struct tls12_crypto_info_aes_gcm_128 ci;
} tls13_info(void)
{
    struct tls13_ci c;
    memset(&c, 0x22, sizeof(c));
    c.ci.info.version = TLS_1_3_VERSION;
    c.ci.info.cipher_type = TLS_CIPHER_AES_GCM_128;
    return c;
}

static void rx_needs_an_rx_store_and_tx_takes_none(void **state)
{
    struct fixture *f = *state;
    f->spy.dev.ops = &spy_rx_ops;
    tlsnic_shm_writer *rw;
    assert_int_equal(tlsnic_shm_writer_new_rx(&rw, 0), 0);
    struct tls13_ci c = tls13_info();
    assert_int_equal(f->client->ops->add(f->client, f->tcp_local, NULL, TLSNIC_DIR_RX, &c.ci,
                                         sizeof(c.ci), 5000, NULL),
                     -EINVAL);
    assert_int_equal(f->client->ops->add(f->client, f->tcp_local, NULL, TLSNIC_DIR_RX, &c.ci,
                                         sizeof(c.ci), 5000, tlsnic_shm_writer_store(f->w)),
                     -EINVAL);
    assert_int_equal(f->client->ops->add(f->client, f->tcp_local, NULL, TLSNIC_DIR_TX, &c.ci,
                                         sizeof(c.ci), 5000, tlsnic_shm_writer_store(rw)),
                     -EINVAL);
    assert_int_equal(f->spy.adds, 0);
    tlsnic_shm_writer_free(rw);
}

static void the_device_writes_the_rx_status_the_host_reads(void **state)
{
    struct fixture *f = *state;
    f->spy.dev.ops = &spy_rx_ops;
    spy_rxs = NULL;
    spy_rekeys = 0;
    tlsnic_shm_writer *rw;
    assert_int_equal(tlsnic_shm_writer_new_rx(&rw, 64), 0);
    struct tlsnic_rxs *host = tlsnic_shm_writer_rx_status(rw);
    assert_non_null(host);
    assert_int_equal(host->n, 64);
    struct tls13_ci c = tls13_info();
    assert_int_equal(f->client->ops->add(f->client, f->tcp_local, NULL, TLSNIC_DIR_RX, &c.ci,
                                         sizeof(c.ci), 5000, tlsnic_shm_writer_store(rw)),
                     0);
    /* What the device wrote in the daemon's mapping, the host reads in its own. */
    struct tlsnic_rxs_reader rd;
    assert_int_equal(tlsnic_rxs_reader_init(&rd, host), 0);
    rd.req_gen_seen = 0;
    struct tlsnic_rxs_entry e;
    assert_int_equal(tlsnic_rxs_get(host, 0, &e), 0);
    assert_int_equal(e.tcp_seq, 5000);
    assert_int_equal(e.rec_seq, 7);
    assert_int_equal(TLSNIC_RXS_STATE_DEC(e.state), 71);
    uint32_t seq;
    assert_int_equal(tlsnic_rxs_poll_request(&rd, &seq), 1);
    assert_int_equal(seq, 5100);
    /* The host's words reach the device, and so does a rekey. */
    tlsnic_rxs_consume(&rd, 5100);
    assert_int_equal(f->client->ops->rekey(f->client, f->tcp_local, NULL, TLSNIC_DIR_RX, &c.ci,
                                           sizeof(c.ci), 5100),
                     0);
    assert_int_equal(spy_rekeys, 1);
    assert_int_equal(spy_rekey_seq, 5100);
    assert_int_equal(spy_consumed, 5100);
    tlsnic_rxs_reader_cleanup(&rd);
    assert_int_equal(f->client->ops->del(f->client, f->tcp_local, NULL, TLSNIC_DIR_RX), 0);
    tlsnic_shm_writer_free(rw);
}

static void the_hosts_view_of_the_rx_status_is_read_only(void **state)
{
    (void)state;
    tlsnic_shm_writer *rw;
    assert_int_equal(tlsnic_shm_writer_new_rx(&rw, 0), 0);
    struct tlsnic_rxs *host = tlsnic_shm_writer_rx_status(rw);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        signal(SIGSEGV, SIG_DFL); /* cmocka's handler would catch it */
        host->hdr->head = 99;     /* only the device writes there */
        _exit(0);
    }
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFSIGNALED(st));
    assert_int_equal(WTERMSIG(st), SIGSEGV);
    tlsnic_shm_writer_free(rw);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(the_device_reads_the_hosts_records_through_the_store),
        T(the_devices_flags_reach_the_hosts_store_without_a_request),
        T(a_store_that_is_not_a_sealed_memfd_is_refused),
        T(three_fds_are_refused),
        T(a_host_that_goes_away_frees_its_share),
        T(del_unmaps_the_store),
        T(rx_needs_an_rx_store_and_tx_takes_none),
        T(the_device_writes_the_rx_status_the_host_reads),
        T(the_hosts_view_of_the_rx_status_is_read_only),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
