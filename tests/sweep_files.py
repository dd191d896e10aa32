#!/usr/bin/env python3
"""experiments/sweep.py, the reader of the studies' sweep files: every shipped sweep.conf and
every tiny sweep of the Slurm test parses; an unknown key, a key given twice, a bad value, a
missing required key, a line that is not `key = value` and a [section] each stop it with one
line on stderr naming the file, the line and the key with what is accepted, status 2 and nothing
on stdout; defaults are filled in and values come out shell-quoted for bash.
Usage: sweep_files.py REPO"""
import glob
import os
import subprocess
import sys
import tempfile

REPO = os.path.abspath(sys.argv[1])
PARSER = os.path.join(REPO, "experiments", "sweep.py")


def parse(study, path):
    return subprocess.run([sys.executable, PARSER, study, path], capture_output=True, text=True)


def main():
    problems = []
    shipped = glob.glob(os.path.join(REPO, "experiments", "*", "sweep.conf"))
    tiny = glob.glob(os.path.join(REPO, "tests", "slurm", "sweeps", "*.conf"))
    for path in shipped + tiny:
        study = (os.path.basename(os.path.dirname(path)) if path in shipped
                 else os.path.basename(path)[:-5])
        r = parse(study, path)
        if r.returncode != 0 or not r.stdout.startswith("declare -gA SWEEP_VALUES=("):
            problems.append(f"{path}: status {r.returncode}, {r.stderr!r}")
    if len(shipped) < 5:
        problems.append(f"only {len(shipped)} shipped sweep files found")
    base = "seq = 1k\nheads = 4\nhead_dim = 64\ndtype = f32\n"
    cases = [
        ("chek = yes\n", 5, "unknown key 'chek'; accepted: algos, backend"),
        ("causal = maybe\n", 5, "causal = 'maybe' is not accepted; causal takes one of yes, no, "
                                "both"),
        ("algos = ring,a2d\n", 5, "algos takes a comma list of ring, a2d-no, a2d-o, ulysses, "
                                   "hybrid"),
        ("seq = 2k\n", 5, "'seq' is given twice"),
        ("batch = 3x\n", 5, "batch = '3x' is not accepted; batch takes a positive count"),
        ("machine = nowhere.machine\n", 5, "machine takes a preset (a2d-paper-a100"),
        ("just words\n", 5, "'just words' is not a 'key = value' line"),
        ("[strong]\n", 5, "a [section] line"),
        ("backend = cpu\ncomm = nccl\n", 6, "comm = nccl needs backend = cuda"),
    ]
    with tempfile.TemporaryDirectory() as d:
        for extra, line, must in cases:
            path = os.path.join(d, "s.conf")
            with open(path, "w") as f:
                f.write(base + extra)
            r = parse("strong-scaling", path)
            want = f"{path} line {line}: " if "section" not in must else path
            if r.returncode != 2 or r.stdout or r.stderr.count("\n") != 1 or \
                    must not in r.stderr or want not in r.stderr:
                problems.append(f"{extra.strip()!r}: status {r.returncode}, {r.stderr!r}")
        path = os.path.join(d, "s.conf")
        with open(path, "w") as f:
            f.write("heads = 4\nhead_dim = 64\ndtype = f32\n")
        r = parse("strong-scaling", path)
        if r.returncode != 2 or "no 'seq' (required)" not in r.stderr:
            problems.append(f"missing seq: status {r.returncode}, {r.stderr!r}")
        # defaults filled in, comments and spaces around commas ignored, values quoted
        with open(path, "w") as f:
            f.write(base + "algos = ring, a2d-no   # two\nmachine = " +
                    os.path.join(REPO, "models", "machines", "dgx-h100.machine") + "\n")
        r = parse("strong-scaling", path)
        out = subprocess.run(["bash", "-c", r.stdout + "\necho ${SWEEP_VALUES[algos]}/"
                              "${SWEEP_VALUES[kv_heads]}/${SWEEP_VALUES[backend]}/"
                              "${SWEEP_VALUES[model_procs]}"], capture_output=True, text=True)
        if out.stdout.strip() != "ring,a2d-no/4/auto/1,4,16,64,256,1024":
            problems.append(f"values: {out.stdout!r} from {r.stdout!r} {r.stderr!r}")
    for p in problems:
        print("FAIL", p)
    print(f"sweep_files: {len(shipped) + len(tiny)} files, {len(cases) + 2} bad inputs, "
          f"{len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
