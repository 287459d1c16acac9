#!/usr/bin/env python3
"""Turns the samples of `tlsnic bench` (results.json) into results.md and gnuplot charts.

Usage: report.py RESULTS_JSON OUT_DIR

Every figure is a median over the alternating rounds; every ratio is the median of the
per-round ratios (the two scenarios of one round ran side by side, so drift cancels).
Standard library only.
"""
import json
import os
import statistics
import subprocess
import sys

SCEN_ORDER = ["tcp", "null", "dev", "sw", "ssl"]
OFFLOAD = ["dev"]
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
TARGET_DEV_VS_EVP = 1.25
TARGET_CKPT_RESYNC = 2.0


def gb(s):
    return s["bytes"] / 1e9


def host_s_per_gb(s):
    return (s["user_s"] + s["sys_s"]) / gb(s)


def model_s_per_gb(s):
    """Time tlsnicd spent inside the device model (its frame hook), s/GB: the device's own
    work, without the emulation's TUN reads and writes. None without the counters."""
    d = s.get("dev") or {}
    if "to_wire_hook_ns" not in d:
        return None
    return (d["to_wire_hook_ns"] + d.get("to_host_hook_ns", 0)) / 1e9 / gb(s)


def evp_best(evp, rec):
    """Raw EVP's CPU per GB: the fastest round (the machine's uncontended speed; a round
    that shared the core's sibling with other work runs up to 1.5x slower here)."""
    xs = [(s["user_s"] + s["sys_s"]) / gb(s) for s in evp if s["rec"] == rec]
    return min(xs) if xs else None


def mbps(s):
    return s["bytes"] * 8 / s["wall_s"] / 1e6 if s["wall_s"] > 0 else 0.0


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(x, nd=3):
    return "n/a" if x is None else f"{x:.{nd}f}"


def by_round(samples, scen, rec, fn):
    """{round: fn(sample)} for one scenario and record size."""
    out = {}
    for s in samples:
        if s["scenario"] == scen and s["rec"] == rec:
            out.setdefault(s["round"], []).append(fn(s))
    return {r: statistics.mean(v) for r, v in out.items()}


def ratio_med(samples, rec, fn_num, fn_den):
    """Median over rounds of fn_num(round) / fn_den(round); fn_* map (samples, round) -> value."""
    vals = []
    rounds = sorted({s["round"] for s in samples if s["rec"] == rec})
    for r in rounds:
        n, d = fn_num(r), fn_den(r)
        if n is not None and d not in (None, 0):
            vals.append(n / d)
    return med(vals)


def phase_section(w, verdict, samples, phase, title):
    """Table and targets of one phase (main: as fast as it goes; paced: at one rate)."""
    ph = [s for s in samples if s.get("phase") == phase and s["ok"]]
    sizes = sorted({s["rec"] for s in ph})
    scen_present = [x for x in SCEN_ORDER if any(s["scenario"] == x for s in ph)]

    def per_round(scen, rec, fn):
        return by_round(ph, scen, rec, fn)

    w(f"### {title}")
    w("")
    w("| record | scenario | Mbit/s | host user s/GB | host sys s/GB | host s/GB | tlsnicd s/GB | device model s/GB | host / TCP | host / software |")
    w("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    summary = {}
    for rec in sizes:
        for sc in scen_present:
            ss = [s for s in ph if s["scenario"] == sc and s["rec"] == rec]
            if not ss:
                continue
            host = med([host_s_per_gb(s) for s in ss])
            user = med([s["user_s"] / gb(s) for s in ss])
            sys_ = med([s["sys_s"] / gb(s) for s in ss])
            thr = med([mbps(s) for s in ss])
            dcpu = med([s["dev_cpu_s"] / gb(s) for s in ss])
            model = med([model_s_per_gb(s) for s in ss])
            h_sc = per_round(sc, rec, host_s_per_gb)
            h_tcp = per_round("tcp", rec, host_s_per_gb)
            h_sw = per_round("sw", rec, host_s_per_gb)
            vs_tcp = ratio_med(ph, rec, h_sc.get, h_tcp.get)
            vs_sw = ratio_med(ph, rec, h_sc.get, h_sw.get)
            summary[(sc, rec)] = dict(host=host, user=user, sys=sys_, mbps=thr, dev=dcpu,
                                      model=model, vs_tcp=vs_tcp, vs_sw=vs_sw)
            w(f"| {rec} | {SCEN_LABEL[sc]} | {thr:.0f} | {user:.3f} | {sys_:.3f} | {host:.3f} | "
              f"{fmt(dcpu)} | {fmt(model)} | {fmt(vs_tcp, 2)} | {fmt(vs_sw, 2)} |")
    w("")
    w("| target | record | measured | met? |")
    w("|---|---:|---:|---|")
    offl = [x for x in OFFLOAD if x in scen_present]
    for od in offl:
        tag = "" if od == "dev" else " [diagnostic: flags polled <= 1/ms]"
        for rec in sizes:
            v = summary.get((od, rec), {}).get("vs_tcp")
            verdict(phase, f"host CPU offload / TCP <= {TARGET_HOST_VS_TCP}{tag}", rec, v,
                    v is not None and v <= TARGET_HOST_VS_TCP)
        for rec in sizes:
            h_dev = per_round(od, rec, host_s_per_gb)
            h_sw = per_round("sw", rec, host_s_per_gb)
            h_tcp = per_round("tcp", rec, host_s_per_gb)
            vals = [(h_sw[r] - h_dev[r]) / (h_sw[r] - h_tcp[r]) for r in h_dev
                    if r in h_sw and r in h_tcp and h_sw[r] != h_tcp[r]]
            v = med(vals)
            verdict(phase, f"(software - offload) / (software - TCP) >= {TARGET_REMOVED}{tag}", rec, v,
                    v is not None and v >= TARGET_REMOVED)
        for rec in sizes:
            v = summary.get((od, rec), {}).get("vs_sw")
            paper = " (paper: ~0.5)" if rec == 1457 else ""
            w(f"| offload / software host CPU{paper}{tag} | {rec} | {fmt(v, 2)} | reported |")
    for rec in sizes:
        h_sw = per_round("sw", rec, host_s_per_gb)
        h_ssl = per_round("ssl", rec, host_s_per_gb)
        v = ratio_med(ph, rec, h_sw.get, h_ssl.get)
        verdict(phase, "host CPU software / OpenSSL <= 1", rec, v, v is not None and v <= 1.0)
    evp = [s for s in samples if s["scenario"] == "evp" and s["ok"]]
    for od in offl:
        tag = "" if od == "dev" else " [diagnostic]"
        for rec in sizes:
            e = evp_best(evp, rec)
            model = summary.get((od, rec), {}).get("model")
            v = model / e if model is not None and e else None
            shown = None if v is None else f"{v:.2f} ({model:.3f} vs EVP {e:.3f} s/GB)"
            if phase == "paced":
                # Judged where the device is busy: paced, it idles between bursts and meets
                # every frame with cold caches (what the pacing phase is not about).
                w(f"| device CPU (device model, in tlsnicd) / raw EVP, device mostly idle{tag} | "
                  f"{rec} | {shown or 'n/a'} | reported |")
                continue
            verdict(phase, f"device CPU (device model, in tlsnicd) / raw EVP <= {TARGET_DEV_VS_EVP}{tag}",
                    rec, v, v is not None and v <= TARGET_DEV_VS_EVP, shown)
        for rec in sizes:
            e = evp_best(evp, rec)
            d_dev = per_round(od, rec, lambda s: s["dev_cpu_s"] / gb(s))
            d_null = per_round("null", rec, lambda s: s["dev_cpu_s"] / gb(s))
            crypto = med([d_dev[r] - d_null[r] for r in d_dev if r in d_null])
            v = crypto / e if crypto is not None and e else None
            shown = "n/a" if v is None else f"{v:.2f} ({crypto:.3f} vs EVP {e:.3f} s/GB)"
            w(f"| all of tlsnicd, emulation included: (offload - NULL) / raw EVP{tag} | {rec} | {shown} | reported |")
    w("")
    return summary, sizes, scen_present


def main():
    src, out_dir = sys.argv[1], sys.argv[2]
    with open(src) as f:
        doc = json.load(f)
    meta, samples = doc["meta"], doc["samples"]
    failed = [s for s in samples if not s["ok"]]

    lines = []
    w = lines.append
    w(f"Machine: {meta['cpu']}, {meta['nproc']} cores, Linux {meta['kernel']}. "
      f"{meta['suite']}, {meta['mb']} MB per sample, {meta['rounds']} alternating rounds, "
      f"median shown (ratios: median of the per-round ratios). Sender pinned to CPU {meta['sender_cpu']}, "
      f"tlsnicd to CPU {meta['daemon_cpu']}; the receiver discards (does not decrypt); "
      f"TCP congestion control {meta.get('cc', 'system default')}. {meta['when']}.")
    w("")
    w(f"Command: `{meta['command']}`")
    w("")
    if meta.get("note"):
        w(meta["note"])
        w("")
    verdicts = []

    def verdict(phase, name, rec, val, ok, shown=None):
        mark = "n/a" if val is None else ("met" if ok else "**missed**")
        verdicts.append(dict(phase=phase, target=name, rec=rec, value=val,
                             met=None if val is None else bool(ok)))
        w(f"| {name} | {rec} | {shown if shown is not None else fmt(val, 2)} | {mark} |")

    summary, sizes, scen_present = phase_section(
        w, verdict, samples, "main", "As fast as it goes (like the paper's tables)")
    paced = None
    if any(s.get("phase") == "paced" for s in samples):
        rate = next(s.get("rate") for s in samples if s.get("phase") == "paced")
        paced = phase_section(w, verdict, samples, "paced",
                      f"Every scenario paced to {rate} Mbit/s (SO_MAX_PACING_RATE): host cost per "
                      "byte at equal throughput, so a slower device does not change the sender's "
                      "batching")

    # Loss.
    loss_s = [s for s in samples if s.get("phase") == "loss"]
    loss_rows = []
    if loss_s:
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
            crypto = sum(d.get("tx_tls_ooo_crypto_bytes", 0) for d in dev)
            prefix = sum(d.get("tx_tls_resync_bytes", 0) for d in dev)
            ooo = sum(d.get("tx_tls_ooo", 0) for d in dev)
            drops = sum(d.get("tx_tls_drop_no_sync_data", 0) for d in dev)
            # Ratios only from samples that finished (a stalled one retransmits in vain).
            rt_ok = sum(s["retrans_bytes"] for s in ok)
            crypto_ok = sum(s.get("dev", {}).get("tx_tls_ooo_crypto_bytes", 0) for s in ok)
            prefix_ok = sum(s.get("dev", {}).get("tx_tls_resync_bytes", 0) for s in ok)
            per = crypto_ok / rt_ok if sc in OFFLOAD and rt_ok else None
            pre = prefix_ok / rt_ok if sc in OFFLOAD and rt_ok else None
            loss_rows.append(dict(loss=loss, resync=rs, scenario=sc, rec=rec, mbps=thr,
                                  retrans_bytes=rt, resync_per_retrans=per,
                                  prefix_per_retrans=pre, drops=drops,
                                  ok=f"{len(ok)}/{len(ss)}"))
            isd = sc in OFFLOAD
            w(f"| {loss * 100:g}% | {rs if isd else '-'} | {SCEN_LABEL[sc]} | {rec} | {fmt(thr, 0)} | "
              f"{rt / 1e6:.2f} | {ooo if isd else '-'} | {fmt(per, 2)} | {fmt(pre, 2)} | "
              f"{drops if isd else '-'} | {len(ok)}/{len(ss)} |")
        w("")
        for row in loss_rows:
            if row["scenario"] == "dev" and row["loss"] == 0.02 and row["resync"] == "ckpt":
                verdict_line = ("met" if row["resync_per_retrans"] is not None
                                and row["resync_per_retrans"] <= TARGET_CKPT_RESYNC else
                                "n/a" if row["resync_per_retrans"] is None else "**missed**")
                store = [x for x in loss_rows if x["scenario"] == "dev" and x["loss"] == 0.02
                         and x["resync"] == "store" and x["rec"] == row["rec"]]
                sv = fmt(store[0]["resync_per_retrans"], 2) if store else "n/a"
                verdicts.append(dict(phase="loss", target=f"checkpoint resync bytes / retransmitted byte at 2% loss <= {TARGET_CKPT_RESYNC}",
                                     rec=row["rec"], value=row["resync_per_retrans"],
                                     met=None if verdict_line == "n/a" else verdict_line == "met"))
                w(f"Target: at 2% loss, checkpoint resync reads <= {TARGET_CKPT_RESYNC} bytes per "
                  f"retransmitted byte, {row['rec']}-byte records: {fmt(row['resync_per_retrans'], 2)} "
                  f"({verdict_line}); host-store resync beside it: {sv}.")
        w("")
    if failed:
        w(f"{len(failed)} sample(s) failed: " + ", ".join(
            sorted({f"{s['scenario']}/{s['rec']}/{s.get('phase')}" for s in failed})) + ".")
        w("")
    w("![host CPU per GB](host_cpu.png) ![throughput](throughput.png)"
      + (" ![host CPU per GB, paced](host_cpu_paced.png)" if paced else ""))

    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "results.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(out_dir, "summary.json"), "w") as f:
        json.dump(dict(meta=meta, verdicts=verdicts, loss=loss_rows,
                       table=[dict(scenario=k[0], rec=k[1], **v) for k, v in summary.items()]),
                  f, indent=1)

    # Charts: clustered bars, one cluster per record size, one bar per scenario.
    def dat(name, key, summary=summary, scen_present=scen_present, sizes=sizes):
        path = os.path.join(out_dir, name)
        with open(path, "w") as f:
            f.write("rec " + " ".join(f'"{SCEN_LABEL[s]}"' for s in scen_present) + "\n")
            for rec in sizes:
                f.write(f"{rec} " + " ".join(fmt(summary.get((s, rec), {}).get(key), 4).replace("n/a", "NaN")
                                             for s in scen_present) + "\n")
        return path

    host_dat = dat("host_cpu.dat", "host")
    thr_dat = dat("throughput.dat", "mbps")
    charts = [("host_cpu.png", host_dat, "sender CPU s/GB (user+sys)", "Host CPU per GB sent",
               len(scen_present)),
              ("throughput.png", thr_dat, "Mbit/s", "Throughput through tlsnicd", len(scen_present))]
    if paced:
        p_summary, p_sizes, p_scen = paced
        charts.append(("host_cpu_paced.png",
                       dat("host_cpu_paced.dat", "host", p_summary, p_scen, p_sizes),
                       "sender CPU s/GB (user+sys)", f"Host CPU per GB sent, all paced to {rate} Mbit/s",
                       len(p_scen)))
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
