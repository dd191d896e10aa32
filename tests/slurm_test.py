#!/usr/bin/env python3
"""The experiment scripts on a real one-node Slurm: tests/slurm/cluster.sh starts munge,
slurmctld and slurmd (no systemd), each study's job script is submitted with sbatch (4 CPU
ranks, tiny sweeps from tests/slurm/sweeps, the headers' GPU and partition overridden), the
jobs are polled with scontrol until they end (with a timeout), and their HDF5 files are checked:
the job id and node list recorded, a host per rank, every executed run checked and exact
(predicted == measured bytes), the calibration and model runs present; then only the daemons
the script started are stopped.
Usage: slurm_test.py REPO ATTNSIM"""
import os
import re
import subprocess
import sys
import tempfile
import time

import h5py
import numpy as np

REPO, ATTNSIM = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
STUDIES = [("strong-scaling", "strong.conf", 4), ("weak-scaling", "weak.conf", 4),
           ("model-validation", "validate.conf", 4), ("kernel-study", "kernels.conf", 1)]


def job_state(env, job):
    out = subprocess.run(["scontrol", "show", "job", job], capture_output=True, text=True,
                         env=env).stdout
    state = re.search(r"JobState=(\S+)", out)
    code = re.search(r"ExitCode=(\d+):(\d+)", out)
    return (state.group(1) if state else "UNKNOWN"), (code.groups() if code else ("?", "?"))


def main():
    problems = []
    d = tempfile.mkdtemp(prefix="attnsim-slurm-")
    cluster = os.path.join(REPO, "tests", "slurm", "cluster.sh")
    t0 = time.time()
    up = subprocess.run([cluster, "start", os.path.join(d, "cluster")], capture_output=True,
                        text=True)
    if up.returncode != 0:
        print(up.stdout, up.stderr)
        print("FAIL the one-node Slurm did not start")
        return 1
    print(f"slurm up in {time.time() - t0:.1f} s")
    env = dict(os.environ, SLURM_CONF=os.path.join(d, "cluster", "slurm.conf"))
    try:
        jobs = {}
        for study, sweep, ntasks in STUDIES:
            cmd = ["sbatch", "--parsable", "-p", "debug", "--nodes=1", f"--ntasks={ntasks}",
                   f"--ntasks-per-node={ntasks}", "--gpus-per-node=0", "--time=00:10:00",
                   f"--output={d}/{study}-%j.out",
                   f"--export=ALL,OUT_DIR={d},ATTNSIM_ROOT={REPO},ATTNSIM={ATTNSIM},"
                   f"SWEEP={REPO}/tests/slurm/sweeps/{sweep}",
                   os.path.join(REPO, "experiments", study, "job.sbatch")]
            p = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if p.returncode != 0:
                problems.append(f"{study}: sbatch failed: {p.stderr}")
                continue
            jobs[study] = p.stdout.strip().split(";")[0]
            print(f"submitted {study}: job {jobs[study]}")
        deadline = time.time() + 600
        pending = dict(jobs)
        while pending and time.time() < deadline:
            for study, job in list(pending.items()):
                state, code = job_state(env, job)
                if state in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL",
                             "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE", "PREEMPTED"):
                    print(f"job {job} ({study}): {state}, exit {code[0]}:{code[1]}, "
                          f"{time.time() - t0:.0f} s after start")
                    if state != "COMPLETED":
                        log = open(f"{d}/{study}-{job}.out").read()[-2000:]
                        problems.append(f"{study}: job {job} {state}\n{log}")
                    del pending[study]
            time.sleep(0.5)
        for study, job in pending.items():
            problems.append(f"{study}: job {job} did not end within 600 s")
            subprocess.run(["scancel", job], env=env)
        for study, job in jobs.items():
            path = os.path.join(d, f"{study}-{job}.h5")
            if study in pending or not os.path.exists(path):
                problems.append(f"{study}: no output file {path}")
                continue
            with h5py.File(path, "r") as f:
                a = f.attrs
                if a.get("slurm_job_id") != job or a.get("slurm_job_nodelist") != "localhost":
                    problems.append(f"{study}: job id/node list not recorded ({a.get('slurm_job_id')})")
                kinds = {}
                for name, g in f["runs"].items():
                    kinds[g.attrs["kind"]] = kinds.get(g.attrs["kind"], 0) + 1
                    if g.attrs.get("slurm_job_id") != job:
                        problems.append(f"{study} run {name}: no job id")
                    if g.attrs["kind"] == "distributed":
                        P = int(g.attrs["P"])
                        if len(g.attrs["host_names"]) != P:
                            problems.append(f"{study} run {name}: {len(g.attrs['host_names'])} hosts for P={P}")
                        if g.attrs["counts_match"] != 1 or g.attrs.get("check_passed") != 1:
                            problems.append(f"{study} run {name}: counts or check failed")
                        for k in ("bytes_sent", "bytes_recv", "messages"):
                            if not np.array_equal(g[f"measured/{k}"][()], g[f"predicted/{k}"][()]):
                                problems.append(f"{study} run {name}: measured/{k} != predicted/{k}")
                    if g.attrs["kind"] == "kernel" and g.attrs.get("check_passed") != 1:
                        problems.append(f"{study} run {name}: kernel check failed")
                want = {"strong-scaling": ("distributed", "model"), "weak-scaling": ("distributed",),
                        "model-validation": ("calibration", "distributed", "model"),
                        "kernel-study": ("kernel",)}[study]
                for k in want:
                    if not kinds.get(k):
                        problems.append(f"{study}: no {k} runs ({kinds})")
                print(f"{study}: {path}: {kinds}")
            log = open(f"{d}/{study}-{job}.out").read()
            if study != "kernel-study" and "progress" not in log:
                problems.append(f"{study}: no progress lines in the job log")
            if study == "model-validation" and "whole runs" not in log:
                problems.append("model-validation: no error summary in the job log")
            gal = os.path.join(d, f"{study}-{job}-gallery")
            want_png = {"kernel-study": ["roofline.png", "parity.png"]}.get(
                study, ["parity.png", "phases.png", "scaling.png"])
            index = os.path.join(gal, "index.html")
            shown = open(index).read() if os.path.exists(index) else ""
            for png in want_png:
                path = os.path.join(gal, png)
                if f"src='{png}'" not in shown or not os.path.exists(path) \
                        or os.path.getsize(path) < 20000:
                    problems.append(f"{study}: gallery {png} missing, small or not in index.html")
            if os.path.isdir(gal):
                print(f"{study}: gallery {sorted(os.listdir(gal))}")
            if study == "strong-scaling":
                print("\n".join(l for l in log.splitlines() if l.startswith("# a2d-no:"))[:2000])
    finally:
        subprocess.run([cluster, "stop", os.path.join(d, "cluster")])
    for p in problems:
        print("FAIL", p)
    print(f"slurm_test: {len(jobs)} jobs, {len(problems)} problems, {time.time() - t0:.0f} s")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
