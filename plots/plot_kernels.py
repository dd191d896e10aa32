#!/usr/bin/env python3
"""HBM traffic of the attention kernels: bytes (read + written) against N, one colour per
kernel, measured as markers and the kernel IO model as lines, compulsory traffic dotted;
log-log. One panel per (head dim, SRAM size, storage type, causal) found in the file.

Usage: plot_kernels.py FILE.h5 [-o FILE.png]
Reads the complete kind=kernel runs of an attnsim/1 file.
"""
import argparse
import sys

import attnsim_h5 as ah

PROG = "plot_kernels"


def fail(msg):
    print(f"{PROG}: {msg}", file=sys.stderr)
    return 2


def load(path):
    """The complete kind=kernel runs with counted bytes (rows, None), or (None, why)."""
    try:
        f = ah.open_file(path)
    except ah.FileError as e:
        return None, str(e)
    with f:
        t = ah.summary(f)
        rows = []
        for r in t[(t["kind"] == "kernel") & (t["pass"] != "decode")]:
            g = ah.group(f, r["run"])
            m, p = g["measured"], g["predicted"]
            if "hbm_bytes_read" not in m:
                continue  # cuda runs without --dram count no bytes
            rows.append(dict(
                kernel=f"{r['algorithm']} {r['pass']}", n=int(r["seq_len"]),
                nk=int(r["seq_len_kv"]), d=int(r["head_dim"]),
                sram=int(g.attrs.get("sram_elems", 0)), dtype=str(r["dtype"]),
                causal=int(r["causal"]),
                measured=int(m["hbm_bytes_read"][()] + m["hbm_bytes_written"][()]),
                predicted=int(p["hbm_bytes_read"][()] + p["hbm_bytes_written"][()]),
                compulsory=int(p["compulsory_bytes_read"][()] +
                               p["compulsory_bytes_written"][()])))
    if not rows:
        return None, f"'{path}' has no complete kind=kernel runs with counted HBM bytes"
    return rows, None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("file")
    ap.add_argument("-o", "--out", help="PNG to write (default: FILE with .png)")
    args = ap.parse_args()
    ah.ensure_python(PROG)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows, err = load(args.file)
    if err:
        return fail(err)
    out = args.out or (args.file.rsplit(".", 1)[0] + ".png")
    panels = sorted({(r["d"], r["sram"], r["dtype"], r["causal"]) for r in rows})
    kernels = sorted({r["kernel"] for r in rows})
    colours = {k: f"C{i}" for i, k in enumerate(kernels)}
    cols = min(len(panels), 3)
    nrows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(nrows, cols, figsize=(5.5 * cols, 4.2 * nrows), squeeze=False)
    for ax, key in zip(axes.flat, panels):
        d, sram, dtype, causal = key
        for k in kernels:
            sel = sorted((r for r in rows if r["kernel"] == k and
                          (r["d"], r["sram"], r["dtype"], r["causal"]) == key),
                         key=lambda r: r["n"])
            if not sel:
                continue
            n = [r["n"] for r in sel]
            ax.plot(n, [r["predicted"] for r in sel], "-", color=colours[k], label=k)
            ax.plot(n, [r["measured"] for r in sel], "o", color=colours[k], mfc="none")
            ax.plot(n, [r["compulsory"] for r in sel], ":", color=colours[k], alpha=0.6)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("sequence length N (tokens)")
        ax.set_ylabel("HBM bytes (read + written)")
        ax.set_title(f"d={d}, SRAM={sram} elements, {dtype}, {'causal' if causal else 'full'}")
        ax.grid(True, which="both", alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=8, loc="upper left")
    fig.suptitle("HBM traffic: measured (o), model (line), compulsory (dotted)", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(f"{PROG}: wrote {out} ({len(rows)} runs, {len(panels)} panels)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
