#!/usr/bin/env python3
"""Progress of long sweeps (sim/app/progress.c): with --progress, `model`, `kernels` (and
`kernels --decode`) and `run` print lines on stderr saying the share of the work done, weighted
by the work of each run (FLOPs, bytes, ranks predicted), not by the count of runs, at most one
line a second off a terminal, and a last line; without --progress (stderr not a terminal),
nothing.

Usage: progress_test.py ATTNSIM MPIEXEC
"""
import os
import re
import subprocess
import sys

ATTNSIM, MPIEXEC = os.path.abspath(sys.argv[1]), sys.argv[2]
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
LINE = re.compile(r"^attnsim (\w+): +([0-9.]+)% of the work \((\S+ ?\S*) of (\S+ ?\S*) (.+?)\), "
                  r"(\d+) of (\d+) runs, ")
failures = 0


def check(name, cmd, unit, min_lines=1, work_not_runs=None):
    """min_lines: lines wanted with a line at every run (ATTNSIM_PROGRESS_SECONDS=0)."""
    global failures
    problems = []
    quiet = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=240)
    if quiet.returncode != 0 or "of the work" in quiet.stderr:
        problems.append(f"without --progress: status {quiet.returncode}, stderr "
                        f"{quiet.stderr.strip()[:200]}")
    r = subprocess.run(cmd + ["--progress"], capture_output=True, text=True, env=ENV,
                       timeout=240)
    # a line at every run: the shares can be compared with the runs
    every = subprocess.run(cmd + ["--progress"], capture_output=True, text=True, timeout=240,
                           env=dict(ENV, ATTNSIM_PROGRESS_SECONDS="0"))
    every_lines = [l for l in every.stderr.splitlines() if "of the work" in l]
    lines = [l for l in r.stderr.splitlines() if "of the work" in l]
    parsed = [LINE.match(l) for l in lines]
    if r.returncode != 0 or not lines or not all(parsed):
        problems.append(f"status {r.returncode}, lines {lines[:3]}")
    elif len(every_lines) < min_lines or not all(LINE.match(l) for l in every_lines):
        problems.append(f"a line at every run: {len(every_lines)} lines, {every_lines[:2]}")
    else:
        shares = [float(m.group(2)) for m in parsed]
        if shares != sorted(shares) or shares[-1] != 100.0 or "in all" not in lines[-1]:
            problems.append(f"shares {shares}")
        if any(m.group(5) != unit for m in parsed):
            problems.append(f"unit {parsed[0].group(5)!r}, expected {unit!r}")
        if len(r.stdout.splitlines()) != len(quiet.stdout.splitlines()):
            problems.append("stdout differs with --progress")  # progress goes to stderr only
        elapsed = float(re.search(r"runs, ([0-9.]+) s in all", lines[-1]).group(1))
        if len(lines) > elapsed + 2:
            problems.append(f"{len(lines)} lines in {elapsed} s: more than one a second")
        # the share follows the work: the last run of the sweep is most of it
        if work_not_runs:
            for m in [LINE.match(l) for l in every_lines][:-1]:
                done, total = int(m.group(6)), int(m.group(7))
                if float(m.group(2)) > 100.0 * done / total:
                    problems.append(f"share {m.group(2)}% ahead of the runs ({done}/{total})")
    print(f"{'ok  ' if not problems else 'FAIL'} {name}: {len(lines)} progress lines"
          f"{': ' + lines[-1] if lines else ''}")
    for p in problems:
        print("     " + p)
    failures += bool(problems)


def main():
    # sizes grow 8x per step: the runs' work is far from equal
    check("kernels", [ATTNSIM, "kernels", "--kernel", "fa2", "--pass", "fwd", "--seq",
                      "64,128,256,512,1024,2048", "--heads", "1", "--head-dim", "32",
                      "--sram", "8k"], "FLOP", min_lines=6, work_not_runs=True)
    check("kernels --decode", [ATTNSIM, "kernels", "--decode", "--seq", "4k,64k", "--heads", "4",
                               "--kv-heads", "2", "--head-dim", "64"], "bytes of K/V read",
          min_lines=6)
    check("model", [ATTNSIM, "model", "--procs", "4,64,1024,16384", "--seq", "1M",
                    "--algo", "ring,a2d-no"], "rank predictions", min_lines=8,
          work_not_runs=True)
    check("run", [MPIEXEC, "-n", "4", "--oversubscribe", ATTNSIM, "run", "--algo",
                  "ring,a2d-no", "--seq", "64,1024", "--heads", "2", "--head-dim", "16"], "FLOP",
          min_lines=4, work_not_runs=True)
    print(f"progress: {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
