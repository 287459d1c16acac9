/*
 * Device mode of the socket layer, RX (src/host/rxdev.c), with the real device model in
 * process. The peer's records go over the simulated wire in RX mode (loss, reordering,
 * duplication, a receiver that may keep a later copy), through the device (tlsnic_nic,
 * behind a struct tlsnic_dev that maps the socket's flow onto the wire's), and the bytes
 * the host's TCP keeps are written into a real loopback connection whose reading end is
 * the tlsnic socket, with the TCP sequence numbers the device was given at TLS_RX. The
 * program reads with tlsnic_recv: every byte must be the peer's, whatever the device did.
 * Needs CAP_NET_ADMIN (TCP_REPAIR reads the sequence numbers): skipped (77) otherwise.
 */
#include <errno.h>
#include <fcntl.h>
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
#include <sys/time.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "nic_testgen.h"
#include "tcp_pair.h"
#include "tlsnic/ktls.h"
#include "tlsnic/nic.h"
#include "tlsnic/record.h"
#include "tlsnic/rx_status.h"
#include "tlsnic/wire.h"

#define STREAM_CAP (3u << 20)
#define MAX_ROUNDS 60000

/* ------------------------------------------------------------------------------------------ */
/* The in-process device behind devops, on the wire's flow                                   */

struct simdev {
    struct tlsnic_dev dev;
    tlsnic_nic *nic;
    struct tlsnic_nic_config cfg;
    struct tlsnic_flow wflow;
    uint32_t start;
    int adds, rekeys;
};

static int sd_add(struct tlsnic_dev *dev, int sockfd, const struct tlsnic_flow *flow,
                  enum tlsnic_dir dir, const void *ci, size_t len, uint32_t start,
                  const struct tlsnic_rec_store *store)
{
    struct simdev *d = dev->priv;
    if (dir != TLSNIC_DIR_RX)
        return -EOPNOTSUPP;
    int rc = tlsnic_nic_add(d->nic, &d->wflow, dir, ci, len, start, store);
    if (rc == 0) {
        d->adds++;
        if (d->adds == 1)
            d->start = start;
    }
    return rc;
}

static int sd_del(struct tlsnic_dev *dev, int sockfd, const struct tlsnic_flow *flow,
                  enum tlsnic_dir dir)
{
    struct simdev *d = dev->priv;
    return tlsnic_nic_del(d->nic, &d->wflow, dir);
}

static int sd_resync(struct tlsnic_dev *dev, int sockfd, const struct tlsnic_flow *flow,
                     enum tlsnic_dir dir, uint32_t seq, uint64_t rec_seq)
{
    struct simdev *d = dev->priv;
    return tlsnic_nic_resync(d->nic, &d->wflow, dir, seq, rec_seq);
}

static int sd_flags(struct tlsnic_dev *dev, const struct tlsnic_flow *flow, enum tlsnic_dir dir,
                    uint32_t *flags)
{
    struct simdev *d = dev->priv;
    return tlsnic_nic_flow_flags(d->nic, &d->wflow, dir, flags);
}

static int sd_rekey(struct tlsnic_dev *dev, int sockfd, const struct tlsnic_flow *flow,
                    enum tlsnic_dir dir, const void *ci, size_t len, uint32_t seq)
{
    struct simdev *d = dev->priv;
    d->rekeys++;
    return tlsnic_nic_rekey(d->nic, &d->wflow, dir, ci, len, seq);
}

static const struct tlsnic_dev_ops sd_ops = {
    .name = "in-process model", .add = sd_add, .del = sd_del, .resync = sd_resync,
    .flow_flags = sd_flags, .rekey = sd_rekey, .caps = TLSNIC_DEV_CAP_RX,
};

/* ------------------------------------------------------------------------------------------ */
/* The pipe: peer -> wire -> device -> host TCP -> tlsnic_recv                                */

struct pipe {
    const struct tg_combo *c;
    int h, r;
    struct simdev sd;
    tlsnic_simhost *sh;
    tlsnic_simwire *w;
    tlsnic_rec_key *peer;
    union tlsnic_crypto_info ci;
    size_t ci_len;
    uint8_t *expect; /* the plaintext, in order */
    size_t expect_len, got;
    size_t written;  /* received stream bytes written into the connection */
    int err;         /* errno of the first failed recv */
    int keyupdate_at_record; /* -1 none */
    union tlsnic_crypto_info ci2; /* keys after the KeyUpdate */
    size_t ci2_len;
    int (*tamper)(void *, uint8_t *, size_t);
    int odd_iov;     /* read with three iovecs of odd sizes instead of one */
    uint32_t window; /* the wire's window (0: 64 KB) */
    void *tamper_priv;
};

static int pipe_open(struct pipe *p, const struct tg_combo *c, const struct tlsnic_nic_config *cfg)
{
    memset(p, 0, sizeof(*p));
    p->c = c;
    p->keyupdate_at_record = -1;
    int fds[2];
    assert_int_equal(tcp_pair(fds), 0);
    p->h = fds[0];
    p->r = fds[1];
    p->sd.dev.ops = &sd_ops;
    p->sd.dev.priv = &p->sd;
    p->sd.wflow = tg_flow(AF_INET);
    assert_int_equal(tlsnic_nic_new(&p->sd.nic, cfg), 0);
    if (cfg)
        p->sd.cfg = *cfg;
    tlsnic_set_default_offload(&(struct tlsnic_offload){.dev = &p->sd.dev});
    p->ci_len = tg_crypto_info(&p->ci, c->version, c->cipher, 0, 0x51 + c->cipher + c->version);
    assert_int_equal(tlsnic_rec_key_new(&p->peer, &p->ci, p->ci_len), 0);
    assert_int_equal(tlsnic_setsockopt(p->h, SOL_TCP, TCP_ULP, "tls", 4), 0);
    assert_int_equal(tlsnic_setsockopt(p->h, SOL_TLS, TLS_RX, &p->ci, (socklen_t)p->ci_len), 0);
    struct tlsnic_mode_info m;
    assert_int_equal(tlsnic_get_mode(p->h, TLSNIC_DIR_RX, &m), 0);
    if (m.mode != TLSNIC_MODE_DEVICE)
        return -1;
    assert_int_equal(p->sd.adds, 1);
    assert_int_equal(tlsnic_simhost_new(&p->sh, c->version, c->cipher, 0, p->sd.start, STREAM_CAP), 0);
    p->expect = malloc(STREAM_CAP);
    assert_non_null(p->expect);
    fcntl(p->r, F_SETFL, fcntl(p->r, F_GETFL) | O_NONBLOCK);
    return 0;
}

static void pipe_close(struct pipe *p)
{
    if (p->h >= 0)
        tlsnic_close(p->h);
    close(p->r);
    tlsnic_set_default_offload(NULL);
    tlsnic_simwire_free(p->w);
    tlsnic_simhost_free(p->sh);
    tlsnic_nic_free(p->sd.nic);
    tlsnic_rec_key_free(p->peer);
    free(p->expect);
}

/* The peer writes n records of content_len bytes (a pattern). */
static void pipe_records(struct pipe *p, size_t n, size_t content_len, uint8_t type)
{
    static uint8_t content[TLSNIC_REC_MAX_PLAINTEXT], rec[TLSNIC_REC_MAX_WIRE_LEN];
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < content_len; j++)
            content[j] = (uint8_t)(p->expect_len + j * 7 + (j >> 9));
        size_t l;
        assert_int_equal(tlsnic_rec_seal(p->peer, type, content, content_len, rec, sizeof(rec), &l), 0);
        assert_int_equal(tlsnic_simhost_append(p->sh, rec, l), 0);
        if (type == TLSNIC_CT_APPLICATION_DATA) {
            memcpy(p->expect + p->expect_len, content, content_len);
            p->expect_len += content_len;
        }
    }
}

/* The peer's TLS 1.3 KeyUpdate, after which it seals with new keys. */
static void pipe_keyupdate(struct pipe *p)
{
    static const uint8_t ku[5] = {24, 0, 0, 1, 0};
    uint8_t rec[64];
    size_t l;
    assert_int_equal(tlsnic_rec_seal(p->peer, TLSNIC_CT_HANDSHAKE, ku, sizeof(ku), rec, sizeof(rec), &l), 0);
    assert_int_equal(tlsnic_simhost_append(p->sh, rec, l), 0);
    p->ci2_len = tg_crypto_info(&p->ci2, p->c->version, p->c->cipher, 0, 0xbeefu + p->c->cipher);
    tlsnic_rec_key_free(p->peer);
    assert_int_equal(tlsnic_rec_key_new(&p->peer, &p->ci2, p->ci2_len), 0);
}

static void pipe_wire(struct pipe *p, uint16_t loss_pm, uint16_t reorder_pm, uint16_t dup_pm,
                      uint64_t seed)
{
    size_t len;
    tlsnic_simhost_stream(p->sh, &len);
    struct tlsnic_simwire_config wc = {.mss = 1400, .window = p->window ? p->window : 65536, .seed = seed,
                                       .loss_pm = loss_pm, .reorder_pm = reorder_pm,
                                       .dup_pm = dup_pm, .rexmit = TLSNIC_REXMIT_SELECTIVE,
                                       .start_seq = p->sd.start, .max_stream = len, .rx = 1,
                                       .keep_last_pm = 300};
    assert_int_equal(tlsnic_simwire_new(&p->w, &wc, p->sh, tlsnic_wire_hook_nic(p->sd.nic)), 0);
    if (p->tamper)
        tlsnic_simwire_set_tamper(p->w, p->tamper, p->tamper_priv);
}

/* Reads what the socket has: every byte checked. A KeyUpdate gets the new keys set. */
static void pipe_read(struct pipe *p)
{
    static uint8_t buf[65536];
    for (int guard = 0; guard < 100000 && !p->err; guard++) {
        uint8_t cbuf[CMSG_SPACE(1)];
        struct iovec iov[3] = {{.iov_base = buf, .iov_len = sizeof(buf)}};
        if (p->odd_iov) {
            iov[0].iov_len = 777;
            iov[1] = (struct iovec){buf + 777, 1};
            iov[2] = (struct iovec){buf + 778, 5000};
        }
        struct msghdr mh = {.msg_iov = iov, .msg_iovlen = p->odd_iov ? 3 : 1, .msg_control = cbuf,
                            .msg_controllen = sizeof(cbuf)};
        ssize_t n = tlsnic_recvmsg(p->h, &mh, MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EAGAIN)
                return;
            if (errno == EKEYEXPIRED && p->ci2_len) {
                assert_int_equal(tlsnic_setsockopt(p->h, SOL_TLS, TLS_RX, &p->ci2, (socklen_t)p->ci2_len), 0);
                continue;
            }
            p->err = errno;
            return;
        }
        if (n == 0)
            return;
        struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
        if (cm && cm->cmsg_level == SOL_TLS && *CMSG_DATA(cm) != TLSNIC_CT_APPLICATION_DATA)
            continue; /* the KeyUpdate itself */
        assert_true(p->got + (size_t)n <= p->expect_len);
        if (memcmp(buf, p->expect + p->got, (size_t)n) != 0) {
            fprintf(stderr, "wrong plaintext at %zu\n", p->got);
            fail();
        }
        p->got += (size_t)n;
    }
}

/* Moves what the wire delivered into the connection, reading as it goes. */
static void pipe_deliver(struct pipe *p)
{
    size_t avail;
    const uint8_t *got = tlsnic_simwire_received(p->w, &avail);
    for (int guard = 0; guard < 100000 && p->written < avail; guard++) {
        ssize_t n = write(p->r, got + p->written, avail - p->written);
        if (n > 0)
            p->written += (size_t)n;
        else
            assert_int_equal(errno, EAGAIN);
        pipe_read(p);
    }
    pipe_read(p);
}

/* Runs the wire until done (or max_rounds); between steps, hook(p, round) may act. */
static int pipe_run(struct pipe *p, uint32_t max_rounds, void (*hook)(struct pipe *, uint32_t))
{
    int done = 0;
    for (uint32_t round = 0; round < max_rounds && !done && !p->err; round++) {
        if (hook)
            hook(p, round);
        int rc = tlsnic_simwire_step(p->w);
        assert_true(rc >= 0);
        done = rc == 1;
        pipe_deliver(p);
    }
    for (int i = 0; i < 50 && !p->err && p->got < p->expect_len; i++) {
        usleep(1000);
        pipe_read(p);
    }
    return done;
}

struct snap {
    uint64_t dev_recs, dev_bytes, sw_bytes, reenc, gaps, dist, within2, resyncs, readd;
};

static struct snap snap(void)
{
    return (struct snap){tlsnic_stat_get(TLSNIC_STAT_RX_DEVICE_RECORDS),
                         tlsnic_stat_get(TLSNIC_STAT_RX_DEVICE_BYTES),
                         tlsnic_stat_get(TLSNIC_STAT_RX_SW_BYTES),
                         tlsnic_stat_get(TLSNIC_STAT_RX_REENCRYPT_RECORDS),
                         tlsnic_stat_get(TLSNIC_STAT_RX_RESYNC_GAPS),
                         tlsnic_stat_get(TLSNIC_STAT_RX_RESYNC_RECORDS),
                         tlsnic_stat_get(TLSNIC_STAT_RX_RESYNC_WITHIN2),
                         tlsnic_stat_get(TLSNIC_STAT_RX_DEVICE_RESYNC),
                         tlsnic_stat_get(TLSNIC_STAT_RX_DEVICE_READD)};
}

static struct snap delta(struct snap a)
{
    struct snap b = snap();
    return (struct snap){b.dev_recs - a.dev_recs, b.dev_bytes - a.dev_bytes, b.sw_bytes - a.sw_bytes,
                         b.reenc - a.reenc, b.gaps - a.gaps, b.dist - a.dist,
                         b.within2 - a.within2, b.resyncs - a.resyncs, b.readd - a.readd};
}

/* ------------------------------------------------------------------------------------------ */

static void rx_goes_to_a_device_that_decrypts_and_mode_says_device(void **state)
{
    struct pipe p;
    if (pipe_open(&p, &tg_combos[0], NULL) < 0)
        fail_msg("RX not in device mode");
    struct tlsnic_mode_info m;
    assert_int_equal(tlsnic_get_mode(p.h, TLSNIC_DIR_RX, &m), 0);
    assert_int_equal(m.mode, TLSNIC_MODE_DEVICE);
    assert_int_equal(m.reason, TLSNIC_SW_REASON_NONE);
    assert_int_equal(tlsnic_nic_flow_count(p.sd.nic), 1);
    tlsnic_close(p.h);
    p.h = -1;
    assert_int_equal(tlsnic_nic_flow_count(p.sd.nic), 0); /* the device let go at close */
    pipe_close(&p);
}

static void download_is_decrypted_by_the_device_byte_exact_all_six(void **state)
{
    for (size_t c = 0; c < 6; c++) {
        struct pipe p;
        if (pipe_open(&p, &tg_combos[c], NULL) < 0)
            fail_msg("RX not in device mode");
        pipe_records(&p, 300, 1400, TLSNIC_CT_APPLICATION_DATA);
        pipe_records(&p, 30, 16000, TLSNIC_CT_APPLICATION_DATA);
        pipe_wire(&p, 0, 0, 0, 7 + c);
        struct snap s0 = snap();
        assert_true(pipe_run(&p, MAX_ROUNDS, NULL));
        assert_int_equal(p.err, 0);
        assert_int_equal(p.got, p.expect_len);
        struct snap d = delta(s0);
        size_t len;
        tlsnic_simhost_stream(p.sh, &len);
        assert_int_equal(d.dev_recs, 330);
        assert_int_equal(d.dev_bytes, len); /* the host decrypted nothing */
        assert_int_equal(d.sw_bytes, 0);
        pipe_close(&p);
    }
}

static void download_is_byte_exact_under_loss_reordering_and_duplication(void **state)
{
    const uint16_t losses[3] = {0, 10, 50};
    printf("  host RX in device mode over the simulated wire (reorder 1%%, dup 1%%):\n");
    for (size_t c = 0; c < 6; c++) {
        for (size_t l = 0; l < 3; l++) {
            struct pipe p;
            if (pipe_open(&p, &tg_combos[c], NULL) < 0)
                fail_msg("RX not in device mode");
            pipe_records(&p, 250, 1400, TLSNIC_CT_APPLICATION_DATA);
            pipe_records(&p, 16, 16000, TLSNIC_CT_APPLICATION_DATA);
            pipe_wire(&p, losses[l], 10, 10, 100 + c * 3 + l);
            struct snap s0 = snap();
            assert_true(pipe_run(&p, MAX_ROUNDS, NULL));
            assert_int_equal(p.err, 0);
            assert_int_equal(p.got, p.expect_len);
            struct tlsnic_simwire_stats ws;
            tlsnic_simwire_stats(p.w, &ws);
            assert_int_equal(ws.ooo_mismatch, 0);
            struct snap d = delta(s0);
            printf("    %-26s loss %3.1f%%: device-verified %5.1f%% of records (%5.1f%% of bytes), "
                   "%llu re-encrypted, resync within 2 records in %llu of %llu gaps\n",
                   p.c->name, losses[l] / 10.0, 100.0 * (double)d.dev_recs / 266,
                   100.0 * (double)d.dev_bytes / (double)(d.dev_bytes + d.sw_bytes),
                   (unsigned long long)d.reenc, (unsigned long long)d.within2,
                   (unsigned long long)d.gaps);
            assert_true(2 * d.within2 >= d.gaps); /* the median is within 2 */
            pipe_close(&p);
        }
    }
}

/* Every recv/recvmsg the socket layer makes on the kernel socket, counted. */
static int sys_calls;

static ssize_t counting_recv(int fd, void *buf, size_t len, int flags)
{
    sys_calls++;
    return recv(fd, buf, len, flags);
}

static ssize_t counting_recvmsg(int fd, struct msghdr *msg, int flags)
{
    sys_calls++;
    return recvmsg(fd, msg, flags);
}

static void queued_verified_records_come_in_one_peek_and_one_discard(void **state)
{
    const struct tlsnic_sys_ops ops = {
        .sendmsg = sendmsg, .recvmsg = counting_recvmsg, .recv = counting_recv, .read = read,
        .pread = pread, .readv = readv, .writev = writev, .poll = poll,
        .setsockopt = setsockopt, .getsockopt = getsockopt, .fcntl = fcntl, .ioctl = ioctl,
        .close = close,
    };
    static uint8_t buf[65536];
    for (size_t c = 0; c < 6; c++) {
        struct pipe p;
        if (pipe_open(&p, &tg_combos[c], NULL) < 0)
            fail_msg("RX not in device mode");
        pipe_records(&p, 40, 1400, TLSNIC_CT_APPLICATION_DATA);
        pipe_wire(&p, 0, 0, 0, 3);
        int done = 0;
        for (int round = 0; round < MAX_ROUNDS && !done; round++) {
            int rc = tlsnic_simwire_step(p.w);
            assert_true(rc >= 0);
            done = rc == 1;
        }
        assert_true(done);
        size_t avail;
        const uint8_t *got = tlsnic_simwire_received(p.w, &avail);
        for (int guard = 0; guard < 1000 && p.written < avail; guard++) {
            ssize_t n = write(p.r, got + p.written, avail - p.written);
            assert_true(n > 0);
            p.written += (size_t)n;
        }
        struct snap s0 = snap();
        tlsnic_set_sys_ops(&ops);
        sys_calls = 0;
        ssize_t n = tlsnic_recv(p.h, buf, sizeof(buf), MSG_DONTWAIT);
        int calls = sys_calls;
        tlsnic_set_sys_ops(NULL);
        assert_int_equal(n, 40 * 1400);
        assert_memory_equal(buf, p.expect, 40 * 1400);
        /* the peek, the discard, and the header read that finds nothing more */
        assert_true(calls <= 3);
        assert_int_equal(delta(s0).dev_recs, 40);
        assert_int_equal(delta(s0).sw_bytes, 0);
        pipe_close(&p);
    }
}

struct late_writer {
    int fd;
    const uint8_t *p;
    size_t len;
};

static void *write_late(void *arg)
{
    struct late_writer *l = arg;
    usleep(30000);
    size_t off = 0;
    for (int guard = 0; guard < 1000 && off < l->len; guard++) {
        ssize_t n = write(l->fd, l->p + off, l->len - off);
        if (n > 0)
            off += (size_t)n;
        else
            usleep(1000);
    }
    return NULL;
}

static void blocking_read_takes_an_arriving_record_straight_into_the_buffer(void **state)
{
    const struct tlsnic_sys_ops ops = {
        .sendmsg = sendmsg, .recvmsg = counting_recvmsg, .recv = counting_recv, .read = read,
        .pread = pread, .readv = readv, .writev = writev, .poll = poll,
        .setsockopt = setsockopt, .getsockopt = getsockopt, .fcntl = fcntl, .ioctl = ioctl,
        .close = close,
    };
    static uint8_t buf[TLSNIC_REC_MAX_PLAINTEXT];
    for (size_t c = 0; c < 6; c++) {
        struct pipe p;
        if (pipe_open(&p, &tg_combos[c], NULL) < 0)
            fail_msg("RX not in device mode");
        pipe_records(&p, 1, 16000, TLSNIC_CT_APPLICATION_DATA);
        pipe_wire(&p, 0, 0, 0, 5);
        int done = 0;
        for (int round = 0; round < MAX_ROUNDS && !done; round++) {
            int rc = tlsnic_simwire_step(p.w);
            assert_true(rc >= 0);
            done = rc == 1;
        }
        assert_true(done);
        size_t avail;
        const uint8_t *got = tlsnic_simwire_received(p.w, &avail);
        /* half the record now, the rest later */
        assert_int_equal(write(p.r, got, avail / 2), (ssize_t)(avail / 2));
        struct late_writer lw = {.fd = p.r, .p = got + avail / 2, .len = avail - avail / 2};
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, write_late, &lw), 0);
        struct snap s0 = snap();
        tlsnic_set_sys_ops(&ops);
        sys_calls = 0;
        ssize_t n = tlsnic_recv(p.h, buf, 16000, 0);
        int calls = sys_calls;
        tlsnic_set_sys_ops(NULL);
        pthread_join(t, NULL);
        assert_int_equal(n, 16000);
        assert_memory_equal(buf, p.expect, 16000);
        /* a look (which sees the header), the two pieces as they arrive (the ordinary
         * path: header, piece, piece, last byte peeked, last byte taken) */
        assert_true(calls <= 3);
        assert_int_equal(delta(s0).dev_recs, 1);
        pipe_close(&p);
    }
}

static void batched_reads_over_odd_iovecs_and_between_control_records_are_byte_exact(void **state)
{
    for (size_t c = 0; c < 6; c++) {
        for (uint16_t loss = 0; loss <= 10; loss += 10) {
            struct pipe p;
            if (pipe_open(&p, &tg_combos[c], NULL) < 0)
                fail_msg("RX not in device mode");
            p.odd_iov = 1;
            for (int k = 0; k < 4; k++) {
                pipe_records(&p, 30, 1400, TLSNIC_CT_APPLICATION_DATA);
                pipe_records(&p, 1, 60, TLSNIC_CT_HANDSHAKE); /* not 24: no KeyUpdate */
                pipe_records(&p, 5, 7000, TLSNIC_CT_APPLICATION_DATA);
            }
            pipe_wire(&p, loss, loss, loss, 40 + c + loss);
            struct snap s0 = snap();
            assert_true(pipe_run(&p, MAX_ROUNDS, NULL));
            assert_int_equal(p.err, 0);
            assert_int_equal(p.got, p.expect_len);
            if (loss == 0)
                assert_int_equal(delta(s0).sw_bytes, 0);
            pipe_close(&p);
        }
    }
}

struct flip {
    size_t at; /* stream offset of the byte to flip (first copy only) */
    uint32_t start;
    int done;
};

static int flip_fn(void *priv, uint8_t *frame, size_t len)
{
    struct flip *f = priv;
    struct tlsnic_frame fr;
    if (f->done || tlsnic_frame_parse(frame, len, &fr) != TLSNIC_FRAME_TCP)
        return 0;
    size_t off = (uint32_t)(fr.seq - f->start);
    if (f->at < off || f->at >= off + fr.payload_len)
        return 0;
    frame[fr.payload_off + (f->at - off)] ^= 0x04;
    f->done = 1;
    return 1;
}

static void flipped_bit_is_ebadmsg_after_every_good_byte(void **state)
{
    for (size_t c = 0; c < 6; c++) {
        for (int where = 0; where < 3; where++) { /* body, tag, header type */
            struct pipe p;
            if (pipe_open(&p, &tg_combos[c], NULL) < 0)
                fail_msg("RX not in device mode");
            pipe_records(&p, 20, 1000, TLSNIC_CT_APPLICATION_DATA);
            size_t rl = 1000 + tlsnic_rec_key_overhead(p.peer), r = 7 * rl;
            struct flip f = {.at = where == 0 ? r + 500 : where == 1 ? r + rl - 2 : r,
                             .start = p.sd.start};
            p.tamper = flip_fn;
            p.tamper_priv = &f;
            pipe_wire(&p, 0, 0, 0, 1);
            pipe_run(&p, MAX_ROUNDS, NULL);
            assert_true(f.done);
            assert_int_equal(p.err, EBADMSG);
            assert_int_equal(p.got, 7 * 1000); /* every record before it, nothing after */
            pipe_close(&p);
        }
    }
}

/* A record whose ciphertext carries a record header, reaching the next real header. */
struct dropper {
    size_t from, to; /* lose the first copy of what overlaps [from, to) */
    uint32_t start;
    int done;
};

static int drop_fn(void *priv, uint8_t *frame, size_t len)
{
    struct dropper *d = priv;
    struct tlsnic_frame fr;
    if (d->done || tlsnic_frame_parse(frame, len, &fr) != TLSNIC_FRAME_TCP)
        return 0;
    size_t off = (uint32_t)(fr.seq - d->start);
    if (off + fr.payload_len <= d->from || off >= d->to)
        return 0;
    d->done = 1;
    return -1;
}

/* Runs the wire to the end; the received stream. */
static const uint8_t *pipe_wire_all(struct pipe *p, size_t *avail)
{
    int done = 0;
    for (int round = 0; round < MAX_ROUNDS && !done; round++) {
        int rc = tlsnic_simwire_step(p->w);
        assert_true(rc >= 0);
        done = rc == 1;
    }
    assert_true(done);
    return tlsnic_simwire_received(p->w, avail);
}

static void arriving_record_cut_short_by_a_receive_timeout_loses_no_byte(void **state)
{
    static uint8_t buf[TLSNIC_REC_MAX_PLAINTEXT];
    for (size_t c = 0; c < 6; c++) {
        struct pipe p;
        if (pipe_open(&p, &tg_combos[c], NULL) < 0)
            fail_msg("RX not in device mode");
        pipe_records(&p, 2, 16000, TLSNIC_CT_APPLICATION_DATA);
        pipe_wire(&p, 0, 0, 0, 6);
        size_t avail;
        const uint8_t *got = pipe_wire_all(&p, &avail);
        struct timeval tv = {.tv_usec = 20000};
        assert_int_equal(setsockopt(p.h, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
        size_t rl = 16000 + tlsnic_rec_key_overhead(p.peer);
        /* inside the first record's header; then the first record whole and the second cut
         * inside its body */
        const size_t cuts[2] = {3, rl + 7000};
        size_t have = 0;
        for (int k = 0; k < 2; k++) {
            assert_int_equal(write(p.r, got + p.written, cuts[k] - p.written), (ssize_t)(cuts[k] - p.written));
            p.written = cuts[k];
            if (k == 1) {
                assert_int_equal(tlsnic_recv(p.h, buf, sizeof(buf), 0), 16000);
                assert_memory_equal(buf, p.expect, 16000);
                have = 16000;
            }
            errno = 0;
            assert_int_equal(tlsnic_recv(p.h, buf, sizeof(buf), 0), -1);
            assert_int_equal(errno, EAGAIN);
        }
        assert_int_equal(write(p.r, got + p.written, avail - p.written), (ssize_t)(avail - p.written));
        for (int i = 0; i < 10 && have < 32000; i++) {
            ssize_t n = tlsnic_recv(p.h, buf, sizeof(buf), 0);
            assert_true(n > 0);
            assert_memory_equal(buf, p.expect + have, (size_t)n);
            have += (size_t)n;
        }
        assert_int_equal(have, 32000);
        pipe_close(&p);
    }
}

/* The rest of the wire, stepped in another thread after a pause: the device meets the
 * rest of the stream while the program waits in a read. */
static void *wire_late(void *arg)
{
    struct pipe *p = arg;
    usleep(30000);
    int done = 0;
    for (int round = 0; round < MAX_ROUNDS && !done; round++) {
        done = tlsnic_simwire_step(p->w) == 1;
        size_t avail;
        const uint8_t *got = tlsnic_simwire_received(p->w, &avail);
        for (int guard = 0; guard < 1000 && p->written < avail; guard++) {
            ssize_t n = write(p->r, got + p->written, avail - p->written);
            if (n > 0)
                p->written += (size_t)n;
            else
                usleep(1000);
        }
    }
    return NULL;
}

static void arriving_record_the_device_finds_bad_is_ebadmsg_not_plaintext(void **state)
{
    static uint8_t buf[TLSNIC_REC_MAX_PLAINTEXT];
    for (size_t c = 0; c < 6; c++) {
        struct pipe p;
        if (pipe_open(&p, &tg_combos[c], NULL) < 0)
            fail_msg("RX not in device mode");
        pipe_records(&p, 2, 16000, TLSNIC_CT_APPLICATION_DATA);
        size_t rl = 16000 + tlsnic_rec_key_overhead(p.peer);
        struct flip f = {.at = rl + 12000, .start = p.sd.start}; /* the second record */
        p.tamper = flip_fn;
        p.tamper_priv = &f;
        p.window = 2800;
        pipe_wire(&p, 0, 0, 0, 8);
        /* the device has met the first record and the start of the second, no more */
        size_t avail = 0;
        const uint8_t *got = NULL;
        for (int round = 0; round < MAX_ROUNDS && avail < rl + 3000; round++) {
            assert_int_equal(tlsnic_simwire_step(p.w), 0);
            got = tlsnic_simwire_received(p.w, &avail);
        }
        assert_false(f.done);
        assert_int_equal(write(p.r, got, avail), (ssize_t)avail);
        p.written = avail;
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, wire_late, &p), 0);
        assert_int_equal(tlsnic_recv(p.h, buf, sizeof(buf), 0), 16000);
        assert_memory_equal(buf, p.expect, 16000);
        errno = 0;
        assert_int_equal(tlsnic_recv(p.h, buf, sizeof(buf), 0), -1); /* waits for it whole */
        assert_int_equal(errno, EBADMSG);
        for (size_t i = 0; i < 16000; i++) /* nothing of it left in the program's buffer */
            assert_int_equal(buf[i], 0);
        pthread_join(t, NULL);
        assert_true(f.done);
        pipe_close(&p);
    }
}

static void fake_header_candidate_is_rejected_and_a_real_one_confirmed(void **state)
{
    struct tlsnic_nic_config cfg;
    tlsnic_nic_config_default(&cfg);
    cfg.rx_no_guess = 1;
    for (size_t c = 0; c < 6; c++) {
        struct pipe p;
        if (pipe_open(&p, &tg_combos[c], &cfg) < 0)
            fail_msg("RX not in device mode");
        pipe_records(&p, 10, 1000, TLSNIC_CT_APPLICATION_DATA);
        /* record 10: a fake header 2000 bytes into its body whose length reaches record 11;
         * the segment with record 10's header is lost, the one with the fake is not */
        size_t r10;
        tlsnic_simhost_stream(p.sh, &r10);
        size_t hn = 5 + tlsnic_rec_key_explicit_nonce_len(p.peer), content = 3000, at = 2000;
        size_t rl = content + tlsnic_rec_key_overhead(p.peer);
        size_t fake_len = rl - (hn + at) - 5;
        union tlsnic_crypto_info ci;
        int il = tlsnic_rec_key_export(p.peer, &ci, sizeof(ci));
        tlsnic_rec_key *probe;
        assert_int_equal(tlsnic_rec_key_new(&probe, &ci, (size_t)il), 0);
        static uint8_t zeros[3000], ks[4000], plain[3000], rec[4000];
        size_t l;
        assert_int_equal(tlsnic_rec_seal(probe, TLSNIC_CT_APPLICATION_DATA, zeros, content, ks, sizeof(ks), &l), 0);
        tlsnic_rec_key_free(probe);
        for (size_t j = 0; j < content; j++)
            plain[j] = (uint8_t)(p.expect_len + j * 7 + (j >> 9));
        const uint8_t fake[5] = {23, 3, 3, (uint8_t)(fake_len >> 8), (uint8_t)fake_len};
        for (size_t j = 0; j < 5; j++)
            plain[at + j] = fake[j] ^ ks[hn + at + j];
        assert_int_equal(tlsnic_rec_seal(p.peer, TLSNIC_CT_APPLICATION_DATA, plain, content, rec, sizeof(rec), &l), 0);
        assert_int_equal(tlsnic_simhost_append(p.sh, rec, l), 0);
        memcpy(p.expect + p.expect_len, plain, content);
        p.expect_len += content;
        pipe_records(&p, 300, 1000, TLSNIC_CT_APPLICATION_DATA); /* beyond one window */
        struct dropper dr = {.from = r10, .to = r10 + 10, .start = p.sd.start};
        p.tamper = drop_fn;
        p.tamper_priv = &dr;
        pipe_wire(&p, 0, 0, 0, 3);
        struct snap s0 = snap();
        assert_true(pipe_run(&p, MAX_ROUNDS, NULL));
        assert_int_equal(p.err, 0);
        assert_int_equal(p.got, p.expect_len);
        struct tlsnic_nic_stats st;
        assert_int_equal(tlsnic_nic_flow_stats(p.sd.nic, &p.sd.wflow, TLSNIC_DIR_RX, &st), 0);
        assert_true(st.rx_tls_resync_res_skip >= 1); /* the fake candidate, rejected */
        assert_true(st.rx_tls_resync_res_ok >= 1);   /* a real one, confirmed */
        struct snap d = delta(s0);
        printf("    %s: device-verified %llu of 311 records, %llu resyncs sent, res_ok %llu skip %llu req %llu\n",
               p.c->name, (unsigned long long)d.dev_recs, (unsigned long long)d.resyncs,
               (unsigned long long)st.rx_tls_resync_res_ok, (unsigned long long)st.rx_tls_resync_res_skip,
               (unsigned long long)st.rx_tls_resync_req_start);
        assert_true(d.resyncs >= 2);
        assert_true(d.dev_recs >= 150); /* decrypting again a window or two later */
        pipe_close(&p);
    }
}

static void tls13_keyupdate_moves_the_device_to_the_new_keys(void **state)
{
    for (size_t c = 3; c < 6; c++) {
        struct pipe p;
        if (pipe_open(&p, &tg_combos[c], NULL) < 0)
            fail_msg("RX not in device mode");
        pipe_records(&p, 40, 1400, TLSNIC_CT_APPLICATION_DATA);
        pipe_keyupdate(&p);
        pipe_records(&p, 200, 1400, TLSNIC_CT_APPLICATION_DATA);
        pipe_wire(&p, 0, 0, 0, 9);
        struct snap s0 = snap();
        assert_true(pipe_run(&p, MAX_ROUNDS, NULL));
        assert_int_equal(p.err, 0);
        assert_int_equal(p.got, p.expect_len);
        assert_int_equal(p.sd.rekeys, 1);
        struct tlsnic_nic_stats st;
        assert_int_equal(tlsnic_nic_flow_stats(p.sd.nic, &p.sd.wflow, TLSNIC_DIR_RX, &st), 0);
        assert_int_equal(st.rx_tls_rekey, 1);
        assert_int_equal(st.rx_tls_err, 0); /* nothing decrypted under the wrong key */
        struct snap d = delta(s0);
        assert_true(d.dev_recs >= 41 + 100); /* records after the switch verified too */
        pipe_close(&p);
    }
}

static void restart_hook(struct pipe *p, uint32_t round)
{
    if (round != 3)
        return;
    /* The device dies; nothing passes until it is back and the host re-added (the
     * daemon's restart fence does the same). */
    tlsnic_nic_free(p->sd.nic);
    assert_int_equal(tlsnic_nic_new(&p->sd.nic, NULL), 0);
    struct tlsnic_wire_hook hk = tlsnic_wire_hook_nic(p->sd.nic);
    tlsnic_simwire_set_hook(p->w, hk);
    assert_int_equal(tlsnic_device_readd(&p->sd.dev), 1);
}

static void device_restart_mid_stream_loses_no_byte(void **state)
{
    for (size_t c = 0; c < 6; c++) {
        struct pipe p;
        if (pipe_open(&p, &tg_combos[c], NULL) < 0)
            fail_msg("RX not in device mode");
        pipe_records(&p, 400, 1400, TLSNIC_CT_APPLICATION_DATA);
        pipe_wire(&p, 10, 0, 10, 21 + c);
        struct snap s0 = snap();
        assert_true(pipe_run(&p, MAX_ROUNDS, restart_hook));
        assert_int_equal(p.err, 0);
        assert_int_equal(p.got, p.expect_len);
        struct snap d = delta(s0);
        assert_int_equal(d.readd, 1);
        assert_true(d.sw_bytes > 0);      /* the host did what the device could not */
        assert_true(d.dev_recs >= 200);   /* and the new device decrypts again */
        pipe_close(&p);
    }
}

static void evict_hook(struct pipe *p, uint32_t round)
{
    if (round == 3)
        assert_int_equal(tlsnic_nic_evict(p->sd.nic, &p->sd.wflow, TLSNIC_DIR_RX), 0);
}

static void evicted_context_falls_back_to_software_without_losing_a_byte(void **state)
{
    for (size_t c = 0; c < 6; c++) {
        struct pipe p;
        if (pipe_open(&p, &tg_combos[c], NULL) < 0)
            fail_msg("RX not in device mode");
        pipe_records(&p, 400, 1400, TLSNIC_CT_APPLICATION_DATA);
        pipe_wire(&p, 10, 10, 10, 41 + c);
        struct snap s0 = snap();
        assert_true(pipe_run(&p, MAX_ROUNDS, evict_hook));
        assert_int_equal(p.err, 0);
        assert_int_equal(p.got, p.expect_len);
        struct snap d = delta(s0);
        assert_true(d.dev_recs > 0 && d.dev_recs < 400);
        assert_true(d.sw_bytes > 0);
        pipe_close(&p);
    }
}

/* The wire run to its end and every byte it delivered written into the socket, unread. */
static void pipe_queue_all(struct pipe *p)
{
    int done = 0;
    for (int round = 0; round < MAX_ROUNDS && !done; round++) {
        int rc = tlsnic_simwire_step(p->w);
        assert_true(rc >= 0);
        done = rc == 1;
    }
    assert_true(done);
    size_t avail;
    const uint8_t *got = tlsnic_simwire_received(p->w, &avail);
    for (int guard = 0; guard < 1000 && p->written < avail; guard++) {
        ssize_t n = write(p->r, got + p->written, avail - p->written);
        assert_true(n > 0);
        p->written += (size_t)n;
    }
}

/*
 * MSG_PEEK goes on across records in device mode too (the socket layer's peek_ahead, as the
 * kernel's rx_list): the records after the one in hand, verified by the device or restored
 * and opened in software, are looked at on a copy of the reading, which a peek leaves where
 * it was: the reads after it get the same bytes, and the device's verdicts still count.
 */
static void msg_peek_goes_on_across_records_the_device_decrypted(void **state)
{
    static uint8_t buf[65536];
    const uint16_t losses[2] = {0, 50};
    for (size_t c = 0; c < 6; c++) {
        for (size_t l = 0; l < 2; l++) {
            struct pipe p;
            if (pipe_open(&p, &tg_combos[c], NULL) < 0)
                fail_msg("RX not in device mode");
            pipe_records(&p, 30, 1400, TLSNIC_CT_APPLICATION_DATA);
            pipe_wire(&p, losses[l], l ? 10 : 0, l ? 10 : 0, 61 + c * 2 + l);
            pipe_queue_all(&p);
            struct snap s0 = snap();
            ssize_t n = tlsnic_recv(p.h, buf, 100, MSG_DONTWAIT); /* a record in hand */
            assert_int_equal(n, 100);
            assert_memory_equal(buf, p.expect, 100);
            n = tlsnic_recv(p.h, buf, 20000, MSG_PEEK | MSG_DONTWAIT);
            assert_int_equal(n, 20000); /* the rest of the record in hand, and 13 more */
            assert_memory_equal(buf, p.expect + 100, 20000);
            size_t got = 100;
            for (int guard = 0; guard < 1000 && got < p.expect_len; guard++) {
                n = tlsnic_recv(p.h, buf, sizeof(buf), MSG_DONTWAIT);
                assert_true(n > 0);
                assert_memory_equal(buf, p.expect + got, (size_t)n);
                got += (size_t)n;
            }
            assert_int_equal(got, p.expect_len);
            if (l == 0) /* a clean wire: every record the device's, the peeks included */
                assert_int_equal(delta(s0).sw_bytes, 0);
            pipe_close(&p);
        }
    }
}

/* The same device with a release op (as tlsnicd has): close ends RX with one release. */
static int sd_releases, sd_release_dir;

static int sd_release(struct tlsnic_dev *dev, int sockfd, const struct tlsnic_flow *flow,
                      enum tlsnic_dir dir, unsigned flags)
{
    (void)sockfd;
    (void)flow;
    (void)flags;
    struct simdev *d = dev->priv;
    sd_releases++;
    sd_release_dir = (int)dir;
    return tlsnic_nic_del(d->nic, &d->wflow, dir);
}

static int sd_del_counted_calls;

static int sd_del_counted(struct tlsnic_dev *dev, int sockfd, const struct tlsnic_flow *flow,
                          enum tlsnic_dir dir)
{
    sd_del_counted_calls++;
    return sd_del(dev, sockfd, flow, dir);
}

static const struct tlsnic_dev_ops sd_release_ops = {
    .name = "in-process model, with release", .add = sd_add, .del = sd_del_counted,
    .resync = sd_resync, .flow_flags = sd_flags, .rekey = sd_rekey, .release = sd_release,
    .caps = TLSNIC_DEV_CAP_RX,
};

static void close_releases_the_rx_context_at_once(void **state)
{
    struct pipe p;
    if (pipe_open(&p, &tg_combos[3], NULL) < 0)
        fail_msg("RX not in device mode");
    p.sd.dev.ops = &sd_release_ops; /* (the socket holds a pointer to p.sd.dev) */
    sd_releases = sd_del_counted_calls = 0;
    pipe_records(&p, 5, 1400, TLSNIC_CT_APPLICATION_DATA);
    pipe_wire(&p, 0, 0, 0, 9);
    pipe_queue_all(&p);
    assert_int_equal(tlsnic_nic_flow_count(p.sd.nic), 1);
    tlsnic_close(p.h); /* bytes left unread: the connection resets; RX has nothing to send */
    p.h = -1;
    assert_int_equal(sd_releases, 1);
    assert_int_equal(sd_release_dir, TLSNIC_DIR_RX);
    assert_int_equal(sd_del_counted_calls, 0);
    assert_int_equal(tlsnic_nic_flow_count(p.sd.nic), 0);
    assert_int_equal(tlsnic_close_pending(2000), 0); /* nothing left for the closer */
    pipe_close(&p);
}

/*
 * A forked child that inherited a socket in RX device mode: its close forgets its copy (no
 * release or del of the parent's context: the child's copy of the device still holds the
 * flow), and it has no RX context to add again after a device restart (a child that did
 * would take the parent's flow over). The parent reads on, byte-exact, through the device.
 */
static void forked_child_leaves_the_parents_rx_context_alone(void **state)
{
    struct pipe p;
    if (pipe_open(&p, &tg_combos[0], NULL) < 0)
        fail_msg("RX not in device mode");
    pipe_records(&p, 60, 1400, TLSNIC_CT_APPLICATION_DATA);
    pipe_wire(&p, 0, 0, 0, 13);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int bad = 0;
        uint8_t b[16];
        if (tlsnic_recv(p.h, b, sizeof(b), MSG_DONTWAIT) != -1 || errno != EBADFD)
            bad |= 1; /* the record state is the parent's */
        if (tlsnic_close(p.h) != 0)
            bad |= 2;
        if (tlsnic_nic_flow_count(p.sd.nic) != 1)
            bad |= 4; /* the child asked (its copy of) the device to let go */
        if (tlsnic_device_readd(&p.sd.dev) != 0)
            bad |= 8; /* the child would add the parent's context again */
        _exit(bad);
    }
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    struct snap s0 = snap();
    assert_true(pipe_run(&p, MAX_ROUNDS, NULL));
    assert_int_equal(p.err, 0);
    assert_int_equal(p.got, p.expect_len);
    assert_int_equal(p.sd.adds, 1);
    assert_int_equal(delta(s0).dev_recs, 60);
    pipe_close(&p);
}

int main(void)
{
    if (geteuid() != 0) {
        printf("SKIP: device mode reads TCP sequence numbers with TCP_REPAIR (root)\n");
        return 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(rx_goes_to_a_device_that_decrypts_and_mode_says_device),
        cmocka_unit_test(download_is_decrypted_by_the_device_byte_exact_all_six),
        cmocka_unit_test(download_is_byte_exact_under_loss_reordering_and_duplication),
        cmocka_unit_test(queued_verified_records_come_in_one_peek_and_one_discard),
        cmocka_unit_test(batched_reads_over_odd_iovecs_and_between_control_records_are_byte_exact),
        cmocka_unit_test(blocking_read_takes_an_arriving_record_straight_into_the_buffer),
        cmocka_unit_test(flipped_bit_is_ebadmsg_after_every_good_byte),
        cmocka_unit_test(arriving_record_cut_short_by_a_receive_timeout_loses_no_byte),
        cmocka_unit_test(arriving_record_the_device_finds_bad_is_ebadmsg_not_plaintext),
        cmocka_unit_test(fake_header_candidate_is_rejected_and_a_real_one_confirmed),
        cmocka_unit_test(tls13_keyupdate_moves_the_device_to_the_new_keys),
        cmocka_unit_test(device_restart_mid_stream_loses_no_byte),
        cmocka_unit_test(evicted_context_falls_back_to_software_without_losing_a_byte),
        cmocka_unit_test(msg_peek_goes_on_across_records_the_device_decrypted),
        cmocka_unit_test(close_releases_the_rx_context_at_once),
        cmocka_unit_test(forked_child_leaves_the_parents_rx_context_alone),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
