#!/usr/bin/env bash
# Stops test servers started by start.sh: the ones named (s3, sftp, pg), or all three when
# none is named. Only processes recorded in this project's pid files are stopped, after
# checking their command lines; anything else on those ports is left alone. Idempotent.
# `--clean` also deletes their data (PostgreSQL cluster, SFTP files); keys and the moto
# venv are kept.
set -euo pipefail

DIR=${BACKUP_TEST_DIR:-/tmp/backup-test-servers}
CLEAN=0
WHICH=()
for arg in "$@"; do
  case $arg in
    --clean) CLEAN=1 ;;
    s3 | sftp | pg) WHICH+=("$arg") ;;
    *) echo "usage: $0 [--clean] [s3] [sftp] [pg]" >&2; exit 2 ;;
  esac
done
((${#WHICH[@]})) || WHICH=(s3 sftp pg)

log() { printf '[test-servers] %s\n' "$*" >&2; }
# alive PID: exists and is not a zombie
alive() { kill -0 "$1" 2>/dev/null && [[ $(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) != Z ]]; }

# stop_pid NAME PIDFILE PATTERN
stop_pid() {
  local name=$1 pidfile=$2 pattern=$3 pid
  if [[ ! -s $pidfile ]]; then log "$name: not running (no pid file)"; return 0; fi
  pid=$(<"$pidfile")
  if [[ $pid =~ ^[0-9]+$ ]] && alive "$pid" &&
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -F -- "$pattern" >/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 1 100); do alive "$pid" || break; sleep 0.1; done
    if alive "$pid"; then log "$name: pid $pid ignored TERM, sending KILL"; kill -KILL "$pid"; fi
    log "$name: stopped pid $pid"
  else
    log "$name: pid file stale (pid $pid gone or not ours)"
  fi
  rm -f "$pidfile"
}

stop_pg() {
  local bin as=()
  bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  if [[ ! -f $DIR/pg/data/PG_VERSION || -z $bin ]]; then log "pg: no cluster"; return 0; fi
  [[ $(id -u) -eq 0 ]] && as=(runuser -u postgres --)
  if "${as[@]}" "$bin/pg_ctl" -D "$DIR/pg/data" status >/dev/null 2>&1; then
    "${as[@]}" "$bin/pg_ctl" -D "$DIR/pg/data" -m fast -w -t 60 stop >/dev/null
    log "pg: stopped"
  else
    log "pg: not running"
  fi
}

for which in "${WHICH[@]}"; do
  case $which in
    s3) stop_pid "s3 (moto)" "$DIR/s3/moto.pid" moto_server ;;
    # TERM on the listener; open sessions are separate processes that end on disconnect
    sftp) stop_pid "sftp (sshd)" "$DIR/ssh/sshd.pid" "$DIR/ssh/sshd_config" ;;
    pg) stop_pg ;;
  esac
done

if ((CLEAN)); then
  for which in "${WHICH[@]}"; do
    case $which in
      s3) rm -rf "$DIR/s3" ;;
      sftp) rm -rf "$DIR/sftp-root" ;;
      pg) rm -rf "$DIR/pg" ;;
    esac
  done
  log "removed the data of: ${WHICH[*]}"
fi
