/*
 * The bench's per-core accounting (bench/eval/eval_cpu.h): the three /proc files read as the
 * kernel writes them, busy = wall - idle - iowait - steal, the precise idle clock used only
 * for the reader's own core, softnet counters that wrap, and on this machine: a pinned
 * busy loop's CPU time lies within its core's busy time.
 */
#include <errno.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "eval_cpu.h"

static const char stat_text[] =
    "cpu  300 0 200 1000 10 0 30 5 0 0\n"
    "cpu0 100 0 50 600 4 0 10 2 0 0\n"
    "cpu1 200 0 150 400 6 0 20 3 0 0\n"
    "intr 123 0 0\n"
    "ctxt 456\n";

static void stat_lines_fill_each_cpu_in_ticks(void **state)
{
    struct eval_snap s;
    memset(&s, 0, sizeof(s));
    assert_int_equal(eval_parse_stat(stat_text, &s), 0);
    assert_int_equal(s.n_cpus, 2);
    assert_true(s.present[0] && s.present[1]);
    assert_int_equal(s.stat[1].user, 200);
    assert_int_equal(s.stat[1].system, 150);
    assert_int_equal(s.stat[1].idle, 400);
    assert_int_equal(s.stat[1].iowait, 6);
    assert_int_equal(s.stat[1].softirq, 20);
    assert_int_equal(s.stat[1].steal, 3);
    assert_int_equal(s.stat[0].idle, 600);
}

static void stat_without_steal_is_read_and_garbage_is_refused(void **state)
{
    struct eval_snap s;
    memset(&s, 0, sizeof(s));
    assert_int_equal(eval_parse_stat("cpu0 1 2 3 4 5 6 7\n", &s), 0);
    assert_int_equal(s.stat[0].steal, 0);
    assert_int_equal(s.stat[0].softirq, 7);
    assert_int_equal(eval_parse_stat("intr 1 2 3\n", &s), -EINVAL);
    assert_int_equal(eval_parse_stat("cpu0 1 2\n", &s), -EINVAL);
    assert_int_equal(eval_parse_stat("cpu99999 1 2 3 4 5 6 7 8\n", &s), -EINVAL);
}

static const char timer_list_text[] =
    "Timer List Version: v0.10\n"
    "HRTIMER_MAX_CLOCK_BASES: 8\n"
    "now at 5000000000 nsecs\n"
    "\n"
    "cpu: 0\n"
    " clock 0:\n"
    "  .base:       000000001\n"
    "  .idle_sleeptime : 111 nsecs\n"
    "  .iowait_sleeptime: 11 nsecs\n"
    "cpu: 1\n"
    "  .nohz           : 1\n"
    "  .idle_calls     : 296658\n"
    "  .idle_sleeptime : 2000000000 nsecs\n"
    "  .iowait_sleeptime: 100000000 nsecs\n"
    "\n"
    "Tick Device: mode:     1\n"
    "Per CPU device: 1\n"
    "  .idle_sleeptime : 999 nsecs\n";

static void timer_list_gives_the_named_cpus_idle_in_nanoseconds(void **state)
{
    struct eval_snap s;
    memset(&s, 0, sizeof(s));
    assert_int_equal(eval_parse_timer_list(timer_list_text, 1, &s), 0);
    assert_int_equal(s.tl_cpu, 1);
    assert_int_equal(s.tl_now_ns, 5000000000ull);
    assert_int_equal(s.tl_idle_ns, 2000000000ull);
    assert_int_equal(s.tl_iowait_ns, 100000000ull);
    memset(&s, 0, sizeof(s));
    assert_int_equal(eval_parse_timer_list(timer_list_text, 0, &s), 0);
    assert_int_equal(s.tl_idle_ns, 111);
}

static void timer_list_without_the_cpu_or_the_clock_is_refused(void **state)
{
    struct eval_snap s;
    memset(&s, 0, sizeof(s));
    s.tl_cpu = -1;
    assert_int_equal(eval_parse_timer_list(timer_list_text, 2, &s), -ENOENT);
    assert_int_equal(s.tl_cpu, -1);
    assert_int_equal(eval_parse_timer_list("cpu: 0\n  .idle_sleeptime : 1 nsecs\n", 0, &s), -EINVAL);
}

static void softnet_rows_are_placed_by_the_cpu_they_name(void **state)
{
    /* CPUs 0 and 3 online: the rows name their CPU in the 13th field (hex). */
    static const char text[] =
        "00000010 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000002 00000000 00000000 00000000 00000000 00000000\n"
        "000000ff 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 0000000a 00000000 00000000 00000003 00000000 00000000\n";
    struct eval_snap s;
    memset(&s, 0, sizeof(s));
    assert_int_equal(eval_parse_softnet(text, &s), 0);
    assert_true(s.have_softnet);
    assert_int_equal(s.processed[0], 16);
    assert_int_equal(s.rps_ipis[0], 2);
    assert_int_equal(s.processed[3], 255);
    assert_int_equal(s.rps_ipis[3], 10);
    assert_int_equal(s.processed[1], 0);
}

static void softnet_rows_without_a_cpu_field_are_in_cpu_order(void **state)
{
    static const char text[] =
        "00000001 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000005 00000000\n"
        "00000002 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000006 00000000\n";
    struct eval_snap s;
    memset(&s, 0, sizeof(s));
    assert_int_equal(eval_parse_softnet(text, &s), 0);
    assert_int_equal(s.processed[1], 2);
    assert_int_equal(s.rps_ipis[1], 6);
    assert_int_equal(eval_parse_softnet("zz\n", &s), -EINVAL);
}

/* Two snapshots of cpu 1, hz ticks apart as /proc/stat counts them. */
static void two_snaps(struct eval_snap *a, struct eval_snap *b)
{
    long hz = sysconf(_SC_CLK_TCK);
    memset(a, 0, sizeof(*a));
    memset(b, 0, sizeof(*b));
    a->tl_cpu = b->tl_cpu = -1;
    a->present[1] = b->present[1] = 1;
    a->n_cpus = b->n_cpus = 2;
    a->stat[1] = (struct eval_cpu_stat){.user = 10, .system = 10, .idle = 100, .softirq = 5};
    /* Over 2 s: 0.5 s user, 0.3 s system, 0.1 s softirq, 0.9 s idle, 0.1 s iowait, 0.1 s steal. */
    b->stat[1] = a->stat[1];
    b->stat[1].user += (uint64_t)(hz / 2);
    b->stat[1].system += (uint64_t)(hz * 3 / 10);
    b->stat[1].softirq += (uint64_t)(hz / 10);
    b->stat[1].idle += (uint64_t)(hz * 9 / 10);
    b->stat[1].iowait += (uint64_t)(hz / 10);
    b->stat[1].steal += (uint64_t)(hz / 10);
    a->mono_s = 100.0;
    b->mono_s = 102.0;
    a->have_softnet = b->have_softnet = 1;
    a->processed[1] = 0xfffffff0u; /* the file's counters are 32 bits: they wrap */
    b->processed[1] = 0x10;
    a->rps_ipis[1] = 7;
    b->rps_ipis[1] = 9;
}

static void busy_is_wall_minus_idle_iowait_and_steal(void **state)
{
    struct eval_snap a, b;
    struct eval_core c;
    two_snaps(&a, &b);
    assert_int_equal(eval_core_between(&a, &b, 1, &c), 0);
    assert_false(c.precise);
    assert_float_equal(c.wall_s, 2.0, 1e-9);
    assert_float_equal(c.idle_s, 1.0, 1e-9);
    assert_float_equal(c.steal_s, 0.1, 1e-9);
    assert_float_equal(c.busy_s, 0.9, 1e-9); /* 2 - 0.9 idle - 0.1 iowait - 0.1 steal */
    assert_float_equal(c.user_s, 0.5, 1e-9);
    assert_float_equal(c.sys_s, 0.3, 1e-9);
    assert_float_equal(c.softirq_s, 0.1, 1e-9);
    assert_int_equal(c.packets, 0x20);
    assert_int_equal(c.rps_ipis, 2);
}

static void the_precise_idle_clock_wins_where_both_snaps_have_it(void **state)
{
    struct eval_snap a, b;
    struct eval_core c;
    two_snaps(&a, &b);
    a.tl_cpu = b.tl_cpu = 1;
    a.tl_now_ns = 1000000000;
    b.tl_now_ns = 3000000000; /* 2 s */
    a.tl_idle_ns = 5000000000;
    b.tl_idle_ns = 5000000000 + 1234567890; /* 1.23456789 s idle */
    a.tl_iowait_ns = b.tl_iowait_ns = 42;
    assert_int_equal(eval_core_between(&a, &b, 1, &c), 0);
    assert_true(c.precise);
    assert_float_equal(c.busy_s, 2.0 - 1.23456789 - 0.1, 1e-9);
    /* Only one of the two snaps from the reader's core: ticks again. */
    b.tl_cpu = 0;
    assert_int_equal(eval_core_between(&a, &b, 1, &c), 0);
    assert_false(c.precise);
    assert_float_equal(c.busy_s, 0.9, 1e-9);
}

static void unknown_cpus_and_backward_windows_are_refused(void **state)
{
    struct eval_snap a, b;
    struct eval_core c;
    two_snaps(&a, &b);
    assert_int_equal(eval_core_between(&a, &b, 0, &c), -EINVAL);
    assert_int_equal(eval_core_between(&a, &b, EVAL_MAX_CPUS, &c), -EINVAL);
    assert_int_equal(eval_core_between(&b, &a, 1, &c), -EINVAL);
}

/* On this machine: a busy loop pinned to one core. Its CPU time is spent on that core, so
 * the core's busy time (everything it ran, whoever else shared it) is at least as long. */
static void a_pinned_busy_loop_is_within_its_cores_busy_time(void **state)
{
    int cpu = sched_getcpu();
    cpu_set_t set, old;
    assert_true(cpu >= 0);
    assert_int_equal(sched_getaffinity(0, sizeof(old), &old), 0);
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    assert_int_equal(sched_setaffinity(0, sizeof(set), &set), 0);
    struct eval_snap a, b;
    struct eval_core c;
    struct timespec c0, c1, t;
    assert_int_equal(eval_snap_take(&a), 0);
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c0);
    double spun = 0;
    for (int guard = 0; spun < 0.1 && guard < 100000000; guard++) { /* 100 ms of CPU */
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
        spun = (double)(t.tv_sec - c0.tv_sec) + (double)(t.tv_nsec - c0.tv_nsec) * 1e-9;
    }
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c1);
    assert_int_equal(eval_snap_take(&b), 0);
    assert_int_equal(sched_setaffinity(0, sizeof(old), &old), 0);
    assert_int_equal(eval_core_between(&a, &b, cpu, &c), 0);
    double own = (double)(c1.tv_sec - c0.tv_sec) + (double)(c1.tv_nsec - c0.tv_nsec) * 1e-9;
    print_message("core %d: busy %.4f s of %.4f s wall (precise idle: %d); loop's own CPU %.4f s\n",
                  cpu, c.busy_s, c.wall_s, c.precise, own);
    /* The /proc/stat fallback counts in 10 ms units: allow two of them. */
    assert_true(c.busy_s >= own - (c.precise ? 0.001 : 0.02));
    assert_true(c.busy_s <= c.wall_s + 0.02);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(stat_lines_fill_each_cpu_in_ticks),
        cmocka_unit_test(stat_without_steal_is_read_and_garbage_is_refused),
        cmocka_unit_test(timer_list_gives_the_named_cpus_idle_in_nanoseconds),
        cmocka_unit_test(timer_list_without_the_cpu_or_the_clock_is_refused),
        cmocka_unit_test(softnet_rows_are_placed_by_the_cpu_they_name),
        cmocka_unit_test(softnet_rows_without_a_cpu_field_are_in_cpu_order),
        cmocka_unit_test(busy_is_wall_minus_idle_iowait_and_steal),
        cmocka_unit_test(the_precise_idle_clock_wins_where_both_snaps_have_it),
        cmocka_unit_test(unknown_cpus_and_backward_windows_are_refused),
        cmocka_unit_test(a_pinned_busy_loop_is_within_its_cores_busy_time),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
