#!/usr/bin/env python3
"""Overlapped steps as attnsim run measures them, on 4 CPU ranks: every overlapped phase (Ring's
two, the hybrid's two ring phases across its groups, A2D-O's two) records each rank's steps
(compute, exposed wait; P steps for Ring, one per group for the hybrid, the ring's for A2D-O) whose sums are the per-rank sums and stay inside the phase's own time; without
--overlap-probe the transfers alone are NaN, with it they are measured for every step and the
hidden time is their difference with the exposed wait; phases without overlap have no steps;
the predicted transfer, hidden and compute times and the one-rate-per-tier prediction are
recorded beside them; the probe leaves the counts exact (the run stays VALID) and --profile is
recorded and changes the prediction as the profile says (Ring with overlap off: the ring steps'
time is their compute plus their transfers).
Usage: run_overlap.py ATTNSIM MPIEXEC"""
import math
import os
import subprocess
import sys
import tempfile

import h5py
import numpy as np

ATTNSIM, MPIEXEC = os.path.abspath(sys.argv[1]), sys.argv[2]
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           OMPI_MCA_rmaps_base_oversubscribe="1")
OVERLAPPED = {"ring": ("ring_kv_steps", "ring_kv_grad_steps"),
              "hybrid": ("ring_kv_steps", "ring_kv_grad_steps"),
              "a2d-o": ("kv_column_ring", "q_row_ring")}


def run(d, name, args):
    out = os.path.join(d, name + ".h5")
    p = subprocess.run([MPIEXEC, "-n", "4", ATTNSIM, "run", "--out", out, "--seq", "512",
                        "--heads", "4", "--head-dim", "16", "--pass", "train"] + args,
                       capture_output=True, text=True, env=ENV, timeout=600)
    if p.returncode != 0 or "VALID" not in p.stdout:
        raise RuntimeError(f"{name}: status {p.returncode}: {p.stdout[-600:]}{p.stderr[-600:]}")
    return out, p.stdout


def check(problems, label, g, probe):
    names = [n.decode() if isinstance(n, bytes) else n for n in g["phases"][()]]
    algo = g.attrs["algorithm"]
    P = int(g.attrs["P"])
    time_s = g["measured/time_s"][()]
    comp = g["measured/overlap_compute_s"][()]
    expo = g["measured/overlap_exposed_s"][()]
    tran = g["measured/overlap_transfer_s"][()]
    for k in ("predicted/phase_transfer_s", "predicted/phase_hidden_s",
              "predicted/phase_compute_s", "predicted/tier_only_phase_time_s",
              "predicted/tier_only_total_time_s", "measured/overlap_critical_hidden_s"):
        if k not in g:
            problems.append(f"{label}: no {k}")
    if int(g.attrs["overlap_probe"]) != int(probe):
        problems.append(f"{label}: overlap_probe attribute {g.attrs['overlap_probe']}")
    for f, name in enumerate(names):
        steps = f"measured/steps/{name}"
        if name not in OVERLAPPED.get(algo, ()):
            if steps in g or not np.isnan(comp[:, f]).all() and (comp[:, f] != 0).any():
                problems.append(f"{label}: phase {name} has steps but does not overlap")
            continue
        if steps not in g:
            problems.append(f"{label}: overlapped phase {name} has no steps")
            continue
        c, e, t = (g[f"{steps}/{k}"][()] for k in ("compute_s", "exposed_s", "transfer_s"))
        want = P if algo == "ring" else int(g.attrs["grid_cols"]) if algo == "hybrid" else None
        if c.shape[0] != P or (want and c.shape[1] != want) or c.shape != e.shape:
            problems.append(f"{label}: {name} steps of shape {c.shape}")
            continue
        if (c < 0).any() or (e < 0).any():
            problems.append(f"{label}: {name}: negative step times")
        if not np.allclose(c.sum(axis=1), comp[:, f], rtol=1e-9) or \
                not np.allclose(e.sum(axis=1), expo[:, f], rtol=1e-9):
            problems.append(f"{label}: {name}: step sums differ from the per-rank sums")
        if (comp[:, f] + expo[:, f] > time_s[:, f] * 1.001 + 1e-6).any():
            problems.append(f"{label}: {name}: steps last longer than the phase "
                            f"({comp[:, f] + expo[:, f]} > {time_s[:, f]})")
        if probe:
            if np.isnan(t).any() or (t < 0).any() or np.isnan(tran[:, f]).any():
                problems.append(f"{label}: {name}: transfers alone not measured: {t}")
            hid = g["measured/overlap_hidden_s"][()][:, f]
            if not np.allclose(hid, tran[:, f] - expo[:, f], rtol=1e-9, atol=1e-12):
                problems.append(f"{label}: {name}: hidden != alone - exposed")
        elif not np.isnan(t).all() or not np.isnan(tran[:, f]).all():
            problems.append(f"{label}: {name}: transfers alone without --overlap-probe")


def main():
    problems = []
    with tempfile.TemporaryDirectory() as d:
        # the hybrid on 2 groups of 2: a ring of 2 steps across the groups
        plain, _ = run(d, "plain", ["--algo", "ring,a2d-o,a2d-no,hybrid", "--ulysses-size", "2"])
        probed, text = run(d, "probed", ["--algo", "ring,a2d-o,hybrid", "--ulysses-size", "2",
                                         "--overlap-probe"])
        if "hidden: predicted" not in text or "measured" not in text:
            problems.append(f"no overlap lines printed: {text[-800:]}")
        off, _ = run(d, "off", ["--algo", "ring", "--profile", "ideal"])
        for path, probe in ((plain, False), (probed, True)):
            with h5py.File(path, "r") as f:
                seen = set()
                for g in f["runs"].values():
                    seen.add(g.attrs["algorithm"])
                    check(problems, f"{os.path.basename(path)} {g.attrs['algorithm']}", g, probe)
                if not {"ring", "a2d-o", "hybrid"} <= seen:
                    problems.append(f"{os.path.basename(path)}: runs of {sorted(seen)}")
        # a profile: recorded, and as it says (ideal: ring steps max(compute, transfer); off:
        # compute + transfer)
        prof = os.path.join(d, "off.profile")
        with open(prof, "w") as fp:
            fp.write("name = serial\noverlap = off\n")
        serial, _ = run(d, "serial", ["--algo", "ring", "--profile", prof])
        with h5py.File(off, "r") as fi, h5py.File(serial, "r") as fs:
            (gi,), (gs,) = fi["runs"].values(), fs["runs"].values()
            if gi.attrs["profile"] != "ideal" or gs.attrs["profile"] != "serial" or \
                    "overlap = 0" not in gs.attrs["profile_description"]:
                problems.append(f"profiles not recorded: {gi.attrs['profile']}, "
                                f"{gs.attrs['profile']}")
            for f in range(2):
                pt, ph = gs["predicted/phase_transfer_s"][f], gs["predicted/phase_hidden_s"][f]
                pc, t = gs["predicted/phase_compute_s"][f], gs["predicted/phase_time_s"][f]
                if ph != 0 or not math.isclose(t, pc + pt, rel_tol=1e-9):
                    problems.append(f"overlap off: phase {f}: {t} != {pc} + {pt} (hidden {ph})")
                if gi["predicted/phase_time_s"][f] > t * (1 + 1e-9):
                    problems.append(f"ideal overlap slower than none in phase {f}")
    for p in problems:
        print("FAIL", p)
    print(f"run_overlap: {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
