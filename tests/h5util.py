"""Checks shared by the HDF5 tests (h5_crash.py, h5_files.py, run_faults.py) and the scale
benchmark (experiments/h5-scale/): a file's content as bytes, and the invariants every attnsim
file keeps whatever happened to its writer."""
import subprocess

import h5py
import numpy as np


def as_bytes(v):
    if isinstance(v, (str, bytes)):
        return v.encode() if isinstance(v, str) else v
    a = np.asarray(v)
    if a.dtype == object:  # variable-length strings: the text, not the pointers
        return b"\0".join(x.encode() if isinstance(x, str) else bytes(x) for x in a.ravel())
    return a.tobytes() + str(a.dtype).encode() + str(a.shape).encode()


def dump(path, runs=None):
    """Every attribute and dataset of the file (or of the named runs and the root), as bytes,
    keyed by path; the rows of /summary one by one (the table grows, rows must not change)."""
    out = {}
    with h5py.File(path, "r") as f:
        def attrs(name, obj):
            for k, v in obj.attrs.items():
                out[f"{name}@{k}"] = as_bytes(v)

        def visit(name, obj):
            attrs(name, obj)
            if isinstance(obj, h5py.Dataset):
                if name == "summary":
                    for i, row in enumerate(obj[()]):
                        out[f"summary[{i}]"] = row.tobytes()
                else:
                    out[name] = as_bytes(obj[()])
        attrs("/", f)
        if runs is None:
            f.visititems(visit)
        else:
            visit("summary", f["summary"])
            for r in runs:
                g = f["runs"][r]
                attrs(f"runs/{r}", g)
                g.visititems(lambda n, o, r=r: visit(f"runs/{r}/{n}", o))
    return out


def consistent(path, datasets=(), light=False):
    """Problems of the file: h5dump and h5py open it; every run in /runs is complete and listed
    once in /summary, in order; each run has `datasets`. h5dump reads every header, or with
    light (large files) the root, /summary and the newest run. Returns (problems, runs)."""
    problems = []
    r = subprocess.run(["h5dump", "-H", path] if not light else
                       ["h5dump", "-a", "/schema", "-d", "/summary", path], capture_output=True)
    if r.returncode != 0:
        problems.append(f"h5dump fails: {r.stderr.decode()[:300]}")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        return problems + [f"h5py cannot open it: {e}"], 0
    with f:
        if f.attrs.get("schema") != "attnsim/1":
            problems.append("schema attribute lost")
        runs = sorted(f["runs"].keys())
        ids = [int(x) for x in f["summary"]["run"]]
        if ids != [int(x) for x in runs]:
            problems.append(f"/summary lists {ids[:8]}..., /runs has {runs[:8]}...")
        for name in runs:
            g = f["runs"][name]
            if g.attrs.get("complete") != 1:
                problems.append(f"run {name} is not complete")
            for ds in datasets:
                if ds not in g:
                    problems.append(f"run {name} lacks {ds}")
    if light and runs:
        r = subprocess.run(["h5dump", "-g", f"/runs/{runs[-1]}", path], capture_output=True)
        if r.returncode != 0:
            problems.append(f"h5dump fails on run {runs[-1]}: {r.stderr.decode()[:300]}")
    return problems, len(runs)


def unchanged(before, after):
    """Keys of `before` missing or changed in `after`."""
    missing = [k for k in before if k not in after]
    changed = [k for k in before if k in after and before[k] != after[k]]
    return missing, changed
