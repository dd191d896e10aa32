#!/usr/bin/env python3
"""attnsim run over the matrix the executor must pass: P in {1, 2, 4, 9} (and 16 for a short
case) x every algorithm x fwd and bwd (and train) x causal on and off x GQA on and off x a ragged
and an even N, and the hybrid at P in {4, 8, 16} with groups of u in {2, 4}, all with --check.
Every run must be VALID: predicted == measured bytes and messages on every rank and phase (also
re-checked here from the HDF5 arrays) and the check passed. With `quick`: one job of every algorithm at P = 4 (ctest label quick).
Usage: run_matrix.py ATTNSIM MPIEXEC [quick]"""
import os
import re
import subprocess
import sys
import tempfile
import time

import h5py

from run_checks import check_runs

ATTNSIM, MPIEXEC = os.path.abspath(sys.argv[1]), sys.argv[2]
ALGORITHMS = ("ring", "a2d-no", "a2d-o", "ulysses", "hybrid")
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           OMPI_MCA_rmaps_base_oversubscribe="1")


def heads_for(P, gqa):
    kv = max(P, 2)  # ulysses needs kv-heads >= P
    return (2 * kv, kv) if gqa else (kv, kv)


def cases():
    for P in (1, 2, 4, 9):
        for pss in ("fwd", "bwd"):
            for gqa in (0, 1):
                h, kv = heads_for(P, gqa)
                grid = "auto" if P == 2 else f"{int(P**0.5)}x{int(P**0.5)}"
                args = ["--algo", "ring,a2d-no,a2d-o,ulysses", "--pass", pss, "--causal=both",
                        "--seq", f"{3 * P + 1},{4 * P}", "--heads", str(h), "--kv-heads", str(kv),
                        "--head-dim", "8", "--grid", grid]
                yield P, args, 4 * 2 * 2
    yield 4, ["--algo", "ring,a2d-o", "--layout", "zigzag", "--pass", "train", "--causal",
              "--seq", "37", "--heads", "4", "--kv-heads", "2", "--head-dim", "8", "--dtype", "bf16"], 2
    yield 4, ["--algo", "ring", "--layout", "striped", "--pass", "train", "--causal=both",
              "--seq", "30", "--heads", "2", "--head-dim", "8", "--dtype", "f16"], 2
    yield 6, ["--algo", "a2d-no,a2d-o", "--grid", "3x2", "--pass", "train", "--causal",
              "--seq", "41", "--heads", "4", "--kv-heads", "2", "--head-dim", "8"], 2
    yield 16, ["--algo", "ring,a2d-no", "--pass", "fwd", "--causal", "--seq", "35", "--heads", "2",
               "--head-dim", "8"], 2
    # the hybrid: P in {4, 8, 16} x u in {2, 4}, every pass, causal on and off, GQA (h_kv >= u)
    for P, u, pss, layout, h, kv, seq in ((4, 2, "train", "zigzag", 8, 4, 37),
                                          (4, 4, "fwd", "striped", 4, 4, 30),
                                          (8, 2, "bwd", "contiguous", 4, 2, 41),
                                          (8, 4, "train", "zigzag", 8, 4, 50),
                                          (16, 4, "fwd", "striped", 8, 4, 67),
                                          (16, 2, "bwd", "zigzag", 4, 2, 64)):
        yield P, ["--algo", "hybrid", "--ulysses-size", str(u), "--pass", pss, "--causal=both",
                  "--layout", layout, "--seq", str(seq), "--heads", str(h), "--kv-heads", str(kv),
                  "--head-dim", "8"], 2


def quick_cases():
    """One job of every algorithm (the hybrid in groups of 2): a training step, causal and not,
    GQA, a ragged N."""
    yield 4, ["--algo", ",".join(ALGORITHMS), "--ulysses-size", "2", "--pass", "train",
              "--causal=both", "--layout", "zigzag", "--seq", "29", "--heads", "8", "--kv-heads", "4",
              "--head-dim", "8", "--grid", "2x2"], 2 * len(ALGORITHMS)


def main():
    problems, total = [], 0
    t0 = time.time()
    quick = len(sys.argv) > 3 and sys.argv[3] == "quick"
    with tempfile.TemporaryDirectory() as d:
        for i, (P, args, runs) in enumerate(quick_cases() if quick else cases()):
            out = os.path.join(d, f"m{i}.h5")
            cmd = [MPIEXEC, "-n", str(P), "--oversubscribe", ATTNSIM, "run", "--check", *args,
                   "--out", out]
            p = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=300)
            valid = len(re.findall(r"^# [a-z0-9-]+: measured == predicted .*\. VALID$", p.stdout, re.M))
            label = f"P={P} {' '.join(args)}"
            if p.returncode != 0 or valid != runs:
                problems.append(f"{label}: status {p.returncode}, {valid}/{runs} VALID\n{p.stdout[-1500:]}{p.stderr[-1500:]}")
                continue
            n, bad = check_runs(out, label)
            total += n
            problems += bad
            print(f"ok   {label}: {valid} runs VALID")
        if quick:
            return report(problems, total, t0)
        # plots/plot_run.py draws a file of distributed runs and refuses other schemas
        script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "plots", "plot_run.py")
        png = os.path.join(d, "run.png")
        r = subprocess.run([sys.executable, script, os.path.join(d, "m8.h5"), "-o", png],
                           capture_output=True, text=True)
        with open(png, "rb") if os.path.exists(png) else open(os.devnull, "rb") as fh:
            head = fh.read(8)
        if r.returncode != 0 or head != b"\x89PNG\r\n\x1a\n":
            problems.append(f"plot_run failed: {r.stderr}")
        foreign = os.path.join(d, "foreign.h5")
        with h5py.File(foreign, "w") as f:
            f.attrs["schema"] = "other/1"
        r = subprocess.run([sys.executable, script, foreign, "-o", os.path.join(d, "x.png")],
                           capture_output=True, text=True)
        if r.returncode != 2 or "not an attnsim/1 file" not in r.stderr or os.path.exists(os.path.join(d, "x.png")):
            problems.append(f"plot_run on a foreign file: {r.returncode} {r.stderr!r}")
    return report(problems, total, t0)


def report(problems, total, t0):
    for p in problems:
        print("FAIL", p)
    print(f"run_matrix: {total} runs checked in {time.time() - t0:.1f} s, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
