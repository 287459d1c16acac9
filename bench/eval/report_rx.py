#!/usr/bin/env python3
"""The receive side's report (scripts/bench-rx.sh): results-rx.json -> Markdown tables.

Host core CPU per byte for plain TCP, OpenSSL SSL_read, tlsnic software, tlsnic RX
offload (medians over rounds; ratios are medians of per-round ratios), the targets, and the
share of records the device decrypted and verified by loss rate, with resync distances.
"""
import json
import statistics
import sys

SCEN = ["tcp", "ssl", "sw", "dev"]
NAMES = {"tcp": "plain TCP read(2)", "ssl": "OpenSSL SSL_read", "sw": "tlsnic software",
         "dev": "tlsnic RX offload (tlsnicd)"}


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def div(a, b):
    return a / b if b else float("nan")


def per_gb(s, key):
    return s[key] / (s["bytes"] / 1e9) if s["bytes"] else float("nan")


def host_s(s):
    return (s["user_s"] + s["sys_s"]) / (s["bytes"] / 1e9) if s["bytes"] else float("nan")


def core_s(s):
    """The host core's busy time per GB: the sending side's accounting."""
    return per_gb(s, "core_busy_s")


def cpu_table(main_s, w, targets, judged, phase):
    """One phase's table: per record size and scenario, host CPU per GB and ratios."""
    sizes = sorted({s["rec"] for s in main_s})
    rounds = {}
    for s in main_s:  # round index per (size, scenario): the n-th sample of that pair
        k = (s["rec"], s["scenario"])
        s["_round"] = rounds.get(k, 0)
        rounds[k] = s["_round"] + 1
    w("| record | scenario | Mbit/s | host core s/GB | host / TCP | host / software | of it the receiver process | share decrypted by the device |")
    w("|---:|---|---:|---:|---:|---:|---:|---:|")
    for z in sizes:
        by = {sc: [s for s in main_s if s["rec"] == z and s["scenario"] == sc] for sc in SCEN}
        host = {sc: med([core_s(s) for s in by[sc]]) for sc in SCEN}
        for sc in SCEN:
            if not by[sc]:
                continue
            mbit = med([s["bytes"] * 8 / s["wall_s"] / 1e6 for s in by[sc]])
            share = ""
            if sc == "dev":
                recs = sum(s["host"]["TlsnicRxRecords"] for s in by[sc])
                dev = sum(s["host"]["TlsnicRxDeviceRecords"] for s in by[sc])
                share = f"{100 * dev / recs:.2f} %" if recs else "-"
            w(f"| {z} | {NAMES[sc]} | {mbit:.0f} | {host[sc]:.3f} | {div(host[sc], host['tcp']):.2f} | "
              f"{div(host[sc], host['sw']):.2f} | {med([host_s(s) for s in by[sc]]):.3f} | {share} |")
        # (software - offload) / (software - TCP), per round
        ratios, ratios_p = [], []
        for r in range(max(rounds.get((z, sc), 0) for sc in SCEN)):
            got = {sc: next((s for s in by[sc] if s["_round"] == r), None) for sc in ("tcp", "sw", "dev")}
            if None in got.values():
                continue
            c = {sc: core_s(got[sc]) for sc in got}
            p = {sc: host_s(got[sc]) for sc in got}
            if c["sw"] > c["tcp"]:
                ratios.append((c["sw"] - c["dev"]) / (c["sw"] - c["tcp"]))
            if p["sw"] > p["tcp"]:
                ratios_p.append((p["sw"] - p["dev"]) / (p["sw"] - p["tcp"]))
        goal = 0.9 if z >= 16384 else 0.8
        r = med(ratios)
        rounds_s = f" (rounds: {', '.join(f'{x:.2f}' for x in ratios)})" if ratios else ""
        targets.append((f"(software - offload) / (software - TCP) >= {goal}, host core, {phase}", z,
                        f"{r:.2f}{rounds_s}", ("met" if r >= goal else "**missed**") if judged else "reported"))
        targets.append((f"the same ratio on the receiver process alone (getrusage), {phase}", z,
                        f"{med(ratios_p):.2f}", "reported"))
    w("")


def main():
    data = json.load(open(sys.argv[1]))
    meta, samples = data["meta"], data["samples"]
    out = []
    w = out.append
    w(f"### Receive side: what RX offload buys the receiving host\n")
    w(f"Machine: {meta['cpu']}, {meta['nproc']} cores, Linux {meta['kernel']}. {meta['suite']}, "
      f"{meta['mb']} MB per sample, {meta['rounds']} alternating rounds, median shown (ratios: median "
      f"of the per-round ratios). Receiver pinned to CPU {meta['receiver_cpu']}, the host's receive "
      f"processing {meta['rps']}; tlsnicd and the sender (plain OpenSSL, in the peer namespace) on "
      f"CPU {meta['daemon_cpu']}. TCP congestion control {meta['cc']}. {meta['when']}.\n")
    w(f"Command: `{meta['command']}`\n")
    w("Host CPU is everything the host's core does during a sample, per GB received: its busy "
      "time (bench/eval/eval_cpu.h, the sending side's accounting), so the receiver's user "
      "and system time and the kernel's TCP receive processing (softirq, steered there) are "
      "all in it. The receiver process's own getrusage is beside it.\n")
    targets = []
    for phase, title in (("main", "Unpaced (each scenario as fast as it goes)"),
                         ("paced", "Paced (the sender held to one rate: CPU per byte at equal throughput)")):
        ss = [s for s in samples if s.get("phase") == phase and s["ok"]]
        if not ss:
            continue
        rate = ss[0].get("rate")
        w(f"{title}{f', {rate} Mbit/s' if rate else ''}:\n")
        judged = phase == "paced" or not any(s.get("phase") == "paced" and s["ok"] for s in samples)
        cpu_table(ss, w, targets, judged, phase)
    loss_s = [s for s in samples if s.get("phase") == "loss" and s["ok"]]
    losses = sorted({float(s["loss"]) for s in loss_s})
    if loss_s:
        w("RX offload with loss on the wire (tlsnicd --loss, frames dropped before the device):\n")
        w("| loss | record | Mbit/s | records device-verified | bytes the host did not decrypt | gaps | resync within 2 records | mean resync distance | placed by the device | requests | rechecks | no room | frames lost |")
        w("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for l in losses:
            for z in sorted({s["rec"] for s in loss_s}):
                ss = [s for s in loss_s if float(s["loss"]) == l and s["rec"] == z]
                if not ss:
                    continue
                h = {k: sum(s["host"][k] for s in ss) for k in ss[0]["host"]}
                d = {k: sum(s["dev"][k] for s in ss) for k in ss[0]["dev"]}
                recs, dev = h["TlsnicRxRecords"], h["TlsnicRxDeviceRecords"]
                share = 100 * dev / recs if recs else 0
                byts = h["TlsnicRxDeviceBytes"] + h["TlsnicRxSwBytes"]
                bshare = 100 * h["TlsnicRxDeviceBytes"] / byts if byts else 0
                gaps, w2 = h["TlsnicRxResyncGaps"], h["TlsnicRxResyncWithin2"]
                mean = h["TlsnicRxResyncRecords"] / gaps if gaps else 0
                mbit = med([s["bytes"] * 8 / s["wall_s"] / 1e6 for s in ss])
                w(f"| {100 * l:g}% | {z} | {mbit:.0f} | {share:.2f} % | {bshare:.2f} % | {gaps} | {w2} | "
                  f"{mean:.1f} | {d['rx_tls_resync_placed']} | {d['rx_tls_resync_req_start']} | "
                  f"{d['rx_tls_recheck']} | {d.get('rx_tls_no_room', 0)} | {d['to_host_fault_lost']} |")
                if l == 0:
                    targets.append(("records device-decrypted at 0 % loss >= 99 %", z, f"{share:.2f} %",
                                    "met" if share >= 99 else "**missed**"))
                elif abs(l - 0.01) < 1e-9:
                    targets.append(("records device-decrypted at 1 % loss >= 90 %", z, f"{share:.2f} %",
                                    "met" if share >= 90 else "**missed**"))
                if gaps and l > 0:  # without loss a gap is the connection's start, not a loss
                    targets.append((f"resync within 2 records of a gap, median ({100 * l:g} % loss)", z,
                                    f"{w2} of {gaps} gaps (mean {mean:.1f})",
                                    "met" if 2 * w2 >= gaps else "**missed**"))
        w("")
    w("| target | record | measured | met? |")
    w("|---|---:|---|---|")
    for t in targets:
        w(f"| {t[0]} | {t[1]} | {t[2]} | {t[3]} |")
    w("")
    open(sys.argv[2], "w").write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
