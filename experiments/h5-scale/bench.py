#!/usr/bin/env python3
"""The HDF5 writer at scale (experiments/h5-scale/run.sh runs this; docs/performance.md keeps
the figures). Every figure is measured here, on this machine, in this run:

1. the disk's streaming rate (dd, 512 MiB with fdatasync) and the machine's load;
2. a 10,080-run model sweep (P = 16) without and with --out (median of 3 each): the time with
   the file against 2x the time without plus the file's bytes at the disk rate;
3. a 100,800-run sweep with --out (the file is kept for readers: 100k.h5), and the time per
   appended run at ~1,000 runs (a 1,000-run sweep, less a 1-run sweep) against the time per
   run at ~100,000 (the sweep's last tenth); what opening a file for appending costs once per
   invocation (validation and the first copy), at 1,000 and 100,000 runs;
4. bytes per run: a model run, a kernel run and a distributed run (mpirun -n 4) at P = 4 and
   P = 4,096 (the distributed one at P = 4,096 from its layout, checked at P = 4, 9, 16);
5. SIGKILL at every kill point of the writer during a 10,000-run sweep appended to a file
   that holds an earlier invocation's runs: the file opens with h5py and h5dump, the earlier
   runs read back bit-identical, every run in /runs is complete and listed once in /summary.

Usage: bench.py ATTNSIM WORKDIR [--quick] [--skip-kill]
"""
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests"))
from h5util import consistent, dump, unchanged  # noqa: E402

ATTNSIM, WORK = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
QUICK = "--quick" in sys.argv
MPI_ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
SEQ210 = ",".join(str(1024 + 16 * i) for i in range(210))
ALGOS = ["--algo", "ring,a2d-no,a2d-o,ulysses"]
SWEEP_10K = ["model", "--procs", "16", *ALGOS, "--seq", SEQ210, "--head-dim", "64,128", "--causal=both",
             "--dtype", "f32,f16,bf16"]  # 4 algorithms x 210 x 2 x 2 x 3 = 10,080 runs
HD20 = ",".join(str(64 + 8 * i) for i in range(20))
SWEEP_100K = ["model", "--procs", "16", *ALGOS, "--seq", SEQ210, "--head-dim", HD20,
              "--causal=both", "--dtype", "f32,f16,bf16"]  # 100,800 runs
lines = []


def say(text):
    print(text, flush=True)
    lines.append(text)


def load():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def timed(args, env=None, out=None):
    t0 = time.perf_counter()
    r = subprocess.run([ATTNSIM, *args] + (["--out", out] if out else []), env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    t = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"attnsim {' '.join(args[:3])} failed: {r.stderr.strip()[:400]}")
    return t, r.stderr


def disk_rate():
    rates = []
    for _ in range(2):
        path = os.path.join(WORK, "dd.tmp")
        r = subprocess.run(["dd", "if=/dev/zero", f"of={path}", "bs=1M", "count=512",
                            "conv=fdatasync"], capture_output=True, text=True)
        os.unlink(path)
        m = re.search(r"(\d+) bytes .* copied, ([0-9.]+) s", r.stderr)
        rates.append(int(m.group(1)) / float(m.group(2)))
    return max(rates), rates


def fresh(name):
    path = os.path.join(WORK, name)
    if os.path.exists(path):
        os.unlink(path)
    return path


def sweep_10k(rate):
    noout, withf, sizes = [], [], []
    for _ in range(1 if QUICK else 3):
        noout.append(timed(SWEEP_10K)[0])
        path = fresh("10k.h5")
        withf.append(timed(SWEEP_10K, out=path)[0])
        sizes.append(os.path.getsize(path))
    t0, t1, size = statistics.median(noout), statistics.median(withf), statistics.median(sizes)
    budget = 2 * t0 + size / rate
    say(f"10,080-run model sweep (P = 16): {t0:.3f} s without --out, {t1:.3f} s with it "
        f"({size / 1e6:.1f} MB, {size / 10080:.0f} B/run); budget 2 x {t0:.3f} s + "
        f"{size / 1e6:.1f} MB at {rate / 1e6:.0f} MB/s = {budget:.3f} s: "
        f"{'within' if t1 <= budget else 'OVER'} ({t1 / budget:.2f} of it); samples without "
        f"{', '.join(f'{x:.3f}' for x in noout)} s, with {', '.join(f'{x:.3f}' for x in withf)} s")


def sweep_100k():
    path = fresh("100k.h5")
    t, err = timed(SWEEP_100K + ["--progress"], out=path)
    size = os.path.getsize(path)
    prog = [(int(m.group(1)), float(m.group(2))) for m in
            re.finditer(r"(\d+) of \d+ runs, ([0-9.]+) s", err)]
    say(f"100,800-run model sweep (P = 16): {t:.1f} s with --out ({size / 1e6:.0f} MB, "
        f"{size / 100800:.0f} B/run): {'under' if t < 60 else 'OVER'} a minute "
        f"(file kept: {path})")
    # per appended run at ~1,000 runs: a 1,000-run sweep less a 1-run sweep (process start)
    one = ["model", "--procs", "16", "--seq", "1024", "--algo", "ring"]
    k1 = ["model", "--procs", "16", "--seq", ",".join(str(1024 + 16 * i) for i in range(250)),
          "--algo", "ring,a2d-no", "--causal=both"]  # 1,000 runs
    t1 = statistics.median(timed(one, out=fresh("one.h5"))[0] for _ in range(3))
    tk = statistics.median(timed(k1, out=fresh("1k.h5"))[0] for _ in range(3))
    per_1k = (tk - t1) / 999
    # per run at ~100,000: the last tenth of the 100k sweep (from the progress line nearest
    # 90 % of its runs to its end: long enough to hold several publications)
    r0, s0 = min(prog[:-1], key=lambda p: abs(p[0] - 0.9 * prog[-1][0]))
    r1, s1 = prog[-1]
    per_100k = (s1 - s0) / (r1 - r0)
    say(f"time per appended run: {1e6 * per_1k:.1f} us at ~1,000 runs (1,000-run sweep "
        f"{tk:.3f} s less a 1-run sweep {t1:.3f} s), {1e6 * per_100k:.1f} us at ~100,000 runs "
        f"(runs {r0:,}..{r1:,} of the 100,800-run sweep, {s1 - s0:.2f} s): ratio "
        f"{per_100k / per_1k:.2f} ({'within' if per_100k <= 1.5 * per_1k else 'OVER'} 1.5)")
    # once per invocation: validating the file (appending one run)
    small = fresh("1k-again.h5")
    shutil.copy(os.path.join(WORK, "1k.h5"), small)
    ta = statistics.median(timed(one, out=small)[0] for _ in range(3))
    tb = statistics.median(timed(one, out=path)[0] for _ in range(1 if QUICK else 3))
    say(f"once per invocation (validation of the existing file): appending one run "
        f"takes {ta:.3f} s to a 1,000-run file, {tb:.3f} s to the {size / 1e6:.0f} MB "
        f"100,800-run file ({1e3 * (tb - ta) / (size / 1e6):.2f} ms per MB)")


def bytes_per_run():
    def grow(args, n, launch=()):
        path = fresh("bytes.h5")
        r = subprocess.run([*launch, ATTNSIM, *args[:1], "--seq", args[1][0], *args[2:],
                            "--out", path], capture_output=True, text=True, env=MPI_ENV)
        assert r.returncode == 0, r.stderr
        before = os.path.getsize(path)
        r = subprocess.run([*launch, ATTNSIM, *args[:1], "--seq", args[1][1], *args[2:],
                            "--out", path], capture_output=True, text=True, env=MPI_ENV)
        assert r.returncode == 0, r.stderr
        return (os.path.getsize(path) - before) / n

    seq100 = ",".join(str(65536 + 64 * i) for i in range(100))
    for P in (4, 4096):
        b = grow(["model", ("65536", seq100), "--procs", str(P), "--algo", "ring"], 100)
        say(f"bytes per run: model run, ring, P = {P:>4}: {b:,.0f} B")
    b = grow(["kernels", ("256", ",".join(str(256 + 8 * i) for i in range(100))), "--kernel",
              "fa2", "--pass", "fwd", "--heads", "2", "--head-dim", "32"], 100)
    say(f"bytes per run: kernel run (fa2 fwd, cpu): {b:,.0f} B")
    import h5py
    import numpy as np
    for P in (4, 16):
        launch = ["mpirun", "-n", str(P), "--oversubscribe"]
        b = grow(["run", ("144", ",".join(str(144 * k) for k in range(2, 10))), "--algo",
                  "ring", "--heads", "2", "--head-dim", "16"], 8, launch)
        say(f"bytes per run: distributed run, ring, P = {P:>4}: {b:,.0f} B (measured)")
    # P = 4,096 from the layout of the P = 16 run: every dataset with a dimension of P grows
    # with it (per-rank [P][F] arrays, ranks [P][4], the peer matrices [P][P]), and so does
    # the host_names attribute (a heap string per rank)
    with h5py.File(os.path.join(WORK, "bytes.h5"), "r") as f:
        g = f["runs"][sorted(f["runs"])[-1]]
        arrays = []
        g.visititems(lambda n, o: arrays.append(o) if isinstance(o, h5py.Dataset)
                     and 16 in o.shape else None)
        grow16 = sum(o.dtype.itemsize * np.prod(o.shape) for o in arrays)
        grow4k = sum(o.dtype.itemsize * np.prod([4096 if d == 16 else d for d in o.shape])
                     for o in arrays)
        host = len(g.attrs["host_names"][0])
    per_host = 16 + 16 + (host + 7) // 8 * 8
    est = b - grow16 + grow4k + (4096 - 16) * per_host
    say(f"bytes per run: distributed run, ring, P = 4096: {est:,.0f} B (from the P = 16 run's "
        f"layout: {len(arrays)} datasets with a dimension of P, {grow4k / 1e6:.1f} MB of them "
        f"the [P][P] peer matrices and [P][F] arrays, plus host_names; not executed here)")


# every kill point of the writer (sim/out/h5rec.c, h5out.c, h5append.c), reached in the
# middle of the sweep: in place (the default), then by copy (ATTNSIM_H5_COPY=1)
KILL_POINTS = ["h5:after_group@5000", "h5:dataset@60000", "h5:after_complete@5000",
               "h5:publish@2", "h5:after_lock@2", "h5:ip_runs@2", "h5:ip_written@2",
               "h5:ip_synced@2", "h5:ip_committed@2", "h5:published@2", "h5:close@1",
               "h5:ip_written@3", "h5:ip_committed@3",
               "h5:copy@1+copy", "h5:after_copy@1+copy", "h5:after_append@2+copy",
               "h5:link@5000+copy", "h5:after_summary@1+copy", "h5:after_close@1+copy",
               "h5:after_fsync@1+copy", "h5:after_rename@1+copy", "h5:after_rename@2+copy"]


def kill_all():
    base = fresh("kill-base.h5")
    timed(["model", "--procs", "4,16", "--seq", "4k,8k"], out=base)
    earlier = dump(base)
    runs = sorted({k.split("/")[1].split("@")[0] for k in earlier if k.startswith("runs/")})
    done = 0
    for mode, env in (("batches of 1,000 runs", {"ATTNSIM_H5_BATCH": "1000"}),
                      ("default (publisher thread, 0.2 s batches)",
                       {"ATTNSIM_H5_BATCH_SECONDS": "0.2"})):
        for point in KILL_POINTS:
            path = fresh("kill.h5")
            shutil.copy(base, path)
            e = dict(os.environ, ATTNSIM_KILL_AT=point.split("+")[0], **env)
            if point.endswith("+copy"):
                e["ATTNSIM_H5_COPY"] = "1"
            p = subprocess.run([ATTNSIM, *SWEEP_10K, "--out", path], env=e,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            problems, n = consistent(path, light=True)
            missing, changed = unchanged(earlier, dump(path, runs=runs))
            if missing or changed:
                problems.append(f"earlier runs changed: {missing[:2]} {changed[:2]}")
            killed = p.returncode == -signal.SIGKILL
            done += killed
            say(f"SIGKILL at {point:22s} ({mode}): {'killed' if killed else 'not reached'}, "
                f"{n:5d} runs, {'intact' if not problems else 'PROBLEMS: ' + '; '.join(problems)}")


def main():
    os.makedirs(WORK, exist_ok=True)
    say(f"# attnsim HDF5 writer at scale: {ATTNSIM}; {os.cpu_count()} cores, load average "
        f"{load()} at the start")
    rate, rates = disk_rate()
    say(f"disk streaming rate (dd 512 MiB, fdatasync, in {WORK}): "
        f"{', '.join(f'{r / 1e6:.0f}' for r in rates)} MB/s; the best, {rate / 1e6:.0f} MB/s, "
        f"is used")
    sweep_10k(rate)
    sweep_100k()
    bytes_per_run()
    if "--skip-kill" not in sys.argv:
        kill_all()
    say(f"# load average {load()} at the end")


if __name__ == "__main__":
    main()
