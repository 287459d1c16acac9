/*
 * The daemon's data path, driven over SOCK_SEQPACKET socketpairs standing in for the two
 * TUN fds (same framing: one datagram = vnet header + frame). Frames pass unchanged with
 * their virtio-net header, the hook sees and may rewrite or drop each one, faults follow
 * the seed, and the captures hold one pcap record per frame.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "tlsnic/fence.h"
#include "tlsnic/fwd.h"
#include "tlsnic/tun.h"

#define VNET TLSNIC_TUN_VNET_HDR_LEN
#define FRAMES 50

struct fixture {
    int host[2]; /* [0] to the forwarder, [1] the "host kernel" end */
    int wire[2];
    tlsnic_fwd *fwd;
    char pcap_dir[64];
    char pcap_host[128];
    char pcap_wire[128];
    /* hook observations */
    int hook_calls[2];
    int hook_verdict;
    uint8_t hook_xor;
    int hook_sleep_us; /* > 0: the hook sleeps (the thread stops running, as when preempted) */
    int hook_spin_us;  /* > 0: the hook computes this long */
};

static uint8_t frame_buf[VNET + TLSNIC_FWD_MAX_FRAME + 1];

static int hook(void *ctx, int direction, uint8_t *frame, size_t len, struct virtio_net_hdr *vh)
{
    struct fixture *f = ctx;
    assert_true(direction == TLSNIC_FWD_TO_WIRE || direction == TLSNIC_FWD_TO_HOST);
    assert_ptr_equal((uint8_t *)vh + VNET, frame);
    f->hook_calls[direction]++;
    for (size_t i = 0; i < len; i++)
        frame[i] ^= f->hook_xor;
    if (f->hook_sleep_us > 0) {
        struct timespec nap = {.tv_nsec = (long)f->hook_sleep_us * 1000};
        nanosleep(&nap, NULL);
    }
    if (f->hook_spin_us > 0) {
        struct timespec t0, t;
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t0);
        do
            clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
        while ((t.tv_sec - t0.tv_sec) * 1000000 + (t.tv_nsec - t0.tv_nsec) / 1000 < f->hook_spin_us);
    }
    return f->hook_verdict;
}

static void seqpacket_pair(int sv[2])
{
    assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
    assert_int_equal(fcntl(sv[0], F_SETFL, O_NONBLOCK), 0);
    assert_int_equal(fcntl(sv[1], F_SETFL, O_NONBLOCK), 0);
    int size = 4 << 20;
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
    setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    seqpacket_pair(f->host);
    seqpacket_pair(f->wire);
    snprintf(f->pcap_dir, sizeof(f->pcap_dir), "/tmp/tlsnic-fwd-test.XXXXXX");
    assert_non_null(mkdtemp(f->pcap_dir));
    snprintf(f->pcap_host, sizeof(f->pcap_host), "%s/host.pcap", f->pcap_dir);
    snprintf(f->pcap_wire, sizeof(f->pcap_wire), "%s/wire.pcap", f->pcap_dir);
    *state = f;
    return 0;
}

static void start(struct fixture *f, const struct tlsnic_fault_cfg *faults, int with_hook)
{
    struct tlsnic_fwd_config cfg = {
        .host_fd = f->host[0],
        .wire_fd = f->wire[0],
        .on_frame = with_hook ? hook : NULL,
        .hook_ctx = f,
        .pcap_host_path = f->pcap_host,
        .pcap_wire_path = f->pcap_wire,
    };
    if (faults != NULL)
        cfg.faults = *faults;
    assert_int_equal(tlsnic_fwd_new(&f->fwd, &cfg), 0);
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    tlsnic_fwd_free(f->fwd);
    close(f->host[0]);
    close(f->host[1]);
    close(f->wire[0]);
    close(f->wire[1]);
    unlink(f->pcap_host);
    unlink(f->pcap_wire);
    rmdir(f->pcap_dir);
    free(f);
    return 0;
}

/* Runs the forwarder until it has been idle for idle_ms (bounded: 200 rounds). */
static void pump(struct fixture *f, int idle_ms)
{
    for (int round = 0; round < 200; round++) {
        struct pollfd pfd[2];
        int timeout = tlsnic_fwd_poll_setup(f->fwd, pfd);
        int ready = poll(pfd, 2, timeout >= 0 && timeout < idle_ms ? timeout : idle_ms);
        assert_true(ready >= 0);
        int n = tlsnic_fwd_process(f->fwd, pfd);
        assert_true(n >= 0);
        if (ready == 0 && tlsnic_fwd_poll_setup(f->fwd, pfd) < 0)
            return;
    }
    fail_msg("forwarder never went idle");
}

/* A frame whose first payload bytes carry its number, after a plain (non-GSO) header. */
static size_t make_frame(uint8_t *buf, uint32_t id, size_t l3_len)
{
    memset(buf, 0, VNET);
    for (size_t i = 0; i < l3_len; i++)
        buf[VNET + i] = (uint8_t)(i * 7 + id);
    memcpy(buf + VNET, &id, sizeof(id));
    return VNET + l3_len;
}

static void send_frame(int fd, const uint8_t *buf, size_t len)
{
    assert_int_equal(write(fd, buf, len), (ssize_t)len);
}

/* Receives every frame waiting on fd; ids[] gets their numbers in arrival order. */
static int receive_ids(int fd, uint32_t *ids, int cap)
{
    int n = 0;
    for (;;) {
        ssize_t r = read(fd, frame_buf, sizeof(frame_buf));
        if (r < 0) {
            assert_int_equal(errno, EAGAIN);
            return n;
        }
        assert_true(r >= VNET + 4);
        assert_true(n < cap);
        memcpy(&ids[n++], frame_buf + VNET, 4);
    }
}

/* No frame reached the wire's end. */
static void wire_gets_nothing(struct fixture *f)
{
    uint32_t ids[1];
    assert_int_equal(receive_ids(f->wire[1], ids, 1), 0);
}

/* The forwarder's counters now. */
static struct tlsnic_fwd_stats fwd_stats(struct fixture *f)
{
    struct tlsnic_fwd_stats st;
    tlsnic_fwd_stats(f->fwd, &st);
    return st;
}

static void send_numbered(int fd, int count)
{
    static uint8_t buf[VNET + 100];
    for (int i = 0; i < count; i++)
        send_frame(fd, buf, make_frame(buf, (uint32_t)i, 100));
}

static void gso_frame_passes_unchanged_with_its_vnet_header(void **state)
{
    struct fixture *f = *state;
    start(f, NULL, 0);
    static uint8_t in[VNET + 60000];
    make_frame(in, 1, 60000);
    struct virtio_net_hdr vh = {.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM,
                                .gso_type = VIRTIO_NET_HDR_GSO_TCPV4, .hdr_len = 52,
                                .gso_size = 1448, .csum_start = 20, .csum_offset = 16};
    memcpy(in, &vh, VNET);
    send_frame(f->host[1], in, sizeof(in));
    pump(f, 20);
    ssize_t r = read(f->wire[1], frame_buf, sizeof(frame_buf));
    assert_int_equal(r, sizeof(in));
    assert_memory_equal(frame_buf, in, sizeof(in));
    struct tlsnic_fwd_stats st = fwd_stats(f);
    assert_int_equal(st.dir[TLSNIC_FWD_TO_WIRE].gso_frames, 1);
    assert_int_equal(st.dir[TLSNIC_FWD_TO_WIRE].csum_partial, 1);
    assert_int_equal(st.dir[TLSNIC_FWD_TO_WIRE].max_frame, 60000);
}

static void frames_from_the_wire_reach_the_host_in_order(void **state)
{
    struct fixture *f = *state;
    start(f, NULL, 0);
    send_numbered(f->wire[1], FRAMES);
    pump(f, 20);
    uint32_t ids[FRAMES + 1];
    assert_int_equal(receive_ids(f->host[1], ids, FRAMES + 1), FRAMES);
    for (uint32_t i = 0; i < FRAMES; i++)
        assert_int_equal(ids[i], i);
}

static void hook_rewrites_frames_in_place_in_both_directions(void **state)
{
    struct fixture *f = *state;
    f->hook_xor = 0xff;
    start(f, NULL, 1);
    static uint8_t in[VNET + 100];
    size_t len = make_frame(in, 3, 100);
    send_frame(f->host[1], in, len);
    send_frame(f->wire[1], in, len);
    pump(f, 20);
    for (int side = 0; side < 2; side++) {
        int fd = side == 0 ? f->wire[1] : f->host[1];
        assert_int_equal(read(fd, frame_buf, sizeof(frame_buf)), (ssize_t)len);
        assert_memory_equal(frame_buf, in, VNET); /* header untouched by this hook */
        for (size_t i = VNET; i < len; i++)
            assert_int_equal(frame_buf[i], in[i] ^ 0xff);
    }
    assert_int_equal(f->hook_calls[TLSNIC_FWD_TO_WIRE], 1);
    assert_int_equal(f->hook_calls[TLSNIC_FWD_TO_HOST], 1);
}

/*
 * The hook's time is counted as run time (the device model's CPU): time in which the
 * thread did not run (here the hook sleeps, as when the daemon is preempted by the peer's
 * receiver on its core) stays out of hook_ns and in hook_wall_ns; time it computes is in
 * both.
 */
static void hook_time_counts_only_while_the_thread_runs(void **state)
{
    struct fixture *f = *state;
    f->hook_sleep_us = 2000;
    f->hook_spin_us = 200;
    start(f, NULL, 1);
    send_numbered(f->host[1], 10);
    pump(f, 50);
    assert_int_equal(f->hook_calls[TLSNIC_FWD_TO_WIRE], 10);
    struct tlsnic_fwd_stats st = fwd_stats(f);
    const struct tlsnic_fwd_dir_stats *d = &st.dir[TLSNIC_FWD_TO_WIRE];
    print_message("hook run time %.2f ms, wall %.2f ms (10 frames: 2 ms asleep, 0.2 ms busy each)\n",
                  (double)d->hook_ns / 1e6, (double)d->hook_wall_ns / 1e6);
    assert_true(d->hook_wall_ns >= 10 * 2200000ull);            /* the sleeps are on the wall */
    assert_true(d->hook_ns >= 10 * 200000ull * 9 / 10);          /* the computing is counted */
    assert_true(d->hook_ns < d->hook_wall_ns / 3);               /* the sleeps are not */
}

static void hook_drop_keeps_the_frame_off_the_wire(void **state)
{
    struct fixture *f = *state;
    f->hook_verdict = TLSNIC_FRAME_DROP;
    start(f, NULL, 1);
    send_numbered(f->host[1], 3);
    pump(f, 20);
    wire_gets_nothing(f);
    struct tlsnic_fwd_stats st = fwd_stats(f);
    assert_int_equal(st.dir[TLSNIC_FWD_TO_WIRE].hook_drops, 3);
}

static void hook_error_drops_and_is_counted_apart(void **state)
{
    struct fixture *f = *state;
    f->hook_verdict = -ENOMEM;
    start(f, NULL, 1);
    send_numbered(f->host[1], 2);
    pump(f, 20);
    wire_gets_nothing(f);
    struct tlsnic_fwd_stats st = fwd_stats(f);
    assert_int_equal(st.dir[TLSNIC_FWD_TO_WIRE].hook_errors, 2);
    assert_int_equal(st.dir[TLSNIC_FWD_TO_WIRE].hook_drops, 0);
}

static void full_loss_delivers_nothing(void **state)
{
    struct fixture *f = *state;
    struct tlsnic_fault_cfg fc = {.loss_ppm = 1000000, .seed = 1};
    start(f, &fc, 0);
    send_numbered(f->host[1], FRAMES);
    pump(f, 20);
    wire_gets_nothing(f);
    struct tlsnic_fwd_stats st = fwd_stats(f);
    assert_int_equal(st.dir[TLSNIC_FWD_TO_WIRE].fault_lost, FRAMES);
}

static void full_duplication_delivers_every_frame_twice(void **state)
{
    struct fixture *f = *state;
    struct tlsnic_fault_cfg fc = {.dup_ppm = 1000000, .seed = 1};
    start(f, &fc, 0);
    send_numbered(f->host[1], 10);
    pump(f, 20);
    uint32_t ids[21];
    assert_int_equal(receive_ids(f->wire[1], ids, 21), 20);
    for (uint32_t i = 0; i < 20; i++)
        assert_int_equal(ids[i], i / 2);
}

static void reordering_delivers_everything_but_not_in_order(void **state)
{
    struct fixture *f = *state;
    struct tlsnic_fault_cfg fc = {.reorder_ppm = 300000, .seed = 3, .reorder_hold_us = 5000};
    start(f, &fc, 0);
    send_numbered(f->host[1], FRAMES);
    pump(f, 30); /* longer than the hold time: held frames leave */
    uint32_t ids[FRAMES + 1];
    assert_int_equal(receive_ids(f->wire[1], ids, FRAMES + 1), FRAMES);
    int seen[FRAMES] = {0}, out_of_order = 0;
    for (int i = 0; i < FRAMES; i++) {
        assert_true(ids[i] < FRAMES);
        seen[ids[i]]++;
        out_of_order += ids[i] != (uint32_t)i;
    }
    for (int i = 0; i < FRAMES; i++)
        assert_int_equal(seen[i], 1);
    assert_true(out_of_order > 0);
}

/* Which of FRAMES frames survive 30 % loss with this seed, as a bit mask. */
static uint64_t survivors(struct fixture *f, uint64_t seed)
{
    struct tlsnic_fault_cfg fc = {.loss_ppm = 300000, .seed = seed};
    tlsnic_fwd_free(f->fwd);
    start(f, &fc, 0);
    send_numbered(f->host[1], FRAMES);
    pump(f, 20);
    uint32_t ids[FRAMES];
    int n = receive_ids(f->wire[1], ids, FRAMES);
    uint64_t mask = 0;
    for (int i = 0; i < n; i++)
        mask |= 1ull << ids[i];
    return mask;
}

static void the_same_seed_loses_the_same_frames(void **state)
{
    struct fixture *f = *state;
    uint64_t a = survivors(f, 5), b = survivors(f, 5), c = survivors(f, 6);
    assert_true(a == b);
    assert_true(a != c);
    assert_true(a != 0 && a != (1ull << FRAMES) - 1);
}

static void faults_apply_only_to_the_selected_direction(void **state)
{
    struct fixture *f = *state;
    struct tlsnic_fault_cfg fc = {.loss_ppm = 1000000, .dirs = 1u << TLSNIC_FWD_TO_WIRE};
    start(f, &fc, 0);
    send_numbered(f->wire[1], 5);
    pump(f, 20);
    uint32_t ids[6];
    assert_int_equal(receive_ids(f->host[1], ids, 6), 5);
}

static void the_device_sees_only_what_survives_the_wire_towards_the_host(void **state)
{
    struct fixture *f = *state;
    struct tlsnic_fault_cfg fc = {.loss_ppm = 1000000};
    start(f, &fc, 1);
    send_numbered(f->wire[1], 5); /* lost on the wire, before the device */
    send_numbered(f->host[1], 5); /* seen by the device, then lost on the wire */
    pump(f, 20);
    assert_int_equal(f->hook_calls[TLSNIC_FWD_TO_HOST], 0);
    assert_int_equal(f->hook_calls[TLSNIC_FWD_TO_WIRE], 5);
}

static void short_and_oversized_frames_are_dropped_and_counted(void **state)
{
    struct fixture *f = *state;
    start(f, NULL, 0);
    uint8_t tiny[VNET] = {0};
    send_frame(f->host[1], tiny, sizeof(tiny));
    static uint8_t huge[VNET + TLSNIC_FWD_MAX_FRAME + 100];
    send_frame(f->host[1], huge, sizeof(huge));
    pump(f, 20);
    wire_gets_nothing(f);
    struct tlsnic_fwd_stats st = fwd_stats(f);
    assert_int_equal(st.dir[TLSNIC_FWD_TO_WIRE].bad_frames, 2);
}

static void captures_hold_one_raw_ip_record_per_frame(void **state)
{
    struct fixture *f = *state;
    struct tlsnic_fault_cfg fc = {.dup_ppm = 1000000, .dirs = 1u << TLSNIC_FWD_TO_WIRE};
    start(f, &fc, 0);
    send_numbered(f->host[1], 3); /* host capture: 3; wire capture: 6 (duplicated) */
    pump(f, 20);
    tlsnic_fwd_free(f->fwd); /* flushes */
    f->fwd = NULL;
    const char *paths[2] = {f->pcap_host, f->pcap_wire};
    const int expected[2] = {3, 6};
    for (int p = 0; p < 2; p++) {
        FILE *in = fopen(paths[p], "r");
        assert_non_null(in);
        uint32_t fh[6];
        assert_int_equal(fread(fh, sizeof(fh), 1, in), 1);
        assert_int_equal(fh[0], 0xa1b2c3d4);
        assert_int_equal(fh[5], 101); /* LINKTYPE_RAW */
        int records = 0;
        uint32_t rh[4];
        while (fread(rh, sizeof(rh), 1, in) == 1) {
            assert_int_equal(rh[2], 100);
            assert_int_equal(rh[3], 100);
            assert_int_equal(fseek(in, rh[2], SEEK_CUR), 0);
            records++;
        }
        assert_int_equal(records, expected[p]);
        fclose(in);
    }
}

/* An IPv4 TCP frame 198.18.0.1:sport -> 198.18.0.2:443 with payload_len bytes. */
static size_t tcp4_frame(uint8_t *buf, uint16_t sport, size_t payload_len)
{
    size_t total = 40 + payload_len;
    memset(buf, 0, VNET + total);
    uint8_t *ip = buf + VNET;
    const uint8_t head[20] = {0x45, 0, (uint8_t)(total >> 8), (uint8_t)total, 0, 0, 0x40, 0,
                              64, 6, 0, 0, 198, 18, 0, 1, 198, 18, 0, 2};
    memcpy(ip, head, sizeof(head));
    ip[20] = (uint8_t)(sport >> 8);
    ip[21] = (uint8_t)sport;
    ip[22] = 443 >> 8;
    ip[23] = 443 & 0xff;
    ip[32] = 5 << 4;
    return VNET + total;
}

static void a_fenced_flows_payload_is_dropped_before_the_device_sees_it(void **state)
{
    struct fixture *f = *state;
    tlsnic_fence *fence;
    assert_int_equal(tlsnic_fence_new(&fence, 4), 0);
    struct tlsnic_flow flow = {.family = AF_INET, .local = {198, 18, 0, 1},
                               .remote = {198, 18, 0, 2}, .local_port = 40000, .remote_port = 443};
    assert_int_equal(tlsnic_fence_add(fence, &flow), 0);
    struct tlsnic_fwd_config cfg = {.host_fd = f->host[0], .wire_fd = f->wire[0],
                                    .on_frame = hook, .hook_ctx = f,
                                    .to_wire_gate = tlsnic_fence_gate, .gate_ctx = fence};
    assert_int_equal(tlsnic_fwd_new(&f->fwd, &cfg), 0);
    static uint8_t buf[VNET + 200];
    send_frame(f->host[1], buf, tcp4_frame(buf, 40000, 100)); /* fenced payload */
    send_frame(f->host[1], buf, tcp4_frame(buf, 40000, 0));   /* its pure ACK */
    send_frame(f->host[1], buf, tcp4_frame(buf, 40001, 100)); /* another flow */
    pump(f, 20);
    int arrived = 0;
    while (read(f->wire[1], frame_buf, sizeof(frame_buf)) > 0)
        arrived++;
    assert_int_equal(arrived, 2);
    assert_int_equal(f->hook_calls[TLSNIC_FWD_TO_WIRE], 2);
    struct tlsnic_fwd_stats st = fwd_stats(f);
    assert_int_equal(st.dir[TLSNIC_FWD_TO_WIRE].fence_drops, 1);
    tlsnic_fwd_free(f->fwd);
    f->fwd = NULL;
    tlsnic_fence_free(fence);
}

static uint16_t be16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint16_t csum_fold(uint32_t acc)
{
    while (acc >> 16)
        acc = (acc & 0xffff) + (acc >> 16);
    return (uint16_t)acc;
}

static uint32_t sum_bytes(const uint8_t *p, size_t len)
{
    uint32_t acc = 0;
    for (size_t i = 0; i + 1 < len; i += 2)
        acc += (uint32_t)(p[i] << 8 | p[i + 1]);
    if (len & 1)
        acc += (uint32_t)p[len - 1] << 8;
    return acc;
}

/* A TSO super-frame as the kernel hands it: IPv4 or IPv6, TCP seq 1000, PSH|ACK|CWR. */
static size_t gso_frame(uint8_t *buf, int v6, size_t payload, uint16_t mss)
{
    size_t ip = v6 ? 40 : 20, total = ip + 20 + payload;
    memset(buf, 0, VNET + total);
    struct virtio_net_hdr vh = {.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM,
                                .gso_type = v6 ? VIRTIO_NET_HDR_GSO_TCPV6 : VIRTIO_NET_HDR_GSO_TCPV4,
                                .hdr_len = (uint16_t)(ip + 20), .gso_size = mss,
                                .csum_start = (uint16_t)ip, .csum_offset = 16};
    memcpy(buf, &vh, VNET);
    uint8_t *f = buf + VNET;
    if (v6) {
        f[0] = 0x60;
        f[4] = (uint8_t)((total - 40) >> 8);
        f[5] = (uint8_t)(total - 40);
        f[6] = 6;
        f[7] = 64;
        f[8] = 0x20, f[9] = 0x01, f[10] = 0x0d, f[11] = 0xb8, f[23] = 1;
        f[24] = 0x20, f[25] = 0x01, f[26] = 0x0d, f[27] = 0xb8, f[39] = 2;
    } else {
        const uint8_t head[20] = {0x45, 0, (uint8_t)(total >> 8), (uint8_t)total, 0x12, 0x34, 0x40, 0,
                                  64, 6, 0, 0, 198, 18, 0, 1, 198, 18, 0, 2};
        memcpy(f, head, sizeof(head));
    }
    uint8_t *tcp = f + ip;
    tcp[0] = 0x9c, tcp[1] = 0x40, tcp[2] = 0x01, tcp[3] = 0xbb;
    tcp[7] = 0xe8, tcp[6] = 0x03; /* seq 1000 */
    tcp[12] = 5 << 4;
    tcp[13] = 0x80 | 0x18; /* CWR PSH ACK */
    for (size_t i = 0; i < payload; i++)
        tcp[20 + i] = (uint8_t)(i * 13 + 1);
    return VNET + total;
}

static void check_segments(struct fixture *f, int v6)
{
    static uint8_t in[VNET + 40 + 20 + 3500];
    size_t len = gso_frame(in, v6, 3500, 1000);
    send_frame(f->host[1], in, len);
    pump(f, 20);
    size_t ip = v6 ? 40 : 20, got_payload = 0;
    static uint8_t payload[3500];
    for (unsigned i = 0; i < 4; i++) {
        ssize_t r = read(f->wire[1], frame_buf, sizeof(frame_buf));
        size_t want = i < 3 ? 1000 : 500;
        assert_int_equal(r, (ssize_t)(VNET + ip + 20 + want));
        struct virtio_net_hdr vh;
        memcpy(&vh, frame_buf, VNET);
        assert_int_equal(vh.gso_type, VIRTIO_NET_HDR_GSO_NONE);
        assert_int_equal(vh.flags, VIRTIO_NET_HDR_F_NEEDS_CSUM);
        assert_int_equal(vh.csum_start, ip);
        assert_int_equal(vh.csum_offset, 16);
        const uint8_t *seg = frame_buf + VNET, *tcp = seg + ip;
        if (v6) {
            assert_int_equal(be16(seg + 4), 20 + want);
        } else {
            assert_int_equal(be16(seg + 2), 20 + 20 + want);
            assert_int_equal(be16(seg + 4), 0x1234 + i);
            assert_int_equal(csum_fold(sum_bytes(seg, 20)), 0xffff); /* valid header sum */
        }
        assert_int_equal(be32(tcp + 4), 1000 + 1000 * i);
        assert_int_equal((tcp[13] & 0x80) != 0, i == 0); /* CWR first only */
        assert_int_equal((tcp[13] & 0x08) != 0, i == 3); /* PSH last only */
        uint32_t pseudo = v6 ? sum_bytes(seg + 8, 32) : sum_bytes(seg + 12, 8);
        assert_int_equal(be16(tcp + 16), csum_fold(pseudo + 6 + (uint32_t)(20 + want)));
        memcpy(payload + got_payload, tcp + 20, want);
        got_payload += want;
    }
    assert_int_equal(read(f->wire[1], frame_buf, sizeof(frame_buf)), -1);
    assert_memory_equal(payload, in + VNET + ip + 20, sizeof(payload));
    struct tlsnic_fwd_stats st = fwd_stats(f);
    assert_int_equal(st.dir[TLSNIC_FWD_TO_WIRE].segmented_frames, 1);
    assert_int_equal(st.dir[TLSNIC_FWD_TO_WIRE].wire_segments, 4);
}

static void start_segmenting(struct fixture *f, const struct tlsnic_fault_cfg *faults)
{
    struct tlsnic_fwd_config cfg = {.host_fd = f->host[0], .wire_fd = f->wire[0],
                                    .on_frame = hook, .hook_ctx = f, .segment_on_wire = 1};
    if (faults != NULL)
        cfg.faults = *faults;
    assert_int_equal(tlsnic_fwd_new(&f->fwd, &cfg), 0);
}

static void an_ipv4_super_frame_reaches_the_wire_as_mss_segments(void **state)
{
    struct fixture *f = *state;
    start_segmenting(f, NULL);
    check_segments(f, 0);
    assert_int_equal(f->hook_calls[TLSNIC_FWD_TO_WIRE], 1); /* the device saw the super-frame */
}

static void an_ipv6_super_frame_reaches_the_wire_as_mss_segments(void **state)
{
    struct fixture *f = *state;
    start_segmenting(f, NULL);
    check_segments(f, 1);
}

static void the_device_sees_wire_segments_towards_the_host(void **state)
{
    struct fixture *f = *state;
    start_segmenting(f, NULL);
    static uint8_t in[VNET + 20 + 20 + 3500];
    send_frame(f->wire[1], in, gso_frame(in, 0, 3500, 1000));
    pump(f, 20);
    assert_int_equal(f->hook_calls[TLSNIC_FWD_TO_HOST], 4);
}

static void faults_hit_single_segments(void **state)
{
    struct fixture *f = *state;
    struct tlsnic_fault_cfg fc = {.loss_ppm = 1000000};
    start_segmenting(f, &fc);
    static uint8_t in[VNET + 20 + 20 + 3500];
    send_frame(f->host[1], in, gso_frame(in, 0, 3500, 1000));
    pump(f, 20);
    struct tlsnic_fwd_stats st = fwd_stats(f);
    assert_int_equal(st.dir[TLSNIC_FWD_TO_WIRE].fault_lost, 4);
}

static void bad_fault_rates_are_refused(void **state)
{
    struct fixture *f = *state;
    struct tlsnic_fwd_config cfg = {.host_fd = f->host[0], .wire_fd = f->wire[0]};
    cfg.faults.loss_ppm = 1000001;
    tlsnic_fwd *fwd;
    assert_int_equal(tlsnic_fwd_new(&fwd, &cfg), -EINVAL);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(gso_frame_passes_unchanged_with_its_vnet_header),
        T(frames_from_the_wire_reach_the_host_in_order),
        T(hook_rewrites_frames_in_place_in_both_directions),
        T(hook_time_counts_only_while_the_thread_runs),
        T(hook_drop_keeps_the_frame_off_the_wire),
        T(hook_error_drops_and_is_counted_apart),
        T(full_loss_delivers_nothing),
        T(full_duplication_delivers_every_frame_twice),
        T(reordering_delivers_everything_but_not_in_order),
        T(the_same_seed_loses_the_same_frames),
        T(faults_apply_only_to_the_selected_direction),
        T(the_device_sees_only_what_survives_the_wire_towards_the_host),
        T(short_and_oversized_frames_are_dropped_and_counted),
        T(captures_hold_one_raw_ip_record_per_frame),
        T(a_fenced_flows_payload_is_dropped_before_the_device_sees_it),
        T(an_ipv4_super_frame_reaches_the_wire_as_mss_segments),
        T(an_ipv6_super_frame_reaches_the_wire_as_mss_segments),
        T(the_device_sees_wire_segments_towards_the_host),
        T(faults_hit_single_segments),
        T(bad_fault_rates_are_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
