#!/usr/bin/env bash
# The single-device kernel study on the CPU: builds attnsim and runs standard attention,
# FlashAttention-1 and -2 forward and FlashAttention-2 backward over N = 256 ... 2048, checked
# against a float64 reference, writing kernels.h5 and kernels.png here (HBM bytes vs N,
# measured against the kernel IO model).
set -euo pipefail
here=$(pwd)
cd "$(dirname "$0")/.."
. experiments/setup.sh
rm -f "$here/kernels.h5" "$here/kernels.png"
build/attnsim kernels --check --out "$here/kernels.h5"
"$py" plots/plot_kernels.py "$here/kernels.h5" -o "$here/kernels.png"
