#!/usr/bin/env python3
"""Puts a `tlsnic bench` output folder into the README's Results section and bench/results/.

Usage: readme_results.py OUT_DIR   (from the repository root)
Replaces what lies between the bench-results markers of README.md with OUT_DIR/results.md
(chart links pointing at bench/results/) and copies results.md, results.json and the PNGs
to bench/results/. The receive side's tables (appended to results.md by bench.sh) are not
put between the markers (README has its own section for them); results-rx.md / .json go
to bench/results/rx/.
"""
import os
import shutil
import sys

START, END = "<!-- bench-results:start -->", "<!-- bench-results:end -->"


def main():
    out = sys.argv[1]
    os.makedirs("bench/results", exist_ok=True)
    for f in ("results.json", "host_cpu.png", "throughput.png", "host_cpu_paced.png"):
        shutil.copy(os.path.join(out, f), os.path.join("bench/results", f))
    prof = os.path.join(out, "profile")
    if os.path.isdir(prof):
        os.makedirs("bench/results/profile", exist_ok=True)
        for f in os.listdir(prof):
            if f.startswith("table-"):
                shutil.copy(os.path.join(prof, f), os.path.join("bench/results/profile", f))
    if os.path.exists(os.path.join(out, "results-rx.md")):
        os.makedirs("bench/results/rx", exist_ok=True)
        for f in ("results-rx.md", "results-rx.json"):
            shutil.copy(os.path.join(out, f), os.path.join("bench/results/rx", f))
    with open(os.path.join(out, "results.md")) as f:
        md = f.read().split("\n### Receive side", 1)[0]
    with open("bench/results/results.md", "w") as f:
        f.write(md.rstrip("\n") + "\n\nThe receive side: [rx/results-rx.md](rx/results-rx.md).\n")
    md = md.replace("](host_cpu.png)", "](bench/results/host_cpu.png)")
    md = md.replace("](throughput.png)", "](bench/results/throughput.png)")
    md = md.replace("](host_cpu_paced.png)", "](bench/results/host_cpu_paced.png)")
    md = md.replace("](profile/", "](bench/results/profile/")
    md = md.replace("### ", "#### ")
    with open("README.md") as f:
        readme = f.read()
    a, b = readme.index(START) + len(START), readme.index(END)
    with open("README.md", "w") as f:
        f.write(readme[:a] + "\n" + md.strip() + "\n" + readme[b:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
