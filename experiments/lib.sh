# experiments/lib.sh - what every study script shares (sourced, bash).
#
# A study is a job script plus a sweep file (sweep.conf: one "key = value" per line, '#'
# comments; values are attnsim lists; read and checked by experiments/sweep.py, which also
# holds every study's keys and defaults). The script reads the sweep with `sweep KEY`,
# launches attnsim with `launch P ARGS...` (srun --mpi=pmix inside a Slurm job, mpirun
# outside), writes one HDF5 file per job named with the job id, and reports progress on stderr.
# Environment: ATTNSIM (the binary; default build/attnsim of the checkout), SWEEP (another
# sweep file), OUT_DIR (where the HDF5 file goes; default the submit directory).

# The checkout: this file's directory's parent (sbatch copies the job script, so the scripts
# find lib.sh through ATTNSIM_ROOT or the submit directory, then everything else from here).
ATTNSIM_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ATTNSIM=${ATTNSIM:-$ATTNSIM_ROOT/build/attnsim}
[ -x "$ATTNSIM" ] || { echo "experiments: no attnsim at $ATTNSIM (build it, or set ATTNSIM)" >&2; exit 2; }

# study_init NAME SWEEP_FILE: reads and checks the sweep file (experiments/sweep.py: unknown
# keys and bad values stop the job with one line, status 2), resolves backend/comm = auto
# (cuda + nccl where attnsim sees a GPU, else cpu + mpi), sets STUDY, SWEEP_FILE, OUT (the
# job's HDF5 file), NTASKS, GPUS_PER_NODE (what attnsim sees), LAUNCHER; prints a header.
study_init() {
  STUDY=$1
  SWEEP_FILE=${SWEEP:-$2}
  command -v python3 >/dev/null ||
    { echo "$STUDY: python3 is needed to read the sweep file (experiments/sweep.py)" >&2; exit 2; }
  local parsed
  parsed=$(python3 "$ATTNSIM_ROOT/experiments/sweep.py" "$STUDY" "$SWEEP_FILE") || exit 2
  eval "$parsed"
  local id=${SLURM_JOB_ID:-local-$(date +%Y%m%d-%H%M%S)}
  OUT=${OUT_DIR:-${SLURM_SUBMIT_DIR:-$PWD}}/$STUDY-$id.h5
  if [ -n "${SLURM_JOB_ID:-}" ] && command -v srun >/dev/null; then
    LAUNCHER=srun
    NTASKS=${SLURM_NTASKS:-1}
  else
    LAUNCHER=mpirun
    NTASKS=${NTASKS:-$(nproc)}
  fi
  # the GPUs attnsim can use on this node (built with CUDA, a driver, devices visible)
  GPUS_PER_NODE=$("$ATTNSIM" --version 2>/dev/null | grep -c '^GPU [0-9]' || true)
  local note=""
  if [ -n "${SWEEP_VALUES[backend]:-}" ]; then
    if [ "${SWEEP_VALUES[backend]}" = auto ]; then
      if [ "$GPUS_PER_NODE" -gt 0 ]; then SWEEP_VALUES[backend]=cuda; else SWEEP_VALUES[backend]=cpu; fi
      note=" (backend = auto)"
    fi
    if [ "${SWEEP_VALUES[comm]:-mpi}" = auto ]; then
      if [ "${SWEEP_VALUES[backend]}" = cuda ]; then SWEEP_VALUES[comm]=nccl; else SWEEP_VALUES[comm]=mpi; fi
    fi
    if [ "${SWEEP_VALUES[backend]}" = cuda ] && [ "$GPUS_PER_NODE" -eq 0 ]; then
      echo "$STUDY: backend = cuda, but attnsim sees no GPU on $(hostname) ($("$ATTNSIM" --version |
        grep -E '^(CUDA|GPU)' | tr '\n' ' ')); accepted here: backend = cpu or auto" >&2
      exit 2
    fi
    if [ "${SWEEP_VALUES[backend]}" = cuda ] && [[ ",${SWEEP_VALUES[dtype]}," == *,f32,* ]]; then
      echo "$STUDY: dtype = ${SWEEP_VALUES[dtype]}: the cuda backend runs f16 and bf16 only" >&2
      exit 2
    fi
    if [ "${SWEEP_VALUES[backend]}" = cpu ] && [ -n "${SLURM_GPUS_ON_NODE:-}" ] &&
       [ "${SLURM_GPUS_ON_NODE}" != 0 ]; then
      note="$note; Slurm gave $SLURM_GPUS_ON_NODE GPU(s) per node, attnsim sees none: CPU ranks"
    fi
  fi
  STUDY_T0=$(date +%s)
  echo "# $STUDY: job ${SLURM_JOB_ID:-(none)} on ${SLURM_JOB_NODELIST:-$(hostname)}, $NTASKS ranks," \
       "$GPUS_PER_NODE GPU(s) per node, backend ${SWEEP_VALUES[backend]:-cpu}, comm" \
       "${SWEEP_VALUES[comm]:-none}$note, launcher $LAUNCHER, sweep $SWEEP_FILE, output $OUT"
}

# sweep KEY: the value of KEY (the sweep file's, else the study's default: experiments/sweep.py).
sweep() {
  [ -n "${SWEEP_VALUES[$1]+set}" ] || { echo "$STUDY: no sweep key '$1' in this study" >&2; exit 2; }
  echo "${SWEEP_VALUES[$1]}"
}

# launch P ARGS...: attnsim ARGS on P ranks.
launch() {
  local p=$1
  shift
  if [ "$LAUNCHER" = srun ]; then
    srun --mpi=pmix -n "$p" "$ATTNSIM" "$@"
  else
    local root=()
    [ "$(id -u)" -eq 0 ] && root=(--allow-run-as-root)
    mpirun "${root[@]}" --oversubscribe -n "$p" "$ATTNSIM" "$@"
  fi
}

# procs_up_to N [squares]: 1 2 4 8 ... up to N (squares: 1 4 9 16 ... up to N).
procs_up_to() {
  local n=$1 p=1 s=1
  if [ "${2:-}" = squares ]; then
    while [ $((s * s)) -le "$n" ]; do echo $((s * s)); s=$((s + 1)); done
  else
    while [ "$p" -le "$n" ]; do echo "$p"; p=$((p * 2)); done
  fi
}

# progress DONE TOTAL: steps done, elapsed and estimated remaining time, on stderr.
progress() {
  local done=$1 total=$2 now el
  now=$(date +%s)
  el=$((now - STUDY_T0))
  echo "$STUDY: progress $done/$total steps, ${el} s elapsed, ~$(( done > 0 ? el * (total - done) / done : 0 )) s remaining" >&2
}

# study_python: sets PY to a Python with h5py, numpy and matplotlib (Debian installs them for
# /usr/bin/python3, which may not be the python3 on PATH); empty when there is none.
study_python() {
  PY=
  local c
  for c in python3 /usr/bin/python3; do
    if "$c" -c 'import h5py, numpy, matplotlib' 2>/dev/null; then PY=$c; return; fi
  done
}

# study_gallery: the job's figures (plots/gallery.py) in <output without .h5>-gallery/. A job
# whose runs are all written does not fail for want of a plotting library: it says so.
study_gallery() {
  study_python
  if [ -z "$PY" ]; then
    echo "# $STUDY: no gallery (no Python with h5py, numpy and matplotlib); later:" \
         "python3 plots/gallery.py $OUT" >&2
    return 0
  fi
  "$PY" "$ATTNSIM_ROOT/plots/gallery.py" "$OUT" -o "${OUT%.h5}-gallery" --attnsim "$ATTNSIM"
}
