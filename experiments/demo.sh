#!/usr/bin/env bash
# The main job of the README: builds attnsim and runs the single-device kernel study on the CPU
# (standard attention, FlashAttention-1 and -2 forward, FlashAttention-2 backward over
# N = 256 ... 2048, checked against a float64 reference), writing out.h5 and out.png here.
set -euo pipefail
here=$(pwd)
cd "$(dirname "$0")/.."
tests/install-deps.sh
cmake -S . -B build >/dev/null
cmake --build build -j"$(nproc)" >/dev/null
py=python3
/usr/bin/python3 -c 'import h5py, matplotlib' 2>/dev/null && py=/usr/bin/python3
rm -f "$here/out.h5" "$here/out.png"
build/attnsim kernels --check --out "$here/out.h5"
"$py" plots/plot_kernels.py "$here/out.h5" -o "$here/out.png"
