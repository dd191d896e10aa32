#!/usr/bin/env python3
"""How long the plot scripts take on a large file (a benchmark: it prints figures, asserts only
that the scripts succeed). Writes FILE with a few executed runs (mpirun -n 2 attnsim run) and
RUNS model runs - a real `attnsim model` run cloned with h5py, each listed in /summary with its
own configuration (4 algorithms x 25 P x RUNS/100 N) - then times plots/model_error.py and
plots/gallery.py on it, and on the same file before the clones for comparison.
Usage: plot_scale.py ATTNSIM PLOTS_DIR [RUNS] [FILE]   (RUNS default 100000)"""
import os
import subprocess
import sys
import tempfile
import time

import h5py
import numpy as np

ATTNSIM, PLOTS = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
RUNS = int(sys.argv[3]) if len(sys.argv) > 3 else 100000
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")


def timed(cmd):
    t0 = time.time()
    r = subprocess.run(cmd, capture_output=True, text=True, env=ENV)
    if r.returncode != 0:
        raise SystemExit(f"FAIL {' '.join(cmd)}: {r.returncode}\n{r.stdout[-800:]}{r.stderr}")
    return time.time() - t0


def grow(path, runs):
    """Clones the file's model run until /runs holds `runs` more, each with a /summary row of
    its own configuration."""
    with h5py.File(path, "a") as f:
        s = f["summary"]
        rows = s[()]
        model = [i for i, r in enumerate(rows) if r["kind"] == b"model"][0]
        template, base = rows[model], len(f["runs"])
        src = f["runs"][f"{int(template['run']):06d}"]
        new = np.repeat(template[np.newaxis], runs, axis=0)
        algos = [b"ring", b"a2d-no", b"a2d-o", b"ulysses"]
        ps = [2 ** (k % 13) * (1 + k // 13) for k in range(25)]
        for i in range(runs):
            new[i]["run"] = base + i
            new[i]["algorithm"] = algos[i % 4]
            new[i]["P"] = ps[(i // 4) % 25]
            new[i]["seq_len"] = new[i]["seq_len_kv"] = 1024 * (1 + i // 100)
        t0 = time.time()
        runs_g = f["runs"]
        for i in range(runs):
            f.copy(src, runs_g, name=f"{base + i:06d}")
        s.resize((len(rows) + runs,))
        s[len(rows):] = new
        return time.time() - t0


def main():
    with tempfile.TemporaryDirectory() as d:
        path = sys.argv[4] if len(sys.argv) > 4 else os.path.join(d, "large.h5")
        if os.path.exists(path):
            os.remove(path)
        subprocess.run(["mpirun", "-n", "2", "--oversubscribe", ATTNSIM, "run", "--algo",
                        "ring,a2d-no", "--grid", "auto", "--seq", "256", "--out", path],
                       check=True, capture_output=True, env=ENV)
        subprocess.run([ATTNSIM, "model", "--algo", "ring", "--procs", "16", "--seq", "32k",
                        "--rank-arrays", "1", "--out", path], check=True, capture_output=True)
        py = sys.executable
        small = (timed([py, os.path.join(PLOTS, "model_error.py"), path]),
                 timed([py, os.path.join(PLOTS, "gallery.py"), path, "-o",
                        os.path.join(d, "g0"), "--attnsim", ATTNSIM]))
        took = grow(path, RUNS)
        size = os.path.getsize(path)
        large = (timed([py, os.path.join(PLOTS, "model_error.py"), path]),
                 timed([py, os.path.join(PLOTS, "gallery.py"), path, "-o",
                        os.path.join(d, "g1"), "--attnsim", ATTNSIM]))
        print(f"# plot_scale: {RUNS + 3} runs, {size / 2**20:.0f} MiB (written in {took:.0f} s)")
        print(f"# {'script':16s} {'3 runs s':>9s} {f'{RUNS + 3} runs s':>12s}")
        for name, a, b in (("model_error.py", small[0], large[0]),
                           ("gallery.py", small[1], large[1])):
            print(f"  {name:16s} {a:9.2f} {b:12.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
