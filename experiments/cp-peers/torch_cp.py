#!/usr/bin/env python3
"""PyTorch context parallel (torch.distributed.tensor.experimental.context_parallel) on the GPUs
of this node, the peer of `attnsim run --backend cuda --comm nccl` (experiments/cp-peers/run.sh
runs both on the same machine and shapes). Launch with torchrun, one process per GPU:

  torchrun --nproc-per-node P torch_cp.py --out FILE.h5 [--seq 32k,128k] [--causal both]
           [--pass fwd,train] [--backends cudnn,flash] [--rotate allgather,alltoall]

Every configuration is timed the same way as attnsim times its runs: a barrier, then the pass
(forward, or forward + backward), GPU-synchronised, the median of --reps repetitions after a
warm-up, wall time of the slowest rank. Before timing, the output of each configuration is
checked against single-GPU SDPA on rank 0 (the whole sequence; max relative error recorded).
With P = 1 (or --single) it times plain single-GPU SDPA of the same shapes: the baseline of the
scaling efficiency. Rank 0 appends kind=benchmark runs (attnsim/1) to --out."""
import argparse
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
    ap.add_argument("--head-dim", type=int, default=128)
    ap.add_argument("--causal", default="both", choices=["yes", "no", "both"])
    ap.add_argument("--pass", dest="passes", default="fwd,train")
    ap.add_argument("--backends", default="cudnn,flash")
    ap.add_argument("--rotate", default="allgather,alltoall")
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
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

    for N in [count(s) for s in args.seq.split(",")]:
        g = torch.Generator(device=dev).manual_seed(1234 + N)
        q0 = torch.randn(B, H, N, d, device=dev, dtype=dt, generator=g)
        k0 = torch.randn(B, H, N, d, device=dev, dtype=dt, generator=g)
        v0 = torch.randn(B, H, N, d, device=dev, dtype=dt, generator=g)
        do0 = torch.randn(B, H, N, d, device=dev, dtype=dt, generator=g)
        for causal in causals:
            ref = None
            for be in args.backends.split(","):
                for rot in (args.rotate.split(",") if world > 1 else ["none"]):
                    for ps in args.passes.split(","):
                        train = ps == "train"
                        q, k, v, do = (t.clone() for t in (q0, k0, v0, do0))
                        err = float("nan")
                        try:
                            with sdpa_kernel(backends[be]):
                                if world > 1:
                                    set_rotate_method(rot)
                                    # head-tail load balancing is for causal masks only
                                    _cp_options.enable_load_balance = bool(causal)
                                    ctx = context_parallel(mesh, buffers=[q, k, v, do],
                                                           buffer_seq_dims=[2, 2, 2, 2])
                                else:
                                    import contextlib
                                    ctx = contextlib.nullcontext()
                                with ctx:
                                    def step():
                                        if train:
                                            for t in (q, k, v):
                                                t.requires_grad_(True)
                                                t.grad = None
                                        o = F.scaled_dot_product_attention(q, k, v,
                                                                           is_causal=bool(causal))
                                        if train:
                                            o.backward(do)
                                        return o
                                    o = step()
                                    # check: the shards against single-GPU SDPA of the whole
                                    if world > 1 and not train:
                                        (full,) = context_parallel_unshard(mesh, [o.detach()], [2])
                                        if ref is None:
                                            with sdpa_kernel(backends[be]):
                                                ref = F.scaled_dot_product_attention(
                                                    q0, k0, v0, is_causal=bool(causal))
                                        err = float(((full.float() - ref.float()).abs().max() /
                                                     ref.float().abs().max()).item())
                                    times = []
                                    for r in range(args.reps + 1):
                                        barrier()
                                        t0 = time.perf_counter()
                                        step()
                                        torch.cuda.synchronize()
                                        times.append(slowest(time.perf_counter() - t0))
                                    sec = float(np.median(times[1:]))
                                    for t in (q, k, v):  # the context restores the buffers
                                        t.grad = None
                                        t.requires_grad_(False)
                        except Exception as e:  # a backend that refuses a shape is reported
                            if rank == 0:
                                print(f"torch_cp: {be} {rot} {ps} N={N} causal={causal}: "
                                      f"{type(e).__name__}: {str(e).splitlines()[0][:160]}",
                                      flush=True)
                            barrier()
                            continue
                        fl = attn_flops(B, H, N, d, causal, train)
                        name = f"torch-cp-{be}-{rot}" if world > 1 else f"torch-{be}"
                        tf = fl / sec / world / 1e12
                        results.append(dict(name=name, N=N, causal=causal, ps=ps, sec=sec, fl=fl,
                                            err=err, tf=tf))
                        if rank == 0:
                            print(f"{name:28s} P={world} N={N:7d} causal={causal} {ps:5s} "
                                  f"{sec * 1e3:9.2f} ms {tf:7.1f} TF/s per GPU  err {err:.1e}",
                                  flush=True)
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
                                     kv_heads=H, head_dim=d, causal=r["causal"], dtype="bf16",
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
