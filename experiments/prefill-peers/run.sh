#!/usr/bin/env bash
# Prefill kernels against PyTorch SDPA on this machine's GPU, in one process: builds attnsim with
# CUDA (build-gpu/), runs bench.py (attnsim's FA2 forward and backward vs SDPA flash and cuDNN,
# every implementation checked before it is timed) and draws the comparison with the gallery.
# Needs a GPU, PyTorch with CUDA, h5py and matplotlib. Output: prefill-peers.h5 and
# prefill-peers-gallery/ (peers.png) in the current directory; extra arguments go to bench.py
# (e.g. --seq 4k,16k --head-dim 128).
set -euo pipefail
here=$(pwd)
cd "$(dirname "$0")/../.."
extra=()
[ -d .gsl/usr ] && extra=(-DGSL_ROOT_DIR="$PWD/.gsl/usr" -DCMAKE_PREFIX_PATH="$PWD/.gsl/usr")
gen=()
command -v ninja >/dev/null && gen=(-G Ninja)
cmake -S . -B build-gpu "${gen[@]}" -DATTNSIM_CUDA=ON "${extra[@]}" >/dev/null
cmake --build build-gpu -j"$(nproc)" --target attnsim_kc_shared >/dev/null
py=python3
python3 -c 'import torch, h5py' 2>/dev/null || py=/usr/bin/python3
"$py" experiments/prefill-peers/bench.py --lib build-gpu/libattnsim_kc.so \
  --out "$here/prefill-peers.h5" "$@"
"$py" plots/gallery.py "$here/prefill-peers.h5" -o "$here/prefill-peers-gallery"
