#!/usr/bin/env bash
# The Attention2D paper's study (Elango 2025, arXiv 2503.15758), predicted from first
# principles with `attnsim model`: one attention layer's training step (forward + backward) of
# GPT-3-like 760M, 2.7B and 13B models, sequence lengths 2^13 ... 2^17, on
#   16 and 64 A100 at 4 GPUs per node (preset a2d-paper-a100), and
#   64 H100 at 1 GPU per node (preset a2d-paper-h100);
# then prints the predicted A2D-NO and A2D-O speedup over Ring Attention per configuration.
#
# Assumptions (the paper's exact settings were not recovered):
# - model shapes from the GPT-3 paper (Brown et al. 2020, table 2.1): 760M: 16 heads of 96;
#   2.7B: 32 heads of 80; 13B: 40 heads of 128 (d_model 5140 in the table); multi-head
#   (kv-heads = heads), batch 1, bf16, causal (decoder) attention;
# - Ring Attention with the contiguous layout (Liu et al. 2023's original);
# - square grids: 4 x 4 for P = 16, 8 x 8 for P = 64;
# - links: NVLink3 300 GB/s per direction inside an A100 node, one HDR InfiniBand NIC
#   (25 GB/s) per A100 and one NDR NIC (50 GB/s) per H100 across nodes; message latencies
#   5 us intra-node, 10 us inter-node; attention sustains 60% of the bf16 peak
#   (models/machines/a2d-paper-*.machine).
# Usage: experiments/paper-a2d/run.sh [OUT.h5]   (default paper-a2d.h5 in the current directory)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
attnsim=${ATTNSIM:-$root/build/attnsim}
out=${1:-paper-a2d.h5}
[ -x "$attnsim" ] || { echo "paper-a2d: build attnsim first (cmake -S . -B build && cmake --build build), or set ATTNSIM" >&2; exit 2; }
py=python3
/usr/bin/python3 -c 'import h5py' 2>/dev/null && py=/usr/bin/python3
rm -f "$out"
seqs=8k,16k,32k,64k,128k
models=("760M 16 96" "2.7B 32 80" "13B 40 128")
for m in "${models[@]}"; do
  read -r name heads dim <<<"$m"
  for cluster in "a2d-paper-a100 16 4x4" "a2d-paper-a100 64 8x8" "a2d-paper-h100 64 8x8"; do
    read -r machine procs grid <<<"$cluster"
    "$attnsim" model --algo ring,a2d-no,a2d-o --layout contiguous --pass train --causal \
      --dtype bf16 --batch 1 --heads "$heads" --head-dim "$dim" --seq "$seqs" \
      --procs "$procs" --grid "$grid" --machine "$machine" --out "$out" >/dev/null
  done
done
"$py" "$here/summarize.py" "$out"
