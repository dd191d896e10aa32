#!/usr/bin/env bash
# Tears an emulated cluster down (up.sh): every process inside its namespaces (the Slurm
# daemons first, by their pid files, then any rank, orted or job step left), every namespace
# (with them their veth links, the bridge and the qdiscs), the UTS namespace files and the state
# directory. Safe to run on a cluster that is half up, or not up at all. Then checks that none
# of it is left, and fails naming what is.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/lib.sh"
cluster_check_name
[ "$(id -u)" -eq 0 ] || cluster_die "needs root"

# the cluster's namespaces: NAME-head and NAME-n<k> (also those of a half-made cluster)
our_ns() { ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^$CLUSTER_NAME-(head|n[0-9]+)$" || true; }

if [ -d "$CLUSTER_STATE/slurm" ]; then
  "$here/../../tests/slurm/cluster.sh" stop "$CLUSTER_STATE/slurm"
fi
# processes still inside (started by the scripts or by jobs on the nodes): TERM, then KILL
for sig in TERM KILL; do
  pids=""
  for ns in $(our_ns); do pids+=" $(ip netns pids "$ns" 2>/dev/null | tr '\n' ' ')"; done
  pids=$(echo $pids)
  [ -z "$pids" ] && break
  kill -s $sig $pids 2>/dev/null || true
  for _ in $(seq 30); do
    alive=""
    for p in $pids; do kill -0 "$p" 2>/dev/null && alive+=" $p"; done
    [ -z "$alive" ] && break
    sleep 0.1
  done
done
for ns in $(our_ns); do ip netns del "$ns"; done
if [ -d "$CLUSTER_STATE/uts" ]; then
  for f in "$CLUSTER_STATE"/uts/*; do
    [ -e "$f" ] || continue
    umount "$f" 2>/dev/null || true
  done
fi
rm -rf "$CLUSTER_STATE"
rmdir "$(dirname "$CLUSTER_STATE")" 2>/dev/null || true

left=$(our_ns | tr '\n' ' ')
[ -e "$CLUSTER_STATE" ] && left+=" $CLUSTER_STATE"
if [ -n "${left// /}" ]; then
  echo "emulated-cluster: down.sh could not remove: $left" >&2
  exit 1
fi
echo "emulated-cluster: $CLUSTER_NAME down"
