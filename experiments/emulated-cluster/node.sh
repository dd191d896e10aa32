#!/usr/bin/env bash
# Runs a command on a node of the emulated cluster: inside the node's network and UTS
# namespaces (its own interfaces and host name), with the cluster's Open MPI settings and
# SLURM_CONF in the environment.
#   node.sh NODE COMMAND [ARGS...]     NODE: head, n0, n1, ...
#   node.sh --rsh NODE COMMAND-LINE    Open MPI's launch agent (plm_rsh_agent): the command line
#                                      is one shell string, as ssh takes it
# Environment: CLUSTER_NAME (default attnsim), CLUSTER_STATE (see lib.sh).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
rsh=0
if [ "${1:-}" = --rsh ]; then
  rsh=1
  shift
fi
[ $# -ge 2 ] || cluster_die "usage: node.sh [--rsh] NODE COMMAND [ARGS...] (NODE: head, n0, n1, ...)"
node=$1
shift
cluster_check_name
cluster_load
[[ $node =~ ^(head|n[0-9]+)$ ]] && [ -e "$CLUSTER_NETNS/$CLUSTER_NAME-$node" ] ||
  cluster_die "no node '$node' in cluster '$CLUSTER_NAME'; accepted: head, n0 ... n$((CLUSTER_NODES - 1))"
eval "$(cluster_mca_env)"
export CLUSTER_NAME CLUSTER_STATE
[ -f "$CLUSTER_STATE/slurm/slurm.conf" ] && export SLURM_CONF=$CLUSTER_STATE/slurm/slurm.conf
enter=(nsenter "--net=$CLUSTER_NETNS/$CLUSTER_NAME-$node" "--uts=$CLUSTER_STATE/uts/$node" --)
if [ $rsh = 1 ]; then
  exec "${enter[@]}" /bin/sh -c "$*"
fi
exec "${enter[@]}" "$@"
