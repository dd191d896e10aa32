#!/usr/bin/env bash
# attnsim's distributed attention on this node's GPUs (NCCL, one rank per GPU) against PyTorch
# context parallel on the same GPUs and shapes, in one job, one HDF5 file, one plot:
#   - attnsim run --backend cuda --comm nccl: Ring (contiguous, striped, zigzag), A2D-NO and
#     A2D-O (grid 1x2 on 2 GPUs, 2x2 on 4), Ulysses; median of --reps 5 (counts checked
#     against the model on every run);
#   - torch_cp.py under torchrun: context_parallel with SDPA cuDNN and flash, allgather and
#     alltoall rotation, and single-GPU SDPA (the baseline of the scaling efficiency);
#   - summarize.py: TF/s per GPU per shape and implementation, scaling efficiency, cp-peers.png.
# Shapes: B = 1, H = 32, d = 128, bf16, N in SEQ (default 32k,128k), causal on and off, fwd and
# train (fwd + bwd). Needs the GPUs, PyTorch with CUDA, h5py, matplotlib, Open MPI and NCCL.
# Usage: experiments/cp-peers/run.sh [OUT.h5]   (env: GPUS, SEQ, REPS, PASSES)
set -euo pipefail
out=$(realpath -m "${1:-cp-peers.h5}")
cd "$(dirname "$0")/../.."
export NCCL_NVLS_ENABLE=0 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
gpus=${GPUS:-$(nvidia-smi -L | grep -c '^GPU ')}
seq=${SEQ:-32k,128k}
reps=${REPS:-5}
passes=${PASSES:-fwd,train}
extra=()
[ -d .gsl/usr ] && extra=(-DGSL_ROOT_DIR="$PWD/.gsl/usr" -DCMAKE_PREFIX_PATH="$PWD/.gsl/usr") &&
  export LD_LIBRARY_PATH="$PWD/.gsl/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"
gen=()
command -v ninja >/dev/null && gen=(-G Ninja)
cmake -S . -B build-gpu "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DATTNSIM_CUDA=ON "${extra[@]}" >/dev/null
cmake --build build-gpu -j"$(nproc)" --target attnsim >/dev/null
py=python3
python3 -c 'import torch, h5py' 2>/dev/null || py=/usr/bin/python3
rm -f "$out"
case $gpus in 2) grid=1x2 ;; 4) grid=2x2 ;; 9) grid=3x3 ;; *) grid=auto ;; esac
mpi=(mpirun -n "$gpus" --oversubscribe -x NCCL_NVLS_ENABLE -x LD_LIBRARY_PATH)
for pass in ${passes//,/ }; do
  for layout in contiguous striped zigzag; do
    "${mpi[@]}" build-gpu/attnsim run --backend cuda --comm nccl --algo ring --layout "$layout" \
      --seq "$seq" --heads 32 --head-dim 128 --causal=both --pass "$pass" --dtype bf16 \
      --reps "$reps" --out "$out"
  done
  "${mpi[@]}" build-gpu/attnsim run --backend cuda --comm nccl --algo a2d-no,a2d-o,ulysses \
    --grid "$grid" --seq "$seq" --heads 32 --head-dim 128 --causal=both --pass "$pass" \
    --dtype bf16 --reps "$reps" --out "$out"
done
tr=("$py" -m torch.distributed.run --standalone)
"${tr[@]}" --nproc-per-node 1 experiments/cp-peers/torch_cp.py --out "$out" --seq "$seq" \
  --pass "$passes" --reps "$reps"
"${tr[@]}" --nproc-per-node "$gpus" experiments/cp-peers/torch_cp.py --out "$out" --seq "$seq" \
  --pass "$passes" --reps "$reps"
"$py" experiments/cp-peers/summarize.py "$out" -o "${out%.h5}.png"
