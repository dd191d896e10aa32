#!/usr/bin/env python3
"""Independent check of attnsim's byte counters: run under Open MPI's pml monitoring component,
which counts every point-to-point message the application sends ("E" lines, per peer), and
compare with attnsim's own per-peer counters (measured/peer_bytes_sent and
measured/peer_messages_sent). Every phase of attnsim is point-to-point, and the --check gathers
are collectives (counted by monitoring separately), so the two must agree exactly.
Usage: run_monitoring.py ATTNSIM MPIEXEC"""
import glob
import os
import subprocess
import sys
import tempfile

import h5py
import numpy as np

ATTNSIM, MPIEXEC = os.path.abspath(sys.argv[1]), sys.argv[2]
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
CASES = [  # one algorithm per job, so the monitoring totals belong to one run
    (4, ["--algo", "ring", "--layout", "zigzag", "--pass", "train", "--causal"]),
    (4, ["--algo", "a2d-no", "--pass", "train"]),
    (6, ["--algo", "a2d-o", "--grid", "2x3", "--pass", "train", "--causal"]),
    (4, ["--algo", "ulysses", "--pass", "train", "--kv-heads", "4"]),
    (8, ["--algo", "hybrid", "--ulysses-size", "2", "--pass", "train", "--causal", "--layout",
         "zigzag", "--kv-heads", "4"]),
]


def monitored(prefix, P):
    """bytes[src][dst] and messages of the application's point-to-point traffic."""
    b = np.zeros((P, P), dtype=np.int64)
    m = np.zeros((P, P), dtype=np.int64)
    files = glob.glob(prefix + ".*.prof")
    for path in files:
        for line in open(path):
            f = line.split("\t")
            if f[0] == "E":
                src, dst = int(f[1]), int(f[2])
                b[src, dst] += int(f[3].split()[0])
                m[src, dst] += int(f[4].split()[0])
    return b, m, len(files)


def main():
    problems = []
    with tempfile.TemporaryDirectory() as d:
        for i, (P, args) in enumerate(CASES):
            out, prefix = os.path.join(d, f"r{i}.h5"), os.path.join(d, f"mon{i}")
            cmd = [MPIEXEC, "-n", str(P), "--oversubscribe", "--mca", "pml_monitoring_enable", "2",
                   "--mca", "pml_monitoring_enable_output", "3", "--mca",
                   "pml_monitoring_filename", prefix, ATTNSIM, "run", "--check", "--seq", "50",
                   "--heads", "8", "--head-dim", "8", *args, "--out", out]
            p = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=300)
            if p.returncode != 0:
                problems.append(f"{args}: status {p.returncode}: {p.stderr[-800:]}")
                continue
            mb, mm, nfiles = monitored(prefix, P)
            with h5py.File(out, "r") as f:
                (g,) = f["runs"].values()
                ab = g["measured/peer_bytes_sent"][()].astype(np.int64)
                am = g["measured/peer_messages_sent"][()].astype(np.int64)
            if nfiles != P:
                problems.append(f"{args}: {nfiles} monitoring files for {P} ranks")
            elif not np.array_equal(ab, mb) or not np.array_equal(am, mm):
                problems.append(f"{args}: attnsim bytes\n{ab}\nmonitoring\n{mb}\nmessages\n{am}\n{mm}")
            else:
                print(f"ok   P={P} {' '.join(args)}: {int(mb.sum())} bytes in {int(mm.sum())} "
                      f"messages over {int((mb > 0).sum())} rank pairs, identical per pair")
    for p in problems:
        print("FAIL", p)
    print(f"run_monitoring: {len(CASES)} jobs, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
