"""Reading attnsim/1 files (docs/hdf5-schema.md) for the plot scripts: the schema check, the
/summary table (one read for the whole file), and the groups of only the runs a figure draws.

    import attnsim_h5 as ah
    ah.ensure_python("my_plot")            # this Python has h5py/numpy, or re-exec one that has
    f = ah.open_file(path)                 # raises ah.FileError (one line) on a foreign file
    t = ah.summary(f)                      # numpy structured array, strings as str
    dist = t[t["kind"] == "distributed"]
    g = ah.group(f, dist["run"][0])        # /runs/NNNNNN of one run

The scripts in plots/ import it from their own directory (plots/ is put first on sys.path by
Python when a script there is run, from any working directory); code elsewhere adds plots/ to
sys.path first.
"""
import importlib.util
import os
import shutil
import subprocess
import sys

SCHEMA = "attnsim/1"
# the /summary columns this module relies on (docs/hdf5-schema.md); later columns are kept
COLUMNS = ("run", "kind", "algorithm", "pass", "dtype", "backend", "P", "grid_rows",
           "grid_cols", "seq_len", "seq_len_kv", "batch", "heads", "kv_heads", "head_dim",
           "causal", "check_passed", "measured_time_s", "predicted_time_s",
           "measured_bytes_max", "predicted_bytes_max")
_REEXEC = "ATTNSIM_PLOT_REEXEC"


class FileError(Exception):
    """A file that is not a readable attnsim/1 file; str(e) is one line for the user."""


def text(v):
    """An HDF5 string (attribute or element) as str."""
    if isinstance(v, bytes):
        return v.decode(errors="replace")
    return str(v)


def _pythons():
    """Other Python interpreters worth trying, best first (Debian and Ubuntu install h5py,
    numpy and matplotlib for /usr/bin/python3, which need not be the python3 on PATH)."""
    out = []
    for c in (os.environ.get("ATTNSIM_PYTHON"), "/usr/bin/python3", "/usr/local/bin/python3",
              shutil.which("python3")):
        # the same binary may run without the site packages (a venv, python3 -S): each is
        # probed, not compared
        if c and c not in out and os.path.isfile(c) and os.access(c, os.X_OK):
            out.append(c)
    return out


def ensure_python(prog, modules=("h5py", "numpy", "matplotlib")):
    """Returns when this Python can import `modules`. Otherwise re-executes the running script
    with the first other Python that can (once: the environment marks the re-execution), or
    prints one line saying what is missing and how to install it, and exits with status 2."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if not missing:
        return
    tried = []
    if os.environ.get(_REEXEC) != "1":
        probe = "import " + ", ".join(modules)
        for py in _pythons():
            tried.append(py)
            ok = subprocess.run([py, "-c", probe], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL).returncode == 0
            if ok:
                os.environ[_REEXEC] = "1"
                sys.stdout.flush()
                os.execv(py, [py, sys.argv[0], *sys.argv[1:]])
    others = f"; nor has {', '.join(tried)}" if tried else ""
    print(f"{prog}: {sys.executable} has no {', '.join(missing)}{others}; install them "
          f"(Debian/Ubuntu: apt-get install {' '.join('python3-' + m for m in modules)}, "
          f"for /usr/bin/python3; or: {sys.executable} -m pip install {' '.join(modules)})",
          file=sys.stderr)
    sys.exit(2)


def open_file(path):
    """The file opened read-only with h5py, its schema checked. Raises FileError."""
    import h5py
    if not os.path.isfile(path):
        why = "a directory" if os.path.isdir(path) else "no such file"
        raise FileError(f"cannot open '{path}' ({why}); accepted: an {SCHEMA} file")
    try:
        f = h5py.File(path, "r")
    except (OSError, ValueError) as e:
        why = " ".join(str(e).split())
        raise FileError(f"cannot open '{path}' as HDF5 ({why}); accepted: an {SCHEMA} file")
    schema = text(f.attrs.get("schema", ""))
    if schema != SCHEMA or "runs" not in f:
        f.close()
        raise FileError(f"'{path}' is not an {SCHEMA} file (schema = {schema!r}); accepted: a "
                        "file written by attnsim")
    return f


def group_name(run):
    """The group name of run number `run` under /runs."""
    return f"{int(run):06d}"


def group(f, run):
    """The group /runs/NNNNNN of run number `run`."""
    return f["runs"][group_name(run)]


def _row_from_group(g, dtype):
    """A /summary row built from a run's own attributes and scalars: for runs that a writer
    other than attnsim (the benchmark scripts, with h5py) added without a /summary row."""
    import numpy as np
    a = g.attrs
    row = np.zeros(1, dtype=dtype)

    def scalar(path, default):
        try:
            v = g[path][()]
            return float(v) if np.ndim(v) == 0 else default
        except (KeyError, TypeError, ValueError):
            return default

    for k in dtype.names:
        if k == "run":
            row[k] = int(g.name.rsplit("/", 1)[1])
        elif dtype[k].kind == "U":
            row[k] = text(a.get(k, ""))
        elif k == "seq_len_kv":
            row[k] = int(a.get("seq_len_kv", a.get("seq_len", 0)))
        elif k == "check_passed":
            row[k] = int(a.get("check_passed", -1))
        elif k == "measured_time_s":
            row[k] = scalar("measured/time_s", np.nan)
        elif k == "predicted_time_s":
            row[k] = scalar("predicted/time_s", np.nan)
        elif k.endswith("_bytes_max"):
            row[k] = -1
        elif dtype[k].kind in "iu":
            row[k] = int(a.get(k, 0))
        else:
            row[k] = float(a.get(k, np.nan))
    return row


def summary(f):
    """Every complete run of the file, one row each, as a numpy structured array with the
    /summary columns (strings decoded to str), in run order. One read of /summary; the groups of
    runs it does not list (written by other tools without a row) are read only when /runs holds
    more runs than /summary has rows."""
    import numpy as np
    if "summary" in f:
        raw = f["summary"][()]
        fields = [(k, f"U{max(1, raw.dtype[k].itemsize)}" if raw.dtype[k].kind == "S"
                   else raw.dtype[k]) for k in raw.dtype.names]
        table = np.empty(raw.shape, dtype=fields)
        for k in raw.dtype.names:
            table[k] = np.char.decode(raw[k], errors="replace") if raw.dtype[k].kind == "S" \
                else raw[k]
    else:
        fields = [(k, "U32" if k in ("kind", "algorithm", "pass", "dtype", "backend") else
                   ("f8" if k.endswith("_time_s") else "i8")) for k in COLUMNS]
        table = np.empty(0, dtype=fields)
    runs = f["runs"]
    if len(runs) > len(table):  # runs without a row: look at each name once
        listed = {group_name(r) for r in table["run"]}
        extra = []
        for name in runs:
            if name in listed:
                continue
            g = runs[name]
            if g.attrs.get("complete") == 1:  # without it: an unpublished copy, never read
                extra.append(_row_from_group(g, table.dtype))
        if extra:
            table = np.concatenate([table, *extra])
            table = table[np.argsort(table["run"], kind="stable")]
    return table


def read(g, path, default=None):
    """A dataset's value under group g, or default when it is absent."""
    return g[path][()] if path in g else default
