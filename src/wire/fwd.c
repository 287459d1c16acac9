/* The daemon's data path (see fwd.h). */
#include "tlsnic/fwd.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fault.h"
#include "pcap.h"
#include "segment.h"
#include "tlsnic/tun.h"

#define VNET_LEN TLSNIC_TUN_VNET_HDR_LEN
/* One byte more than the largest frame, so a read that fills the buffer means truncation. */
#define BUF_CAP (VNET_LEN + TLSNIC_FWD_MAX_FRAME + 1)
#define BURST 64          /* frames read per side per process call: fairness between sides */
#define HOLD_SLOTS 16     /* frames held back for reordering, per direction */
#define DEFAULT_HOLD_US 2000u

struct held_frame {
    uint8_t *buf;         /* vnet header + frame; NULL = free slot */
    size_t len;
    uint32_t countdown;   /* later frames still to overtake this one */
    uint64_t due_ns;      /* leaves at this time at the latest */
};

struct fwd_side {
    enum tlsnic_fwd_dir dir;
    int in_fd;
    int out_fd;
    struct tlsnic_pcap *pcap_in;  /* capture at the TUN this side reads */
    struct tlsnic_pcap *pcap_out; /* capture at the TUN this side writes */
    uint8_t *work;                /* buffer the next read goes into */
    uint8_t *seg;                 /* buffer a wire segment is cut into */
    uint8_t *spare[HOLD_SLOTS];   /* free buffers (for holds and duplicate copies) */
    size_t n_spare;
    struct held_frame held[HOLD_SLOTS];
    size_t n_held;
    bool faults_on;
    struct tlsnic_prng prng;
    struct tlsnic_fwd_dir_stats *st;
};

struct tlsnic_fwd {
    struct tlsnic_fwd_config cfg;
    uint64_t pending_hook_ns[2]; /* wall time in hooks since the process call began */
    struct fwd_side side[2];
    struct tlsnic_pcap pcap_host;
    struct tlsnic_pcap pcap_wire;
    struct tlsnic_fwd_stats stats;
    uint64_t hold_ns;
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Below this much hook time in one process call, preemption inside it is too unlikely to be
 * worth two clock system calls: the wall time counts as it is. */
#define HOOK_SETTLE_MIN_NS 50000u

/*
 * Hook time of one process call, as run time: if the thread ran only cpu_ns of the wall_ns
 * the call took (it was preempted), its hook time counts in that share. tlsnicd shares its
 * core with the peer's receiver; a tick that preempts it in the middle of a frame would
 * otherwise put the receiver's slice into the device model's time.
 */
static void settle_hooks(struct tlsnic_fwd *fwd, uint64_t wall_ns, uint64_t cpu_ns)
{
    for (int d = 0; d < 2; d++) {
        uint64_t h = fwd->pending_hook_ns[d];
        if (h != 0 && cpu_ns < wall_ns)
            h = (uint64_t)((double)h * (double)cpu_ns / (double)wall_ns);
        fwd->stats.dir[d].hook_ns += h;
        fwd->pending_hook_ns[d] = 0;
    }
}

static void side_free(struct fwd_side *s)
{
    free(s->work);
    free(s->seg);
    for (size_t i = 0; i < s->n_spare; i++)
        free(s->spare[i]);
    for (size_t i = 0; i < HOLD_SLOTS; i++)
        free(s->held[i].buf);
    memset(s, 0, sizeof(*s));
}

static int side_init(struct tlsnic_fwd *fwd, enum tlsnic_fwd_dir dir)
{
    struct fwd_side *s = &fwd->side[dir];
    const struct tlsnic_fault_cfg *fc = &fwd->cfg.faults;
    s->dir = dir;
    s->st = &fwd->stats.dir[dir];
    if (dir == TLSNIC_FWD_TO_WIRE) {
        s->in_fd = fwd->cfg.host_fd;
        s->out_fd = fwd->cfg.wire_fd;
        s->pcap_in = &fwd->pcap_host;
        s->pcap_out = &fwd->pcap_wire;
    } else {
        s->in_fd = fwd->cfg.wire_fd;
        s->out_fd = fwd->cfg.host_fd;
        s->pcap_in = &fwd->pcap_wire;
        s->pcap_out = &fwd->pcap_host;
    }
    bool dir_selected = fc->dirs == 0 || (fc->dirs & (1u << dir)) != 0;
    s->faults_on = dir_selected && (fc->loss_ppm | fc->dup_ppm | fc->reorder_ppm) != 0;
    /* Distinct streams per direction; the constant only keeps them apart. */
    tlsnic_prng_seed(&s->prng, fc->seed ^ ((uint64_t)dir * 0x5851f42d4c957f2dull));
    s->work = malloc(BUF_CAP);
    s->seg = malloc(BUF_CAP);
    if (s->work == NULL || s->seg == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < HOLD_SLOTS; i++) {
        s->spare[i] = malloc(BUF_CAP);
        if (s->spare[i] == NULL)
            return -ENOMEM;
        s->n_spare++;
    }
    return 0;
}

int tlsnic_fwd_new(tlsnic_fwd **out, const struct tlsnic_fwd_config *cfg)
{
    if (out == NULL || cfg == NULL || cfg->host_fd < 0 || cfg->wire_fd < 0)
        return -EINVAL;
    const struct tlsnic_fault_cfg *fc = &cfg->faults;
    if (fc->loss_ppm > 1000000 || fc->dup_ppm > 1000000 || fc->reorder_ppm > 1000000 ||
        (fc->dirs & ~3u) != 0)
        return -EINVAL;
    tlsnic_fwd *fwd = calloc(1, sizeof(*fwd));
    if (fwd == NULL)
        return -ENOMEM;
    fwd->cfg = *cfg;
    fwd->cfg.pcap_host_path = NULL; /* paths are not kept: the caller owns the strings */
    fwd->cfg.pcap_wire_path = NULL;
    fwd->hold_ns = (uint64_t)(fc->reorder_hold_us ? fc->reorder_hold_us : DEFAULT_HOLD_US) * 1000;
    int err = side_init(fwd, TLSNIC_FWD_TO_WIRE);
    if (err == 0)
        err = side_init(fwd, TLSNIC_FWD_TO_HOST);
    if (err == 0 && cfg->pcap_host_path != NULL)
        err = tlsnic_pcap_open(&fwd->pcap_host, cfg->pcap_host_path);
    if (err == 0 && cfg->pcap_wire_path != NULL)
        err = tlsnic_pcap_open(&fwd->pcap_wire, cfg->pcap_wire_path);
    if (err < 0) {
        tlsnic_fwd_free(fwd);
        return err;
    }
    *out = fwd;
    return 0;
}

void tlsnic_fwd_free(tlsnic_fwd *fwd)
{
    if (fwd == NULL)
        return;
    tlsnic_pcap_close(&fwd->pcap_host);
    tlsnic_pcap_close(&fwd->pcap_wire);
    side_free(&fwd->side[0]);
    side_free(&fwd->side[1]);
    free(fwd);
}

static void capture(struct tlsnic_fwd *fwd, struct tlsnic_pcap *pc, const uint8_t *buf,
                    size_t len)
{
    if (pc->buffer != NULL && tlsnic_pcap_write(pc, buf + VNET_LEN, len - VNET_LEN) < 0)
        fwd->stats.pcap_errors++;
}

static int run_hook(struct tlsnic_fwd *fwd, struct fwd_side *s, uint8_t *buf, size_t len)
{
    if (fwd->cfg.on_frame == NULL)
        return TLSNIC_FRAME_PASS;
    uint64_t t0 = now_ns();
    int v = fwd->cfg.on_frame(fwd->cfg.hook_ctx, (int)s->dir, buf + VNET_LEN, len - VNET_LEN,
                              (struct virtio_net_hdr *)buf);
    uint64_t spent = now_ns() - t0;
    s->st->hook_wall_ns += spent;
    fwd->pending_hook_ns[s->dir] += spent; /* settled at the end of the process call */
    if (v == TLSNIC_FRAME_PASS)
        return v;
    if (v < 0)
        s->st->hook_errors++;
    else
        s->st->hook_drops++;
    return TLSNIC_FRAME_DROP;
}

/*
 * Puts one frame on the outgoing TUN. On the TO_HOST side the device sees the frame here,
 * after the wire faults: each copy that survives the wire, once.
 */
static void emit(struct tlsnic_fwd *fwd, struct fwd_side *s, uint8_t *buf, size_t len)
{
    if (s->dir == TLSNIC_FWD_TO_HOST && fwd->cfg.to_host_gate != NULL &&
        fwd->cfg.to_host_gate(fwd->cfg.to_host_gate_ctx, buf + VNET_LEN, len - VNET_LEN)) {
        s->st->fence_drops++;
        return;
    }
    if (s->dir == TLSNIC_FWD_TO_HOST && run_hook(fwd, s, buf, len) != TLSNIC_FRAME_PASS)
        return;
    capture(fwd, s->pcap_out, buf, len);
    ssize_t n = write(s->out_fd, buf, len);
    if (n == (ssize_t)len)
        s->st->sent++;
    else
        s->st->write_errors++;
}

static void release_held(struct tlsnic_fwd *fwd, struct fwd_side *s, size_t i)
{
    struct held_frame *h = &s->held[i];
    emit(fwd, s, h->buf, h->len);
    s->spare[s->n_spare++] = h->buf;
    h->buf = NULL;
    s->n_held--;
}

/* A frame went out: each held frame it overtook is one step closer to leaving. */
static void tick_held(struct tlsnic_fwd *fwd, struct fwd_side *s)
{
    for (size_t i = 0; i < HOLD_SLOTS && s->n_held > 0; i++) {
        if (s->held[i].buf != NULL && --s->held[i].countdown == 0)
            release_held(fwd, s, i);
    }
}

/*
 * The wire: faults, then out. A frame held back for reordering keeps its buffer; *bufp
 * then gets a spare one for the next frame.
 */
static void on_the_wire(struct tlsnic_fwd *fwd, struct fwd_side *s, uint8_t **bufp, size_t len)
{
    uint8_t *buf = *bufp;
    uint32_t faults = 0, depth = 0;
    if (s->faults_on)
        faults = tlsnic_fault_decide(&s->prng, fwd->cfg.faults.loss_ppm, fwd->cfg.faults.dup_ppm,
                                     fwd->cfg.faults.reorder_ppm, &depth);
    if (faults & TLSNIC_FAULT_LOSE) {
        s->st->fault_lost++;
        return;
    }
    if ((faults & TLSNIC_FAULT_DUP) && s->n_spare > 0) {
        /* A copy, because the TO_HOST hook may rewrite each copy in place. */
        uint8_t *copy = s->spare[--s->n_spare];
        memcpy(copy, buf, len);
        emit(fwd, s, copy, len);
        s->spare[s->n_spare++] = copy;
        s->st->fault_dup++;
    }
    if ((faults & TLSNIC_FAULT_REORDER) && s->n_spare > 0) {
        for (size_t i = 0; i < HOLD_SLOTS; i++) {
            if (s->held[i].buf == NULL) {
                s->held[i] = (struct held_frame){
                    .buf = buf, .len = len, .countdown = depth, .due_ns = now_ns() + fwd->hold_ns};
                s->n_held++;
                *bufp = s->spare[--s->n_spare];
                s->st->fault_reordered++;
                return;
            }
        }
    }
    emit(fwd, s, buf, len);
    tick_held(fwd, s);
}

static void forward_frame(struct tlsnic_fwd *fwd, struct fwd_side *s, size_t len)
{
    uint8_t *buf = s->work;
    const struct virtio_net_hdr *vh = (const struct virtio_net_hdr *)buf;
    size_t l3_len = len - VNET_LEN;
    s->st->frames++;
    s->st->bytes += l3_len;
    if (vh->gso_type != VIRTIO_NET_HDR_GSO_NONE) {
        s->st->gso_frames++;
        s->st->gso_bytes += l3_len;
    }
    if (vh->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM)
        s->st->csum_partial++;
    if (l3_len > s->st->max_frame)
        s->st->max_frame = l3_len;
    capture(fwd, s->pcap_in, buf, len);

    /* No context for this flow (the daemon restarted): its payload may be plaintext. */
    if (s->dir == TLSNIC_FWD_TO_WIRE && fwd->cfg.to_wire_gate != NULL &&
        fwd->cfg.to_wire_gate(fwd->cfg.gate_ctx, buf + VNET_LEN, l3_len)) {
        s->st->fence_drops++;
        return;
    }
    /* TO_WIRE: the device is before the wire, so it also sees frames the wire loses. */
    if (s->dir == TLSNIC_FWD_TO_WIRE && run_hook(fwd, s, buf, len) != TLSNIC_FRAME_PASS)
        return;

    struct gso_plan plan;
    int planned = fwd->cfg.segment_on_wire
                      ? gso_plan(buf + VNET_LEN, l3_len, (const struct virtio_net_hdr *)buf, &plan)
                      : -ENOENT;
    if (planned == -EBADMSG) {
        s->st->bad_frames++; /* a GSO frame no NIC could segment */
        return;
    }
    if (planned < 0) {
        on_the_wire(fwd, s, &s->work, len);
        return;
    }
    s->st->segmented_frames++;
    for (unsigned i = 0; i < plan.n_segments; i++) {
        size_t seg_len = gso_build(&plan, s->work + VNET_LEN, i, s->seg, BUF_CAP);
        if (seg_len == 0) {
            s->st->bad_frames++;
            return;
        }
        s->st->wire_segments++;
        on_the_wire(fwd, s, &s->seg, seg_len);
    }
}

static int side_read_burst(struct tlsnic_fwd *fwd, struct fwd_side *s)
{
    int frames = 0;
    while (frames < BURST) {
        ssize_t n = read(s->in_fd, s->work, BUF_CAP);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                break;
            return -errno;
        }
        frames++;
        if (n < VNET_LEN + 1 || n >= (ssize_t)BUF_CAP) {
            s->st->bad_frames++;
            continue;
        }
        forward_frame(fwd, s, (size_t)n);
    }
    return frames;
}

static void release_due(struct tlsnic_fwd *fwd, struct fwd_side *s, uint64_t now)
{
    for (size_t i = 0; i < HOLD_SLOTS && s->n_held > 0; i++) {
        if (s->held[i].buf != NULL && s->held[i].due_ns <= now)
            release_held(fwd, s, i);
    }
}

int tlsnic_fwd_poll_setup(tlsnic_fwd *fwd, struct pollfd pfd[2])
{
    pfd[0] = (struct pollfd){.fd = fwd->cfg.host_fd, .events = POLLIN};
    pfd[1] = (struct pollfd){.fd = fwd->cfg.wire_fd, .events = POLLIN};
    uint64_t earliest = UINT64_MAX;
    for (int d = 0; d < 2; d++) {
        const struct fwd_side *s = &fwd->side[d];
        for (size_t i = 0; i < HOLD_SLOTS && s->n_held > 0; i++) {
            if (s->held[i].buf != NULL && s->held[i].due_ns < earliest)
                earliest = s->held[i].due_ns;
        }
    }
    if (earliest == UINT64_MAX)
        return -1;
    uint64_t now = now_ns();
    if (earliest <= now)
        return 0;
    return (int)((earliest - now + 999999) / 1000000);
}

int tlsnic_fwd_process(tlsnic_fwd *fwd, const struct pollfd pfd[2])
{
    int total = 0;
    uint64_t wall0 = now_ns(), cpu0 = fwd->cfg.on_frame ? thread_cpu_ns() : 0;
    /* pfd[0] is the host TUN, read by the TO_WIRE side; pfd[1] the wire TUN. */
    for (int d = 0; d < 2; d++) {
        short rev = pfd[d].revents;
        if (rev & (POLLERR | POLLHUP | POLLNVAL)) {
            settle_hooks(fwd, 1, 1);
            return -EIO;
        }
        if (rev & POLLIN) {
            int n = side_read_burst(fwd, &fwd->side[d]);
            if (n < 0) {
                settle_hooks(fwd, 1, 1);
                return n;
            }
            total += n;
        }
    }
    uint64_t now = now_ns();
    release_due(fwd, &fwd->side[0], now);
    release_due(fwd, &fwd->side[1], now);
    if (fwd->pending_hook_ns[0] + fwd->pending_hook_ns[1] >= HOOK_SETTLE_MIN_NS)
        settle_hooks(fwd, now_ns() - wall0, thread_cpu_ns() - cpu0);
    else
        settle_hooks(fwd, 1, 1);
    return total;
}

int tlsnic_fwd_flush(tlsnic_fwd *fwd)
{
    int err = tlsnic_pcap_flush(&fwd->pcap_host);
    int err2 = tlsnic_pcap_flush(&fwd->pcap_wire);
    return err < 0 ? err : err2;
}

void tlsnic_fwd_stats(const tlsnic_fwd *fwd, struct tlsnic_fwd_stats *out)
{
    *out = fwd->stats;
}

int tlsnic_fwd_stats_format(const struct tlsnic_fwd_stats *st, char *buf, size_t cap)
{
    static const char *const dir_name[2] = {"to_wire", "to_host"};
    size_t used = 0;
    if (cap == 0)
        return -ENOBUFS;
    buf[0] = '\0';
    for (int d = 0; d < 2; d++) {
        const struct tlsnic_fwd_dir_stats *s = &st->dir[d];
        const struct {
            const char *name;
            uint64_t value;
        } rows[] = {
            {"frames", s->frames},           {"bytes", s->bytes},
            {"gso_frames", s->gso_frames},   {"gso_bytes", s->gso_bytes},
            {"csum_partial", s->csum_partial}, {"max_frame", s->max_frame},
            {"sent", s->sent},               {"hook_drops", s->hook_drops},
            {"hook_errors", s->hook_errors}, {"fence_drops", s->fence_drops},
            {"segmented_frames", s->segmented_frames}, {"wire_segments", s->wire_segments},
            {"fault_lost", s->fault_lost},
            {"fault_dup", s->fault_dup},     {"fault_reordered", s->fault_reordered},
            {"bad_frames", s->bad_frames},   {"write_errors", s->write_errors},
            {"hook_ns", s->hook_ns},         {"hook_wall_ns", s->hook_wall_ns},
        };
        for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
            int n = snprintf(buf + used, cap - used, "%s_%s %llu\n", dir_name[d], rows[i].name,
                             (unsigned long long)rows[i].value);
            if (n < 0 || (size_t)n >= cap - used) {
                buf[used] = '\0';
                return -ENOBUFS;
            }
            used += (size_t)n;
        }
    }
    int n = snprintf(buf + used, cap - used, "pcap_errors %llu\n",
                     (unsigned long long)st->pcap_errors);
    if (n < 0 || (size_t)n >= cap - used) {
        buf[used] = '\0';
        return -ENOBUFS;
    }
    return (int)(used + (size_t)n);
}
