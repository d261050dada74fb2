#!/usr/bin/env bash
# A private single-node SLURM cluster for the tests, entirely inside one folder:
#   cluster.sh start DIR   writes DIR/slurm.conf (own ports, state, spool, logs, PID files, munge key
#                          and socket) and DIR/bin (the client commands, bound to that config), starts
#                          munged, slurmctld and slurmd; prints SLURM_CONF=... and PATH=DIR/bin:...
#   cluster.sh stop DIR    stops the daemons this script started there, by the PIDs it recorded
# It reads and writes nothing outside DIR (no /etc, no system munge) and stops nothing it did not
# start, so a real SLURM on the same machine is left alone. Needs root (slurmd launches jobs) and
# Debian's slurmctld, slurmd, slurm-client and munge. One stand-in GPU (gres File=/dev/null), so that
# `--gpus=1` requests are scheduled, shared as 8 shards (gres/shard) by jobs that ask for one.
set -euo pipefail
action=${1:?start or stop}
dir=$(realpath -m "${2:?cluster folder}")

stop() {
  for name in slurmd slurmctld munged; do
    pidfile="$dir/run/$name.pid"
    [ -s "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    # only a process of that name: a stale PID file never kills an unrelated process
    if [ "$(cat /proc/"$pid"/comm 2>/dev/null)" = "$name" ]; then
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
    rm -f "$pidfile"
  done
}

if [ "$action" = stop ]; then stop; exit 0; fi
[ "$action" = start ] || { echo "usage: cluster.sh start|stop DIR" >&2; exit 2; }
if [ -e "$dir/slurm.conf" ] && ! grep -q '^# written by reglens tests/slurm/cluster.sh' "$dir/slurm.conf"; then
  echo "$dir/slurm.conf exists and was not written by this script: refusing to overwrite it" >&2
  exit 1
fi
mkdir -p "$dir"/{run,log,state,spool,munge}
chmod 0700 "$dir/munge" "$dir/run"
host=$(hostname -s)
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("", 0)); print(s.getsockname()[1])'; }
ctld_port=$(free_port)
slurmd_port=$(free_port)
while [ "$slurmd_port" = "$ctld_port" ]; do slurmd_port=$(free_port); done
cpus=$(( $(nproc) > 8 ? $(nproc) : 8 ))  # advertised CPUs: the profile asks up to 4 per job

[ -s "$dir/munge/munge.key" ] || { head -c 1024 /dev/urandom > "$dir/munge/munge.key"; chmod 0400 "$dir/munge/munge.key"; }
munged --force --socket="$dir/run/munge.socket" --key-file="$dir/munge/munge.key" \
  --pid-file="$dir/run/munged.pid" --log-file="$dir/log/munged.log" --seed-file="$dir/munge/munged.seed"

cat > "$dir/slurm.conf" <<CONF
# written by reglens tests/slurm/cluster.sh; private to this folder
ClusterName=reglens-test
SlurmctldHost=$host
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
AuthType=auth/munge
AuthInfo=socket=$dir/run/munge.socket
CredType=cred/munge
ProctrackType=proctrack/pgid
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
MinJobAge=600
GresTypes=gpu,shard
ReturnToService=2
SlurmdParameters=config_overrides
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/run/slurmctld.pid
SlurmdPidFile=$dir/run/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
NodeName=$host CPUs=$cpus RealMemory=16000 Gres=gpu:1,shard:8 State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
printf 'NodeName=%s Name=gpu File=/dev/null\nNodeName=%s Name=shard Count=8 File=/dev/null\n' "$host" "$host" \
  > "$dir/gres.conf"
# Client commands bound to this config: snakemake's slurm-jobstep plugin drops SLURM_CONF from the
# environment of the srun it starts inside a job, so the config travels with the command instead.
mkdir -p "$dir/bin"
for client in srun sbatch squeue scancel sinfo sacct scontrol; do
  real=$(command -v "$client") || continue
  printf '#!/bin/sh\nSLURM_CONF=%s exec %s "$@"\n' "$dir/slurm.conf" "$real" > "$dir/bin/$client"
  chmod +x "$dir/bin/$client"
done
export SLURM_CONF="$dir/slurm.conf"
slurmctld -f "$SLURM_CONF"
slurmd -f "$SLURM_CONF"
for _ in $(seq 60); do
  if sinfo -h -o %t 2>/dev/null | grep -qE '^(idle|mix|alloc)'; then
    echo "SLURM_CONF=$SLURM_CONF"
    echo "PATH=$dir/bin:$PATH"
    exit 0
  fi
  sleep 1
done
echo "the test cluster did not come up; see $dir/log/" >&2
stop
exit 1
