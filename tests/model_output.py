#!/usr/bin/env python3
"""attnsim model writes kind=model runs of schema attnsim/1: per-rank [P][F] arrays up to
--rank-arrays (above it the rows of at most 64 evenly spaced ranks, named by ranks[:, 0], equal
to those rows of the full arrays, and an attribute saying so), per-phase maxima that
agree with the arrays, total sent == total received, a /summary row per run, each phase's
communication pattern and group size; --grid auto says
which grid it chose; a --grid that does not match --procs, and a sweep with no feasible point,
are refused with status 2 and nothing written.
Usage: model_output.py ATTNSIM"""
import os
import subprocess
import sys
import tempfile

import h5py
import numpy as np

ATTNSIM = os.path.abspath(sys.argv[1])


def thinned_rows(name, g, full):
    """A run above --rank-arrays: its rows are those of evenly spaced ranks of the full arrays
    (of the same run written with every rank, in `full`)."""
    a, P = g.attrs, int(g.attrs["P"])
    if not a["per_rank_arrays"].startswith("thinned: "):
        return [f"{name}: P = {P} above --rank-arrays: per_rank_arrays {a['per_rank_arrays']!r}"]
    ranks = g["ranks"][()][:, 0]
    R = min(P, 64)
    want = [i * (P - 1) // (R - 1) for i in range(R)]
    if list(ranks) != want:
        return [f"{name}: thinned rows are ranks {list(ranks)[:6]}..., expected {want[:6]}..."]
    f = full[name]
    for k in ("predicted/bytes_sent", "predicted/bytes_recv", "predicted/messages", "ranks"):
        if not np.array_equal(g[k][()], f[k][()][ranks]):
            return [f"{name}: thinned {k} differs from the full array's rows"]
    if not np.array_equal(g["predicted/bytes_sent_max"][()], f["predicted/bytes_sent"][()].max(axis=0)):
        return [f"{name}: the maxima of a thinned run are not those of all ranks"]
    return []


def main():
    problems = []
    with tempfile.TemporaryDirectory() as d:
        out, every = os.path.join(d, "m.h5"), os.path.join(d, "every.h5")
        sweep = ["--procs", "4,16,8,256", "--seq", "4k,1000", "--heads", "16", "--kv-heads", "8",
                 "--pass", "train", "--causal=both"]
        r = subprocess.run([ATTNSIM, "model", *sweep, "--rank-arrays", "8", "--out", out],
                           capture_output=True, text=True)
        subprocess.run([ATTNSIM, "model", *sweep, "--out", every], capture_output=True,
                       check=True)
        full = h5py.File(every, "r")["runs"]
        if r.returncode != 0:
            problems.append(f"model failed: {r.stderr}")
        # the prediction table: P = 8 (not a square) on the grid --grid auto chose, the
        # squares on the square grid (columns: id algo layout pass P grid grid_by ...)
        rows = [ln.split() for ln in r.stdout.splitlines()
                if ln.startswith("  ") and len(ln.split()) == 15]
        for row in rows:
            if row[1].startswith("a2d"):
                want = "auto" if row[4] == "8" else "square"
                if row[6] != want or int(row[5].split("x")[0]) * int(row[5].split("x")[1]) \
                        != int(row[4]):
                    problems.append(f"P = {row[4]}: grid {row[5]} by {row[6]}, expected {want}")
        if not any(row[1].startswith("a2d") and row[4] == "8" for row in rows):
            problems.append(f"no A2D prediction at P = 8 in the table: {r.stdout[:600]}")
        with h5py.File(out, "r") as f:
            runs = sorted(f["runs"])
            summary = f["summary"][()]
            if len(runs) != len(summary) or not runs:
                problems.append(f"{len(runs)} runs, {len(summary)} summary rows")
            for name in runs:
                g = f["runs"][name]
                a = g.attrs
                P, F = int(a["P"]), len(g["phases"])
                if a["kind"] != "model":
                    problems.append(f"{name}: kind {a['kind']}")
                if int(a["grid_rows"]) * int(a["grid_cols"]) != P and a["algorithm"].startswith("a2d"):
                    problems.append(f"{name}: grid does not multiply to P")
                if P <= 8:
                    if a["per_rank_arrays"] != "present":
                        problems.append(f"{name}: P = {P} without per-rank arrays")
                        continue
                    sent, recv = g["predicted/bytes_sent"][()], g["predicted/bytes_recv"][()]
                    if sent.shape != (P, F) or g["ranks"].shape != (P, 4):
                        problems.append(f"{name}: shapes {sent.shape} {g['ranks'].shape}")
                    if sent.sum() != recv.sum():
                        problems.append(f"{name}: sent {sent.sum()} != received {recv.sum()}")
                    if not np.array_equal(sent.max(axis=0), g["predicted/bytes_sent_max"][()]):
                        problems.append(f"{name}: per-phase maxima disagree with the arrays")
                    row = summary[summary["run"] == int(name)][0]
                    if row["predicted_bytes_max"] != sent.sum(axis=1).max():
                        problems.append(f"{name}: summary bytes {row['predicted_bytes_max']}")
                    if g["predicted/bytes_sent"].attrs["units"] != "bytes":
                        problems.append(f"{name}: no units")
                else:
                    problems += thinned_rows(name, g, full)
                t = g["predicted/phase_time_s"][()]
                if abs(t.sum() - g["predicted/total_time_s"][()]) > 1e-12 * max(1, t.sum()):
                    problems.append(f"{name}: phase times do not add up to the total")
                if a["dominant_term"] not in ("latency", "bandwidth", "compute"):
                    problems.append(f"{name}: dominant term {a['dominant_term']}")
                # each phase's pattern and group size, from the algorithm's descriptor
                pat = [x.decode() if isinstance(x, bytes) else x for x in g["phase_pattern"][()]]
                size = g["phase_group_size"][()]
                R, C = int(a["grid_rows"]), int(a["grid_cols"])
                want = {"none": {1}, "pairwise": {2 if P > 1 else 1},
                        "alltoall": {P, R}, "return_hop": {P, C}, "ring_shift": {P, R, C},
                        "allgather": {R, C}, "reduce_scatter": {R, C}}
                if len(pat) != F or len(size) != F or any(int(s) not in want.get(p, ())
                                                          for p, s in zip(pat, size)):
                    problems.append(f"{name}: phase patterns {pat} with group sizes {list(size)}")
        for args, must in (
                (["--procs", "16,8", "--grid", "4x4"], "--grid: 4x4 has 16 devices but --procs includes 8"),
                (["--procs", "64", "--seq", "32"], "no point of the sweep can run"),
                (["--procs", "0"], "--procs: '0' is zero"),
                (["--machine", "dgx-z100"], "--machine: 'dgx-z100' is neither a preset nor a readable file"),
                (["--causal", "maybe"], "--causal: unknown value 'maybe'; accepted: no, yes, both")):
            new = os.path.join(d, "new.h5")
            p = subprocess.run([ATTNSIM, "model", *args, "--out", new], capture_output=True, text=True)
            if p.returncode != 2 or must not in p.stderr or p.stderr.count("\n") != 1 or os.path.exists(new) or p.stdout:
                problems.append(f"{args}: status {p.returncode}, stderr {p.stderr!r}, stdout {p.stdout[:80]!r}")
    # --causal takes its value like every other option: --causal both == --causal=both; alone
    # or before another option it means yes
    def model(*args):
        r = subprocess.run([ATTNSIM, "model", "--procs", "4", "--seq", "1k", "--algo", "ring",
                            *args], capture_output=True, text=True)
        return r.returncode, r.stdout
    forms = {"--causal both": model("--causal", "both"), "--causal=both": model("--causal=both"),
             "--causal no": model("--causal", "no"), "--causal=no": model("--causal=no"),
             "--causal": model("--causal"), "--causal --pass fwd": model("--causal", "--pass", "fwd"),
             "--causal=yes": model("--causal=yes")}
    pairs = [("--causal both", "--causal=both"), ("--causal no", "--causal=no"),
             ("--causal", "--causal=yes"), ("--causal --pass fwd", "--causal=yes")]
    for a, b in pairs:
        if forms[a][0] != 0 or forms[a] != forms[b]:
            problems.append(f"'{a}' and '{b}' differ: {forms[a]} {forms[b]}")
    if sum(len(ln.split()) == 15 and ln.split()[1] == "ring"
           for ln in forms["--causal both"][1].splitlines()) != 2:
        problems.append(f"--causal both does not predict both: {forms['--causal both'][1]}")
    for p in problems:
        print("FAIL", p)
    print(f"model_output: {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
