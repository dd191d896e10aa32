#!/usr/bin/env bash
# Installs what attnsim needs to build, run and test on Debian 12 / Ubuntu 24.04, with apt-get.
# Idempotent: installs only the packages that are missing, and touches nothing when none is.
set -euo pipefail
pkgs=(build-essential cmake git pkg-config
      openmpi-bin libopenmpi-dev
      libhdf5-dev hdf5-tools
      libgsl-dev
      python3 python3-h5py python3-numpy python3-matplotlib
      clang-format-14 clang-14 libclang-rt-14-dev
      iproute2)  # ip and tc: the emulated cluster (experiments/emulated-cluster)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install-deps: run as root or install sudo" >&2; exit 1; }
  sudo=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
