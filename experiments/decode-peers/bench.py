#!/usr/bin/env python3
"""Decode kernels against their peers, in one process on one GPU: attnsim's FA2-style decode,
FlashDecoding and Lean Attention (build/libattnsim_kc.so through ctypes, on PyTorch's tensors)
and PyTorch SDPA with the flash and cuDNN backends (GQA enabled), on the same shapes and inputs.

Timing, the same for every implementation: one CUDA graph holds --reps back-to-back calls, each
on the next of C copies of the K/V cache (C x cache >= 4 x the L2 size, so no call finds its
cache in L2 left there by the previous ones, as in a real decode step that reads each layer's
cache once); the graph is replayed --trials times between CUDA events; the time of a call is the
median replay time over --reps. GPU time only: Python launches no kernel inside the timed region.
The HBM read ceiling is a large streaming read in which the SMs take chunks as they free
(kc_read_ceiling_probe), timed the same way in the same run, beside the same read cut into equal
shares of a fixed grid (kc_read_bandwidth_probe), the rate any equal partition such as Lean's
ranges is held to. Every implementation is checked against SDPA's math backend in f32 first.

Figure of merit: GB/s of K+V = bytes of the K and V cache read / time. Writes one attnsim/1 HDF5
file (kind = kernel, pass = decode runs, one per implementation and shape, with the ceiling as
the attributes hbm_read_ceiling_bytes_per_s and hbm_equal_share_read_bytes_per_s) and prints
the table.

Usage: bench.py [--out FILE.h5] [--shapes B:h:h_kv:N[:d],...] [--dtype bf16] [--lib ...]"""
import argparse
import ctypes
import datetime
import os
import socket
import sys

# the decode table of docs/performance.md: (B, h, h_kv, N) at d = 128, then a few at d = 64
DEFAULT_SHAPES = ("1:32:8:4k,1:32:8:16k,1:32:8:64k,1:32:8:256k,1:64:8:32k,4:32:8:8k,"
                  "1:12:12:16k,1:40:40:8k,2:20:20:24k,3:40:40:12k,1:132:132:4k,16:32:8:2k,"
                  "1:32:32:32k,8:32:32:32k,1:8:8:1M,"
                  "1:32:8:16k:64,1:32:8:64k:64,4:32:8:8k:64,1:40:40:8k:64")
SCHEMES = {"fa2-decode": 0, "flash-decoding": 1, "lean": 2}


def parse_count(s):
    s = s.strip()
    mult = {"k": 1 << 10, "M": 1 << 20}.get(s[-1:], 1)
    return int(s[:-1] if mult > 1 else s) * mult


class DecShape(ctypes.Structure):
    _fields_ = [("dtype", ctypes.c_int), ("b", ctypes.c_size_t), ("h", ctypes.c_size_t),
                ("h_kv", ctypes.c_size_t), ("d", ctypes.c_size_t), ("n_cap", ctypes.c_size_t)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--out", default="decode-peers.h5")
    ap.add_argument("--shapes", default=DEFAULT_SHAPES)
    ap.add_argument("--dtype", default="bf16", choices=["bf16", "f16"])
    ap.add_argument("--reps", type=int, default=50, help="calls per graph")
    ap.add_argument("--trials", type=int, default=7, help="graph replays timed")
    ap.add_argument("--l2-factor", type=float, default=4.0,
                    help="K/V copies rotated: at least this many L2 sizes in all")
    ap.add_argument("--max-rotation-bytes", type=parse_count, default=24 << 30)
    ap.add_argument("--impl", default="fa2-decode,flash-decoding,lean,torch-flash,torch-cudnn")
    ap.add_argument("--lib", default=os.path.join(here, "..", "..", "build", "libattnsim_kc.so"))
    args = ap.parse_args()
    try:
        import h5py
        import numpy as np
        import torch
        import torch.nn.functional as F
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError as e:
        print(f"bench: {e}; needs torch, h5py, numpy", file=sys.stderr)
        return 2
    if not torch.cuda.is_available():
        print("bench: no CUDA device visible to PyTorch", file=sys.stderr)
        return 2
    if not os.path.exists(args.lib):
        print(f"bench: {args.lib} not found; build attnsim with CUDA", file=sys.stderr)
        return 2
    impls = args.impl.split(",")
    bad = [i for i in impls if i not in SCHEMES and i not in ("torch-flash", "torch-cudnn")]
    if bad:
        print(f"bench: --impl {bad[0]} unknown; accepted: {', '.join(SCHEMES)}, torch-flash, "
              "torch-cudnn", file=sys.stderr)
        return 2
    shapes = []
    for tok in args.shapes.split(","):
        f = tok.split(":")
        if len(f) not in (4, 5):
            print(f"bench: --shapes {tok}: expected B:h:h_kv:N[:d]", file=sys.stderr)
            return 2
        shapes.append((int(f[0]), int(f[1]), int(f[2]), parse_count(f[3]),
                       int(f[4]) if len(f) == 5 else 128))

    kc = ctypes.CDLL(os.path.abspath(args.lib))
    P = ctypes.POINTER(DecShape)
    kc.kc_decode.argtypes = [P, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                             ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p,
                             ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]
    kc.kc_decode_workspace_bytes.argtypes = [P, ctypes.c_int, ctypes.c_int, ctypes.c_int]
    kc.kc_decode_workspace_bytes.restype = ctypes.c_size_t
    kc.kc_decode_slots.argtypes = [ctypes.c_int, ctypes.c_size_t, ctypes.POINTER(ctypes.c_int)]
    kc.kc_decode_splits.argtypes = [P, ctypes.c_int, ctypes.c_int]
    for fn in ("kc_read_bandwidth_probe", "kc_read_ceiling_probe"):
        getattr(kc, fn).argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p,
                                    ctypes.c_void_p]
    dt = torch.bfloat16 if args.dtype == "bf16" else torch.float16
    dcode = 2 if args.dtype == "bf16" else 1
    dev = torch.device("cuda")
    props = torch.cuda.get_device_properties(dev)
    l2 = getattr(props, "L2_cache_size", 50 << 20)
    gpu = torch.cuda.get_device_name()

    def graph_time(call, reps):
        """Median seconds per call of `call(i)` for i in 0..reps-1 captured in one graph."""
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            for i in range(3):  # warm up outside the graph (lazy init, attributes)
                call(i)
        torch.cuda.current_stream().wait_stream(s)
        torch.cuda.synchronize()
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            for i in range(reps):
                call(i)
        g.replay()
        torch.cuda.synchronize()
        times = []
        for _ in range(args.trials):
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            g.replay()
            b.record()
            torch.cuda.synchronize()
            times.append(a.elapsed_time(b) / 1e3 / reps)
        del g
        return float(np.median(times))

    # the HBM read ceiling (SMs take 64 KiB chunks as they free) and the rate of a grid of equal
    # shares (as Lean's ranges are): 4 GiB streaming reads, timed like the kernels
    probe_bytes = 4 << 30
    buf = torch.empty(probe_bytes, dtype=torch.uint8, device=dev).fill_(1)
    sink = torch.zeros(1, dtype=torch.int32, device=dev)

    def probe_with(fn):
        def probe(i):
            rc = getattr(kc, fn)(buf.data_ptr(), probe_bytes, sink.data_ptr(),
                                 torch.cuda.current_stream().cuda_stream)
            if rc:
                raise SystemExit(f"bench: {fn} returned CUDA error {rc}")
        return probe
    ceiling = probe_bytes / graph_time(probe_with("kc_read_ceiling_probe"), 5)
    equal_share = probe_bytes / graph_time(probe_with("kc_read_bandwidth_probe"), 5)
    del buf
    torch.cuda.empty_cache()
    print(f"# decode peers on {gpu}, torch {torch.__version__}, {args.dtype}; HBM read ceiling "
          f"{ceiling / 1e9:.0f} GB/s, equal shares {equal_share / 1e9:.0f} GB/s (4 GiB "
          "streaming reads, same run)")

    results = []
    for (B, h, hkv, N, d) in shapes:
        kv_bytes = 2 * B * hkv * N * d * 2
        copies = max(1, min(int(np.ceil(args.l2_factor * l2 / kv_bytes)),
                            args.max_rotation_bytes // kv_bytes))
        gen = torch.Generator(device=dev).manual_seed(1)
        q = [torch.randn(B, h, 1, d, device=dev, dtype=dt, generator=gen) for _ in range(copies)]
        k = [torch.randn(B, hkv, N, d, device=dev, dtype=dt, generator=gen)
             for _ in range(copies)]
        v = [torch.randn(B, hkv, N, d, device=dev, dtype=dt, generator=gen)
             for _ in range(copies)]
        o = torch.empty(B, h, 1, d, device=dev, dtype=dt)
        lse = torch.empty(B, h, device=dev, dtype=torch.float32)
        # every sequence holds N tokens: no length array (lens = NULL), as SDPA reads none
        shape = DecShape(dcode, B, h, hkv, d, N)
        slots = ctypes.c_int(0)
        if kc.kc_decode_slots(dcode, d, ctypes.byref(slots)):
            raise SystemExit("bench: kc_decode_slots failed")
        slots = slots.value
        # reference: math backend in f32 on the first copy (repeat K/V heads for GQA)
        rep = h // hkv
        with sdpa_kernel(SDPBackend.MATH):
            ref = F.scaled_dot_product_attention(
                q[0].float(), k[0].float().repeat_interleave(rep, 1),
                v[0].float().repeat_interleave(rep, 1))
        row = {"shape": (B, h, hkv, N, d), "kv_bytes": kv_bytes, "copies": copies, "t": {},
               "err": {}, "note": {}}
        outs = {}
        for impl in impls:
            try:
                if impl in SCHEMES:
                    sc = SCHEMES[impl]
                    ws = torch.zeros(kc.kc_decode_workspace_bytes(ctypes.byref(shape), sc, slots,
                                                                  N), dtype=torch.uint8,
                                     device=dev)

                    def call(i, sc=sc, ws=ws):
                        j = i % copies
                        rc = kc.kc_decode(ctypes.byref(shape), sc, q[j].data_ptr(),
                                          k[j].data_ptr(), v[j].data_ptr(), None, N,
                                          o.data_ptr(), lse.data_ptr(), ws.data_ptr(), slots,
                                          torch.cuda.current_stream().cuda_stream)
                        if rc:
                            raise RuntimeError(f"kc_decode returned CUDA error {rc}")
                else:
                    be = {"torch-flash": SDPBackend.FLASH_ATTENTION,
                          "torch-cudnn": SDPBackend.CUDNN_ATTENTION}[impl]

                    def call(i, be=be):
                        j = i % copies
                        with sdpa_kernel(be):
                            outs["o"] = F.scaled_dot_product_attention(q[j], k[j], v[j],
                                                                       enable_gqa=True)
                call(0)
                torch.cuda.synchronize()
                got = o if impl in SCHEMES else outs["o"]
                err = ((got.float() - ref).abs().max() / ref.abs().max()).item()
                if not err <= 2e-2:
                    raise RuntimeError(f"differs from the math reference: {err:.3g}")
                row["err"][impl] = err
                row["t"][impl] = graph_time(call, args.reps)
            except (RuntimeError, TypeError) as e:
                row["note"][impl] = str(e).splitlines()[0][:200]
        results.append(row)
        del q, k, v, o, lse, ref
        torch.cuda.empty_cache()
        bw = {i: kv_bytes / t / 1e9 for i, t in row["t"].items()}
        peers = [bw[i] for i in ("torch-flash", "torch-cudnn") if i in bw]
        best = max(peers) if peers else float("nan")
        print(f"({B},{h},{hkv},{N}) d={d} copies={copies} " +
              " ".join(f"{i}={bw[i]:.0f}" for i in impls if i in bw) +
              (f"  lean/best-peer={bw['lean'] / best:.2f}" if "lean" in bw and peers else "") +
              "".join(f"  [{i}: {m}]" for i, m in row["note"].items()), flush=True)

    with h5py.File(args.out, "a") as f:
        if "schema" not in f.attrs:
            f.attrs["schema"] = "attnsim/1"
            f.attrs["creation_time"] = datetime.datetime.now(datetime.timezone.utc).strftime(
                "%Y-%m-%dT%H:%M:%SZ")
            f.attrs["host_names"] = np.array([socket.gethostname()], dtype=h5py.string_dtype())
        elif f.attrs["schema"] != "attnsim/1":
            print(f"bench: {args.out} is not an attnsim/1 file", file=sys.stderr)
            return 2
        runs = f.require_group("runs")
        n = 0
        for row in results:
            B, h, hkv, N, d = row["shape"]
            for impl, sec in row["t"].items():
                g = runs.create_group(f"{len(runs):06d}")
                for key, val in dict(kind="kernel", algorithm=impl, P=1, grid_rows=1, grid_cols=1,
                                     comm="none", machine="none", seq_len=1,
                                     seq_len_kv=N, batch=B, heads=h, kv_heads=hkv, head_dim=d,
                                     causal=0, dtype=args.dtype, backend="cuda", gpu=str(gpu),
                                     torch_version=str(torch.__version__),
                                     max_rel_err=row["err"][impl], kv_copies=row["copies"],
                                     timing="CUDA graph of back-to-back calls over rotated K/V "
                                            "copies",
                                     hbm_read_ceiling_bytes_per_s=ceiling,
                                     hbm_equal_share_read_bytes_per_s=equal_share,
                                     kv_bytes=float(row["kv_bytes"]),
                                     command_line=str(" ".join(sys.argv))).items():
                    g.attrs[key] = val
                g.attrs["pass"] = "decode"
                g["measured/time_s"] = sec
                g["measured/kv_bytes_per_s"] = row["kv_bytes"] / sec
                g.attrs["complete"] = 1
                n += 1
    print(f"# wrote {n} runs to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
