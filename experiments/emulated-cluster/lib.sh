# experiments/emulated-cluster/lib.sh - what up.sh, down.sh, node.sh and run.sh share (sourced).
#
# An emulated cluster is named (CLUSTER_NAME, default attnsim): its namespaces are
# NAME-head (the switch: a bridge, and the head node's slurmctld and munged) and NAME-n0 ...
# NAME-n<N-1> (the compute nodes); its files live under CLUSTER_STATE
# (/run/attnsim-cluster/NAME). up.sh records the settings it used in CLUSTER_STATE/settings;
# the other scripts read them from there, so a cluster is torn down or entered with the
# settings it was made with.
#
# Settings (environment; up.sh only):
#   CLUSTER_NODES   compute nodes (default 2, at most 32)
#   CLUSTER_SLOTS   ranks per node: mpirun slots and Slurm CPUs (default 2)
#   CLUSTER_RATE    inter-node link rate of each node, tc syntax (default 1gbit)
#   CLUSTER_DELAY   one-way delay added to each node's link, tc netem syntax (default 0; needs
#                   the kernel's netem qdisc)
#   CLUSTER_SUBNET  the private /24, as its first three octets (default 198.18.42, inside
#                   198.18.0.0/15, which RFC 2544 reserves for network benchmarks)
#   CLUSTER_SLURM   1 (default): also start munged, slurmctld and one slurmd per node

CLUSTER_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CLUSTER_NAME=${CLUSTER_NAME:-attnsim}
CLUSTER_STATE=${CLUSTER_STATE:-/run/attnsim-cluster/$CLUSTER_NAME}
CLUSTER_NETNS=/run/netns

cluster_die() {
  echo "emulated-cluster: $*" >&2
  exit 2
}

# cluster_check_name: the name makes namespace and interface names; keep it short and plain.
cluster_check_name() {
  [[ $CLUSTER_NAME =~ ^[a-z][a-z0-9]{0,11}$ ]] ||
    cluster_die "CLUSTER_NAME '$CLUSTER_NAME': accepted: a lower-case letter, then up to 11 letters or digits"
}

# cluster_load: the settings the cluster was brought up with (fails when it is not up).
cluster_load() {
  [ -r "$CLUSTER_STATE/settings" ] ||
    cluster_die "cluster '$CLUSTER_NAME' is not up (no $CLUSTER_STATE/settings); start it with up.sh"
  # shellcheck source=/dev/null
  source "$CLUSTER_STATE/settings"
}

# cluster_nodes: the compute node names, n0 ... n<N-1>.
cluster_nodes() {
  local k
  for ((k = 0; k < CLUSTER_NODES; k++)); do echo "n$k"; done
}

# cluster_addr NODE: the node's address (head: .1; node k: .(11 + k)).
cluster_addr() {
  case $1 in
    head) echo "$CLUSTER_SUBNET.1" ;;
    n*) echo "$CLUSTER_SUBNET.$((11 + ${1#n}))" ;;
  esac
}

# cluster_mca_env: the Open MPI settings that keep every rank on the cluster's own network (and
# on nothing else), as `export` lines: TCP and shared memory only, TCP and the runtime's
# out-of-band channel on the private subnet, launch through node.sh by the rsh launcher (named:
# a machine may preset another, e.g. OMPI_MCA_plm=isolated, which starts every rank on the
# local node and answers --host n0:2,n1:2 with "not enough slots"), no core binding (nodes
# share the cores of one machine), waiting ranks yield their core, and two TCP connections per
# pair of ranks (Open MPI 4.1 moved large messages exchanged both ways at once over one
# connection at half the link's rate in each direction: 31 MB/s on a 500 Mbit/s link; over two,
# 60 MB/s); the runtime notices a node it cannot reach within ~15 s of silence (TCP keepalive
# probes on its daemons' connections, instead of after 5 minutes).
cluster_mca_env() {
  cat <<ENV
export OMPI_MCA_btl=self,vader,tcp
export OMPI_MCA_btl_tcp_if_include=$CLUSTER_SUBNET.0/24
export OMPI_MCA_oob_tcp_if_include=$CLUSTER_SUBNET.0/24
export OMPI_MCA_plm=rsh
export OMPI_MCA_plm_rsh_agent="$CLUSTER_DIR/node.sh --rsh"
export OMPI_MCA_hwloc_base_binding_policy=none
export OMPI_MCA_mpi_yield_when_idle=1
export OMPI_MCA_pml=ob1
export OMPI_MCA_btl_tcp_links=2
export OMPI_MCA_oob_tcp_keepalive_time=5
export OMPI_MCA_oob_tcp_keepalive_intvl=2
export OMPI_MCA_oob_tcp_keepalive_probes=5
ENV
}
