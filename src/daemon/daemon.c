/*
 * tlsnicd: the TLS offload device between two network namespaces (daemon.h; main() in
 * tlsnicd.c).
 *
 *   tlsnicd --host-ns NS --wire-ns NS [--host-if IF] [--wire-if IF] [--ctl PATH]
 *           [--pcap-host FILE] [--pcap-wire FILE]
 *           [--loss RATE] [--reorder RATE] [--dup RATE] [--seed N] [--fault-dir both|tx|rx]
 *           [--ready-file FILE] [--stats-file FILE] [--state-file FILE] [--wire-segments]
 *           [--no-checkpoints] [--finish-timeout SECONDS]
 *   tlsnicd stats --ctl PATH          prints the running daemon's counters
 *
 * Rates are fractions (0.02 = 2 %). SIGTERM/SIGINT stop it (counters to stderr and to
 * --stats-file); SIGUSR1 prints the counters. scripts/net.sh makes the namespaces.
 *
 * The device model (src/device) runs on every frame and behind the control channel; a
 * test build may put a stand-in there instead (daemon.h).
 *
 * --no-checkpoints makes the device resync retransmissions from the host record store only
 * (the paper's way), never from its own checkpoints: for measuring what checkpoints save.
 *
 * --wire-segments makes the wire carry MSS-sized segments (software TSO where frames reach
 * the wire), so faults hit single segments and the wire capture shows real segments.
 *
 * --state-file keeps the list of offloaded flows (no keys) across restarts: at start the
 * TX flows in it are fenced, their payload dropped until the host adds them again
 * (fence.h). Without it a restarted daemon would let plaintext records through, so there
 * is always one: with --ctl and no --state-file it is the control socket's path with
 * ".state" appended (a restart on the same --ctl finds it).
 *
 * --finish-timeout: how long a flow whose application closed it (or whose process died)
 * may take to have nothing more to send before its connection is reset (default 60 s).
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "tlsnic/daemon.h"

#include "tlsnic/ctl_chan.h"
#include "tlsnic/ctl_server.h"
#include "tlsnic/fence.h"
#include "tlsnic/fwd.h"
#include "tlsnic/nichook.h"
#include "tlsnic/tun.h"

#define STATS_TEXT_CAP 8192
#define MAX_CTL_POLLFDS 64

static volatile sig_atomic_t stop_requested;
static volatile sig_atomic_t stats_requested;

static void on_stop(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static void on_usr1(int sig)
{
    (void)sig;
    stats_requested = 1;
}

struct options {
    const char *host_ns, *wire_ns, *host_if, *wire_if;
    const char *ctl_path, *pcap_host, *pcap_wire, *ready_file, *stats_file, *state_file;
    struct tlsnic_fault_cfg faults;
    int wire_segments;
    int no_checkpoints; /* 1: --no-checkpoints */
    uint32_t finish_timeout_ms; /* 0: the control server's default */
    char default_state[4096];   /* <ctl>.state when --state-file is not given */
};

static int parse_rate(const char *text, uint32_t *ppm)
{
    char *end;
    errno = 0;
    double r = strtod(text, &end);
    if (errno != 0 || end == text || *end != '\0' || !(r >= 0.0 && r <= 1.0))
        return -EINVAL;
    *ppm = (uint32_t)(r * 1e6 + 0.5);
    return 0;
}

static void usage_to(FILE *out)
{
    fprintf(out,
            "usage: tlsnicd --host-ns NS --wire-ns NS [--host-if IF] [--wire-if IF] [--ctl PATH]\n"
            "               [--pcap-host FILE] [--pcap-wire FILE] [--loss R] [--reorder R]\n"
            "               [--dup R] [--seed N] [--fault-dir both|tx|rx] [--ready-file F]\n"
            "               [--stats-file F] [--state-file F] [--wire-segments]\n"
            "               [--no-checkpoints] [--finish-timeout SECONDS]\n"
            "       tlsnicd stats --ctl PATH   the running daemon's counters\n"
            "       tlsnicd --help\n");
}

static void help(void)
{
    usage_to(stdout);
    fputs("\nThe TLS offload device in the packet path between two network namespaces:\n"
          "frames from the host's TUN (--host-if in --host-ns, default tlsnic-h) pass the\n"
          "device model and go out on the wire's TUN (--wire-if in --wire-ns, default\n"
          "tlsnic-p), and back.\n"
          "  --ctl PATH            control socket hosts offload their flows through\n"
          "  --pcap-host, --pcap-wire FILE   capture each side (a FIFO works)\n"
          "  --loss, --reorder, --dup R      faults on the wire, R a fraction (0.02 = 2 %)\n"
          "  --seed N              the faults' random seed\n"
          "  --fault-dir both|tx|rx          which direction the faults hit (default both)\n"
          "  --ready-file F        written once the daemon forwards and answers\n"
          "  --stats-file F        the counters, written at exit (SIGUSR1: to stderr)\n"
          "  --state-file F        offloaded flows (no keys) kept across restarts: at start\n"
          "                        they are fenced until their host adds them again\n"
          "                        (default with --ctl: PATH.state)\n"
          "  --wire-segments       the wire carries MSS-sized segments (software TSO)\n"
          "  --no-checkpoints      resync retransmissions from the host's record store only\n"
          "  --finish-timeout S    how long a flow its application closed may take to send\n"
          "                        what it has queued before a reset (default 60)\n"
          "SIGTERM or SIGINT stop it.\n",
          stdout);
}

static void usage(void)
{
    usage_to(stderr);
}

static int parse_options(int argc, char **argv, struct options *o)
{
    static const struct option longopts[] = {
        {"host-ns", required_argument, NULL, 'H'},    {"wire-ns", required_argument, NULL, 'W'},
        {"host-if", required_argument, NULL, 'h'},    {"wire-if", required_argument, NULL, 'w'},
        {"ctl", required_argument, NULL, 'c'},        {"pcap-host", required_argument, NULL, 'p'},
        {"pcap-wire", required_argument, NULL, 'P'},  {"loss", required_argument, NULL, 'l'},
        {"reorder", required_argument, NULL, 'r'},    {"dup", required_argument, NULL, 'd'},
        {"seed", required_argument, NULL, 's'},       {"fault-dir", required_argument, NULL, 'f'},
        {"ready-file", required_argument, NULL, 'R'}, {"stats-file", required_argument, NULL, 'S'},
        {"state-file", required_argument, NULL, 'F'}, {"wire-segments", no_argument, NULL, 'G'},
        {"no-checkpoints", no_argument, NULL, 'C'},
        {"finish-timeout", required_argument, NULL, 'T'},
        {NULL, 0, NULL, 0},
    };
    memset(o, 0, sizeof(*o));
    o->host_if = "tlsnic-h";
    o->wire_if = "tlsnic-p";
    int c;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        int err = 0;
        switch (c) {
        case 'H': o->host_ns = optarg; break;
        case 'W': o->wire_ns = optarg; break;
        case 'h': o->host_if = optarg; break;
        case 'w': o->wire_if = optarg; break;
        case 'c': o->ctl_path = optarg; break;
        case 'p': o->pcap_host = optarg; break;
        case 'P': o->pcap_wire = optarg; break;
        case 'R': o->ready_file = optarg; break;
        case 'S': o->stats_file = optarg; break;
        case 'F': o->state_file = optarg; break;
        case 'G': o->wire_segments = 1; break;
        case 'C': o->no_checkpoints = 1; break;
        case 'T': {
            char *end;
            unsigned long secs = strtoul(optarg, &end, 10);
            if (end == optarg || *end != '\0' || secs == 0 || secs > 86400)
                err = -EINVAL;
            else
                o->finish_timeout_ms = (uint32_t)(secs * 1000);
            break;
        }
        case 'l': err = parse_rate(optarg, &o->faults.loss_ppm); break;
        case 'r': err = parse_rate(optarg, &o->faults.reorder_ppm); break;
        case 'd': err = parse_rate(optarg, &o->faults.dup_ppm); break;
        case 's': o->faults.seed = strtoull(optarg, NULL, 0); break;
        case 'f':
            if (strcmp(optarg, "both") == 0)
                o->faults.dirs = 0;
            else if (strcmp(optarg, "tx") == 0)
                o->faults.dirs = 1u << TLSNIC_FWD_TO_WIRE;
            else if (strcmp(optarg, "rx") == 0)
                o->faults.dirs = 1u << TLSNIC_FWD_TO_HOST;
            else
                err = -EINVAL;
            break;
        default: err = -EINVAL; break;
        }
        if (err < 0) {
            usage();
            return err;
        }
    }
    if (optind != argc || o->host_ns == NULL || o->wire_ns == NULL) {
        usage();
        return -EINVAL;
    }
    if (o->state_file == NULL && o->ctl_path != NULL) {
        int n = snprintf(o->default_state, sizeof(o->default_state), "%s.state", o->ctl_path);
        if (n < 0 || (size_t)n >= sizeof(o->default_state)) {
            fprintf(stderr, "tlsnicd: --ctl path too long for its state file\n");
            return -ENAMETOOLONG;
        }
        o->state_file = o->default_state;
    }
    return 0;
}

static int write_text_file(const char *path, const char *text)
{
    char tmp[4096];
    int n = snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    if (n < 0 || (size_t)n >= sizeof(tmp))
        return -ENAMETOOLONG;
    FILE *f = fopen(tmp, "we");
    if (f == NULL)
        return -errno;
    int err = fputs(text, f) < 0 ? -EIO : 0;
    if (fclose(f) != 0 && err == 0)
        err = -errno;
    /* rename: a reader polling for the file never sees it half written */
    if (err == 0 && rename(tmp, path) != 0)
        err = -errno;
    return err;
}

/* Everything the control channel's STATS request and the exit report show. */
static const struct tlsnic_daemon_stand_in *active_stand_in;
static tlsnic_nic *active_nic;

static int format_stats(tlsnic_fwd *fwd, tlsnic_ctl_server *ctl, char *buf, size_t cap)
{
    struct tlsnic_fwd_stats st;
    tlsnic_fwd_stats(fwd, &st);
    int n = tlsnic_fwd_stats_format(&st, buf, cap);
    if (n < 0)
        return n;
    if (active_nic != NULL) {
        int m = tlsnic_nic_stats_format(active_nic, buf + n, cap - (size_t)n);
        if (m < 0)
            return m;
        n += m;
    }
    if (active_stand_in != NULL && active_stand_in->stats != NULL) {
        int m = active_stand_in->stats(active_stand_in->stats_ctx, buf + n, cap - (size_t)n);
        if (m < 0)
            return m;
        n += m;
    }
    if (ctl != NULL) {
        int m = tlsnic_ctl_server_stats_format(ctl, buf + n, cap - (size_t)n);
        if (m < 0)
            return m;
        n += m;
    }
    return n;
}

struct stats_source {
    tlsnic_fwd *fwd;
    tlsnic_ctl_server *ctl;
};

static int stats_cb(void *ctx, char *buf, size_t cap)
{
    struct stats_source *src = ctx;
    return format_stats(src->fwd, src->ctl, buf, cap);
}

static int stats_command(int argc, char **argv)
{
    const char *path = NULL;
    if (argc == 4 && strcmp(argv[2], "--ctl") == 0)
        path = argv[3];
    if (path == NULL) {
        usage();
        return 2;
    }
    static char text[TLSNIC_CTL_MAX_MSG];
    int n = tlsnic_ctl_query_stats(path, text, sizeof(text));
    if (n < 0) {
        fprintf(stderr, "tlsnicd stats: %s: %s\n", path, strerror(-n));
        return 1;
    }
    fputs(text, stdout);
    return 0;
}

/* The frames towards the wire pass both fence sets: the restart fences (state file) and
 * the 4-tuples of flows deleted a moment ago (ctl_server.h linger). A host's SYN lifts its
 * 4-tuple in both. */
struct gates {
    tlsnic_fence *restart, *linger;
};

static int gate_both(const void *ctx, const uint8_t *frame, size_t len)
{
    const struct gates *g = ctx;
    int blocked = tlsnic_fence_filter(g->restart, frame, len);
    return tlsnic_fence_filter(g->linger, frame, len) || blocked;
}

/* Deleted flows fenced at once: ~3000 closing connections a second for LINGER's 5 s. */
#define LINGER_MAX_FLOWS 16384u

static int run(const struct options *o, const struct tlsnic_daemon_stand_in *stand_in)
{
    int host_fd = tlsnic_tun_open(o->host_ns, o->host_if);
    if (host_fd < 0) {
        fprintf(stderr, "tlsnicd: host TUN %s in %s: %s\n", o->host_if, o->host_ns,
                strerror(-host_fd));
        return 1;
    }
    int wire_fd = tlsnic_tun_open(o->wire_ns, o->wire_if);
    if (wire_fd < 0) {
        fprintf(stderr, "tlsnicd: wire TUN %s in %s: %s\n", o->wire_if, o->wire_ns,
                strerror(-wire_fd));
        close(host_fd);
        return 1;
    }
    tlsnic_nic *nic = NULL;
    if (stand_in == NULL) {
        struct tlsnic_nic_config ncfg;
        tlsnic_nic_config_default(&ncfg);
        ncfg.checkpoints_off = (uint8_t)o->no_checkpoints;
        int nerr = tlsnic_nic_new(&nic, &ncfg);
        if (nerr < 0) {
            fprintf(stderr, "tlsnicd: device: %s\n", strerror(-nerr));
            close(wire_fd);
            close(host_fd);
            return 1;
        }
        active_nic = nic;
    }
    struct tlsnic_fwd_config fc = {
        .on_frame = stand_in != NULL ? stand_in->on_frame : tlsnic_nic_frame_hook,
        .hook_ctx = stand_in != NULL ? stand_in->hook_ctx : (void *)nic,
        .host_fd = host_fd,
        .wire_fd = wire_fd,
        .faults = o->faults,
        .pcap_host_path = o->pcap_host,
        .pcap_wire_path = o->pcap_wire,
        .segment_on_wire = o->wire_segments,
    };
    active_stand_in = stand_in;
    tlsnic_fwd *fwd = NULL;
    tlsnic_ctl_server *ctl = NULL;
    tlsnic_fence *fence = NULL, *rx_fence = NULL, *linger = NULL;
    struct gates gates = {0};
    int rc = 1;
    int err = tlsnic_fence_new(&linger, LINGER_MAX_FLOWS);
    if (err < 0) {
        fprintf(stderr, "tlsnicd: fences: %s\n", strerror(-err));
        goto out;
    }
    if (o->state_file != NULL) {
        err = tlsnic_fence_new(&fence, 0);
        int fenced = err < 0 ? err : tlsnic_state_load(o->state_file, fence);
        if (fenced < 0) {
            /* Refuse to run: forwarding without knowing the offloaded flows may leak. */
            fprintf(stderr, "tlsnicd: state file %s: %s\n", o->state_file, strerror(-fenced));
            goto out;
        }
        fprintf(stderr, "tlsnicd: %d offloaded TX flow(s) fenced until their host adds them again\n",
                fenced);
        err = tlsnic_fence_new(&rx_fence, 0);
        fenced = err < 0 ? err : tlsnic_state_load_rx(o->state_file, rx_fence);
        if (fenced < 0) {
            fprintf(stderr, "tlsnicd: state file %s: %s\n", o->state_file, strerror(-fenced));
            goto out;
        }
        if (fenced > 0)
            fprintf(stderr, "tlsnicd: %d offloaded RX flow(s) fenced until their host adds them again\n",
                    fenced);
        fc.to_host_gate = tlsnic_fence_gate_to_host;
        fc.to_host_gate_ctx = rx_fence;
        tlsnic_fence_link_rx(fence, rx_fence); /* a host's SYN lifts both */
    }
    gates = (struct gates){.restart = fence, .linger = linger};
    fc.to_wire_gate = gate_both;
    fc.gate_ctx = &gates;
    err = tlsnic_fwd_new(&fwd, &fc);
    if (err < 0) {
        fprintf(stderr, "tlsnicd: forwarder: %s\n", strerror(-err));
        goto out;
    }
    struct stats_source src = {.fwd = fwd};
    if (o->ctl_path != NULL) {
        err = nic != NULL || stand_in->dev != NULL ? 0 : -EINVAL;
        if (err == 0) {
            struct tlsnic_ctl_server_config sc = {
                .path = o->ctl_path,
                .dev = nic != NULL ? tlsnic_nic_dev(nic) : stand_in->dev,
                .stats = stats_cb,
                .stats_ctx = &src,
                .flow_counters = nic != NULL ? tlsnic_nic_flow_counters : NULL,
                .flow_counters_ctx = nic,
                .log = stderr,
                .fence = fence,
                .state_path = o->state_file,
                .finish_timeout_ms = o->finish_timeout_ms,
                .linger = linger,
                .rx_fence = rx_fence,
            };
            err = tlsnic_ctl_server_new(&ctl, &sc);
        }
        if (err < 0) {
            fprintf(stderr, "tlsnicd: control socket %s: %s\n", o->ctl_path, strerror(-err));
            goto out;
        }
        src.ctl = ctl;
    }
    if (o->ready_file != NULL && (err = write_text_file(o->ready_file, "ready\n")) < 0) {
        fprintf(stderr, "tlsnicd: %s: %s\n", o->ready_file, strerror(-err));
        goto out;
    }
    fprintf(stderr, "tlsnicd: device %s, forwarding %s/%s <-> %s/%s (loss %u reorder %u dup %u ppm, seed %llu)\n",
            nic != NULL ? "nic" : stand_in->name,
            o->host_ns, o->host_if, o->wire_ns, o->wire_if, o->faults.loss_ppm,
            o->faults.reorder_ppm, o->faults.dup_ppm, (unsigned long long)o->faults.seed);

    static char text[STATS_TEXT_CAP];
    struct timespec last_flush;
    clock_gettime(CLOCK_MONOTONIC, &last_flush);
    rc = 0;
    while (!stop_requested) {
        struct pollfd pfd[2 + MAX_CTL_POLLFDS];
        int timeout = tlsnic_fwd_poll_setup(fwd, pfd);
        int n_ctl = ctl != NULL ? tlsnic_ctl_server_poll_setup(ctl, pfd + 2, MAX_CTL_POLLFDS) : 0;
        /* Bounded wait: signals, flushes and held frames are looked at at least every 200 ms,
         * finishing sockets every few ms. */
        int ctl_timeout = ctl != NULL ? tlsnic_ctl_server_timeout_ms(ctl) : -1;
        if (ctl_timeout >= 0 && (timeout < 0 || ctl_timeout < timeout))
            timeout = ctl_timeout;
        if (timeout < 0 || timeout > 200)
            timeout = 200;
        int ready = poll(pfd, (nfds_t)(2 + n_ctl), timeout);
        if (ready < 0) {
            if (errno != EINTR) {
                perror("tlsnicd: poll");
                rc = 1;
                break;
            }
            for (int i = 0; i < 2 + n_ctl; i++)
                pfd[i].revents = 0; /* a signal: nothing is ready, held frames may be due */
        }
        err = tlsnic_fwd_process(fwd, pfd);
        if (err < 0) {
            fprintf(stderr, "tlsnicd: TUN gone: %s\n", strerror(-err));
            rc = 1;
            break;
        }
        if (ctl != NULL)
            tlsnic_ctl_server_process(ctl, pfd + 2, n_ctl);
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec != last_flush.tv_sec) {
            tlsnic_fwd_flush(fwd);
            last_flush = now;
        }
        if (stats_requested) {
            stats_requested = 0;
            if (format_stats(fwd, ctl, text, sizeof(text)) >= 0)
                fputs(text, stderr);
        }
    }
    if (format_stats(fwd, ctl, text, sizeof(text)) >= 0) {
        fputs(text, stderr);
        if (o->stats_file != NULL && (err = write_text_file(o->stats_file, text)) < 0)
            fprintf(stderr, "tlsnicd: %s: %s\n", o->stats_file, strerror(-err));
    }
out:
    tlsnic_ctl_server_free(ctl);
    tlsnic_fwd_free(fwd);
    tlsnic_nic_free(nic); /* after the server: its shutdown deletes the flows first */
    tlsnic_fence_free(fence);
    tlsnic_fence_free(linger);
    tlsnic_fence_free(rx_fence);
    close(wire_fd);
    close(host_fd);
    return rc;
}

int tlsnic_daemon_main(int argc, char **argv, const struct tlsnic_daemon_stand_in *stand_in)
{
    if (argc >= 2 && strcmp(argv[1], "stats") == 0)
        return stats_command(argc, argv);
    if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        help();
        return 0;
    }
    struct options o;
    if (parse_options(argc, argv, &o) < 0)
        return 2;
    struct sigaction sa = {.sa_handler = on_stop};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sa.sa_handler = on_usr1;
    sigaction(SIGUSR1, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    /* The daemon holds the socket of every offloaded flow (up to 4096): as many
     * descriptors as the hard limit allows. */
    struct rlimit nofile;
    if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
        nofile.rlim_cur = nofile.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &nofile);
    }
    return run(&o, stand_in);
}
