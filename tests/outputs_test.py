#!/usr/bin/env python3
"""Output paths that are accepted: calibrate --machine-out replaces an existing machine file by
rename (the new text whole, the old file's permission bits kept, no temporary left behind, a
symbolic link kept and its target replaced), and the file reads back with --machine; a path
with a control character is printed as one line (escaped) in the summary.
Usage: outputs_test.py ATTNSIM"""
import os
import stat
import subprocess
import sys
import tempfile

ATTNSIM = os.path.abspath(sys.argv[1])
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
PRESET = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "models", "machines",
                      "dev-h100.machine")


def run(args, cwd):
    return subprocess.run([ATTNSIM, *args], cwd=cwd, capture_output=True, text=True, env=ENV,
                          timeout=300)


def main():
    problems = []

    def check(ok, what):
        print(f"{'ok  ' if ok else 'FAIL'} {what}")
        if not ok:
            problems.append(what)

    with tempfile.TemporaryDirectory() as d:
        old = open(PRESET).read()
        for name in ("cal.machine", "target.machine"):
            with open(os.path.join(d, name), "w") as f:
                f.write(old)
        os.chmod(os.path.join(d, "cal.machine"), 0o640)
        os.symlink("target.machine", os.path.join(d, "link.machine"))
        cal = ["calibrate", "--max-message", "4k"]
        p = run(cal + ["--machine-out", "cal.machine", "--out", "cal.h5"], d)
        check(p.returncode == 0, f"calibrate over an existing machine file: status {p.returncode} "
              f"{p.stderr.strip()[-300:]}")
        text = open(os.path.join(d, "cal.machine")).read()
        check(text.startswith("# Written by attnsim calibrate") and text != old,
              "the machine file was replaced by the calibrated one")
        check(stat.S_IMODE(os.stat(os.path.join(d, "cal.machine")).st_mode) == 0o640,
              "its permission bits were kept")
        check(run(["model", "--machine", "cal.machine", "--procs", "4"], d).returncode == 0,
              "it reads back with --machine")
        p = run(cal + ["--machine-out", "link.machine"], d)
        check(p.returncode == 0 and os.path.islink(os.path.join(d, "link.machine")) and
              open(os.path.join(d, "target.machine")).read().startswith("# Written by attnsim"),
              "through a symbolic link: the link stays, its target is replaced")
        leftovers = [n for n in os.listdir(d) if "attnsim-tmp" in n]
        check(not leftovers, f"no temporary left behind: {leftovers}")

        # a newline in --out: the file is written under that very name, the summary stays one
        # line per statement
        name = "two\nlines.h5"
        p = run(["kernels", "--kernel", "fa2", "--pass", "fwd", "--seq", "16", "--heads", "1",
                 "--head-dim", "16", "--sram", "1k", "--out", name], d)
        wrote = [l for l in p.stdout.splitlines() if l.startswith("# wrote")]
        check(p.returncode == 0 and os.path.exists(os.path.join(d, name)) and
              wrote == ["# wrote 1 runs to two\\nlines.h5"] and
              not any(l.startswith("lines.h5") for l in p.stdout.splitlines()),
              f"a newline in --out is printed escaped: {wrote}")
    print(f"outputs_test: {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
