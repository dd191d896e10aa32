#!/usr/bin/env bash
# Validates the time model where it runs: calibrates for the configured runs (their patterns up
# to their largest message, the NICs, the overlap, the kernels), runs them predicted with the
# calibrated machine file (every overlapped step timed, and once more with its transfers alone:
# --overlap-probe), and prints the model's error (plots/model_error.py: whole runs, phases by
# pattern and by tier, beside the one-rate-per-tier model with ideal overlap on the same runs)
# with a parity plot and a bar chart. Re-runnable: every run appends to OUT_DIR/NAME.h5 (removed
# first), the machine file is OUT_DIR/NAME.machine; the load average is printed at every step,
# so a figure measured on a busy machine says so.
#
#   validate.sh cpu       P ranks of this host (mpirun; one per core is best)
#   validate.sh cluster   an emulated cluster (experiments/emulated-cluster, as root): NODES
#                         nodes of SLOTS ranks joined by RATE links, brought up and torn down
#   validate.sh gpu1      one GPU shared by 4 ranks: --backend cuda --comm mpi (host-staged MPI);
#                         about 5 minutes on one H100
#   validate.sh gpu       one rank per GPU of this node (P = the GPUs): --backend cuda --comm nccl
#
# Environment (defaults per mode in brackets, cpu / cluster / gpu1):
#   OUT_DIR   [.]                    NAME    [validate-MODE]
#   P         [2 / NODES*SLOTS / 4 / the GPUs]  NODES, SLOTS, RATE  [cluster: 2, 2, 1gbit]
#   SEQ       [1k,2k / 1k,2k / 8k,16k / 32k,64k]   PASSES [fwd,train]   COMM [gpu1: mpi, gpu: nccl]
#   HEADS     [4 / 4 / 32]   KV_HEADS [HEADS]   HEAD_DIM [32 / 32 / 128]   DTYPE [f32 / f32 / bf16]
#   ALGOS     [ring,a2d-no,a2d-o, and ulysses where KV_HEADS >= P]   LAYOUTS [contiguous,zigzag]
#   GRID      [the square grid, else auto]   REPS [3]   MIN_RUN_MS [50]
#   BASE      [dgx-h100 / dgx-h100 / dev-h100 / dev-4gpu]  (what calibrate cannot measure)
#   ATTNSIM   [build/attnsim]
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
mode=${1:-}
case $mode in cpu | cluster | gpu1 | gpu) ;; *)
  echo "validate.sh: mode '${mode}': accepted: cpu, cluster, gpu1, gpu" >&2
  exit 2
  ;;
esac
attnsim=${ATTNSIM:-$root/build/attnsim}
[ -x "$attnsim" ] || { echo "validate.sh: no attnsim at $attnsim (build it, or set ATTNSIM)" >&2; exit 2; }
py=python3
/usr/bin/python3 -c 'import h5py, matplotlib' 2>/dev/null && py=/usr/bin/python3
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
out_dir=$(cd "${OUT_DIR:-.}" && pwd)
name=${NAME:-validate-$mode}
h5=$out_dir/$name.h5 machine=$out_dir/$name.machine
rm -f "$h5" "$machine"
t0=$(date +%s)
step() { echo "# validate.sh $mode: $* ($(($(date +%s) - t0)) s, load $(cut -d' ' -f1-3 /proc/loadavg))"; }

case $mode in
cpu)
  P=${P:-2} seq=${SEQ:-1k,2k} heads=${HEADS:-4} dim=${HEAD_DIM:-32} dtype=${DTYPE:-f32}
  base=${BASE:-dgx-h100}
  over=()
  [ "$P" -gt "$(nproc)" ] && over=(--oversubscribe)
  mpi=(mpirun -n "$P" "${over[@]}")
  backend=(--backend cpu --comm mpi)
  ;;
cluster)
  nodes=${NODES:-2} slots=${SLOTS:-2} rate=${RATE:-1gbit}
  P=${P:-$((nodes * slots))} seq=${SEQ:-1k,2k} heads=${HEADS:-4} dim=${HEAD_DIM:-32}
  dtype=${DTYPE:-f32} base=${BASE:-dgx-h100}
  export CLUSTER_NAME=${CLUSTER_NAME:-validate} CLUSTER_SUBNET=${CLUSTER_SUBNET:-198.18.46}
  export CLUSTER_SLURM=0 CLUSTER_NODES=$nodes CLUSTER_SLOTS=$slots CLUSTER_RATE=$rate
  cl=$root/experiments/emulated-cluster
  trap '"$cl/down.sh" >/dev/null || echo "validate.sh: down.sh failed" >&2' EXIT
  "$cl/down.sh" >/dev/null
  "$cl/up.sh"
  hosts=$(for ((k = 0; k < nodes; k++)); do printf 'n%d:%d,' "$k" "$slots"; done)
  mpi=("$cl/node.sh" n0 mpirun --host "${hosts%,}" -n "$P")
  backend=(--backend cpu --comm mpi)
  ;;
gpu1)
  P=${P:-4} seq=${SEQ:-8k,16k} heads=${HEADS:-32} dim=${HEAD_DIM:-128} dtype=${DTYPE:-bf16}
  base=${BASE:-dev-h100}
  mpi=(mpirun -n "$P" --oversubscribe)
  backend=(--backend cuda --comm "${COMM:-mpi}")
  ;;
gpu)
  P=${P:-$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)}
  [ "${P:-0}" -ge 1 ] || { echo "validate.sh: no GPU found (nvidia-smi -L); set P" >&2; exit 2; }
  seq=${SEQ:-32k,64k} heads=${HEADS:-32} dim=${HEAD_DIM:-128} dtype=${DTYPE:-bf16}
  base=${BASE:-dev-4gpu}
  mpi=(mpirun -n "$P" -x NCCL_NVLS_ENABLE=0)
  backend=(--backend cuda --comm "${COMM:-nccl}")
  ;;
esac
kv=${KV_HEADS:-$heads} passes=${PASSES:-fwd,train} reps=${REPS:-3}
algos=${ALGOS:-ring,a2d-no,a2d-o}
[ -z "${ALGOS:-}" ] && [ "$kv" -ge "$P" ] && algos+=,ulysses
side=$("$py" -c "import math; s = math.isqrt($P); print(s if s * s == $P else 0)")
grid=${GRID:-$([ "$side" -gt 0 ] && echo "${side}x${side}" || echo auto)}
shape=(--seq "$seq" --heads "$heads" --kv-heads "$kv" --head-dim "$dim" --dtype "$dtype"
       --batch 1 --grid "$grid")
step "$P ranks, ${backend[*]}, N = $seq, H = $heads, kv-heads $kv, d = $dim, $dtype: calibrate"
"${mpi[@]}" "$attnsim" calibrate "${backend[@]}" --machine "$base" --algo "$algos" \
  --pass train "${shape[@]}" --machine-out "$machine" --out "$h5" |
  grep -vE '^  (measured|f16|bf16|f32) ' || true
[ -s "$machine" ] || { echo "validate.sh: calibrate wrote no machine file" >&2; exit 1; }
for pass in ${passes//,/ }; do
  IFS=, read -ra lays <<<"${LAYOUTS:-contiguous,zigzag}"
  for layout in "${lays[@]}"; do
    step "run ring ($layout), $pass"
    "${mpi[@]}" "$attnsim" run "${backend[@]}" --algo ring --layout "$layout" --pass "$pass" \
      --causal "${shape[@]}" --reps "$reps" --overlap-probe --machine "$machine" --out "$h5" |
      grep -E '^# (ring|warning)|overlap|tier' || true
  done
  others=${algos/ring/}
  others=${others#,}
  others=${others//,,/,}
  if [ -n "$others" ]; then
    step "run $others, $pass"
    "${mpi[@]}" "$attnsim" run "${backend[@]}" --algo "$others" --pass "$pass" --causal \
      "${shape[@]}" --reps "$reps" --overlap-probe --machine "$machine" --out "$h5" |
      grep -E '^# (a2d|ulysses|warning)|overlap|tier' || true
  fi
done
step "model error (runs of at least ${MIN_RUN_MS:-50} ms)"
"$py" "$root/plots/model_error.py" "$h5" --min-run-ms "${MIN_RUN_MS:-50}" \
  -o "$out_dir/$name-parity.png" --bars "$out_dir/$name-bars.png"
step "done: $h5, $machine"
