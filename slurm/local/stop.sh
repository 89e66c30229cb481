#!/usr/bin/env bash
# Stop the local test cluster started by start.sh: cancel every job, wait for
# the queue to drain, then stop slurmd, slurmctld, slurmdbd, MariaDB and munged.
#   --purge   also delete the state folder (job ids restart at 1 afterwards:
#             never reuse a submitit folder across a purge)
set -euo pipefail
STATE="${SLURM_LOCAL_STATE:-/var/lib/tokbench-slurm}"
export PATH="$PATH:/usr/sbin:/sbin"

gone() {  # a zombie counts as gone: PID 1 here may reap only every few seconds
  local pid=$1
  [ ! -d "/proc/$pid" ] || [ "$(ps -o stat= -p "$pid" 2>/dev/null | cut -c1)" = Z ]
}
stop_pidfile() {
  local file=$1
  [ -f "$file" ] || return 0
  local pid; pid=$(cat "$file")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 100); do gone "$pid" && break; sleep 0.1; done
    gone "$pid" || kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$file"
}

if command -v scancel >/dev/null && scontrol ping >/dev/null 2>&1; then
  scancel --full --user=root 2>/dev/null || true
  for _ in $(seq 100); do [ -z "$(squeue -h 2>/dev/null)" ] && break; sleep 0.1; done
fi
for daemon in slurmd slurmctld slurmdbd mariadbd; do stop_pidfile "$STATE/run/$daemon.pid"; done
stop_pidfile /run/munge/munged.pid
if [ "${1:-}" = "--purge" ]; then rm -rf "$STATE"; fi
echo "local Slurm cluster stopped"
