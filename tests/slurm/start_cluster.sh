#!/usr/bin/env bash
# Start a single-node SLURM cluster on this machine (needs root and Debian's slurmctld, slurmd,
# slurm-client and munge): one node with a stand-in GPU (gres File=/dev/null), so that `--gpus=1`
# requests are scheduled. Idempotent.
set -euo pipefail
host=$(hostname -s)
cpus=$(( $(nproc) > 8 ? $(nproc) : 8 ))  # advertised CPUs: the profile asks up to 4 per job
if sinfo -h -o %t 2>/dev/null | grep -qE '^(idle|mix|alloc)' && grep -q "CPUs=$cpus " /etc/slurm/slurm.conf; then
  exit 0
fi
pkill -x slurmd || true
pkill -x slurmctld || true
for _ in $(seq 50); do pgrep -x slurmctld >/dev/null || pgrep -x slurmd >/dev/null || break; sleep 0.2; done
mkdir -p /etc/munge /run/munge /var/log/munge /var/lib/munge /etc/slurm /var/spool/slurmctld \
         /var/spool/slurmd /var/log/slurm
[ -s /etc/munge/munge.key ] || mungekey -c
chown -R munge:munge /etc/munge /run/munge /var/log/munge /var/lib/munge
chmod 0700 /etc/munge && chmod 0400 /etc/munge/munge.key
pgrep -x munged >/dev/null || runuser -u munge -- /usr/sbin/munged
cat > /etc/slurm/slurm.conf <<CONF
ClusterName=reglens
SlurmctldHost=$host
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/pgid
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
MinJobAge=600
GresTypes=gpu
ReturnToService=2
SlurmdParameters=config_overrides
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
NodeName=$host CPUs=$cpus RealMemory=8000 Gres=gpu:1 State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
echo "NodeName=$host Name=gpu File=/dev/null" > /etc/slurm/gres.conf
pgrep -x slurmctld >/dev/null || slurmctld
pgrep -x slurmd >/dev/null || slurmd
for _ in $(seq 60); do
  if sinfo -h -o %t | grep -qE '^(idle|mix|alloc)'; then exit 0; fi
  sleep 1
done
echo "SLURM did not come up; see /var/log/slurm/" >&2
exit 1
