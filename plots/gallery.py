#!/usr/bin/env python3
"""Turns an attnsim/1 HDF5 file into a gallery: PNG figures and an index.html that shows them.

Figures (each drawn when the file holds the runs it needs; index.html says why one is absent):
  parity.png       predicted vs measured: run and phase times, and bytes (every rank and phase
                   of the distributed runs, HBM bytes of the kernel runs)
  phases.png       per-phase breakdown of each algorithm: measured critical-path time of each
                   phase against the model's, for the largest run of each algorithm
  scaling.png      time vs P: measured runs as points over the model's lines, extended to large
                   P by `attnsim model` on the machine description recorded in the runs
  roofline.png     kernels: achieved TF/s vs arithmetic intensity (flop per HBM byte), under the
                   ceilings of the machine when the file records one
  decode.png       decode kernels: GB/s of K+V read per shape, with the read ceiling
  peers.png        prefill kernels against PyTorch SDPA (benchmark runs): TF/s vs N
Also scaling.csv: the points and lines of scaling.png.

Usage: gallery.py FILE.h5 [-o DIR] [--attnsim BIN]
DIR defaults to FILE without .h5 plus "-gallery". BIN (for the model lines) defaults to
$ATTNSIM, then build/attnsim of this checkout, then attnsim on PATH; without one, the lines
cover only the P of the runs in the file."""
import argparse
import html
import math
import os
import shutil
import subprocess
import sys
import tempfile

PROG = "gallery"


def fail(msg):
    print(f"{PROG}: {msg}", file=sys.stderr)
    return 2


def s(v):
    """An HDF5 string attribute or dataset element as str."""
    return v.decode() if isinstance(v, bytes) else str(v)


class Run:
    """One complete run of the file, with what the figures need."""

    def __init__(self, name, g, np):
        a = g.attrs
        self.name = name
        self.kind = s(a["kind"])
        self.algo = s(a["algorithm"])
        self.layout = s(a.get("layout", ""))
        self.pass_ = s(a["pass"])
        self.P = int(a["P"])
        self.N = int(a["seq_len"])
        self.Nk = int(a.get("seq_len_kv", a["seq_len"]))
        self.batch, self.heads = int(a["batch"]), int(a["heads"])
        self.kv_heads, self.d = int(a["kv_heads"]), int(a["head_dim"])
        self.causal, self.dtype = int(a["causal"]), s(a["dtype"])
        self.backend, self.machine = s(a["backend"]), s(a["machine"])
        self.machine_text = s(a.get("machine_description", ""))
        self.machine_origin = s(a.get("machine_origin", ""))
        self.grid = (int(a["grid_rows"]), int(a["grid_cols"]))
        if self.kind in ("distributed", "model"):
            self.phases = [s(p) for p in g["phases"][()]]
            self.pred_phase_s = g["predicted/phase_time_s"][()]
            self.pred_total_s = float(g["predicted/total_time_s"][()])
            self.pred_bytes_max = g["predicted/bytes_sent_max"][()]
        if self.kind == "distributed":
            self.meas_phase_s = g["measured/critical_path_phase_s"][()]
            self.meas_total_s = float(g["measured/phase_end_s"][()].max())
            self.meas_bytes = g["measured/bytes_sent"][()].ravel()
            self.pred_bytes = g["predicted/bytes_sent"][()].ravel()
        if self.kind == "kernel" and self.pass_ == "decode":
            # decode runs (attnsim kernels --decode, experiments/decode-peers/bench.py): the
            # figure of merit is K+V bytes over time; peers have no prediction
            m = g["measured"]
            self.kv_bytes = float(a.get("kv_bytes", m["hbm_bytes_read"][()]
                                        if "hbm_bytes_read" in m else float("nan")))
            self.meas_read = self.kv_bytes
            self.meas_bytes_rw, self.pred_bytes_rw = None, None
            if "hbm_bytes_read" in m and "predicted/hbm_bytes_read" in g:  # cpu: counted
                self.meas_bytes_rw = int(m["hbm_bytes_read"][()] + m["hbm_bytes_written"][()])
                self.pred_bytes_rw = int(g["predicted/hbm_bytes_read"][()] +
                                         g["predicted/hbm_bytes_written"][()])
            self.flops = int(m["flops"][()]) if "flops" in m else 0
            self.meas_time_s = float(m["time_s"][()])
            self.pred_time_s = (float(g["predicted/time_s"][()]) if "predicted/time_s" in g
                                else float("nan"))
            self.read_ceiling = float(a.get("hbm_read_ceiling_bytes_per_s", float("nan")))
            self.equal_share_read = float(a.get("hbm_equal_share_read_bytes_per_s",
                                                float("nan")))
        elif self.kind == "kernel":
            m, p = g["measured"], g["predicted"]
            # cpu: counted logical bytes; cuda: DRAM bytes when measured (--dram), else none
            if "hbm_bytes_read" in m:
                self.meas_bytes_rw = int(m["hbm_bytes_read"][()] + m["hbm_bytes_written"][()])
                self.meas_read = int(m["hbm_bytes_read"][()])
            elif "dram_bytes_read" in m:
                self.meas_bytes_rw = int(m["dram_bytes_read"][()] + m["dram_bytes_written"][()])
                self.meas_read = int(m["dram_bytes_read"][()])
            else:
                self.meas_bytes_rw, self.meas_read = None, None
            self.pred_bytes_rw = int(p["hbm_bytes_read"][()] + p["hbm_bytes_written"][()])
            self.flops = int(m["flops"][()])
            self.meas_time_s = float(m["time_s"][()])
            self.pred_time_s = float(p["time_s"][()])
            self.read_ceiling = float(a.get("hbm_read_ceiling_bytes_per_s", float("nan")))
            self.equal_share_read = float(a.get("hbm_equal_share_read_bytes_per_s",
                                                float("nan")))

    def algo_label(self):
        return f"{self.algo} ({self.layout})" if self.layout else self.algo

    def shape_key(self):
        """Everything that fixes a scaling curve except P (and the grid, which follows P)."""
        return (self.pass_, self.N, self.batch, self.heads, self.kv_heads, self.d, self.causal,
                self.dtype, self.machine, self.machine_origin)

    def shape_label(self):
        return (f"{self.pass_} N={self.N} B={self.batch} H={self.heads}/{self.kv_heads} "
                f"d={self.d}{' causal' if self.causal else ''} {self.dtype}, {self.machine}")


def load(path, h5py, np):
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        return None, None, None, f"cannot open '{path}' as HDF5 ({e}); accepted: an attnsim/1 file"
    with f:
        schema = s(f.attrs.get("schema", ""))
        if schema != "attnsim/1" or "runs" not in f:
            return None, None, None, (f"'{path}' is not an attnsim/1 file (schema = {schema!r}); "
                                "accepted: a file written by attnsim")
        runs, calib, bench = [], [], []
        for name, g in f["runs"].items():
            if g.attrs.get("complete") != 1:
                continue  # an unpublished copy (docs/hdf5-schema.md): never read
            kind = s(g.attrs.get("kind", ""))
            if kind == "calibration":
                calib.append({k: g.attrs[k] for k in g.attrs})
                calib[-1]["rates"] = {
                    dt: float(g[f"kernels/{dt}"].attrs["rate_flop_per_s"])
                    for dt in ("f32", "f16", "bf16") if f"kernels/{dt}" in g}
            elif kind in ("distributed", "model", "kernel"):
                runs.append(Run(name, g, np))
            elif kind == "benchmark":
                a = g.attrs
                bench.append(dict(impl=s(a["algorithm"]), pass_=s(a["pass"]),
                                  n=int(a["seq_len"]), d=int(a["head_dim"]),
                                  causal=int(a["causal"]), dtype=s(a["dtype"]),
                                  gpu=s(a.get("gpu", "")),
                                  tflops=float(g["measured/tflop_per_s"][()])))
    if not runs and not calib and not bench:
        return None, None, None, f"'{path}' holds no complete runs"
    return runs, calib, bench, None


def is_exe(path):
    return os.path.isfile(path) and os.access(path, os.X_OK)


def find_attnsim(arg):
    if arg:
        return os.path.abspath(arg) if is_exe(arg) else None
    for cand in (os.environ.get("ATTNSIM"),
                 os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "build",
                              "attnsim"), shutil.which("attnsim")):
        if cand and is_exe(cand):
            return os.path.abspath(cand)
    return None


def model_lines(binary, group, h5py, tmp):
    """The model's total time of each algorithm of a scaling group at P = 1, 2, 4, ... up to
    4096 (or N, or kv-heads for Ulysses: beyond, the algorithm cannot run) plus the P of the
    runs, computed by `attnsim model` on the machine description the runs recorded.
    Returns {algo label: [(P, seconds)]} and a note when something could not be modelled."""
    # the description of the largest run: its gpus_per_node is the node size the runs saw (a
    # run sets it to its ranks per node, so that the model places ranks where they ran)
    r0 = max(group, key=lambda r: (r.P, bool(r.machine_text)))
    if not r0.machine_text:
        return {}, f"runs of '{r0.shape_label()}' record no machine description"
    mfile = os.path.join(tmp, "machine")
    with open(mfile, "w") as fh:
        fh.write(r0.machine_text)
    lines, notes = {}, []
    algos = sorted({(r.algo, r.layout) for r in group})
    for algo, layout in algos:
        ps = {2**k for k in range(13)} | {r.P for r in group if r.algo == algo}
        ps = sorted(p for p in ps if p <= r0.N)
        out = os.path.join(tmp, f"m-{algo}-{layout}-{len(lines)}.h5")
        cmd = [binary, "model", "--algo", algo, "--procs", ",".join(map(str, ps)),
               "--seq", str(r0.N), "--batch", str(r0.batch), "--heads", str(r0.heads),
               "--kv-heads", str(r0.kv_heads), "--head-dim", str(r0.d),
               f"--causal={'yes' if r0.causal else 'no'}", "--pass", r0.pass_, "--dtype",
               r0.dtype, "--machine", mfile, "--rank-arrays", "1", "--out", out]
        if algo.startswith("a2d"):
            cmd += ["--grid", "auto"]  # the model's best grid at every P
        if layout:
            cmd += ["--layout", layout]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            notes.append(f"attnsim model failed for {algo}: {res.stderr.strip()[:300]}")
            continue
        pts = []
        with h5py.File(out, "r") as f:
            for g in f["runs"].values():
                pts.append((int(g.attrs["P"]), float(g["predicted/total_time_s"][()]),
                            f'{g.attrs["grid_rows"]}x{g.attrs["grid_cols"]}'))
        label = f"{algo} ({layout})" if layout else algo
        lines[label] = sorted(pts)
    return lines, "; ".join(notes)


def loglog_identity(ax, lo, hi):
    ax.plot([lo, hi], [lo, hi], "k-", lw=0.8, label="predicted = measured")
    ax.set_xscale("log")
    ax.set_yscale("log")


def fig_parity(runs, plt, np, out):
    dist = [r for r in runs if r.kind == "distributed"]
    kern = [r for r in runs if r.kind == "kernel"]
    if not dist and not kern:
        return None, "no distributed or kernel runs: nothing measured to compare"
    fig, (at, ab) = plt.subplots(1, 2, figsize=(12, 5.2))
    algos = sorted({r.algo_label() for r in dist})
    t_pts, equal, total = [], 0, 0
    for i, al in enumerate(algos):
        sel = [r for r in dist if r.algo_label() == al]
        pm = [(m, p) for r in sel for m, p in zip(r.meas_phase_s, r.pred_phase_s)
              if m > 0 and p > 0]
        if pm:
            at.scatter(*zip(*pm), s=10, alpha=0.5, color=f"C{i}", label=f"{al} phases")
        rm = [(r.meas_total_s, r.pred_total_s) for r in sel if r.meas_total_s > 0]
        at.scatter(*zip(*rm), s=60, marker="*", color=f"C{i}", edgecolor="k",
                   label=f"{al} runs")
        t_pts += pm + rm
        mb = np.concatenate([r.meas_bytes for r in sel])
        pb = np.concatenate([r.pred_bytes for r in sel])
        equal += int((mb == pb).sum())
        total += mb.size
        keep = (mb > 0) & (pb > 0)
        ab.scatter(mb[keep], pb[keep], s=14, alpha=0.6, color=f"C{i}",
                   label=f"{al} (rank, phase)")
    kt = [(r.meas_time_s, r.pred_time_s) for r in kern
          if r.meas_time_s > 0 and math.isfinite(r.pred_time_s) and r.pred_time_s > 0]
    if kt:
        at.scatter(*zip(*kt), s=18, marker="s", color="0.4", label="kernel runs")
        t_pts += kt
    kb = [r for r in kern if r.meas_bytes_rw is not None]
    if kb:
        km = np.array([r.meas_bytes_rw for r in kb])
        kp = np.array([r.pred_bytes_rw for r in kb])
        equal += int((km == kp).sum())
        total += km.size
        ab.scatter(km, kp, s=18, marker="s", color="0.4", label="kernel HBM bytes")
    if t_pts:
        v = np.array(t_pts)
        loglog_identity(at, v.min(), v.max())
        at.set_xlabel("measured time (s)")
        at.set_ylabel("predicted time (s)")
        at.legend(fontsize=7)
    else:
        at.text(0.5, 0.5, "no run has a predicted time\n(cpu kernel runs: no machine)",
                ha="center", va="center", transform=at.transAxes)
    at.set_title("time: predicted vs measured", fontsize=10)
    pts = [c.get_offsets() for c in ab.collections]
    if pts and sum(len(p) for p in pts):
        v = np.concatenate(pts)
        loglog_identity(ab, v.min(), v.max())
        ab.legend(fontsize=7)
    ab.set_xlabel("measured bytes")
    ab.set_ylabel("predicted bytes")
    ab.set_title(f"bytes: {equal} of {total} (rank, phase) and kernel counts equal exactly",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return (f"Predicted against measured. Left: time of every phase (dots; critical path: last "
            f"rank in to last rank out) and of every run (stars). Right: bytes sent by every "
            f"rank in every phase and HBM bytes of every kernel run; {equal} of {total} "
            f"counts are equal exactly."), None


def fig_phases(runs, plt, np, out):
    dist = [r for r in runs if r.kind == "distributed"]
    if not dist:
        return None, "no distributed runs: no measured phases"
    best = {}
    for r in dist:  # the largest P of each (algorithm, pass); the latest on ties
        k = (r.algo_label(), r.pass_)
        if k not in best or r.P >= best[k].P:
            best[k] = r
    keys = sorted(best)
    fig, axes = plt.subplots(len(keys), 1, figsize=(11, 0.6 + 2.0 * len(keys)), squeeze=False)
    for ax, k in zip(axes[:, 0], keys):
        r = best[k]
        # shares of each bar's total: the model's absolute times may be far from the measured
        # ones (a machine not calibrated for where the run ran), the split between phases not
        cmap = plt.get_cmap("tab20" if len(r.phases) > 10 else "tab10")
        for row, (vals, lab) in enumerate(((r.meas_phase_s, "measured"),
                                           (r.pred_phase_s, "model"))):
            total, left = float(sum(vals)), 0.0
            for j, (ph, v) in enumerate(zip(r.phases, vals)):
                share = 100.0 * v / total if total > 0 else 0.0
                ax.barh(row, share, left=left, color=cmap(j % cmap.N), edgecolor="w",
                        label=ph if row == 0 else None)
                left += share
            ax.text(101, row, f"{1e3 * total:.4g} ms", va="center", fontsize=8)
        ax.set_xlim(0, 118)
        ax.set_yticks([0, 1], ["measured", "model"])
        ax.invert_yaxis()
        ax.set_xlabel("% of the sum of phase times")
        ax.set_title(f"{k[0]} {k[1]}, P={r.P} ({r.grid[0]}x{r.grid[1]}), "
                     f"{r.shape_label()}", fontsize=9)
        ax.legend(fontsize=6, ncol=min(6, len(r.phases)), loc="upper center",
                  bbox_to_anchor=(0.5, -0.45), frameon=False)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return ("Per-phase breakdown of each algorithm at its largest P in the file: the measured "
            "critical-path time of each phase (last rank in to last rank out) against the "
            "model's phase times, as shares of each sum (written at the right of each bar)."),\
        None


def fig_scaling(runs, plt, np, out, csv_path, binary, h5py):
    pts = [r for r in runs if r.kind in ("distributed", "model")]
    if not pts:
        return None, "no distributed or model runs"
    groups = {}
    for r in pts:
        groups.setdefault(r.shape_key(), []).append(r)
    # the groups with the most runs first; at most 6 panels
    order = sorted(groups, key=lambda k: -len(groups[k]))
    shown, notes = order[:6], []
    if len(order) > 6:
        notes.append(f"{len(order) - 6} more shapes are in the file but not drawn")
    if not binary:
        notes.append("attnsim binary not found (--attnsim): model lines cover only the P "
                     "of the runs in the file")
    cols = min(len(shown), 2)
    nrows = (len(shown) + cols - 1) // cols
    fig, axes = plt.subplots(nrows, cols, figsize=(6.4 * cols, 4.6 * nrows), squeeze=False)
    csv = ["shape,algorithm,P,grid,source,time_s"]
    with tempfile.TemporaryDirectory() as tmp:
        for ax, key in zip(axes.flat, shown):
            group = groups[key]
            lines, note = ({}, "")
            if binary:
                lines, note = model_lines(binary, group, h5py, tmp)
            if note:
                notes.append(note)
            for r in group:  # model points recorded in the file join the lines
                if r.kind == "model" or not binary:
                    lines.setdefault(r.algo_label(), []).append(
                        (r.P, r.pred_total_s, f"{r.grid[0]}x{r.grid[1]}"))
            labels = sorted(set(lines) | {r.algo_label() for r in group})
            for i, al in enumerate(labels):
                ln = sorted(set(lines.get(al, [])))
                if ln:
                    ax.plot([x[0] for x in ln], [x[1] for x in ln], "-", color=f"C{i}",
                            label=f"{al} model")
                    csv += [f'"{group[0].shape_label()}",{al},{p},{g},model,{t:.9g}'
                            for p, t, g in ln]
                ex = [r for r in group if r.kind == "distributed" and r.algo_label() == al]
                if ex:
                    ax.plot([r.P for r in ex], [r.meas_total_s for r in ex], "o",
                            color=f"C{i}", mfc="none", ms=8, label=f"{al} measured")
                    ax.plot([r.P for r in ex], [r.pred_total_s for r in ex], "x",
                            color=f"C{i}", ms=6)
                    for r in sorted(ex, key=lambda r: r.P):
                        head = f'"{group[0].shape_label()}",{al},{r.P},{r.grid[0]}x{r.grid[1]}'
                        csv += [f"{head},measured,{r.meas_total_s:.9g}",
                                f"{head},predicted_in_run,{r.pred_total_s:.9g}"]
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel("P (devices)")
            ax.set_ylabel("time (s)")
            ax.set_title(group[0].shape_label(), fontsize=8)
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=6)
    for ax in list(axes.flat)[len(shown):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    with open(csv_path, "w") as fh:
        fh.write("\n".join(csv) + "\n")
    return ("Time against the number of devices P: measured runs (circles; last rank out, "
            "from the start barrier) and the prediction recorded with each run (crosses) over "
            "the model's lines on the machine description the runs recorded, up to large P "
            "(Attention2D on the model's best grid at each P)." + (" " + "; ".join(notes) + "." if notes else "")), None


def fig_roofline(runs, calib, plt, np, out):
    kern = [r for r in runs if r.kind == "kernel" and r.pass_ != "decode"]
    if not kern:
        return None, "no kernel runs (attnsim kernels)"
    fig, ax = plt.subplots(figsize=(7.5, 5.2))
    kernels = sorted({(r.algo, r.pass_) for r in kern})
    for i, (k, p) in enumerate(kernels):
        sel = [r for r in kern if (r.algo, r.pass_) == (k, p) and r.meas_time_s > 0]
        x = [r.flops / (r.meas_bytes_rw or r.pred_bytes_rw) for r in sel]
        y = [r.flops / r.meas_time_s / 1e12 for r in sel]
        ax.scatter(x, y, color=f"C{i}", marker="o" if p == "fwd" else "^", s=22,
                   label=f"{k} {p}")
    note = ""
    if calib:
        c = calib[-1]
        bw = float(c.get("copy_bytes_per_s", 0))
        xi = [r.flops / (r.meas_bytes_rw or r.pred_bytes_rw) for r in kern]
        xs = np.logspace(np.log10(min(xi)) - 1, np.log10(max(xi)) + 0.5, 200)
        styles = {"f32": ":", "f16": "-.", "bf16": "--"}
        for dt in sorted({r.dtype for r in kern}):
            rate = c["rates"].get(dt, 0.0)
            if rate > 0 and bw > 0:
                ax.plot(xs, np.minimum(rate, bw * xs) / 1e12, styles.get(dt, "--"), color="k",
                        lw=1, label=f"ceiling {dt}: calibrated rate, copy bandwidth")
        note = (" Ceilings: the file's last calibration run (the FA2 forward tile rate and the "
                "memory-copy bandwidth it measured; a backward pass can beat the forward rate).")
    else:
        note = (" No ceiling drawn: the file holds no calibration run and the kernel runs "
                "record no machine (cpu backend).")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (flop per HBM byte: counted, DRAM, or the model's)")
    ax.set_ylabel("achieved TFLOP/s")
    ax.set_title("kernel roofline", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return ("Kernels on a roofline: achieved TFLOP/s (matrix flops over median time) against "
            "flops per counted HBM byte (read + written)." + note), None


def fig_decode(runs, plt, np, out):
    dec = [r for r in runs if r.kind == "kernel" and r.pass_ == "decode"]
    if not dec:
        return None, ("no decode runs in this file (kind=kernel, pass=decode: written by "
                      "`attnsim kernels --decode` and experiments/decode-peers)")
    shapes = sorted({(r.batch, r.heads, r.kv_heads, r.Nk, r.d) for r in dec})
    impls = sorted({r.algo for r in dec})
    fig, ax = plt.subplots(figsize=(min(16, max(7, 0.5 * len(shapes) * len(impls) ** 0.5)), 5))
    w = 0.8 / len(impls)
    for i, im in enumerate(impls):
        for j, sh in enumerate(shapes):
            sel = [r for r in dec if r.algo == im and (r.batch, r.heads, r.kv_heads, r.Nk,
                                                       r.d) == sh and r.meas_time_s > 0]
            if sel:
                ax.bar(j + i * w, sel[-1].meas_read / sel[-1].meas_time_s / 1e9, w,
                       color=f"C{i}", label=im if j == 0 else None)
    ceil = [r.read_ceiling for r in dec if math.isfinite(r.read_ceiling)]
    if ceil:
        ax.axhline(max(ceil) / 1e9, color="k", ls="--", label="HBM read ceiling (same run)")
    eq = [r.equal_share_read for r in dec if math.isfinite(r.equal_share_read)]
    if eq:
        ax.axhline(max(eq) / 1e9, color="0.5", ls=":",
                   label="read in equal shares of a fixed grid (same run)")
    ax.set_xticks([j + 0.4 - w / 2 for j in range(len(shapes))],
                  [f"({b},{h},{g},{n}) d={d}" for b, h, g, n, d in shapes], rotation=30,
                  ha="right", fontsize=7)
    ax.set_ylabel("GB/s of K+V read")
    ax.set_title("decode kernels", fontsize=10)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return ("Decode: GB/s of K and V read per shape (B, h, h_kv, N) and implementation, with "
            "the HBM read ceiling measured in the same run (and, where recorded, the rate of "
            "the same read cut into equal shares of a fixed grid, as Lean's ranges are)."), None


def fig_peers(bench, plt, np, out):
    if not bench:
        return None, ("no benchmark runs (experiments/prefill-peers/bench.py writes them: "
                      "attnsim's CUDA kernels against PyTorch SDPA in one process)")
    panels = sorted({(b["pass_"], b["d"], b["causal"]) for b in bench})
    impls = sorted({b["impl"] for b in bench})
    cols = min(len(panels), 4)
    rows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.6 * rows), squeeze=False)
    for ax, (ps, d, causal) in zip(axes.flat, panels):
        for i, im in enumerate(impls):
            pts = sorted((b["n"], b["tflops"]) for b in bench
                         if (b["pass_"], b["d"], b["causal"], b["impl"]) == (ps, d, causal, im))
            if pts:
                ax.plot(*zip(*pts), "o-", color=f"C{i}", label=im)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("N (tokens)")
        ax.set_ylabel("TFLOP/s")
        ax.set_ylim(bottom=0)
        ax.set_title(f"{ps} d={d} {'causal' if causal else 'full'}", fontsize=9)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=6)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    gpu = sorted({b["gpu"] for b in bench if b["gpu"]})
    fig.suptitle(f"prefill kernels vs peers, same run{': ' + ', '.join(gpu) if gpu else ''}",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return ("Prefill kernels against their peers measured in one process (CUDA events): "
            "TFLOP/s against N per implementation, pass, head dim and mask."), None


def write_index(outdir, src, made, absent):
    parts = [f"<!doctype html>\n<html><head><meta charset='utf-8'>"
             f"<title>attnsim gallery: {html.escape(os.path.basename(src))}</title>"
             "<style>body{font-family:sans-serif;max-width:1300px;margin:1em auto}"
             "img{max-width:100%;border:1px solid #ccc}figure{margin:1.5em 0}</style>"
             f"</head><body><h1>attnsim gallery</h1><p>From <code>{html.escape(src)}</code>."
             "</p>"]
    for png, caption in made:
        parts.append(f"<figure><img src='{png}' alt='{png}'><figcaption>"
                     f"<b>{png}</b>: {html.escape(caption)}</figcaption></figure>")
    if absent:
        parts.append("<h2>Not drawn</h2><ul>" + "".join(
            f"<li><b>{png}</b>: {html.escape(why)}</li>" for png, why in absent) + "</ul>")
    parts.append("</body></html>\n")
    with open(os.path.join(outdir, "index.html"), "w") as fh:
        fh.write("".join(parts))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("file")
    ap.add_argument("-o", "--out", help="directory to write (created; default FILE-gallery)")
    ap.add_argument("--attnsim", help="attnsim binary for the model lines of scaling.png")
    args = ap.parse_args()
    try:
        import h5py
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import numpy as np
    except ImportError as e:
        return fail(f"{e}; install h5py, numpy and matplotlib "
                    "(Debian: python3-h5py python3-numpy python3-matplotlib)")
    if args.attnsim and not find_attnsim(args.attnsim):
        return fail(f"--attnsim '{args.attnsim}' is not an executable file")
    runs, calib, bench, err = load(args.file, h5py, np)
    if err:
        return fail(err)
    outdir = args.out or (args.file[:-3] if args.file.endswith(".h5") else args.file) + "-gallery"
    try:
        os.makedirs(outdir, exist_ok=True)
    except OSError as e:
        return fail(f"cannot create the output directory '{outdir}' ({e.strerror})")
    binary = find_attnsim(args.attnsim)
    made, absent = [], []
    todo = [("parity.png", lambda p: fig_parity(runs, plt, np, p)),
            ("phases.png", lambda p: fig_phases(runs, plt, np, p)),
            ("scaling.png", lambda p: fig_scaling(runs, plt, np, p,
                                                  os.path.join(outdir, "scaling.csv"),
                                                  binary, h5py)),
            ("roofline.png", lambda p: fig_roofline(runs, calib, plt, np, p)),
            ("decode.png", lambda p: fig_decode(runs, plt, np, p)),
            ("peers.png", lambda p: fig_peers(bench, plt, np, p))]
    for png, draw in todo:
        path = os.path.join(outdir, png)
        caption, why = draw(path)
        if why:
            absent.append((png, why))
            if os.path.exists(path):
                os.remove(path)  # a figure of an earlier file must not linger
        else:
            made.append((png, caption))
    write_index(outdir, args.file, made, absent)
    print(f"{PROG}: wrote {len(made)} figures to {outdir}/ "
          f"({', '.join(p for p, _ in made)}; index.html)")
    for png, why in absent:
        print(f"{PROG}: no {png}: {why}")
    if not made:
        return fail(f"'{args.file}' has no runs any figure can draw")
    return 0


if __name__ == "__main__":
    sys.exit(main())
