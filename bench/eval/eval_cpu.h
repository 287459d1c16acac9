/*
 * What a core did during a sample window: the host-CPU accounting of `tlsnic bench`.
 *
 * A process's getrusage misses work the kernel does for it elsewhere: when tlsnicd writes
 * an ACK into the host's TUN, the host's TCP receive path (the ACK, and the transmissions
 * it releases) runs in tlsnicd's context, on tlsnicd's core. The bench therefore steers the
 * host's receive processing onto the host's core (RPS on the host TUN's queue, set by
 * scripts/bench.sh), pins the sender there, and counts everything that core does: its busy
 * time, from the kernel's per-CPU idle accounting.
 *
 *   busy = wall - idle - iowait - steal     (time the core ran anything, for anyone)
 *
 * Idle comes from the NO_HZ idle accounting (the kernel stops the idle clock on every
 * interrupt, so softirq work done while "idle" counts as busy): in nanoseconds from
 * /proc/timer_list for the core the reader runs on (its own figures are current there),
 * else from /proc/stat (the same clock, printed in 10 ms units). Steal (the hypervisor ran
 * something else while the vCPU wanted to run) is not work and is reported apart. The
 * user / system / irq / softirq split is the kernel's tick sampling (/proc/stat), a
 * breakdown of busy, not a measurement of it. /proc/net/softnet_stat gives the packets each
 * core's network receive processing handled and the RPS interrupts it took: proof that the
 * steering works.
 *
 * Nothing here knows about scenarios or directions: a sender (TX) or a receiver (RX, issue
 * 13) brackets its window with two eval_snap_take calls and asks eval_core_between for
 * the core it calls the host's and the one it calls the device's.
 */
#ifndef TLSNIC_BENCH_EVAL_CPU_H
#define TLSNIC_BENCH_EVAL_CPU_H

#include <stdint.h>

#define EVAL_MAX_CPUS 64

/* One CPU's line of /proc/stat, in USER_HZ ticks. */
struct eval_cpu_stat {
    uint64_t user, nice, system, idle, iowait, irq, softirq, steal;
};

struct eval_snap {
    int n_cpus;                       /* CPUs seen in /proc/stat (cpuN lines) */
    int present[EVAL_MAX_CPUS];       /* a cpuN line was there */
    struct eval_cpu_stat stat[EVAL_MAX_CPUS];
    int tl_cpu;                       /* CPU whose timer_list figures are current, or -1 */
    uint64_t tl_now_ns;               /* "now at" of /proc/timer_list */
    uint64_t tl_idle_ns, tl_iowait_ns; /* tl_cpu's idle_sleeptime / iowait_sleeptime */
    int have_softnet;
    uint64_t processed[EVAL_MAX_CPUS], rps_ipis[EVAL_MAX_CPUS];
    double mono_s;                    /* CLOCK_MONOTONIC at the snapshot */
};

/* One core over a window. Seconds; busy = wall - idle - iowait - steal. */
struct eval_core {
    double wall_s, busy_s, idle_s, steal_s;
    double user_s, sys_s, irq_s, softirq_s; /* tick-sampled breakdown of busy */
    uint64_t packets;  /* network receive: packets processed on this core (softnet) */
    uint64_t rps_ipis; /* RPS interrupts this core took (packets steered to it) */
    int precise;       /* idle in ns (timer_list), else 10 ms (/proc/stat) */
};

/*
 * Parsers of the three files (exposed for tests). Each fills its part of s and returns 0,
 * or -EINVAL for text it cannot read. parse_timer_list takes the figures of the CPU `cpu`
 * (the reader's); -ENOENT if that CPU has none (kernel without NO_HZ).
 */
int eval_parse_stat(const char *text, struct eval_snap *s);
int eval_parse_timer_list(const char *text, int cpu, struct eval_snap *s);
int eval_parse_softnet(const char *text, struct eval_snap *s);

/* Reads the three files now. The timer_list figures are kept only if the reader ran on
 * one CPU throughout (pin it). 0 or -errno (/proc/stat unreadable). */
int eval_snap_take(struct eval_snap *s);

/* Core `cpu` between snapshots a and b. 0, or -EINVAL (cpu unknown, b before a). */
int eval_core_between(const struct eval_snap *a, const struct eval_snap *b, int cpu,
                      struct eval_core *out);

#endif
