#!/usr/bin/env bash
# Decode kernels against PyTorch SDPA on this machine's GPU, in one process: builds attnsim with
# CUDA (build-gpu/), runs bench.py (attnsim's FA2-style decode, FlashDecoding and Lean Attention
# vs SDPA flash and cuDNN with GQA, every implementation checked before it is timed, all timed
# in CUDA graphs over rotated K/V copies, with the HBM read ceiling from the same run) and draws
# decode.png with the gallery. Needs a GPU, PyTorch with CUDA, h5py and matplotlib. Output:
# decode-peers.h5 and decode-peers-gallery/ in the current directory; extra arguments go to
# bench.py (e.g. --shapes 1:32:8:16k,1:8:8:1M).
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
"$py" experiments/decode-peers/bench.py --lib build-gpu/libattnsim_kc.so \
  --out "$here/decode-peers.h5" "$@"
"$py" plots/gallery.py "$here/decode-peers.h5" -o "$here/decode-peers-gallery"
