#!/usr/bin/env python3
"""Prints the predicted speedup of A2D-NO and A2D-O over Ring per configuration of an
attnsim/1 file of kind=model runs (experiments/paper-a2d/run.sh writes one)."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.realpath(__file__)), "..", "..", "plots"))
import attnsim_h5 as ah  # noqa: E402  (the one reader of attnsim/1 files)

MODELS = {(16, 96): "760M", (32, 80): "2.7B", (40, 128): "13B"}


def main(path):
    ah.ensure_python("summarize", ("h5py",))
    try:
        f = ah.open_file(path)
    except ah.FileError as e:
        print(f"summarize: {e}", file=sys.stderr)
        return 2
    with f:
        runs = {}
        for g in f["runs"].values():
            a = g.attrs
            key = (a["machine"], int(a["P"]), int(a["heads"]), int(a["head_dim"]), int(a["seq_len"]))
            runs.setdefault(key, {})[a["algorithm"]] = float(g["predicted/total_time_s"][()])
    print("# predicted training step of one attention layer (fwd + bwd), causal, bf16, batch 1")
    print(f"# {'cluster':16s} {'P':>3s} {'model':5s} {'N':>7s} {'ring_ms':>10s} {'a2d-no_ms':>10s} "
          f"{'a2d-o_ms':>10s} {'no/ring':>8s} {'o/ring':>7s}")
    best = {}
    for key in sorted(runs):
        machine, P, h, d, N = key
        t = runs[key]
        if not {"ring", "a2d-no", "a2d-o"} <= t.keys():
            continue
        s_no, s_o = t["ring"] / t["a2d-no"], t["ring"] / t["a2d-o"]
        cluster = (machine, P)
        best[cluster] = max(best.get(cluster, 0), s_no, s_o)
        print(f"  {machine:16s} {P:3d} {MODELS.get((h, d), '?'):5s} {N:7d} {1e3 * t['ring']:10.2f} "
              f"{1e3 * t['a2d-no']:10.2f} {1e3 * t['a2d-o']:10.2f} {s_no:7.2f}x {s_o:6.2f}x")
    for (machine, P), s in sorted(best.items()):
        print(f"# best predicted speedup over Ring on {machine}, P = {P}: {s:.2f}x")
    print("# the paper reports up to 5x on 64 A100 (16 nodes) and 9.4x on 64 H100 (64 nodes)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
