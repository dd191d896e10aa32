#!/usr/bin/env python3
"""plots/plot_kernels.py turns a kernels file into a PNG, and refuses a file of another schema
(and a file that is not HDF5) with one clear line and exit status 2.
Usage: plot_kernels_test.py ATTNSIM PLOT_SCRIPT"""
import os
import subprocess
import sys
import tempfile

import h5py

ATTNSIM, SCRIPT = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])


def main():
    problems = []
    with tempfile.TemporaryDirectory() as d:
        h5 = os.path.join(d, "k.h5")
        subprocess.run([ATTNSIM, "kernels", "--seq", "64,128,256", "--head-dim", "16",
                        "--sram", "1k", "--heads", "1", "--out", h5], check=True,
                       capture_output=True)
        png = os.path.join(d, "k.png")
        r = subprocess.run([sys.executable, SCRIPT, h5, "-o", png], capture_output=True, text=True)
        if r.returncode != 0:
            problems.append(f"plot failed: {r.stderr}")
        elif not os.path.exists(png):
            problems.append("no PNG written")
        else:
            with open(png, "rb") as f:
                head = f.read(8)
            if head != b"\x89PNG\r\n\x1a\n" or os.path.getsize(png) < 10000:
                problems.append(f"not a real PNG: {head!r}, {os.path.getsize(png)} bytes")
        foreign = os.path.join(d, "foreign.h5")
        with h5py.File(foreign, "w") as f:
            f.attrs["schema"] = "other/2"
        text = os.path.join(d, "notes.txt")
        with open(text, "w") as f:
            f.write("hello\n")
        for bad, must in ((foreign, "is not an attnsim/1 file"), (text, "cannot open")):
            r = subprocess.run([sys.executable, SCRIPT, bad, "-o", os.path.join(d, "x.png")],
                               capture_output=True, text=True)
            if r.returncode != 2 or must not in r.stderr or r.stderr.count("\n") != 1:
                problems.append(f"{bad}: status {r.returncode}, stderr {r.stderr!r}")
            if os.path.exists(os.path.join(d, "x.png")):
                problems.append(f"{bad}: a PNG was written")
    for p in problems:
        print("FAIL", p)
    print(f"plot_kernels_test: {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
