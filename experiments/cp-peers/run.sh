#!/usr/bin/env bash
# attnsim's distributed attention on this node's GPUs (NCCL, one rank per GPU) against PyTorch
# context parallel on the same GPUs and shapes, in one job, one HDF5 file, one plot:
#   - with CALIBRATE=1 first `attnsim calibrate` on all the GPUs (links, the algorithms'
#     communication patterns on the grid, overlap, kernels, memory) writing OUT.machine, used by
#     what follows;
#   - `attnsim model` of every configuration below on this P, written to the file before any
#     run, so the prediction kept beside the measurements was made without them;
#   - attnsim run --backend cuda --comm nccl: Ring (contiguous, striped, zigzag), A2D-NO and
#     A2D-O (grid 1x2 on 2 GPUs, 2x2 on 4, 2x4 on 8), Ulysses; median of --reps 5 (counts
#     checked against the model on every run); the smallest N also with --check (CHECK=0: not);
#   - torch_cp.py under torchrun: context_parallel with SDPA cuDNN and flash, allgather and
#     alltoall rotation, and single-GPU SDPA (the baseline of the scaling efficiency);
#   - summarize.py: TF/s per GPU per shape and implementation, scaling efficiency, cp-peers.png;
#     plots/model_error.py: the time model's error per phase, OUT-parity.png.
# Shapes: B = 1, H = 32, K/V heads in KV_HEADS (default 32; e.g. 32,8), d = 128, bf16, N in SEQ
# (default 32k,128k), causal on and off, fwd and train (fwd + bwd). Needs the GPUs, PyTorch
# with CUDA, h5py, matplotlib, Open MPI and NCCL.
# Usage: experiments/cp-peers/run.sh [OUT.h5]
#   env: GPUS, SEQ, KV_HEADS, REPS, PASSES, CALIBRATE, MAX_MESSAGE (calibrate's largest
#   message, default 256M), CHECK, MACHINE (the model's machine when not calibrating, and the
#   base of the calibrated file; default dgx-h100)
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
kvs=${KV_HEADS:-32}
base=${MACHINE:-dgx-h100}
machine=$base
rm -f "$out"
case $gpus in 2) grid=1x2 ;; 4) grid=2x2 ;; 8) grid=2x4 ;; 9) grid=3x3 ;; *) grid=auto ;; esac
mpi=(mpirun -n "$gpus" --oversubscribe -x NCCL_NVLS_ENABLE -x LD_LIBRARY_PATH)
if [ "${CALIBRATE:-0}" = 1 ]; then
  machine=${out%.h5}.machine
  "${mpi[@]}" build-gpu/attnsim calibrate --backend cuda --comm nccl --grid "$grid" \
    --machine "$base" --max-message "${MAX_MESSAGE:-256M}" \
    --machine-out "$machine" --out "$out"
fi
small=${seq%%,*}
rest=${seq#"$small"}
rest=${rest#,}
shape=(--heads 32 --head-dim 128 --causal=both --dtype bf16 --machine "$machine")
# every configuration, one call of "$@" each: the prediction and the runs take the same list
each_config() {
  local kv pass layout
  for kv in ${kvs//,/ }; do
    for pass in ${passes//,/ }; do
      for layout in contiguous striped zigzag; do
        "$@" --algo ring --layout "$layout" --kv-heads "$kv" --pass "$pass" "${shape[@]}"
      done
      "$@" --algo a2d-no,a2d-o,ulysses --grid "$grid" --kv-heads "$kv" --pass "$pass" "${shape[@]}"
    done
  done
}
predict() {
  build-gpu/attnsim model --procs "$gpus" --seq "$seq" --out "$out" "$@" >/dev/null
}
# one launch per configuration and N group: the smallest N with --check, the others without
run() {
  local n check=()
  for n in "$small" "$rest"; do
    [ -n "$n" ] || continue
    check=()
    [ "$n" = "$small" ] && [ "${CHECK:-1}" = 1 ] && check=(--check)
    "${mpi[@]}" build-gpu/attnsim run --backend cuda --comm nccl --seq "$n" "${check[@]}" \
      --reps "$reps" --out "$out" "$@"
  done
}
each_config predict # the model's prediction of every run, written before any of them
each_config run
tr=("$py" -m torch.distributed.run --standalone)
"${tr[@]}" --nproc-per-node 1 experiments/cp-peers/torch_cp.py --out "$out" --seq "$seq" \
  --kv-heads "$kvs" --pass "$passes" --reps "$reps"
"${tr[@]}" --nproc-per-node "$gpus" experiments/cp-peers/torch_cp.py --out "$out" --seq "$seq" \
  --kv-heads "$kvs" --pass "$passes" --reps "$reps"
"$py" experiments/cp-peers/summarize.py "$out" -o "${out%.h5}.png"
"$py" plots/model_error.py "$out" -o "${out%.h5}-parity.png"
