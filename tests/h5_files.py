#!/usr/bin/env python3
"""What attnsim does with the file an --out path names (docs/hdf5-schema.md, docs/reliability.md):

1. Damaged files are refused before any work (exit status 2, one line, the file untouched): a
   bit flip in a dataset's dimensions (caught by the object header's checksum), a dataset whose
   shape disagrees with its run, extra or duplicated /summary rows, a complete run /summary
   does not list, and foreign objects in /runs (a dataset, a group without `kind`, a soft
   link).
2. Locks are per file: a writer stopped (SIGSTOP) while it holds the lock of one file does not
   delay a writer of another file in the same directory; a writer of the same file says
   "waiting for FILE held by pid N on host H" after a second and gives up after --lock-timeout
   (exit status 1), the file untouched; resumed, the stopped writer finishes.
3. --out through a symlink (also a dangling one, or a chain) writes the file it names; the link
   stays; a writer through the link and one through the real path build one study.
4. An append-only (chattr +a) file or directory is refused before any work, nothing left
   behind (where the file system supports the attribute).
5. Two writers appending to one file at once, with a reader holding it open: every run of both
   is in the file, which validates; the reader keeps reading the version it opened.

Usage: h5_files.py ATTNSIM
"""
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from h5util import consistent, dump, unchanged  # noqa: E402

ATTNSIM = os.path.abspath(sys.argv[1])
MODEL = ["model", "--procs", "4,16", "--seq", "1k", "--algo", "ring,a2d-no"]
failures = 0


def report(ok, what, problems=()):
    global failures
    print(f"{'ok  ' if ok else 'FAIL'} {what}")
    for p in problems if not ok else ():
        print("     " + p)
    failures += not ok


def attnsim(*args, env=None, timeout=120):
    return subprocess.run([ATTNSIM, *args], capture_output=True, text=True, env=env,
                          timeout=timeout)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def dataspace_offset(path, dataset):
    """File offset of dims[0] in the dataspace message of a version-2 object header."""
    with h5py.File(path, "r") as f:
        addr = h5py.h5o.get_info(f[dataset].id).addr
    data = read(path)
    if data[addr:addr + 4] != b"OHDR":  # version 1: 16-byte prefix, 8-byte aligned messages
        p, end = addr + 16, addr + 16 + struct.unpack_from("<I", data, addr + 8)[0]
        while p + 8 <= end:
            mtype, msize = struct.unpack_from("<HH", data, p)
            if mtype == 0x01:
                return p + 8 + (8 if data[p + 8] == 1 else 4)
            p += 8 + msize
        raise AssertionError("no dataspace message")
    flags = data[addr + 5]
    p = addr + 6 + (16 if flags & 0x20 else 0) + (4 if flags & 0x10 else 0)
    size_len = 1 << (flags & 3)
    end = p + size_len + int.from_bytes(data[p:p + size_len], "little")
    p += size_len
    while p + 4 <= end:
        mtype, msize = data[p], struct.unpack_from("<H", data, p + 1)[0]
        body = p + 4 + (2 if flags & 0x04 else 0)
        if mtype == 0x01:
            version = data[body]
            return body + (8 if version == 1 else 4)
        p = body + msize
    raise AssertionError("no dataspace message")


def damaged_files(work):
    base = os.path.join(work, "base.h5")
    r = attnsim(*MODEL, "--out", base)
    assert r.returncode == 0, r.stderr

    def flip_dims(p):
        off = dataspace_offset(p, "runs/000001/predicted/bytes_sent")
        with open(p, "r+b") as f:
            f.seek(off)
            b = f.read(1)
            f.seek(off)
            f.write(bytes([b[0] ^ 0x02]))

    def wrong_shape(f):
        g = f["runs/000001/predicted"]
        del g["bytes_sent"]
        g["bytes_sent"] = np.zeros((16, 2), dtype=np.int64)

    def wrong_overlap_shape(f):
        g = f["runs/000001/predicted"]
        del g["phase_hidden_s"]
        g["phase_hidden_s"] = np.zeros(7)

    def set_rows(f, rows):  # /summary is contiguous: made anew (its row type, its attributes)
        old = f["summary"]
        attrs, tid = dict(old.attrs), old.id.get_type()
        del f["summary"]
        space = h5py.h5s.create_simple((len(rows),), (h5py.h5s.UNLIMITED,))
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_chunk((256,))
        s = h5py.Dataset(h5py.h5d.create(f.id, b"summary", tid, space, dcpl=dcpl))
        s[...] = rows
        for k, v in attrs.items():
            s.attrs[k] = v

    def extra_row(f):
        rows = f["summary"][()]
        row = rows[:1].copy()
        row["run"] = 999
        set_rows(f, np.concatenate([rows, row]))

    def duplicate_row(f):
        rows = f["summary"][()]
        set_rows(f, np.concatenate([rows, rows[:1]]))

    def missing_row(f):
        set_rows(f, f["summary"][()][:-1])

    def foreign_dataset(f):
        f["runs"]["000100"] = np.arange(3)

    def foreign_group(f):
        f["runs"].create_group("000100")

    def soft_link(f):
        f["runs"]["000100"] = h5py.SoftLink("/runs/000000")

    cases = [("a bit flip in a dataset's dimensions", flip_dims, "checksum"),
             ("a dataset whose shape disagrees with its run", wrong_shape, "has shape"),
             ("a per-phase overlap array of the wrong length", wrong_overlap_shape,
              "phase_hidden_s has shape"),
             ("an extra /summary row", extra_row, "names run 999"),
             ("a duplicated /summary row", duplicate_row, "twice"),
             ("a complete run /summary does not list", missing_row, "no row"),
             ("a dataset in /runs", foreign_dataset, "not a run"),
             ("a group without kind in /runs", foreign_group, "not a run"),
             ("a soft link in /runs", soft_link, "soft link")]
    for what, damage, says in cases:
        d = tempfile.mkdtemp(dir=work)
        path = os.path.join(d, "f.h5")
        shutil.copy(base, path)
        if damage is flip_dims:
            damage(path)
        else:
            with h5py.File(path, "a") as f:
                damage(f)
        before = read(path)
        r = attnsim(*MODEL, "--out", path)
        lines = r.stderr.strip().splitlines()
        problems = []
        if r.returncode != 2 or len(lines) != 1 or "is damaged" not in r.stderr or \
                says not in r.stderr:
            problems.append(f"status {r.returncode}: {r.stderr.strip()[:300]}")
        if read(path) != before:
            problems.append("the file changed")
        if os.listdir(d) != ["f.h5"]:
            problems.append(f"files left: {os.listdir(d)}")
        report(not problems, f"refused: {what}", problems)
    # and the intact file is accepted
    r = attnsim(*MODEL, "--out", base)
    report(r.returncode == 0 and consistent(base)[1] == 8, "the intact file is appended to",
           [r.stderr.strip()[:300]] if r.returncode else [])


def locks(work):
    d = tempfile.mkdtemp(dir=work)
    x, y = os.path.join(d, "x.h5"), os.path.join(d, "y.h5")
    for p in (x, y):
        assert attnsim(*MODEL, "--out", p).returncode == 0
    # writer A stops (SIGSTOP) while it holds the lock of x
    env = dict(os.environ, ATTNSIM_KILL_AT="h5:after_lock", ATTNSIM_KILL_SIGNAL="STOP")
    a = subprocess.Popen([ATTNSIM, *MODEL, "--out", x], env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True)
    try:
        t0 = time.time()
        while True:  # until it is stopped
            with open(f"/proc/{a.pid}/stat") as f:
                if f.read().split(")")[1].split()[0] == "T":
                    break
            if time.time() - t0 > 60:
                raise AssertionError("the writer never stopped")
            time.sleep(0.05)
        x_before = read(x)
        t0 = time.time()
        r = attnsim(*MODEL, "--out", y, timeout=60)
        took = time.time() - t0
        report(r.returncode == 0 and took < 20 and consistent(y)[1] == 8,
               f"a writer of another file in the same directory is not blocked ({took:.1f} s)",
               [r.stderr.strip()[:300]] if r.returncode else [])
        t0 = time.time()
        r = attnsim(*MODEL, "--lock-timeout", "2", "--out", x, timeout=60)
        took = time.time() - t0
        lines = [l for l in r.stderr.splitlines() if l.strip()]
        want = f"waiting for {x} held by pid {a.pid} on host {socket.gethostname()}"
        problems = []
        if r.returncode != 1 or not lines or want not in lines[0]:
            problems.append(f"status {r.returncode}, stderr {lines}")
        if len(lines) != 2 or "timed out after 2 s" not in lines[-1] or "--lock-timeout" not in \
                lines[-1]:
            problems.append(f"no timeout line: {lines}")
        if not 1.9 < took < 15:
            problems.append(f"gave up after {took:.1f} s")
        if read(x) != x_before or [f for f in os.listdir(d) if "attnsim-tmp" in f and
                                   str(a.pid) not in f]:
            problems.append(f"x changed or files left: {os.listdir(d)}")
        report(not problems, f"the same file: waits, says who holds it, gives up after "
               f"--lock-timeout 2 ({took:.1f} s)", problems)
    finally:
        os.kill(a.pid, signal.SIGCONT)
        a.wait(timeout=120)
    report(a.returncode == 0 and consistent(x)[1] == 8 and
           sorted(os.listdir(d)) == ["x.h5", "y.h5"],
           f"resumed, the stopped writer finishes (status {a.returncode}, files "
           f"{sorted(os.listdir(d))})")
    r = attnsim(*MODEL, "--lock-timeout", "-1", "--out", x)
    report(r.returncode == 2 and "--lock-timeout" in r.stderr and "accepted" in r.stderr,
           f"--lock-timeout -1 refused: {r.stderr.strip()[:120]}")
    before = read(x)
    r = attnsim(*MODEL, "--out", x, env=dict(os.environ, ATTNSIM_H5_BATCH_SECONDS="soon"))
    report(r.returncode == 2 and "ATTNSIM_H5_BATCH_SECONDS" in r.stderr and read(x) == before,
           f"a bad batch setting refused: {r.stderr.strip()[:120]}")


def symlinks(work):
    d = tempfile.mkdtemp(dir=work)
    real = os.path.join(d, "data", "study.h5")
    os.mkdir(os.path.dirname(real))
    link = os.path.join(d, "link.h5")
    os.symlink("data/study.h5", link)  # dangling: the target does not exist yet
    r = attnsim(*MODEL, "--out", link)
    problems = [] if r.returncode == 0 else [r.stderr.strip()[:300]]
    if not os.path.islink(link) or not os.path.isfile(real) or consistent(real)[1] != 4:
        problems.append(f"link {os.path.islink(link)}, target {os.path.isfile(real)}")
    report(not problems, "a dangling symlink: the file it names is created, the link stays",
           problems)
    chain = os.path.join(d, "chain.h5")
    os.symlink(link, chain)
    r1 = attnsim(*MODEL, "--out", chain)
    r2 = attnsim(*MODEL, "--out", real)
    n = consistent(real)[1]
    problems = [x.stderr.strip()[:200] for x in (r1, r2) if x.returncode]
    if not (os.path.islink(chain) and os.path.islink(link)) or n != 12:
        problems.append(f"{n} runs in the target, links kept: {os.path.islink(chain)}")
    leftovers = [f for f in os.listdir(d) if f not in ("data", "link.h5", "chain.h5")] + \
        [f for f in os.listdir(os.path.dirname(real)) if f != "study.h5"]
    if leftovers:
        problems.append(f"files left: {leftovers}")
    report(not problems, "a chain of links and the real path build one study (12 runs)",
           problems)


def append_only(work):
    d = tempfile.mkdtemp(dir=work)
    path = os.path.join(d, "f.h5")
    assert attnsim(*MODEL, "--out", path).returncode == 0
    if subprocess.run(["chattr", "+a", path], capture_output=True).returncode != 0:
        print("note: chattr +a is not permitted here (not root, or the file system has no such "
              "attribute): append-only cases not run")
        return
    try:
        before = read(path)
        r = attnsim(*MODEL, "--out", path)
        report(r.returncode == 2 and "append-only" in r.stderr and read(path) == before and
               os.listdir(d) == ["f.h5"],
               f"an append-only file is refused before any work: {r.stderr.strip()[:150]}",
               [f"status {r.returncode}, files {os.listdir(d)}"])
    finally:
        subprocess.run(["chattr", "-a", path])
    sub = os.path.join(d, "ao")
    os.mkdir(sub)
    subprocess.run(["chattr", "+a", sub], check=True)
    try:
        r = attnsim(*MODEL, "--out", os.path.join(sub, "new.h5"))
        report(r.returncode == 2 and "append-only" in r.stderr and os.listdir(sub) == [],
               f"a file in an append-only directory is refused: {r.stderr.strip()[:150]}",
               [f"status {r.returncode}, files {os.listdir(sub)}"])
    finally:
        subprocess.run(["chattr", "-a", sub])


def base_dump_runs(d):
    return sorted({k.split("/")[1].split("@")[0] for k in d if k.startswith("runs/")})


def concurrent(work):
    d = tempfile.mkdtemp(dir=work)
    path = os.path.join(d, "c.h5")
    assert attnsim(*MODEL, "--out", path).returncode == 0
    reader = h5py.File(path, "r")
    first = dump(path)
    env = dict(os.environ, ATTNSIM_H5_BATCH_SECONDS="0.05")
    sweep = ["model", "--procs", "16", "--algo", "ring,a2d-no,a2d-o,ulysses", "--head-dim", "64,128", "--causal=both", "--seq",
             ",".join(str(1024 + 32 * i) for i in range(100))]  # 1,600 runs each
    procs = [subprocess.Popen([ATTNSIM, *sweep, "--dtype", dt, "--out", path], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for dt in ("f32", "bf16")]
    during = len(reader["runs"])  # the reader keeps its version while they append
    for p in procs:
        p.wait(timeout=600)
    reader_runs = len(reader["runs"])
    reader.close()  # the library shares one open file per process: a new look needs it closed
    problems, n = consistent(path)
    if any(p.returncode for p in procs):
        problems += [p.stderr.read()[:300] for p in procs if p.returncode]
    if n != 4 + 2 * 1600:
        problems.append(f"{n} runs, expected {4 + 2 * 1600}")
    missing, changed = unchanged(first, dump(path, runs=sorted(base_dump_runs(first))))
    if missing or changed:
        problems.append(f"earlier runs changed: {missing[:3]} {changed[:3]}")
    if during != 4 or reader_runs != 4:
        problems.append(f"the open reader saw {reader_runs} runs")
    with h5py.File(path, "r") as f:
        kinds = {(r["dtype"], r["kind"]) for r in f["summary"][()]}
    if kinds != {(b"f32", b"model"), (b"bf16", b"model")}:
        problems.append(f"rows: {kinds}")
    r = attnsim(*MODEL, "--out", path)  # and the result validates
    if r.returncode:
        problems.append(r.stderr.strip()[:300])
    report(not problems, f"two writers at once and a reader: {n} runs", problems)


def index_growth(work):
    """Appending in place: /runs, a B-tree of symbol nodes whose right edge each batch copies,
    grows through several levels (8 names a node, 32 nodes a parent) over many small batches and
    three invocations, and the HDF5 library finds every run by name, in order, listed once in
    /summary. A file converted from the library's layout (chunked /summary, dense /runs) keeps
    its runs."""
    d = tempfile.mkdtemp(dir=work)
    path = os.path.join(d, "grow.h5")
    sweep = ["model", "--procs", "16", "--algo", "ring,a2d-no,a2d-o", "--head-dim", "64,128",
             "--causal=both"]
    problems, total = [], 0
    for nseq, dtypes, batch in ((1, "f32", "1"), (125, "f32,bf16", "700"),
                                (250, "f32,f16,bf16", "2500")):  # 1, 3,000 and 9,000 runs
        seq = ",".join(str(1024 + 8 * i + nseq) for i in range(nseq))
        one = ["--algo", "ring", "--head-dim", "64", "--causal=no"] if nseq == 1 else []
        r = attnsim(*sweep, "--seq", seq, "--dtype", dtypes, *one, "--out", path,
                    env=dict(os.environ, ATTNSIM_H5_BATCH=batch), timeout=300)
        if r.returncode:
            problems.append(r.stderr.strip()[:300])
        total += 1 if nseq == 1 else nseq * 12 * len(dtypes.split(","))
    with h5py.File(path, "r") as f:
        names = list(f["runs"])
        rows = f["summary"][()]
        rng = np.random.default_rng(3)
        for i in rng.choice(len(names), 200, replace=False):
            g = f["runs"][f"{i:06d}"]  # found by name through the B-tree
            if g.attrs["complete"] != 1 or rows[i]["seq_len"] != g.attrs["seq_len"]:
                problems.append(f"run {i:06d} disagrees with its row")
    if names != [f"{i:06d}" for i in range(total)]:
        problems.append(f"{len(names)} names, expected 000000..{total - 1:06d} in order")
    if list(rows["run"]) != list(range(total)):
        problems.append("summary rows are not the runs in order")
    r = subprocess.run(["h5dump", "-H", path], capture_output=True)
    if r.returncode:
        problems.append("h5dump cannot read the file")
    report(not problems, f"the index of /runs through many batches: {len(names)} runs", problems)


def direct_io(work):
    """A batch's runs go past the end with O_DIRECT where the file system takes it (page-aligned
    batches) and through the page cache with ATTNSIM_H5_BUFFERED=1: the two files read back
    alike, attribute for attribute and row for row, and so does a file appended to both ways."""
    d = tempfile.mkdtemp(dir=work)
    try:
        fd = os.open(os.path.join(d, "probe"), os.O_CREAT | os.O_WRONLY | os.O_DIRECT, 0o644)
        os.close(fd)
        direct = True
    except OSError:
        direct = False  # the writer falls back to the page cache: nothing to tell apart
    sweep = ["model", "--procs", "16", "--algo", "ring,a2d-o", "--head-dim", "64", "--seq",
             ",".join(str(1024 + 8 * i) for i in range(60))]  # 120 runs, batches of 50
    problems, dumps, addrs = [], {}, {}
    for mode in ("direct", "buffered", "mixed"):
        path = os.path.join(d, mode + ".h5")
        for k, part in enumerate((sweep[:-1] + ["1024,1032"], sweep)):  # 4 runs, then 120
            env = dict(os.environ, ATTNSIM_H5_BATCH="50")
            if mode == "buffered" or (mode == "mixed" and k == 0):
                env["ATTNSIM_H5_BUFFERED"] = "1"
            r = attnsim(*part, "--out", path, env=env)
            if r.returncode:
                problems.append(f"{mode}: {r.stderr.strip()[:300]}")
        p, n = consistent(path)
        problems += [f"{mode}: {x}" for x in p]
        if n != 124:
            problems.append(f"{mode}: {n} runs, expected 124")
        dumps[mode] = {k: v for k, v in dump(path).items()
                       if not k.endswith(("@creation_time", "@command_line", "@time_utc"))}
        with h5py.File(path, "r") as f:  # where each batch's first run lies
            addrs[mode] = [h5py.h5o.get_info(f["runs"][f"{i:06d}"].id).addr
                           for i in (4, 54, 104)]
    for mode in ("buffered", "mixed"):
        missing, changed = unchanged(dumps["direct"], dumps[mode])
        if missing or changed or len(dumps[mode]) != len(dumps["direct"]):
            problems.append(f"{mode} differs from direct: {missing[:3]} {changed[:3]}")
    if direct and any(a % 4096 for a in addrs["direct"]):
        problems.append(f"direct batches not page-aligned: run headers at {addrs['direct']}")
    report(not problems, f"O_DIRECT and page-cache batches alike ({'O_DIRECT taken' if direct else 'no O_DIRECT here'})", problems)


def main():
    if not shutil.which("h5dump"):
        print("h5dump not found: install hdf5-tools (tests/install-deps.sh does)")
        return 1
    work = tempfile.mkdtemp()
    try:
        for part in (damaged_files, locks, symlinks, append_only, concurrent, index_growth,
                     direct_io):
            try:
                part(work)
            except Exception as e:  # one part failing does not hide the others' results
                report(False, f"{part.__name__}: {type(e).__name__}: {e}")
    finally:
        subprocess.run(["chattr", "-R", "-a", work], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    print(f"h5_files: {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
