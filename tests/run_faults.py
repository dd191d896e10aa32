#!/usr/bin/env python3
"""Fault injection into attnsim run (4 ranks): a rank SIGKILLed at 30 points - inside phases,
while rank 0 builds, stages and publishes the runs (one run a batch: ATTNSIM_H5_BATCH=1), between
runs, and in the default mode (a publisher thread, batches by time) - and a full disk and a
file-size limit while writing. Each time: the job ends within 30 s, with a message naming the
failed rank (or the failed call), the output file opens, the runs already in it read back
bit-identical, and no incomplete run is listed in /summary.
Usage: run_faults.py ATTNSIM MPIEXEC"""
import os
import shutil
import subprocess
import sys
import tempfile
import time

import h5py
import numpy as np

ATTNSIM, MPIEXEC = os.path.abspath(sys.argv[1]), sys.argv[2]
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           ATTNSIM_H5_BATCH="1")
ARGS = ["run", "--algo", "ring,a2d-no,a2d-o", "--pass", "train", "--seq", "48", "--heads", "2",
        "--head-dim", "8"]
POINTS = ([("1", f"comm:send@{k}") for k in (1, 3, 6, 10, 15, 22)] +
          [("2", f"comm:send@{k}") for k in (2, 9)] + [("3", "comm:send@5")] +
          [("1", "run:after_passes"), ("3", "run:after_passes@2")] +
          # appending in place (the default)
          [("0", p) for p in ("h5:after_lock", "h5:ip_runs", "h5:after_group", "h5:dataset@9",
                              "h5:dataset", "h5:dataset@4", "h5:ip_written", "h5:after_complete",
                              "h5:ip_synced", "h5:ip_committed", "h5:ip_committed@2",
                              "h5:after_lock@3", "h5:ip_runs@2", "h5:published@1", "h5:close")] +
          [("0", p + "+thread") for p in ("h5:ip_written", "h5:ip_committed")] +
          # appending by copy (ATTNSIM_H5_COPY=1: the way for files it cannot append to in place)
          [("0", p + "+copy") for p in ("h5:after_copy", "h5:after_summary", "h5:after_close",
                                        "h5:after_fsync", "h5:after_rename", "h5:after_rename@2",
                                        "h5:after_append@2", "h5:link@2")])


def snapshot(path):
    """Every dataset and attribute of the complete runs, and the summary rows."""
    out = {}
    with h5py.File(path, "r") as f:
        runs = sorted(f["runs"])
        for name in runs:
            g = f["runs"][name]
            out[name + "@complete"] = int(g.attrs.get("complete", 0))

            def visit(n, o):
                if isinstance(o, h5py.Dataset):
                    v = o[()]
                    out[f"{name}/{n}"] = v.tobytes() if isinstance(v, np.ndarray) and v.dtype != object else repr(v).encode()
            g.visititems(visit)
        rows = f["summary"][()]
        for i, r in enumerate(rows):
            out[f"summary[{i}]"] = r.tobytes()
        listed = sorted(int(r["run"]) for r in rows)
    return out, runs, listed


def consistent(path, before):
    after, runs, listed = snapshot(path)
    problems = []
    if [int(r) for r in runs] != listed:
        problems.append(f"summary lists {listed}, runs {runs}")
    for r in runs:
        if after[r + "@complete"] != 1:
            problems.append(f"run {r} incomplete")
    changed = [k for k, v in before.items() if after.get(k) != v]
    if changed:
        problems.append(f"earlier runs changed: {changed[:4]}")
    r = subprocess.run(["h5dump", "-H", path], capture_output=True)
    if r.returncode:
        problems.append("h5dump cannot read the file")
    return problems, len(runs)


def main():
    problems = []
    with tempfile.TemporaryDirectory() as d:
        base = os.path.join(d, "base.h5")
        subprocess.run([MPIEXEC, "-n", "4", "--oversubscribe", ATTNSIM, *ARGS, "--algo", "ring",
                        "--out", base], check=True, capture_output=True, env=ENV)
        before, _, _ = snapshot(base)
        for rank, point in POINTS:
            path = os.path.join(d, "f.h5")
            shutil.copy(base, path)
            env = dict(ENV, ATTNSIM_KILL_AT=point.split("+")[0], ATTNSIM_KILL_RANK=rank)
            if point.endswith("+thread"):  # the default mode: the publisher thread dies
                del env["ATTNSIM_H5_BATCH"]
            if point.endswith("+copy"):
                env["ATTNSIM_H5_COPY"] = "1"
            t0 = time.time()
            p = subprocess.run([MPIEXEC, "-n", "4", "--oversubscribe", ATTNSIM, *ARGS, "--out",
                                path], capture_output=True, text=True, env=env, timeout=120)
            took = time.time() - t0
            issues, nruns = consistent(path, before)
            named = f"rank {rank}" in p.stderr
            if p.returncode == 0 or took > 30 or not named:
                issues.append(f"status {p.returncode}, {took:.1f} s, names rank {rank}: {named}")
            print(f"{'ok  ' if not issues else 'FAIL'} rank {rank} killed at {point:20s}: ended in "
                  f"{took:4.1f} s, {nruns} runs in the file")
            problems += [f"{point}: {i}" for i in issues]

        # a full disk: a tmpfs just larger than the file cannot hold the copy of it
        small = os.path.join(d, "small")
        os.mkdir(small)
        room = (os.path.getsize(base) // 4096 + 3) * 4096
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={room}", "tmpfs", small],
                                 capture_output=True).returncode == 0
        try:
            if mounted:
                path = os.path.join(small, "f.h5")
                shutil.copy(base, path)
                full_before, _, _ = snapshot(path)
                p = subprocess.run([MPIEXEC, "-n", "4", "--oversubscribe", ATTNSIM, *ARGS, "--out",
                                    path], capture_output=True, text=True, env=ENV, timeout=120)
                issues, nruns = consistent(path, full_before)
                lines = [l for l in p.stderr.splitlines() if l.startswith("attnsim") and " progress " not in l]
                leftovers = [x for x in os.listdir(small) if x != "f.h5"]
                if p.returncode == 0 or len(lines) != 1 or "No space left" not in lines[0] or \
                        "rank 0" not in lines[0] or leftovers:
                    issues.append(f"status {p.returncode}, lines {lines}, leftovers {leftovers}")
                print(f"{'ok  ' if not issues else 'FAIL'} full disk (tmpfs of {room} B): {lines}")
                problems += [f"full disk: {i}" for i in issues]
            else:
                print("note: mount -t tmpfs is not permitted here; the full disk is covered by the "
                      "file-size limit below only")
        finally:
            if mounted:
                subprocess.run(["umount", small])
        # a file-size limit (EFBIG) while writing: on the single-process kernels command (under
        # mpirun the limit would also hit Open MPI's own session files)
        path = os.path.join(d, "limit.h5")
        subprocess.run([ATTNSIM, "kernels", "--kernel", "fa2", "--pass", "fwd", "--seq", "16",
                        "--heads", "1", "--head-dim", "16", "--sram", "1k", "--out", path],
                       check=True, capture_output=True)
        limit_before, _, _ = snapshot(path)
        p = subprocess.run(["prlimit", f"--fsize={os.path.getsize(path) + 4096}", ATTNSIM,
                            "kernels", "--kernel", "fa2", "--pass", "fwd", "--seq", "32,64,128",
                            "--heads", "1", "--head-dim", "16", "--sram", "1k", "--out", path],
                           capture_output=True, text=True, timeout=120)
        issues, nruns = consistent(path, limit_before)
        lines = [l for l in p.stderr.splitlines() if l.startswith("attnsim")]
        leftovers = [x for x in os.listdir(d) if x.startswith(".limit.h5")]
        if p.returncode != 1 or len(lines) != 1 or "File too large" not in lines[0] or leftovers:
            issues.append(f"status {p.returncode}, lines {lines}, leftovers {leftovers}")
        print(f"{'ok  ' if not issues else 'FAIL'} file-size limit: {lines}")
        problems += [f"file-size limit: {i}" for i in issues]
    for p in problems:
        print("FAIL", p)
    print(f"run_faults: {len(POINTS)} kill points + full disk + file-size limit, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
