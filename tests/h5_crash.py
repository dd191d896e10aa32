#!/usr/bin/env python3
"""Crash safety of the HDF5 output: a writer killed at any point never leaves a run that looks
complete and never damages the runs already in the file.

Usage: h5_crash.py ATTNSIM

1. Hook points: ATTNSIM_KILL_AT=<point> makes attnsim SIGKILL itself there (sim/fail.c). For
   each point, a copy of a file holding earlier runs gets two more runs appended by a command
   that dies at that point. Afterwards the file must open with h5py and h5dump, every earlier
   run must read back bit-identical (every dataset and every attribute), every run in /runs
   must be complete and listed in /summary, and nothing else may have changed.
2. A new file killed before its first publish must not exist at the path at all.
3. External kills: a long sweep is SIGKILLed after random delays; same checks.
4. SIGTERM: the writer removes its temporary copy.
"""
import glob
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import h5py
import numpy as np

ATTNSIM = os.path.abspath(sys.argv[1])
SMALL = ["--kernel", "fa2", "--pass", "fwd", "--heads", "1", "--head-dim", "16", "--sram", "1k"]

# (point, does the commit of the first new run happen before it?)
POINTS = [
    ("h5:after_lock", False), ("h5:copy", False), ("h5:after_copy", False),
    ("h5:after_group", False), ("kernels:attrs", False), ("h5:dataset", False),
    ("h5:dataset@6", False), ("h5:after_summary", False), ("h5:after_complete", False),
    ("h5:after_close", False), ("h5:after_fsync", False), ("h5:after_rename", True),
    ("kernels:before_write", False), ("kernels:after_write", True),
    ("h5:after_copy@2", True), ("h5:dataset@15", True), ("h5:after_fsync@2", True),
]


def dump_file(path):
    """Every attribute and dataset of the file as bytes, keyed by path."""
    out = {}
    with h5py.File(path, "r") as f:
        def as_bytes(v):
            if isinstance(v, (str, bytes)):
                return v.encode() if isinstance(v, str) else v
            a = np.asarray(v)
            if a.dtype == object:  # variable-length strings: compare the text, not pointers
                return b"\0".join(x.encode() if isinstance(x, str) else bytes(x) for x in a.ravel())
            return a.tobytes()

        def attrs(name, obj):
            for k, v in obj.attrs.items():
                out[f"{name}@{k}"] = as_bytes(v)
        attrs("/", f)

        def visit(name, obj):
            attrs(name, obj)
            if isinstance(obj, h5py.Dataset):
                if name == "summary":  # the table grows: earlier rows must stay as they were
                    for i, row in enumerate(obj[()]):
                        out[f"summary[{i}]"] = row.tobytes()
                else:
                    out[name] = as_bytes(obj[()])
        f.visititems(visit)
    return out


def check_consistent(path):
    """Opens with h5py and h5dump; every run complete and listed once in /summary."""
    problems = []
    r = subprocess.run(["h5dump", "-H", path], capture_output=True)
    if r.returncode != 0:
        problems.append(f"h5dump fails: {r.stderr.decode()[:300]}")
    with h5py.File(path, "r") as f:
        if f.attrs["schema"] != "attnsim/1":
            problems.append("schema attribute lost")
        runs = sorted(f["runs"].keys())
        summary = f["summary"][()]
        ids = [int(x) for x in summary["run"]]
        if ids != [int(x) for x in runs]:
            problems.append(f"/summary lists {ids}, /runs has {runs}")
        for name in runs:
            g = f["runs"][name]
            if g.attrs.get("complete") != 1:
                problems.append(f"run {name} is not complete")
            for ds in ("measured/hbm_bytes_read", "predicted/hbm_bytes_read", "measured/time_s"):
                if ds not in g:
                    problems.append(f"run {name} lacks {ds}")
    return problems, len(runs)


def earlier_intact(before, after):
    missing = [k for k in before if k not in after]
    changed = [k for k in before if k in after and before[k] != after[k]]
    return missing, changed


def main():
    if not shutil.which("h5dump"):
        print("h5dump not found: install hdf5-tools (tests/install-deps.sh does)")
        return 1
    failures = 0
    work = tempfile.mkdtemp()
    try:
        base = os.path.join(work, "base.h5")
        r = subprocess.run([ATTNSIM, "kernels", *SMALL, "--seq", "16,32", "--out", base],
                           capture_output=True)
        assert r.returncode == 0, r.stderr.decode()
        base_dump = dump_file(base)
        with open(base, "rb") as f:
            base_bytes = f.read()

        # 1. hook points
        for point, committed_first in POINTS:
            d = tempfile.mkdtemp(dir=work)
            path = os.path.join(d, "out.h5")
            shutil.copy(base, path)
            env = dict(os.environ, ATTNSIM_KILL_AT=point)
            p = subprocess.run([ATTNSIM, "kernels", *SMALL, "--seq", "64,48", "--out", path],
                               env=env, capture_output=True, timeout=60)
            problems = []
            if p.returncode != -signal.SIGKILL:
                problems.append(f"not killed at {point} (status {p.returncode})")
            cons, nruns = check_consistent(path)
            problems += cons
            missing, changed = earlier_intact(base_dump, dump_file(path))
            if missing or changed:
                problems.append(f"earlier runs damaged: missing {missing[:5]} changed {changed[:5]}")
            want_runs = 3 if committed_first else 2
            if nruns != want_runs:
                problems.append(f"{nruns} runs in the file, expected {want_runs}")
            if not committed_first:
                with open(path, "rb") as f:
                    if f.read() != base_bytes:
                        problems.append("file bytes changed although no run was committed")
            visible = [x for x in os.listdir(d) if not x.startswith(".")]
            if visible != ["out.h5"]:
                problems.append(f"unexpected files: {visible}")
            print(f"{'ok  ' if not problems else 'FAIL'} kill at {point:22s}: {nruns} runs, "
                  f"leftover temporary copies: {len(os.listdir(d)) - 1}")
            for pr in problems:
                print("     " + pr)
            failures += bool(problems)

        # 1b. the next writer removes the temporary copies that killed writers left
        d = tempfile.mkdtemp(dir=work)
        path = os.path.join(d, "out.h5")
        shutil.copy(base, path)
        for point in ("h5:after_copy", "h5:after_close"):
            subprocess.run([ATTNSIM, "kernels", *SMALL, "--seq", "16", "--out", path],
                           env=dict(os.environ, ATTNSIM_KILL_AT=point), capture_output=True)
        left_before = len(glob.glob(os.path.join(d, ".*attnsim-tmp*")))
        subprocess.run([ATTNSIM, "kernels", *SMALL, "--seq", "16", "--out", path], check=True,
                       capture_output=True)
        left_after = len(glob.glob(os.path.join(d, ".*attnsim-tmp*")))
        # the second writer already removed the first one's copy; the third removes the second's
        ok = left_before == 1 and left_after == 0
        print(f"{'ok  ' if ok else 'FAIL'} stale temporary copies: {left_before} after two kills, "
              f"{left_after} after the next run")
        failures += not ok

        # 2. a new file killed before its first publish does not exist
        d = tempfile.mkdtemp(dir=work)
        path = os.path.join(d, "new.h5")
        env = dict(os.environ, ATTNSIM_KILL_AT="h5:created")
        p = subprocess.run([ATTNSIM, "kernels", *SMALL, "--seq", "16", "--out", path], env=env,
                           capture_output=True, timeout=60)
        ok = p.returncode == -signal.SIGKILL and not os.path.exists(path)
        print(f"{'ok  ' if ok else 'FAIL'} kill while creating a new file: path exists = {os.path.exists(path)}")
        failures += not ok

        # 3. external SIGKILL at random moments of a long sweep
        rng = random.Random(1)
        d = tempfile.mkdtemp(dir=work)
        path = os.path.join(d, "sweep.h5")
        shutil.copy(base, path)
        prev_dump, prev_runs = base_dump, 2
        sweep = ["--seq", ",".join(str(64 + i) for i in range(250))]
        for trial in range(12):
            p = subprocess.Popen([ATTNSIM, "kernels", *SMALL, *sweep, "--out", path],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(rng.uniform(0.02, 0.8))
            p.send_signal(signal.SIGKILL)
            p.wait()
            problems, nruns = check_consistent(path)
            now = dump_file(path)
            missing, changed = earlier_intact(prev_dump, now)
            if missing or changed:
                problems.append(f"earlier runs damaged: missing {missing[:5]} changed {changed[:5]}")
            if nruns < prev_runs:
                problems.append(f"runs went from {prev_runs} to {nruns}")
            print(f"{'ok  ' if not problems else 'FAIL'} external SIGKILL #{trial + 1}: {nruns} runs")
            for pr in problems:
                print("     " + pr)
            failures += bool(problems)
            prev_dump, prev_runs = now, nruns

        # 4. SIGTERM: the temporary copy is removed by the clean-up path
        d = tempfile.mkdtemp(dir=work)
        path = os.path.join(d, "term.h5")
        shutil.copy(base, path)
        p = subprocess.Popen([ATTNSIM, "kernels", *SMALL, *sweep, "--out", path],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        p.send_signal(signal.SIGTERM)
        p.wait()
        left = glob.glob(os.path.join(d, ".*attnsim-tmp*"))
        problems, nruns = check_consistent(path)
        ok = p.returncode == -signal.SIGTERM and not left and not problems
        print(f"{'ok  ' if ok else 'FAIL'} SIGTERM: status {p.returncode}, temporary copies left {left}, {problems}")
        failures += not ok
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"h5_crash: {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
