#!/usr/bin/env python3
"""Distributed runs of an attnsim/1 file, one row of two panels per run (the last 6 runs at
most): bytes sent per phase (max over ranks), measured (bars) against the model (black
markers); and time per phase, measured against the model - the critical path of the phase
(last rank in to last rank out, `crit_ms` in attnsim run's table) against the model's time
(`pred_ms`).

Usage: plot_run.py FILE.h5 [-o FILE.png]"""
import argparse
import sys

import attnsim_h5 as ah

PROG = "plot_run"


def fail(msg):
    print(f"{PROG}: {msg}", file=sys.stderr)
    return 2


def load(path, last):
    """The last `last` complete distributed runs, or raises ah.FileError."""
    runs = []
    with ah.open_file(path) as f:
        t = ah.summary(f)
        for r in t[t["kind"] == "distributed"][-last:]:
            g = ah.group(f, r["run"])
            a = g.attrs
            layout = ah.text(a.get("layout", ""))
            runs.append(dict(
                title=f"{r['algorithm']}{' ' + layout if layout else ''} {r['pass']} "
                      f"P={r['P']} N={r['seq_len']}{' causal' if r['causal'] else ''}",
                phases=[ah.text(p) for p in g["phases"][()]],
                meas=g["measured/bytes_sent"][()].max(axis=0),
                pred=g["predicted/bytes_sent"][()].max(axis=0),
                crit=(g["measured/critical_path_phase_s"][()]
                      if "measured/critical_path_phase_s" in g else None),
                pred_s=g["predicted/phase_time_s"][()],
                ok=bool(a.get("counts_match", 0))))
    return runs


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("file")
    ap.add_argument("-o", "--out", help="PNG to write (default: FILE with .png)")
    args = ap.parse_args()
    ah.ensure_python(PROG)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    try:
        runs = load(args.file, 6)
    except ah.FileError as e:
        return fail(str(e))
    if not runs:
        return fail(f"'{args.file}' has no complete kind=distributed runs")
    out = args.out or args.file.rsplit(".", 1)[0] + ".png"
    fig, axes = plt.subplots(len(runs), 2, figsize=(12, 2.8 * len(runs)), squeeze=False)
    for (ax_b, ax_t), r in zip(axes, runs):
        x = np.arange(len(r["phases"]))
        ax_b.bar(x, r["meas"], color="C0", label="measured")
        ax_b.plot(x, r["pred"], "k_", markersize=18, mew=2, label="model")
        ax_b.set_xticks(x, r["phases"], rotation=25, ha="right", fontsize=8)
        ax_b.set_ylabel("bytes sent (max rank)")
        ax_b.set_title(f"{r['title']}: {'measured == model' if r['ok'] else 'COUNTS DIFFER'}",
                       fontsize=9)
        if r["crit"] is not None:
            ax_t.bar(x, 1e3 * r["crit"], color="C1", label="measured (critical path)")
        ax_t.plot(x, 1e3 * r["pred_s"], "k_", markersize=18, mew=2, label="model")
        ax_t.set_xticks(x, r["phases"], rotation=25, ha="right", fontsize=8)
        ax_t.set_ylabel("time (ms)")
        ax_t.set_yscale("log")
        ax_t.set_title("phase time: last rank in to last rank out, vs model", fontsize=9)
    axes[0][0].legend(fontsize=8)
    axes[0][1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    print(f"{PROG}: wrote {out} ({len(runs)} runs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
