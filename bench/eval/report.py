#!/usr/bin/env python3
"""Turns the samples of `tlsnic bench` (results.json) into results.md and gnuplot charts.

Usage: report.py RESULTS_JSON OUT_DIR

Host CPU is everything the host's core did during a sample (its busy time: the sender's
user and system time and the host stack's softirq work, with the host's receive processing
steered onto that core; bench/eval/eval_cpu.h), per GB sent. Every figure is the median over
the alternating rounds with the spread (min-max over rounds) beside it; every ratio is the
median of the per-round ratios (the scenarios of one round ran side by side, so drift
cancels), with the spread of those per-round ratios.

The run checks itself and says VALID or INVALID (and why) at the top: the host's receive
processing really ran on the host's core, samples were long enough, the machine was quiet,
every sample finished, the paced phase reached its rate, and no ordering is impossible
(plain TCP <= every scenario; NULL floor <= offload <= software) beyond the measured spread.
The headline comes from the equal-rate (paced) phase. Standard library only.
"""
import json
import os
import statistics
import subprocess
import sys

SCEN_ORDER = ["tcp", "null", "dev", "sw", "ssl"]
SCEN_LABEL = {
    "tcp": "plain TCP",
    "null": "NULL cipher (framed, no crypto)",
    "dev": "tlsnic offload (tlsnicd)",
    "sw": "tlsnic software",
    "ssl": "OpenSSL SSL_write",
    "evp": "raw EVP AEAD (no network)",
}
TARGET_HOST_VS_TCP = 1.15
TARGET_REMOVED = 0.90
TARGET_VS_SW_1457 = 0.5
TARGET_DEV_VS_EVP = 1.25
TARGET_CKPT_RESYNC = 2.0

MIN_SAMPLE_S = 2.0       # shorter samples are tick noise (the floor)
STEERED_MIN = 0.9        # host-core packets / segments the sender's socket received
BG_MAX_SHARE = 0.05      # background busy on a core / the smallest busy time measured there
ORDER_TOL = 0.02         # paired-ratio slack of the ordering checks (see orderings())
RATE_REACHED = 0.95      # paced phase: every scenario's median rate / the target rate
# Unpaced, an ordering is judged only between scenarios whose median rates differ by at most
# this share of the faster one. There the device core is the bottleneck (99-100 % busy) and
# sets each scenario's rate; the host's kernel cost per byte depends on the rate (a sender
# held back longer puts more data in each GSO frame and each wake-up): offload at 5200
# Mbit/s cost the host less kernel time per byte than plain TCP at 5900 (0.47 vs 0.60 s/GB,
# same segments per MB), although its kernel work is a superset. At one rate (the paced
# phase, where every pair is judged) NULL <= offload held (1.025 vs 1.034 s/GB at 4096 B).
# A 10 % lower rate was enough to put offload 10 % below NULL (4096 B, every round), so
# pairs further apart than 5 % are not judged.
RATE_COMPARABLE = 0.05
# Ordering checks (lower, upper): the upper scenario's host work is a superset of the lower's.
ORDERINGS = [("tcp", "null"), ("tcp", "dev"), ("tcp", "sw"), ("tcp", "ssl"),
             ("null", "dev"), ("dev", "sw")]


def gb(s):
    return s["bytes"] / 1e9


def host_s_per_gb(s):
    """The host core's busy time per GB; the sender's getrusage for samples without it."""
    if "host" in s:
        return s["host"]["busy_s"] / gb(s)
    return (s["user_s"] + s["sys_s"]) / gb(s)


def proc_s_per_gb(s):
    return s.get("proc_s", s["user_s"] + s["sys_s"]) / gb(s)


def devcore_s_per_gb(s):
    return s["devcore"]["busy_s"] / gb(s) if "devcore" in s else None


def model_s_per_gb(s):
    """Time tlsnicd spent inside the device model (its frame hook), s/GB: the device's own
    work, without the emulation's TUN reads and writes. None without the counters."""
    d = s.get("dev") or {}
    if "to_wire_hook_ns" not in d:
        return None
    return (d["to_wire_hook_ns"] + d.get("to_host_hook_ns", 0)) / 1e9 / gb(s)


def softirq_share(s):
    h = s.get("host")
    if not h:
        return None
    ticks = h["user_s"] + h["sys_s"] + h["irq_s"] + h["softirq_s"]
    return h["softirq_s"] / ticks if ticks > 0 else None


def evp_s_per_gb(s):
    return s.get("proc_s", s["user_s"] + s["sys_s"]) / gb(s)


def evp_best(evp, rec):
    """Raw EVP's CPU per GB: the fastest round (the machine's uncontended speed)."""
    xs = [evp_s_per_gb(s) for s in evp if s["rec"] == rec]
    return min(xs) if xs else None


def mbps(s):
    return s["bytes"] * 8 / s["wall_s"] / 1e6 if s["wall_s"] > 0 else 0.0


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def spread(xs):
    xs = [x for x in xs if x is not None]
    return (min(xs), max(xs)) if xs else (None, None)


def fmt(x, nd=3):
    return "n/a" if x is None else f"{x:.{nd}f}"


def fmt_range(xs, nd=3):
    """median (min-max) of xs, or the value alone for one round."""
    xs = [x for x in xs if x is not None]
    if not xs:
        return "n/a"
    m, (lo, hi) = med(xs), spread(xs)
    if len(xs) == 1:
        return f"{m:.{nd}f}"
    return f"{m:.{nd}f} ({lo:.{nd}f}-{hi:.{nd}f})"


def by_round(samples, scen, rec, fn):
    """{round: fn(sample)} for one scenario and record size (mean if several)."""
    out = {}
    for s in samples:
        if s["scenario"] == scen and s["rec"] == rec:
            v = fn(s)
            if v is not None:
                out.setdefault(s["round"], []).append(v)
    return {r: statistics.mean(v) for r, v in out.items()}


def paired(num, den):
    """Per-round num / den over the rounds both have."""
    return [num[r] / den[r] for r in sorted(num) if r in den and den[r]]


class Phase:
    """The samples of one phase (main: as fast as it goes; paced: at one rate)."""

    def __init__(self, samples, phase):
        self.name = phase
        self.samples = [s for s in samples if s.get("phase") == phase and s["ok"]
                        and s["scenario"] != "evp"]
        self.all = [s for s in samples if s.get("phase") == phase and s["scenario"] != "evp"]
        self.sizes = sorted({s["rec"] for s in self.samples})
        self.scen = [x for x in SCEN_ORDER if any(s["scenario"] == x for s in self.samples)]

    def cell(self, sc, rec):
        return [s for s in self.samples if s["scenario"] == sc and s["rec"] == rec]

    def rounds(self, sc, rec, fn=host_s_per_gb):
        return by_round(self.samples, sc, rec, fn)

    def ratio(self, num, den, rec):
        return paired(self.rounds(num, rec), self.rounds(den, rec))

    def removed(self, rec, od="dev"):
        h_od, h_sw, h_tcp = self.rounds(od, rec), self.rounds("sw", rec), self.rounds("tcp", rec)
        return [(h_sw[r] - h_od[r]) / (h_sw[r] - h_tcp[r]) for r in h_od
                if r in h_sw and r in h_tcp and h_sw[r] != h_tcp[r]]


def validity(meta, phases):
    """The run's own sanity checks: [(name, ok, detail)]."""
    checks = []
    nets = [s for p in phases for s in p.all]
    ok_nets = [s for p in phases for s in p.samples]

    checks.append(("two cores: host (sender, host receive processing) and device (tlsnicd, peer)",
                   meta.get("nproc", 1) >= 2 and meta.get("sender_cpu") != meta.get("daemon_cpu"),
                   f"host core {meta.get('sender_cpu')}, device core {meta.get('daemon_cpu')}"))

    bad = [s for s in ok_nets if "host" not in s or s.get("segs_in", 0) == 0
           or s["host"]["packets"] < STEERED_MIN * s["segs_in"]]
    worst = min((s["host"]["packets"] / s["segs_in"] for s in ok_nets
                 if "host" in s and s.get("segs_in")), default=None)
    checks.append(("host receive processing steered onto the host core (RPS): packets processed "
                   f"there >= {STEERED_MIN:g} x segments the sender received, every sample",
                   meta.get("host_rx_steered", False) and not bad and bool(ok_nets),
                   f"lowest ratio {fmt(worst, 2)}; {len(bad)} sample(s) short"))

    short = [s for s in ok_nets if s["wall_s"] < MIN_SAMPLE_S * 0.99]
    checks.append((f"samples of at least {MIN_SAMPLE_S:g} s",
                   meta.get("sample_seconds", 0) >= MIN_SAMPLE_S and not short and bool(ok_nets),
                   f"shortest {fmt(min((s['wall_s'] for s in ok_nets), default=None), 2)} s"))

    failed = [s for s in nets if not s["ok"]]
    checks.append(("every sample finished", not failed,
                   f"{len(failed)} failed" if failed else f"{len(nets)} samples"))

    # Quiet machine: what else ran on each core, against the smallest busy time measured on
    # it in that phase and size (plain TCP's on the host core).
    worst_bg = []
    for p in phases:
        for rec in p.sizes:
            for core, key in (("host", "bg_host"), ("devcore", "bg_dev")):
                cell = [s for s in p.samples if s["rec"] == rec and key in s and core in s]
                if not cell:
                    continue
                bg = med([s[key] for s in cell])
                least = min(med([s[core]["busy_s"] / s[core]["wall_s"] for s in p.cell(sc, rec)
                                 if core in s and s[core]["wall_s"] > 0]) or 1 for sc in p.scen)
                worst_bg.append((bg / least if least > 0 else 1.0, bg, p.name, rec, core))
    if worst_bg:
        share, bg, ph, rec, core = max(worst_bg)
        checks.append((f"quiet machine: background busy <= {BG_MAX_SHARE:.0%} of the least busy "
                       "scenario on each core", share <= BG_MAX_SHARE,
                       f"worst: {core} core, {ph} {rec} B: background {bg:.1%} of the core, "
                       f"{share:.0%} of the least busy scenario"))
    else:
        checks.append(("quiet machine (background measured)", False, "no background windows"))

    paced = [p for p in phases if p.name == "paced"]
    if paced and paced[0].samples:
        p = paced[0]
        slow = []
        for rec in p.sizes:
            rate = float(p.cell(p.scen[0], rec)[0].get("rate", 0))
            for sc in p.scen:
                m = med([mbps(s) for s in p.cell(sc, rec)])
                if rate > 0 and m is not None and m < RATE_REACHED * rate:
                    slow.append(f"{sc} {rec} B {m:.0f}/{rate:.0f}")
        checks.append(("equal rate: every scenario reached the paced rate "
                       f"(>= {RATE_REACHED:.0%})", not slow, ", ".join(slow) or "all"))

    order_rows = []
    for p in phases:
        for rec in p.sizes:
            for lo, hi in ORDERINGS:
                if lo not in p.scen or hi not in p.scen:
                    continue
                r = p.ratio(hi, lo, rec)
                if not r:
                    continue
                rate_lo = med([mbps(s) for s in p.cell(lo, rec)])
                rate_hi = med([mbps(s) for s in p.cell(hi, rec)])
                apart = (abs(rate_hi - rate_lo) / max(rate_hi, rate_lo)
                         if rate_lo and rate_hi else 0.0)
                # Impossible only if every round says so, beyond the slack: the whole
                # measured spread of the paired ratio lies below 1; unpaced, only between
                # scenarios at comparable rates (RATE_COMPARABLE).
                judged = p.name != "main" or apart <= RATE_COMPARABLE
                violated = judged and max(r) < 1 - ORDER_TOL
                note = "" if judged else f"not judged: rates {apart:.0%} apart"
                order_rows.append((p.name, rec, lo, hi, r, violated, note))
    bad_orders = [f"{SCEN_LABEL[hi]} < {SCEN_LABEL[lo]} ({ph}, {rec} B)"
                  for ph, rec, lo, hi, r, v, note in order_rows if v]
    checks.append(("no impossible ordering: plain TCP <= every scenario, NULL <= offload <= "
                   "software (beyond the spread of the per-round ratios)",
                   not bad_orders and bool(order_rows), "; ".join(bad_orders) or "none"))
    return checks, order_rows


def phase_table(w, p, evp, rate=None):
    """One phase's table: per record size and scenario, medians with their spread."""
    w("| record | scenario | Mbit/s | host core s/GB | of it the sender process | host softirq (ticks) | host / TCP | host / software | device core s/GB | tlsnicd s/GB | device model s/GB |")
    w("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    summary = {}
    for rec in p.sizes:
        for sc in p.scen:
            ss = p.cell(sc, rec)
            if not ss:
                continue
            host = list(p.rounds(sc, rec).values())
            vs_tcp = p.ratio(sc, "tcp", rec)
            vs_sw = p.ratio(sc, "sw", rec)
            summary[(sc, rec)] = dict(
                host=med(host), host_lo=spread(host)[0], host_hi=spread(host)[1],
                proc=med([proc_s_per_gb(s) for s in ss]), mbps=med([mbps(s) for s in ss]),
                devcore=med([devcore_s_per_gb(s) for s in ss]),
                dev=med([s["dev_cpu_s"] / gb(s) for s in ss]),
                model=med([model_s_per_gb(s) for s in ss]),
                vs_tcp=med(vs_tcp), vs_tcp_lo=spread(vs_tcp)[0], vs_tcp_hi=spread(vs_tcp)[1],
                vs_sw=med(vs_sw), vs_sw_lo=spread(vs_sw)[0], vs_sw_hi=spread(vs_sw)[1])
            sq = med([softirq_share(s) for s in ss])
            w(f"| {rec} | {SCEN_LABEL[sc]} | {summary[(sc, rec)]['mbps']:.0f} | {fmt_range(host)} | "
              f"{fmt_range([proc_s_per_gb(s) for s in ss])} | "
              f"{'n/a' if sq is None else f'{sq:.0%}'} | {fmt_range(vs_tcp, 2)} | "
              f"{fmt_range(vs_sw, 2)} | {fmt_range([devcore_s_per_gb(s) for s in ss])} | "
              f"{fmt_range([s['dev_cpu_s'] / gb(s) for s in ss])} | "
              f"{fmt_range([model_s_per_gb(s) for s in ss])} |")
    w("")
    return summary


def targets(w, verdict, p, summary, evp, samples):
    w("| target | record | measured: median (spread over rounds) | met? |")
    w("|---|---:|---:|---|")
    if "dev" not in p.scen:
        w("")
        return
    for rec in p.sizes:
        v = p.ratio("dev", "tcp", rec)
        verdict(p.name, f"host CPU offload / TCP <= {TARGET_HOST_VS_TCP}", rec, med(v),
                med(v) is not None and med(v) <= TARGET_HOST_VS_TCP, fmt_range(v, 2))
    for rec in p.sizes:
        v = p.removed(rec)
        verdict(p.name, f"(software - offload) / (software - TCP) >= {TARGET_REMOVED}", rec, med(v),
                med(v) is not None and med(v) >= TARGET_REMOVED, fmt_range(v, 2))
    for rec in p.sizes:
        v = p.ratio("dev", "sw", rec)
        if rec == 1457:
            verdict(p.name, f"host CPU offload / software <= {TARGET_VS_SW_1457} (the paper's 2x)",
                    rec, med(v), med(v) is not None and med(v) <= TARGET_VS_SW_1457, fmt_range(v, 2))
        else:
            w(f"| host CPU offload / software | {rec} | {fmt_range(v, 2)} | reported |")
    for rec in p.sizes:
        v = p.ratio("sw", "ssl", rec)
        verdict(p.name, "host CPU software / OpenSSL <= 1", rec, med(v),
                med(v) is not None and med(v) <= 1.0, fmt_range(v, 2))
    for rec in p.sizes:
        e = evp_best(evp, rec)
        model = summary.get(("dev", rec), {}).get("model")
        v = model / e if model is not None and e else None
        shown = "n/a" if v is None else f"{v:.2f} ({model:.3f} vs EVP {e:.3f} s/GB)"
        if p.name == "paced":
            # Judged where the device is busy: paced, it idles between bursts and meets
            # every frame with cold caches (what the pacing phase is not about).
            w(f"| device CPU (device model, in tlsnicd) / raw EVP, device mostly idle | {rec} | "
              f"{shown} | reported |")
            continue
        verdict(p.name, f"device CPU (device model, in tlsnicd) / raw EVP <= {TARGET_DEV_VS_EVP}",
                rec, v, v is not None and v <= TARGET_DEV_VS_EVP, shown)
    for rec in p.sizes:
        e = evp_best(evp, rec)
        d_dev = p.rounds("dev", rec, lambda s: s["dev_cpu_s"] / gb(s))
        d_null = p.rounds("null", rec, lambda s: s["dev_cpu_s"] / gb(s))
        crypto = med([d_dev[r] - d_null[r] for r in d_dev if r in d_null])
        v = crypto / e if crypto is not None and e else None
        shown = "n/a" if v is None else f"{v:.2f} ({crypto:.3f} vs EVP {e:.3f} s/GB)"
        w(f"| all of tlsnicd, emulation included: (offload - NULL) / raw EVP | {rec} | {shown} | reported |")
    w("")


def headline(p):
    """The equal-rate figures, one sentence per record size."""
    parts = []
    for rec in p.sizes:
        if "dev" not in p.scen or "tcp" not in p.scen or "sw" not in p.scen:
            continue
        parts.append(f"{rec}-byte records: offload / plain TCP {fmt_range(p.ratio('dev', 'tcp', rec), 2)}, "
                     f"offload / software {fmt_range(p.ratio('dev', 'sw', rec), 2)}, encryption cost "
                     f"removed {fmt_range(p.removed(rec), 2)}")
    return parts


def loss_section(w, verdicts, samples):
    loss_s = [s for s in samples if s.get("phase") == "loss"]
    loss_rows = []
    if not loss_s:
        return loss_rows
    w("With loss on the wire (tlsnicd --loss, GSO frames dropped whole). Resync bytes per "
      "retransmitted byte = device crypto work on out-of-order packets "
      "(tx_tls_ooo_crypto_bytes: own + record-prefix bytes) / bytes the sender's TCP "
      "retransmitted (TCP_INFO tcpi_bytes_retrans); prefix = tx_tls_resync_bytes / retransmitted.")
    w("")
    w("A sample that is not ok stalled: the device dropped retransmissions it could not "
      "resync (no-sync drops), TCP retransmitted them forever, the sender timed out.")
    w("")
    w("| loss | resync from | scenario | record | Mbit/s | retransmitted MB | ooo packets | resync bytes / retransmitted byte | prefix bytes / retransmitted byte | no-sync drops | ok |")
    w("|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---|")
    keys = sorted({(float(s["loss"]), s["resync"], s["scenario"], s["rec"]) for s in loss_s},
                  key=lambda k: (k[0], k[1], SCEN_ORDER.index(k[2]) if k[2] in SCEN_ORDER else 9, k[3]))
    for loss, rs, sc, rec in keys:
        ss = [s for s in loss_s if float(s["loss"]) == loss and s["resync"] == rs
              and s["scenario"] == sc and s["rec"] == rec]
        ok = [s for s in ss if s["ok"]]
        thr = med([mbps(s) for s in ok])
        # Counters of failed samples too: a stalled flow shows why (no-sync drops).
        rt = sum(s["retrans_bytes"] for s in ss)
        dev = [s.get("dev", {}) for s in ss]
        ooo = sum(d.get("tx_tls_ooo", 0) for d in dev)
        drops = sum(d.get("tx_tls_drop_no_sync_data", 0) for d in dev)
        # Ratios only from samples that finished (a stalled one retransmits in vain).
        rt_ok = sum(s["retrans_bytes"] for s in ok)
        crypto_ok = sum(s.get("dev", {}).get("tx_tls_ooo_crypto_bytes", 0) for s in ok)
        prefix_ok = sum(s.get("dev", {}).get("tx_tls_resync_bytes", 0) for s in ok)
        isd = sc == "dev"
        per = crypto_ok / rt_ok if isd and rt_ok else None
        pre = prefix_ok / rt_ok if isd and rt_ok else None
        loss_rows.append(dict(loss=loss, resync=rs, scenario=sc, rec=rec, mbps=thr,
                              retrans_bytes=rt, resync_per_retrans=per,
                              prefix_per_retrans=pre, drops=drops, ok=f"{len(ok)}/{len(ss)}"))
        w(f"| {loss * 100:g}% | {rs if isd else '-'} | {SCEN_LABEL[sc]} | {rec} | {fmt(thr, 0)} | "
          f"{rt / 1e6:.2f} | {ooo if isd else '-'} | {fmt(per, 2)} | {fmt(pre, 2)} | "
          f"{drops if isd else '-'} | {len(ok)}/{len(ss)} |")
    w("")
    for row in loss_rows:
        if row["scenario"] == "dev" and row["loss"] == 0.02 and row["resync"] == "ckpt":
            v = row["resync_per_retrans"]
            mark = "n/a" if v is None else ("met" if v <= TARGET_CKPT_RESYNC else "**missed**")
            store = [x for x in loss_rows if x["scenario"] == "dev" and x["loss"] == 0.02
                     and x["resync"] == "store" and x["rec"] == row["rec"]]
            sv = fmt(store[0]["resync_per_retrans"], 2) if store else "n/a"
            verdicts.append(dict(phase="loss", target=f"checkpoint resync bytes / retransmitted byte at 2% loss <= {TARGET_CKPT_RESYNC}",
                                 rec=row["rec"], value=v, met=None if v is None else v <= TARGET_CKPT_RESYNC))
            w(f"Target: at 2% loss, checkpoint resync reads <= {TARGET_CKPT_RESYNC} bytes per "
              f"retransmitted byte, {row['rec']}-byte records: {fmt(v, 2)} ({mark}); "
              f"host-store resync beside it: {sv}.")
    w("")
    return loss_rows


def main():
    src, out_dir = sys.argv[1], sys.argv[2]
    with open(src) as f:
        doc = json.load(f)
    meta, samples = doc["meta"], doc["samples"]
    evp = [s for s in samples if s["scenario"] == "evp" and s["ok"]]
    main_p = Phase(samples, "main")
    paced_p = Phase(samples, "paced")
    phases = [p for p in (main_p, paced_p) if p.all]
    rates = {rec: next(s.get("rate") for s in paced_p.samples if s["rec"] == rec)
             for rec in paced_p.sizes}
    if len(set(rates.values())) == 1:
        rate = f"{next(iter(rates.values()))} Mbit/s"
    else:
        rate = ", ".join(f"{r} Mbit/s at {rec} B" for rec, r in rates.items())
    checks, order_rows = validity(meta, phases)
    valid = all(ok for _, ok, _ in checks)

    lines = []
    w = lines.append
    secs = meta.get("sample_seconds")
    length = f"samples of {secs:g} s" if secs else f"{meta['mb']} MB per sample"
    w(f"Machine: {meta['cpu']}, {meta['nproc']} cores, Linux {meta['kernel']}. {meta['suite']}, "
      f"{length}, {meta['rounds']} alternating rounds; medians with the spread over rounds "
      f"(min-max) beside them; ratios are medians of per-round ratios. Host core: CPU "
      f"{meta['sender_cpu']} (the sender, and the host stack's receive processing, steered "
      f"there with RPS); device core: CPU {meta['daemon_cpu']} (tlsnicd, the peer's stack, the "
      f"receiver, which discards). Host CPU = the host core's busy time. TCP congestion control "
      f"{meta.get('cc', 'system default')}"
      + (f", TCP_NOTSENT_LOWAT {meta['notsent_lowat']} B" if meta.get('notsent_lowat') else "")
      + f". {meta['when']}, {meta.get('seconds', '?')} s.")
    w("")
    w(f"Command: `{meta['command']}`")
    w("")
    if meta.get("note"):
        w(meta["note"])
        w("")
    w(f"Validity: **{'VALID' if valid else 'INVALID'}**" +
      ("" if valid else " (" + "; ".join(n.split(':')[0] for n, ok, _ in checks if not ok) + ")"))
    w("")
    w("| check | result | detail |")
    w("|---|---|---|")
    for name, ok, detail in checks:
        w(f"| {name} | {'ok' if ok else '**FAILED**'} | {detail} |")
    w("")
    head = headline(paced_p) if paced_p.samples else []
    if head:
        w(f"Headline, every scenario at one rate ({rate}; host CPU per byte at equal throughput): "
          + "; ".join(head) + ".")
        w("")

    verdicts = []

    def verdict(phase, name, rec, val, ok, shown=None):
        mark = "n/a" if val is None else ("met" if ok else "**missed**")
        verdicts.append(dict(phase=phase, target=name, rec=rec, value=val,
                             met=None if val is None else bool(ok)))
        w(f"| {name} | {rec} | {shown if shown is not None else fmt(val, 2)} | {mark} |")

    summaries = {}
    if paced_p.samples:
        pace = {s.get("pace", "tcp") for s in paced_p.samples}
        how = ("SO_MAX_PACING_RATE" if pace == {"tcp"} else
               "the sender sleeps whenever 1 ms ahead of the rate" if pace == {"app"} else "mixed pacing")
        w(f"### Every scenario paced to one rate ({rate}; {how}): host cost per byte "
          "at equal throughput (the headline)")
        w("")
        summaries["paced"] = phase_table(w, paced_p, evp)
        targets(w, verdict, paced_p, summaries["paced"], evp, samples)
    if main_p.samples:
        w("### As fast as it goes (like the paper's tables)")
        w("")
        summaries["main"] = phase_table(w, main_p, evp)
        targets(w, verdict, main_p, summaries["main"], evp, samples)
    if evp:
        w("Raw EVP AEAD in the sender's process, CPU s/GB (exact process time), per record size: " +
          ", ".join(f"{rec} B {fmt_range([evp_s_per_gb(s) for s in evp if s['rec'] == rec])}"
                    for rec in sorted({s['rec'] for s in evp})) + "; targets use the fastest round.")
        w("")
    if order_rows:
        w("Orderings (host core s/GB, upper / lower scenario per round: an ordering is "
          f"impossible when every round is below {1 - ORDER_TOL:g}; unpaced, judged only "
          f"between scenarios whose rates are within {RATE_COMPARABLE:.0%}: there the device "
          "core sets each rate, and the host's cost per byte depends on it):")
        w("")
        w("| phase | record | upper / lower | per-round ratio | ok |")
        w("|---|---:|---|---:|---|")
        for ph, rec, lo, hi, r, v, note in order_rows:
            w(f"| {ph} | {rec} | {SCEN_LABEL[hi]} / {SCEN_LABEL[lo]} | {fmt_range(r, 2)} | "
              f"{'**impossible**' if v else note or 'ok'} |")
        w("")
    profiles = sorted(f for f in os.listdir(os.path.join(out_dir, "profile"))
                      if f.startswith("table-")) if os.path.isdir(os.path.join(out_dir, "profile")) else []
    if profiles:
        w("Where the host core's time goes, by symbol, scenarios side by side (perf over one "
          "sample each, at the paced rate; bench/eval/profile.sh): " + ", ".join(
              f"[{p[6:-3]} B](profile/{p})" for p in profiles) + ".")
        w("")
    loss_rows = loss_section(w, verdicts, samples)
    w("![host CPU per GB](host_cpu.png) ![throughput](throughput.png)"
      + (" ![host CPU per GB, paced](host_cpu_paced.png)" if paced_p.samples else ""))

    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "results.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    table = [dict(phase=ph, scenario=k[0], rec=k[1], **v) for ph, sm in summaries.items()
             for k, v in sm.items()]
    with open(os.path.join(out_dir, "summary.json"), "w") as f:
        json.dump(dict(meta=meta, valid=valid,
                       validity=[dict(check=n, ok=ok, detail=d) for n, ok, d in checks],
                       headline=head, verdicts=verdicts, loss=loss_rows, table=table), f, indent=1)

    # Charts: clustered bars, one cluster per record size, one bar per scenario.
    def dat(name, key, summary, scen_present, sizes):
        path = os.path.join(out_dir, name)
        with open(path, "w") as f:
            f.write("rec " + " ".join(f'"{SCEN_LABEL[s]}"' for s in scen_present) + "\n")
            for rec in sizes:
                f.write(f"{rec} " + " ".join(fmt(summary.get((s, rec), {}).get(key), 4).replace("n/a", "NaN")
                                             for s in scen_present) + "\n")
        return path

    charts = []
    if main_p.samples:
        sm = summaries["main"]
        charts.append(("host_cpu.png", dat("host_cpu.dat", "host", sm, main_p.scen, main_p.sizes),
                       "host core s/GB", "Host CPU per GB sent, as fast as it goes", len(main_p.scen)))
        charts.append(("throughput.png", dat("throughput.dat", "mbps", sm, main_p.scen, main_p.sizes),
                       "Mbit/s", "Throughput through tlsnicd", len(main_p.scen)))
    if paced_p.samples:
        sm = summaries["paced"]
        charts.append(("host_cpu_paced.png",
                       dat("host_cpu_paced.dat", "host", sm, paced_p.scen, paced_p.sizes),
                       "host core s/GB", f"Host CPU per GB sent, all paced to one rate ({rate})",
                       len(paced_p.scen)))
    for png, datf, ylabel, title, n in charts:
        plot = (f"set terminal pngcairo size 820,420 font ',9'\n"
                f"set output '{os.path.join(out_dir, png)}'\n"
                f"set title '{title} ({meta['suite']})'\nset ylabel '{ylabel}'\nset xlabel 'record size (bytes)'\n"
                "set style data histograms\nset style histogram clustered gap 1\n"
                "set style fill solid 0.8 border -1\nset termoption noenhanced\nset key outside below horizontal maxrows 2\nset yrange [0:*]\nset grid ytics\n"
                f"plot for [i=2:{n + 1}] '{datf}' using i:xtic(1) title columnheader(i)\n")
        r = subprocess.run(["gnuplot"], input=plot, text=True, capture_output=True)
        if r.returncode != 0:
            sys.stderr.write(f"report.py: gnuplot failed for {png}: {r.stderr}\n")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
