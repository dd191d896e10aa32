#!/usr/bin/env python3
"""How well the time model predicts measured runs: for every complete kind=distributed run of an
attnsim/1 file, the relative error (predicted - measured) / measured of each phase (measured:
from the last rank to enter it to the last to leave it) and of the whole run, summarised as
median, 90th percentile and maximum of |error| (and the median signed error: below zero the
model predicts too short) by regime - the phase's dominant term (latency, bandwidth, compute),
intra- vs inter-node (compute phases: tier none), the phase's communication pattern (none,
ring_shift, allgather, reduce_scatter, return_hop, pairwise, alltoall) and pattern per tier,
cpu vs gpu backend; whole runs also by their nodes (one node, or several) and algorithm - and
drawn as a parity plot (predicted vs measured, log-log, one colour per algorithm) and as bars
(median, p90 and max |error| per pattern and tier).

Where the runs hold it (attnsim run writes it when the machine has pattern lines, measured
overlap or another profile), the same statistics of the one-rate-per-tier model with ideal
overlap on the same runs stand beside them (columns "tier-only"). Overlapped phases get the
hidden transfer time, predicted and measured (measured: with attnsim run --overlap-probe).

Usage: model_error.py FILE.h5 [-o parity.png] [--bars bars.png] [--min-ms T] [--min-run-ms T]
Phases shorter than --min-ms (default 0), and phases in which nothing happens (no message, no
compute: predicted 0), are left out of the phase statistics; runs shorter than --min-run-ms
(default 0) are left out with their phases. The runs are found in the file's /summary table;
only the executed runs' groups are read, so model sweeps of any size in the same file cost one
read."""
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


def load(path, min_ms, min_run_ms):
    """(runs, phases, overlapped phases) of the executed runs with phase timings, or raises
    ah.FileError."""
    import numpy as np
    phases, runs, overlaps = [], [], []
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
            where = ("phase_pattern" if "phase_pattern" in g else "predicted/phase_pattern"
                     if "predicted/phase_pattern" in g else None)
            pattern = ([ah.text(x) for x in g[where][()]] if where
                       else ["unrecorded"] * len(meas))
            algo, backend = str(r["algorithm"]), str(r["backend"])
            total_meas = float(g["measured/phase_end_s"][()].max())
            if total_meas <= 0 or not np.isfinite(r["predicted_time_s"]) or \
                    total_meas * 1e3 < min_run_ms:
                continue
            base = (g["predicted/tier_only_phase_time_s"][()]
                    if "predicted/tier_only_phase_time_s" in g else [float("nan")] * len(meas))
            names = [ah.text(x) for x in g["phases"][()]]
            for m, p, b, term, x, pat in zip(meas, pred, base, terms, inter, pattern):
                if m > 0 and p > 0 and m * 1e3 >= min_ms:  # p = 0: nothing to predict
                    pat = "compute" if pat in ("none", "compute") else pat
                    tier = "none" if pat == "compute" else "inter" if x else "intra"
                    phases.append(dict(algo=algo, meas=float(m), pred=float(p), base=float(b),
                                       term=term, tier=tier, backend=backend, pattern=pat,
                                       tier_pattern=f"{tier} {pat}"))
            if "predicted/phase_hidden_s" in g and "measured/overlap_critical_exposed_s" in g:
                ph = g["predicted/phase_hidden_s"][()]
                pt = g["predicted/phase_transfer_s"][()]
                me = g["measured/overlap_critical_exposed_s"][()]
                mt = g["measured/overlap_critical_transfer_s"][()]
                for k, name in enumerate(names):
                    if f"measured/steps/{name}/compute_s" in g:
                        overlaps.append(dict(algo=algo, phase=name, pred_hidden=ph[k],
                                             pred_exposed=pt[k] - ph[k], meas_exposed=me[k],
                                             meas_hidden=mt[k] - me[k]))
            nodes = len(set(g["ranks"][:, 1])) if "ranks" in g else 1
            base_total = (float(g["predicted/tier_only_total_time_s"][()])
                          if "predicted/tier_only_total_time_s" in g else float("nan"))
            runs.append(dict(algo=algo, meas=total_meas, pred=float(r["predicted_time_s"]),
                             base=base_total, backend=backend,
                             term=ah.text(g.attrs.get("dominant_term", "")),
                             nodes="one node" if nodes == 1 else "several nodes"))
    return runs, phases, overlaps


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("file")
    ap.add_argument("-o", "--out", help="parity plot PNG (default: no plot)")
    ap.add_argument("--bars", help="bar chart PNG of |error| per pattern and tier")
    ap.add_argument("--min-ms", type=float, default=0.0)
    ap.add_argument("--min-run-ms", type=float, default=0.0)
    args = ap.parse_args()
    ah.ensure_python(PROG, ("h5py", "numpy", "matplotlib") if args.out or args.bars
                     else ("h5py", "numpy"))
    import numpy as np
    try:
        runs, phases, overlaps = load(args.file, args.min_ms, args.min_run_ms)
    except ah.FileError as e:
        return fail(str(e))
    if not runs:
        return fail(f"'{args.file}' has no complete kind=distributed runs with phase timings")
    print(f"# time-model error of {args.file}: {len(runs)} runs, {len(phases)} phases "
          f"(error = (predicted - measured) / measured; |error| statistics)")
    have_base = any(not np.isnan(r["base"]) for r in runs)
    print(f"# {'what':34s} {'n':>5s} {'median':>8s} {'p90':>8s} {'max':>8s} {'signed':>8s}"
          + (f"   tier-only: {'median':>8s} {'p90':>8s} {'max':>8s}" if have_base else ""))
    table = []

    def row(label, items):
        if items:
            n, med, p90, mx, signed = stats([(i["pred"] - i["meas"]) / i["meas"] for i in items])
            line = (f"  {label:34s} {n:5d} {100 * med:7.1f}% {100 * p90:7.1f}% {100 * mx:7.1f}% "
                    f"{100 * signed:+7.1f}%")
            based = [i for i in items if not np.isnan(i["base"])]
            if have_base and based:
                _, bmed, bp90, bmx, _ = stats([(i["base"] - i["meas"]) / i["meas"] for i in based])
                line += f"              {100 * bmed:7.1f}% {100 * bp90:7.1f}% {100 * bmx:7.1f}%"
            print(line)
            bm = bp = float("nan")
            if have_base and based:
                bm, bp = bmed, bp90
            table.append((label, med, p90, mx, bm, bp))

    row("whole runs", runs)
    for key in ("backend", "nodes", "algo"):
        for v in sorted({r[key] for r in runs}):
            row(f"whole runs, {v}", [r for r in runs if r[key] == v])
    row("phases", phases)
    for key in ("term", "tier", "pattern", "tier_pattern", "backend"):
        for v in sorted({p[key] for p in phases}):
            label = (f"phases, {key.replace('_', ' ')} {v}" if key != "tier_pattern"
                     else f"phases, {v}" if v != "none compute" else None)
            if label is None:  # the same as pattern compute
                continue
            row(label, [p for p in phases if p[key] == v])
    if overlaps:
        print("# overlapped phases: transfer time hidden behind compute and left exposed, ms "
              "(median over runs; measured: the busiest rank of each step; hidden needs "
              "--overlap-probe)")
        print(f"# {'algorithm phase':34s} {'n':>5s} {'pred hidden':>12s} {'meas hidden':>12s} "
              f"{'pred exposed':>13s} {'meas exposed':>13s}")
        for key in sorted({(o["algo"], o["phase"]) for o in overlaps}):
            items = [o for o in overlaps if (o["algo"], o["phase"]) == key]
            med = {k: float(np.median([o[k] for o in items])) for k in
                   ("pred_hidden", "meas_hidden", "pred_exposed", "meas_exposed")}
            mh = "-" if np.isnan(med["meas_hidden"]) else f"{1e3 * med['meas_hidden']:.3f}"
            print(f"  {key[0] + ' ' + key[1]:34s} {len(items):5d} {1e3 * med['pred_hidden']:12.3f} "
                  f"{mh:>12s} {1e3 * med['pred_exposed']:13.3f} {1e3 * med['meas_exposed']:13.3f}")
    if args.bars:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        rows = [t for t in table if t[0] == "whole runs"] + [
            t for t in table if t[0].startswith("phases, ") and t[0][8:].split()[0] in
            ("intra", "inter") and len(t[0][8:].split()) == 2] + [
            t for t in table if t[0] in ("phases, pattern compute",)]
        fig, ax = plt.subplots(figsize=(max(6, 0.55 * len(rows) + 2), 4.5))
        xs = np.arange(len(rows))
        for k, (name, col) in enumerate((("median", 1), ("p90", 2), ("max", 3))):
            ax.bar(xs + (k - 1) * 0.27, [100 * t[col] for t in rows], 0.27, label=name,
                   color=f"C{k}")
        if have_base:
            ax.scatter(xs - 0.27, [max(100 * t[4], 0.1) for t in rows], marker="_", s=120,
                       color="k", zorder=3, label="median, one rate per tier")
            ax.scatter(xs, [max(100 * t[5], 0.1) for t in rows], marker="x", s=30, color="k",
                       zorder=3, label="p90, one rate per tier")
        ax.set_xticks(xs)
        ax.set_xticklabels([t[0].replace("phases, ", "").replace("pattern ", "") for t in rows],
                           rotation=60, ha="right", fontsize=7)
        ax.set_ylabel("|error| (%)")
        ax.axhline(5, color="k", lw=0.5, ls=":")
        ax.axhline(15, color="k", lw=0.5, ls="--")
        ax.set_yscale("log")
        ax.set_ylim(bottom=0.1)
        ax.set_title(f"time model |error| by pattern and tier ({len(runs)} runs)", fontsize=10)
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(args.bars, dpi=110)
        print(f"# wrote {args.bars}")
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
