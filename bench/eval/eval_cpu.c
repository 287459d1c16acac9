/* Per-core busy time around a sample window (see eval_cpu.h). */
#include "eval_cpu.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define TEXT_CAP (256 * 1024) /* /proc/timer_list of a 64-CPU machine fits */

/* The next line of text after p, or NULL at the end. */
static const char *next_line(const char *p)
{
    const char *nl = strchr(p, '\n');
    return nl ? nl + 1 : NULL;
}

int eval_parse_stat(const char *text, struct eval_snap *s)
{
    int seen = 0;
    s->n_cpus = 0;
    memset(s->present, 0, sizeof(s->present));
    for (const char *p = text; p && *p; p = next_line(p)) {
        int cpu, n;
        struct eval_cpu_stat c = {0};
        if (strncmp(p, "cpu", 3) != 0 || p[3] < '0' || p[3] > '9')
            continue;
        n = sscanf(p, "cpu%d %" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu64
                      " %" SCNu64 " %" SCNu64 " %" SCNu64,
                   &cpu, &c.user, &c.nice, &c.system, &c.idle, &c.iowait, &c.irq, &c.softirq,
                   &c.steal);
        if (n < 8 || cpu < 0 || cpu >= EVAL_MAX_CPUS)
            return -EINVAL; /* steal (n == 9) is optional: old kernels lack it */
        s->stat[cpu] = c;
        s->present[cpu] = 1;
        if (cpu + 1 > s->n_cpus)
            s->n_cpus = cpu + 1;
        seen++;
    }
    return seen > 0 ? 0 : -EINVAL;
}

int eval_parse_timer_list(const char *text, int cpu, struct eval_snap *s)
{
    int cur = -1, have_now = 0, have_idle = 0, have_iowait = 0;
    for (const char *p = text; p && *p; p = next_line(p)) {
        while (*p == ' ')
            p++;
        uint64_t v;
        int c;
        if (sscanf(p, "now at %" SCNu64 " nsecs", &v) == 1) {
            s->tl_now_ns = v;
            have_now = 1;
        } else if (strncmp(p, "cpu: ", 5) == 0 && sscanf(p, "cpu: %d", &c) == 1) {
            cur = c;
        } else if (strncmp(p, "Tick Device", 11) == 0) {
            cur = -1; /* the per-CPU sections of the clock bases end here */
        } else if (cur == cpu && sscanf(p, ".idle_sleeptime : %" SCNu64, &v) == 1) {
            s->tl_idle_ns = v;
            have_idle = 1;
        } else if (cur == cpu && sscanf(p, ".iowait_sleeptime: %" SCNu64, &v) == 1) {
            s->tl_iowait_ns = v;
            have_iowait = 1;
        }
    }
    if (!have_now)
        return -EINVAL;
    if (!have_idle || !have_iowait)
        return -ENOENT;
    s->tl_cpu = cpu;
    return 0;
}

int eval_parse_softnet(const char *text, struct eval_snap *s)
{
    int row = 0;
    memset(s->processed, 0, sizeof(s->processed));
    memset(s->rps_ipis, 0, sizeof(s->rps_ipis));
    for (const char *p = text; p && *p; p = next_line(p), row++) {
        unsigned f[13] = {0};
        int n = sscanf(p, "%x %x %x %x %x %x %x %x %x %x %x %x %x", &f[0], &f[1], &f[2], &f[3],
                       &f[4], &f[5], &f[6], &f[7], &f[8], &f[9], &f[10], &f[11], &f[12]);
        if (n < 10)
            return -EINVAL;
        /* Rows are the online CPUs in order; kernels since 5.x (13+ fields) name theirs. */
        int cpu = n >= 13 ? (int)f[12] : row;
        if (cpu < 0 || cpu >= EVAL_MAX_CPUS)
            return -EINVAL;
        s->processed[cpu] = f[0];
        s->rps_ipis[cpu] = f[9];
    }
    s->have_softnet = row > 0;
    return row > 0 ? 0 : -EINVAL;
}

/* The whole of a /proc file into buf (NUL-terminated). Bytes read, or -errno. */
static ssize_t slurp(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    size_t have = 0;
    while (have + 1 < cap) {
        ssize_t n = read(fd, buf + have, cap - 1 - have);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        have += (size_t)n;
    }
    close(fd);
    buf[have] = '\0';
    return (ssize_t)have;
}

int eval_snap_take(struct eval_snap *s)
{
    static char *buf;
    if (buf == NULL && (buf = malloc(TEXT_CAP)) == NULL)
        return -ENOMEM;
    memset(s, 0, sizeof(*s));
    s->tl_cpu = -1;
    int cpu_before = sched_getcpu();
    ssize_t n = slurp("/proc/timer_list", buf, TEXT_CAP);
    int cpu_after = sched_getcpu();
    /* The reader's own CPU is busy while it reads: its idle figures are current. */
    if (n > 0 && cpu_before >= 0 && cpu_before == cpu_after &&
        eval_parse_timer_list(buf, cpu_before, s) < 0)
        s->tl_cpu = -1;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    s->mono_s = (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
    if ((n = slurp("/proc/stat", buf, TEXT_CAP)) < 0)
        return (int)n;
    if (eval_parse_stat(buf, s) < 0)
        return -EINVAL;
    if (slurp("/proc/net/softnet_stat", buf, TEXT_CAP) > 0)
        (void)eval_parse_softnet(buf, s);
    return 0;
}

int eval_core_between(const struct eval_snap *a, const struct eval_snap *b, int cpu,
                      struct eval_core *out)
{
    memset(out, 0, sizeof(*out));
    if (cpu < 0 || cpu >= EVAL_MAX_CPUS || !a->present[cpu] || !b->present[cpu] ||
        b->mono_s < a->mono_s)
        return -EINVAL;
    double hz = (double)sysconf(_SC_CLK_TCK);
    const struct eval_cpu_stat *x = &a->stat[cpu], *y = &b->stat[cpu];
#define TICKS(f) ((double)(y->f - x->f) / hz)
    out->user_s = TICKS(user) + TICKS(nice);
    out->sys_s = TICKS(system);
    out->irq_s = TICKS(irq);
    out->softirq_s = TICKS(softirq);
    out->steal_s = TICKS(steal);
    double idle_s = TICKS(idle) + TICKS(iowait);
    out->wall_s = b->mono_s - a->mono_s;
#undef TICKS
    if (a->tl_cpu == cpu && b->tl_cpu == cpu && b->tl_now_ns > a->tl_now_ns) {
        out->precise = 1;
        out->wall_s = (double)(b->tl_now_ns - a->tl_now_ns) * 1e-9;
        idle_s = (double)((b->tl_idle_ns - a->tl_idle_ns) + (b->tl_iowait_ns - a->tl_iowait_ns)) *
                 1e-9;
    }
    out->idle_s = idle_s;
    out->busy_s = out->wall_s - idle_s - out->steal_s;
    if (out->busy_s < 0)
        out->busy_s = 0;
    if (a->have_softnet && b->have_softnet) {
        /* 32-bit counters in the file: differences modulo 2^32. */
        out->packets = (uint32_t)(b->processed[cpu] - a->processed[cpu]);
        out->rps_ipis = (uint32_t)(b->rps_ipis[cpu] - a->rps_ipis[cpu]);
    }
    return 0;
}
