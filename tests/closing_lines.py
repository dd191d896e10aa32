#!/usr/bin/env python3
"""The closing line of run and kernels says exactly what was checked: the counts (bytes and
messages, or HBM bytes and FLOPs) always, and the outputs (and gradients) only with --check -
without it, "outputs not checked (--check)", never "every check passed".
Usage: closing_lines.py ATTNSIM MPIEXEC"""
import os
import subprocess
import sys

ATTNSIM, MPIEXEC = os.path.abspath(sys.argv[1]), sys.argv[2]
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
RUN = [MPIEXEC, "-n", "2", "--oversubscribe", ATTNSIM, "run", "--algo", "ring", "--seq", "256",
       "--heads", "2", "--head-dim", "16"]
KERNELS = [ATTNSIM, "kernels", "--kernel", "fa2", "--seq", "64", "--heads", "1", "--head-dim",
           "16", "--sram", "1k"]
CASES = [
    (RUN, "# 1 runs: measured == predicted bytes and messages on every rank and phase; outputs "
          "not checked (--check). VALID"),
    (RUN + ["--check"], "# 1 runs: measured == predicted bytes and messages on every rank and "
                        "phase; every output matches the reference. VALID"),
    (RUN + ["--check", "--pass", "train"], "# 1 runs: measured == predicted bytes and messages "
     "on every rank and phase; every output and gradient matches the reference. VALID"),
    (KERNELS + ["--pass", "fwd"], "# 1 runs: measured == predicted HBM bytes and FLOPs in every "
                                  "run; outputs not checked (--check). VALID"),
    (KERNELS + ["--pass", "fwd", "--check"], "# 1 runs: measured == predicted HBM bytes and "
     "FLOPs in every run; every output matches the float64 reference. VALID"),
    ([ATTNSIM, "kernels", "--decode", "--kernel", "lean", "--seq", "256", "--heads", "2",
      "--head-dim", "16"], "# 1 runs: counted == predicted bytes in every run; outputs not "
                           "checked (--check). VALID"),
]


def main():
    problems = []
    for cmd, want in CASES:
        r = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=300)
        lines = [ln for ln in r.stdout.splitlines() if ln.startswith("# 1 runs:")]
        if r.returncode != 0 or lines != [want] or "every check passed" in r.stdout:
            problems.append(f"{' '.join(cmd[4:] if cmd[0] == MPIEXEC else cmd[1:])}: status "
                            f"{r.returncode}, closing {lines}, expected {want!r}")
    for p in problems:
        print("FAIL", p)
    print(f"closing_lines: {len(CASES)} commands, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
