#!/usr/bin/env bash
# A private Slurm for the tests and the emulated cluster: munge, slurmctld and one slurmd per
# node started by hand (no systemd), state under DIR, config independent of the host's name.
#   cluster.sh start DIR    starts the daemons (packages: tests/install-deps.sh), waits for
#                           every node to be idle, prints "export SLURM_CONF=DIR/slurm.conf"
#   cluster.sh stop DIR     stops the daemons it started (by their pid files), nothing else
# One node on this host by default. Several nodes (experiments/emulated-cluster/up.sh):
#   SLURM_NODES  "NAME=ADDR ..." the compute nodes (default: localhost)
#   SLURM_CTLD   "NAME=ADDR" the controller (default: localhost)
#   SLURM_ON     a command that runs a program on a node: $SLURM_ON NODE PROGRAM ARGS...;
#                munged and slurmctld run on the controller's node, each slurmd on its own
#   SLURM_CPUS   CPUs per node (default: the cores, at least 4)
#   SLURM_PORT   slurmctld's port (slurmd: the next; default: from the process id)
# Facts this relies on (Debian 12: Slurm 22.05, munge 0.5.15, PMIx, Open MPI 4.1): Debian's Open
# MPI speaks only PMIx (srun --mpi=pmix); CPUs beyond the cores need
# SlurmdParameters=config_overrides; a drained node survives restarts unless the state is wiped
# (slurmctld -c); EnforcePartLimits=ALL makes an oversized job fail instead of pending forever;
# %n in the slurmd paths and TmpFS is the node's name, so several slurmds share DIR and
# srun --mpi=pmix's per-step directories do not collide; munge talks over a socket in DIR.
set -euo pipefail
cmd=${1:?usage: cluster.sh start|stop DIR} dir=${2:?usage: cluster.sh start|stop DIR}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)

stop() {
  local f pid
  for f in "$dir"/slurmd-*.pid "$dir/slurmctld.pid" "$dir/munged.pid"; do
    [ -f "$f" ] || continue
    pid=$(cat "$f")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$f"
  done
}

if [ "$cmd" = stop ]; then stop; exit 0; fi
[ "$cmd" = start ] || { echo "usage: cluster.sh start|stop DIR" >&2; exit 2; }

# the packages are installed up front by tests/install-deps.sh, never here
for c in munged slurmctld slurmd sinfo; do
  command -v "$c" >/dev/null ||
    { echo "cluster.sh: $c not found; install the test dependencies first: tests/install-deps.sh" >&2; exit 1; }
done

nodes=(${SLURM_NODES:-localhost})
ctld=${SLURM_CTLD:-localhost}
ctld_name=${ctld%%=*}
# on NODE PROGRAM ARGS...: the program on that node (here, without SLURM_ON)
on() {
  local node=$1
  shift
  if [ -n "${SLURM_ON:-}" ]; then $SLURM_ON "$node" "$@"; else "$@"; fi
}
# host_line NAME[=ADDR]: NAME, or NAME(ADDR) for SlurmctldHost
host_line() { case $1 in *=*) echo "${1%%=*}(${1#*=})" ;; *) echo "$1" ;; esac; }

stop
mkdir -p "$dir/ctld" "$dir/spool" "$dir/munge"
chmod 700 "$dir/munge"
[ -f "$dir/munge/munge.key" ] || dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 2>/dev/null
chmod 400 "$dir/munge/munge.key"
origin=()
[ "$ctld_name" != "$ctld" ] && origin=(--origin="${ctld#*=}") # no name lookup of the node
on "$ctld_name" munged --force --socket="$dir/munge/socket" --key-file="$dir/munge/munge.key" \
  --pid-file="$dir/munged.pid" --log-file="$dir/munged.log" --seed-file="$dir/munge/seed" \
  "${origin[@]}"

cpus=${SLURM_CPUS:-$(( $(nproc) > 4 ? $(nproc) : 4 ))}
# GPUs as a generic resource, so that the shipped job scripts' GPU requests are scheduled as on
# a GPU cluster: slurmd needs a character device per GPU and drops GPUs without one, so each is
# a link to /dev/null (nothing opens them). attnsim sees no GPU: the studies run on CPU ranks.
# Every node has the same (gres.conf without node names).
gpus=4
mkdir -p "$dir/gpu-devices"
for i in $(seq 0 $((gpus - 1))); do ln -sfn /dev/null "$dir/gpu-devices/gpu$i"; done
echo "Name=gpu File=$dir/gpu-devices/gpu[0-$((gpus - 1))]" > "$dir/gres.conf"
port=${SLURM_PORT:-$(( 20000 + $$ % 20000 ))}
node_lines="" names=()
for n in "${nodes[@]}"; do
  name=${n%%=*}
  names+=("$name")
  addr=""
  [ "$name" != "$n" ] && addr=" NodeAddr=${n#*=}"
  node_lines+="NodeName=$name$addr CPUs=$cpus Gres=gpu:$gpus State=UNKNOWN"$'\n'
done
cat > "$dir/slurm.conf" <<CONF
ClusterName=attnsim
SlurmctldHost=$(host_line "$ctld")
SlurmctldPort=$port
SlurmdPort=$((port + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$dir/munge/socket
CredType=cred/munge
StateSaveLocation=$dir/ctld
SlurmdSpoolDir=$dir/spool/%n
TmpFS=$dir/tmp/%n
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd-%n.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=pmix
SchedulerType=sched/builtin
SchedulerParameters=batch_sched_delay=0
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
EnforcePartLimits=ALL
ReturnToService=2
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
GresTypes=gpu
${node_lines}PartitionName=debug Nodes=$(IFS=,; echo "${names[*]}") Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
CONF
export SLURM_CONF="$dir/slurm.conf"
on "$ctld_name" slurmctld -c -f "$SLURM_CONF"
for name in "${names[@]}"; do
  mkdir -p "$dir/spool/$name" "$dir/tmp/$name"
  on "$name" slurmd -N "$name" -f "$SLURM_CONF"
done
for _ in $(seq 150); do
  state=$(on "$ctld_name" sinfo -h -N -o %T 2>/dev/null || true)
  idle=$(grep -cE '^(idle|mixed|allocated)' <<<"$state" || true)
  if [ "$idle" -eq "${#names[@]}" ]; then echo "export SLURM_CONF=$SLURM_CONF"; exit 0; fi
  sleep 0.2
done
echo "cluster.sh: not every node became idle (states: ${state:-none}); logs in $dir" >&2
stop
exit 1
