#!/usr/bin/env bash
# Brings up an emulated cluster on this Linux machine (as root): CLUSTER_NODES compute nodes,
# each a network namespace with its own UTS namespace (host name n0, n1, ...), joined by veth
# pairs to a bridge in a head namespace; each node's link shaped with tc (CLUSTER_RATE, and
# CLUSTER_DELAY where the kernel has netem) in both directions: one qdisc per direction and node,
# a NIC that the node's ranks share. With CLUSTER_SLURM=1 also munged and slurmctld on the head
# and one slurmd per node (tests/slurm/cluster.sh). Settings: lib.sh.
#
# Nothing of it touches the host's own network: the namespaces have no route out, and their
# only addresses are in the private subnet, which must be unused (checked: addresses and routes
# of the host and of every other namespace). Idempotent: when the cluster is up with the same
# nodes, slots, subnet and Slurm, it checks its parts and applies the rate and delay given (so
# `CLUSTER_RATE=100mbit up.sh` reshapes a running cluster); other settings need down.sh first.
# A failed up.sh removes everything it made (down.sh; CLUSTER_FAIL_AT=end makes it fail with
# every part up, for the tests).
#   up.sh            then: experiments/emulated-cluster/node.sh n0 mpirun --host n0:2,n1:2 ...
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/lib.sh"
cluster_check_name
want_nodes=${CLUSTER_NODES:-2} want_slots=${CLUSTER_SLOTS:-2} want_subnet=${CLUSTER_SUBNET:-198.18.42}
want_slurm=${CLUSTER_SLURM:-1} want_rate=${CLUSTER_RATE:-1gbit} want_delay=${CLUSTER_DELAY:-0}

[[ $want_nodes =~ ^[0-9]+$ ]] && [ "$want_nodes" -ge 1 ] && [ "$want_nodes" -le 32 ] ||
  cluster_die "CLUSTER_NODES '$want_nodes': accepted: 1 ... 32"
[[ $want_slots =~ ^[0-9]+$ ]] && [ "$want_slots" -ge 1 ] && [ "$want_slots" -le 64 ] ||
  cluster_die "CLUSTER_SLOTS '$want_slots': accepted: 1 ... 64"
[[ $want_rate =~ ^[0-9]+(\.[0-9]+)?(k|m|g)?bit$ ]] ||
  cluster_die "CLUSTER_RATE '$want_rate': accepted: a rate in tc syntax, NUMBER followed by bit, kbit, mbit or gbit"
[[ $want_delay =~ ^(0|[0-9]+(\.[0-9]+)?(us|ms))$ ]] ||
  cluster_die "CLUSTER_DELAY '$want_delay': accepted: 0, or NUMBER followed by us or ms"
[[ $want_slurm =~ ^[01]$ ]] || cluster_die "CLUSTER_SLURM '$want_slurm': accepted: 0 or 1"
IFS=. read -r o1 o2 o3 extra <<<"$want_subnet"
[[ "$o1.$o2.$o3" = "$want_subnet" && -z ${extra:-} && $o1 =~ ^[0-9]+$ && $o2 =~ ^[0-9]+$ &&
   $o3 =~ ^[0-9]+$ && $o1 -le 255 && $o2 -le 255 && $o3 -le 255 ]] ||
  cluster_die "CLUSTER_SUBNET '$want_subnet': accepted: the first three octets of a /24, e.g. 198.18.42"
[ "$(id -u)" -eq 0 ] || cluster_die "needs root (network namespaces, veth, tc)"
for tool in ip tc nsenter unshare; do
  command -v $tool >/dev/null || cluster_die "no '$tool' on PATH (Debian: apt-get install iproute2 util-linux)"
done
if [ "$want_slurm" = 1 ]; then
  for tool in munged slurmctld slurmd sinfo; do
    command -v $tool >/dev/null ||
      cluster_die "no '$tool' on PATH (tests/install-deps.sh installs Slurm and munge), or CLUSTER_SLURM=0"
  done
fi

# rate_bytes RATE: bytes per second of a tc rate
rate_bytes() {
  local v=${1%bit} mul=1
  case $v in *k) mul=1000 ;; *m) mul=1000000 ;; *g) mul=1000000000 ;; esac
  v=${v%[kmg]}
  awk -v v="$v" -v m="$mul" 'BEGIN { printf "%.0f", v * m / 8 }'
}

# shape NS DEV: the link's rate and delay. A token bucket (tbf) of two 9000-byte frames, or
# 100 us of the rate where that is more: a NIC sends nothing faster than its rate, while a
# larger bucket lets every message that follows an idle gap pass at the host's speed up to the
# bucket's size. A shallow queue of 5 ms, as a switch port has: behind a deep one, the control
# messages of MPI's rendezvous protocol waited for the other direction's data, and a shift of
# 128 KiB - 2 MiB messages both ways ran at a third to a half of the rate. The delay is a netem
# child of the bucket.
shape() {
  local ns=$1 dev=$2 bps burst
  bps=$(rate_bytes "$want_rate")
  burst=$(( bps / 10000 > 18028 ? bps / 10000 : 18028 ))
  ip netns exec "$ns" tc qdisc replace dev "$dev" root handle 1: tbf rate "$want_rate" \
    burst "$burst" latency 5ms
  if [ "$want_delay" != 0 ]; then
    ip netns exec "$ns" tc qdisc replace dev "$dev" parent 1:1 handle 10: netem delay "$want_delay" \
      limit 100000
  fi
}

reshape() {
  local n
  for n in $(cluster_nodes); do
    shape "$CLUSTER_NAME-$n" eth0
    shape "$CLUSTER_NAME-head" "$n"
  done
}

write_settings() {
  cat > "$CLUSTER_STATE/settings.tmp" <<SET
CLUSTER_NODES=$CLUSTER_NODES
CLUSTER_SLOTS=$CLUSTER_SLOTS
CLUSTER_SUBNET=$CLUSTER_SUBNET
CLUSTER_SLURM=$CLUSTER_SLURM
CLUSTER_RATE=$CLUSTER_RATE
CLUSTER_DELAY=$CLUSTER_DELAY
SET
  mv "$CLUSTER_STATE/settings.tmp" "$CLUSTER_STATE/settings"
}

# healthy: every namespace, link, qdisc and daemon of the recorded cluster is there
healthy() {
  local n pid
  [ -e "$CLUSTER_NETNS/$CLUSTER_NAME-head" ] || return 1
  for n in $(cluster_nodes); do
    [ -e "$CLUSTER_NETNS/$CLUSTER_NAME-$n" ] || return 1
    ip -n "$CLUSTER_NAME-$n" -4 addr show dev eth0 2>/dev/null | grep -q "inet $(cluster_addr "$n")/" || return 1
    ip -n "$CLUSTER_NAME-head" link show "$n" 2>/dev/null | grep -q "master br0" || return 1
    [ "$(nsenter --uts="$CLUSTER_STATE/uts/$n" hostname 2>/dev/null)" = "$n" ] || return 1
    if [ "$CLUSTER_SLURM" = 1 ]; then
      pid=$(cat "$CLUSTER_STATE/slurm/slurmd-$n.pid" 2>/dev/null) && kill -0 "$pid" 2>/dev/null || return 1
    fi
  done
  if [ "$CLUSTER_SLURM" = 1 ]; then
    for d in slurmctld munged; do
      pid=$(cat "$CLUSTER_STATE/slurm/$d.pid" 2>/dev/null) && kill -0 "$pid" 2>/dev/null || return 1
    done
  fi
}

if [ -r "$CLUSTER_STATE/settings" ]; then
  cluster_load
  if [ "$CLUSTER_NODES/$CLUSTER_SLOTS/$CLUSTER_SUBNET/$CLUSTER_SLURM" != \
       "$want_nodes/$want_slots/$want_subnet/$want_slurm" ]; then
    cluster_die "cluster '$CLUSTER_NAME' is up with $CLUSTER_NODES nodes x $CLUSTER_SLOTS slots, subnet $CLUSTER_SUBNET.0/24, Slurm $CLUSTER_SLURM; run down.sh before bringing it up with other settings"
  fi
  if healthy; then
    CLUSTER_RATE=$want_rate CLUSTER_DELAY=$want_delay
    trap '"$here/down.sh"' EXIT
    reshape
    write_settings
    trap - EXIT
    echo "emulated-cluster: '$CLUSTER_NAME' already up ($CLUSTER_NODES nodes x $CLUSTER_SLOTS slots, $CLUSTER_SUBNET.0/24); links $CLUSTER_RATE, delay $CLUSTER_DELAY"
    exit 0
  fi
  echo "emulated-cluster: '$CLUSTER_NAME' is incomplete; rebuilding it" >&2
  "$here/down.sh"
fi
CLUSTER_NODES=$want_nodes CLUSTER_SLOTS=$want_slots CLUSTER_SUBNET=$want_subnet
CLUSTER_SLURM=$want_slurm CLUSTER_RATE=$want_rate CLUSTER_DELAY=$want_delay

# The subnet must be unused: no address in it and no route into it (the default route aside) in
# this namespace, and no address in it in any other namespace.
in_use() {
  local ns where
  if ip -4 -o addr show | grep -q "inet $CLUSTER_SUBNET\."; then echo "an address of this host"; return 0; fi
  where=$(ip -4 route show to match "$CLUSTER_SUBNET.1" | grep -v '^default' || true)
  where+=$(ip -4 route show root "$CLUSTER_SUBNET.0/24" || true)
  if [ -n "$where" ]; then echo "a route of this host: $where"; return 0; fi
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}'); do
    if ip -n "$ns" -4 -o addr show 2>/dev/null | grep -q "inet $CLUSTER_SUBNET\."; then
      echo "network namespace $ns"
      return 0
    fi
  done
  return 1
}
if use=$(in_use); then
  cluster_die "subnet $CLUSTER_SUBNET.0/24 is in use ($use); choose another with CLUSTER_SUBNET"
fi

t0=$(date +%s%N)
trap 'echo "emulated-cluster: up.sh failed; removing what it made" >&2; "$here/down.sh" >&2' EXIT
mkdir -p "$CLUSTER_STATE/uts"
write_settings

# head: the switch (a bridge) and the head node's address. A machine that allows no network
# namespaces or bridges (a container without CAP_NET_ADMIN) is reported with exit status 77.
hd=$CLUSTER_NAME-head
skip() {
  echo "emulated-cluster: SKIP: this machine does not allow $1 ($2)" >&2
  "$here/down.sh" >/dev/null 2>&1 || true
  trap - EXIT
  exit 77
}
# IPv4 only: no IPv6 link-local addresses, so no neighbour discovery traffic either;
# and TCP gives up on a lost peer within ~25 s (6 retransmissions, 3 SYNs) rather than ~15 min,
# so a job whose node loses its link ends instead of hanging
node_sysctls() {
  ip netns exec "$1" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 \
    net.ipv4.tcp_retries2=6 net.ipv4.tcp_syn_retries=3
}
err=$(ip netns add "$hd" 2>&1) || skip "network namespaces" "$err"
node_sysctls "$hd"
ip -n "$hd" link set lo up
err=$(ip -n "$hd" link add br0 mtu 9000 type bridge 2>&1) || skip "bridges" "$err"
ip -n "$hd" addr add "$(cluster_addr head)/24" dev br0
ip -n "$hd" link set br0 up
touch "$CLUSTER_STATE/uts/head"
unshare --uts="$CLUSTER_STATE/uts/head" hostname head
# nodes: a veth pair each, the node's end named eth0, the switch's end named after the node
for n in $(cluster_nodes); do
  ns=$CLUSTER_NAME-$n
  ip netns add "$ns"
  node_sysctls "$ns"
  ip -n "$ns" link set lo up
  err=$(ip -n "$hd" link add "$n" mtu 9000 type veth peer name eth0 mtu 9000 netns "$ns" 2>&1) ||
    skip "veth links" "$err"
  ip -n "$hd" link set "$n" master br0 up
  ip -n "$ns" addr add "$(cluster_addr "$n")/24" dev eth0
  ip -n "$ns" link set eth0 up
  touch "$CLUSTER_STATE/uts/$n"
  unshare --uts="$CLUSTER_STATE/uts/$n" hostname "$n"
done
if [ "$CLUSTER_DELAY" != 0 ] && ! ip netns exec "$hd" tc qdisc add dev lo root netem delay 1us 2>/dev/null; then
  cluster_die "CLUSTER_DELAY $CLUSTER_DELAY needs the netem qdisc, which this kernel lacks; accepted here: 0"
fi
ip netns exec "$hd" tc qdisc del dev lo root 2>/dev/null || true
reshape
# every node reaches every other and the head (bounded: 1 s per pair)
for n in $(cluster_nodes); do
  for m in head $(cluster_nodes); do
    [ "$m" = "$n" ] && continue
    "$here/node.sh" "$n" timeout 5 bash -c "exec 3<>/dev/tcp/$(cluster_addr "$m")/1" 2>/dev/null ||
      [ $? -eq 1 ] || cluster_die "node $n does not reach $m ($(cluster_addr "$m"))"
  done
done

if [ "$CLUSTER_SLURM" = 1 ]; then
  nodes_spec=""
  for n in $(cluster_nodes); do nodes_spec+="$n=$(cluster_addr "$n") "; done
  SLURM_NODES=$nodes_spec SLURM_CTLD="head=$(cluster_addr head)" SLURM_ON="$here/node.sh" \
    SLURM_CPUS=$CLUSTER_SLOTS SLURM_PORT=6817 \
    "$here/../../tests/slurm/cluster.sh" start "$CLUSTER_STATE/slurm" >/dev/null
fi
if [ "${CLUSTER_FAIL_AT:-}" = end ]; then # test hook: a failure with every part up
  echo "emulated-cluster: failing on request (CLUSTER_FAIL_AT=end)" >&2
  exit 1
fi
trap - EXIT
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
printf 'emulated-cluster: %s up in %d.%01d s: %d nodes x %d slots (n0 ... n%d, %s.11 ...), head %s.1, links %s, delay %s%s\n' \
  "$CLUSTER_NAME" $((ms / 1000)) $((ms % 1000 / 100)) "$CLUSTER_NODES" "$CLUSTER_SLOTS" \
  $((CLUSTER_NODES - 1)) "$CLUSTER_SUBNET" "$CLUSTER_SUBNET" "$CLUSTER_RATE" "$CLUSTER_DELAY" \
  "$([ "$CLUSTER_SLURM" = 1 ] && echo ", Slurm (sbatch on the head: node.sh head sbatch ...)")"
