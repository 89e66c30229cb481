#!/usr/bin/env bash
# Start a one-node Slurm cluster on 127.0.0.1 for tests: Debian's slurmctld +
# slurmd, munge, and accounting (slurmdbd on a private MariaDB) so that sacct,
# and therefore submitit, can see job states. No systemd needed; needs root.
# Idempotent: when the cluster already answers with this configuration it
# returns in well under a second. See docs/slurm.md and stop.sh.
#
#   SLURM_LOCAL_STATE  state, spool, logs, pid files, database (default /var/lib/tokbench-slurm)
#   SLURM_LOCAL_GPUS   fake GPUs exposed through gres (default 2; /dev/null links)
set -euo pipefail
STATE="${SLURM_LOCAL_STATE:-/var/lib/tokbench-slurm}"
GPUS="${SLURM_LOCAL_GPUS:-2}"
CONF_DIR=/etc/slurm
DB_PORT=3307
started=$EPOCHREALTIME

die() { echo "slurm/local/start.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "must run as root (it installs packages and starts daemons)"

# Daemons must not inherit the caller's file descriptors: a CI runner or
# subprocess.run(capture_output=True) would otherwise wait on them forever.
detach() {  # detach LOGFILE CMD...
  local log=$1; shift
  (
    for fd in /proc/$BASHPID/fd/*; do
      fd=${fd##*/}
      if [ "$fd" -gt 2 ] 2>/dev/null; then eval "exec $fd>&-" 2>/dev/null || true; fi
    done
    exec setsid "$@" </dev/null >>"$log" 2>&1
  ) &
}

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
wait_for() {  # wait_for SECONDS WHAT CMD...
  local limit=$1 what=$2; shift 2
  local end=$(( $(date +%s) + limit ))
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$end" ] || die "$what did not come up within ${limit}s; see $STATE/log"
    sleep 0.1
  done
}

# ---- packages --------------------------------------------------------------------------
need=()
for pair in slurmctld:slurmctld slurmd:slurmd sbatch:slurm-client munged:munge slurmdbd:slurmdbd mariadbd:mariadb-server; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || [ -x "/usr/sbin/${pair%%:*}" ] || need+=("${pair#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
  command -v apt-get >/dev/null || die "missing ${need[*]} and no apt-get; install Slurm, munge, slurmdbd and MariaDB yourself"
  export DEBIAN_FRONTEND=noninteractive
  pkgs=(munge slurmctld slurmd slurm-client slurmdbd slurm-wlm-mysql-plugin mariadb-server)
  apt-get install -y -q --no-install-recommends "${pkgs[@]}" >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends "${pkgs[@]}" >/dev/null; }
fi
export PATH="$PATH:/usr/sbin:/sbin"

# ---- configuration (derived from this machine) -----------------------------------------
mkdir -p "$STATE"/{state,spool,run,log,dev} "$CONF_DIR"
HOST=$(hostname -s)
read -r CPUS SOCKETS CORES THREADS MEM < <(slurmd -C | awk '
  /^NodeName/ { for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] } }
  END { print v["CPUs"], v["SocketsPerBoard"] ? v["SocketsPerBoard"] : v["Boards"], v["CoresPerSocket"], v["ThreadsPerCore"], v["RealMemory"] }')
MEM=$(( MEM * 9 / 10 ))  # never "Low RealMemory" drains on a machine that reports a little less
GRES_NODE="" GRES_TYPES=""
if [ "$GPUS" -gt 0 ]; then
  for ((i = 0; i < GPUS; i++)); do ln -sfn /dev/null "$STATE/dev/fakegpu$i"; done
  GRES_NODE=" Gres=gpu:$GPUS" GRES_TYPES="GresTypes=gpu
AccountingStorageTRES=gres/gpu"
fi

slurm_conf="ClusterName=tokbench
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# a requeued job is held for cred_expire seconds (default 120)
AuthInfo=cred_expire=10
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=6819
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_interval=1,bf_interval=1
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1024
# impossible requests fail at sbatch instead of pending forever
EnforcePartLimits=ALL
ReturnToService=2
KillWait=5
MinJobAge=300
MailProg=/bin/true
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=$STATE/state
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/run/slurmctld.pid
SlurmdPidFile=$STATE/run/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
$GRES_TYPES
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS Sockets=$SOCKETS CoresPerSocket=$CORES ThreadsPerCore=$THREADS RealMemory=$MEM$GRES_NODE State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"
gres_conf="AutoDetect=off
"
[ "$GPUS" -gt 0 ] && gres_conf+="NodeName=$HOST Name=gpu File=$STATE/dev/fakegpu[0-$((GPUS - 1))]
"
dbd_conf="AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=6819
SlurmUser=root
LogFile=$STATE/log/slurmdbd.log
PidFile=$STATE/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
"
changed=0
write_conf() {  # write_conf FILE MODE CONTENT; sets changed=1 when the content differs
  if [ ! -f "$1" ] || [ "$(cat "$1")" != "$(printf '%s' "$3")" ]; then
    printf '%s' "$3" >"$1"; changed=1
  fi
  chmod "$2" "$1"
}
write_conf "$CONF_DIR/slurm.conf" 644 "$slurm_conf"
write_conf "$CONF_DIR/gres.conf" 644 "$gres_conf"
write_conf "$CONF_DIR/slurmdbd.conf" 600 "$dbd_conf"

cluster_up() {
  sinfo -h -o %t 2>/dev/null | grep -Eq '^(idle|mix|alloc|comp)' && sacct -n -X -S now >/dev/null 2>&1
}
if [ "$changed" = 0 ] && alive "$STATE/run/slurmctld.pid" && alive "$STATE/run/slurmd.pid" && cluster_up; then
  printf 'local Slurm cluster already up (%s)\n' "$(sinfo -h -o '%P %D node(s) %t')"
  exit 0
fi

# ---- munge -----------------------------------------------------------------------------
mkdir -p /run/munge && chown munge:munge /run/munge && chmod 0755 /run/munge
[ -f /etc/munge/munge.key ] || { mungekey --create --keyfile=/etc/munge/munge.key; chown munge:munge /etc/munge/munge.key; chmod 0400 /etc/munge/munge.key; }
if ! alive /run/munge/munged.pid; then
  detach "$STATE/log/munged.out" runuser -u munge -- munged --foreground
  wait_for 10 munged munge -n
fi

# ---- MariaDB (private instance on 127.0.0.1:3307) + slurmdbd ---------------------------
SOCK="$STATE/run/mysqld.sock"
if [ ! -d "$STATE/mysql/mysql" ]; then
  mariadb-install-db --no-defaults --datadir="$STATE/mysql" --user=root --auth-root-authentication-method=socket >"$STATE/log/mariadb-install.log" 2>&1 \
    || die "mariadb-install-db failed; see $STATE/log/mariadb-install.log"
fi
if ! alive "$STATE/run/mariadbd.pid"; then
  detach "$STATE/log/mariadbd.log" mariadbd --no-defaults --user=root --datadir="$STATE/mysql" --port=$DB_PORT \
    --bind-address=127.0.0.1 --socket="$SOCK" --pid-file="$STATE/run/mariadbd.pid" --skip-log-bin
  wait_for 60 MariaDB mariadb --no-defaults -S "$SOCK" -u root -e 'select 1'
  mariadb --no-defaults -S "$SOCK" -u root -e "
    CREATE DATABASE IF NOT EXISTS slurm_acct_db;
    CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm';
    CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurm';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';"
fi
if ! alive "$STATE/run/slurmdbd.pid"; then
  detach "$STATE/log/slurmdbd.out" slurmdbd -D
  wait_for 30 slurmdbd bash -c 'exec 3<>/dev/tcp/127.0.0.1/6819'
fi

# ---- controller and node ---------------------------------------------------------------
if [ "$changed" = 1 ]; then  # a new configuration: restart both (never with -c: job ids must not restart)
  for daemon in slurmd slurmctld; do
    if alive "$STATE/run/$daemon.pid"; then kill "$(cat "$STATE/run/$daemon.pid")"; fi
  done
  for daemon in slurmd slurmctld; do
    for _ in $(seq 100); do alive "$STATE/run/$daemon.pid" && [ "$(ps -o stat= -p "$(cat "$STATE/run/$daemon.pid")" | cut -c1)" != Z ] || break; sleep 0.1; done
  done
fi
alive "$STATE/run/slurmctld.pid" || detach "$STATE/log/slurmctld.out" slurmctld -D
wait_for 30 slurmctld scontrol ping
alive "$STATE/run/slurmd.pid" || detach "$STATE/log/slurmd.out" slurmd -D
# A DRAIN/INVAL reason survives restarts in the saved node state: resume until idle.
end=$(( $(date +%s) + 60 ))
until cluster_up; do
  state=$(sinfo -h -N -o %t 2>/dev/null | head -1)
  case "$state" in *drain*|drng|down*|inval*|fail*) scontrol update NodeName="$HOST" State=RESUME >/dev/null 2>&1 || true ;; esac
  [ "$(date +%s)" -lt "$end" ] || die "node not idle after 60s (state: ${state:-none}); see $STATE/log/slurmd.log and slurmctld.log"
  sleep 0.2
done
printf 'local Slurm cluster up in %.1fs (%s); logs in %s/log\n' "$(awk "BEGIN { print $EPOCHREALTIME - $started }")" \
  "$(sinfo -h -o '%P %D node(s) %t')" "$STATE"
