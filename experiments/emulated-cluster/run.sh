#!/usr/bin/env bash
# The emulated-cluster study (as root): for every cluster shape and link regime, brings the
# emulated cluster up (up.sh), calibrates across its nodes (the intra- and inter-node tiers, the
# NIC's rate and how many ranks share it), then runs Ring (every layout), A2D-NO, A2D-O,
# Ulysses and the hybrid (Ulysses groups of a node's ranks), fwd and train, with the predictions taken from that calibrated machine file; finally
# tears the cluster down and prints the time model's error by run, tier and phase pattern
# (plots/model_error.py). Every run goes into OUT.h5; each calibrated machine file is written
# next to it (OUT-SHAPE-REGIME.machine).
#   run.sh OUT.h5
# Environment (defaults in brackets):
#   SHAPES          cluster shapes, NODESxRANKS_PER_NODE ["2x2 4x1"; add 4x2 where 8 cores are]
#   REGIMES         link regimes ["comm compute"]:
#                   comm:    links RATE_COMM [100mbit], N = SEQ_COMM [512]: the links dominate
#                   compute: links RATE_COMPUTE [2gbit], N = SEQ_COMPUTE [4096]: compute does
#   PASSES          ["fwd train"]
#   HEADS, HEAD_DIM [4, 64] (kv-heads = heads; causal; f32; the cpu backend)
#   REPS            repetitions of each run, the median recorded [1]
#   MAX_MESSAGE     calibrate's largest message [256M; sizes stop once one takes 0.25 s]
#   CLUSTER_NAME, CLUSTER_SUBNET  [attnsimrun, 198.18.44]; ATTNSIM (the binary; default: build/
#                   attnsim, built with experiments/setup.sh when missing)
# The cluster is torn down on every exit, also a failed or interrupted one. On a quiet machine
# with more cores the figures are less noisy; the machine's load is printed with every step.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${1:?usage: run.sh OUT.h5}
case $out in *.h5) ;; *) echo "run.sh: '$out' does not end in .h5; accepted: OUT.h5" >&2; exit 2 ;; esac
out=$(cd "$(dirname "$out")" && pwd)/$(basename "$out")
[ "$(id -u)" -eq 0 ] || { echo "run.sh: needs root (network namespaces)" >&2; exit 2; }
export CLUSTER_NAME=${CLUSTER_NAME:-attnsimrun} CLUSTER_SUBNET=${CLUSTER_SUBNET:-198.18.44}
export CLUSTER_SLURM=0
shapes=${SHAPES:-2x2 4x1} regimes=${REGIMES:-comm compute} passes=${PASSES:-fwd train}
heads=${HEADS:-4} dim=${HEAD_DIM:-64} reps=${REPS:-1} max_message=${MAX_MESSAGE:-256M}
for s in $shapes; do
  [[ $s =~ ^[0-9]+x[0-9]+$ ]] || { echo "run.sh: shape '$s': accepted: NODESxRANKS, e.g. 2x2" >&2; exit 2; }
done
for r in $regimes; do
  case $r in comm|compute) ;; *) echo "run.sh: regime '$r': accepted: comm, compute" >&2; exit 2 ;; esac
done
if [ -z "${ATTNSIM:-}" ]; then
  (cd "$root" && source experiments/setup.sh)
  ATTNSIM=$root/build/attnsim
fi
[ -x "$ATTNSIM" ] || { echo "run.sh: no attnsim at $ATTNSIM" >&2; exit 2; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
trap '"$here/down.sh" >/dev/null || echo "run.sh: down.sh failed" >&2' EXIT
"$here/down.sh" >/dev/null # a cluster of this name left by an earlier, killed run
t0=$(date +%s)
step() { echo "# run.sh: $* ($(( $(date +%s) - t0 )) s, load $(cut -d' ' -f1-3 /proc/loadavg))"; }
show() { grep -E "$1" || true; } # the lines worth seeing (a failed attnsim still fails the pipe)

for s in $shapes; do
  nodes=${s%x*} per=${s#*x}
  P=$((nodes * per))
  hosts=$(for ((k = 0; k < nodes; k++)); do printf 'n%d:%d,' "$k" "$per"; done)
  hosts=${hosts%,}
  for r in $regimes; do
    if [ "$r" = comm ]; then rate=${RATE_COMM:-100mbit} seq=${SEQ_COMM:-512}; else
      rate=${RATE_COMPUTE:-2gbit} seq=${SEQ_COMPUTE:-4096}; fi
    CLUSTER_NODES=$nodes CLUSTER_SLOTS=$per CLUSTER_RATE=$rate "$here/up.sh"
    machine=${out%.h5}-$s-$r.machine
    mpi=("$here/node.sh" n0 mpirun --host "$hosts" -n "$P")
    step "$s, $r regime, links $rate: calibrate"
    "${mpi[@]}" "$ATTNSIM" calibrate --max-message "$max_message" --machine-out "$machine" \
      --out "$out" | show '^#|ring shift|ping-pong|shift, 1/node|NIC|from '
    grid=()
    sq=1
    while [ $((sq * sq)) -lt "$P" ]; do sq=$((sq + 1)); done
    [ $((sq * sq)) -eq "$P" ] || grid=(--grid auto) # Attention2D: square grids where P is a square
    run=("${mpi[@]}" "$ATTNSIM" run --seq "$seq" --heads "$heads" --head-dim "$dim" --causal
         "${grid[@]}" --reps "$reps" --machine "$machine" --out "$out")
    algos=ring,a2d-no,a2d-o
    [ "$heads" -ge "$P" ] && algos+=,ulysses
    [ "$heads" -ge "$per" ] && algos+=,hybrid # Ulysses in a node's ranks, Ring across the nodes
    for pass in $passes; do
      step "$s, $r regime, links $rate: N = $seq, $pass"
      for layout in striped zigzag; do
        "${run[@]}" --pass "$pass" --algo ring --layout "$layout" | show '^# (ring|tiers|warning)'
      done
      "${run[@]}" --pass "$pass" --algo "$algos" --layout contiguous |
        show '^# (ring|a2d|ulysses|hybrid|tiers|warning)'
    done
  done
  "$here/down.sh"
done
step "done"
py=python3
/usr/bin/python3 -c 'import h5py, numpy' 2>/dev/null && py=/usr/bin/python3
if "$py" -c 'import h5py, numpy' 2>/dev/null; then
  "$py" "$root/plots/model_error.py" "$out"
else
  echo "# run.sh: no Python with h5py and numpy: later, python3 plots/model_error.py $out"
fi
echo "# run.sh: wrote $out"
