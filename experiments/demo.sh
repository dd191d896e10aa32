#!/usr/bin/env bash
# The main job of the README: builds attnsim and runs Ring Attention against Attention2D
# (A2D-NO, A2D-O) on 4 MPI ranks on this CPU - a causal training step (forward + backward),
# every output and gradient checked against a float64 single-device reference, every byte and
# message of every rank and phase compared with the model - writing out.h5, out.png and the
# gallery out-gallery/ (index.html) here.
set -euo pipefail
here=$(pwd)
cd "$(dirname "$0")/.."
. experiments/setup.sh
rm -rf "$here/out.h5" "$here/out.png" "$here/out-gallery"
root=()
[ "$(id -u)" -eq 0 ] && root=(--allow-run-as-root)
mpirun "${root[@]}" --oversubscribe -n 4 build/attnsim run --algo ring,a2d-no,a2d-o \
  --pass train --causal --seq 1k --heads 4 --head-dim 32 --check --out "$here/out.h5"
"$py" plots/plot_run.py "$here/out.h5" -o "$here/out.png"
"$py" plots/gallery.py "$here/out.h5" -o "$here/out-gallery" --attnsim build/attnsim
