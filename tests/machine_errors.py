#!/usr/bin/env python3
"""Bad machine files: each gets one line on stderr naming the file, the line, the key and what
is accepted, exit status 2, and nothing written (attnsim model --machine FILE --out new.h5).
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
    (GOOD + "kernel_overhead = 3\n", "key 'kernel_overhead': '3' has no unit"),
]


def main():
    failures = 0
    with tempfile.TemporaryDirectory() as d:
        for i, (text, must) in enumerate(CASES):
            path = os.path.join(d, f"bad{i}.machine")
            with open(path, "w") as f:
                f.write(text)
            p = subprocess.run([ATTNSIM, "model", "--procs", "4", "--machine", path, "--out",
                                os.path.join(d, "new.h5")], capture_output=True, text=True)
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
                           capture_output=True, text=True)
        ok = p.returncode == 2 and "neither a preset nor a readable file" in p.stderr and \
            "dgx-h100" in p.stderr and p.stderr.count("\n") == 1
        print(f"{'ok  ' if ok else 'FAIL'} {p.stderr.strip()}")
        failures += not ok
        # the good file itself is accepted
        p = subprocess.run([ATTNSIM, "model", "--procs", "4", "--machine", PRESET],
                           capture_output=True, text=True)
        ok = p.returncode == 0
        print(f"{'ok  ' if ok else 'FAIL'} the preset file itself parses")
        failures += not ok
    print(f"machine_errors: {len(CASES) + 2} cases, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
