#!/usr/bin/env bash
# The main job of the README: builds attnsim, measures this machine's CPU ranks (attnsim
# calibrate: links, kernels, memory; poor fits are reported), then runs Ring Attention against
# Attention2D (A2D-NO, A2D-O) on 4 MPI ranks - a causal training step (forward + backward),
# every output and gradient checked against a float64 single-device reference, every byte and
# message of every rank and phase compared with the model, every phase's time predicted on the
# calibrated machine - and writes out.h5, out.machine, out.png and the gallery out-gallery/
# (index.html) here, ending with the time model's error summary.
set -euo pipefail
here=$(pwd)
cd "$(dirname "$0")/.."
. experiments/setup.sh
rm -rf "$here/out.h5" "$here/out.machine" "$here/out.png" "$here/out-gallery"
root=()
[ "$(id -u)" -eq 0 ] && root=(--allow-run-as-root)
mpi=(mpirun "${root[@]}" --oversubscribe -n 4)
t0=$SECONDS
echo "== calibrating this machine's CPU ranks (about 15 s)"
"${mpi[@]}" build/attnsim calibrate --max-message 1M --machine-out "$here/out.machine" \
  --out "$here/out.h5"
echo "== Ring vs Attention2D on 4 ranks, checked, predicted on the calibrated machine (about 10 s)"
"${mpi[@]}" build/attnsim run --algo ring,a2d-no,a2d-o --pass train --causal --seq 1k \
  --heads 4 --head-dim 64 --reps 3 --check --machine "$here/out.machine" --out "$here/out.h5"
echo "== figures (about 10 s)"
"$py" plots/plot_run.py "$here/out.h5" -o "$here/out.png"
"$py" plots/gallery.py "$here/out.h5" -o "$here/out-gallery" --attnsim build/attnsim
"$py" plots/model_error.py "$here/out.h5"
echo "demo: done in $((SECONDS - t0)) s after the build: out.h5, out.machine, out.png," \
     "out-gallery/index.html"
