#!/usr/bin/env python3
"""Bad machine files: each gets one line on stderr naming the file, the line, the key and what
is accepted, exit status 2, and nothing written (attnsim model --machine FILE --out new.h5);
values outside the documented ranges and text that is not printable UTF-8 likewise. A FIFO, a
device or a directory as --machine is refused at once (model, run, calibrate). Every preset's
recorded description (a run's machine_description) reads back with --machine.
Usage: machine_errors.py ATTNSIM PRESET_FILE"""
import os
import subprocess
import sys
import tempfile

ATTNSIM, PRESET = os.path.abspath(sys.argv[1]), sys.argv[2]
GOOD = open(PRESET).read()


def replace(key, new_line):
    out = []
    for line in GOOD.splitlines():
        if line.split("=")[0].strip() == key:
            if new_line is not None:
                out.append(new_line)
        else:
            out.append(line)
    return "\n".join(out) + "\n"


def line_of(text, fragment):
    for i, line in enumerate(text.splitlines(), 1):
        if fragment in line:
            return i
    return None


CASES = [  # (file text, text the message must contain)
    (GOOD + "color = blue\n", "'color' is not a key of a machine description; accepted keys: name, gpu"),
    (replace("inter_alpha", None), "key 'inter_alpha' is missing"),
    (replace("hbm_bandwidth", "hbm_bandwidth = 3.35 TB"), "key 'hbm_bandwidth': unit 'TB' is not accepted; accepted units: B/s"),
    (replace("intra_alpha", "intra_alpha = 5"), "key 'intra_alpha': '5' has no unit; accepted units: s, ms, us, ns"),
    (replace("sms", "sms = -132"), "key 'sms': -132 must be positive"),
    (replace("gpus_per_node", "gpus_per_node = 0"), "key 'gpus_per_node': 0 must be positive"),
    (replace("intra_alpha", "intra_alpha = -5 us"), "key 'intra_alpha': -5 us must be zero or positive"),
    (replace("l2", "l2 = lots MiB"), "key 'l2': 'lots MiB' is not a number"),
    (replace("sustained_fraction", "sustained_fraction = 1.5"), "key 'sustained_fraction': 1.5 is above 1; accepted: a fraction in (0, 1]"),
    (GOOD + "sms = 100\n", "key 'sms' appears twice"),
    (GOOD + "sms 132\n", "is not 'key = value'"),
    (replace("sms", "sms = 131.5"), "key 'sms': '131.5' is not a whole number"),
    (replace("gpu", "gpu ="), "key 'gpu' has no value"),
    (replace("gpus_per_nic", "gpus_per_nic = 16"), "key 'gpus_per_nic': 16 GPUs per NIC but 8 per node"),
    (replace("sustained_fraction", "sustained_fraction = 0.5 s"), "has trailing 's'; accepted: a plain number"),
    (replace("peak_bf16", "peak_bf16 = inf TFLOP/s"), "key 'peak_bf16': 'inf TFLOP/s' is not a number"),
    (replace("peak_f16", "peak_f16 = nan TFLOP/s"), "key 'peak_f16': 'nan TFLOP/s' is not a number"),
    (replace("hbm_bandwidth", "hbm_bandwidth = 3.35 tb/s"), "unit 'tb/s' is not accepted"),
    ("", "key 'name' is missing"),
    ("# only a comment\n\n", "key 'name' is missing"),
    (replace("inter_bandwidth", "inter_bandwidth = 50 GB/s extra"), "unit 'GB/s extra' is not accepted"),
    (replace("name", "name = " + "x" * 80), "key 'name': value longer than 63 characters"),
    (GOOD + "intra_break = 64 KiB\nintra_large_alpha = 20 us\n", "keys 'intra_break', 'intra_large_alpha' and 'intra_large_bandwidth' go together"),
    (GOOD + "measured_tiers = both\n", "key 'measured_tiers': 'both' is not accepted; accepted: intra, inter, intra+inter, none"),
    (replace("kernel_overhead", "kernel_overhead = 3"), "key 'kernel_overhead': '3' has no unit"),
    (GOOD + "link.intra.allgather.g2.alpha = 3 us\n", "pattern line link.intra.allgather.g2 has no bandwidth"),
    (GOOD + "link.intra.gather.alpha = 3 us\n", "'link.intra.gather.alpha' is not a pattern line; accepted: link.TIER.PATTERN"),
    (GOOD + "link.intra.ring_shift.g4.bandwidth = 9 GB\n", "key 'link.intra.ring_shift.g4.bandwidth': unit 'GB' is not accepted"),
    (GOOD + "overlap.inter.hidden = 2\n", "key 'overlap.inter.hidden': 2 is outside [0, 1]"),
    # values that overflow or leave the documented ranges (docs/machine.md, "Ranges")
    (replace("hbm_bandwidth", "hbm_bandwidth = 1e300 TB/s"),
     "key 'hbm_bandwidth': 1e300 TB/s is out of range; accepted: 1 kB/s to 1000 TB/s"),
    (replace("inter_alpha", "inter_alpha = 1e308 s"),
     "key 'inter_alpha': 1e308 s is out of range; accepted: 0.001 ns to 10 s"),
    (replace("intra_bandwidth", "intra_bandwidth = 1e-300 B/s"), "key 'intra_bandwidth': 1e-300 B/s is out of range"),
    (replace("peak_bf16", "peak_bf16 = 1e30 PFLOP/s"), "key 'peak_bf16': 1e30 PFLOP/s is out of range"),
    (replace("l2", "l2 = 1e300 GiB"), "key 'l2': 1e300 GiB is out of range; accepted: 1 B to 1024 GiB"),
    (replace("gpus_per_node", "gpus_per_node = 1e15"), "key 'gpus_per_node': 1e15 is out of range; accepted: 1 to 1048576"),
    (GOOD + "backward_rate_ratio = 1e9\n", "key 'backward_rate_ratio': 1e9 is out of range; accepted: 0.001 to 1000"),
    # text that is not printable UTF-8
    (replace("name", "name = caf\udce9"), "key 'name': the value is not printable UTF-8 text"),
    (replace("gpu", "gpu = H100\x1b[31m"), "key 'gpu': the value is not printable UTF-8 text"),
]


def main():
    failures = 0
    with tempfile.TemporaryDirectory() as d:
        for i, (text, must) in enumerate(CASES):
            path = os.path.join(d, f"bad{i}.machine")
            with open(path, "wb") as f:  # surrogate escapes stand for raw (non-UTF-8) bytes
                f.write(text.encode("utf-8", "surrogateescape"))
            p = subprocess.run([ATTNSIM, "model", "--procs", "4", "--machine", path, "--out",
                                os.path.join(d, "new.h5")], capture_output=True, text=True, errors="replace",
                               timeout=60)
            problems = []
            if p.returncode != 2:
                problems.append(f"status {p.returncode}")
            if p.stderr.count("\n") != 1:
                problems.append(f"not one line: {p.stderr!r}")
            if must not in p.stderr:
                problems.append(f"lacks {must!r}")
            if path not in p.stderr:
                problems.append("does not name the file")
            if "missing" not in must and "go together" not in must:
                # line-level errors name the line: FILE:LINE
                import re
                if not re.search(re.escape(path) + r":\d+: ", p.stderr):
                    problems.append("does not name the line")
            if p.stdout or os.path.exists(os.path.join(d, "new.h5")):
                problems.append("something was written")
            print(f"{'ok  ' if not problems else 'FAIL'} {p.stderr.strip()}")
            for pr in problems:
                print("     " + pr)
            failures += bool(problems)
        # a path that is neither a preset nor a file
        p = subprocess.run([ATTNSIM, "model", "--machine", os.path.join(d, "nope.machine")],
                           capture_output=True, text=True, errors="replace")
        ok = p.returncode == 2 and "neither a preset nor a readable file" in p.stderr and \
            "dgx-h100" in p.stderr and p.stderr.count("\n") == 1
        print(f"{'ok  ' if ok else 'FAIL'} {p.stderr.strip()}")
        failures += not ok
        # not a regular file: refused at once, never read (a FIFO without a writer would block)
        fifo = os.path.join(d, "pipe.machine")
        os.mkfifo(fifo)
        env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
        # --machine and --profile (model and run read one) alike; run and calibrate as MPI
        # singletons
        for opt, cmds, accepted in (
                ("--machine", ("model", "run", "calibrate"),
                 "accepted: a preset name or a regular machine file"),
                ("--profile", ("model", "run"),
                 "accepted: a profile preset or a regular profile file")):
            for cmd in cmds:
                for path, kind in ((fifo, "a FIFO (named pipe)"),
                                   ("/dev/zero", "a character device"), (d, "a directory")):
                    out = os.path.join(d, "new.h5")
                    try:
                        p = subprocess.run([ATTNSIM, cmd, opt, path, "--out", out],
                                           capture_output=True, text=True, timeout=30, env=env)
                        ok = p.returncode == 2 and p.stderr.count("\n") == 1 and \
                            f"{opt}: '{path}' is {kind}; {accepted}" in p.stderr and \
                            not os.path.exists(out)
                        got = p.stderr.strip()
                    except subprocess.TimeoutExpired:
                        ok, got = False, "no answer within 30 s (it waits on the file)"
                    print(f"{'ok  ' if ok else 'FAIL'} {cmd} {opt} {path}: {got}")
                    failures += not ok
        # every recorded machine description (the machine_description of each run, for every
        # preset) reads back with --machine and predicts the same
        presets = sorted(f[:-8] for f in os.listdir(os.path.dirname(PRESET))
                         if f.endswith(".machine"))
        import h5py
        for name in presets:
            h5 = os.path.join(d, f"rec-{name}.h5")
            args = ["model", "--procs", "4,64", "--seq", "8k", "--pass", "train"]
            first = subprocess.run([ATTNSIM, *args, "--machine", name, "--out", h5],
                                   capture_output=True, text=True, errors="replace")
            ok = first.returncode == 0
            if ok:
                with h5py.File(h5, "r") as f:
                    texts = {g.attrs["machine_description"] for g in f["runs"].values()}
                ok = len(texts) == 1
                rec = os.path.join(d, f"rec-{name}.machine")
                with open(rec, "w") as f:
                    f.write(texts.pop())
                again = subprocess.run([ATTNSIM, *args, "--machine", rec],
                                       capture_output=True, text=True, errors="replace")
                rows = lambda out: [l for l in out.splitlines() if not l.startswith("#")]
                ok = ok and again.returncode == 0 and rows(again.stdout) == rows(first.stdout) \
                    and rows(first.stdout)
            print(f"{'ok  ' if ok else 'FAIL'} preset {name}: the recorded description reads back "
                  "and predicts the same")
            failures += not ok
        # the good file itself is accepted
        p = subprocess.run([ATTNSIM, "model", "--procs", "4", "--machine", PRESET],
                           capture_output=True, text=True, errors="replace")
        ok = p.returncode == 0
        print(f"{'ok  ' if ok else 'FAIL'} the preset file itself parses")
        failures += not ok
    print(f"machine_errors: {len(CASES) + 8 + len(presets)} cases, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
