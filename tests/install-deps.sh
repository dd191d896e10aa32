#!/usr/bin/env bash
# Installs, up front, everything attnsim needs to build, run and test on Debian 12 / Ubuntu
# 24.04, with apt-get: compilers and libraries, Python with h5py/numpy/matplotlib, the
# formatter and fuzzing toolchain, and the one-node Slurm the tests start themselves (slurmctld,
# slurmd, munge, PMIx). Idempotent: installs only the packages that are missing and touches
# nothing when none is. On Ubuntu it enables the universe component when a package is only
# there (clang-14, Slurm). The Slurm and munge services it installs are neither started nor
# enabled at boot: the tests run their own daemons (tests/slurm/cluster.sh) and stop them.
set -euo pipefail
pkgs=(build-essential cmake git pkg-config
      openmpi-bin libopenmpi-dev
      libhdf5-dev hdf5-tools
      libgsl-dev
      python3 python3-h5py python3-numpy python3-matplotlib
      clang-format-14 clang-14 libclang-rt-14-dev
      slurmctld slurmd slurm-client munge libpmix-dev
      iproute2)  # ip and tc: the emulated cluster (experiments/emulated-cluster)
services=(munge slurmctld slurmd) # daemons of the packages above, never enabled by this script
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "install-deps: installing ${missing[*]} (apt-get; a minute or more)"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install-deps: run as root or install sudo" >&2; exit 1; }
  sudo=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq

# Ubuntu ships clang-14 and Slurm in universe: enable it when a package has no candidate
. "${ATTNSIM_OS_RELEASE:-/etc/os-release}"
if [ "${ID:-}" = ubuntu ]; then
  for p in "${missing[@]}"; do
    if ! apt-cache policy "$p" 2>/dev/null | grep -q 'Candidate: [^(]'; then
      echo "install-deps: $p is in Ubuntu's universe component: enabling it"
      command -v add-apt-repository >/dev/null ||
        $sudo apt-get install -y -qq --no-install-recommends software-properties-common >/dev/null
      $sudo add-apt-repository -y universe >/dev/null
      $sudo apt-get update -qq
      break
    fi
  done
fi

# the daemons' packages would start and enable their services: hold them off while installing
# (policy-rc.d, honoured by invoke-rc.d and deb-systemd-invoke), then disable them at boot
new_services=()
for s in "${services[@]}"; do
  for p in "${missing[@]}"; do [ "$p" = "$s" ] && new_services+=("$s"); done
done
policy=${ATTNSIM_POLICY_RC_D:-/usr/sbin/policy-rc.d} # (both variables: for tests/install_deps_test.py)
own_policy=0
if [ ${#new_services[@]} -gt 0 ] && [ ! -e "$policy" ]; then
  printf '#!/bin/sh\n# written by attnsim tests/install-deps.sh while it installs; removed after\nexit 101\n' |
    $sudo tee "$policy" >/dev/null
  $sudo chmod 755 "$policy"
  own_policy=1
fi
cleanup() { [ "$own_policy" -eq 1 ] && $sudo rm -f "$policy"; return 0; }
trap cleanup EXIT
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
for s in "${new_services[@]}"; do
  if command -v systemctl >/dev/null; then $sudo systemctl disable "$s" >/dev/null 2>&1 || true; fi
  if command -v update-rc.d >/dev/null; then $sudo update-rc.d "$s" disable >/dev/null 2>&1 || true; fi
done
[ ${#new_services[@]} -eq 0 ] ||
  echo "install-deps: ${new_services[*]}: installed, not started, not enabled at boot"
echo "install-deps: done"
