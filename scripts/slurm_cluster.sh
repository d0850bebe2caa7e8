#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for the tests and for trying the zoo's SLURM launcher:
#   scripts/slurm_cluster.sh start    # write slurm.conf (this host's cores and memory, a `debug`
#                                     # partition), start munged, slurmctld and slurmd; idempotent
#   scripts/slurm_cluster.sh status   # exit 0 when `sinfo` answers and the node is idle or busy
#   scripts/slurm_cluster.sh stop     # stop what `start` started (nothing else)
# Needs root and Debian's packages: apt-get install -y slurm-wlm munge. No accounting (slurmdbd),
# as on many small clusters. State, logs and pid files live in $ZOO_SLURM_STATE.
set -euo pipefail

state=${ZOO_SLURM_STATE:-/var/tmp/zoo-slurm}
conf=/etc/slurm/slurm.conf
marker="# written by the zoo's scripts/slurm_cluster.sh"

fail() { echo "error: $*" >&2; exit 1; }

running() {  # running PIDFILE: the process it names is alive
  [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

node_up() {
  local s
  s=$(sinfo -h -N -o %t 2>/dev/null | head -n1) || return 1
  case "$s" in idle|mix|alloc|comp) return 0 ;; *) return 1 ;; esac
}

write_conf() {
  local host node
  host=$(hostname -s)
  node=$(slurmd -C | head -n1)  # NodeName=... CPUs=... RealMemory=...: this host as SLURM sees it
  mkdir -p "$state/ctld" "$state/d" /etc/slurm
  cat > "$conf.new" <<CONF
$marker
ClusterName=zoo
SlurmctldHost=$host
SlurmUser=root
AuthType=auth/munge
StateSaveLocation=$state/ctld
SlurmdSpoolDir=$state/d
SlurmctldPidFile=$state/slurmctld.pid
SlurmdPidFile=$state/slurmd.pid
SlurmctldLogFile=$state/slurmctld.log
SlurmdLogFile=$state/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/builtin
SchedulerParameters=sched_interval=2
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
# Fast turnarounds for tests: a requeued job may start again after 5 s (cred_expire, the
# requeue delay), a job past its time limit is killed 5 s after SIGTERM, finished jobs stay
# visible to squeue/scontrol for 10 minutes.
AuthInfo=cred_expire=5
KillWait=5
MinJobAge=600
InactiveLimit=0
$node State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
  mv "$conf.new" "$conf"
}

start() {
  [ "$(id -u)" -eq 0 ] || fail "start needs root (munged, slurmctld and slurmd)"
  command -v slurmctld >/dev/null && command -v munged >/dev/null \
    || fail "SLURM is not installed: apt-get install -y slurm-wlm munge"
  if [ -f "$conf" ] && ! grep -qF "$marker" "$conf"; then
    fail "$conf was not written by this script; this machine has its own SLURM setup"
  fi
  mkdir -p "$state"
  write_conf
  if ! munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
    mkdir -p /run/munge && chown munge:munge /run/munge
    [ -f /etc/munge/munge.key ] || { mungekey --create && chown munge:munge /etc/munge/munge.key; }
    runuser -u munge -- munged
    touch "$state/started-munged"
  fi
  running "$state/slurmctld.pid" || slurmctld
  running "$state/slurmd.pid" || slurmd
  for _ in $(seq 60); do
    if node_up; then
      echo "slurm cluster up: $(sinfo -h -o '%P %D node, %c CPUs, %m MB, %t')"
      return 0
    fi
    sleep 0.5
  done
  fail "the node did not come up; see $state/slurmctld.log and $state/slurmd.log"
}

stop_daemon() {  # stop_daemon PIDFILE: end that process and wait (up to 20 s) until it has
  local pid
  running "$1" || return 0
  pid=$(cat "$1")
  kill "$pid"
  for _ in $(seq 40); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.5
  done
  fail "process $pid ($1) did not stop"
}

stop() {
  stop_daemon "$state/slurmd.pid"
  stop_daemon "$state/slurmctld.pid"
  if [ -f "$state/started-munged" ]; then
    stop_daemon /run/munge/munged.pid
    rm -f "$state/started-munged"
  fi
  echo "slurm cluster stopped"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) node_up && sinfo ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
