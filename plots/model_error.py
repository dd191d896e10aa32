#!/usr/bin/env python3
"""How well the time model predicts measured runs: for every complete kind=distributed run of an
attnsim/1 file, the relative error (predicted - measured) / measured of each phase (measured:
from the last rank to enter it to the last to leave it) and of the whole run, summarised as
median, 90th percentile and maximum of |error| (and the median signed error: below zero the
model predicts too short) by regime - the phase's dominant term (latency, bandwidth, compute),
intra- vs inter-node (compute phases: tier none), the phase's communication pattern (none,
ring_shift, allgather, reduce_scatter, return_hop, pairwise, alltoall) and pattern per tier,
cpu vs gpu backend; whole runs also by their nodes (one node, or several) and algorithm - and
drawn as a parity plot (predicted vs measured, log-log, one colour per algorithm).

Usage: model_error.py FILE.h5 [-o parity.png] [--min-ms T]
Phases shorter than --min-ms (default 0), and phases in which nothing happens (no message, no
compute: predicted 0), are left out of the phase statistics. The runs are found in the file's
/summary table; only the executed runs' groups are read, so model sweeps of any size in the
same file cost one read."""
import argparse
import sys

import attnsim_h5 as ah

PROG = "model_error"


def fail(msg):
    print(f"{PROG}: {msg}", file=sys.stderr)
    return 2


def stats(errors):
    import numpy as np
    e = np.asarray(errors)
    a = np.abs(e)
    return len(a), np.median(a), np.quantile(a, 0.9), a.max(), np.median(e)


def load(path, min_ms):
    """(runs, phases) of the executed runs with phase timings, or raises ah.FileError."""
    import numpy as np
    phases, runs = [], []
    with ah.open_file(path) as f:
        t = ah.summary(f)
        for r in t[t["kind"] == "distributed"]:
            g = ah.group(f, r["run"])
            if "measured/critical_path_phase_s" not in g:
                continue  # written before phase timings were recorded
            meas = g["measured/critical_path_phase_s"][()]
            pred = g["predicted/phase_time_s"][()]
            terms = [ah.text(x) for x in g["predicted/phase_term"][()]]
            inter = g["predicted/phase_inter_node"][()]
            patterns = ([ah.text(x) for x in g["phase_pattern"][()]] if "phase_pattern" in g
                        else ["unrecorded"] * len(meas))
            algo, backend = str(r["algorithm"]), str(r["backend"])
            for m, p, term, x, pat in zip(meas, pred, terms, inter, patterns):
                if m > 0 and p > 0 and m * 1e3 >= min_ms:  # p = 0: nothing to predict
                    tier = "none" if pat == "none" else "inter" if x else "intra"
                    phases.append(dict(algo=algo, meas=float(m), pred=float(p), term=term,
                                       tier=tier, backend=backend, pattern=pat,
                                       tier_pattern=f"{tier} {pat}"))
            total = float(g["measured/phase_end_s"][()].max())
            nodes = len(set(g["ranks"][:, 1])) if "ranks" in g else 1
            if total > 0 and np.isfinite(r["predicted_time_s"]):
                runs.append(dict(algo=algo, meas=total, pred=float(r["predicted_time_s"]),
                                 backend=backend,
                                 nodes="one node" if nodes == 1 else "several nodes"))
    return runs, phases


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("file")
    ap.add_argument("-o", "--out", help="parity plot PNG (default: no plot)")
    ap.add_argument("--min-ms", type=float, default=0.0)
    args = ap.parse_args()
    ah.ensure_python(PROG, ("h5py", "numpy", "matplotlib") if args.out else ("h5py", "numpy"))
    try:
        runs, phases = load(args.file, args.min_ms)
    except ah.FileError as e:
        return fail(str(e))
    if not runs:
        return fail(f"'{args.file}' has no complete kind=distributed runs with phase timings")
    print(f"# time-model error of {args.file}: {len(runs)} runs, {len(phases)} phases "
          f"(error = (predicted - measured) / measured; |error| statistics)")
    print(f"# {'what':34s} {'n':>5s} {'median%':>8s} {'p90%':>8s} {'max%':>8s} {'signed%':>8s}")

    def row(label, items):
        if items:
            n, med, p90, mx, signed = stats([(i["pred"] - i["meas"]) / i["meas"] for i in items])
            print(f"  {label:34s} {n:5d} {100 * med:8.1f} {100 * p90:8.1f} {100 * mx:8.1f} "
                  f"{100 * signed:+8.1f}")

    row("whole runs", runs)
    for key in ("backend", "nodes", "algo"):
        for v in sorted({r[key] for r in runs}):
            row(f"whole runs, {v}", [r for r in runs if r[key] == v])
    row("phases", phases)
    for key in ("term", "tier", "pattern", "tier_pattern", "backend"):
        for v in sorted({p[key] for p in phases}):
            label = f"phases, {v}" if key == "tier_pattern" else f"phases, {key} {v}"
            row(label, [p for p in phases if p[key] == v])
    if args.out:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(6, 5.5))
        algos = sorted({p["algo"] for p in phases} | {r["algo"] for r in runs})
        for i, algo in enumerate(algos):
            ph = [p for p in phases if p["algo"] == algo]
            rr = [r for r in runs if r["algo"] == algo]
            ax.scatter([p["meas"] for p in ph], [p["pred"] for p in ph], s=12, color=f"C{i}",
                       alpha=0.6, label=f"{algo} phases")
            ax.scatter([r["meas"] for r in rr], [r["pred"] for r in rr], s=50, marker="*",
                       color=f"C{i}", edgecolor="k", label=f"{algo} runs")
        vals = [x for i in phases + runs for x in (i["meas"], i["pred"]) if x > 0]
        lo, hi = min(vals), max(vals)
        ax.plot([lo, hi], [lo, hi], "k-", lw=0.8)
        ax.plot([lo, hi], [1.15 * lo, 1.15 * hi], "k:", lw=0.6)
        ax.plot([lo, hi], [lo / 1.15, hi / 1.15], "k:", lw=0.6)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("measured time (s)")
        ax.set_ylabel("predicted time (s)")
        ax.set_title("time model: predicted vs measured (dotted: +-15%)", fontsize=10)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(args.out, dpi=110)
        print(f"# wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
