#!/usr/bin/env python3
"""Ranks started with different arguments (MPMD lines under mpirun: "-n 2 attnsim run --seq 256 :
-n 2 attnsim run --seq 512") agree before any work: one line from rank 0 naming the option (or
the subcommand) and the ranks on each side, exit status 2, nothing written, within seconds. A
bad value on a rank other than 0 is reported, naming that rank. Options that differ only in how
they are written (a value given that equals the default) agree, and the job runs.
Every case runs under a deadline: a hang fails the case (the job is killed), it does not hang
the test. Usage: run_agree.py ATTNSIM MPIEXEC"""
import os
import signal
import subprocess
import sys
import tempfile
import time

ATTNSIM, MPIEXEC = os.path.abspath(sys.argv[1]), sys.argv[2]
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
SMALL = ["--heads", "2", "--head-dim", "8"]
DEADLINE = 60


def mpmd(*parts):
    """parts: (ranks, [attnsim arguments]) -> one mpirun command line."""
    cmd = [MPIEXEC, "--oversubscribe"]
    for i, (n, args) in enumerate(parts):
        cmd += ([":"] if i else []) + ["-n", str(n), ATTNSIM, *args]
    return cmd


def run(cmd, cwd):
    """(status or None on a hang, stdout, stderr, seconds); a hung job is killed."""
    t0 = time.time()
    p = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=ENV, start_new_session=True)
    try:
        out, err = p.communicate(timeout=DEADLINE)
        return p.returncode, out, err, time.time() - t0
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
        return None, out, err, time.time() - t0


CASES = [  # (MPMD parts, text the one line must contain)
    (((2, ["run", "--seq", "256", "--out", "x.h5"]), (2, ["run", "--seq", "512", "--out", "x.h5"])),
     "attnsim run: --seq: the ranks were started with different values: '256' on ranks 0-1, "
     "'512' on ranks 2-3; accepted: the same value on every rank"),
    (((2, ["run", "--heads", "4", "--out", "x.h5"]), (2, ["run", "--heads", "8", "--out", "x.h5"])),
     "--heads: the ranks were started with different values: '4' on ranks 0-1, '8' on ranks 2-3"),
    (((2, ["run", "--head-dim", "32", "--out", "x.h5"]),
      (2, ["run", "--head-dim", "64", "--out", "x.h5"])),
     "--head-dim: the ranks were started with different values: '32' on ranks 0-1, '64' on ranks 2-3"),
    (((2, ["run", "--algo", "ring", "--out", "x.h5"]),
      (2, ["run", "--algo", "ring,ulysses", "--out", "x.h5"])),
     "--algo: the ranks were started with different values: 'ring' on ranks 0-1, 'ring,ulysses' on ranks 2-3"),
    (((2, ["run", "--pass", "fwd", "--out", "x.h5"]), (2, ["run", "--pass", "bwd", "--out", "x.h5"])),
     "--pass: the ranks were started with different values: 'fwd' on ranks 0-1, 'bwd' on ranks 2-3"),
    (((1, ["run", "--out", "x.h5"]), (2, ["run", "--causal", "--out", "x.h5"]),
      (1, ["run", "--causal=both", "--out", "x.h5"])),
     "--causal: the ranks were started with different values: the default on rank 0, given on "
     "ranks 1-2, other values on rank 3"),
    (((2, ["run", "--out", "x.h5"]), (2, ["run", "--out", "y.h5"])),
     "--out: the ranks were started with different values: 'x.h5' on ranks 0-1, 'y.h5' on ranks 2-3"),
    (((3, ["run", "--out", "x.h5"]), (1, ["run", "--check", "--out", "x.h5"])),
     "--check: the ranks were started with different values: the default on ranks 0-2, given on rank 3"),
    # a bad value on a rank other than 0
    (((1, ["run", "--out", "x.h5"]), (1, ["run", "--seq", "abc", "--out", "x.h5"])),
     "attnsim run: --seq: 'abc' is not a number; accepted: a positive integer with an optional k, "
     "M or G suffix (powers of two: 4k = 4096) (on rank 1 only)"),
    (((2, ["run", "--out", "x.h5"]), (2, ["run", "--algo", "tree", "--out", "x.h5"])),
     "attnsim run: --algo: unknown value 'tree'; accepted: ring, a2d-no, a2d-o, ulysses, hybrid (on rank 2; "
     "ranks 2-3 refused their options)"),
    # different subcommands
    (((2, ["run", "--out", "x.h5"]), (2, ["calibrate", "--out", "x.h5"])),
     "attnsim run: the ranks run different subcommands: 'attnsim run' on ranks 0-1, "
     "'attnsim calibrate' on ranks 2-3"),
    (((1, ["calibrate", "--max-message", "4k", "--out", "x.h5"]),
      (1, ["calibrate", "--max-message", "8k", "--out", "x.h5"])),
     "attnsim calibrate: --max-message: the ranks were started with different values: '4k' on "
     "rank 0, '8k' on rank 1"),
]


def main():
    problems = []
    with tempfile.TemporaryDirectory() as d:
        for parts, must in CASES:
            status, out, err, took = run(mpmd(*parts), d)
            lines = [l for l in err.splitlines() if l.startswith("attnsim")]
            written = sorted(os.listdir(d))
            ok = status == 2 and len(lines) == 1 and must in lines[0] and not written and \
                "VALID" not in out
            desc = " : ".join(f"-n {n} attnsim {' '.join(a)}" for n, a in parts)
            print(f"{'ok  ' if ok else 'FAIL'} {desc} ({took:.1f} s)\n     -> {lines}")
            if not ok:
                problems.append(f"{desc}: status {'HANG (killed)' if status is None else status}"
                                f", lines {lines}, written {written}, want {must!r}")
            for f in written:
                os.remove(os.path.join(d, f))
        # the same options written differently agree: the job runs and writes its runs
        parts = ((2, ["run", "--algo", "ring", "--seq", "64", *SMALL, "--out", "x.h5"]),
                 (2, ["run", "--seq", "64", "--algo", "ring", "--heads", "2", "--head-dim", "8",
                      "--kv-heads", "2", "--layout", "contiguous", "--dtype", "f32", "--out",
                      os.path.join(d, "x.h5")]))
        status, out, err, took = run(mpmd(*parts), d)
        ok = status == 0 and "VALID" in out and os.path.exists(os.path.join(d, "x.h5"))
        print(f"{'ok  ' if ok else 'FAIL'} equal options written differently run ({took:.1f} s)")
        if not ok:
            problems.append(f"equal options: status {status}: {err[-400:]}")
    for p in problems:
        print("FAIL", p)
    print(f"run_agree: {len(CASES) + 1} cases, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
