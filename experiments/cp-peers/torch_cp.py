#!/usr/bin/env python3
"""PyTorch context parallel (torch.distributed.tensor.experimental.context_parallel) on the GPUs
of this node, the peer of `attnsim run --backend cuda --comm nccl` (experiments/cp-peers/run.sh
runs both on the same machine and shapes). Launch with torchrun, one process per GPU:

  torchrun --nproc-per-node P torch_cp.py --out FILE.h5 [--seq 32k,128k] [--causal both]
           [--pass fwd,train] [--backends cudnn,flash] [--rotate allgather,alltoall]
           [--heads 32] [--kv-heads 32,8] [--gqa auto|native|expand]

Every configuration is timed the same way as attnsim times its runs: a barrier, then the pass
(forward, or forward + backward), GPU-synchronised, the median of --reps repetitions after a
warm-up, wall time of the slowest rank. Before timing, the output of each configuration is
checked against single-GPU SDPA on rank 0 (the whole sequence; max relative error recorded).
With P = 1 (or --single) it times plain single-GPU SDPA of the same shapes: the baseline of the
scaling efficiency. Rank 0 appends kind=benchmark runs (attnsim/1) to --out.

Grouped-query attention (--kv-heads G < --heads): single-GPU SDPA takes K and V with G heads
(enable_gqa). Under context parallel, --gqa native passes enable_gqa through as well; --gqa
expand repeats each K/V head H/G times before sharding (what torchtitan's models do, so the
ring moves H heads); --gqa auto (default) tries native and falls back to expand for a
configuration that native refuses. The method used is recorded (attribute gqa)."""
import argparse
import contextlib
import datetime
import os
import socket
import sys
import time


def count(s):
    s = s.strip().lower()
    mult = {"k": 1024, "m": 1024 * 1024}.get(s[-1:], 1)
    return int(s[:-1] if s[-1:] in "km" else s) * mult


def attn_flops(B, H, N, d, causal, train):
    f = 4.0 * B * H * N * N * d  # QK^T and PV
    if causal:
        f /= 2
    return f * (3.5 if train else 1.0)  # backward = 2.5x forward (5 GEMMs of the same size)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--seq", default="32k,128k")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--heads", type=int, default=32)
    ap.add_argument("--kv-heads", default="",
                    help="comma list of key/value head counts, each dividing --heads "
                         "(default: --heads)")
    ap.add_argument("--gqa", default="auto", choices=["auto", "native", "expand"])
    ap.add_argument("--head-dim", type=int, default=128)
    ap.add_argument("--causal", default="both", choices=["yes", "no", "both"])
    ap.add_argument("--pass", dest="passes", default="fwd,train")
    ap.add_argument("--backends", default="cudnn,flash")
    ap.add_argument("--rotate", default="allgather,alltoall")
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    try:
        kv_list = [int(x) for x in args.kv_heads.split(",")] if args.kv_heads else [args.heads]
    except ValueError:
        kv_list = []
    if not kv_list or any(g < 1 or args.heads % g for g in kv_list):
        print(f"torch_cp: --kv-heads '{args.kv_heads}': expected a comma list of counts that "
              f"divide --heads {args.heads}", file=sys.stderr)
        return 2
    try:
        import h5py
        import numpy as np
        import torch
        import torch.distributed as dist
        import torch.nn.functional as F
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError as e:
        print(f"torch_cp: {e}; needs torch with CUDA, h5py, numpy", file=sys.stderr)
        return 2
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    torch.cuda.set_device(local)
    dev = torch.device("cuda", local)
    if world > 1:
        dist.init_process_group("nccl", device_id=dev)
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.tensor.experimental import context_parallel
        from torch.distributed.tensor.experimental._attention import (
            _cp_options, context_parallel_unshard, set_rotate_method)
        mesh = init_device_mesh("cuda", (world,))
    backends = {"cudnn": SDPBackend.CUDNN_ATTENTION, "flash": SDPBackend.FLASH_ATTENTION}
    B, H, d = args.batch, args.heads, args.head_dim
    dt = torch.bfloat16
    causals = {"yes": [1], "no": [0], "both": [0, 1]}[args.causal]
    results = []

    def barrier():
        torch.cuda.synchronize()
        if world > 1:
            dist.barrier()
            torch.cuda.synchronize()

    def slowest(sec):
        if world == 1:
            return sec
        t = torch.tensor([sec], device=dev, dtype=torch.float64)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return float(t.item())

    def measure(q, k, v, do, be, rot, causal, train, native, ref):
        """(median seconds, max relative error against ref or nan) of one configuration."""
        err = float("nan")
        want = world > 1 and not train
        r0 = ref() if want else None  # made outside the context, which reroutes SDPA
        kw = dict(is_causal=bool(causal), enable_gqa=True) if native else dict(
            is_causal=bool(causal))
        with sdpa_kernel(backends[be]):
            if world > 1:
                set_rotate_method(rot)
                # head-tail load balancing is for causal masks only
                _cp_options.enable_load_balance = bool(causal)
                ctx = context_parallel(mesh, buffers=[q, k, v, do], buffer_seq_dims=[2, 2, 2, 2])
            else:
                ctx = contextlib.nullcontext()
            with ctx:
                def step():
                    if train:
                        for t in (q, k, v):
                            t.requires_grad_(True)
                            t.grad = None
                    o = F.scaled_dot_product_attention(q, k, v, **kw)
                    if train:
                        o.backward(do)
                    return o
                o = step()
                # check: the shards against single-GPU SDPA of the whole
                if want:
                    (full,) = context_parallel_unshard(mesh, [o.detach()], [2])
                    err = float(((full.float() - r0.float()).abs().max() /
                                 r0.float().abs().max()).item())
                times = []
                for r in range(args.reps + 1):
                    barrier()
                    t0 = time.perf_counter()
                    step()
                    torch.cuda.synchronize()
                    times.append(slowest(time.perf_counter() - t0))
                for t in (q, k, v):  # the context restores the buffers
                    t.grad = None
                    t.requires_grad_(False)
        return float(np.median(times[1:])), err

    for N in [count(x) for x in args.seq.split(",")]:
        for G in kv_list:
            g = torch.Generator(device=dev).manual_seed(1234 + N)
            q0 = torch.randn(B, H, N, d, device=dev, dtype=dt, generator=g)
            k0 = torch.randn(B, G, N, d, device=dev, dtype=dt, generator=g)
            v0 = torch.randn(B, G, N, d, device=dev, dtype=dt, generator=g)
            do0 = torch.randn(B, H, N, d, device=dev, dtype=dt, generator=g)
            if G == H:
                modes = ["none"]
            elif world == 1:
                modes = ["native"]
            else:
                modes = ["native", "expand"] if args.gqa == "auto" else [args.gqa]
            for causal in causals:
                refs = []  # single-GPU SDPA of the whole sequence, made when first needed

                def ref():
                    if not refs:
                        with sdpa_kernel(backends[args.backends.split(",")[0]]):
                            refs.append(F.scaled_dot_product_attention(
                                q0, k0, v0, is_causal=bool(causal), enable_gqa=G != H))
                    return refs[0]
                for be in args.backends.split(","):
                    for rot in (args.rotate.split(",") if world > 1 else ["none"]):
                        for ps in args.passes.split(","):
                            train = ps == "train"
                            for mode in modes:
                                q, k, v, do = (t.clone() for t in (q0, k0, v0, do0))
                                if mode == "expand":  # every rank holds H K/V heads
                                    k, v = (t.repeat_interleave(H // G, dim=1) for t in (k, v))
                                try:
                                    sec, err = measure(q, k, v, do, be, rot, causal, train,
                                                       mode == "native", ref)
                                except Exception as e:  # a refused configuration is reported
                                    if rank == 0:
                                        print(f"torch_cp: {be} {rot} {ps} N={N} G={G} "
                                              f"causal={causal} gqa={mode}: {type(e).__name__}: "
                                              f"{str(e).splitlines()[0][:160]}", flush=True)
                                    barrier()
                                    continue
                                fl = attn_flops(B, H, N, d, causal, train)
                                name = f"torch-cp-{be}-{rot}" if world > 1 else f"torch-{be}"
                                tf = fl / sec / world / 1e12
                                results.append(dict(name=name, N=N, G=G, causal=causal, ps=ps,
                                                    sec=sec, fl=fl, err=err, tf=tf, gqa=mode))
                                if rank == 0:
                                    print(f"{name:28s} P={world} N={N:7d} G={G:3d} "
                                          f"causal={causal} {ps:5s} {sec * 1e3:9.2f} ms "
                                          f"{tf:7.1f} TF/s per GPU  err {err:.1e}  gqa {mode}",
                                          flush=True)
                                break  # the first method that runs is the one measured
    if rank == 0:
        gpu = torch.cuda.get_device_name(dev)
        with h5py.File(args.out, "a") as f:
            if "schema" not in f.attrs:
                f.attrs["schema"] = "attnsim/1"
                f.attrs["creation_time"] = datetime.datetime.now(
                    datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
                f.attrs["host_names"] = np.array([socket.gethostname()],
                                                 dtype=h5py.string_dtype())
            elif f.attrs["schema"] != "attnsim/1":
                print(f"torch_cp: {args.out} is not an attnsim/1 file", file=sys.stderr)
                return 2
            runs = f.require_group("runs")
            for r in results:
                g = runs.create_group(f"{len(runs):06d}")
                for key, val in dict(kind="benchmark", algorithm=r["name"], P=world,
                                     seq_len=r["N"], seq_len_kv=r["N"], batch=B, heads=H,
                                     kv_heads=r["G"], gqa=r["gqa"], head_dim=d, causal=r["causal"], dtype="bf16",
                                     backend="cuda", comm="nccl" if world > 1 else "none",
                                     gpu=gpu, torch_version=str(torch.__version__),
                                     max_rel_err=r["err"], reps=args.reps,
                                     timing="median of reps after one warm-up; barrier, pass, "
                                            "synchronise; slowest rank",
                                     command_line=" ".join(sys.argv)).items():
                    g.attrs[key] = val
                g.attrs["pass"] = r["ps"]
                g["measured/time_s"] = r["sec"]
                g["measured/flops"] = r["fl"]
                g["measured/tflop_per_s_per_gpu"] = r["tf"]
                g.attrs["complete"] = 1
        print(f"# wrote {len(results)} runs to {args.out}")
    if world > 1:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
