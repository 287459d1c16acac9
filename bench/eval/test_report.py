#!/usr/bin/env python3
"""report.py judges a run: synthetic runs, one sound and one per broken promise, each must get
the verdict it deserves (VALID, or INVALID naming the check that failed). No network, no
timing: the samples are made up.

Usage: test_report.py REPORT_PY
"""
import copy
import json
import os
import re
import subprocess
import sys
import tempfile

# Host core s/GB per scenario at one record size: plain TCP lowest, NULL <= offload <= software.
HOST = {"tcp": 1.00, "null": 1.10, "dev": 1.12, "sw": 1.80, "ssl": 2.10}


def sample(phase, sc, rnd, rec, host_s_per_gb, rate=None, seconds=2.0):
    gbytes = 0.25
    s = {"scenario": sc, "round": rnd, "rec": rec, "bytes": int(gbytes * 1e9), "ok": True,
         "phase": phase, "loss": "0", "resync": "ckpt", "wall_s": seconds, "user_s": 0.1,
         "sys_s": 0.1, "proc_s": 0.2, "dev_cpu_s": 0.1, "retrans_bytes": 0, "segs_in": 10000,
         "bg_host": 0.002, "bg_dev": 0.002, "min_s": seconds,
         "host": {"cpu": 1, "busy_s": host_s_per_gb * gbytes, "wall_s": seconds, "user_s": 0.1,
                  "sys_s": 0.1, "irq_s": 0, "softirq_s": 0.05, "steal_s": 0, "packets": 10050,
                  "rps_ipis": 500, "precise": 1},
         "devcore": {"cpu": 0, "busy_s": 0.5, "wall_s": seconds, "user_s": 0.2, "sys_s": 0.2,
                     "irq_s": 0, "softirq_s": 0.1, "steal_s": 0, "packets": 40000,
                     "rps_ipis": 0, "precise": 0},
         "dev": {"to_wire_hook_ns": 50_000_000, "to_host_hook_ns": 1_000_000}}
    if rate:
        s["rate"] = str(rate)
        s["bytes"] = int(rate * 1e6 / 8 * seconds)
        s["host"]["busy_s"] = host_s_per_gb * s["bytes"] / 1e9
    return s


def run_doc(rounds=3):
    samples = []
    for rnd in range(rounds):
        for sc, h in HOST.items():
            wobble = 1 + 0.01 * ((rnd * 7 + len(sc)) % 3 - 1)
            samples.append(sample("main", sc, rnd, 1457, h * wobble))
            samples.append(sample("paced", sc, rnd, 1457, h * wobble, rate=1000))
        ev = sample("main", "evp", rnd, 1457, 0)
        ev["proc_s"] = 0.06
        samples.append(ev)
    meta = {"cpu": "test", "nproc": 2, "kernel": "x", "when": "now", "command": "tlsnic bench",
            "suite": "TLS 1.2 AES-128-GCM", "mb": 150, "rounds": rounds, "sender_cpu": 1,
            "daemon_cpu": 0, "seconds": 60, "cc": "cubic", "note": "", "sample_seconds": 2,
            "host_rx_steered": True, "notsent_lowat": 131072}
    return {"meta": meta, "samples": samples}


def judge(report, doc):
    with tempfile.TemporaryDirectory() as d:
        src = os.path.join(d, "results.json")
        with open(src, "w") as f:
            json.dump(doc, f)
        r = subprocess.run([sys.executable, report, src, d], capture_output=True, text=True)
        if r.returncode != 0:
            raise SystemExit(f"FAIL: report.py exited {r.returncode}: {r.stderr}")
        with open(os.path.join(d, "summary.json")) as f:
            summary = json.load(f)
        with open(os.path.join(d, "results.md")) as f:
            md = f.read()
    failed = [c["check"] for c in summary["validity"] if not c["ok"]]
    return summary["valid"], failed, md


def expect_invalid(report, doc, check_prefix, what):
    valid, failed, md = judge(report, doc)
    if valid or not any(c.startswith(check_prefix) for c in failed):
        raise SystemExit(f"FAIL: {what}: expected INVALID by '{check_prefix}', got valid={valid} {failed}")
    if "Validity: **INVALID**" not in md:
        raise SystemExit(f"FAIL: {what}: results.md does not say INVALID")
    print(f"ok: {what} -> INVALID ({check_prefix})")


def main():
    report = sys.argv[1]
    good = run_doc()
    valid, failed, md = judge(report, good)
    if not valid:
        raise SystemExit(f"FAIL: a sound run was judged INVALID: {failed}")
    if "Validity: **VALID**" not in md or "Headline, every scenario at one rate" not in md:
        raise SystemExit("FAIL: results.md lacks the VALID verdict or the equal-rate headline")
    if not re.search(r"\| \d\.\d{3} \(\d\.\d{3}-\d\.\d{3}\) \|", md):
        raise SystemExit("FAIL: results.md shows no spread (min-max over rounds) beside a median")
    print("ok: a sound run -> VALID, with the equal-rate headline")

    doc = copy.deepcopy(good)  # offload below the NULL floor in every round (paced)
    for s in doc["samples"]:
        if s["scenario"] == "dev" and s["phase"] == "paced":
            s["host"]["busy_s"] *= 0.8
    expect_invalid(report, doc, "no impossible ordering", "offload below NULL in every round")

    doc = copy.deepcopy(good)  # below NULL in one round only: within the spread
    for s in doc["samples"]:
        if s["scenario"] == "dev" and s["phase"] == "paced" and s["round"] == 0:
            s["host"]["busy_s"] *= 0.8
    valid, failed, _ = judge(report, doc)
    if not valid:
        raise SystemExit(f"FAIL: one round out of order was judged impossible: {failed}")
    print("ok: offload below NULL in one round of three -> still VALID (within the spread)")

    doc = copy.deepcopy(good)  # unpaced, offload below NULL but 20 % slower: not judged
    for s in doc["samples"]:
        if s["scenario"] == "dev" and s["phase"] == "main":
            s["host"]["busy_s"] *= 0.8 * 0.8
            s["bytes"] = int(s["bytes"] * 0.8)
    valid, failed, md = judge(report, doc)
    if not valid or "not judged: rates 20% apart" not in md:
        raise SystemExit(f"FAIL: an unpaced ordering between different rates was judged: {failed}")
    print("ok: unpaced, offload below NULL at a 20 % lower rate -> not judged, still VALID")

    doc = copy.deepcopy(good)  # unpaced, offload below NULL at the same rate: judged
    for s in doc["samples"]:
        if s["scenario"] == "dev" and s["phase"] == "main":
            s["host"]["busy_s"] *= 0.8
    expect_invalid(report, doc, "no impossible ordering", "unpaced offload below NULL at one rate")

    doc = copy.deepcopy(good)  # a scenario cheaper than plain TCP
    for s in doc["samples"]:
        if s["scenario"] == "ssl" and s["phase"] == "main":
            s["host"]["busy_s"] *= 0.3
    expect_invalid(report, doc, "no impossible ordering", "OpenSSL below plain TCP")

    doc = copy.deepcopy(good)  # ACKs processed elsewhere: steering did not work
    for s in doc["samples"]:
        if s["scenario"] == "tcp" and s["phase"] == "main" and "host" in s:
            s["host"]["packets"] = 100
    expect_invalid(report, doc, "host receive processing steered", "ACKs not on the host core")

    doc = copy.deepcopy(good)  # short samples
    doc["meta"]["sample_seconds"] = 0.5
    for s in doc["samples"]:
        s["wall_s"] = 0.5
    expect_invalid(report, doc, "samples of at least", "0.5 s samples")

    doc = copy.deepcopy(good)  # a busy machine
    for s in doc["samples"]:
        s["bg_host"] = 0.5
    expect_invalid(report, doc, "quiet machine", "half the host core busy with other work")

    doc = copy.deepcopy(good)  # the paced rate not reached
    for s in doc["samples"]:
        if s["phase"] == "paced" and s["scenario"] == "ssl":
            s["bytes"] //= 2
            s["host"]["busy_s"] /= 2
    expect_invalid(report, doc, "equal rate", "OpenSSL at half the paced rate")

    doc = copy.deepcopy(good)  # a failed sample
    doc["samples"][3]["ok"] = False
    expect_invalid(report, doc, "every sample finished", "one sample failed")
    print("PASS: report.py judges runs as it should")
    return 0


if __name__ == "__main__":
    sys.exit(main())
