#!/usr/bin/env python3
"""Host memory is checked before any work, for `run` as for `kernels`, against the smaller of
the machine's memory and the address-space limit (RLIMIT_AS, ulimit -v):
- the per-rank estimate `run` prints (and checks) is never below the peak resident memory a
  rank really adds, and not far above it (every algorithm, fwd and train, with and without
  --check on rank 0);
- under a 1 GiB address-space limit, a shape that needs more is refused at once (exit 2, one
  line naming --seq and the limit, nothing written), and one that fits runs;
- a shape that needs more than the node's physical memory is refused at once;
- `kernels` (and `kernels --decode`) refuse a shape the address-space limit cannot hold.
Usage: run_memory.py ATTNSIM MPIEXEC"""
import os
import re
import resource
import signal
import subprocess
import sys
import tempfile
import time

ATTNSIM, MPIEXEC = os.path.abspath(sys.argv[1]), sys.argv[2]
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
PY = sys.executable
GiB, MiB = 1 << 30, 1 << 20
# each rank runs under this wrapper: an optional address-space limit, and its peak resident
# memory written to DIR/rank-N
WRAP = r'''
import os, resource, subprocess, sys
out, limit = sys.argv[1], int(sys.argv[2])
if limit:
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
p = subprocess.run(sys.argv[3:])
rank = os.environ.get("OMPI_COMM_WORLD_RANK", "0")
with open(os.path.join(out, "rank-" + rank), "w") as f:
    f.write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024))
sys.exit(p.returncode)
'''


def run(cmd, cwd, deadline=300):
    t0 = time.time()
    p = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=ENV, start_new_session=True)
    try:
        out, err = p.communicate(timeout=deadline)
        return p.returncode, out, err, time.time() - t0
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
        return None, out, err, time.time() - t0


def mpi(P, args, d, limit=0):
    peaks = os.path.join(d, "peaks")
    os.makedirs(peaks, exist_ok=True)
    for f in os.listdir(peaks):
        os.remove(os.path.join(peaks, f))
    status, out, err, took = run([MPIEXEC, "-n", str(P), "--oversubscribe", PY, "-c", WRAP, peaks,
                                  str(limit), ATTNSIM, "run", *args], d)
    rss = {int(f[5:]): int(open(os.path.join(peaks, f)).read()) for f in os.listdir(peaks)}
    return status, out, err, took, rss


def estimate(out):
    m = re.search(r"# host memory: at most ([\d.]+) (MiB|GiB) per rank, ([\d.]+) (MiB|GiB) on rank 0",
                  out)
    if not m:
        return None
    unit = lambda u: MiB if u == "MiB" else GiB
    return float(m.group(1)) * unit(m.group(2)), float(m.group(3)) * unit(m.group(4))


def main():
    problems = []

    def check(ok, what):
        print(f"{'ok  ' if ok else 'FAIL'} {what}")
        if not ok:
            problems.append(what)

    shape = ["--seq", "8", "--heads", "32", "--head-dim", "128"]
    with tempfile.TemporaryDirectory() as d:
        # the estimate against the peak resident memory each rank adds
        base = mpi(4, shape + ["--batch", "1", "--algo", "ring", "--check"], d)[4]
        for algo, pas, batch, chk in (("ring", "fwd", 256, False), ("ring", "train", 256, False),
                                      ("a2d-no", "train", 256, False), ("a2d-o", "fwd", 256, False),
                                      ("ulysses", "train", 256, False),
                                      ("hybrid", "train", 256, False), ("hybrid", "fwd", 128, True),
                                      ("ring", "train", 128, True), ("a2d-no", "fwd", 128, True),
                                      ("ulysses", "fwd", 128, True)):
            args = shape + ["--batch", str(batch), "--algo", algo, "--pass", pas] + \
                (["--check"] if chk else []) + \
                (["--ulysses-size", "2"] if algo == "hybrid" else [])
            status, out, err, took, rss = mpi(4, args, d)
            est = estimate(out)
            if status != 0 or est is None or len(rss) != 4:
                check(False, f"{algo} {pas}{' --check' if chk else ''}: status {status}, "
                      f"estimate {est}: {err[-300:]}")
                continue
            for r in range(4):
                added = rss[r] - base.get(r, 0)
                want = est[1] if r == 0 else est[0]
                ok = added <= want <= 1.8 * added + 16 * MiB
                check(ok, f"{algo} {pas}{' --check' if chk else ''} rank {r}: estimate "
                      f"{want / MiB:.0f} MiB, peak resident memory added {added / MiB:.0f} MiB")

        # an address-space limit of 1 GiB: refused at once when the shape needs more
        out_h5 = os.path.join(d, "x.h5")
        status, out, err, took, _ = mpi(2, shape + ["--batch", "4096", "--algo", "ring", "--out",
                                                    out_h5], d, limit=GiB)
        lines = [l for l in err.splitlines() if l.startswith("attnsim")]
        check(status == 2 and len(lines) == 1 and took < 30 and not os.path.exists(out_h5) and
              "--seq: N = 8 (ring fwd, d = 128, f32) needs" in lines[0] and
              "its address-space limit (ulimit -v 1.0 GiB) leaves this process" in lines[0],
              f"run under ulimit -v 1 GiB, a shape of 2.8 GiB per rank: status {status} in "
              f"{took:.1f} s: {lines}")
        status, out, err, took, _ = mpi(2, shape + ["--batch", "256", "--algo", "ring", "--out",
                                                    out_h5], d, limit=GiB)
        check(status == 0 and "VALID" in out and os.path.exists(out_h5),
              f"run under ulimit -v 1 GiB, a shape that fits runs: status {status}: {err[-300:]}")

        # a shape larger than the node's physical memory: refused at once
        phys = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        N = 1024
        while N * 64 * 256 * 4 * 2 < 4 * phys:  # Q and O alone: four times the machine
            N *= 2
        status, out, err, took, _ = mpi(2, ["--seq", str(N), "--heads", "64", "--head-dim", "256",
                                            "--algo", "ring", "--out", out_h5 + "2"], d)
        lines = [l for l in err.splitlines() if l.startswith("attnsim")]
        check(status == 2 and len(lines) == 1 and took < 30 and not os.path.exists(out_h5 + "2")
              and f"--seq: N = {N} (ring fwd" in lines[0] and
              "for the 2 ranks of this node, more than 80% of its" in lines[0],
              f"run of N = {N} beyond the node's memory: status {status} in {took:.1f} s: {lines}")

        # kernels under the same limit
        for args, what in ((["--kernel", "standard", "--seq", "8k", "--pass", "fwd"],
                            "--seq: N = 8192, N_k = 8192 needs"),
                           (["--decode", "--seq", "1M"], "--seq: a cache of 1048576 tokens needs")):
            t0 = time.time()
            p = subprocess.run([PY, "-c", WRAP, d, str(GiB), ATTNSIM, "kernels", *args, "--out",
                                out_h5 + "3"], capture_output=True, text=True, timeout=120)
            took = time.time() - t0
            check(p.returncode == 2 and p.stderr.count("\n") == 1 and what in p.stderr and
                  "address-space limit (ulimit -v 1.0 GiB)" in p.stderr and took < 30 and
                  not os.path.exists(out_h5 + "3"),
                  f"kernels {' '.join(args)} under ulimit -v 1 GiB: status {p.returncode} in "
                  f"{took:.1f} s: {p.stderr.strip()}")
        p = subprocess.run([PY, "-c", WRAP, d, str(GiB), ATTNSIM, "kernels", "--kernel", "standard",
                            "--seq", "1k", "--pass", "fwd"], capture_output=True, text=True,
                           timeout=300)
        check(p.returncode == 0, f"kernels that fit run under the limit: {p.stderr.strip()}")
    print(f"run_memory: {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
