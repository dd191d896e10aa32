#!/usr/bin/env python3
"""Distributed runs of an attnsim/1 file: for each run, bytes sent per phase (max over ranks),
measured (bars) against the model (black markers), and measured time per phase (max over
ranks). One row of two panels per run (the last 6 runs at most).

Usage: plot_run.py FILE.h5 [-o FILE.png]"""
import argparse
import sys


def fail(msg):
    print(f"plot_run: {msg}", file=sys.stderr)
    return 2


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("file")
    ap.add_argument("-o", "--out")
    args = ap.parse_args()
    try:
        import h5py
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import numpy as np
    except ImportError as e:
        return fail(f"{e}; install h5py and matplotlib (Debian: python3-h5py python3-matplotlib)")
    try:
        f = h5py.File(args.file, "r")
    except OSError as e:
        return fail(f"cannot open '{args.file}' as HDF5 ({e}); accepted: an attnsim/1 file")
    with f:
        schema = f.attrs.get("schema")
        if schema != "attnsim/1" or "runs" not in f:
            return fail(f"'{args.file}' is not an attnsim/1 file (schema = {schema!r})")
        runs = []
        for name, g in f["runs"].items():
            a = g.attrs
            if a.get("kind") != "distributed" or a.get("complete") != 1:
                continue
            phases = [p.decode() if isinstance(p, bytes) else p for p in g["phases"][()]]
            runs.append(dict(
                title=f"{a['algorithm']} {a['pass']} P={a['P']} N={a['seq_len']}"
                      f"{' causal' if a['causal'] else ''}",
                phases=phases,
                meas=g["measured/bytes_sent"][()].max(axis=0),
                pred=g["predicted/bytes_sent"][()].max(axis=0),
                time=g["measured/time_s"][()].max(axis=0),
                ok=bool(a.get("counts_match", 0))))
    if not runs:
        return fail(f"'{args.file}' has no complete kind=distributed runs")
    runs = runs[-6:]
    out = args.out or args.file.rsplit(".", 1)[0] + ".png"
    fig, axes = plt.subplots(len(runs), 2, figsize=(12, 2.6 * len(runs)), squeeze=False)
    for (ax_b, ax_t), r in zip(axes, runs):
        x = np.arange(len(r["phases"]))
        ax_b.bar(x, r["meas"], color="C0", label="measured")
        ax_b.plot(x, r["pred"], "k_", markersize=18, mew=2, label="model")
        ax_b.set_xticks(x, r["phases"], rotation=25, ha="right", fontsize=7)
        ax_b.set_ylabel("bytes sent (max rank)")
        ax_b.set_title(f"{r['title']}: {'measured == model' if r['ok'] else 'COUNTS DIFFER'}",
                       fontsize=9)
        ax_t.bar(x, 1e3 * r["time"], color="C1")
        ax_t.set_xticks(x, r["phases"], rotation=25, ha="right", fontsize=7)
        ax_t.set_ylabel("time, ms (max rank)")
        ax_t.set_title("measured phase time", fontsize=9)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    print(f"plot_run: wrote {out} ({len(runs)} runs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
