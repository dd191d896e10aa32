#!/usr/bin/env python3
"""Crash safety of the HDF5 output: a writer killed at any point never leaves a run that looks
complete and never damages the runs already in the file (docs/hdf5-schema.md, "Crash safety").

Usage: h5_crash.py ATTNSIM

1. Kill points, batches of two (ATTNSIM_H5_BATCH=2, published synchronously):
   ATTNSIM_KILL_AT=<point>[@n] makes attnsim SIGKILL itself at the n-th arrival (sim/fail.c).
   A file holding 2 runs gets 5 more (batches: runs 1-2, 3-4, and 5 at the end) from a command
   that dies at the point: while a run is built, inside a batch, while a batch is copied,
   appended, linked, summarised, closed, locked, fsynced, renamed, between batches, and during
   the final publication. Afterwards the file opens with h5py and h5dump, every earlier run
   reads back bit-identical, every run in /runs is complete and listed once in /summary, and
   the file holds exactly the runs of the batches published before the kill.
2. The default mode (a publisher thread, batches by time): kill points inside the thread and
   external SIGKILLs at random moments of a long sweep; the same invariants.
3. A new file killed before its first publication does not exist; the next writer removes the
   private copies killed writers left; SIGTERM removes the writer's copy and lock file.
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

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from h5util import consistent, dump, unchanged  # noqa: E402

ATTNSIM = os.path.abspath(sys.argv[1])
SMALL = ["--kernel", "fa2", "--pass", "fwd", "--heads", "1", "--head-dim", "16", "--sram", "1k"]
SWEEP = ["--seq", "64,48,40,24,56"]  # 5 runs
KERNEL_DS = ("measured/hbm_bytes_read", "predicted/hbm_bytes_read", "measured/time_s")
# a kernel run writes 11 datasets (h5:dataset points): run 3's are arrivals 23..33

# (point, batches published before it: 0, 1 (runs 1-2), 2 (runs 1-4), 3 (all 5)); appending in
# place (the default), then by copy (COPY: ATTNSIM_H5_COPY=1, the way for files whose layout
# the in-place writer does not handle)
INPLACE = [
    ("kernels:attrs@1", 0), ("h5:after_group@1", 0), ("h5:dataset@3", 0),
    ("h5:after_complete@1", 0), ("kernels:after_write@1", 0), ("h5:after_complete@2", 0),
    ("h5:publish@1", 0), ("h5:after_lock@1", 0), ("h5:ip_runs@1", 0), ("h5:ip_written@1", 0),
    ("h5:ip_synced@1", 0), ("h5:ip_committed@1", 1), ("h5:published@1", 1),
    ("kernels:before_write@3", 1), ("h5:dataset@25", 1), ("h5:after_lock@2", 1),
    ("h5:ip_runs@2", 1), ("h5:ip_written@2", 1), ("h5:ip_synced@2", 1),
    ("h5:ip_committed@2", 2), ("h5:close@1", 2), ("h5:ip_runs@3", 2), ("h5:ip_written@3", 2),
    ("h5:ip_synced@3", 2), ("h5:ip_committed@3", 3), ("h5:published@3", 3),
]
COPY = [
    ("kernels:attrs@1", 0), ("h5:after_group@1", 0), ("h5:dataset@3", 0),
    ("h5:after_complete@1", 0), ("kernels:after_write@1", 0), ("h5:after_complete@2", 0),
    ("h5:copy@1", 0), ("h5:after_copy@1", 0), ("h5:after_append@1", 0), ("h5:link@1", 0),
    ("h5:link@2", 0), ("h5:after_summary@1", 0), ("h5:after_close@1", 0), ("h5:publish@1", 0),
    ("h5:after_lock@1", 0), ("h5:after_fsync@1", 0), ("h5:after_rename@1", 1),
    ("h5:published@1", 1), ("kernels:before_write@3", 1), ("h5:after_group@3", 1),
    ("h5:dataset@25", 1), ("h5:after_complete@3", 1), ("h5:link@3", 1),
    ("h5:after_rename@2", 2), ("kernels:after_write@5", 2), ("h5:close@1", 2),
    ("h5:after_copy@3", 2), ("h5:after_summary@3", 2), ("h5:after_fsync@3", 2),
    ("h5:after_rename@3", 3), ("h5:published@3", 3),
]
POINTS = [(p, n, False) for p, n in INPLACE] + [(p, n, True) for p, n in COPY]
RUNS_AFTER = {0: 2, 1: 4, 2: 6, 3: 7}


def run(args, env=None, **kw):
    return subprocess.run([ATTNSIM, *args], env=env, capture_output=True, timeout=300, **kw)


def report(ok, what, problems=()):
    print(f"{'ok  ' if ok else 'FAIL'} {what}")
    for p in problems:
        print("     " + p)
    return 0 if ok else 1


def h5dump_all(path):
    r = subprocess.run(["h5dump", path], capture_output=True, text=True)
    return r.returncode, r.stdout.split("\n", 1)[-1]  # all but the line naming the file


def kill_points(work, base, base_dump, base_bytes):
    global base_bytes_dump
    base_bytes_dump = h5dump_all(base)
    failures = 0
    for point, published, copy in POINTS:
        d = tempfile.mkdtemp(dir=work)
        path = os.path.join(d, "out.h5")
        shutil.copy(base, path)
        env = dict(os.environ, ATTNSIM_KILL_AT=point, ATTNSIM_H5_BATCH="2")
        if copy:
            env["ATTNSIM_H5_COPY"] = "1"
        p = run(["kernels", *SMALL, *SWEEP, "--out", path], env=env)
        problems = []
        if p.returncode != -signal.SIGKILL:
            problems.append(f"not killed at {point} (status {p.returncode})")
        cons, nruns = consistent(path, KERNEL_DS)
        problems += cons
        missing, changed = unchanged(base_dump, dump(path))
        if missing or changed:
            problems.append(f"earlier runs damaged: missing {missing[:5]} changed {changed[:5]}")
        if nruns != RUNS_AFTER[published]:
            problems.append(f"{nruns} runs in the file, expected {RUNS_AFTER[published]}")
        if published == 0:
            # by copy the file's bytes are untouched; in place, bytes change only where no
            # version refers to them (past the end, the reserved room): what h5dump shows of
            # the whole file is unchanged
            with open(path, "rb") as f:
                now = f.read()
            if copy and now != base_bytes:
                problems.append("file bytes changed although no batch was published")
            if not copy and h5dump_all(path) != base_bytes_dump:
                problems.append("the file's content changed although no batch was published")
        visible = [x for x in os.listdir(d) if not x.startswith(".")]
        if visible != ["out.h5"]:
            problems.append(f"unexpected files: {visible}")
        failures += report(not problems, f"kill at {point + (' (copy)' if copy else ''):31s}: "
                           f"{nruns} runs, hidden files "
                           f"left: {len(os.listdir(d)) - 1}", problems)
    return failures


def threaded(work, base):
    """The default mode: kill points in the publisher thread, external kills."""
    failures = 0
    mbase = os.path.join(work, "mbase.h5")
    args = ["model", "--procs", "16", "--algo", "ring,a2d-no", "--head-dim", "64,128",
            "--causal=both"]
    r = run([*args, "--seq", "1024,2048", "--out", mbase])
    assert r.returncode == 0, r.stderr.decode()
    base_dump = dump(mbase)
    base_runs = consistent(mbase)[1]
    long_seq = ["--seq", ",".join(str(1024 + 16 * i) for i in range(250))]  # 2,000 runs
    env = dict(os.environ, ATTNSIM_H5_BATCH_SECONDS="0.02")
    for point in ("h5:ip_runs@2", "h5:ip_written@1", "h5:ip_synced@2", "h5:ip_committed@2",
                  "h5:link@1500+copy", "h5:after_copy@1+copy", "h5:after_summary@1+copy",
                  "h5:after_rename@1+copy"):
        d = tempfile.mkdtemp(dir=work)
        path = os.path.join(d, "m.h5")
        shutil.copy(mbase, path)
        e = dict(env, ATTNSIM_KILL_AT=point.split("+")[0])
        if point.endswith("+copy"):
            e["ATTNSIM_H5_COPY"] = "1"
        p = run([*args, *long_seq, "--out", path], env=e)
        problems, nruns = consistent(path)
        missing, changed = unchanged(base_dump, dump(path, runs=sorted(base_dump_runs(base_dump))))
        if missing or changed:
            problems.append(f"earlier runs damaged: missing {missing[:3]} changed {changed[:3]}")
        if p.returncode != -signal.SIGKILL:
            problems.append(f"not killed (status {p.returncode})")
        if nruns < base_runs:
            problems.append(f"{nruns} runs, fewer than the {base_runs} before")
        failures += report(not problems, f"publisher thread killed at {point}: {nruns} runs",
                           problems)

    # external SIGKILL at random moments of a long sweep
    rng = random.Random(1)
    d = tempfile.mkdtemp(dir=work)
    path = os.path.join(d, "sweep.h5")
    shutil.copy(mbase, path)
    prev_dump, prev_runs = base_dump, base_runs
    longer = ["--seq", ",".join(str(1024 + 16 * i) for i in range(250)), "--dtype",
              "f32,bf16"]  # 4,000 runs
    for trial in range(6):
        p = subprocess.Popen([ATTNSIM, *args, *longer, "--out", path], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.05, 0.6))
        p.send_signal(signal.SIGKILL)
        p.wait()
        problems, nruns = consistent(path)
        now = dump(path, runs=sorted(base_dump_runs(prev_dump)))
        missing, changed = unchanged(prev_dump, now)
        if missing or changed:
            problems.append(f"earlier runs damaged: missing {missing[:3]} changed {changed[:3]}")
        if nruns < prev_runs:
            problems.append(f"runs went from {prev_runs} to {nruns}")
        failures += report(not problems, f"external SIGKILL #{trial + 1}: {nruns} runs",
                           problems)
        prev_dump, prev_runs = dump(path, runs=sorted(base_dump_runs(base_dump))), nruns

    # SIGTERM: the clean-up path removes the private copy and the lock file
    d = tempfile.mkdtemp(dir=work)
    path = os.path.join(d, "term.h5")
    shutil.copy(mbase, path)
    # long enough to be writing whatever the machine's speed (24,000 runs); the signal comes
    # once the writer's private files exist
    longest = ["model", "--procs", "16,32,64,128", "--algo", "ring,a2d-no", "--head-dim",
               "64,128", "--causal=both", "--dtype", "f32,f16,bf16", "--seq",
               ",".join(str(1024 + 16 * i) for i in range(250))]
    p = subprocess.Popen([ATTNSIM, *longest, "--out", path], env=dict(env, ATTNSIM_H5_COPY="1"),
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while p.poll() is None and time.time() < deadline and len(os.listdir(d)) < 2:
        time.sleep(0.005)
    seen = [x for x in os.listdir(d) if x != "term.h5"]
    p.send_signal(signal.SIGTERM)
    p.wait()
    left = [x for x in os.listdir(d) if x != "term.h5"]
    problems, nruns = consistent(path)
    if not seen:
        problems.append("the writer's private files never appeared before the signal")
    ok = p.returncode == -signal.SIGTERM and not left and not problems
    failures += report(ok, f"SIGTERM (copy): status {p.returncode}, files left {left}", problems)
    # in place: SIGTERM while publishing (every ~20 ms) leaves no lock file and a whole file
    for trial in range(3):
        size0 = os.path.getsize(path)
        p = subprocess.Popen([ATTNSIM, *longest, "--out", path], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 60
        while p.poll() is None and time.time() < deadline and os.path.getsize(path) == size0:
            time.sleep(0.002)
        time.sleep(0.05 * trial)
        p.send_signal(signal.SIGTERM)
        p.wait()
        left = [x for x in os.listdir(d) if x != "term.h5"]
        problems, n2 = consistent(path)
        if os.path.getsize(path) == size0:
            problems.append("the writer never appended before the signal")
        ok = p.returncode == -signal.SIGTERM and not left and not problems and n2 >= nruns
        failures += report(ok, f"SIGTERM (in place) #{trial + 1}: status {p.returncode}, "
                           f"{n2} runs, files left {left}", problems)
        nruns = n2
    return failures


def base_dump_runs(d):
    return {k.split("/")[1].split("@")[0] for k in d if k.startswith("runs/")}


def main():
    if not shutil.which("h5dump"):
        print("h5dump not found: install hdf5-tools (tests/install-deps.sh does)")
        return 1
    failures = 0
    work = tempfile.mkdtemp()
    try:
        base = os.path.join(work, "base.h5")
        r = run(["kernels", *SMALL, "--seq", "16,32", "--out", base])
        assert r.returncode == 0, r.stderr.decode()
        base_dump = dump(base)
        with open(base, "rb") as f:
            base_bytes = f.read()
        failures += kill_points(work, base, base_dump, base_bytes)

        # the next writer removes the private copies killed writers left (same host)
        d = tempfile.mkdtemp(dir=work)
        path = os.path.join(d, "out.h5")
        shutil.copy(base, path)
        for point in ("h5:after_copy", "h5:after_close"):
            run(["kernels", *SMALL, "--seq", "16", "--out", path],
                env=dict(os.environ, ATTNSIM_KILL_AT=point, ATTNSIM_H5_COPY="1"))
        left_before = len(glob.glob(os.path.join(d, ".*attnsim-tmp*")))
        run(["kernels", *SMALL, "--seq", "16", "--out", path])
        left_after = [x for x in os.listdir(d) if x != "out.h5"]
        # the second writer removed the first one's copy; the third the second's (and no
        # lock file stays)
        failures += report(left_before == 1 and not left_after,
                           f"stale private copies: {left_before} after two kills, "
                           f"{left_after} after the next run")

        # a new file killed before its first publication does not exist
        d = tempfile.mkdtemp(dir=work)
        path = os.path.join(d, "new.h5")
        p = run(["kernels", *SMALL, "--seq", "16", "--out", path],
                env=dict(os.environ, ATTNSIM_KILL_AT="h5:created"))
        failures += report(p.returncode == -signal.SIGKILL and not os.path.exists(path),
                           f"kill while creating a new file: path exists = "
                           f"{os.path.exists(path)}")

        failures += threaded(work, base)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"h5_crash: {len(POINTS)} kill points in batches ({len(INPLACE)} in place, {len(COPY)} "
          f"by copy), {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
