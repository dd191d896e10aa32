#!/usr/bin/env python3
"""The Attention2D paper study from an attnsim/1 file of kind=model runs (experiments/paper-a2d/
run.sh writes one): per configuration the predicted speedup of A2D-NO and A2D-O over Ring with
the ideal and the a2d-paper profiles; per figure of the paper (cluster) the best and smallest
speedup of Attention2D (the faster of A2D-NO and A2D-O) against the paper's reported figures;
which assumption moves which number (the ideal profile with one setting changed at a time);
and the share of its link rate Ring's transfers would need for the a2d-paper profile to predict
the reported figure (found with `attnsim model`, ATTNSIM in the environment).

Usage: summarize.py FILE.h5 [--striped RING_STRIPED.h5]"""
import argparse
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.realpath(__file__)), "..", "..", "plots"))
import attnsim_h5 as ah  # noqa: E402  (the one reader of attnsim/1 files)

MODELS = {(16, 96): "760M", (32, 80): "2.7B", (40, 128): "13B"}
# the paper's reported speedups of Attention2D over Ring Attention (abstract; a blog summary for
# the A100 lower bound), per cluster: (machine, P) -> (what, value)
FIGURES = [
    (("a2d-paper-a100", 16), "16 A100 (4 nodes x 4)", None, 2.0),
    (("a2d-paper-a100", 64), "64 A100 (16 nodes x 4)", 5.0, 2.0),
    (("a2d-paper-h100", 64), "64 H100 (64 nodes x 1)", 9.4, None),
]
PAPER_PROFILE = "a2d-paper"
SEQS = "8k,16k,32k,64k,128k"


def load(path):
    runs = {}
    try:
        f = ah.open_file(path)
    except ah.FileError as e:
        raise SystemExit(f"summarize: {e}")
    with f:
        for g in f["runs"].values():
            a = g.attrs
            prof = ah.text(a.get("profile", "attnsim"))
            key = (prof, a["machine"], int(a["P"]), int(a["heads"]), int(a["head_dim"]),
                   int(a["seq_len"]))
            runs.setdefault(key, {})[a["algorithm"]] = float(g["predicted/total_time_s"][()])
    return runs


def speedups(runs, profile, cluster, ring_from=None):
    """(config, a2d-no/ring, a2d-o/ring) of a profile on a cluster; Ring from ring_from if given."""
    out = []
    for key, t in sorted(runs.items()):
        prof, machine, P, h, d, N = key
        if prof != profile or (machine, P) != cluster:
            continue
        ring = t.get("ring")
        if ring_from is not None:
            ring = ring_from.get(("ideal", machine, P, h, d, N), {}).get("ring")
        if ring is None or "a2d-no" not in t or "a2d-o" not in t:
            continue
        out.append(((MODELS.get((h, d), "?"), N), ring / t["a2d-no"], ring / t["a2d-o"]))
    return out


def best_and_least(rows):
    best = [max(no, o) for _, no, o in rows]
    return (max(best), min(best)) if best else (float("nan"), float("nan"))


def paper_with_ring_fraction(attnsim, profile_text, cluster, frac, work):
    """Best speedup on the cluster with the a2d-paper profile and Ring's links at frac."""
    prof = os.path.join(work, "solve.profile")
    with open(prof, "w") as f:
        f.write(profile_text + f"\nlink_fraction.ring_shift.ring = {frac}\n"
                f"link_fraction.return_hop.ring = {frac}\n")
    out = os.path.join(work, "solve.h5")
    if os.path.exists(out):
        os.remove(out)
    machine, P = cluster
    grid = "8x8" if P == 64 else "4x4"
    for (h, d) in MODELS:
        subprocess.run([attnsim, "model", "--algo", "ring,a2d-no,a2d-o", "--layout", "contiguous",
                        "--pass", "train", "--causal", "--dtype", "bf16", "--batch", "1",
                        "--heads", str(h), "--head-dim", str(d), "--seq", SEQS, "--procs", str(P),
                        "--grid", grid, "--machine", machine, "--profile", prof, "--out", out],
                       check=True, capture_output=True)
    runs = load(out)
    name = [k[0] for k in runs][0]
    return best_and_least(speedups(runs, name, cluster))[0]


def main():
    ah.ensure_python("summarize", ("h5py",))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("file")
    ap.add_argument("--striped", help="kind=model runs of Ring with the striped layout (ideal)")
    args = ap.parse_args()
    runs = load(args.file)
    striped = load(args.striped) if args.striped else None
    profiles = sorted({k[0] for k in runs})
    print("# predicted training step of one attention layer (fwd + bwd), causal, bf16, batch 1; "
          "speedup = Ring's time over Attention2D's")
    print(f"# {'cluster':16s} {'P':>3s} {'model':5s} {'N':>7s} {'ring_ms':>10s} {'a2d-no_ms':>10s} "
          f"{'a2d-o_ms':>10s} {'no/ring':>8s} {'o/ring':>7s}  {'paper profile: no/ring':>22s} "
          f"{'o/ring':>7s}")
    for key in sorted(runs):
        prof, machine, P, h, d, N = key
        if prof != "ideal":
            continue
        t = runs[key]
        if not {"ring", "a2d-no", "a2d-o"} <= t.keys():
            continue
        p = runs.get((PAPER_PROFILE,) + key[1:], {})
        pp = (f"{p['ring'] / p['a2d-no']:21.2f}x {p['ring'] / p['a2d-o']:6.2f}x"
              if {"ring", "a2d-no", "a2d-o"} <= p.keys() else "")
        print(f"  {machine:16s} {P:3d} {MODELS.get((h, d), '?'):5s} {N:7d} {1e3 * t['ring']:10.2f} "
              f"{1e3 * t['a2d-no']:10.2f} {1e3 * t['a2d-o']:10.2f} {t['ring'] / t['a2d-no']:7.2f}x "
              f"{t['ring'] / t['a2d-o']:6.2f}x  {pp}")
    for cluster, title, up_to, at_least in FIGURES:
        print(f"\n# figure: {title}; the paper reports "
              + ", ".join(x for x in (f"up to {up_to}x" if up_to else "",
                                      f"more than {at_least}x always" if at_least else "") if x))
        for prof in ["ideal", PAPER_PROFILE]:
            best, least = best_and_least(speedups(runs, prof, cluster))
            gap = []
            if up_to:
                gap.append(f"best {best:.2f}x ({100 * (best - up_to) / up_to:+.0f}% from {up_to}x)")
            else:
                gap.append(f"best {best:.2f}x")
            gap.append(f"smallest {least:.2f}x"
                       + (f" ({'meets' if least > at_least else 'misses'} > {at_least}x)"
                          if at_least else ""))
            print(f"  {prof:28s} " + "; ".join(gap))
        print("  which assumption moves which number (the ideal profile, one setting changed):")
        base_best, base_least = best_and_least(speedups(runs, "ideal", cluster))
        for prof in profiles:
            if not prof.startswith("ideal+"):
                continue
            best, least = best_and_least(speedups(runs, prof, cluster))
            print(f"    {prof:26s} best {best:5.2f}x ({best - base_best:+.2f}), smallest "
                  f"{least:5.2f}x ({least - base_least:+.2f})")
        if striped:
            best, least = best_and_least(speedups(runs, "ideal", cluster, ring_from=striped))
            print(f"    {'ideal, Ring striped':26s} best {best:5.2f}x ({best - base_best:+.2f}), "
                  f"smallest {least:5.2f}x ({least - base_least:+.2f})")
        attnsim = os.environ.get("ATTNSIM")
        if up_to and attnsim:
            here = os.path.dirname(os.path.abspath(__file__))
            ptext = open(os.path.join(here, "..", "..", "models", "profiles",
                                      PAPER_PROFILE + ".profile")).read()
            with tempfile.TemporaryDirectory() as work:
                lo, hi = 0.01, 1.0
                if paper_with_ring_fraction(attnsim, ptext, cluster, hi, work) >= up_to:
                    print(f"  the a2d-paper profile reaches {up_to}x with Ring at its full link "
                          f"rate")
                elif paper_with_ring_fraction(attnsim, ptext, cluster, lo, work) < up_to:
                    print(f"  no Ring link share down to {lo} reaches {up_to}x")
                else:
                    for _ in range(10):
                        mid = (lo + hi) / 2
                        if paper_with_ring_fraction(attnsim, ptext, cluster, mid, work) >= up_to:
                            lo = mid
                        else:
                            hi = mid
                    print(f"  the a2d-paper profile predicts {up_to}x when Ring's transfers reach "
                          f"{lo:.2f} of the link rate (Attention2D's at the profile's rates)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
