#!/usr/bin/env python3
"""plots/plot_run.py draws what attnsim run's table prints: its time panel holds, per phase,
the critical-path time (crit_ms: last rank in to last rank out) and the model's time (pred_ms)
of each run - the same quantities, equal to the table's to its printed precision - and its bytes
panel the maximum over ranks of the bytes sent, measured and predicted (sent_B_max,
pred_sent_B); then it writes a PNG.
Usage: plot_run_test.py ATTNSIM MPIEXEC PLOTS_DIR"""
import os
import subprocess
import sys
import tempfile

ATTNSIM, MPIEXEC, PLOTS = os.path.abspath(sys.argv[1]), sys.argv[2], os.path.abspath(sys.argv[3])
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
sys.path.insert(0, PLOTS)
import plot_run  # noqa: E402


def tables(stdout):
    """[{phase: (sent_B_max, pred_sent_B, crit_ms, pred_ms)}] per run, from the printed tables."""
    out, cols = [], None
    for ln in stdout.splitlines():
        if ln.startswith("#") and "crit_ms" in ln:
            cols = ln.lstrip("#").split()
            out.append({})
        elif cols and ln.startswith("    "):
            cells = dict(zip(cols, ln.split()))
            out[-1][cells["phase"]] = (int(cells["sent_B_max"]), int(cells["pred_sent_B"]),
                                       float(cells["crit_ms"]), float(cells["pred_ms"]))
        else:
            cols = None
    return out


def main():
    problems = []
    with tempfile.TemporaryDirectory() as d:
        h5 = os.path.join(d, "runs.h5")
        r = subprocess.run([MPIEXEC, "-n", "4", "--oversubscribe", ATTNSIM, "run", "--algo",
                            "ring,a2d-no,a2d-o", "--seq", "512", "--pass", "train", "--causal",
                            "--out", h5], capture_output=True, text=True, env=ENV, timeout=300)
        if r.returncode != 0:
            print(r.stdout, r.stderr)
            return 1
        printed = tables(r.stdout)
        drawn = plot_run.load(h5, 6)
        if len(printed) != 3 or len(drawn) != 3:
            problems.append(f"{len(printed)} tables printed, {len(drawn)} runs drawn; expected 3")
        for table, run in zip(printed, drawn):
            for i, ph in enumerate(run["phases"]):
                sent, pred_sent, crit_ms, pred_ms = table[ph]
                got = (int(run["meas"][i]), int(run["pred"][i]),
                       round(1e3 * float(run["crit"][i]), 3), round(1e3 * float(run["pred_s"][i]), 3))
                if got != (sent, pred_sent, round(crit_ms, 3), round(pred_ms, 3)):
                    problems.append(f"{run['title']} {ph}: drawn {got}, printed "
                                    f"{(sent, pred_sent, crit_ms, pred_ms)}")
        png = os.path.join(d, "out.png")
        r = subprocess.run([sys.executable, os.path.join(PLOTS, "plot_run.py"), h5, "-o", png],
                           capture_output=True, text=True)
        with open(png, "rb") if os.path.exists(png) else open(os.devnull, "rb") as fh:
            if r.returncode != 0 or fh.read(8) != b"\x89PNG\r\n\x1a\n":
                problems.append(f"plot_run.py: status {r.returncode}, {r.stderr!r}")
    for p in problems:
        print("FAIL", p)
    print(f"plot_run_test: {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
