#!/usr/bin/env python3
"""Bad input never writes: every bad value gets one line on stderr naming the option and what
is accepted, exit status 2, nothing on stdout, and no file created or modified.

Usage: cli_errors.py ATTNSIM
Each case runs in a directory holding an attnsim/1 file (and a hard link to it), a foreign HDF5
file, a text file, a read-only attnsim file, a read-only machine file and a FIFO; the directory (names, sizes, contents, modification times) must be the
same afterwards, and the new output path that most cases also pass must not exist.
"""
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile

ATTNSIM = os.path.abspath(sys.argv[1])
SMALL = ["--kernel", "fa2", "--pass", "fwd", "--seq", "16", "--heads", "1", "--head-dim", "16",
         "--sram", "1k"]

# (arguments after "attnsim", text the message must contain). "+out" appends --out new.h5.
CASES = [
    (["kernels", "--bogus", "+out"], "unknown option '--bogus'"),
    (["kernels", "--seq"], "--seq"),
    (["kernels", "--seq", "abc", "+out"], "--seq: 'abc' is not a number"),
    (["kernels", "--seq", "0", "+out"], "--seq: '0' is zero"),
    (["kernels", "--batch", "-3", "+out"], "--batch: '-3' is negative"),
    (["kernels", "--seq", "99999999999999999999999", "+out"], "--seq: '99999999999999999999999' is too large"),
    (["kernels", "--seq", "2000G", "+out"], "too large"),
    (["kernels", "--seq", "4x", "+out"], "--seq: '4x' has a bad suffix 'x'"),
    (["kernels", "--seq", "4kk", "+out"], "bad suffix"),
    (["kernels", "--seq", "1.5k", "+out"], "not an integer"),
    (["kernels", "--seq", "256,,512", "+out"], "empty item"),
    (["kernels", "--kernel", "fa3", "+out"], "--kernel: unknown value 'fa3'; accepted: standard, fa1, fa2"),
    (["kernels", "--dtype", "fp8", "+out"], "--dtype: unknown value 'fp8'; accepted"),
    (["kernels", "--backend", "tpu", "+out"], "--backend: unknown value 'tpu'; accepted: cpu, cuda"),
    # a build without CUDA, or a machine without a usable GPU (the case is skipped where one is)
    (["kernels", "--backend", "cuda", "+out"],
     ("--backend: 'cuda' kernels are not available", "--backend: cuda: no usable CUDA device")),
    (["kernels", "--heads", "6", "--kv-heads", "4", "+out"], "--kv-heads: 4 does not divide --heads 6"),
    (["kernels", "--heads", "2", "--kv-heads", "4", "+out"], "--kv-heads"),
    (["kernels", "--out", "nodir/x.h5"], "--out: directory 'nodir' does not exist"),
    (["kernels", "--out", "."], "is a directory"),
    (["kernels", "--out", "notes.txt"], "--out: 'notes.txt' exists and is not an HDF5 file"),
    (["kernels", "--out", "foreign.h5"], "--out: 'foreign.h5' is an HDF5 file of another schema"),
    (["kernels", "--out", "readonly.h5"], "--out: 'readonly.h5' is read-only"),
    (["kernels", "--out", ""], "--out: the value is empty"),
    (["kernels", "--out", "hang.h5"], "--out: 'hang.h5' is damaged: the HDF5 library did not finish reading it in 10 s"),
    (["kernels", "--kernel", "fa1", "--pass", "bwd", "+out"], "--pass: kernel fa1 has no backward"),
    # the decode kernels
    (["kernels", "--kernel", "lean", "+out"],
     "--kernel: lean is a decode kernel; accepted with --decode (without it: standard, fa1, fa2)"),
    (["kernels", "--decode", "--kernel", "standard,lean", "+out"],
     "--kernel: standard has no decode kernel; accepted with --decode: fa2, flash-decoding, lean"),
    (["kernels", "--slots", "8", "+out"], "--slots: applies to the decode kernels; accepted with --decode"),
    (["kernels", "--decode", "--slots", "0", "+out"], "--slots: '0' is zero"),
    (["kernels", "--decode", "--seq", "2G", "+out"], "cache length 2147483648 is too large; accepted: at most 1G tokens"),
    (["kernels", "--decode", "--heads", "6", "--kv-heads", "4", "+out"], "--kv-heads: 4 does not divide --heads 6"),
    (["kernels", "--pass", "sideways", "+out"], "--pass: unknown value 'sideways'; accepted: fwd, bwd, train"),
    (["kernels", "--sram", "100", "--head-dim", "64", "+out"], "--sram: 100 elements is too small"),
    (["kernels", "--head-dim", "512", "+out"], "--head-dim: '512' is too large; accepted: a positive integer with an optional k, M or G suffix (powers of two: 4k = 4096), at most 256"),
    (["kernels", "--causal=maybe", "+out"], "--causal: unknown value 'maybe'; accepted: no, yes, both"),
    (["kernels", "1024", "+out"], "unexpected argument '1024'"),
    (["kernels", "--reps", "0", "+out"], "--reps: '0' is zero"),
    (["kernels", "--seq", "1M", "--kernel", "standard", "+out"], "host memory"),
    (["kernels", "--seed", "x1", "+out"], "--seed: 'x1' is not a number"),
    (["frobnicate"], "unknown subcommand 'frobnicate'; accepted: run, model, kernels, calibrate"),
    (["run", "--algo", "ring,tree", "+out"], "--algo: unknown value 'tree'"),
    (["run", "--grid", "2x", "+out"], "--grid: '2x' is not a grid"),
    (["run", "--comm", "ucx", "+out"], "--comm: unknown value 'ucx'; accepted: mpi, nccl"),
    (["model", "--layout", "spiral", "+out"], "--layout: unknown value 'spiral'; accepted: contiguous, striped, zigzag"),
    (["model", "--procs", "0", "+out"], "--procs: '0' is zero"),
    (["model", "--heads", "8", "--kv-heads", "3", "+out"], "--kv-heads: 3 does not divide"),
    (["calibrate", "--machine", "", "+out"], "--machine: the value is empty"),
    (["calibrate", "--comm", "nccl", "+out"], "--comm: 'nccl' needs --backend cuda"),
    (["calibrate", "--backend", "cuda", "+out"],
     ("--backend: 'cuda': this build has no CUDA", "--backend: 'cuda': rank 0 sees no CUDA device")),
    # every output path is checked before any work: an existing file must be what the option
    # writes, and two options never write the same file
    (["calibrate", "--machine-out", "existing.h5"],
     "--machine-out: 'existing.h5' is an HDF5 file (results, not a machine description): it would be lost"),
    (["calibrate", "--machine-out", "existing.h5", "--out", "existing.h5"], "--machine-out: 'existing.h5' is an HDF5 file"),
    (["calibrate", "--machine-out", "new.machine", "--out", "new.machine"],
     "--machine-out: 'new.machine' is the file --out writes too; accepted: a different file for each output"),
    (["calibrate", "--out", "new.h5", "--machine-out", "./new.h5"], "--machine-out: './new.h5' is the file --out writes too"),
    (["calibrate", "--out", "existing.h5", "--machine-out", "hardlink.machine"],
     "--machine-out: 'hardlink.machine' is an HDF5 file"),
    (["calibrate", "--machine-out", "notes.txt"],
     "--machine-out: 'notes.txt' exists and is not a machine file (it does not read as a machine description)"),
    (["calibrate", "--machine-out", "readonly.machine"], "--machine-out: 'readonly.machine' is read-only"),
    (["calibrate", "--machine-out", "nodir/x.machine"], "--machine-out: directory 'nodir' does not exist"),
    (["calibrate", "--machine-out", "."], "--machine-out: '.' is a directory"),
    (["calibrate", "--machine-out", "pipe"], "--machine-out: 'pipe' is not a regular file"),
    (["calibrate", "--machine-out", ""], "--machine-out: the value is empty"),
    (["calibrate", "--out", "pipe"], "--out: 'pipe' is not a regular file"),
    # one stated range for --max-message
    (["calibrate", "--max-message", "512"], "--max-message: '512' is below 1k; accepted: 1k ... 1G bytes"),
    (["calibrate", "--max-message", "2G"], "--max-message: '2G' is above 1G; accepted: 1k ... 1G bytes"),
    (["calibrate", "--max-message", "4096G"], "--max-message: '4096G' is above 1G; accepted: 1k ... 1G bytes"),
    # a sweep with nothing to run names the option at fault
    (["model", "--seq", "2", "+out"], "--seq: no point of the sweep can run: every N (at most 2) is smaller than every P of --procs (at least 4)"),
    (["model", "--algo", "ulysses", "--heads", "2", "--procs", "4,8", "+out"],
     "--kv-heads: no point of the sweep can run (ulysses needs kv-heads >= P"),
    # a control character in a path is shown escaped: the message stays one line
    (["kernels", "--out", "no\ndir/x.h5"], "--out: directory 'no\\ndir' does not exist"),
]


def snapshot(d):
    state = {}
    for root, dirs, files in os.walk(d):
        for name in dirs + files:
            p = os.path.join(root, name)
            st = os.lstat(p)
            digest = None
            if os.path.isfile(p):
                with open(p, "rb") as f:
                    digest = hashlib.sha256(f.read()).hexdigest()
            state[os.path.relpath(p, d)] = (st.st_size, st.st_mtime_ns, st.st_mode, digest)
    return state


def setup(d):
    env = dict(os.environ)
    rc = subprocess.run([ATTNSIM, "kernels", *SMALL, "--out", "existing.h5"], cwd=d,
                        capture_output=True, env=env)
    assert rc.returncode == 0, rc.stderr.decode()
    import h5py
    with h5py.File(os.path.join(d, "foreign.h5"), "w") as f:
        f.attrs["schema"] = "someone-else/3"
        f["x"] = [1, 2, 3]
    with open(os.path.join(d, "notes.txt"), "w") as f:
        f.write("not hdf5\n")
    shutil.copy(os.path.join(d, "existing.h5"), os.path.join(d, "readonly.h5"))
    # a crafted file on which HDF5 1.10 loops forever (found by tests/fuzz/fuzz_h5.c)
    shutil.copy(os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "hdf5-hang.h5"),
                os.path.join(d, "hang.h5"))
    os.chmod(os.path.join(d, "readonly.h5"), 0o444)
    shutil.copy(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "models",
                             "machines", "dgx-h100.machine"), os.path.join(d, "readonly.machine"))
    os.chmod(os.path.join(d, "readonly.machine"), 0o444)
    os.link(os.path.join(d, "existing.h5"), os.path.join(d, "hardlink.machine"))
    os.mkfifo(os.path.join(d, "pipe"))


def main():
    failures = 0
    version = subprocess.run([ATTNSIM, "--version"], capture_output=True, text=True).stdout
    gpu = "GPU 0:" in version
    with tempfile.TemporaryDirectory() as d:
        setup(d)
        before = snapshot(d)
        for args, must in CASES:
            if gpu and "cuda" in args and args[0] in ("kernels", "calibrate"):
                print(f"skip attnsim {' '.join(args)}: a GPU is usable here")
                continue
            musts = must if isinstance(must, tuple) else (must,)
            argv = []
            for a in args:
                argv += ["--out", "new.h5"] if a == "+out" else [a]
            p = subprocess.run([ATTNSIM, *argv], cwd=d, capture_output=True, timeout=60)
            err = p.stderr.decode(errors="replace")
            problems = []
            if p.returncode != 2:
                problems.append(f"exit status {p.returncode}, want 2")
            if err.count("\n") != 1 or not err.endswith("\n"):
                problems.append(f"stderr is not one line: {err!r}")
            if not any(m in err for m in musts):
                problems.append(f"stderr lacks {' or '.join(map(repr, musts))}: {err!r}")
            if ("accepted" not in err and "see 'attnsim" not in err and "needs a value" not in err):
                problems.append(f"stderr does not say what is accepted: {err!r}")
            if p.stdout:
                problems.append(f"stdout not empty: {p.stdout[:200]!r}")
            after = snapshot(d)
            if after != before:
                changed = sorted(set(after.items()) ^ set(before.items()))
                problems.append(f"directory changed: {changed}")
            status = "ok  " if not problems else "FAIL"
            print(f"{status} attnsim {' '.join(argv)}\n     -> {err.strip()}")
            for pr in problems:
                print(f"     {pr}")
            failures += bool(problems)
    print(f"cli_errors: {len(CASES)} cases, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
