#!/usr/bin/env python3
"""The emulated-cluster study (experiments/emulated-cluster/run.sh), short: 2 nodes x 2 ranks,
the links shaped so that communication dominates, fwd and train, a small N. Checks that
calibrate across the nodes measured both tiers and found the shaped link - its rate at the
largest messages within 10 % of the rate tc gives it, the machine file's large-message
bandwidth (fitted over every size above the latency regime) within 25 % - that it found
two ranks sharing each NIC, that every run is exact (bytes, messages, tiers) and predicted from
the calibrated file, that the error summary printed, and that the study left no namespace.
Exit 77 (skipped) where the machine allows no network namespaces or the test is not root.
Usage: cluster_study.py REPO ATTNSIM"""
import os
import re
import subprocess
import sys
import tempfile
import time

import h5py

REPO, ATTNSIM = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
RATE_MBIT = 100
problems = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what, flush=True)
    if not ok:
        problems.append(what)
    return ok


def main():
    if os.geteuid() != 0:
        print("SKIP: the emulated cluster needs root (network namespaces)")
        return 77
    work = tempfile.mkdtemp(prefix="attnsim-cluster-study-")
    out = os.path.join(work, "study.h5")
    env = dict(os.environ, ATTNSIM=ATTNSIM, SHAPES="2x2", REGIMES="comm", PASSES="fwd train",
               SEQ_COMM="256", RATE_COMM=f"{RATE_MBIT}mbit", MAX_MESSAGE="4M",
               CLUSTER_NAME="attnsimst", CLUSTER_SUBNET="198.18.46")
    t0 = time.time()
    p = subprocess.run([os.path.join(REPO, "experiments", "emulated-cluster", "run.sh"), out],
                       capture_output=True, text=True, env=env, timeout=1200)
    print(p.stdout[-6000:], p.stderr[-3000:])
    if p.returncode == 77:
        print("SKIP: this machine does not allow the emulated cluster")
        return 77
    check(p.returncode == 0, f"run.sh exit {p.returncode} after {time.time() - t0:.0f} s")
    check("whole runs" in p.stdout and "phases, inter ring" in p.stdout,
          "the error summary by tier and pattern printed")
    ns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    check("attnsimst-" not in ns and not os.path.exists("/run/attnsim-cluster/attnsimst"),
          "the study left no namespace or state directory")
    machine = out[:-3] + "-2x2-comm.machine"
    if not check(os.path.exists(machine) and os.path.exists(out), "machine file and runs written"):
        return 1
    text = open(machine).read()
    keys = dict(re.findall(r"^(\w+) = (\S+)", text, re.M))
    check(keys.get("measured_tiers") == "intra+inter", f"both tiers measured ({keys.get('measured_tiers')})")
    check(keys.get("gpus_per_nic") == "2", f"two ranks share a NIC (gpus_per_nic {keys.get('gpus_per_nic')})")
    bw = float(keys.get("inter_large_bandwidth", keys.get("inter_bandwidth", "0")))
    shaped = RATE_MBIT * 1e6 / 8
    with h5py.File(out, "r") as f:
        cal = [g for g in f["runs"].values() if g.attrs["kind"] == "calibration"]
        nic = dict(cal[0]["links/inter/ring_shift_nic"].attrs) if cal else {}
        rate = float(nic.get("largest_bytes_per_s", 0))
    print(f"  inter-node link: {rate / 1e6:.2f} MB/s at the largest messages "
          f"({nic.get('largest_bytes', 0):.0f} B), {bw / 1e6:.2f} MB/s fitted for large messages; "
          f"shaped to {shaped / 1e6:.2f} MB/s ({100 * (rate - shaped) / shaped:+.1f} %, "
          f"{100 * (bw - shaped) / shaped:+.1f} %)")
    check(abs(rate - shaped) <= 0.10 * shaped,
          "calibrate finds the shaped rate within 10 % (its largest messages)")
    check(abs(bw - shaped) <= 0.25 * shaped, "the machine file's inter-node bandwidth is the link's")
    with h5py.File(out, "r") as f:
        kinds = {}
        for name, g in f["runs"].items():
            a = g.attrs
            kinds[a["kind"]] = kinds.get(a["kind"], 0) + 1
            if a["kind"] != "distributed":
                continue
            check(a["counts_match"] == 1 and a["tiers_match"] == 1 and
                  a["machine_origin"] == machine,
                  f"run {name} {a['algorithm']} {a['pass']}: exact counts and tiers, predicted "
                  f"from {a['machine_origin']}")
        check(kinds.get("calibration") == 1 and kinds.get("distributed") == 14,
              f"1 calibration and 14 runs (ring x 3 layouts, a2d-no, a2d-o, ulysses, hybrid; fwd, "
              f"train): {kinds}")
    print(f"cluster_study: {len(problems)} problems, {time.time() - t0:.0f} s")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
