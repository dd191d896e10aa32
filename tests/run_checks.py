"""What every executed run in an attnsim/1 file must satisfy (shared by the run tests):
measured == predicted bytes, bytes received and messages on every rank and phase, the check
and the counts recorded as passed, as many bytes received as sent, and the per-peer matrix
agreeing with the per-phase counts."""
import h5py
import numpy as np


def check_runs(path, label, attrs=None):
    """Checks every run of the file; attrs: {name: value} every run must also carry.
    Returns (runs checked, problems)."""
    problems, total = [], 0
    with h5py.File(path, "r") as f:
        for name, g in f["runs"].items():
            total += 1
            for k in ("bytes_sent", "bytes_recv", "messages"):
                if not np.array_equal(g[f"measured/{k}"][()], g[f"predicted/{k}"][()]):
                    problems.append(f"{label} run {name}: measured/{k} != predicted/{k}")
            if g.attrs["check_passed"] != 1 or g.attrs["counts_match"] != 1:
                problems.append(f"{label} run {name}: check or counts failed")
            sent = g["measured/bytes_sent"][()].sum()
            if sent != g["measured/bytes_recv"][()].sum():
                problems.append(f"{label} run {name}: bytes sent != received")
            if sent != g["measured/peer_bytes_sent"][()].sum():
                problems.append(f"{label} run {name}: peer matrix disagrees with phases")
            for key, want in (attrs or {}).items():
                got = g.attrs[key]
                got = got.decode() if isinstance(got, bytes) else str(got)
                if got != want:
                    problems.append(f"{label} run {name}: {key} = {got}, want {want}")
    return total, problems
