#!/usr/bin/env python3
"""The tables attnsim prints parse by column, as nccl-tests' and OSU's do: a header line starts
with '#' and names the columns, with the unit in the name (time_ms, sent_B_max, err_pct); every
row under it has exactly one cell per column; a quantity's cell is a number ('-' where it does
not apply), never a number with a unit (7.412ms, 32k, 26.6%) or two values. Checked on the
output of model, run, kernels, kernels --decode and calibrate.
Usage: table_format.py ATTNSIM MPIEXEC"""
import os
import re
import subprocess
import sys

ATTNSIM, MPIEXEC = os.path.abspath(sys.argv[1]), sys.argv[2]
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
MPI = [MPIEXEC, "-n", "2", "--oversubscribe", ATTNSIM]
COMMANDS = [  # (command, tables expected at least)
    ([ATTNSIM, "model", "--procs", "4,8", "--seq", "1k,128k", "--causal", "both"], 1),
    (MPI + ["run", "--algo", "ring,a2d-no", "--grid", "auto", "--seq", "256", "--heads", "2",
            "--head-dim", "16", "--pass", "train", "--check"], 2),
    ([ATTNSIM, "kernels", "--kernel", "standard,fa2", "--seq", "64,128", "--heads", "1",
      "--head-dim", "16", "--sram", "1k", "--check"], 1),
    ([ATTNSIM, "kernels", "--decode", "--seq", "256", "--heads", "2", "--head-dim", "16",
      "--check"], 1),
    (MPI + ["calibrate", "--max-message", "16k"], 3),
]
NUMERIC_NAMES = {"P", "N", "N_k", "d", "sram", "Br", "Bc", "B", "h", "h_kv", "slots", "splits",
                 "r2", "x_comp", "vs_ring", "outliers", "msgs_max", "pred_msgs", "group",
                 "max_abs_err", "max_rel_err", "err_pct"}
NUMERIC = re.compile(r"(_B|_B_max|_ms|_us|_s|_pct|_pct_\d+B|/s|_GBps|_GFLOPs|_KV)$")
NUMBER = re.compile(r"^([+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|-|nan)$")


def tables(text):
    """[(header names, [rows])]: a '#' line followed by rows that start with two spaces."""
    out, lines = [], text.splitlines()
    for i, ln in enumerate(lines):
        if not ln.startswith("#") or i + 1 >= len(lines) or not lines[i + 1].startswith("  "):
            continue
        rows = []
        for nxt in lines[i + 1:]:
            if not nxt.startswith("  "):
                break
            rows.append(nxt.split())
        out.append((ln.lstrip("#").split(), rows))
    return out


def main():
    problems, n = [], 0
    for cmd, want in COMMANDS:
        label = " ".join(c for c in cmd[cmd.index(ATTNSIM) + 1:][:2])
        r = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=300)
        if r.returncode != 0:
            problems.append(f"{label}: status {r.returncode}: {r.stderr[-300:]}")
            continue
        found = tables(r.stdout)
        if len(found) < want:
            problems.append(f"{label}: {len(found)} tables, expected at least {want}")
        for names, rows in found:
            n += 1
            for row in rows:
                if len(row) != len(names):
                    problems.append(f"{label}: row {row} has {len(row)} cells for the "
                                    f"{len(names)} columns {names}")
                    continue
                for name, cell in zip(names, row):
                    if (name in NUMERIC_NAMES or NUMERIC.search(name)) and \
                            not NUMBER.match(cell):
                        problems.append(f"{label}: column {name}: cell {cell!r} is not a "
                                        f"number")
    for p in problems[:30]:
        print("FAIL", p)
    print(f"table_format: {len(COMMANDS)} commands, {n} tables, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
