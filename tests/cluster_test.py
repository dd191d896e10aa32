#!/usr/bin/env python3
"""The emulated cluster (experiments/emulated-cluster) on this machine, as root: up (and up
again: idempotent), the nodes' host names, Ring, A2D-NO, A2D-O, Ulysses and the hybrid across
2 nodes x 2 ranks with --check (measured == predicted bytes and messages on every rank and phase, and the
tier of every message - what each rank sent to other nodes, per phase - as the model places it;
the inter-node bytes crossed the shaped links, by their qdisc counters; the hybrid's
all-to-alls stay on a node, its ring crosses nodes), a placement the model
does not assume flagged (tiers_match 0), a second cluster on the same subnet refused, one
`sbatch -N 2` of the strong-scaling study through the cluster's Slurm (srun --mpi=pmix, both
node names recorded), a node's link taken down mid-run (the job ends with an error within a
bounded time, the HDF5 file keeps its earlier runs), down; then nothing of the cluster is
left (namespaces, state directory and UTS files, daemons). Also a failed up.sh leaves nothing.
Every loop is bounded in count and time. Exit 77 (skipped) where the machine allows no network
namespaces or the test is not root.
Usage: cluster_test.py REPO ATTNSIM"""
import glob
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import h5py
import numpy as np

REPO, ATTNSIM = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
CL = os.path.join(REPO, "experiments", "emulated-cluster")
NAME, SUBNET = "attnsimt", "198.18.45"
STATE = f"/run/attnsim-cluster/{NAME}"
ENV = dict(os.environ, CLUSTER_NAME=NAME, CLUSTER_SUBNET=SUBNET, CLUSTER_NODES="2",
           CLUSTER_SLOTS="2", CLUSTER_RATE="500mbit", CLUSTER_SLURM="1",
           OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
problems = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what, flush=True)
    if not ok:
        problems.append(what)
    return ok


def sh(cmd, timeout=120, env=ENV, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, **kw)


def node(n, *cmd, timeout=300):
    return sh([os.path.join(CL, "node.sh"), n, *cmd], timeout=timeout)


def our_namespaces():
    out = sh(["ip", "netns", "list"]).stdout
    return sorted(l.split()[0] for l in out.splitlines()
                  if re.match(rf"^{NAME}-(head|n\d+)\b", l))


def qdisc_sent(ns, dev):
    out = sh(["ip", "netns", "exec", ns, "tc", "-s", "qdisc", "show", "dev", dev]).stdout
    m = re.search(r"Sent (\d+) bytes", out)
    return int(m.group(1)) if m else -1


def mpirun(*args, hosts="n0:2,n1:2", n=4, extra=(), timeout=300):
    return node("n0", "mpirun", "--host", hosts, "-n", str(n), *extra, ATTNSIM, *args,
                timeout=timeout)


def check_runs(path, want_hosts):
    """Every executed run: exact counts and checks on every rank, and the tiers as the model
    places them; returns {algorithm: (inter bytes, intra bytes)}."""
    seen = {}
    with h5py.File(path, "r") as f:
        hosts = [h.decode() if isinstance(h, bytes) else h for h in f.attrs["host_names"]]
        check(hosts == want_hosts, f"{path}: host names {hosts}")
        for name, g in f["runs"].items():
            a = g.attrs
            if a["kind"] != "distributed":
                continue
            algo = a["algorithm"]
            exact = all(np.array_equal(g[f"measured/{k}"][()], g[f"predicted/{k}"][()])
                        for k in ("bytes_sent", "bytes_recv", "messages"))
            check(exact and a["counts_match"] == 1 and a.get("check_passed") == 1,
                  f"run {name} {algo}: measured == predicted on every rank and phase, check passed")
            tiers = all(np.array_equal(g[f"measured/{k}"][()], g[f"predicted/{k}"][()])
                        for k in ("bytes_sent_inter", "messages_inter"))
            check(tiers and a["tiers_match"] == 1,
                  f"run {name} {algo}: the tier of every message as the model places it "
                  f"({a.get('first_tier_difference', 'no difference')})")
            inter = int(g["measured/bytes_sent_inter"][()].sum())
            intra = int(g["measured/bytes_sent"][()].sum()) - inter
            check(list(g["ranks"][:, 1]) == [0, 0, 1, 1], f"run {name}: ranks on nodes 0 0 1 1")
            seen[algo] = (inter, intra)
    return seen


def job_state(job):
    out = node("head", "scontrol", "show", "job", job, timeout=30).stdout
    m = re.search(r"JobState=(\S+)", out)
    return m.group(1) if m else "UNKNOWN"


def slurm_job(work):
    """sbatch -N 2 of the strong-scaling study (tiny sweep) across the two nodes."""
    sweeps = os.path.join(REPO, "tests", "slurm", "sweeps")
    sweep = next(os.path.join(sweeps, n) for n in ("strong-scaling.conf", "strong.conf")
                 if os.path.exists(os.path.join(sweeps, n)))
    cmd = ["sbatch", "--parsable", "-N", "2", "--ntasks-per-node=2", "-p", "debug",
           "--gpus-per-node=0", "--time=00:10:00", f"--output={work}/strong-%j.out",
           f"--export=ALL,OUT_DIR={work},ATTNSIM_ROOT={REPO},ATTNSIM={ATTNSIM},"
           f"SWEEP={sweep}",
           os.path.join(REPO, "experiments", "strong-scaling", "job.sbatch")]
    p = node("head", *cmd, timeout=60)
    if not check(p.returncode == 0, f"sbatch -N 2 accepted ({p.stderr.strip()})"):
        return
    job = p.stdout.strip().split(";")[0]
    t0, state = time.time(), "PENDING"
    while time.time() - t0 < 600:
        state = job_state(job)
        if state in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY",
                     "BOOT_FAIL", "DEADLINE", "PREEMPTED"):
            break
        time.sleep(1)
    log_path = f"{work}/strong-{job}.out"
    log = open(log_path).read() if os.path.exists(log_path) else ""
    if not check(state == "COMPLETED", f"job {job}: {state} after {time.time() - t0:.0f} s"):
        print(log[-3000:])
        node("head", "scancel", job, timeout=30)
        return
    path = f"{work}/strong-scaling-{job}.h5"
    if not check(os.path.exists(path), f"job {job} wrote {path}"):
        return
    with h5py.File(path, "r") as f:
        check(f.attrs.get("slurm_job_nodelist") == "n[0-1]",
              f"job's node list recorded: {f.attrs.get('slurm_job_nodelist')}")
        both = 0
        for name, g in f["runs"].items():
            a = g.attrs
            if a["kind"] != "distributed":
                continue
            hosts = {h.decode() if isinstance(h, bytes) else h for h in a["host_names"]}
            both += hosts == {"n0", "n1"}
            check(a["counts_match"] == 1 and a.get("check_passed") == 1 and a["tiers_match"] == 1,
                  f"job run {name} {a['algorithm']} P={a['P']} on {sorted(hosts)}: counts, check "
                  f"and tiers")
        check(both > 0, f"job: {both} runs across both nodes n0 and n1")


def link_down_fault(path):
    """A node's link goes down mid-run: the job ends with an error, bounded in time; the file
    keeps its earlier runs."""
    with h5py.File(path, "r") as f:
        before = sorted(f["runs"])
    p = subprocess.Popen([os.path.join(CL, "node.sh"), "n0", "mpirun", "--host", "n0:2,n1:2",
                          "-n", "4", ATTNSIM, "run", "--algo", "ring", "--seq", "2k", "--heads",
                          "4", "--head-dim", "64", "--reps", "200", "--out", path],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV,
                         start_new_session=True)
    time.sleep(6)  # the job is running its repetitions
    running = p.poll() is None
    check(running, "the long run is running when the link goes down")
    sh(["ip", "-n", f"{NAME}-n1", "link", "set", "eth0", "down"])
    t0 = time.time()
    try:
        out, _ = p.communicate(timeout=150)
        took = time.time() - t0
        check(p.returncode != 0, f"the job ended with an error {took:.0f} s after the link went "
              f"down (exit {p.returncode}; bound 150 s)")
        tail = "\n".join(out.strip().splitlines()[-6:])
        print("  its last lines:\n    " + tail.replace("\n", "\n    "))
        check(re.search(r"lost communication|network connection", out) is not None,
              "the error names the lost connection to the node")
    except subprocess.TimeoutExpired:
        check(False, "the job did not end within 150 s of the link going down")
        os.killpg(p.pid, signal.SIGKILL)
        p.communicate()
    sh(["ip", "-n", f"{NAME}-n1", "link", "set", "eth0", "up"])
    with h5py.File(path, "r") as f:
        after = sorted(f["runs"])
        complete = all(f["runs"][r].attrs.get("complete") == 1 for r in after)
    check(after == before and complete, f"the file keeps its {len(before)} earlier runs, all "
          f"complete, and no other ({len(after)} now)")
    left = glob.glob(os.path.join(os.path.dirname(path), ".*attnsim-tmp*"))
    check(not left, f"no temporary copy left beside the file ({left})")


def nothing_left(pids):
    check(our_namespaces() == [], f"no namespace of the cluster left ({our_namespaces()})")
    check(not os.path.exists(STATE), f"no state directory {STATE} left")
    mounts = open("/proc/self/mountinfo").read()
    check(STATE not in mounts, "no UTS namespace file of the cluster mounted")
    alive = [p for p in pids if os.path.exists(f"/proc/{p}")]
    check(not alive, f"no daemon of the cluster alive ({alive} of {pids})")


def main():
    if os.geteuid() != 0:
        print("SKIP: the emulated cluster needs root (network namespaces)")
        return 77
    t_start = time.time()
    work = tempfile.mkdtemp(prefix="attnsim-cluster-")
    up = os.path.join(CL, "up.sh")
    down = os.path.join(CL, "down.sh")
    sh([down])  # one left by a killed run of this test
    # a failed up.sh (here: made to fail with every part up) leaves nothing behind
    p = sh([up], env=dict(ENV, CLUSTER_FAIL_AT="end"))
    if p.returncode == 77:
        print(p.stderr.strip())
        print("SKIP: this machine does not allow the emulated cluster")
        return 77
    check(p.returncode not in (0, 77), f"up.sh made to fail exits {p.returncode}")
    nothing_left([])
    pids = []
    try:
        t0 = time.time()
        p = sh([up])
        if not check(p.returncode == 0, f"up.sh: {p.stdout.strip()} {p.stderr.strip()} "
                                        f"({time.time() - t0:.1f} s)"):
            return 1
        made = our_namespaces()
        p = sh([up])
        check(p.returncode == 0 and "already up" in p.stdout and our_namespaces() == made,
              f"up.sh again: {p.stdout.strip()}")
        check(made == [f"{NAME}-head", f"{NAME}-n0", f"{NAME}-n1"], f"namespaces {made}")
        names = [node(n, "hostname").stdout.strip() for n in ("n0", "n1")]
        check(names == ["n0", "n1"], f"host names of the nodes: {names}")
        for f in glob.glob(f"{STATE}/slurm/*.pid"):
            pids.append(int(open(f).read()))
        check(len(pids) == 4, f"munged, slurmctld and 2 slurmd running ({len(pids)} pid files)")
        # a second cluster on the same subnet is refused, and leaves nothing
        other = dict(ENV, CLUSTER_NAME="attnsimu", CLUSTER_SLURM="0")
        p = sh([up], env=other)
        check(p.returncode == 2 and "in use" in p.stderr, f"same subnet refused: {p.stderr.strip()}")
        check(not os.path.exists("/run/attnsim-cluster/attnsimu"), "the refused cluster left nothing")

        out = os.path.join(work, "runs.h5")
        sent0 = qdisc_sent(f"{NAME}-n0", "eth0")
        t0 = time.time()
        for algo in ("ring", "a2d-no", "a2d-o", "ulysses", "hybrid"):
            p = mpirun("run", "--algo", algo, "--pass", "train", "--seq", "256", "--heads", "4",
                       "--head-dim", "16", "--check", "--out", out)
            check(p.returncode == 0 and "4 ranks on 2 node(s)" in p.stdout,
                  f"{algo} train across 2 nodes x 2 ranks ({p.stdout.strip().splitlines()[-1:]}"
                  f"{p.stderr.strip()[-500:]})")
        print(f"  5 runs in {time.time() - t0:.1f} s")
        sent = qdisc_sent(f"{NAME}-n0", "eth0") - sent0
        seen = check_runs(out, ["n0", "n0", "n1", "n1"])
        check(all(seen.get(a, (0, 0))[0] > 0 for a in ("ring", "a2d-no", "ulysses")),
              f"messages crossed nodes in every algorithm ({seen})")
        check(seen.get("a2d-no", (0, 0))[1] > 0, "A2D-NO also sent within nodes (both tiers)")
        # the hybrid's groups are the nodes (--ulysses-size: ranks per node): its all-to-alls
        # stay on a node, its ring crosses them
        with h5py.File(out, "r") as f:
            hyb = [g for g in f["runs"].values() if g.attrs["algorithm"] == "hybrid"]
            split = {}
            for g in hyb:
                names = [n.decode() if isinstance(n, bytes) else n for n in g["phases"][()]]
                h_inter = g["measured/bytes_sent_inter"][()].sum(axis=0)
                h_sent = g["measured/bytes_sent"][()].sum(axis=0)
                split = {n: (int(i), int(s)) for n, i, s in zip(names, h_inter, h_sent)}
        check(bool(split) and all(i == 0 < s for n, (i, s) in split.items() if "all_to_all" in n)
              and all(i == s > 0 for n, (i, s) in split.items() if n.startswith("ring_")),
              f"hybrid: all-to-alls within nodes, the ring across them ({split})")
        with h5py.File(out, "r") as f:
            from_n0 = sum(int(g["measured/bytes_sent_inter"][:2].sum()) for g in f["runs"].values())
        check(sent >= from_n0 > 0, f"node n0's link carried {sent} bytes >= the {from_n0} bytes "
              "its ranks sent to n1")
        # ranks placed round-robin over the nodes: the model's packed placement differs
        p = mpirun("run", "--algo", "ring", "--seq", "256", "--heads", "4", "--head-dim", "16",
                   "--out", os.path.join(work, "rr.h5"), extra=("--map-by", "node"))
        with h5py.File(os.path.join(work, "rr.h5"), "r") as f:
            g = f["runs"]["000000"]
            check(g.attrs["tiers_match"] == 0 and "TIERS DIFFER" in p.stdout,
                  "round-robin placement: tiers differ from the model's, flagged "
                  f"({g.attrs.get('first_tier_difference')})")

        t0 = time.time()
        slurm_job(work)
        print(f"  Slurm job in {time.time() - t0:.1f} s")
        t0 = time.time()
        link_down_fault(out)
        print(f"  fault test in {time.time() - t0:.1f} s")
    finally:
        t0 = time.time()
        p = sh([down], timeout=120)
        check(p.returncode == 0, f"down.sh: {p.stdout.strip()} {p.stderr.strip()} "
                                 f"({time.time() - t0:.1f} s)")
    nothing_left(pids)
    shutil.rmtree(work, ignore_errors=True)
    print(f"cluster_test: {len(problems)} problems, {time.time() - t_start:.0f} s")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
