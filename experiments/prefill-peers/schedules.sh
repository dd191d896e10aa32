#!/usr/bin/env bash
# The Hopper forward's schedules (ATTNSIM_KC_FWD, kernels/cuda/kc_fa3_fwd.cu) on this machine's
# GPU: test_cuda_kernels under each schedule (in parallel; a schedule that fails or hangs is
# left out and named), then bench.py with every passing schedule as a --variant, so each is
# timed against the default forward and SDPA flash and cuDNN in one process. Builds the two
# targets into --build DIR (default build-gpu) when they are not there.
#
# Usage: schedules.sh [--build DIR] [--logs DIR] NAME=SETTING ... [-- bench.py arguments]
#   e.g. schedules.sh ws=ws pp=persistent+pingpong -- --pass fwd --seq 1k,4k,16k
set -uo pipefail
cd "$(dirname "$0")/../.."
build=build-gpu logs=.
while [ $# -gt 0 ]; do
  case "$1" in
  --build) build=$2; shift 2 ;;
  --logs) logs=$2; shift 2 ;;
  --) shift; break ;;
  *=*) scheds+=("$1"); shift ;;
  *) echo "schedules.sh: unknown argument '$1' (expected --build DIR, --logs DIR, NAME=SETTING or --)" >&2; exit 2 ;;
  esac
done
[ ${#scheds[@]} -gt 0 ] || { echo "schedules.sh: name at least one NAME=SETTING" >&2; exit 2; }
mkdir -p "$logs"
if [ ! -x "$build/tests/test_cuda_kernels" ] || [ ! -f "$build/libattnsim_kc.so" ]; then
  extra=()
  [ -d .gsl/usr ] && extra=(-DGSL_ROOT_DIR="$PWD/.gsl/usr" -DCMAKE_PREFIX_PATH="$PWD/.gsl/usr")
  cmake -S . -B "$build" -G Ninja -DATTNSIM_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90a \
    "${extra[@]}" >"$logs/cmake.log" 2>&1 &&
    cmake --build "$build" -j"$(nproc)" --target attnsim_kc_shared test_cuda_kernels \
      >"$logs/build.log" 2>&1 || { echo "schedules.sh: build failed ($logs/build.log)" >&2; exit 1; }
fi
pids=()
for s in "${scheds[@]}"; do
  ATTNSIM_KC_FWD=${s#*=} timeout 150 "$build/tests/test_cuda_kernels" >"$logs/test-${s%%=*}.log" 2>&1 &
  pids+=($!)
done
variants=()
for i in "${!scheds[@]}"; do
  s=${scheds[$i]}
  if wait "${pids[$i]}"; then
    variants+=(--variant "$s")
    echo "schedules.sh: ${s%%=*} (${s#*=}): $(tail -1 "$logs/test-${s%%=*}.log")"
  else
    echo "schedules.sh: ${s%%=*} (${s#*=}) FAILED the tests, not timed: $(tail -3 "$logs/test-${s%%=*}.log")"
  fi
done
py=python3
python3 -c 'import torch, h5py' 2>/dev/null || py=/usr/bin/python3
PYTHONUNBUFFERED=1 "$py" experiments/prefill-peers/bench.py --lib "$build/libattnsim_kc.so" \
  --out "$logs/schedules.h5" "${variants[@]}" "$@"
