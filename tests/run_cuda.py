#!/usr/bin/env python3
"""attnsim run --backend cuda under mpirun: every algorithm (Ring with each layout, A2D-NO,
A2D-O, Ulysses, the hybrid) x fwd and train x causal on and off x GQA, f16 and bf16, ragged and even N, all
with --check against the float64 reference. Every run must be VALID: measured == predicted
bytes and messages on every rank and phase (re-checked here from the HDF5 arrays), the check
passed, and the file says backend cuda and the transport used.
  gpu mode:       4 ranks on one GPU with --comm mpi (host-staged), and P = 1.
  multigpu mode:  --comm nccl on 2 and (where present) 4 GPUs, one rank per GPU; skipped
                  (exit 77) with fewer than 2 GPUs.
Exit 77 (ctest: skipped) where no GPU is visible.
Usage: run_cuda.py ATTNSIM MPIEXEC gpu|multigpu"""
import os
import re
import subprocess
import sys
import tempfile
import time

from run_checks import check_runs

ATTNSIM, MPIEXEC, MODE = os.path.abspath(sys.argv[1]), sys.argv[2], sys.argv[3]
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           OMPI_MCA_rmaps_base_oversubscribe="1", NCCL_NVLS_ENABLE="0")


def gpus():
    try:
        p = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return 0
    return len([l for l in p.stdout.splitlines() if l.startswith("GPU ")]) if p.returncode == 0 else 0


def grid_of(P):
    return {1: "1x1", 2: "1x2", 4: "2x2"}[P]


def cases(P, comm):
    """(P, args, runs) for a job of P ranks."""
    common = ["--backend", "cuda", "--comm", comm, "--head-dim", "64", "--grid", grid_of(P)]
    for pss in ("fwd", "train"):
        for dtype, gqa in (("bf16", 1), ("f16", 0)):
            kv = max(P, 2)
            h = 2 * kv if gqa else kv
            yield P, common + ["--algo", "ring,a2d-no,a2d-o,ulysses,hybrid", "--pass", pss,
                               "--causal=both", "--seq", f"{40 * P + 3},{64 * P}", "--heads", str(h),
                               "--kv-heads", str(kv), "--dtype", dtype], 5 * 2 * 2
    for layout in ("striped", "zigzag"):
        yield P, common + ["--algo", "ring", "--layout", layout, "--pass", "train", "--causal=both",
                           "--seq", f"{96 * P + 5}", "--heads", "8", "--kv-heads", "4",
                           "--head-dim", "128"], 2
    # larger tiles (several 128-row query blocks per tile, every kernel path)
    yield P, common + ["--algo", "ring,a2d-no,a2d-o,ulysses,hybrid", "--pass", "train",
                       "--causal", "--seq", "2048", "--heads", "8", "--kv-heads", str(max(P, 2)),
                       "--head-dim", "128"], 5
    if P >= 4:  # the hybrid with groups smaller than P: Ulysses in pairs, Ring across them
        yield P, common + ["--algo", "hybrid", "--ulysses-size", "2", "--layout", "zigzag",
                           "--pass", "train", "--causal=both", "--seq", f"{96 * P + 5}",
                           "--heads", "8", "--kv-heads", "4", "--head-dim", "128"], 2


def main():
    ngpu = gpus()
    if ngpu == 0:
        print("run_cuda: no GPU visible; skipped")
        return 77
    if MODE == "gpu":
        jobs = [(P, a, r, "mpi") for P in (4, 1) for (_, a, r) in cases(P, "mpi")]
    else:
        if ngpu < 2:
            print(f"run_cuda: {ngpu} GPU visible, the multi-GPU test needs 2; skipped")
            return 77
        jobs = [(P, a, r, "nccl") for P in (2, 4) if P <= ngpu for (_, a, r) in cases(P, "nccl")]
    problems, total, t0 = [], 0, time.time()
    with tempfile.TemporaryDirectory() as d:
        for i, (P, args, runs, comm) in enumerate(jobs):
            out = os.path.join(d, f"c{i}.h5")
            cmd = [MPIEXEC, "-n", str(P), "--oversubscribe", ATTNSIM, "run", "--check", *args,
                   "--out", out]
            p = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=600)
            valid = len(re.findall(r"^# [a-z0-9-]+: measured == predicted .*\. VALID$", p.stdout, re.M))
            label = f"P={P} {' '.join(args)}"
            if p.returncode != 0 or valid != runs:
                problems.append(f"{label}: status {p.returncode}, {valid}/{runs} VALID\n"
                                f"{p.stdout[-3000:]}{p.stderr[-3000:]}")
                print("FAIL", problems[-1])
                continue
            n, bad = check_runs(out, label, {"backend": "cuda", "comm": comm})
            total += n
            problems += bad
            errs = re.findall(r"max abs err ([0-9.e+-]+)", p.stdout)
            print(f"ok   {label}: {valid} runs VALID (max abs err {max(map(float, errs)) if errs else 0:.2e})")
        # calibration on the GPUs: a machine file the model reads back, with the GPU's links
        # and kernels measured (and the tiers it could not measure marked as kept)
        P = 4 if MODE == "gpu" else min(ngpu, 4)
        comm = "mpi" if MODE == "gpu" else "nccl"
        mfile = os.path.join(d, "gpu.machine")
        p = subprocess.run([MPIEXEC, "-n", str(P), "--oversubscribe", ATTNSIM, "calibrate",
                            "--backend", "cuda", "--comm", comm, "--max-message", "16M",
                            "--machine-out", mfile, "--out", os.path.join(d, "cal.h5")],
                           capture_output=True, text=True, env=ENV, timeout=900)
        text = open(mfile).read() if os.path.exists(mfile) else ""
        ok = (p.returncode == 0 and "backend cuda, comm " + comm in text and
              "intra_bandwidth" in text and "measured: ring shift" in text and
              "peak_bf16" in text and "measured: FA2 tiles" in text)
        if ok:
            m = subprocess.run([ATTNSIM, "model", "--machine", mfile, "--procs", str(P), "--seq",
                                "64k", "--out", os.path.join(d, "model.h5")],
                               capture_output=True, text=True, env=ENV, timeout=120)
            ok = m.returncode == 0
        print(f"{'ok  ' if ok else 'FAIL'} calibrate --backend cuda --comm {comm} on P={P}")
        if not ok:
            problems.append(f"calibrate: status {p.returncode}\n{p.stdout[-2000:]}{p.stderr[-2000:]}\n{text}")
    for p in problems:
        print("FAIL", p.splitlines()[0])
    print(f"run_cuda {MODE}: {total} runs checked in {time.time() - t0:.1f} s, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
