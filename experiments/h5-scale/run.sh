#!/usr/bin/env bash
# The HDF5 writer at scale: appending cost vs file size, bytes per run, kill points of a
# 10,000-run sweep (experiments/h5-scale/bench.py says what and how; docs/performance.md keeps
# the figures). Re-run quietly: the timings are only comparable on an idle machine, and the
# script prints the load average it saw.
#
# Usage: experiments/h5-scale/run.sh [WORKDIR] [--quick] [--skip-kill]
#   WORKDIR   where the files go (default: a new directory under $TMPDIR or /tmp); its disk's
#             rate is measured; the 100,800-run file stays there (100k.h5, ~0.9 GB) for readers
#   ATTNSIM   the binary (default: build/attnsim of this checkout)
# Needs: a release build, Open MPI (mpirun), h5dump, and a Python with h5py and numpy.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
work=${1:-}
if [ -z "$work" ] || [ "${work#--}" != "$work" ]; then
  work=$(mktemp -d "${TMPDIR:-/tmp}/attnsim-h5-scale.XXXXXX")
else
  shift
fi
attnsim=${ATTNSIM:-$root/build/attnsim}
[ -x "$attnsim" ] || { echo "h5-scale: no attnsim at $attnsim (build it, or set ATTNSIM)" >&2; exit 2; }
py=
for c in python3 /usr/bin/python3; do
  if "$c" -c 'import h5py, numpy' 2>/dev/null; then py=$c; break; fi
done
[ -n "$py" ] || { echo "h5-scale: no Python with h5py and numpy" >&2; exit 2; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
exec "$py" "$here/bench.py" "$attnsim" "$work" "$@"
