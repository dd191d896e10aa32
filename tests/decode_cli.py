#!/usr/bin/env python3
"""`attnsim kernels --decode` on the cpu backend, end to end: the C reference schedules of the
three schemes on ragged-tile shapes (cache lengths not multiples of the tile, g = 20 query heads
per KV head: two head groups), checked against the float64 reference, written to HDF5; every run
must be complete, checked, with counted bytes equal to the plan's, K+V bytes as the shape
implies, and all three schemes must be there. Usage: decode_cli.py ATTNSIM."""
import os
import subprocess
import sys
import tempfile

import h5py

attnsim = os.path.abspath(sys.argv[1])
fails = 0


def expect(cond, what):
    global fails
    if not cond:
        fails += 1
        print("FAIL", what)


with tempfile.TemporaryDirectory() as d:
    out = os.path.join(d, "dec.h5")
    B, H, HKV, D, SEQS = 3, 20, 1, 64, (100, 1000)
    cmd = [attnsim, "kernels", "--decode", "--seq", ",".join(map(str, SEQS)), "--batch", str(B),
           "--heads", str(H), "--kv-heads", str(HKV), "--head-dim", str(D), "--dtype", "bf16,f32",
           "--check", "--slots", "7", "--out", out]
    p = subprocess.run(cmd, capture_output=True, text=True)
    print(p.stdout)
    expect(p.returncode == 0, f"exit status {p.returncode}: {p.stderr}")
    expect("VALID" in p.stdout and "INVALID" not in p.stdout, "summary line says VALID")
    with h5py.File(out) as f:
        runs = [f["runs"][k] for k in sorted(f["runs"])]
        expect(len(runs) == 2 * len(SEQS) * 3, f"{len(runs)} runs, want {2 * len(SEQS) * 3}")
        algos = set()
        for g in runs:
            a = g.attrs
            algos.add(a["algorithm"])
            n, dt = int(a["seq_len_kv"]), a["dtype"]
            eb = 2 if dt == "bf16" else 4
            expect(a["kind"] == "kernel" and a["pass"] == "decode" and int(a["complete"]) == 1,
                   f"run {g.name}: kind/pass/complete")
            expect(int(a["check_passed"]) == 1, f"run {g.name}: check failed")
            expect(int(a["counts_match"]) == 1, f"run {g.name}: counts differ")
            expect(g["measured/hbm_bytes_read"][()] == g["predicted/hbm_bytes_read"][()],
                   f"run {g.name}: read bytes differ")
            expect(g["measured/hbm_bytes_written"][()] == g["predicted/hbm_bytes_written"][()],
                   f"run {g.name}: written bytes differ")
            kv = 2 * B * HKV * n * D * eb
            expect(float(a["kv_bytes"]) == kv, f"run {g.name}: kv_bytes {a['kv_bytes']} != {kv}")
            # every K/V byte is read once per head group (g = 20 -> 2 groups) at least
            expect(g["measured/hbm_bytes_read"][()] >= 2 * kv,
                   f"run {g.name}: read fewer bytes than two head groups of K/V")
            expect(int(a["slots"]) == 7, f"run {g.name}: slots {a['slots']}")
        expect(algos == {"fa2-decode", "flash-decoding", "lean"}, f"algorithms {algos}")
print("decode_cli:", "FAILED" if fails else "ok")
sys.exit(1 if fails else 0)
