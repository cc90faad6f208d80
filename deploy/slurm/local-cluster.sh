#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, for testing the job-array path for real: installs
# slurm-wlm and munge from Debian when missing (root), writes a slurm.conf for this host (its
# CPUs and memory from `slurmd -C`; no cgroups, so it runs in containers), and starts munged,
# slurmctld and slurmd in the background. Idempotent: a running cluster is left as it is.
# usage: deploy/slurm/local-cluster.sh start|stop
set -euo pipefail
cmd="${1:-start}"
state="${GRIST_SLURM_STATE:-/var/tmp/grist-slurm}"
conf=/etc/slurm/slurm.conf

if [ "$cmd" = stop ]; then
  pkill -x slurmd 2>/dev/null || true
  pkill -x slurmctld 2>/dev/null || true
  exit 0
fi

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
fi

# munge: a key, its daemon.
if [ ! -s /etc/munge/munge.key ]; then
  mkdir -p /etc/munge
  dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
fi
chown -R munge:munge /etc/munge && chmod 700 /etc/munge && chmod 400 /etc/munge/munge.key
mkdir -p /run/munge /var/lib/munge /var/log/munge && chown munge:munge /run/munge /var/lib/munge /var/log/munge
if ! pgrep -x munged >/dev/null; then
  runuser -u munge -- /usr/sbin/munged
fi
for _ in $(seq 50); do munge -n </dev/null >/dev/null 2>&1 && break; sleep 0.1; done

host="$(hostname -s)"
node="$(slurmd -C | head -1)"   # NodeName=... CPUs=... RealMemory=...
mkdir -p "$state/ctld" "$state/d" /etc/slurm
cat >"$conf" <<CONF
ClusterName=grist
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$state/ctld
SlurmdSpoolDir=$state/d
SlurmctldPidFile=$state/slurmctld.pid
SlurmdPidFile=$state/slurmd.pid
SlurmctldLogFile=$state/slurmctld.log
SlurmdLogFile=$state/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=2048
SchedulerType=sched/backfill
SchedulerParameters=defer_batch
MpiDefault=none
ReturnToService=2
RebootProgram=/bin/true
MinJobAge=600
KillWait=5
InactiveLimit=0
SlurmctldTimeout=30
SlurmdTimeout=30
$node State=UNKNOWN
PartitionName=grist Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
CONF
echo "# cgroups are not used by this one-node test cluster" >/etc/slurm/cgroup.conf

if ! pgrep -x slurmctld >/dev/null; then
  slurmctld -i
fi
if ! pgrep -x slurmd >/dev/null; then
  slurmd
fi
for _ in $(seq 100); do
  if sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
    sinfo
    exit 0
  fi
  scontrol update nodename="$host" state=resume >/dev/null 2>&1 || true
  sleep 0.3
done
echo "error: slurm did not come up; see $state/slurmctld.log and $state/slurmd.log" >&2
exit 1
