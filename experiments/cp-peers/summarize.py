#!/usr/bin/env python3
"""Table and plot of a cp-peers file (experiments/cp-peers/run.sh): TF/s per GPU of every
implementation per shape (attnsim's distributed runs and PyTorch's benchmark runs, same
FLOP count: 4 B H N^2 d, halved when causal, x3.5 for fwd + bwd), attnsim Ring / best torch CP,
and the scaling efficiency of the best attnsim algorithm (TF/s per GPU / single-GPU cuDNN).
Usage: summarize.py FILE.h5 [-o PLOT.png]"""
import argparse
import sys
from collections import defaultdict

import os

from torch_cp import attn_flops  # the one FLOP count of both sides (torch is imported lazily)

sys.path.insert(0, os.path.join(os.path.dirname(os.path.realpath(__file__)), "..", "..", "plots"))
import attnsim_h5 as ah  # noqa: E402  (the one reader of attnsim/1 files)


def s(v):
    return v.decode() if isinstance(v, bytes) else str(v)


def plot(rows, impls, P, out):
    """Bars of TF/s per GPU per shape and implementation; the legend beside the axes, where it
    covers no bar."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    keys = sorted(rows)
    fig, ax = plt.subplots(figsize=(max(8, 1.2 * len(keys)) + 3, 5))
    w = 0.8 / max(1, len(impls))
    colors = plt.get_cmap("tab20").colors
    for j, i in enumerate(impls):
        ax.bar([k + j * w for k in range(len(keys))], [rows[key].get(i, 0) for key in keys],
               w, label=i, color=colors[j % len(colors)])
    ax.set_xticks([k + 0.4 - w / 2 for k in range(len(keys))])
    ax.set_xticklabels([f"N={k[0] // 1024}k\nkv={k[1]}\n{'causal' if k[2] else 'full'}\n{k[3]}"
                        for k in keys], fontsize=8)
    ax.set_ylabel("TF/s per GPU")
    ax.set_title(f"distributed attention on {P} GPUs: attnsim vs PyTorch context parallel")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("file")
    ap.add_argument("-o", "--out")
    args = ap.parse_args()
    ah.ensure_python("summarize", ("h5py", "numpy", "matplotlib") if args.out else ("h5py",))
    rows = defaultdict(dict)  # (N, K/V heads, causal, pass) -> impl -> TF/s per GPU
    P = 0
    try:
        f = ah.open_file(args.file)
    except ah.FileError as e:
        print(f"summarize: {e}", file=sys.stderr)
        return 2
    with f:
        for g in f["runs"].values():
            a = g.attrs
            kind = s(a.get("kind", ""))
            if kind not in ("distributed", "benchmark") or a.get("complete") != 1:
                continue  # the calibration, the model's prediction, an unfinished run
            ps = s(a["pass"])
            N, causal = int(a["seq_len"]), int(a["causal"])
            kv = int(a.get("kv_heads", a.get("heads", 0)))
            if kind == "distributed":
                algo = s(a["algorithm"])
                if algo == "ring":
                    algo += "-" + s(a["layout"])
                sec = float(g["measured/phase_end_s"][()].max())  # first phase's barrier to last end
                p = int(a["P"])
                P = max(P, p)
                fl = attn_flops(int(a["batch"]), int(a["heads"]), N, int(a["head_dim"]), causal,
                                ps == "train")
                rows[(N, kv, causal, ps)]["attnsim-" + algo] = fl / sec / p / 1e12
            elif kind == "benchmark":
                rows[(N, kv, causal, ps)][s(a["algorithm"])] = float(
                    g["measured/tflop_per_s_per_gpu"][()])
    impls = sorted({i for r in rows.values() for i in r})
    print(f"# TF/s per GPU, P = {P}; eff = best attnsim / single-GPU torch-cudnn")
    print(f"{'N':>7} {'kv':>3} {'causal':>6} {'pass':>5} " + " ".join(f"{i[:22]:>22}" for i in impls) +
          "  ring/bestCP  eff")
    for key in sorted(rows):
        r = rows[key]
        ring = max((v for i, v in r.items() if i.startswith("attnsim-ring")), default=float("nan"))
        cp = max((v for i, v in r.items() if i.startswith("torch-cp")), default=float("nan"))
        best = max((v for i, v in r.items() if i.startswith("attnsim")), default=float("nan"))
        single = r.get("torch-cudnn", float("nan"))
        print(f"{key[0]:7d} {key[1]:3d} {key[2]:6d} {key[3]:>5} " +
              " ".join(f"{r.get(i, float('nan')):22.1f}" for i in impls) +
              f"  {ring / cp:10.2f}  {best / single:4.2f}")
    if args.out:
        plot(rows, impls, P, args.out)
        print(f"# wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
