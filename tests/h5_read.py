#!/usr/bin/env python3
"""Every dataset of a kernels file reads back with h5dump and with h5py, and the file follows
schema attnsim/1 (docs/hdf5-schema.md): root provenance attributes, run attributes, datasets
with units, and a /summary row per run that agrees with the run it describes.

Usage: h5_read.py ATTNSIM
"""
import os
import shutil
import subprocess
import sys
import tempfile

import h5py
import numpy as np

ATTNSIM = os.path.abspath(sys.argv[1])
ROOT_ATTRS = ["schema", "software_version", "git_commit", "creation_time", "host_names",
              "mpi_library_version", "hdf5_version", "command_line"]
RUN_ATTRS = ["kind", "algorithm", "pass", "P", "grid_rows", "grid_cols", "seq_len", "batch",
             "heads", "kv_heads", "head_dim", "causal", "dtype", "backend", "comm", "machine",
             "complete"]
CHECK_ATTRS = ["max_abs_err", "max_rel_err", "check_passed"]
KERNEL_DATASETS = [f"{side}/{q}" for side in ("measured", "predicted")
                   for q in ("hbm_bytes_read", "hbm_bytes_written", "time_s", "flops")]


def main():
    if not shutil.which("h5dump"):
        print("h5dump not found: install hdf5-tools (tests/install-deps.sh does)")
        return 1
    problems = []
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "k.h5")
        for extra in ([], ["--check", "--causal=both", "--kv-heads", "1"]):
            r = subprocess.run([ATTNSIM, "kernels", "--seq", "32,48", "--seq-kv", "40",
                                "--heads", "2", "--head-dim", "16", "--sram", "2k",
                                "--dtype", "f32,bf16", "--out", path, *extra],
                               capture_output=True, text=True)
            if r.returncode != 0:
                problems.append(f"attnsim kernels failed: {r.stderr}")
        # h5dump reads every object, data included
        r = subprocess.run(["h5dump", path], capture_output=True, text=True)
        if r.returncode != 0:
            problems.append(f"h5dump failed: {r.stderr[:500]}")
        with h5py.File(path, "r") as f:
            n_datasets = 0

            def read_all(name, obj):
                nonlocal n_datasets
                if isinstance(obj, h5py.Dataset):
                    obj[()]
                    n_datasets += 1
                    if name not in r.stdout and os.path.basename(name) not in r.stdout:
                        problems.append(f"h5dump output lacks {name}")
            f.visititems(read_all)
            for a in ROOT_ATTRS:
                if a not in f.attrs:
                    problems.append(f"root attribute {a} missing")
            if f.attrs.get("schema") != "attnsim/1":
                problems.append(f"schema is {f.attrs.get('schema')!r}")
            runs = sorted(f["runs"])
            summary = f["summary"][()]
            if len(summary) != len(runs):
                problems.append(f"{len(summary)} summary rows for {len(runs)} runs")
            units = list(f["summary"].attrs["units"])
            if len(units) != len(summary.dtype.names):
                problems.append("summary units do not match its columns")
            checked = 0
            for row in summary:
                name = f"{int(row['run']):06d}"
                g = f["runs"][name]
                for a in RUN_ATTRS:
                    if a not in g.attrs:
                        problems.append(f"run {name}: attribute {a} missing")
                for ds in KERNEL_DATASETS:
                    if ds not in g:
                        problems.append(f"run {name}: dataset {ds} missing")
                    elif "units" not in g[ds].attrs:
                        problems.append(f"run {name}: {ds} has no units")
                if "check_passed" in g.attrs:
                    checked += 1
                    for a in CHECK_ATTRS:
                        if a not in g.attrs:
                            problems.append(f"run {name}: {a} missing on a checked run")
                    if g.attrs["check_passed"] != 1 or row["check_passed"] != 1:
                        problems.append(f"run {name}: check failed")
                # the summary row says what the run says
                same = [(row["kind"].decode(), g.attrs["kind"]),
                        (row["algorithm"].decode(), g.attrs["algorithm"]),
                        (row["pass"].decode(), g.attrs["pass"]),
                        (row["dtype"].decode(), g.attrs["dtype"]),
                        (int(row["seq_len"]), int(g.attrs["seq_len"])),
                        (int(row["head_dim"]), int(g.attrs["head_dim"])),
                        (int(row["causal"]), int(g.attrs["causal"])),
                        (int(row["measured_bytes_max"]),
                         int(g["measured/hbm_bytes_read"][()] + g["measured/hbm_bytes_written"][()])),
                        (float(row["measured_time_s"]), float(g["measured/time_s"][()]))]
                for a, b in same:
                    if a != b:
                        problems.append(f"run {name}: summary says {a!r}, run says {b!r}")
                if g["measured/hbm_bytes_read"][()] != g["predicted/hbm_bytes_read"][()]:
                    problems.append(f"run {name}: measured != predicted bytes read")
            expected_runs = 2 * 2 * 4 * (1 + 2)  # seq x dtype x kernels x (no-causal + both)
            if len(runs) != expected_runs:
                problems.append(f"{len(runs)} runs, expected {expected_runs}")
            if checked != expected_runs // 3 * 2:
                problems.append(f"{checked} checked runs, expected {expected_runs // 3 * 2}")
    for p in problems:
        print("FAIL", p)
    print(f"h5_read: {len(runs)} runs, {n_datasets} datasets read by h5py and h5dump, "
          f"{len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
