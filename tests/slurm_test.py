#!/usr/bin/env python3
"""The experiment scripts on a real one-node Slurm: tests/slurm/cluster.sh starts munge,
slurmctld and slurmd (no systemd; 4 GPUs as a generic resource, so the GPU requests of the job
headers are scheduled, while attnsim sees no GPU and the studies run on CPU ranks). Every shipped
job script (experiments/*/job.sbatch) is submitted with sbatch unmodified - no option on the
command line, the tiny sweep of tests/slurm/sweeps/STUDY.conf given through the environment -
and the jobs are polled with scontrol until they end (with a timeout); their HDF5 files are
checked (the job id and node list recorded, a host per rank, every executed run checked and
exact, the calibration and model runs present), their logs (the backend chosen, progress) and
galleries. A job with a misspelt sweep key fails at once with one line naming it. Then only the
daemons the script started are stopped.
Usage: slurm_test.py REPO ATTNSIM"""
import os
import re
import subprocess
import sys
import tempfile
import time

import glob

import h5py
import numpy as np

REPO, ATTNSIM = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
STUDIES = sorted(os.path.basename(os.path.dirname(p))
                 for p in glob.glob(os.path.join(REPO, "experiments", "*", "job.sbatch")))
KINDS = {"strong-scaling": ("distributed", "model"), "weak-scaling": ("distributed",),
         "model-validation": ("calibration", "distributed", "model"),
         "cpu-scaling": ("calibration", "distributed", "model"), "kernel-study": ("kernel",)}
PNGS = {"kernel-study": ["roofline.png", "parity.png"],
        "weak-scaling": ["parity.png", "phases.png", "weak-scaling.png"]}


def job_state(env, job):
    out = subprocess.run(["scontrol", "show", "job", job], capture_output=True, text=True,
                         env=env).stdout
    state = re.search(r"JobState=(\S+)", out)
    code = re.search(r"ExitCode=(\d+):(\d+)", out)
    return (state.group(1) if state else "UNKNOWN"), (code.groups() if code else ("?", "?"))


def log_path(d, study, job):
    """The job's output file as its shipped header names it (--output=attnsim-X-%j.out, in the
    submit directory)."""
    with open(os.path.join(REPO, "experiments", study, "job.sbatch")) as f:
        for line in f:
            if line.startswith("#SBATCH --output="):
                return os.path.join(d, line.split("=", 1)[1].strip().replace("%j", job))
    return os.path.join(d, f"slurm-{job}.out")


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

        def submit(study, sweep):
            return subprocess.run(
                ["sbatch", "--parsable",
                 f"--export=ALL,OUT_DIR={d},ATTNSIM_ROOT={REPO},ATTNSIM={ATTNSIM},SWEEP={sweep},"
                 # the test node declares more CPUs than the cores: waiting ranks must yield
                 "OMPI_MCA_mpi_yield_when_idle=1",
                 os.path.join(REPO, "experiments", study, "job.sbatch")],
                capture_output=True, text=True, env=env, cwd=d)

        for study in STUDIES:
            sweep = os.path.join(REPO, "tests", "slurm", "sweeps", f"{study}.conf")
            if study not in KINDS or not os.path.exists(sweep):
                problems.append(f"{study}: no tiny sweep tests/slurm/sweeps/{study}.conf or "
                                "no expectations in slurm_test.py")
                continue
            p = submit(study, sweep)
            if p.returncode != 0:
                problems.append(f"{study}: sbatch of the shipped job.sbatch failed: {p.stderr}")
                continue
            jobs[study] = p.stdout.strip().split(";")[0]
            print(f"submitted {study}: job {jobs[study]}")
        # a misspelt key: the job stops at once, one line naming the key and the accepted ones
        bad = os.path.join(d, "misspelt.conf")
        with open(os.path.join(REPO, "tests", "slurm", "sweeps", "strong-scaling.conf")) as f:
            text = f.read()
        with open(bad, "w") as f:
            f.write(text.replace("check = yes", "chek = yes"))
        bad_line = text.splitlines().index("check = yes") + 1
        p = submit("strong-scaling", bad)
        bad_job = p.stdout.strip().split(";")[0] if p.returncode == 0 else None
        if bad_job is None:
            problems.append(f"misspelt sweep: sbatch failed: {p.stderr}")
        deadline = time.time() + 750
        pending = dict(jobs)
        if bad_job:
            pending["misspelt"] = bad_job
        while pending and time.time() < deadline:
            for study, job in list(pending.items()):
                state, code = job_state(env, job)
                if state in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL",
                             "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE", "PREEMPTED"):
                    print(f"job {job} ({study}): {state}, exit {code[0]}:{code[1]}, "
                          f"{time.time() - t0:.0f} s after start")
                    if study == "misspelt":
                        log = open(log_path(d, "strong-scaling", job)).read()
                        want = (f"line {bad_line}: unknown key 'chek'; accepted: algos, "
                                "backend")
                        if state != "FAILED" or code[0] != "2" or want not in log \
                                or "attnsim run" in log:
                            problems.append(f"misspelt sweep: {state} {code}, log {log!r}")
                    elif state != "COMPLETED":
                        log = open(log_path(d, study, job)).read()[-2000:]
                        problems.append(f"{study}: job {job} {state}\n{log}")
                    del pending[study]
            time.sleep(0.5)
        for study, job in pending.items():
            problems.append(f"{study}: job {job} did not end within 750 s")
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
                for k in KINDS[study]:
                    if not kinds.get(k):
                        problems.append(f"{study}: no {k} runs ({kinds})")
                print(f"{study}: {path}: {kinds}")
            log = open(log_path(d, study, job)).read()
            first = log.splitlines()[0] if log else ""
            if "backend cpu" not in first:
                problems.append(f"{study}: the job's first line does not name backend cpu")
            if study != "kernel-study" and "progress" not in log:
                problems.append(f"{study}: no progress lines in the job log")
            if study == "model-validation" and "whole runs" not in log:
                problems.append("model-validation: no error summary in the job log")
            gal = os.path.join(d, f"{study}-{job}-gallery")
            want_png = PNGS.get(study, ["parity.png", "phases.png", "scaling.png"])
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
