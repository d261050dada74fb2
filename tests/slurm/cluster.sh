#!/usr/bin/env bash
# A private single-node SLURM cluster for the tests, entirely inside one folder:
#   cluster.sh start DIR   writes DIR/slurm.conf (own ports, state, spool, logs, PID files, munge key
#                          and socket), starts munged, slurmctld and slurmd; prints SLURM_CONF=...
#                          (a non-default path: the clients and every job find the cluster through it)
#   cluster.sh stop DIR    stops the daemons this script started there, by the PIDs it recorded
# It reads and writes nothing outside DIR (no /etc, no system munge) and stops nothing it did not
# start, so a real SLURM on the same machine is left alone. Needs root (slurmd launches jobs) and
# Debian's slurmctld, slurmd, slurm-client and munge. The site type, as in docs/cluster.md:
#   SITE=gpu-shards (default)  one stand-in GPU (gres File=/dev/null), also cut into 8 shards
#   SITE=gpu                   one stand-in GPU, no shard GRES (what most GPU sites have)
#   SITE=cpu                   no GRES at all
# MAXTIME sets the partition's MaxTime (SLURM's syntax, e.g. 8 for 8 minutes; default INFINITE).
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
site=${SITE:-gpu-shards}
case "$site" in
  gpu-shards) gres_types="GresTypes=gpu,shard"; node_gres="Gres=gpu:1,shard:8" ;;
  gpu) gres_types="GresTypes=gpu"; node_gres="Gres=gpu:1" ;;
  cpu) gres_types=""; node_gres="" ;;
  *) echo "SITE must be gpu-shards, gpu or cpu, not '$site'" >&2; exit 2 ;;
esac
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
$gres_types
ReturnToService=2
SlurmdParameters=config_overrides
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/run/slurmctld.pid
SlurmdPidFile=$dir/run/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
NodeName=$host CPUs=$cpus RealMemory=16000 $node_gres State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=${MAXTIME:-INFINITE} State=UP
CONF
case "$site" in
  gpu-shards) printf 'NodeName=%s Name=gpu File=/dev/null\nNodeName=%s Name=shard Count=8 File=/dev/null\n' "$host" "$host" ;;
  gpu) printf 'NodeName=%s Name=gpu File=/dev/null\n' "$host" ;;
  cpu) : ;;
esac > "$dir/gres.conf"
export SLURM_CONF="$dir/slurm.conf"
slurmctld -f "$SLURM_CONF"
slurmd -f "$SLURM_CONF"
for _ in $(seq 60); do
  if sinfo -h -o %t 2>/dev/null | grep -qE '^(idle|mix|alloc)'; then
    echo "SLURM_CONF=$SLURM_CONF"
    exit 0
  fi
  sleep 1
done
echo "the test cluster did not come up; see $dir/log/" >&2
stop
exit 1
