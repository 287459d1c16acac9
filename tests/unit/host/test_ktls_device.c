/*
 * Device mode of the socket layer (src/host/dev.c) with a fake device behind the devops.h
 * table: who gets the flow and why not, how records are framed for the device, the record
 * store the device reads, release of records as the peer acknowledges them (slow reader),
 * and the abort when the device reports an integrity failure. There is no device in the
 * path here, so the frames reach the peer as the device would see them: in plaintext.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
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
#include <sys/socket.h>
#include <time.h>
#include <sys/wait.h>
#include <sys/stat.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <sys/sendfile.h>
#include <fcntl.h>
#include <unistd.h>

#include <cmocka.h>

#include "fd_io.h"
#include "record_type_msg.h"
#include "tcp_pair.h"
#include "tlsnic/attach.h"
#include "tlsnic/shm_writer.h"
#include "tlsnic/devops.h"
#include "tlsnic/ktls.h"
#include "tlsnic/record.h"

struct fake {
    struct tlsnic_dev dev;
    int add_rc;
    int adds, dels;
    int sockfd;
    struct tlsnic_flow flow;
    enum tlsnic_dir dir;
    uint32_t start;
    union tlsnic_crypto_info ci;
    size_t ci_len;
    const struct tlsnic_rec_store *store;
    uint32_t flags;
    int outq_at_del; /* the socket's unacknowledged bytes when the device let go */
    /* the releasing device (fake_release_ops) */
    int releases;         /* release calls */
    int release_away;     /* the next ones answer -ENODEV (a daemon restarting); < 0: all */
    unsigned release_flags;
    int outq_at_release;
};

static int fake_add(struct tlsnic_dev *dev, int sockfd, const struct tlsnic_flow *flow,
                    enum tlsnic_dir dir, const void *crypto_info, size_t info_len,
                    uint32_t start_tcp_seq, const struct tlsnic_rec_store *store)
{
    struct fake *f = dev->priv;
    f->adds++;
    if (f->add_rc)
        return f->add_rc;
    f->sockfd = sockfd;
    f->flow = *flow;
    f->dir = dir;
    f->start = start_tcp_seq;
    memcpy(&f->ci, crypto_info, info_len);
    f->ci_len = info_len;
    f->store = store;
    return 0;
}

static int fake_del(struct tlsnic_dev *dev, int sockfd, const struct tlsnic_flow *flow,
                    enum tlsnic_dir dir)
{
    struct fake *f = dev->priv;
    f->dels++;
    f->store = NULL;
    f->outq_at_del = -1;
    if (sockfd >= 0)
        ioctl(sockfd, SIOCOUTQ, &f->outq_at_del);
    return 0;
}

static int fake_resync(struct tlsnic_dev *dev, int sockfd, const struct tlsnic_flow *flow,
                       enum tlsnic_dir dir, uint32_t tcp_seq, uint64_t rec_seq)
{
    return 0;
}

static int fake_flow_flags(struct tlsnic_dev *dev, const struct tlsnic_flow *flow,
                           enum tlsnic_dir dir, uint32_t *flags)
{
    *flags = ((struct fake *)dev->priv)->flags;
    return 0;
}

static const struct tlsnic_dev_ops fake_ops = {
    .name = "fake", .add = fake_add, .del = fake_del, .resync = fake_resync,
    .flow_flags = fake_flow_flags,
};

/* A device that takes a closed socket over (as tlsnicd does): release, never del. */
static int fake_release(struct tlsnic_dev *dev, int sockfd, const struct tlsnic_flow *flow,
                        enum tlsnic_dir dir, unsigned flags)
{
    struct fake *f = dev->priv;
    f->releases++;
    if (f->release_away != 0) {
        if (f->release_away > 0)
            f->release_away--;
        return -ENODEV;
    }
    f->release_flags = flags;
    f->outq_at_release = -1;
    ioctl(sockfd, SIOCOUTQ, &f->outq_at_release);
    return 0;
}

static const struct tlsnic_dev_ops fake_release_ops = {
    .name = "fake-release", .add = fake_add, .del = fake_del, .resync = fake_resync,
    .flow_flags = fake_flow_flags, .release = fake_release,
};

static struct fake fake;

struct conn {
    int fd, peer;
    union tlsnic_crypto_info ci;
    size_t ci_len;
};

static void conn_new(struct conn *c, uint16_t version, uint16_t cipher)
{
    int fds[2];
    assert_int_equal(tcp_pair(fds), 0);
    c->fd = fds[0];
    c->peer = fds[1];
    memset(&c->ci, 0, sizeof(c->ci));
    c->ci.info.version = version;
    c->ci.info.cipher_type = cipher;
    c->ci_len = tlsnic_crypto_info_size(cipher);
    memset((uint8_t *)&c->ci + sizeof(c->ci.info), 0x3c, c->ci_len - sizeof(c->ci.info));
    if (cipher == TLS_CIPHER_AES_GCM_128) {
        memset(c->ci.aes_gcm_128.rec_seq, 0, 8);
        c->ci.aes_gcm_128.rec_seq[7] = 5;
    }
    assert_int_equal(tlsnic_setsockopt(c->fd, SOL_TCP, TCP_ULP, "tls", 4), 0);
    assert_int_equal(tlsnic_setsockopt(c->fd, SOL_TLS, TLS_TX, &c->ci, (socklen_t)c->ci_len), 0);
}

static void conn_free(struct conn *c)
{
    tlsnic_close(c->fd);
    close(c->peer);
}

/* New sockets offer to the fake device, with the record store ops given (NULL: the
 * device reads tlsnic's own list). */
static void bind_new_sockets(const struct tlsnic_dev_store_ops *store_ops, void *store_ctx)
{
    struct tlsnic_offload off = {.dev = &fake.dev, .store_ops = store_ops, .store_ctx = store_ctx};
    tlsnic_set_default_offload(&off);
}

static int setup(void **state)
{
    (void)state;

    memset(&fake, 0, sizeof(fake));
    fake.dev.ops = &fake_ops;
    fake.dev.priv = &fake;
    bind_new_sockets(NULL, NULL);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    /* Sockets closed with bytes to wait for end in the background: not in the next test. */
    assert_int_equal(tlsnic_close_pending(10000), 0);
    tlsnic_set_default_offload(NULL);
    return 0;
}

/* One frame as the device would receive it. */
static size_t read_frame(int fd, uint8_t *buf, size_t cap)
{
    int len = fd_read_record(fd, buf, cap);
    assert_true(len > 0);
    return (size_t)len;
}

/* The records the socket still retains once the peer's last ACK has had 2 s to arrive. */
static void retained_after_the_last_ack(int fd, size_t *bytes, size_t *records)
{
    for (int i = 0; i < 200; i++) { /* the last ACK may still be in flight */
        assert_int_equal(tlsnic_tx_retained(fd, bytes, records), 0);
        if (*records == 0)
            return;
        usleep(10000);
    }
}

/* The peer's next expected sequence number, read independently through TCP_REPAIR. */
static uint32_t peer_rcv_nxt(int peer)
{
    int on = 1, off = 0, queue = TCP_RECV_QUEUE;
    uint32_t seq = 0;
    socklen_t len = sizeof(seq);
    assert_int_equal(setsockopt(peer, IPPROTO_TCP, TCP_REPAIR, &on, sizeof(on)), 0);
    assert_int_equal(setsockopt(peer, IPPROTO_TCP, TCP_REPAIR_QUEUE, &queue, sizeof(queue)), 0);
    assert_int_equal(getsockopt(peer, IPPROTO_TCP, TCP_QUEUE_SEQ, &seq, &len), 0);
    assert_int_equal(setsockopt(peer, IPPROTO_TCP, TCP_REPAIR, &off, sizeof(off)), 0);
    return seq;
}

/* The device is handed the socket itself (tlsnic passes its own descriptor of it, which
 * stays valid while a close of the program's fd races with calls in progress). */
static int same_socket(int a, int b)
{
    struct stat sa, sb;
    return fstat(a, &sa) == 0 && fstat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
           sa.st_ino == sb.st_ino;
}

static void accepting_device_takes_tx_and_mode_says_device(void **state)
{
    (void)state;
    uint64_t dev0 = tlsnic_stat_get(TLSNIC_STAT_TX_DEVICE);
    uint64_t cur0 = tlsnic_stat_get(TLSNIC_STAT_CURR_TX_DEVICE);
    struct conn c;
    conn_new(&c, TLS_1_2_VERSION, TLS_CIPHER_AES_GCM_128);
    assert_int_equal(tlsnic_setsockopt(c.fd, SOL_TLS, TLS_RX, &c.ci, (socklen_t)c.ci_len), 0);

    struct tlsnic_mode_info m;
    assert_int_equal(tlsnic_get_mode(c.fd, TLSNIC_DIR_TX, &m), 0);
    assert_int_equal(m.mode, TLSNIC_MODE_DEVICE);
    assert_int_equal(tlsnic_get_mode(c.fd, TLSNIC_DIR_RX, &m), 0);
    assert_int_equal(m.mode, TLSNIC_MODE_SW);
    assert_int_equal(m.reason, TLSNIC_SW_REASON_RX_NOT_OFFERED);

    assert_int_equal(fake.adds, 1);
    assert_int_equal(fake.dir, TLSNIC_DIR_TX);
    assert_true(same_socket(fake.sockfd, c.fd));
    assert_int_equal(fake.start, peer_rcv_nxt(c.peer)); /* the real TCP sequence number */
    assert_int_equal(fake.ci_len, c.ci_len);
    assert_memory_equal(&fake.ci, &c.ci, c.ci_len);
    struct sockaddr_in l, r;
    socklen_t ll = sizeof(l), rl = sizeof(r);
    getsockname(c.fd, (struct sockaddr *)&l, &ll);
    getpeername(c.fd, (struct sockaddr *)&r, &rl);
    assert_int_equal(fake.flow.family, AF_INET);
    assert_memory_equal(fake.flow.local, &l.sin_addr, 4);
    assert_memory_equal(fake.flow.remote, &r.sin_addr, 4);
    assert_int_equal(fake.flow.local_port, ntohs(l.sin_port));
    assert_int_equal(fake.flow.remote_port, ntohs(r.sin_port));
    assert_int_equal(tlsnic_stat_get(TLSNIC_STAT_TX_DEVICE), dev0 + 1);
    assert_int_equal(tlsnic_stat_get(TLSNIC_STAT_CURR_TX_DEVICE), cur0 + 1);

    conn_free(&c);
    assert_int_equal(fake.dels, 1);
    assert_int_equal(tlsnic_stat_get(TLSNIC_STAT_CURR_TX_DEVICE), cur0);
}

/* A TCP pair with TCP_ULP "tls" set on c->fd (bound to the default then), no keys yet. */
static void conn_ulp_only(struct conn *c)
{
    int fds[2];
    assert_int_equal(tcp_pair(fds), 0);
    c->fd = fds[0];
    c->peer = fds[1];
    memset(&c->ci, 0, sizeof(c->ci));
    c->ci.info.version = TLS_1_2_VERSION;
    c->ci.info.cipher_type = TLS_CIPHER_AES_GCM_128;
    c->ci_len = tlsnic_crypto_info_size(TLS_CIPHER_AES_GCM_128);
    memset((uint8_t *)&c->ci + sizeof(c->ci.info), 0x3c, c->ci_len - sizeof(c->ci.info));
    assert_int_equal(tlsnic_setsockopt(c->fd, SOL_TCP, TCP_ULP, "tls", 4), 0);
}

static void a_socket_keeps_its_device_when_the_default_changes_before_its_keys(void **state)
{
    (void)state;
    struct conn c;
    conn_ulp_only(&c);
    tlsnic_set_default_offload(NULL); /* e.g. another connection set up without a device */
    assert_int_equal(tlsnic_setsockopt(c.fd, SOL_TLS, TLS_TX, &c.ci, (socklen_t)c.ci_len), 0);
    struct tlsnic_mode_info m;
    assert_int_equal(tlsnic_get_mode(c.fd, TLSNIC_DIR_TX, &m), 0);
    assert_int_equal(m.mode, TLSNIC_MODE_DEVICE);
    assert_int_equal(fake.adds, 1);
    conn_free(&c);
    assert_int_equal(fake.dels, 1);
}

static void a_socket_bound_to_no_device_stays_in_software_whatever_the_default(void **state)
{
    (void)state;
    struct conn c;
    conn_ulp_only(&c);
    assert_int_equal(tlsnic_sock_set_offload(c.fd, NULL), 0);
    assert_int_equal(tlsnic_setsockopt(c.fd, SOL_TLS, TLS_TX, &c.ci, (socklen_t)c.ci_len), 0);
    struct tlsnic_mode_info m;
    assert_int_equal(tlsnic_get_mode(c.fd, TLSNIC_DIR_TX, &m), 0);
    assert_int_equal(m.mode, TLSNIC_MODE_SW);
    assert_int_equal(m.reason, TLSNIC_SW_REASON_NO_DEVICE);
    assert_int_equal(fake.adds, 0);
    conn_free(&c);
}

static void binding_a_socket_whose_keys_are_set_is_EBUSY(void **state)
{
    (void)state;
    struct conn c;
    conn_new(&c, TLS_1_2_VERSION, TLS_CIPHER_AES_GCM_128);
    errno = 0;
    assert_int_equal(tlsnic_sock_set_offload(c.fd, NULL), -1);
    assert_int_equal(errno, EBUSY);
    errno = 0;
    assert_int_equal(tlsnic_sock_set_offload(c.peer, NULL), -1); /* not a tlsnic socket */
    assert_int_equal(errno, EBADF);
    conn_free(&c);
}

static void refusing_device_leaves_software_with_the_reason(void **state)
{
    (void)state;
    const struct {
        int rc;
        enum tlsnic_sw_reason reason;
    } cases[] = {
        {-ENOSPC, TLSNIC_SW_REASON_TABLE_FULL},
        {-EOPNOTSUPP, TLSNIC_SW_REASON_CIPHER_NOT_OFFLOADED},
        {-ENODEV, TLSNIC_SW_REASON_DEVICE_GONE},
        {-EIO, TLSNIC_SW_REASON_DEVICE_REFUSED},
        {-ECONNREFUSED, TLSNIC_SW_REASON_DEVICE_UNREACHABLE},
        {-ENOENT, TLSNIC_SW_REASON_DEVICE_UNREACHABLE},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        fake.add_rc = cases[i].rc;
        struct conn c;
        conn_new(&c, TLS_1_3_VERSION, TLS_CIPHER_AES_GCM_256);
        struct tlsnic_mode_info m;
        assert_int_equal(tlsnic_get_mode(c.fd, TLSNIC_DIR_TX, &m), 0);
        assert_int_equal(m.mode, TLSNIC_MODE_SW);
        assert_int_equal(m.reason, cases[i].reason);
        assert_int_equal(m.dev_errno, cases[i].rc);
        /* and the data goes out sealed in software */
        assert_int_equal(tlsnic_send(c.fd, "sw", 2, 0), 2);
        uint8_t rec[256], type, *content;
        size_t len = read_frame(c.peer, rec, sizeof(rec)), clen;
        tlsnic_rec_key *k;
        assert_int_equal(tlsnic_rec_key_new(&k, &c.ci, c.ci_len), 0);
        assert_int_equal(tlsnic_rec_open(k, rec, len, &type, &content, &clen), 0);
        assert_int_equal(clen, 2);
        tlsnic_rec_key_free(k);
        conn_free(&c);
    }
    fake.add_rc = 0;
}

/* What a device does with a frame: seal it in place with the streaming record layer. */
static void device_seal(const struct conn *c, uint64_t rec_seq, uint8_t *frame, size_t len)
{
    tlsnic_rec_key *k;
    assert_int_equal(tlsnic_rec_key_new(&k, &c->ci, c->ci_len), 0);
    size_t nonce = tlsnic_rec_key_explicit_nonce_len(k);
    struct tlsnic_rec_stream st;
    assert_int_equal(tlsnic_rec_stream_init(&st), 0);
    assert_int_equal(tlsnic_rec_stream_begin(&st, k, 1, rec_seq, frame,
                                             nonce ? frame + TLSNIC_REC_HDR_LEN : NULL), 0);
    uint8_t *body = frame + TLSNIC_REC_HDR_LEN + nonce;
    size_t body_len = len - TLSNIC_REC_HDR_LEN - nonce - TLSNIC_REC_TAG_LEN;
    assert_int_equal(tlsnic_rec_stream_update(&st, body, body, body_len), 0);
    assert_int_equal(tlsnic_rec_stream_seal_final(&st, body + body_len), 0);
    tlsnic_rec_stream_cleanup(&st);
    tlsnic_rec_key_free(k);
}

static void frames_are_what_software_would_seal_once_the_device_seals_them(void **state)
{
    (void)state;
    const uint16_t versions[] = {TLS_1_2_VERSION, TLS_1_3_VERSION};
    for (int v = 0; v < 2; v++) {
        struct conn c;
        conn_new(&c, versions[v], TLS_CIPHER_AES_GCM_128);
        const uint8_t alert[2] = {1, 0};
        assert_int_equal(tlsnic_send(c.fd, "hello device", 12, 0), 12);
        struct record_type_msg m;
        struct msghdr *alert_msg = record_type_msg_to_send(&m, TLSNIC_CT_ALERT, alert, 2);
        assert_int_equal(tlsnic_sendmsg(c.fd, alert_msg, 0), 2);

        tlsnic_rec_key *sw;
        assert_int_equal(tlsnic_rec_key_new(&sw, &c.ci, c.ci_len), 0);
        const struct {
            uint8_t type;
            const void *data;
            size_t len;
        } recs[2] = {{TLSNIC_CT_APPLICATION_DATA, "hello device", 12}, {TLSNIC_CT_ALERT, alert, 2}};
        for (int i = 0; i < 2; i++) {
            uint8_t frame[256], want[256];
            size_t len = read_frame(c.peer, frame, sizeof(frame)), want_len;
            size_t nonce = tlsnic_rec_key_explicit_nonce_len(sw);
            /* the plaintext is where the device expects it, and the tag room is zero */
            assert_memory_equal(frame + TLSNIC_REC_HDR_LEN + nonce, recs[i].data, recs[i].len);
            const uint8_t zero[16] = {0};
            assert_memory_equal(frame + len - 16, zero, 16);
            device_seal(&c, 5 + (uint64_t)i, frame, len);
            assert_int_equal(tlsnic_rec_seal(sw, recs[i].type, recs[i].data, recs[i].len, want,
                                             sizeof(want), &want_len), 0);
            assert_int_equal(len, want_len);
            assert_memory_equal(frame, want, len);
        }
        tlsnic_rec_key_free(sw);
        conn_free(&c);
    }
}

static void record_store_finds_the_record_of_any_sequence_number(void **state)
{
    (void)state;
    struct conn c;
    conn_new(&c, TLS_1_3_VERSION, TLS_CIPHER_CHACHA20_POLY1305);
    uint64_t seq0 = 0;
    for (int i = 0; i < 8; i++)
        seq0 = seq0 << 8 | c.ci.chacha20_poly1305.rec_seq[i];
    const size_t sizes[3] = {100, 16384, 1};
    static uint8_t data[16384];
    memset(data, 0x77, sizeof(data));
    assert_non_null(fake.store);
    uint32_t seq = fake.start;
    for (int i = 0; i < 3; i++) {
        /* Loopback ACKs at once, so look the record up before tlsnic's next call may
           release it. */
        assert_int_equal(tlsnic_send(c.fd, data, sizes[i], 0), (ssize_t)sizes[i]);
        struct tlsnic_rec_ref refs[3];
        size_t want_len = TLSNIC_REC_HDR_LEN + sizes[i] + 1 + TLSNIC_REC_TAG_LEN;
        const uint32_t probes[3] = {seq, seq + (uint32_t)want_len / 2,
                                    seq + (uint32_t)want_len - 1};
        for (int p = 0; p < 3; p++)
            assert_int_equal(fake.store->ops->get_record(fake.store->priv, probes[p], &refs[p]), 0);
        struct tlsnic_rec_ref none;
        assert_int_equal(fake.store->ops->get_record(fake.store->priv, seq + (uint32_t)want_len,
                                                     &none), -ENOENT);
        static uint8_t frame[TLSNIC_REC_MAX_WIRE_LEN];
        size_t len = read_frame(c.peer, frame, sizeof(frame));
        assert_int_equal(len, want_len);
        for (int p = 0; p < 3; p++) {
            assert_int_equal(refs[p].tcp_seq, seq);
            assert_int_equal(refs[p].len, len);
            assert_int_equal(refs[p].rec_seq, seq0 + (uint64_t)i);
            assert_memory_equal(refs[p].bytes, frame, len);
        }
        seq += (uint32_t)len;
    }
    conn_free(&c);
}

static void hundreds_of_unacknowledged_records_are_all_found_then_all_released(void **state)
{
    (void)state;
    struct conn c;
    conn_new(&c, TLS_1_2_VERSION, TLS_CIPHER_AES_GCM_256);
    int small = 4096;
    setsockopt(c.peer, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    static uint8_t data[300];
    memset(data, 0x55, sizeof(data));
    const size_t rec_len = TLSNIC_REC_HDR_LEN + 8 + sizeof(data) + TLSNIC_REC_TAG_LEN;
    size_t sent = 0;
    while (sent < 1000 && tlsnic_send(c.fd, data, sizeof(data), MSG_DONTWAIT) > 0)
        sent++;
    size_t bytes, records;
    assert_int_equal(tlsnic_tx_retained(c.fd, &bytes, &records), 0);
    /* More than one batch of releases and more than the descriptor ring's first size. */
    assert_true(records > 100);
    assert_int_equal(bytes, records * rec_len);
    /* Every retained record is found by any of its sequence numbers. */
    uint32_t first_seq = fake.start + (uint32_t)((sent - records) * rec_len);
    for (size_t i = 0; i < records; i++) {
        struct tlsnic_rec_ref ref;
        uint32_t seq = first_seq + (uint32_t)(i * rec_len);
        assert_int_equal(fake.store->ops->get_record(fake.store->priv, seq + 7, &ref), 0);
        assert_int_equal(ref.tcp_seq, seq);
        assert_int_equal(ref.len, rec_len);
    }
    /* The peer reads everything: every record goes. */
    static uint8_t buf[65536];
    size_t got = 0;
    for (int step = 0; step < 20000 && got < sent * rec_len; step++) {
        (void)tlsnic_flush(c.fd);
        ssize_t n = recv(c.peer, buf, sizeof(buf), MSG_DONTWAIT);
        if (n > 0)
            got += (size_t)n;
        else
            usleep(500);
    }
    assert_int_equal(got, sent * rec_len);
    retained_after_the_last_ack(c.fd, &bytes, &records);
    assert_int_equal(records, 0);
    assert_int_equal(bytes, 0);
    conn_free(&c);
}

static void retained_records_are_released_as_the_slow_reader_acknowledges(void **state)
{
    (void)state;
    struct conn c;
    conn_new(&c, TLS_1_2_VERSION, TLS_CIPHER_AES_GCM_128);
    int small = 16384;
    setsockopt(c.peer, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    setsockopt(c.fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
    static uint8_t data[4000];
    memset(data, 0x42, sizeof(data));
    size_t wire = 0, bytes, records;
    int i;
    for (i = 0; i < 100000; i++) {
        ssize_t n = tlsnic_send(c.fd, data, sizeof(data), MSG_DONTWAIT);
        if (n < 0)
            break;
        wire += TLSNIC_REC_HDR_LEN + 8 + (size_t)n + TLSNIC_REC_TAG_LEN;
    }
    assert_int_equal(errno, EAGAIN);
    assert_true(i > 2);
    assert_int_equal(tlsnic_tx_retained(c.fd, &bytes, &records), 0);
    assert_true(records > 0);
    const size_t held_at_start = bytes;

    /* The peer reads slowly; at every step the store holds at most the unacknowledged
       bytes plus one record, and it shrinks as ACKs come back. */
    static uint8_t buf[4096];
    size_t got = 0;
    int shrank = 0;
    for (int step = 0; step < 100000 && got < wire; step++) {
        (void)tlsnic_flush(c.fd);
        ssize_t n = recv(c.peer, buf, sizeof(buf), MSG_DONTWAIT);
        if (n > 0)
            got += (size_t)n;
        else
            usleep(1000);
        int outq = 0;
        assert_int_equal(ioctl(c.fd, SIOCOUTQ, &outq), 0);
        assert_int_equal(tlsnic_tx_retained(c.fd, &bytes, &records), 0);
        assert_true(bytes <= (size_t)outq + TLSNIC_REC_MAX_WIRE_LEN);
        if (bytes < held_at_start)
            shrank = 1;
    }
    assert_int_equal(got, wire);
    assert_true(shrank);
    retained_after_the_last_ack(c.fd, &bytes, &records);
    assert_int_equal(records, 0);
    assert_int_equal(bytes, 0);
    conn_free(&c);
}

static void integrity_failure_aborts_the_connection(void **state)
{
    (void)state;
    struct conn c;
    conn_new(&c, TLS_1_2_VERSION, TLS_CIPHER_AES_GCM_128);
    assert_int_equal(tlsnic_send(c.fd, "one", 3, 0), 3);
    fake.flags = TLSNIC_FLOW_F_INTEGRITY;
    errno = 0;
    assert_int_equal(tlsnic_send(c.fd, "two", 3, 0), -1);
    assert_int_equal(errno, ECONNABORTED);
    assert_int_equal(tlsnic_send(c.fd, "three", 5, 0), -1);
    fake.flags = 0;
    conn_free(&c);
}

static void getsockopt_tls_tx_follows_the_framed_records(void **state)
{
    (void)state;
    struct conn c;
    conn_new(&c, TLS_1_2_VERSION, TLS_CIPHER_AES_GCM_128);
    for (int i = 0; i < 3; i++)
        assert_int_equal(tlsnic_send(c.fd, "x", 1, 0), 1);
    struct tls12_crypto_info_aes_gcm_128 got;
    socklen_t len = sizeof(got);
    assert_int_equal(tlsnic_getsockopt(c.fd, SOL_TLS, TLS_TX, &got, &len), 0);
    assert_int_equal(got.rec_seq[7], 5 + 3);
    conn_free(&c);
}

static void tx_rekey_in_device_mode_is_EOPNOTSUPP(void **state)
{
    (void)state;
    struct conn c;
    conn_new(&c, TLS_1_3_VERSION, TLS_CIPHER_AES_GCM_128);
    errno = 0;
    assert_int_equal(tlsnic_setsockopt(c.fd, SOL_TLS, TLS_TX, &c.ci, (socklen_t)c.ci_len), -1);
    assert_int_equal(errno, EOPNOTSUPP);
    conn_free(&c);
}

/* TLS 1.2 is never rekeyed: EBUSY, as in software mode, before anything about the device. */
static void second_tls_tx_on_tls12_in_device_mode_is_EBUSY(void **state)
{
    (void)state;
    struct conn c;
    conn_new(&c, TLS_1_2_VERSION, TLS_CIPHER_AES_GCM_128);
    struct tlsnic_mode_info m;
    assert_int_equal(tlsnic_get_mode(c.fd, TLSNIC_DIR_TX, &m), 0);
    assert_int_equal(m.mode, TLSNIC_MODE_DEVICE);
    errno = 0;
    assert_int_equal(tlsnic_setsockopt(c.fd, SOL_TLS, TLS_TX, &c.ci, (socklen_t)c.ci_len), -1);
    assert_int_equal(errno, EBUSY);
    conn_free(&c);
}

static void reading_the_tcp_sequence_number_keeps_so_reuseaddr(void **state)
{
    (void)state;
    /* Leaving TCP_REPAIR clears sk_reuse: a server could then not bind its port again
       while the connection sits in TIME_WAIT. */
    int fds[2], one = 1, reuse = 0;
    socklen_t len = sizeof(reuse);
    assert_int_equal(tcp_pair(fds), 0);
    assert_int_equal(setsockopt(fds[0], SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)), 0);
    struct tls12_crypto_info_aes_gcm_128 ci;
    memset(&ci, 0x11, sizeof(ci));
    ci.info.version = TLS_1_2_VERSION;
    ci.info.cipher_type = TLS_CIPHER_AES_GCM_128;
    assert_int_equal(tlsnic_setsockopt(fds[0], SOL_TCP, TCP_ULP, "tls", 4), 0);
    assert_int_equal(tlsnic_setsockopt(fds[0], SOL_TLS, TLS_TX, &ci, sizeof(ci)), 0);
    struct tlsnic_mode_info m;
    assert_int_equal(tlsnic_get_mode(fds[0], TLSNIC_DIR_TX, &m), 0);
    assert_int_equal(m.mode, TLSNIC_MODE_DEVICE);
    assert_int_equal(getsockopt(fds[0], SOL_SOCKET, SO_REUSEADDR, &reuse, &len), 0);
    assert_int_equal(reuse, 1);
    tlsnic_close(fds[0]);
    close(fds[1]);
}

/* ---- a record store the device can map (the offload binding's store ops) ------------- */

#define MIRROR_MAX 256
struct mirror {
    struct tlsnic_rec_store view;
    int opens, closes, releases;
    size_t n;
    uint32_t last_acked;
    struct {
        uint32_t tcp_seq, len;
        uint64_t rec_seq;
        uint8_t bytes[TLSNIC_REC_MAX_WIRE_LEN];
    } recs[MIRROR_MAX];
};

static struct mirror *mirror;

static int mirror_open(void *ctx, void **store)
{
    struct mirror *m = ctx;
    m->opens++;
    *store = m;
    return 0;
}

static int mirror_put(void *store, uint32_t tcp_seq, uint64_t rec_seq, const uint8_t *rec,
                      uint32_t len)
{
    struct mirror *m = store;
    if (m->n == MIRROR_MAX)
        return -ENOSPC;
    m->recs[m->n].tcp_seq = tcp_seq;
    m->recs[m->n].len = len;
    m->recs[m->n].rec_seq = rec_seq;
    memcpy(m->recs[m->n].bytes, rec, len);
    m->n++;
    return 0;
}

static void mirror_release(void *store, uint32_t acked_seq)
{
    struct mirror *m = store;
    m->releases++;
    m->last_acked = acked_seq;
}

static const struct tlsnic_rec_store *mirror_view(void *store)
{
    return &((struct mirror *)store)->view;
}

static void mirror_close(void *store)
{
    ((struct mirror *)store)->closes++;
}

static const struct tlsnic_dev_store_ops mirror_ops = {
    .open = mirror_open, .put = mirror_put, .release = mirror_release, .view = mirror_view,
    .close = mirror_close,
};

/* The same store with rooms (reserve / commit): records are framed in place. */
static int puts_seen;
static int room_open; /* a reservation not yet committed */

static int rooms_put(void *store, uint32_t tcp_seq, uint64_t rec_seq, const uint8_t *rec,
                     uint32_t len)
{
    puts_seen++;
    return mirror_put(store, tcp_seq, rec_seq, rec, len);
}

static int rooms_reserve(void *store, uint32_t len, uint8_t **room)
{
    struct mirror *m = store;
    if (m->n == MIRROR_MAX)
        return -ENOSPC;
    if (room_open || len > TLSNIC_REC_MAX_WIRE_LEN)
        return room_open ? -EBUSY : -EMSGSIZE;
    room_open = 1;
    *room = m->recs[m->n].bytes;
    return 0;
}

static int rooms_commit(void *store, uint32_t tcp_seq, uint64_t rec_seq, uint32_t len)
{
    struct mirror *m = store;
    assert_true(room_open);
    room_open = 0;
    m->recs[m->n].tcp_seq = tcp_seq;
    m->recs[m->n].len = len;
    m->recs[m->n].rec_seq = rec_seq;
    m->n++;
    return 0;
}

static uint32_t store_flags; /* what the device "wrote" into the store */

static uint32_t rooms_device_flags(void *store)
{
    (void)store;
    return store_flags;
}

static const struct tlsnic_dev_store_ops rooms_ops = {
    .open = mirror_open, .put = rooms_put, .reserve = rooms_reserve, .commit = rooms_commit,
    .release = mirror_release, .view = mirror_view, .close = mirror_close,
    .device_flags = rooms_device_flags,
};

static int setup_rooms(void **state)
{
    setup(state);
    mirror = calloc(1, sizeof(*mirror));
    assert_non_null(mirror);
    puts_seen = room_open = 0;
    store_flags = 0;
    bind_new_sockets(&rooms_ops, mirror);
    return 0;
}

static int setup_mirror(void **state)
{
    setup(state);
    mirror = calloc(1, sizeof(*mirror));
    assert_non_null(mirror);
    bind_new_sockets(&mirror_ops, mirror);
    return 0;
}

static int teardown_mirror(void **state)
{
    assert_int_equal(tlsnic_close_pending(10000), 0); /* they may still use the mirror */
    tlsnic_set_default_offload(NULL);
    free(mirror);
    mirror = NULL;
    return teardown(state);
}

static void device_gets_the_mappable_store_and_it_gets_every_record(void **state)
{
    (void)state;
    struct conn c;
    conn_new(&c, TLS_1_2_VERSION, TLS_CIPHER_AES_GCM_128);
    assert_int_equal(mirror->opens, 1);
    assert_ptr_equal(fake.store, &mirror->view);
    const size_t sizes[3] = {10, 16384, 1};
    static uint8_t data[16384];
    memset(data, 0x61, sizeof(data));
    uint32_t seq = fake.start;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(tlsnic_send(c.fd, data, sizes[i], 0), (ssize_t)sizes[i]);
        static uint8_t frame[TLSNIC_REC_MAX_WIRE_LEN];
        size_t len = read_frame(c.peer, frame, sizeof(frame));
        assert_int_equal(mirror->n, (size_t)i + 1);
        assert_int_equal(mirror->recs[i].tcp_seq, seq);
        assert_int_equal(mirror->recs[i].rec_seq, 5 + (uint64_t)i);
        assert_int_equal(mirror->recs[i].len, len);
        assert_memory_equal(mirror->recs[i].bytes, frame, len);
        seq += (uint32_t)len;
    }
    /* Once the peer has acknowledged everything, the store hears of it. */
    size_t bytes = 1, records = 1;
    for (int i = 0; i < 200 && records > 0; i++) {
        assert_int_equal(tlsnic_tx_retained(c.fd, &bytes, &records), 0);
        if (records > 0)
            usleep(10000);
    }
    assert_int_equal(records, 0);
    assert_true(mirror->releases > 0);
    assert_int_equal(mirror->last_acked, seq);
    conn_free(&c);
    assert_int_equal(mirror->closes, 1);
}

static void a_store_with_rooms_gets_records_framed_in_place_and_no_copies(void **state)
{
    (void)state;
    struct conn c;
    conn_new(&c, TLS_1_3_VERSION, TLS_CIPHER_CHACHA20_POLY1305);
    static uint8_t data[16384];
    memset(data, 0x63, sizeof(data));
    /* Straight from the caller's buffer (whole records) and from the open record
       (MSG_MORE pieces): both framed in the store's room, which is what the socket sends. */
    assert_int_equal(tlsnic_send(c.fd, data, sizeof(data), 0), (ssize_t)sizeof(data));
    assert_int_equal(tlsnic_send(c.fd, data, 100, MSG_MORE), 100);
    assert_int_equal(tlsnic_send(c.fd, data, 50, 0), 50);
    uint32_t seq = fake.start;
    for (size_t i = 0; i < 2; i++) {
        static uint8_t frame[TLSNIC_REC_MAX_WIRE_LEN];
        size_t len = read_frame(c.peer, frame, sizeof(frame));
        assert_int_equal(mirror->recs[i].tcp_seq, seq);
        assert_int_equal(mirror->recs[i].len, len);
        assert_memory_equal(mirror->recs[i].bytes, frame, len);
        seq += (uint32_t)len;
    }
    assert_int_equal(mirror->n, 2);
    assert_int_equal(mirror->recs[1].len, TLSNIC_REC_HDR_LEN + 150 + 1 + TLSNIC_REC_TAG_LEN);
    assert_int_equal(puts_seen, 0);
    assert_false(room_open);
    conn_free(&c);
}

static void flags_the_device_wrote_into_the_store_abort_without_asking_it(void **state)
{
    (void)state;
    struct conn c;
    conn_new(&c, TLS_1_2_VERSION, TLS_CIPHER_AES_GCM_128);
    assert_int_equal(tlsnic_send(c.fd, "x", 1, 0), 1);
    /* The store says live and clean; the device, asked, would say integrity: the store
       is what counts while it is live. */
    store_flags = TLSNIC_FLOW_F_LIVE;
    fake.flags = TLSNIC_FLOW_F_INTEGRITY;
    assert_int_equal(tlsnic_send(c.fd, "y", 1, 0), 1);
    store_flags = TLSNIC_FLOW_F_LIVE | TLSNIC_FLOW_F_INTEGRITY;
    fake.flags = 0;
    assert_int_equal(tlsnic_send(c.fd, "z", 1, 0), -1);
    assert_int_equal(errno, ECONNABORTED);
    conn_free(&c);
}

static void a_store_the_device_never_wrote_flags_into_leaves_the_asking_to_the_device(void **state)
{
    (void)state;
    struct conn c;
    conn_new(&c, TLS_1_2_VERSION, TLS_CIPHER_AES_GCM_128);
    assert_int_equal(tlsnic_send(c.fd, "x", 1, 0), 1);
    store_flags = TLSNIC_FLOW_F_INTEGRITY; /* not LIVE: not the device's word */
    fake.flags = 0;
    assert_int_equal(tlsnic_send(c.fd, "y", 1, 0), 1);
    fake.flags = TLSNIC_FLOW_F_GONE;
    assert_int_equal(tlsnic_send(c.fd, "z", 1, 0), -1);
    assert_int_equal(errno, ECONNABORTED);
    conn_free(&c);
}

/* A store of 4 records that frees what the peer acknowledged: full most of the time. */
#define TINY_STORE 4
static struct {
    uint32_t start[TINY_STORE], len[TINY_STORE];
    size_t oldest, used;
    int room_open, full_answers;
    uint8_t room[TLSNIC_REC_MAX_WIRE_LEN * TINY_STORE];
} tiny;

static int tiny_open(void *ctx, void **store)
{
    (void)ctx;
    *store = &tiny;
    return 0;
}
static int tiny_put(void *store, uint32_t tcp_seq, uint64_t rec_seq, const uint8_t *rec,
                     uint32_t len)
{
    return -EOPNOTSUPP; /* reserve / commit only */
}
static int tiny_reserve(void *store, uint32_t len, uint8_t **room)
{
    if (tiny.used == TINY_STORE) {
        tiny.full_answers++;
        return -ENOSPC;
    }
    *room = tiny.room + ((tiny.oldest + tiny.used) % TINY_STORE) * TLSNIC_REC_MAX_WIRE_LEN;
    tiny.room_open = 1;
    return 0;
}
static int tiny_commit(void *store, uint32_t tcp_seq, uint64_t rec_seq, uint32_t len)
{
    size_t i = (tiny.oldest + tiny.used) % TINY_STORE;
    tiny.start[i] = tcp_seq;
    tiny.len[i] = len;
    tiny.used++;
    tiny.room_open = 0;
    return 0;
}
static void tiny_release(void *store, uint32_t acked_seq)
{
    while (tiny.used > 0 &&
           (int32_t)(acked_seq - (tiny.start[tiny.oldest] + tiny.len[tiny.oldest])) >= 0) {
        tiny.oldest = (tiny.oldest + 1) % TINY_STORE;
        tiny.used--;
    }
}
static const struct tlsnic_rec_store *tiny_view(void *store)
{
    return &mirror->view;
}
static void tiny_close(void *store)
{
}
static const struct tlsnic_dev_store_ops tiny_ops = {
    .open = tiny_open, .put = tiny_put, .reserve = tiny_reserve, .commit = tiny_commit,
    .release = tiny_release, .view = tiny_view, .close = tiny_close,
};

static int setup_tiny(void **state)
{
    setup_mirror(state);
    memset(&tiny, 0, sizeof(tiny));
    bind_new_sockets(&tiny_ops, NULL);
    return 0;
}

static void a_full_store_waits_for_acknowledgements_and_loses_nothing(void **state)
{
    (void)state;
    struct conn c;
    conn_new(&c, TLS_1_2_VERSION, TLS_CIPHER_AES_GCM_128);
    static uint8_t data[1000];
    memset(data, 0x71, sizeof(data));
    const size_t rec_len = TLSNIC_REC_HDR_LEN + 8 + sizeof(data) + TLSNIC_REC_TAG_LEN;
    /* The peer reads everything it gets, so ACKs keep coming: 64 records through a store
       of 4, each send waiting for room when the store is full. */
    size_t got = 0;
    static uint8_t buf[65536];
    for (int i = 0; i < 64; i++) {
        assert_int_equal(tlsnic_send(c.fd, data, sizeof(data), MSG_DONTWAIT), (ssize_t)sizeof(data));
        ssize_t n;
        while ((n = recv(c.peer, buf, sizeof(buf), MSG_DONTWAIT)) > 0)
            got += (size_t)n;
    }
    for (int step = 0; step < 2000 && got < 64 * rec_len; step++) {
        ssize_t n = recv(c.peer, buf, sizeof(buf), MSG_DONTWAIT);
        if (n > 0)
            got += (size_t)n;
        else
            usleep(1000);
    }
    assert_int_equal(got, 64 * rec_len);
    assert_true(tiny.full_answers > 0); /* it was full, and the sends waited */
    assert_true(tiny.used <= TINY_STORE);
    assert_false(tiny.room_open);
    conn_free(&c);
}

/* Reads the big-endian 64-bit field at p. */
static uint64_t be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

static void readd_starts_at_the_first_unacknowledged_record(void **state)
{
    (void)state;
    struct conn c;
    conn_new(&c, TLS_1_2_VERSION, TLS_CIPHER_AES_GCM_128);
    /* A peer that reads nothing, with small buffers: records pile up unacknowledged. */
    int small = 16384;
    setsockopt(c.peer, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    setsockopt(c.fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
    static uint8_t data[4000];
    memset(data, 0x62, sizeof(data));
    int i;
    for (i = 0; i < 1000; i++)
        if (tlsnic_send(c.fd, data, sizeof(data), MSG_DONTWAIT) < 0)
            break;
    assert_int_equal(errno, EAGAIN);
    size_t bytes, records;
    assert_int_equal(tlsnic_tx_retained(c.fd, &bytes, &records), 0);
    assert_true(records > 1);
    const int adds0 = fake.adds;

    assert_int_equal(tlsnic_device_readd(&fake.dev), 1);
    assert_int_equal(fake.adds, adds0 + 1);
    assert_true(same_socket(fake.sockfd, c.fd));
    assert_ptr_equal(fake.store, &mirror->view);
    /* It starts at the record that holds the next byte the peer waits for, with that
       record's sequence number, explicit nonce and the same key. */
    size_t first = 0;
    while (first < mirror->n && mirror->recs[first].tcp_seq != fake.start)
        first++;
    assert_true(first < mirror->n);
    uint32_t rcv_nxt = peer_rcv_nxt(c.peer);
    assert_true((uint32_t)(rcv_nxt - fake.start) < mirror->recs[first].len);
    uint64_t rec_seq = be64(fake.ci.aes_gcm_128.rec_seq);
    assert_int_equal(mirror->recs[first].rec_seq, rec_seq);
    assert_int_equal(be64(fake.ci.aes_gcm_128.iv), be64(c.ci.aes_gcm_128.iv) + (rec_seq - 5));
    assert_memory_equal(fake.ci.aes_gcm_128.key, c.ci.aes_gcm_128.key,
                        sizeof(c.ci.aes_gcm_128.key));
    assert_int_equal(records, mirror->n - first);
    conn_free(&c);
}

static void readd_with_everything_acknowledged_starts_at_the_next_record(void **state)
{
    (void)state;
    struct conn c;
    conn_new(&c, TLS_1_3_VERSION, TLS_CIPHER_AES_GCM_256);
    assert_int_equal(tlsnic_send(c.fd, "ab", 2, 0), 2);
    assert_int_equal(tlsnic_send(c.fd, "cd", 2, 0), 2);
    uint8_t frame[256];
    read_frame(c.peer, frame, sizeof(frame));
    read_frame(c.peer, frame, sizeof(frame));
    size_t bytes = 1, records = 1;
    for (int i = 0; i < 200 && records > 0; i++) {
        assert_int_equal(tlsnic_tx_retained(c.fd, &bytes, &records), 0);
        if (records > 0)
            usleep(10000);
    }
    assert_int_equal(records, 0);
    assert_int_equal(tlsnic_device_readd(&fake.dev), 1);
    assert_int_equal(fake.start, peer_rcv_nxt(c.peer));
    assert_int_equal(be64(fake.ci.aes_gcm_256.rec_seq), be64(c.ci.aes_gcm_256.rec_seq) + 2);
    conn_free(&c);
}

static void readd_leaves_contexts_of_other_devices_alone(void **state)
{
    (void)state;
    struct conn c;
    conn_new(&c, TLS_1_2_VERSION, TLS_CIPHER_AES_GCM_128);
    struct tlsnic_dev other = {.ops = &fake_ops, .priv = &fake};
    const int adds0 = fake.adds;
    assert_int_equal(tlsnic_device_readd(&other), 0);
    assert_int_equal(fake.adds, adds0);
    conn_free(&c);
    /* and a closed socket is not re-added */
    assert_int_equal(tlsnic_device_readd(&fake.dev), 0);
    assert_int_equal(fake.adds, adds0);
}

static void refused_readd_aborts_the_connection_at_its_next_send(void **state)
{
    (void)state;
    struct conn c;
    conn_new(&c, TLS_1_3_VERSION, TLS_CIPHER_AES_GCM_128);
    assert_int_equal(tlsnic_send(c.fd, "before", 6, 0), 6);
    fake.add_rc = -ENOSPC;
    assert_int_equal(tlsnic_device_readd(&fake.dev), -ENOSPC);
    fake.add_rc = 0;
    errno = 0;
    assert_int_equal(tlsnic_send(c.fd, "after", 5, 0), -1);
    assert_int_equal(errno, ECONNABORTED);
    conn_free(&c);
}

static void readd_that_finds_the_device_gone_again_keeps_the_connection(void **state)
{
    (void)state;
    struct conn c;
    conn_new(&c, TLS_1_3_VERSION, TLS_CIPHER_AES_GCM_128);
    fake.add_rc = -ENODEV; /* the daemon died again: the next restart re-adds */
    assert_int_equal(tlsnic_device_readd(&fake.dev), -ENODEV);
    fake.add_rc = 0;
    assert_int_equal(tlsnic_send(c.fd, "still", 5, 0), 5);
    conn_free(&c);
}

/* ---- an ACK between two reads of the socket ---------------------------------------------- */

/*
 * While armed, SIOCOUTQ answers as if the peer had acknowledged 12000 more bytes between
 * this read and the one before it: what an ACK arriving between two system calls does to
 * whoever reads the socket's state in two steps. Deterministic, where a real ACK at that
 * instant is a matter of luck.
 */
#define ACK_BETWEEN_READS 12000
static int ack_race_armed;

static int racing_ioctl(int fd, unsigned long request, ...)
{
    va_list ap;
    va_start(ap, request);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    int rc = ioctl(fd, request, arg);
    if (rc == 0 && request == SIOCOUTQ && ack_race_armed) {
        int *outq = arg;
        *outq = *outq > ACK_BETWEEN_READS ? *outq - ACK_BETWEEN_READS : 0;
    }
    return rc;
}

/* The peer reads what it has, and the sender's queued bytes follow and are acknowledged. */
static void peer_reads_and_acks(int peer)
{
    static uint8_t sink[65536];
    for (int i = 0; i < 10; i++) { /* bounded: 10 ms */
        while (recv(peer, sink, sizeof(sink), MSG_DONTWAIT) > 0)
            ;
        usleep(1000);
    }
}

static void an_ack_while_tls_tx_is_set_never_moves_a_readd_past_an_unacknowledged_record(void **state)
{
    (void)state;
    int fds[2];
    assert_int_equal(tcp_pair(fds), 0);
    struct conn c = {.fd = fds[0], .peer = fds[1]};
    int small = 16384;
    setsockopt(c.peer, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    setsockopt(c.fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
    /* Bytes before the keys (a handshake) fill both buffers, unacknowledged. */
    static uint8_t data[4000];
    memset(data, 0x68, sizeof(data));
    size_t before = 0;
    for (int i = 0; i < 1000; i++) {
        ssize_t n = send(c.fd, data, sizeof(data), MSG_DONTWAIT);
        if (n <= 0)
            break;
        before += (size_t)n;
    }
    assert_true(before > 2 * ACK_BETWEEN_READS); /* unacknowledged: room for that ACK */
    memset(&c.ci, 0, sizeof(c.ci));
    c.ci.info.version = TLS_1_2_VERSION;
    c.ci.info.cipher_type = TLS_CIPHER_AES_GCM_128;
    c.ci_len = tlsnic_crypto_info_size(TLS_CIPHER_AES_GCM_128);
    memset((uint8_t *)&c.ci + sizeof(c.ci.info), 0x3c, c.ci_len - sizeof(c.ci.info));
    assert_int_equal(tlsnic_setsockopt(c.fd, SOL_TCP, TCP_ULP, "tls", 4), 0);
    /* While TLS_TX is set up, an ACK lands between any two reads of the socket's state. */
    struct tlsnic_sys_ops racing = {
        .sendmsg = sendmsg, .send = send, .recvmsg = recvmsg, .recv = recv, .read = read,
        .pread = pread, .sendfile = sendfile, .readv = readv, .writev = writev, .poll = poll,
        .setsockopt = setsockopt, .getsockopt = getsockopt, .fcntl = fcntl,
        .ioctl = racing_ioctl, .close = close,
    };
    tlsnic_set_sys_ops(&racing);
    ack_race_armed = 1;
    int rc = tlsnic_setsockopt(c.fd, SOL_TLS, TLS_TX, &c.ci, (socklen_t)c.ci_len);
    ack_race_armed = 0;
    tlsnic_set_sys_ops(NULL);
    assert_int_equal(rc, 0);
    /* The handshake's bytes all go; then records pile up, the first ones acknowledged. */
    int outq = 1;
    for (int t = 0; t < 200 && outq != 0; t++) { /* bounded: 2 s */
        peer_reads_and_acks(c.peer);
        assert_int_equal(ioctl(c.fd, SIOCOUTQ, &outq), 0);
    }
    assert_int_equal(outq, 0);
    int i;
    for (i = 0; i < 1000; i++)
        if (tlsnic_send(c.fd, data, sizeof(data), MSG_DONTWAIT) < 0)
            break;
    assert_int_equal(errno, EAGAIN);
    static uint8_t sink[20000];
    assert_int_equal(fd_read_exact(c.peer, sink, sizeof(sink)), 0);
    usleep(200000); /* what follows arrives and is acknowledged: the peer's buffer fills */

    assert_int_equal(tlsnic_device_readd(&fake.dev), 1);
    /* The context starts at the record holding the next byte the peer waits for: any later
     * start would send the bytes in between in the clear. */
    uint32_t rcv_nxt = peer_rcv_nxt(c.peer);
    size_t k = 0;
    while (k < mirror->n && (uint32_t)(rcv_nxt - mirror->recs[k].tcp_seq) >= mirror->recs[k].len)
        k++;
    assert_true(k < mirror->n);
    assert_true(k > 0); /* records were acknowledged: the start is not merely the first */
    assert_int_equal(fake.start, mirror->recs[k].tcp_seq);
    assert_int_equal(be64(fake.ci.aes_gcm_128.rec_seq), mirror->recs[k].rec_seq);
    conn_free(&c);
}

/* Fills the connection until the kernel refuses more (the peer does not read). */
static size_t fill_until_eagain(int fd)
{
    static uint8_t chunk[16384];
    size_t sent = 0;
    for (int i = 0; i < 4096; i++) { /* bounded: 64 MB */
        ssize_t n = tlsnic_send(fd, chunk, sizeof(chunk), MSG_DONTWAIT);
        if (n < 0) {
            assert_int_equal(errno, EAGAIN);
            return sent;
        }
        sent += (size_t)n;
    }
    fail_msg("the peer's window never filled");
    return sent;
}

struct slow_reader {
    int fd;
    int delay_ms;
    size_t got;
    int last; /* 0: EOF; -errno: how reading ended */
};

static void *slow_read(void *arg)
{
    struct slow_reader *r = arg;
    static uint8_t buf[65536];
    usleep((useconds_t)r->delay_ms * 1000);
    for (int i = 0; i < 100000; i++) { /* bounded; each read waits at most 5 s */
        ssize_t n = read(r->fd, buf, sizeof(buf));
        if (n <= 0) {
            r->last = n == 0 ? 0 : -errno;
            return NULL;
        }
        r->got += (size_t)n;
    }
    return NULL;
}

static long elapsed_ms(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (t1.tv_sec - t0->tv_sec) * 1000 + (t1.tv_nsec - t0->tv_nsec) / 1000000;
}

/* tlsnic_close, timed. The bound is generous (a loaded machine) and still far below what
 * waiting for a peer costs: a round trip of ACKs, a 200 ms pause, the 5 s budget. */
#define CLOSE_AT_ONCE_MS 50
static long timed_close(int fd)
{
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(tlsnic_close(fd), 0);
    return elapsed_ms(&t0);
}

static void close_in_device_mode_returns_at_once_and_the_del_comes_after_the_peers_acks(void **state)
{
    (void)state;
    struct conn c;
    conn_new(&c, TLS_1_2_VERSION, TLS_CIPHER_AES_GCM_128);
    size_t sent = fill_until_eagain(c.fd);
    int outq = 0;
    assert_int_equal(ioctl(c.fd, SIOCOUTQ, &outq), 0);
    assert_true(outq > 0); /* unacknowledged bytes the device must still encrypt */
    struct slow_reader r = {.fd = c.peer, .delay_ms = 200};
    pthread_t reader;
    assert_int_equal(pthread_create(&reader, NULL, slow_read, &r), 0);
    long ms = timed_close(c.fd);
    assert_true(ms < CLOSE_AT_ONCE_MS);
    assert_int_equal(fake.dels, 0); /* the peer reads only 200 ms from now */
    assert_int_equal(tlsnic_close_pending(6000), 0);
    assert_int_equal(fake.dels, 1);
    assert_int_equal(fake.outq_at_del, 0); /* the del came after the last ACK */
    pthread_join(reader, NULL);
    assert_int_equal(r.last, 0); /* an orderly end after everything */
    assert_true(r.got >= sent);
    close(c.peer);
}

static void close_in_device_mode_resets_a_peer_that_never_acknowledges(void **state)
{
    (void)state;
    struct conn c;
    conn_new(&c, TLS_1_2_VERSION, TLS_CIPHER_AES_GCM_128);
    fill_until_eagain(c.fd);
    assert_true(timed_close(c.fd) < CLOSE_AT_ONCE_MS);
    assert_int_equal(tlsnic_close_pending(8000), 0); /* bounded: the 5 s budget */
    assert_int_equal(fake.dels, 1);
    assert_true(fake.outq_at_del != 0); /* not acknowledged: deleted only after the reset */
    /* The connection was reset, not closed: nothing more is sent, in the clear or not. */
    struct slow_reader r = {.fd = c.peer};
    slow_read(&r);
    assert_int_equal(r.last, -ECONNRESET);
    close(c.peer);
}

static uint32_t shm_slots = TLSNIC_ATTACH_DEFAULT_SLOTS;

/*
 * conn_new on a loopback pair whose buffers are small from the start (set before the
 * connection, so no window shrinks under a sender): a window that fits the shared-memory
 * store when the peer stops reading.
 */
static void conn_new_small(struct conn *c, uint16_t version, uint16_t cipher)
{
    int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int small = 65536;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof(a);
    assert_int_equal(setsockopt(l, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)), 0);
    assert_int_equal(bind(l, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(l, 1), 0);
    assert_int_equal(getsockname(l, (struct sockaddr *)&a, &al), 0);
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_int_equal(setsockopt(c->fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
    assert_int_equal(connect(c->fd, (struct sockaddr *)&a, sizeof(a)), 0);
    c->peer = accept4(l, NULL, NULL, SOCK_CLOEXEC);
    assert_true(c->peer >= 0);
    close(l);
    struct timeval tv = {.tv_sec = 5};
    setsockopt(c->peer, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    memset(&c->ci, 0, sizeof(c->ci));
    c->ci.info.version = version;
    c->ci.info.cipher_type = cipher;
    c->ci_len = tlsnic_crypto_info_size(cipher);
    memset((uint8_t *)&c->ci + sizeof(c->ci.info), 0x3c, c->ci_len - sizeof(c->ci.info));
    assert_int_equal(tlsnic_setsockopt(c->fd, SOL_TCP, TCP_ULP, "tls", 4), 0);
    assert_int_equal(tlsnic_setsockopt(c->fd, SOL_TLS, TLS_TX, &c->ci, (socklen_t)c->ci_len), 0);
}

/* After fill_until_eagain: the peer reads a little, so the record left pending in user
 * space goes too; then it stops again. Unacknowledged bytes stay, nothing is pending. */
static void flush_the_pending_tail(const struct conn *c)
{
    static uint8_t sink[32768];
    for (int i = 0; i < 200; i++) { /* bounded: 200 reads */
        if (tlsnic_flush(c->fd) == 0)
            return;
        assert_true(recv(c->peer, sink, sizeof(sink), 0) > 0);
    }
    fail_msg("the pending record never left");
}

static int setup_releasing(void **state)
{
    setup(state);
    fake.dev.ops = &fake_release_ops;
    bind_new_sockets(&tlsnic_attach_shm_store_ops, &shm_slots);
    return 0;
}

static void close_returns_at_once_when_the_device_takes_the_socket_over(void **state)
{
    (void)state;
    struct conn c;
    conn_new_small(&c, TLS_1_3_VERSION, TLS_CIPHER_AES_GCM_128);
    fill_until_eagain(c.fd);
    flush_the_pending_tail(&c);
    long ms = timed_close(c.fd);
    assert_true(ms < CLOSE_AT_ONCE_MS);
    assert_int_equal(tlsnic_close_pending(0), 0); /* nothing left to the background */
    assert_int_equal(fake.releases, 1);
    assert_int_equal(fake.release_flags, 0); /* a FIN after the queued records */
    assert_true(fake.outq_at_release > 0);   /* with bytes the device still encrypts */
    assert_int_equal(fake.dels, 0);          /* the device deletes when it is done */
    close(c.peer);
}

static void a_released_store_is_not_reused_until_the_device_lets_go_of_it(void **state)
{
    (void)state;
    struct conn c;
    conn_new(&c, TLS_1_2_VERSION, TLS_CIPHER_AES_GCM_128);
    assert_int_equal(tlsnic_send(c.fd, "secret record", 13, 0), 13);
    int store_fd = tlsnic_shm_store_fd(fake.store);
    assert_true(store_fd >= 0);
    int kept = tlsnic_shm_writers_kept();
    assert_int_equal(tlsnic_close(c.fd), 0);
    assert_int_equal(fake.releases, 1);
    assert_int_equal(tlsnic_shm_writers_kept(), kept + 1); /* retired: kept, not reused */
    /* A new connection while the device may still read it gets another store. */
    struct conn d;
    conn_new(&d, TLS_1_2_VERSION, TLS_CIPHER_AES_GCM_128);
    assert_int_not_equal(tlsnic_shm_store_fd(fake.store), store_fd);
    /* The device lets go (its last word in the store), then the store comes back, wiped. */
    uint8_t *hdr = mmap(NULL, TLSNIC_SHM_HDR_LEN, PROT_READ | PROT_WRITE, MAP_SHARED, store_fd, 0);
    assert_true(hdr != MAP_FAILED);
    __atomic_store_n(tlsnic_shm_flags_word(hdr),
                     TLSNIC_FLOW_F_LIVE | TLSNIC_FLOW_F_UNMAPPED | TLSNIC_FLOW_F_GONE,
                     __ATOMIC_RELEASE);
    munmap(hdr, TLSNIC_SHM_HDR_LEN);
    struct conn e;
    conn_new(&e, TLS_1_2_VERSION, TLS_CIPHER_AES_GCM_128);
    assert_int_equal(tlsnic_shm_store_fd(fake.store), store_fd);
    struct tlsnic_rec_ref ref;
    assert_int_equal(fake.store->ops->get_record(fake.store->priv, fake.start, &ref), -ENOENT);
    struct stat st;
    assert_int_equal(fstat(store_fd, &st), 0);
    uint8_t *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, store_fd, 0);
    assert_true(map != MAP_FAILED);
    assert_null(memmem(map, (size_t)st.st_size, "secret record", 13));
    munmap(map, (size_t)st.st_size);
    conn_free(&e);
    conn_free(&d);
    close(c.peer);
}

static void a_close_with_a_partial_record_unread_asks_for_a_reset(void **state)
{
    (void)state;
    struct conn c;
    conn_new(&c, TLS_1_2_VERSION, TLS_CIPHER_AES_GCM_128);
    assert_int_equal(tlsnic_setsockopt(c.fd, SOL_TLS, TLS_RX, &c.ci, (socklen_t)c.ci_len), 0);
    /* The start of a record: tlsnic takes it in and waits for the rest, unread. */
    const uint8_t part[10] = {TLSNIC_CT_APPLICATION_DATA, 3, 3, 0, 100, 1, 2, 3, 4, 5};
    assert_int_equal(send(c.peer, part, sizeof(part), 0), (ssize_t)sizeof(part));
    usleep(20000);
    uint8_t buf[64];
    assert_int_equal(tlsnic_recv(c.fd, buf, sizeof(buf), MSG_DONTWAIT), -1);
    assert_int_equal(errno, EAGAIN);
    assert_int_equal(tlsnic_close(c.fd), 0);
    assert_int_equal(fake.releases, 1);
    assert_int_equal(fake.release_flags, TLSNIC_RELEASE_ABORT); /* as close(2) with unread data */
    close(c.peer);
}

static void set_linger(int fd, int seconds)
{
    struct linger lg = {.l_onoff = 1, .l_linger = seconds};
    assert_int_equal(tlsnic_setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
}

static void a_close_with_so_linger_zero_asks_the_device_for_a_reset(void **state)
{
    (void)state;
    struct conn c;
    conn_new(&c, TLS_1_2_VERSION, TLS_CIPHER_AES_GCM_128);
    assert_int_equal(tlsnic_send(c.fd, "x", 1, 0), 1);
    set_linger(c.fd, 0);
    assert_int_equal(tlsnic_close(c.fd), 0);
    assert_int_equal(fake.releases, 1);
    assert_int_equal(fake.release_flags, TLSNIC_RELEASE_ABORT); /* as close(2) with SO_LINGER 0 */
    close(c.peer);
}

static void a_close_with_so_linger_zero_resets_at_once_without_waiting_for_acks(void **state)
{
    (void)state;
    struct conn c;
    conn_new(&c, TLS_1_2_VERSION, TLS_CIPHER_AES_GCM_128);
    fill_until_eagain(c.fd); /* a tail pending in user space, unacknowledged bytes queued */
    set_linger(c.fd, 0);
    assert_true(timed_close(c.fd) < CLOSE_AT_ONCE_MS);
    assert_int_equal(tlsnic_close_pending(0), 0); /* nothing left to wait for */
    assert_int_equal(fake.dels, 1);
    struct slow_reader r = {.fd = c.peer};
    slow_read(&r);
    assert_int_equal(r.last, -ECONNRESET);
    close(c.peer);
}

static void a_close_with_so_linger_blocks_until_the_peer_has_acknowledged_everything(void **state)
{
    (void)state;
    struct conn c;
    conn_new_small(&c, TLS_1_3_VERSION, TLS_CIPHER_AES_GCM_128);
    size_t sent = fill_until_eagain(c.fd);
    set_linger(c.fd, 10);
    struct slow_reader r = {.fd = c.peer, .delay_ms = 300};
    pthread_t reader;
    assert_int_equal(pthread_create(&reader, NULL, slow_read, &r), 0);
    long ms = timed_close(c.fd);
    assert_true(ms >= 250);  /* the peer read nothing for 300 ms */
    assert_true(ms < 9000);  /* and then everything, long before the linger time */
    assert_int_equal(fake.releases, 1);
    assert_true(fake.outq_at_release > 0); /* released at once, then waited for the ACKs */
    assert_int_equal(tlsnic_close_pending(0), 0);
    pthread_join(reader, NULL);
    assert_true(r.got >= sent);
    close(c.peer);
}

static void a_close_with_so_linger_returns_after_the_linger_time_if_the_peer_never_acknowledges(void **state)
{
    (void)state;
    struct conn c;
    conn_new_small(&c, TLS_1_3_VERSION, TLS_CIPHER_AES_GCM_128);
    fill_until_eagain(c.fd);
    set_linger(c.fd, 1);
    long ms = timed_close(c.fd);
    assert_true(ms >= 950);
    assert_true(ms < 3000);
    assert_int_equal(tlsnic_close_pending(8000), 0); /* the rest as any close: bounded */
    close(c.peer);
}

static void a_device_away_at_close_gets_the_release_once_it_is_back(void **state)
{
    (void)state;
    struct conn c;
    conn_new(&c, TLS_1_3_VERSION, TLS_CIPHER_AES_GCM_128);
    assert_int_equal(tlsnic_send(c.fd, "x", 1, 0), 1);
    fake.release_away = 3; /* a restarting daemon: three tries find it gone */
    assert_true(timed_close(c.fd) < CLOSE_AT_ONCE_MS);
    assert_int_equal(tlsnic_close_pending(5000), 0);
    assert_int_equal(fake.releases, 4);
    assert_int_equal(fake.dels, 0);
    /* Meanwhile the context stayed registered, so a re-add would have covered it; now the
     * device has it and nothing of it is left here. */
    assert_int_equal(tlsnic_device_readd(&fake.dev), 0);
    close(c.peer);
}

static void a_device_away_for_the_whole_close_budget_gets_the_connection_reset(void **state)
{
    (void)state;
    struct conn c;
    conn_new_small(&c, TLS_1_3_VERSION, TLS_CIPHER_AES_GCM_128);
    fill_until_eagain(c.fd);
    fake.release_away = -1; /* never back */
    assert_true(timed_close(c.fd) < CLOSE_AT_ONCE_MS);
    assert_int_equal(tlsnic_close_pending(8000), 0); /* bounded: the 5 s budget */
    assert_int_equal(fake.dels, 0);
    struct slow_reader r = {.fd = c.peer};
    slow_read(&r);
    assert_int_equal(r.last, -ECONNRESET); /* no device: nothing more may leave */
    close(c.peer);
}

static void a_forked_childs_close_leaves_the_parents_socket_store_and_device_alone(void **state)
{
    (void)state;
    struct conn c;
    conn_new(&c, TLS_1_2_VERSION, TLS_CIPHER_AES_GCM_128);
    /* A few records, all still in the store (released only every 16): the device may
     * still read them. */
    static uint8_t data[4000];
    memset(data, 0x6b, sizeof(data));
    uint32_t written = 0; /* record bytes: 4000 + header, explicit nonce and tag each */
    for (int i = 0; i < 5; i++) {
        assert_int_equal(tlsnic_send(c.fd, data, sizeof(data), 0), (ssize_t)sizeof(data));
        written += (uint32_t)sizeof(data) + TLSNIC_REC_HDR_LEN + 8 + TLSNIC_REC_TAG_LEN;
    }
    struct tlsnic_rec_ref before; /* the newest record */
    assert_int_equal(fake.store->ops->get_record(fake.store->priv, fake.start + written - 1, &before), 0);
    const int kept = tlsnic_shm_writers_kept();

    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        /* The child closes what it inherited; none of it is its to end. */
        int rc = tlsnic_close(c.fd);
        _exit(rc != 0 ? 10 : fake.releases != 0 ? 11 : fake.dels != 0 ? 12
                         : tlsnic_close_pending(0) != 0 ? 13 : 0);
    }
    int status = -1;
    assert_int_equal(waitpid(child, &status, 0), child);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);

    /* The parent's socket: no reset armed, still sending; its store: the same records. */
    struct linger l = {.l_onoff = 1};
    socklen_t ll = sizeof(l);
    assert_int_equal(getsockopt(c.fd, SOL_SOCKET, SO_LINGER, &l, &ll), 0);
    assert_int_equal(l.l_onoff, 0);
    struct tlsnic_rec_ref after;
    assert_int_equal(fake.store->ops->get_record(fake.store->priv, before.tcp_seq, &after), 0);
    assert_int_equal(after.len, before.len);
    assert_memory_equal(after.bytes, before.bytes, before.len);
    assert_int_equal(tlsnic_shm_writers_kept(), kept);
    assert_int_equal(fake.releases, 0);
    struct slow_reader r = {.fd = c.peer};
    pthread_t reader;
    assert_int_equal(pthread_create(&reader, NULL, slow_read, &r), 0);
    assert_int_equal(tlsnic_send(c.fd, "after the child", 15, 0), 15);
    /* Only the owner's close ends it. */
    assert_int_equal(tlsnic_close(c.fd), 0);
    assert_int_equal(fake.releases, 1);
    shutdown(c.peer, SHUT_WR);
    pthread_join(reader, NULL);
    close(c.peer);
}

int main(void)
{
    if (geteuid() != 0) {
        printf("SKIP: device mode reads TCP sequence numbers with TCP_REPAIR, which needs "
               "CAP_NET_ADMIN (run as root)\n");
        return 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(accepting_device_takes_tx_and_mode_says_device, setup, teardown),
        cmocka_unit_test_setup_teardown(close_in_device_mode_returns_at_once_and_the_del_comes_after_the_peers_acks,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(close_in_device_mode_resets_a_peer_that_never_acknowledges, setup, teardown),
        cmocka_unit_test_setup_teardown(close_returns_at_once_when_the_device_takes_the_socket_over,
                                        setup_releasing, teardown),
        cmocka_unit_test_setup_teardown(a_released_store_is_not_reused_until_the_device_lets_go_of_it,
                                        setup_releasing, teardown),
        cmocka_unit_test_setup_teardown(a_close_with_a_partial_record_unread_asks_for_a_reset,
                                        setup_releasing, teardown),
        cmocka_unit_test_setup_teardown(a_close_with_so_linger_zero_asks_the_device_for_a_reset,
                                        setup_releasing, teardown),
        cmocka_unit_test_setup_teardown(a_close_with_so_linger_zero_resets_at_once_without_waiting_for_acks,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(a_close_with_so_linger_blocks_until_the_peer_has_acknowledged_everything,
                                        setup_releasing, teardown),
        cmocka_unit_test_setup_teardown(a_close_with_so_linger_returns_after_the_linger_time_if_the_peer_never_acknowledges,
                                        setup_releasing, teardown),
        cmocka_unit_test_setup_teardown(a_device_away_at_close_gets_the_release_once_it_is_back,
                                        setup_releasing, teardown),
        cmocka_unit_test_setup_teardown(a_device_away_for_the_whole_close_budget_gets_the_connection_reset,
                                        setup_releasing, teardown),
        cmocka_unit_test_setup_teardown(a_forked_childs_close_leaves_the_parents_socket_store_and_device_alone,
                                        setup_releasing, teardown),
        cmocka_unit_test_setup_teardown(a_socket_keeps_its_device_when_the_default_changes_before_its_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(a_socket_bound_to_no_device_stays_in_software_whatever_the_default, setup, teardown),
        cmocka_unit_test_setup_teardown(binding_a_socket_whose_keys_are_set_is_EBUSY, setup, teardown),
        cmocka_unit_test_setup_teardown(refusing_device_leaves_software_with_the_reason, setup, teardown),
        cmocka_unit_test_setup_teardown(frames_are_what_software_would_seal_once_the_device_seals_them, setup, teardown),
        cmocka_unit_test_setup_teardown(record_store_finds_the_record_of_any_sequence_number, setup, teardown),
        cmocka_unit_test_setup_teardown(retained_records_are_released_as_the_slow_reader_acknowledges, setup, teardown),
        cmocka_unit_test_setup_teardown(integrity_failure_aborts_the_connection, setup, teardown),
        cmocka_unit_test_setup_teardown(getsockopt_tls_tx_follows_the_framed_records, setup, teardown),
        cmocka_unit_test_setup_teardown(tx_rekey_in_device_mode_is_EOPNOTSUPP, setup, teardown),
        cmocka_unit_test_setup_teardown(second_tls_tx_on_tls12_in_device_mode_is_EBUSY, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(reading_the_tcp_sequence_number_keeps_so_reuseaddr, setup, teardown),
        cmocka_unit_test_setup_teardown(hundreds_of_unacknowledged_records_are_all_found_then_all_released,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(flags_the_device_wrote_into_the_store_abort_without_asking_it,
                                        setup_rooms, teardown_mirror),
        cmocka_unit_test_setup_teardown(a_store_the_device_never_wrote_flags_into_leaves_the_asking_to_the_device,
                                        setup_rooms, teardown_mirror),
        cmocka_unit_test_setup_teardown(a_full_store_waits_for_acknowledgements_and_loses_nothing,
                                        setup_tiny, teardown_mirror),
        cmocka_unit_test_setup_teardown(a_store_with_rooms_gets_records_framed_in_place_and_no_copies,
                                        setup_rooms, teardown_mirror),
        cmocka_unit_test_setup_teardown(device_gets_the_mappable_store_and_it_gets_every_record, setup_mirror, teardown_mirror),
        cmocka_unit_test_setup_teardown(readd_starts_at_the_first_unacknowledged_record, setup_mirror, teardown_mirror),
        cmocka_unit_test_setup_teardown(readd_with_everything_acknowledged_starts_at_the_next_record, setup_mirror, teardown_mirror),
        cmocka_unit_test_setup_teardown(readd_leaves_contexts_of_other_devices_alone, setup_mirror, teardown_mirror),
        cmocka_unit_test_setup_teardown(refused_readd_aborts_the_connection_at_its_next_send, setup, teardown),
        cmocka_unit_test_setup_teardown(readd_that_finds_the_device_gone_again_keeps_the_connection, setup, teardown),
        cmocka_unit_test_setup_teardown(an_ack_while_tls_tx_is_set_never_moves_a_readd_past_an_unacknowledged_record,
                                        setup_mirror, teardown_mirror),
    };
    return cmocka_run_group_tests_name("ktls_device", tests, NULL, NULL);
}
