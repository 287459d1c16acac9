#!/usr/bin/env python3
"""Host-core profile per GB, scenarios side by side (bench/eval/profile.sh makes the input).

Usage: profile_table.py SAMPLES_JSONL SCENARIO PERF_DATA [SCENARIO PERF_DATA ...]
Each perf file is `perf record -e cpu-clock -C HOST_CORE` over one sample of that scenario;
its samples (periods, ns) are divided by the GB the sample sent: seconds of the host core
per GB, by symbol, the first scenario first, sorted by how much offload (dev) adds to it.
PROFILE_COMMS=bench_eval,swapper/1,ksoftirqd/1 (say) keeps only those tasks' samples, for a
machine where other work shares the core (softirq work done inside another task is then lost).
"""
import json
import os
import re
import subprocess
import sys


def per_symbol(data, gbytes):
    comms = ["--comms", os.environ["PROFILE_COMMS"]] if os.environ.get("PROFILE_COMMS") else []
    out = subprocess.run(["perf", "report", "-i", data, "--stdio", "--no-children", "--sort",
                          "sym", "-F", "period,sym", "-g", "none"] + comms,
                         capture_output=True, text=True, check=True).stdout
    d = {}
    for line in out.splitlines():
        m = re.match(r"\s+(\d+)\s+\[(.)\]\s+(\S+)", line)
        if m:
            d[m.group(3)] = d.get(m.group(3), 0) + int(m.group(1)) / 1e9 / gbytes
    return d


def main():
    samples = {}
    for line in open(sys.argv[1]):
        s = json.loads(line)
        samples[s["scenario"]] = s
    pairs = list(zip(sys.argv[2::2], sys.argv[3::2]))
    profs = []
    for sc, data in pairs:
        s = samples[sc]
        profs.append(per_symbol(data, s["bytes"] / 1e9))
    names = [sc for sc, _ in pairs]
    # Sorted by what offload adds to the first scenario (the last one's if there is no offload).
    first, last = profs[0], profs[names.index("dev")] if "dev" in names else profs[-1]
    keys = sorted(set().union(*profs), key=lambda k: -(last.get(k, 0) - first.get(k, 0)))
    print("| symbol | " + " | ".join(f"{n} s/GB" for n in names) + " |")
    print("|---|" + "---:|" * len(names))
    print("| **all (perf)** | " + " | ".join(f"**{sum(p.values()):.3f}**" for p in profs) + " |")
    print("| host core busy (bench accounting) | " + " | ".join(
        f"{samples[n]['host']['busy_s'] / (samples[n]['bytes'] / 1e9):.3f}" for n in names) + " |")
    for k in keys[:30]:
        print(f"| {k} | " + " | ".join(f"{p.get(k, 0):.4f}" for p in profs) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
