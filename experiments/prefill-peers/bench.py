#!/usr/bin/env python3
"""Prefill kernels against their peers, in one process on one GPU: attnsim's CUDA FlashAttention-2
forward and backward (build/libattnsim_kc.so, called through ctypes on PyTorch's tensors) and
PyTorch SDPA with the flash and cuDNN backends, on the same shapes and inputs.

Each implementation is checked against PyTorch's math backend (f32) before it is timed; times
are CUDA events around --reps back-to-back launches after --warmup, the median of --trials such
batches, each trial taking the implementations in turn (a drift of the clocks reaches them
alike); the backward of SDPA is timed as autograd's backward of one forward (retain_graph), as
flash-attn's own benchmarks do. TF/s counts the matrix FLOPs: 4 B H Nq Nk d forward (half under
causal masking), 2.5x that backward. Writes one attnsim/1 HDF5 file (kind = benchmark runs) and
prints the table with the ratio of attnsim to each peer.

--variant NAME=SETTING (repeatable) also times attnsim's forward with the environment variable
ATTNSIM_KC_FWD set to SETTING (the Hopper forward's schedule, kc_fa3_fwd.cu), after checking its
output against the math reference and, over the whole tensor, against the default forward; it is
printed and written as implementation attnsim:NAME.

Usage: bench.py [--out FILE.h5] [--seq 1k,2k,4k,8k,16k] [--head-dim 64,128] [--tokens 16k]
                [--causal both] [--pass fwd,bwd] [--dtype bf16] [--lib build/libattnsim_kc.so]
                [--variant NAME=SETTING ...]"""
import argparse
import ctypes
import datetime
import os
import socket
import sys


def parse_count(s):
    s = s.strip()
    mult = {"k": 1 << 10, "M": 1 << 20}.get(s[-1:], 1)
    return int(s[:-1] if mult > 1 else s) * mult


class Shape(ctypes.Structure):
    _fields_ = [("dtype", ctypes.c_int), ("b", ctypes.c_size_t), ("h", ctypes.c_size_t),
                ("h_kv", ctypes.c_size_t), ("nq", ctypes.c_size_t), ("nk", ctypes.c_size_t),
                ("d", ctypes.c_size_t), ("causal", ctypes.c_int),
                ("qpos", ctypes.c_void_p), ("kpos", ctypes.c_void_p)]  # NULL: bottom-right causal


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--out", default="prefill-peers.h5")
    ap.add_argument("--seq", default="1k,2k,4k,8k,16k")
    ap.add_argument("--head-dim", default="64,128")
    ap.add_argument("--tokens", default="16k", help="B x N per run (B = tokens / N, at least 1)")
    ap.add_argument("--model-dim", type=int, default=2048, help="H = model-dim / d")
    ap.add_argument("--causal", default="both", choices=["yes", "no", "both"])
    ap.add_argument("--pass", dest="passes", default="fwd,bwd")
    ap.add_argument("--dtype", default="bf16", choices=["bf16", "f16"])
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--lib", default=os.path.join(here, "..", "..", "build", "libattnsim_kc.so"))
    ap.add_argument("--variant", action="append", default=[], metavar="NAME=SETTING",
                    help="also time the forward with ATTNSIM_KC_FWD=SETTING")
    args = ap.parse_args()
    variants = []
    for v in args.variant:
        name, eq, setting = v.partition("=")
        if not eq or not name:
            print(f"bench: --variant {v!r}: expected NAME=SETTING (e.g. pp=persistent+pingpong)",
                  file=sys.stderr)
            return 2
        variants.append((name, setting))
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
        print(f"bench: {args.lib} not found; build attnsim with CUDA (cmake -S . -B build)",
              file=sys.stderr)
        return 2
    kc = ctypes.CDLL(os.path.abspath(args.lib))
    kc.kc_attn_fwd.argtypes = [ctypes.POINTER(Shape)] + [ctypes.c_void_p] * 6
    kc.kc_attn_bwd.argtypes = [ctypes.POINTER(Shape)] + [ctypes.c_void_p] * 11
    kc.kc_attn_bwd_workspace_bytes.argtypes = [ctypes.POINTER(Shape)]
    kc.kc_attn_bwd_workspace_bytes.restype = ctypes.c_size_t
    dt = torch.bfloat16 if args.dtype == "bf16" else torch.float16
    dcode = 2 if args.dtype == "bf16" else 1
    dev = torch.device("cuda")
    stream = torch.cuda.current_stream().cuda_stream

    def timed(fns):
        """Seconds per launch of each function of the dict: the trials take the functions in
        turn, so a drift of the GPU's clocks over the run reaches every one alike."""
        for fn in fns.values():
            for _ in range(args.warmup):
                fn()
        times = {name: [] for name in fns}
        for _ in range(args.trials):
            for name, fn in fns.items():
                a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                a.record()
                for _ in range(args.reps):
                    fn()
                b.record()
                torch.cuda.synchronize()
                times[name].append(a.elapsed_time(b) / 1e3 / args.reps)
        return {name: float(np.median(ts)) for name, ts in times.items()}

    def with_fwd_env(setting, fn):
        def run():
            prev = os.environ.get("ATTNSIM_KC_FWD")
            os.environ["ATTNSIM_KC_FWD"] = setting
            try:
                fn()
            finally:
                if prev is None:
                    del os.environ["ATTNSIM_KC_FWD"]
                else:
                    os.environ["ATTNSIM_KC_FWD"] = prev
        return run

    def check(name, got, want, tol):
        err = (got.float() - want).abs().max().item() / max(1.0, want.abs().max().item())
        if not err <= tol:
            raise SystemExit(f"bench: {name} differs from the math reference: {err:.3g} > {tol}")
        return err

    rows, results = [], []
    causals = {"yes": [1], "no": [0], "both": [0, 1]}[args.causal]
    passes = args.passes.split(",")
    tokens = parse_count(args.tokens)
    for d in [int(x) for x in args.head_dim.split(",")]:
        H = max(1, args.model_dim // d)
        for n in [parse_count(x) for x in args.seq.split(",")]:
            B = max(1, tokens // n)
            for causal in causals:
                g = torch.Generator(device=dev).manual_seed(1)
                q, k, v, do = (torch.randn(B, H, n, d, device=dev, dtype=dt, generator=g)
                               for _ in range(4))
                shape = Shape(dcode, B, H, H, n, n, d, causal)
                o = torch.empty_like(q)
                lse = torch.empty(B, H, n, device=dev, dtype=torch.float32)
                fl_fwd = 4.0 * B * H * n * n * d * (0.5 if causal else 1.0)

                def ours_fwd():
                    rc = kc.kc_attn_fwd(ctypes.byref(shape), q.data_ptr(), k.data_ptr(),
                                       v.data_ptr(), o.data_ptr(), lse.data_ptr(), stream)
                    if rc:
                        raise SystemExit(f"bench: kc_attn_fwd returned CUDA error {rc}")

                # reference (math backend, f32) on a slice small enough to afford: the first
                # batch entry, two heads
                bs = (slice(0, 1), slice(0, 2))
                qr, kr, vr, dor = (x[bs].float().requires_grad_() for x in (q, k, v, do))
                with sdpa_kernel(SDPBackend.MATH):
                    ref = F.scaled_dot_product_attention(qr, kr, vr, is_causal=bool(causal))
                ref.backward(dor)
                ours_fwd()
                torch.cuda.synchronize()
                errs = {"attnsim": check("attnsim fwd", o[bs], ref.detach(), 3e-2)}
                peers = {"torch-flash": SDPBackend.FLASH_ATTENTION,
                         "torch-cudnn": SDPBackend.CUDNN_ATTENTION}
                for name, be in peers.items():
                    with sdpa_kernel(be):
                        out = F.scaled_dot_product_attention(q[bs], k[bs], v[bs],
                                                             is_causal=bool(causal))
                    errs[name] = check(f"{name} fwd", out, ref.detach(), 3e-2)
                fns = {"attnsim": ours_fwd}
                if "fwd" in passes and variants:
                    o_def = o.clone()
                    for name, setting in variants:
                        key, fn = f"attnsim:{name}", with_fwd_env(setting, ours_fwd)
                        try:
                            o.fill_(float("nan"))
                            fn()
                            torch.cuda.synchronize()
                            err = check(f"{key} fwd", o[bs], ref.detach(), 3e-2)
                            check(f"{key} fwd (whole tensor, against the default)", o,
                                  o_def.float(), 1e-2)
                            errs[key], fns[key] = err, fn
                        except SystemExit as e:  # a wrong variant is reported, not timed
                            print(f"{e} (d={d} N={n} causal={causal}): not timed",
                                  file=sys.stderr)
                    del o_def
                    ours_fwd()  # the default's O and LSE for the backward
                    torch.cuda.synchronize()
                if "fwd" in passes:
                    for name, be in peers.items():
                        def f(be=be):
                            with sdpa_kernel(be):
                                F.scaled_dot_product_attention(q, k, v, is_causal=bool(causal))
                        fns[name] = f
                    t = timed(fns)
                    results.append(("fwd", d, n, B, H, causal, t, fl_fwd, errs))
                if "bwd" in passes:
                    dq, dk, dv = (torch.empty_like(x) for x in (q, k, v))
                    ws = torch.empty(kc.kc_attn_bwd_workspace_bytes(ctypes.byref(shape)),
                                     device=dev, dtype=torch.uint8)

                    def ours_bwd():
                        rc = kc.kc_attn_bwd(ctypes.byref(shape), q.data_ptr(), k.data_ptr(),
                                           v.data_ptr(), o.data_ptr(), do.data_ptr(),
                                           lse.data_ptr(), dq.data_ptr(), dk.data_ptr(),
                                           dv.data_ptr(), ws.data_ptr(), stream)
                        if rc:
                            raise SystemExit(f"bench: kc_attn_bwd returned CUDA error {rc}")
                    ours_bwd()
                    torch.cuda.synchronize()
                    berr = {"attnsim": max(check(f"attnsim d{nm}", x[bs], r.grad, 5e-2)
                                           for nm, x, r in (("q", dq, qr), ("k", dk, kr),
                                                            ("v", dv, vr)))}
                    bfns, keep = {"attnsim": ours_bwd}, []
                    for name, be in peers.items():
                        qg, kg, vg = (x.detach().clone().requires_grad_() for x in (q, k, v))
                        with sdpa_kernel(be):
                            out = F.scaled_dot_product_attention(qg, kg, vg,
                                                                 is_causal=bool(causal))
                        out.backward(do, retain_graph=True)
                        berr[name] = max(check(f"{name} d{nm}", x.grad[bs], r.grad, 5e-2)
                                         for nm, x, r in (("q", qg, qr), ("k", kg, kr),
                                                          ("v", vg, vr)))

                        def f(out=out):
                            out.backward(do, retain_graph=True)
                        bfns[name] = f
                        keep.append((out, qg, kg, vg))
                    t = timed(bfns)
                    del keep, out, qg, kg, vg
                    results.append(("bwd", d, n, B, H, causal, t, 2.5 * fl_fwd, berr))
                del q, k, v, do, o, lse
                torch.cuda.empty_cache()

    gpu = torch.cuda.get_device_name()
    print(f"# prefill peers on {gpu}, torch {torch.__version__}, {args.dtype}; TF/s "
          f"(median of {args.trials} x {args.reps} launches); ratio = attnsim / peer")
    print(f"{'pass':4s} {'d':>4s} {'N':>6s} {'B':>3s} {'H':>3s} {'causal':>6s} "
          f"{'attnsim':>8s} {'flash':>8s} {'cudnn':>8s} {'/flash':>7s} {'/cudnn':>7s}")
    for ps, d, n, B, H, causal, t, fl, errs in results:
        tf = {k: fl / v / 1e12 for k, v in t.items()}
        extra = "".join(f"  {k[8:]} {v:6.1f} {v / tf['torch-cudnn']:5.2f}"
                        for k, v in tf.items() if k.startswith("attnsim:"))
        print(f"{ps:4s} {d:4d} {n:6d} {B:3d} {H:3d} {causal:6d} {tf['attnsim']:8.1f} "
              f"{tf['torch-flash']:8.1f} {tf['torch-cudnn']:8.1f} "
              f"{tf['attnsim'] / tf['torch-flash']:7.2f} {tf['attnsim'] / tf['torch-cudnn']:7.2f}"
              f"{extra}")
    if variants:
        print("# variants: TF/s and ratio to cuDNN, forward rows only: "
              + ", ".join(f"{n} = ATTNSIM_KC_FWD={s}" for n, s in variants))
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
        for ps, d, n, B, H, causal, t, fl, errs in results:
            for impl, sec in t.items():
                g = runs.create_group(f"{len(runs):06d}")
                for key, val in dict(kind="benchmark", algorithm=impl, P=1, seq_len=n,
                                     seq_len_kv=n, batch=B, heads=H, kv_heads=H, head_dim=d,
                                     causal=causal, dtype=args.dtype, backend="cuda",
                                     gpu=str(gpu), torch_version=str(torch.__version__),
                                     max_rel_err=errs[impl],
                                     command_line=str(" ".join(sys.argv))).items():
                    g.attrs[key] = val
                g.attrs["pass"] = ps
                g["measured/time_s"] = sec
                g["measured/flops"] = fl
                g["measured/tflop_per_s"] = fl / sec / 1e12
                g.attrs["complete"] = 1
    print(f"# wrote {sum(len(r[6]) for r in results)} runs to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
