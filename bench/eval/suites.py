#!/usr/bin/env python3
"""One table over several `tlsnic bench` runs (one per suite: cipher x TLS version).

Usage: suites.py OUT_DIR [OUT_DIR ...]   (each holds the summary.json of one run)
Prints Markdown: per suite and record size, the host-CPU ratios of the equal-rate (paced)
phase, the headline (of the main phase, as fast as it goes, if a run has no paced phase), the
device target of the main phase, the run's validity, and the checkpoint / host-store resync
figures at the highest loss rate of the run.
Standard library only.
"""
import json
import os
import sys


def fmt(x, nd=2):
    return "n/a" if x is None else f"{x:.{nd}f}"


def main():
    rows = []
    for out in sys.argv[1:]:
        with open(os.path.join(out, "summary.json")) as f:
            doc = json.load(f)
        suite = doc["meta"]["suite"]
        phases = {t.get("phase", "main") for t in doc["table"]}
        host_phase = "paced" if "paced" in phases else "main"
        verdicts = doc["verdicts"]
        table = {(t["scenario"], t["rec"]): t for t in doc["table"]
                 if t.get("phase", "main") == host_phase}
        valid = {True: "valid", False: "INVALID"}.get(doc.get("valid"), "?")
        worst_loss = max((r["loss"] for r in doc.get("loss", [])), default=None)

        def verdict(prefix, rec, phase=host_phase):
            for v in verdicts:
                if (v["target"].startswith(prefix) and v["rec"] == rec and v["phase"] == phase
                        and "[" not in v["target"]):
                    return v["value"]
            return None

        def resync(kind, rec):
            for r in doc.get("loss", []):
                if (r["loss"] == worst_loss and r["resync"] == kind and r["scenario"] == "dev"
                        and r["rec"] == rec):
                    return r["resync_per_retrans"]
            return None

        for rec in sorted({t["rec"] for t in doc["table"]}):
            dev = table.get(("dev", rec), {})
            rows.append(
                f"| {suite} ({valid}) | {rec} | {fmt(dev.get('mbps'), 0)} | {fmt(dev.get('vs_tcp'))} | "
                f"{fmt(dev.get('vs_sw'))} | {fmt(verdict('(software - offload)', rec))} | "
                f"{fmt(verdict('host CPU software / OpenSSL', rec))} | "
                f"{fmt(verdict('device CPU (device model', rec, 'main'))} | "
                f"{fmt(resync('ckpt', rec))} | {fmt(resync('store', rec))} |")
    loss_note = "at the run's highest loss rate"
    print("| suite (run) | record | offload Mbit/s (paced) | host offload / TCP | host offload / software | "
          "encryption cost removed | software / OpenSSL | device model / EVP | "
          f"checkpoint resync B/B ({loss_note}) | host-store resync B/B |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(r)
    return 0


if __name__ == "__main__":
    sys.exit(main())
