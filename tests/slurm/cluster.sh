#!/usr/bin/env bash
# A private one-node Slurm for the tests: munge, slurmctld and slurmd started by hand (no
# systemd), state under DIR, ports of its own, config independent of the host name.
#   cluster.sh start DIR    starts the daemons (packages: tests/install-deps.sh), waits for the
#                           node to be idle, prints "export SLURM_CONF=DIR/slurm.conf"
#   cluster.sh stop DIR     stops the daemons it started (by their pid files), nothing else
# Facts this relies on (Debian 12: Slurm 22.05, munge 0.5.15, PMIx, Open MPI 4.1): Debian's Open
# MPI speaks only PMIx (srun --mpi=pmix); CPUs beyond the cores need
# SlurmdParameters=config_overrides; a drained node survives restarts unless the state is wiped
# (slurmctld -c); EnforcePartLimits=ALL makes an oversized job fail instead of pending forever.
set -euo pipefail
cmd=${1:?usage: cluster.sh start|stop DIR} dir=${2:?usage: cluster.sh start|stop DIR}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)

stop() {
  for d in slurmd slurmctld munged; do
    if [ -f "$dir/$d.pid" ]; then
      pid=$(cat "$dir/$d.pid")
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
      rm -f "$dir/$d.pid"
    fi
  done
}

if [ "$cmd" = stop ]; then stop; exit 0; fi
[ "$cmd" = start ] || { echo "usage: cluster.sh start|stop DIR" >&2; exit 2; }

# the packages are installed up front by tests/install-deps.sh, never here
for c in munged slurmctld slurmd sinfo; do
  command -v "$c" >/dev/null ||
    { echo "cluster.sh: $c not found; install the test dependencies first: tests/install-deps.sh" >&2; exit 1; }
done

stop
mkdir -p "$dir/ctld" "$dir/spool" "$dir/munge"
chmod 700 "$dir/munge"
[ -f "$dir/munge/munge.key" ] || dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 2>/dev/null
chmod 400 "$dir/munge/munge.key"
munged --force --socket="$dir/munge/socket" --key-file="$dir/munge/munge.key" \
  --pid-file="$dir/munged.pid" --log-file="$dir/munged.log" --seed-file="$dir/munge/seed"

cpus=$(( $(nproc) > 4 ? $(nproc) : 4 ))
# GPUs as a generic resource, so that the shipped job scripts' GPU requests are scheduled as on
# a GPU cluster: slurmd needs a character device per GPU and drops GPUs without one, so each is
# a link to /dev/null (nothing opens them). attnsim sees no GPU: the studies run on CPU ranks.
gpus=4
mkdir -p "$dir/gpu-devices"
for i in $(seq 0 $((gpus - 1))); do ln -sfn /dev/null "$dir/gpu-devices/gpu$i"; done
echo "Name=gpu File=$dir/gpu-devices/gpu[0-$((gpus - 1))]" > "$dir/gres.conf"
port=$(( 20000 + $$ % 20000 ))
cat > "$dir/slurm.conf" <<CONF
ClusterName=attnsim
SlurmctldHost=localhost
SlurmctldPort=$port
SlurmdPort=$((port + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$dir/munge/socket
CredType=cred/munge
StateSaveLocation=$dir/ctld
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
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
NodeName=localhost CPUs=$cpus Gres=gpu:$gpus State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
CONF
export SLURM_CONF="$dir/slurm.conf"
slurmctld -c -f "$SLURM_CONF"
slurmd -N localhost -f "$SLURM_CONF"
for _ in $(seq 150); do
  state=$(sinfo -h -N -o %T 2>/dev/null || true)
  case "$state" in idle*|mixed*|allocated*) echo "export SLURM_CONF=$SLURM_CONF"; exit 0 ;; esac
  sleep 0.2
done
echo "cluster.sh: the node did not become idle (state: ${state:-none}); logs in $dir" >&2
stop
exit 1
