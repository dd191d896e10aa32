#!/usr/bin/env python3
"""Turns an attnsim/1 HDF5 file into a gallery: PNG figures and an index.html that shows them.

Figures (each drawn when the file holds the runs it needs; index.html says why one is absent):
  parity.png        predicted vs measured: run and phase times, and bytes (every rank and phase
                    of the distributed runs, HBM bytes of the kernel runs)
  phases.png        per-phase breakdown of each algorithm: measured critical-path time of each
                    phase against the model's, for the largest run of each algorithm
  scaling.png       strong scaling, time vs P at fixed N: measured runs as points over the
                    model's lines, extended to large P by `attnsim model` on the machine
                    description recorded in the runs; one line per configuration (algorithm,
                    layout, Attention2D grid rule or the hybrid's group size), one panel per
                    shape and machine
  weak-scaling.png  weak scaling, efficiency vs P where N grows with P (N/P fixed, or N^2/P
                    fixed: N = N1 sqrt(P)): the per-rank FLOP rate at P over that at the
                    smallest P, measured and modelled
  roofline.png      kernels: achieved TF/s vs arithmetic intensity (flop per HBM byte), under the
                    ceilings of the machine when the file records one
  decode.png        decode kernels: GB/s of K+V read per shape, with the read ceiling
  peers.png         prefill kernels against PyTorch SDPA (benchmark runs): TF/s vs N
Also scaling.csv and weak-scaling.csv: the points and lines of the two scaling figures.

Usage: gallery.py FILE.h5 [-o DIR] [--attnsim BIN]
DIR defaults to FILE without .h5 plus "-gallery". BIN (for the model lines) defaults to
$ATTNSIM, then build/attnsim of this checkout, then attnsim on PATH; without one, the lines
cover only the P of the runs in the file. The runs are found in the file's /summary table and
only the groups of the runs a figure draws are read, so files of 100,000 runs plot in seconds."""
import argparse
import csv
import html
import math
import os
import shlex
import shutil
import subprocess
import sys
import tempfile

import attnsim_h5 as ah

PROG = "gallery"
MAX_PANELS = 6
MODEL_MAX_P = 4096  # the model's lines reach this P (or N, or kv-heads for Ulysses)
GROUPED = {"hybrid"}  # the algorithms of groups of --ulysses-size ranks (grid_rows = the size)


def fail(msg):
    print(f"{PROG}: {msg}", file=sys.stderr)
    return 2


s = ah.text


class Run:
    """One complete run: its /summary row, and its group read on demand (only for the runs a
    figure draws)."""

    def __init__(self, f, row):
        self.f = f
        self.run = int(row["run"])
        self.kind, self.algo, self.pass_ = str(row["kind"]), str(row["algorithm"]), str(row["pass"])
        self.dtype, self.backend = str(row["dtype"]), str(row["backend"])
        self.P, self.N, self.Nk = int(row["P"]), int(row["seq_len"]), int(row["seq_len_kv"])
        self.batch, self.heads = int(row["batch"]), int(row["heads"])
        self.kv_heads, self.d = int(row["kv_heads"]), int(row["head_dim"])
        self.causal = int(row["causal"])
        self.grid = (int(row["grid_rows"]), int(row["grid_cols"]))
        self.meas_total_s = float(row["measured_time_s"])
        self.pred_total_s = float(row["predicted_time_s"])
        self._g = None

    @property
    def g(self):
        if self._g is None:
            self._g = ah.group(self.f, self.run)
        return self._g

    def attr(self, name, default=""):
        v = self.g.attrs.get(name, default)
        return s(v) if isinstance(v, (bytes, str)) else v

    def data(self, path):
        return self.g[path][()]

    # the configuration beyond /summary's columns (attributes of the run)
    @property
    def layout(self):
        return self.attr("layout")

    @property
    def grid_rule(self):
        """How an Attention2D run's grid was chosen: 'auto' (--grid auto: the least predicted
        time), 'square' (the default where P is a square) or 'RxC' (given); for the grouped
        algorithms, 'u=U' where --ulysses-size gave the group size U (grid_rows), '' for the
        default (the node's ranks, which the recorded machine description reproduces)."""
        if self.algo in GROUPED:
            u = option_value(self.attr("command_line"), "--ulysses-size")
            return f"u={self.grid[0]}" if u is not None else ""
        if not self.algo.startswith("a2d"):
            return ""
        auto = self.attr("grid_auto", None)
        if auto is None:  # runs record the command line that chose the grid
            auto = grid_option(self.attr("command_line"), self.P)
        if int(auto) == 1:
            return "auto"
        return "square" if self.grid[0] == self.grid[1] else f"{self.grid[0]}x{self.grid[1]}"

    def machine_key(self):
        return (self.attr("machine"), self.attr("machine_origin"))

    def line_key(self):
        """One line of a scaling panel: the algorithm, its layout, its grid rule."""
        return (self.algo, self.layout, self.grid_rule)

    def shape_label(self, with_n=True):
        n = f"N={self.N} " if with_n else ""
        return (f"{self.pass_} {n}B={self.batch} H={self.heads}/{self.kv_heads} "
                f"d={self.d}{' causal' if self.causal else ''} {self.dtype}, "
                f"{self.attr('machine')}")

    def algo_label(self):
        return line_label(self.line_key())

    def flops(self, n=None):
        """Attention FLOPs of the whole problem (at N = n if given) as the time model counts
        them: 4d forward, 10d backward per visible query-key pair and head."""
        n = self.N if n is None else n
        nk = self.Nk if n == self.N else n
        pairs = n * (n + 1) / 2 if self.causal else float(n) * nk
        per = {"fwd": 4, "bwd": 10, "train": 14}.get(self.pass_, 4)
        return per * self.d * pairs * self.heads * self.batch

    def kernel_detail(self):
        """Reads what the kernel figures need from the run's group; returns self."""
        g, m = self.g, self.g["measured"]
        self.meas_time_s = self.meas_total_s
        self.flops_meas = int(m["flops"][()]) if "flops" in m else 0
        self.pred_time_s = (float(g["predicted/time_s"][()]) if "predicted/time_s" in g
                            else float("nan"))
        self.meas_bytes_rw = self.pred_bytes_rw = self.meas_read = None
        if "hbm_bytes_read" in m:  # cpu: counted logical bytes
            self.meas_bytes_rw = int(m["hbm_bytes_read"][()] + m["hbm_bytes_written"][()])
            self.meas_read = int(m["hbm_bytes_read"][()])
        elif "dram_bytes_read" in m:  # cuda with --dram
            self.meas_bytes_rw = int(m["dram_bytes_read"][()] + m["dram_bytes_written"][()])
            self.meas_read = int(m["dram_bytes_read"][()])
        if "predicted/hbm_bytes_read" in g:
            self.pred_bytes_rw = int(g["predicted/hbm_bytes_read"][()] +
                                     g["predicted/hbm_bytes_written"][()])
        if self.pass_ == "decode":  # the figure of merit is K+V bytes over time
            self.kv_bytes = float(self.attr("kv_bytes", self.meas_read if self.meas_read
                                            is not None else float("nan")))
            self.meas_read = self.kv_bytes
        self.read_ceiling = float(self.attr("hbm_read_ceiling_bytes_per_s", float("nan")))
        self.equal_share_read = float(self.attr("hbm_equal_share_read_bytes_per_s",
                                                float("nan")))
        return self


def option_value(command_line, option):
    """The value an attnsim command line gave `option` (the last one), or None."""
    try:
        words = shlex.split(command_line)
    except ValueError:
        words = command_line.split()
    value = None
    for i, w in enumerate(words):
        if w == option and i + 1 < len(words):
            value = words[i + 1]
        elif w.startswith(option + "="):
            value = w.split("=", 1)[1]
    return value


def grid_option(command_line, P):
    """1 when an attnsim command line chose Attention2D's grid by --grid auto (given, or the
    default where P is not a square), else 0."""
    value = option_value(command_line, "--grid")
    if value is None:
        return 0 if math.isqrt(P) ** 2 == P else 1
    return 1 if value == "auto" else 0


def line_label(key):
    algo, layout, rule = key
    if layout and rule.startswith("u="):
        return f"{algo} ({layout}, {rule})"
    if layout:
        return f"{algo} ({layout})"
    if rule.startswith("u="):
        return f"{algo} ({rule})"
    if rule == "auto":
        return f"{algo} (best grid)"
    if rule == "square":
        return f"{algo} (square grid)"
    if rule:
        return f"{algo} (grid {rule})"
    return algo


class Catalog:
    """The file's runs by kind, from /summary; groups read only through Run."""

    def __init__(self, f):
        self.f = f
        t = ah.summary(f)
        self.table = t
        self.by_kind = {}
        for k in ("distributed", "model", "kernel", "calibration", "benchmark"):
            self.by_kind[k] = t[t["kind"] == k]

    def runs(self, *kinds):
        return [Run(self.f, r) for k in kinds for r in self.by_kind[k]]

    def empty(self):
        return len(self.table) == 0


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


def run_model(binary, r0, machine_file, key, procs, seqs, tmp):
    """`attnsim model` of configuration `key` with r0's shape at every (P, N) of procs x seqs,
    into a file of its own. Returns ({(P, N): (seconds, grid)}, note)."""
    algo, layout, rule = key
    fd, out = tempfile.mkstemp(suffix=".h5", dir=tmp)
    os.close(fd)
    os.remove(out)  # attnsim model --out appends: start from no file
    cmd = [binary, "model", "--algo", algo, "--procs", ",".join(map(str, procs)),
           "--seq", ",".join(map(str, seqs)), "--batch", str(r0.batch), "--heads",
           str(r0.heads), "--kv-heads", str(r0.kv_heads), "--head-dim", str(r0.d),
           f"--causal={'yes' if r0.causal else 'no'}", "--pass", r0.pass_, "--dtype", r0.dtype,
           "--machine", machine_file, "--rank-arrays", "1", "--out", out]
    if rule == "auto":
        cmd += ["--grid", "auto"]  # the model's best grid at every P
    elif rule.startswith("u="):
        cmd += ["--ulysses-size", rule[2:]]
    elif rule and rule != "square":
        cmd += ["--grid", rule]
    if layout:
        cmd += ["--layout", layout]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        return {}, f"attnsim model failed for {line_label(key)}: {res.stderr.strip()[:300]}"
    pts = {}
    with ah.open_file(out) as f:
        t = ah.summary(f)
        for row in t:
            pts[(int(row["P"]), int(row["seq_len"]))] = (
                float(row["predicted_time_s"]), f"{row['grid_rows']}x{row['grid_cols']}")
    os.remove(out)
    return pts, ""


def machine_file_of(group, tmp):
    """The machine description of the group's largest run (its gpus_per_node is the node size
    the runs saw) in a file, or (None, why)."""
    r0 = max(group, key=lambda r: r.P)
    text = r0.attr("machine_description")
    if not text:
        return None, f"runs of '{r0.shape_label()}' record no machine description"
    fd, path = tempfile.mkstemp(suffix=".machine", dir=tmp)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    return path, ""


def model_procs(key, r0, extra, cap=None):
    """The P of a model line: powers of two up to MODEL_MAX_P (powers of four for the square
    grid rule) and the runs' own P, at most N."""
    rule = key[2]
    ps = {2 ** k for k in range(MODEL_MAX_P.bit_length())} | set(extra)
    if rule == "square":  # powers of four
        ps = {4 ** k for k in range(MODEL_MAX_P.bit_length() // 2 + 1)} | set(extra)
    elif rule.startswith("u="):  # groups of u ranks: multiples of u
        ps = {p for p in ps if p % int(rule[2:]) == 0}
    elif rule and rule != "auto":  # a given grid exists at one P
        ps = set(extra)
    return sorted(p for p in ps if p <= (r0.N if cap is None else cap))


def pow2_axis(ax, ps):
    """A log2 P axis with a labelled tick at every power of two in range (1 included)."""
    hi = max(ps)
    ks = list(range(0, max(1, math.ceil(math.log2(hi))) + 1))
    step = 1 if len(ks) <= 13 else 2
    ticks = [2 ** k for k in ks[::step]]
    ax.set_xscale("log", base=2)
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.set_xticks([], minor=True)
    ax.set_xlim(2 ** -0.3, 2 ** (math.log2(hi) + 0.3))
    ax.set_xlabel("P (devices)")


def loglog_identity(ax, lo, hi):
    ax.plot([lo, hi], [lo, hi], "k-", lw=0.8, label="predicted = measured")
    ax.set_xscale("log")
    ax.set_yscale("log")


def fig_parity(cat, plt, np, out):
    dist = cat.runs("distributed")
    kern = cat.runs("kernel")
    if not dist and not kern:
        return None, "no distributed or kernel runs: nothing measured to compare"
    fig, (at, ab) = plt.subplots(1, 2, figsize=(12, 5.2))
    algos = sorted({r.algo_label() for r in dist})
    t_pts, equal, total = [], 0, 0
    for i, al in enumerate(algos):
        sel = [r for r in dist if r.algo_label() == al]
        pm = [(m, p) for r in sel if "measured/critical_path_phase_s" in r.g
              for m, p in zip(r.data("measured/critical_path_phase_s"),
                              r.data("predicted/phase_time_s")) if m > 0 and p > 0]
        if pm:
            at.scatter(*zip(*pm), s=10, alpha=0.5, color=f"C{i}", label=f"{al} phases")
        rm = [(r.meas_total_s, r.pred_total_s) for r in sel if r.meas_total_s > 0]
        if rm:
            at.scatter(*zip(*rm), s=60, marker="*", color=f"C{i}", edgecolor="k",
                       label=f"{al} runs")
        t_pts += pm + rm
        mb = np.concatenate([r.data("measured/bytes_sent").ravel() for r in sel])
        pb = np.concatenate([r.data("predicted/bytes_sent").ravel() for r in sel])
        equal += int((mb == pb).sum())
        total += mb.size
        keep = (mb > 0) & (pb > 0)
        ab.scatter(mb[keep], pb[keep], s=14, alpha=0.6, color=f"C{i}",
                   label=f"{al} (rank, phase)")
    kt, kb = [], []
    for r in kern:
        m = r.g["measured"]
        pt = float(r.data("predicted/time_s")) if "predicted/time_s" in r.g else float("nan")
        if r.meas_total_s > 0 and math.isfinite(pt) and pt > 0:
            kt.append((r.meas_total_s, pt))
        if "hbm_bytes_read" in m and "predicted/hbm_bytes_read" in r.g:
            kb.append((int(m["hbm_bytes_read"][()] + m["hbm_bytes_written"][()]),
                       int(r.data("predicted/hbm_bytes_read") +
                           r.data("predicted/hbm_bytes_written"))))
        elif "dram_bytes_read" in m:
            kb.append((int(m["dram_bytes_read"][()] + m["dram_bytes_written"][()]),
                       int(r.data("predicted/hbm_bytes_read") +
                           r.data("predicted/hbm_bytes_written"))))
    if kt:
        at.scatter(*zip(*kt), s=18, marker="s", color="0.4", label="kernel runs")
        t_pts += kt
    if kb:
        km, kp = np.array([x[0] for x in kb]), np.array([x[1] for x in kb])
        equal += int((km == kp).sum())
        total += km.size
        ab.scatter(km, kp, s=18, marker="s", color="0.4", label="kernel HBM bytes")
    if t_pts:
        v = np.array(t_pts)
        loglog_identity(at, v.min(), v.max())
        at.set_xlabel("measured time (s)")
        at.set_ylabel("predicted time (s)")
        at.legend(fontsize=8)
    else:
        at.text(0.5, 0.5, "no run has a predicted time\n(cpu kernel runs: no machine)",
                ha="center", va="center", transform=at.transAxes)
    at.set_title("time: predicted vs measured", fontsize=10)
    pts = [c.get_offsets() for c in ab.collections]
    if pts and sum(len(p) for p in pts):
        v = np.concatenate(pts)
        loglog_identity(ab, v.min(), v.max())
        ab.legend(fontsize=8)
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


def fig_phases(cat, plt, np, out):
    dist = cat.runs("distributed")
    if not dist:
        return None, "no distributed runs: no measured phases"
    best = {}
    for r in dist:  # the largest P of each (algorithm, pass); the latest on ties
        k = (r.algo_label(), r.pass_)
        if k not in best or r.P >= best[k].P:
            best[k] = r
    keys = sorted(best)
    fig, axes = plt.subplots(len(keys), 1, figsize=(11, 0.8 + 2.3 * len(keys)), squeeze=False)
    for ax, k in zip(axes[:, 0], keys):
        r = best[k]
        phases = [s(p) for p in r.data("phases")]
        meas = (r.data("measured/critical_path_phase_s")
                if "measured/critical_path_phase_s" in r.g else
                r.data("measured/time_s").max(axis=0))
        # shares of each bar's total: the model's absolute times may be far from the measured
        # ones (a machine not calibrated for where the run ran), the split between phases not
        cmap = plt.get_cmap("tab20" if len(phases) > 10 else "tab10")
        for row, (vals, lab) in enumerate(((meas, "measured"),
                                           (r.data("predicted/phase_time_s"), "model"))):
            total, left = float(sum(vals)), 0.0
            for j, (ph, v) in enumerate(zip(phases, vals)):
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
        ax.legend(fontsize=8, ncol=min(5, len(phases)), loc="upper center",
                  bbox_to_anchor=(0.5, -0.45), frameon=False)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return ("Per-phase breakdown of each algorithm at its largest P in the file: the measured "
            "critical-path time of each phase (last rank in to last rank out) against the "
            "model's phase times, as shares of each sum (written at the right of each bar)."),\
        None


SHAPE_COLS = ("pass", "seq_len", "batch", "heads", "kv_heads", "head_dim", "causal", "dtype")


def summary_groups(cat, np, cols):
    """Groups of the distributed and model rows by /summary columns: [(rows, distinct P)],
    largest first (without reading any run's group)."""
    t = cat.table[(cat.table["kind"] == "distributed") | (cat.table["kind"] == "model")]
    if len(t) == 0:
        return []
    _, inv = np.unique(t[list(cols)], return_inverse=True)
    order = np.argsort(inv, kind="stable")  # rows of a group together, in run order
    starts = np.flatnonzero(np.r_[True, np.diff(inv[order]) != 0])
    groups = []
    for rows in np.split(t[order], starts[1:]):
        groups.append((rows, len(np.unique(rows["P"]))))
    groups.sort(key=lambda x: (-x[1], -len(x[0]), int(x[0]["run"][0])))
    return groups


def split_by_machine(runs):
    out = {}
    for r in runs:
        out.setdefault(r.machine_key(), []).append(r)
    return list(out.values())


def fig_scaling(cat, plt, np, out, csv_path, binary):
    groups = summary_groups(cat, np, SHAPE_COLS)
    if not groups:
        return None, "no distributed or model runs"
    if any(n > 1 for _, n in groups):
        groups = [g for g in groups if g[1] > 1]
    elif weak_series(cat, np):
        return None, ("every shape of the file was run at one P only: its scaling is in "
                      "weak-scaling.png")
    notes = []
    panels = []
    for rows, _ in groups:
        for part in split_by_machine([Run(cat.f, r) for r in rows]):
            panels.append(part)
        if len(panels) >= MAX_PANELS:
            break
    if len(groups) > len(panels) or len(panels) > MAX_PANELS:
        notes.append(f"the {MAX_PANELS} shapes with the most P values are drawn, "
                     f"{max(0, len(groups) - MAX_PANELS)} more are in the file")
    panels = panels[:MAX_PANELS]
    if not binary:
        notes.append("attnsim binary not found (--attnsim): model lines cover only the P "
                      "of the runs in the file")
    cols = min(len(panels), 2)
    nrows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(nrows, cols, figsize=(6.6 * cols, 4.9 * nrows), squeeze=False)
    table = []
    with tempfile.TemporaryDirectory() as tmp:
        for pi, (ax, group) in enumerate(zip(axes.flat, panels)):
            r0 = group[0]
            shape = r0.shape_label()
            mfile, note = (None, "")
            if binary:
                mfile, note = machine_file_of(group, tmp)
                if note:
                    notes.append(note)
            keys = sorted({r.line_key() for r in group})
            all_p = {r.P for r in group}
            for i, key in enumerate(keys):
                sel = sorted((r for r in group if r.line_key() == key), key=lambda r: r.P)
                label = line_label(key)
                line = {}
                if mfile:
                    pts, note = run_model(binary, r0, mfile, key,
                                          model_procs(key, r0, [r.P for r in sel]), [r0.N], tmp)
                    if note:
                        notes.append(note)
                    line = {p: v for (p, _), v in pts.items()}
                recorded = [r for r in sel if r.kind == "model"]
                if not line:  # no binary: the file's own model runs are the line
                    line = {r.P: (r.pred_total_s, f"{r.grid[0]}x{r.grid[1]}") for r in recorded}
                if line:
                    ps = sorted(line)
                    ax.plot(ps, [line[p][0] for p in ps], "-", color=f"C{i}",
                            label=f"{label} model")
                    table += [dict(panel=pi + 1, shape=shape, line=label, algorithm=key[0],
                                   P=p, grid=line[p][1], source="model", time_s=line[p][0])
                              for p in ps]
                    all_p |= set(ps)
                if recorded:
                    ax.plot([r.P for r in recorded], [r.pred_total_s for r in recorded], "+",
                            color=f"C{i}", ms=7)
                    table += [dict(panel=pi + 1, shape=shape, line=label, algorithm=key[0],
                                   P=r.P, grid=f"{r.grid[0]}x{r.grid[1]}",
                                   source="model_in_file", time_s=r.pred_total_s)
                              for r in recorded]
                ex = [r for r in sel if r.kind == "distributed"]
                if ex:
                    ax.plot([r.P for r in ex], [r.meas_total_s for r in ex], "o",
                            color=f"C{i}", mfc="none", ms=8, label=f"{label} measured")
                    ax.plot([r.P for r in ex], [r.pred_total_s for r in ex], "x",
                            color=f"C{i}", ms=6)
                    for r in ex:
                        head = dict(panel=pi + 1, shape=shape, line=label, algorithm=key[0],
                                    P=r.P, grid=f"{r.grid[0]}x{r.grid[1]}")
                        table += [dict(head, source="measured", time_s=r.meas_total_s),
                                  dict(head, source="predicted_in_run", time_s=r.pred_total_s)]
            if any(r.kind == "model" for r in group):
                ax.plot([], [], "+", color="0.3", ms=7, label="model runs in the file")
            if any(r.kind == "distributed" for r in group):
                ax.plot([], [], "x", color="0.3", ms=6, label="prediction recorded with a run")
            pow2_axis(ax, all_p)
            ax.set_yscale("log")
            ax.set_ylabel("time (s)")
            ax.set_title(shape, fontsize=9)
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    write_csv(csv_path, ["panel", "shape", "line", "algorithm", "P", "grid", "source",
                         "time_s"], table)
    return ("Strong scaling, time against the number of devices P at fixed N: measured runs "
            "(circles; last rank out, from the start barrier) and the prediction recorded "
            "with each run (crosses) over the model's lines on the machine description the "
            "runs recorded, up to large P; model runs recorded in the file are marked +. One "
            "line per configuration: Attention2D on the model's best grid at each P (best "
            "grid, --grid auto) or on the square grid (square P only)."
            + (" " + "; ".join(notes) + "." if notes else "")), None


def write_csv(path, fields, rows):
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        for row in rows:
            w.writerow({k: (repr(float(v)) if isinstance(v, float) else v)
                        for k, v in row.items()})


WEAK_COLS = ("pass", "batch", "heads", "kv_heads", "head_dim", "causal", "dtype")


def weak_law(P, N):
    """The weak-scaling series a run at (P, N) can belong to: N/P fixed (tokens per rank), and
    N = N1 sqrt(P) (N^2/P fixed: attention FLOPs per rank), as experiments/weak-scaling
    grows N (growth = linear | sqrt)."""
    out = []
    if N % P == 0:
        out.append(("N/P", N // P))
    n1 = round(N / math.sqrt(P))
    if int(n1 * math.sqrt(P)) == N:
        out.append(("N/sqrt(P)", n1))
    return out


def weak_series(cat, np):
    """[(law, value, [Run])]: runs of one shape (all but N) whose N follows one growth law
    over at least two P values with N growing, largest first. A shape run at several N for
    one P (a sweep of N x P, a strong-scaling study) is not a weak-scaling series."""
    out = []
    for rows, _ in summary_groups(cat, np, WEAK_COLS):
        if len(np.unique(rows["seq_len"])) < 2:
            continue
        n_at = {}
        for r in rows:
            n_at.setdefault(int(r["P"]), set()).add(int(r["seq_len"]))
        if any(len(ns) > 1 for ns in n_at.values()):
            continue
        series = {}
        for r in rows:
            for law in weak_law(int(r["P"]), int(r["seq_len"])):
                series.setdefault(law, []).append(r)
        for (law, v), rs in series.items():
            ps = {int(r["P"]) for r in rs}
            if len(ps) >= 2 and len({int(r["seq_len"]) for r in rs}) == len(ps):
                out.append((law, v, rs, len(ps)))
    # a series is kept unless a longer one of another law holds the same runs
    out.sort(key=lambda x: (-x[3], -len(x[2])))
    kept, used = [], set()
    for law, v, rs, n in out:
        ids = frozenset(int(r["run"]) for r in rs)
        if ids <= used:
            continue
        used |= ids
        kept.append((law, v, rs))
    return [(law, v, [Run(cat.f, r) for r in rs]) for law, v, rs in kept]


def law_n(law, v, P):
    return v * P if law == "N/P" else int(v * math.sqrt(P))


def fig_weak(cat, plt, np, out, csv_path, binary):
    series = weak_series(cat, np)
    if not series:
        return None, ("no weak-scaling series: no runs of one shape whose N grows with P "
                      "(N/P fixed, or N = N1 sqrt(P); experiments/weak-scaling)")
    panels = []
    for law, v, runs in series:
        for part in split_by_machine(runs):
            panels.append((law, v, part))
    notes = []
    if len(panels) > MAX_PANELS:
        notes.append(f"{len(panels) - MAX_PANELS} more series are in the file but not drawn")
        panels = panels[:MAX_PANELS]
    cols = min(len(panels), 2)
    nrows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(nrows, cols, figsize=(6.6 * cols, 4.9 * nrows), squeeze=False)
    table = []
    with tempfile.TemporaryDirectory() as tmp:
        for pi, (ax, (law, v, group)) in enumerate(zip(axes.flat, panels)):
            r0 = min(group, key=lambda r: r.P)
            title = (f"{'N/P = ' + str(v) if law == 'N/P' else 'N = ' + str(v) + ' sqrt(P)'}: "
                     f"{r0.shape_label(with_n=False)}")
            mfile = None
            if binary:
                mfile, note = machine_file_of(group, tmp)
                if note:
                    notes.append(note)
            all_p = {r.P for r in group}
            for i, key in enumerate(sorted({r.line_key() for r in group})):
                sel = sorted((r for r in group if r.line_key() == key), key=lambda r: r.P)
                label = line_label(key)
                p0 = sel[0].P
                rate0 = None

                def eff(r_flops, P, t, base):
                    return (r_flops / P / t) / base if t > 0 and base else float("nan")

                if mfile:
                    ps = [p for p in model_procs(key, r0, [r.P for r in sel], MODEL_MAX_P)
                          if p >= p0 and law_n(law, v, p) >= p]
                    ns = sorted({law_n(law, v, p) for p in ps})
                    pts, note = run_model(binary, r0, mfile, key, ps, ns, tmp)
                    if note:
                        notes.append(note)
                    line = sorted((p, pts[(p, law_n(law, v, p))]) for p in ps
                                  if (p, law_n(law, v, p)) in pts)
                    if line:
                        def work(p):
                            return r0.flops(law_n(law, v, p))

                        rate0 = work(line[0][0]) / line[0][0] / line[0][1][0]
                        effs = [eff(work(p), p, t, rate0) for p, (t, _) in line]
                        ax.plot([p for p, _ in line], effs, "-", color=f"C{i}",
                                label=f"{label} model")
                        table += [dict(panel=pi + 1, series=title, line=label,
                                       algorithm=key[0], P=p, N=law_n(law, v, p), grid=g,
                                       source="model", time_s=t, efficiency=e)
                                  for (p, (t, g)), e in zip(line, effs)]
                        all_p |= {p for p, _ in line}
                ex = [r for r in sel if r.kind == "distributed"]
                if ex:
                    base = ex[0].flops() / ex[0].P / ex[0].meas_total_s
                    meas = [eff(r.flops(), r.P, r.meas_total_s, base) for r in ex]
                    ax.plot([r.P for r in ex], meas, "o", color=f"C{i}", mfc="none", ms=8,
                            label=f"{label} measured")
                    table += [dict(panel=pi + 1, series=title, line=label, algorithm=key[0],
                                   P=r.P, N=r.N, grid=f"{r.grid[0]}x{r.grid[1]}",
                                   source="measured", time_s=r.meas_total_s, efficiency=e)
                              for r, e in zip(ex, meas)]
                pred = [r for r in sel if math.isfinite(r.pred_total_s) and r.pred_total_s > 0]
                if pred and not mfile:
                    base = pred[0].flops() / pred[0].P / pred[0].pred_total_s
                    effs = [eff(r.flops(), r.P, r.pred_total_s, base) for r in pred]
                    ax.plot([r.P for r in pred], effs, "-", color=f"C{i}",
                            label=f"{label} model (recorded)")
                    table += [dict(panel=pi + 1, series=title, line=label, algorithm=key[0],
                                   P=r.P, N=r.N, grid=f"{r.grid[0]}x{r.grid[1]}",
                                   source="predicted_in_run", time_s=r.pred_total_s,
                                   efficiency=e) for r, e in zip(pred, effs)]
            ax.axhline(1.0, color="k", lw=0.6, ls=":")
            pow2_axis(ax, all_p)
            ax.set_ylim(bottom=0)
            ax.set_ylabel("efficiency (per-rank FLOP rate / at smallest P)")
            ax.set_title(title, fontsize=9)
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    write_csv(csv_path, ["panel", "series", "line", "algorithm", "P", "N", "grid", "source",
                         "time_s", "efficiency"], table)
    return ("Weak scaling: N grows with P (N/P fixed, or N = N1 sqrt(P), which keeps the "
            "attention FLOPs per rank fixed). Efficiency is the per-rank FLOP rate (the "
            "model's FLOPs over P over the run's time) at P over that at the series' smallest "
            "P: T(P1)/T(P) where the work per rank is fixed; 1 is perfect. Measured runs "
            "(circles) and the model on the machine description the runs recorded, extended "
            "to large P." + (" " + "; ".join(notes) + "." if notes else "")), None


def last_calibration(cat):
    """The ceilings of the file's last calibration run: copy bandwidth and kernel rates."""
    rows = cat.by_kind["calibration"]
    if len(rows) == 0:
        return None
    g = ah.group(cat.f, rows["run"][-1])
    return dict(copy_bytes_per_s=float(g.attrs.get("copy_bytes_per_s", 0)),
                rates={dt: float(g[f"kernels/{dt}"].attrs["rate_flop_per_s"])
                       for dt in ("f32", "f16", "bf16") if f"kernels/{dt}" in g})


def fig_roofline(cat, plt, np, out):
    kern = [r.kernel_detail() for r in cat.runs("kernel") if r.pass_ != "decode"]
    kern = [r for r in kern if r.flops_meas > 0 and (r.meas_bytes_rw or r.pred_bytes_rw)]
    if not kern:
        return None, "no kernel runs (attnsim kernels)"
    calib = last_calibration(cat)
    fig, ax = plt.subplots(figsize=(7.5, 5.2))
    kernels = sorted({(r.algo, r.pass_) for r in kern})
    for i, (k, p) in enumerate(kernels):
        sel = [r for r in kern if (r.algo, r.pass_) == (k, p) and r.meas_time_s > 0]
        x = [r.flops_meas / (r.meas_bytes_rw or r.pred_bytes_rw) for r in sel]
        y = [r.flops_meas / r.meas_time_s / 1e12 for r in sel]
        ax.scatter(x, y, color=f"C{i}", marker="o" if p == "fwd" else "^", s=22,
                   label=f"{k} {p}")
    note = ""
    if calib:
        c = calib
        bw = float(c.get("copy_bytes_per_s", 0))
        xi = [r.flops_meas / (r.meas_bytes_rw or r.pred_bytes_rw) for r in kern]
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
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return ("Kernels on a roofline: achieved TFLOP/s (matrix flops over median time) against "
            "flops per counted HBM byte (read + written)." + note), None


def fig_decode(cat, plt, np, out):
    dec = [r.kernel_detail() for r in cat.runs("kernel") if r.pass_ == "decode"]
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
                  ha="right", fontsize=8)
    ax.set_ylabel("GB/s of K+V read")
    ax.set_title("decode kernels", fontsize=10)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return ("Decode: GB/s of K and V read per shape (B, h, h_kv, N) and implementation, with "
            "the HBM read ceiling measured in the same run (and, where recorded, the rate of "
            "the same read cut into equal shares of a fixed grid, as Lean's ranges are)."), None


def benchmarks(cat):
    """The benchmark runs (experiments/*-peers): implementation, shape and TFLOP/s."""
    out = []
    for r in cat.runs("benchmark"):
        if "measured/tflop_per_s" not in r.g:
            continue
        out.append(dict(impl=r.algo, pass_=r.pass_, n=r.N, d=r.d, causal=r.causal,
                        dtype=r.dtype, gpu=r.attr("gpu"),
                        tflops=float(r.data("measured/tflop_per_s"))))
    return out


def fig_peers(cat, plt, np, out):
    bench = benchmarks(cat)
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
        ax.legend(fontsize=8)
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
    ap.add_argument("--attnsim", help="attnsim binary for the model lines of the scaling figures")
    args = ap.parse_args()
    ah.ensure_python(PROG)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    if args.attnsim and not find_attnsim(args.attnsim):
        return fail(f"--attnsim '{args.attnsim}' is not an executable file")
    try:
        f = ah.open_file(args.file)
    except ah.FileError as e:
        return fail(str(e))
    with f:
        cat = Catalog(f)
        if cat.empty():
            return fail(f"'{args.file}' holds no complete runs")
        outdir = args.out or (args.file[:-3] if args.file.endswith(".h5") else args.file) \
            + "-gallery"
        try:
            os.makedirs(outdir, exist_ok=True)
        except OSError as e:
            return fail(f"cannot create the output directory '{outdir}' ({e.strerror})")
        binary = find_attnsim(args.attnsim)
        made, absent = [], []
        todo = [("parity.png", lambda p: fig_parity(cat, plt, np, p)),
                ("phases.png", lambda p: fig_phases(cat, plt, np, p)),
                ("scaling.png", lambda p: fig_scaling(cat, plt, np, p,
                                                      os.path.join(outdir, "scaling.csv"),
                                                      binary)),
                ("weak-scaling.png", lambda p: fig_weak(cat, plt, np, p,
                                                        os.path.join(outdir, "weak-scaling.csv"),
                                                        binary)),
                ("roofline.png", lambda p: fig_roofline(cat, plt, np, p)),
                ("decode.png", lambda p: fig_decode(cat, plt, np, p)),
                ("peers.png", lambda p: fig_peers(cat, plt, np, p))]
        for png, draw in todo:
            path = os.path.join(outdir, png)
            caption, why = draw(path)
            if why:
                absent.append((png, why))
                for old in (path, path[:-4] + ".csv"):
                    if os.path.exists(old):
                        os.remove(old)  # a figure of an earlier file must not linger
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
