#!/usr/bin/env python3
"""attnsim run under mpirun: bad input gets one line from attnsim (rank 0 only), exit status 2,
no file written, no hang; and a job whose rank is SIGKILLed mid-run ends within 30 s with a
message naming the failed rank, leaving the HDF5 file's earlier runs intact.
Usage: run_errors.py ATTNSIM MPIEXEC"""
import os
import subprocess
import sys
import tempfile
import time

import h5py
import numpy as np

ATTNSIM, MPIEXEC = os.path.abspath(sys.argv[1]), sys.argv[2]
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
try:
    HAVE_GPU = subprocess.run(["nvidia-smi", "-L"], capture_output=True, timeout=30).returncode == 0
except (OSError, subprocess.SubprocessError):
    HAVE_GPU = False
BAD = [  # (P, arguments, text of attnsim's line)
    (6, ["--algo", "a2d-no"], "--grid: P = 6 ranks is not a square"),
    (4, ["--algo", "a2d-o", "--grid", "2x3"], "--grid: 2x3 has 6 devices but the job has P = 4 ranks"),
    (4, ["--algo", "ulysses", "--heads", "4", "--kv-heads", "2"], "--kv-heads: ulysses splits the K/V heads over the ranks: kv-heads 2 < P = 4"),
    (4, ["--seq", "3"], "--seq: N = 3 is smaller than the P = 4 ranks"),
    # without a GPU (CI): a CUDA build says no device is visible, a CUDA-less build says so
    (2, ["--backend", "cuda", "--algo", "ring"], ("--backend: 'cuda': this build has no CUDA", "--backend: 'cuda': rank 0 sees no CUDA device; accepted: cpu")),
    (2, ["--backend", "cuda", "--dtype", "f32"], ("--backend: 'cuda': this build has no CUDA", "--dtype: 'f32' is not run on the GPU")),
    (2, ["--comm", "nccl"], "--comm: 'nccl' needs --backend cuda"),
    (2, ["--algo", "tree"], "--algo: unknown value 'tree'"),
    (2, ["--bogus"], "unknown option '--bogus'"),
    (4, ["--machine", "nope"], "--machine: 'nope' is neither a preset nor a readable file"),
    (2, ["--heads", "6", "--kv-heads", "4"], "--kv-heads: 4 does not divide --heads 6"),
]


def attnsim_lines(text):
    return [l for l in text.splitlines() if l.startswith("attnsim")]


def dump(path):
    out = {}
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                out[name] = np.asarray(obj[()]).tobytes() if obj.dtype != object else str(obj[()]).encode()
        f.visititems(visit)
    return out


def main():
    problems = []
    with tempfile.TemporaryDirectory() as d:
        for P, args, must in BAD:
            out = os.path.join(d, "new.h5")
            t0 = time.time()
            p = subprocess.run([MPIEXEC, "-n", str(P), "--oversubscribe", ATTNSIM, "run", *args,
                                "--out", out], capture_output=True, text=True, env=ENV, timeout=60)
            lines = attnsim_lines(p.stderr)
            if args == ["--backend", "cuda", "--algo", "ring"] and HAVE_GPU:
                print("skip --backend cuda: a GPU is visible here, so it is not bad input")
                continue
            must = (must,) if isinstance(must, str) else must
            ok = p.returncode == 2 and len(lines) == 1 and any(m in lines[0] for m in must) and \
                not os.path.exists(out) and "VALID" not in p.stdout
            print(f"{'ok  ' if ok else 'FAIL'} P={P} {' '.join(args)} ({time.time() - t0:.1f} s): {lines}")
            if not ok:
                problems.append(f"{args}: status {p.returncode}, attnsim lines {lines}, out exists {os.path.exists(out)}")
        out = os.path.join(d, "missing", "x.h5")
        p = subprocess.run([MPIEXEC, "-n", "2", "--oversubscribe", ATTNSIM, "run", "--out", out],
                           capture_output=True, text=True, env=ENV, timeout=60)
        lines = attnsim_lines(p.stderr)
        ok = p.returncode == 2 and len(lines) == 1 and "does not exist" in lines[0]
        print(f"{'ok  ' if ok else 'FAIL'} --out in a missing directory: {lines}")
        if not ok:
            problems.append(f"missing directory: {p.returncode} {lines}")

        # injected faults: a miscounted message and a spoiled output are caught
        for var, must in (("ATTNSIM_FAULT_COUNT", "COUNTS DIFFER: rank 1, phase ring_kv_steps: bytes_sent measured"),
                          ("ATTNSIM_FAULT_OUTPUT", "check FAILED")):
            path = os.path.join(d, f"{var}.h5")
            p = subprocess.run([MPIEXEC, "-n", "4", "--oversubscribe", ATTNSIM, "run", "--algo", "ring",
                                "--seq", "64", "--heads", "2", "--head-dim", "8", "--check", "--out", path],
                               capture_output=True, text=True, env=dict(ENV, **{var: "1"}), timeout=60)
            with h5py.File(path, "r") as f:
                (g,) = f["runs"].values()
                recorded = ("first_difference" in g.attrs and g.attrs["counts_match"] == 0
                            and "measured/bytes_sent" in g and "predicted/bytes_sent" in g) \
                    if var == "ATTNSIM_FAULT_COUNT" else g.attrs["check_passed"] == 0
            ok = p.returncode == 1 and must in p.stdout and "INVALID" in p.stdout and recorded
            print(f"{'ok  ' if ok else 'FAIL'} {var}: status {p.returncode}, reported and recorded: {recorded}")
            if not ok:
                problems.append(f"{var}: {p.returncode} {p.stdout[-600:]}")

        # a rank killed mid-run: the job ends quickly, names the rank, earlier runs survive
        path = os.path.join(d, "k.h5")
        base = [MPIEXEC, "-n", "4", "--oversubscribe", ATTNSIM, "run", "--seq", "64", "--heads", "2",
                "--head-dim", "8", "--out", path]
        subprocess.run(base + ["--algo", "ring"], check=True, capture_output=True, env=ENV)
        before = dump(path)
        for point in ("comm:send@2", "comm:send@7", "run:after_passes"):
            env = dict(ENV, ATTNSIM_KILL_AT=point, ATTNSIM_KILL_RANK="1")
            t0 = time.time()
            p = subprocess.run(base + ["--algo", "ring,a2d-no,a2d-o", "--pass", "train"],
                               capture_output=True, text=True, env=env, timeout=120)
            took = time.time() - t0
            after = dump(path)
            intact = all(after.get(k) == v for k, v in before.items())
            with h5py.File(path, "r") as f:
                runs = len(f["runs"])
                complete = all(g.attrs.get("complete") == 1 for g in f["runs"].values())
            named = "rank 1" in p.stderr
            ok = p.returncode != 0 and took < 30 and named and intact and complete and runs == 1
            print(f"{'ok  ' if ok else 'FAIL'} rank 1 killed at {point}: job ended in {took:.1f} s, "
                  f"status {p.returncode}, names rank 1: {named}, earlier run intact: {intact}, "
                  f"runs in file: {runs}")
            if not ok:
                problems.append(f"kill at {point}: {p.stderr[-600:]}")
    for p in problems:
        print("FAIL", p)
    print(f"run_errors: {len(BAD) + 6} cases, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
