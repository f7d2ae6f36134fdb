#!/usr/bin/env bash
# Starts the real servers the ignored tests need, on loopback only:
#   s3    moto_server (S3 protocol, in memory), from a venv under the state dir
#   sftp  a second OpenSSH sshd with its own config, keys and known_hosts
#   pg    a private PostgreSQL cluster (initdb + pg_ctl)
# Installs what is missing (apt packages as root, moto via pip), is idempotent (a server
# of ours that is already up is reused, not restarted), waits until each one answers, and
# prints `export BACKUP_TEST_...` lines on stdout (progress goes to stderr):
#   eval "$(scripts/test-servers/start.sh)"
# BACKUP_TEST_STARTED lists the servers this run started (not the ones it found running):
# pass it to stop.sh to stop exactly those. If a start fails, what this run started is
# stopped again and the script exits non-zero.
#
# Knobs: BACKUP_TEST_DIR (state dir; the postgres user must reach it, so not under /root;
# default /tmp/backup-test-servers), BACKUP_TEST_S3_PORT (9000), BACKUP_TEST_SFTP_PORT
# (2222), BACKUP_TEST_PG_PORT (55432), BACKUP_TEST_ONLY (default "s3 sftp pg").
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
DIR=${BACKUP_TEST_DIR:-/tmp/backup-test-servers}
S3_PORT=${BACKUP_TEST_S3_PORT:-9000}
S3_BUCKET=backup-test
S3_ACCESS_KEY=testkey
S3_SECRET_KEY=testsecret
SFTP_PORT=${BACKUP_TEST_SFTP_PORT:-2222}
PG_PORT=${BACKUP_TEST_PG_PORT:-55432}
PG_USER=backup
PG_PASS=backup
PG_DB=backup_test
ONLY=${BACKUP_TEST_ONLY:-"s3 sftp pg"}
MOTO_VERSION=5.2.5

log() { printf '[test-servers] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
want() { [[ " $ONLY " == *" $1 "* ]]; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN{printf "%.1f", b-a}'; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# pid_alive PIDFILE PATTERN: the pid in the file runs a command line containing PATTERN
pid_alive() {
  local pid
  [[ -s $1 ]] || return 1
  pid=$(<"$1")
  [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -F -- "$2" >/dev/null
}
# wait_for SECONDS WHAT COMMAND...
wait_for() {
  local limit=$1 what=$2 t0
  shift 2
  t0=$(now)
  for _ in $(seq 1 $((limit * 10))); do
    if "$@" >/dev/null 2>&1; then log "$what ready after $(since "$t0") s"; return 0; fi
    sleep 0.1
  done
  return 1
}

STARTED=()
on_exit() {
  local status=$?
  if ((status != 0 && ${#STARTED[@]} > 0)); then
    log "start failed: stopping what this run started (${STARTED[*]})"
    "$HERE/stop.sh" "${STARTED[@]}" >&2 || true
  fi
}
trap on_exit EXIT

mkdir -p "$DIR"
chmod 0755 "$DIR"
ROOT=0
[[ $(id -u) -eq 0 ]] && ROOT=1

# ---------------------------------------------------------------- install
pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }
missing=()
command -v curl >/dev/null || missing+=(curl ca-certificates)
if want sftp; then
  [[ -x /usr/sbin/sshd ]] || missing+=(openssh-server)
  command -v sftp >/dev/null && command -v ssh-keygen >/dev/null || missing+=(openssh-client)
fi
if want pg; then
  [[ -n $(pg_bin) && -x $(pg_bin)/initdb ]] || missing+=(postgresql)
  command -v psql >/dev/null && command -v pg_isready >/dev/null || missing+=(postgresql-client)
fi
if want s3 && [[ ! -x $DIR/venv-moto/bin/moto_server ]] && ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
  missing+=(python3-venv)
fi
if ((${#missing[@]})); then
  ((ROOT)) || die "missing packages ${missing[*]}: install them (apt-get install ${missing[*]}) or run as root"
  t0=$(now)
  log "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # The package lists may be absent on a fresh machine: update once, then install.
  apt-get install -y -q --no-install-recommends "${missing[@]}" >&2 2>/dev/null || {
    apt-get update -qq >&2
    apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
  }
  log "apt install took $(since "$t0") s"
fi

if want s3 && [[ ! -x $DIR/venv-moto/bin/moto_server ]]; then
  t0=$(now)
  log "installing moto[s3]==$MOTO_VERSION into $DIR/venv-moto"
  rm -rf "$DIR/venv-moto"
  python3 -m venv "$DIR/venv-moto" >&2
  PIP_DISABLE_PIP_VERSION_CHECK=1 "$DIR/venv-moto/bin/pip" install -q --no-input \
    "moto[s3]==$MOTO_VERSION" 'flask>=3,<4' 'flask-cors>=5' >&2
  log "moto install took $(since "$t0") s"
fi

# ---------------------------------------------------------------- S3
start_s3() {
  local d=$DIR/s3 code
  mkdir -p "$d"
  if pid_alive "$d/moto.pid" moto_server && port_open "$S3_PORT"; then
    log "s3 (moto) already running, pid $(<"$d/moto.pid")"
  else
    port_open "$S3_PORT" && die "port $S3_PORT is in use by something else (set BACKUP_TEST_S3_PORT)"
    rm -f "$d/moto.pid"
    # New session, own pid file; in memory, so data is lost when it stops.
    setsid bash -c 'echo $$ >"$0"; exec "$@"' "$d/moto.pid" \
      "$DIR/venv-moto/bin/moto_server" -H 127.0.0.1 -p "$S3_PORT" </dev/null >>"$d/moto.log" 2>&1 &
    STARTED+=(s3)
    wait_for 60 "s3 (moto)" bash -c "[[ \$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$S3_PORT/) != 000 ]]" ||
      die "moto did not answer on port $S3_PORT; see $d/moto.log"
    log "s3 (moto) started, pid $(<"$d/moto.pid")"
  fi
  # moto checks no signatures: a plain PUT creates the bucket (409 if it exists already).
  code=$(curl -s -o /dev/null -w '%{http_code}' -X PUT "http://127.0.0.1:$S3_PORT/$S3_BUCKET")
  [[ $code == 200 || $code == 409 ]] || die "creating bucket $S3_BUCKET answered HTTP $code"
}

# ---------------------------------------------------------------- SFTP
start_sftp() {
  local d=$DIR/ssh
  mkdir -p "$d" "$DIR/sftp-root"
  chmod 0700 "$d"
  [[ -f $d/host_key ]] || ssh-keygen -q -t ed25519 -N '' -C test-host -f "$d/host_key"
  [[ -f $d/client_key ]] || ssh-keygen -q -t ed25519 -N '' -C test-client -f "$d/client_key"
  # For the refusal tests: a key the server does not accept, and a host key it does not have.
  [[ -f $d/unauthorized_key ]] || ssh-keygen -q -t ed25519 -N '' -C test-other -f "$d/unauthorized_key"
  [[ -f $d/other_host_key ]] || ssh-keygen -q -t ed25519 -N '' -C test-other-host -f "$d/other_host_key"
  cp "$d/client_key.pub" "$d/authorized_keys"
  printf '[127.0.0.1]:%s %s\n' "$SFTP_PORT" "$(cut -d' ' -f1-2 "$d/host_key.pub")" >"$d/known_hosts"
  printf '[127.0.0.1]:%s %s\n' "$SFTP_PORT" "$(cut -d' ' -f1-2 "$d/other_host_key.pub")" >"$d/known_hosts_wrong"
  cat >"$d/sshd_config.new" <<EOF
# second sshd for the tests only, loopback
Port $SFTP_PORT
ListenAddress 127.0.0.1
HostKey $d/host_key
PidFile $d/sshd.pid
AuthorizedKeysFile $d/authorized_keys
# keys live below /tmp (mode 1777), which StrictModes would reject
StrictModes no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UsePAM no
# parallel tests open many connections at once; the default 10:30:100 drops some
MaxStartups 200
MaxSessions 100
Subsystem sftp internal-sftp
LogLevel INFO
EOF
  if ! cmp -s "$d/sshd_config.new" "$d/sshd_config" 2>/dev/null; then
    mv "$d/sshd_config.new" "$d/sshd_config"
    if pid_alive "$d/sshd.pid" "$d/sshd_config"; then kill -HUP "$(<"$d/sshd.pid")"; sleep 0.5; fi
  else
    rm -f "$d/sshd_config.new"
  fi
  mkdir -p -m 0755 /run/sshd # privilege separation dir; /run is a tmpfs
  if pid_alive "$d/sshd.pid" "$d/sshd_config" && port_open "$SFTP_PORT"; then
    log "sftp (sshd) already running, pid $(<"$d/sshd.pid")"
  else
    port_open "$SFTP_PORT" && die "port $SFTP_PORT is in use by something else (set BACKUP_TEST_SFTP_PORT)"
    rm -f "$d/sshd.pid"
    /usr/sbin/sshd -t -f "$d/sshd_config" || die "sshd rejected its config $d/sshd_config"
    # absolute path required (sshd re-executes itself); it daemonizes and writes PidFile
    /usr/sbin/sshd -f "$d/sshd_config" -E "$d/sshd.log"
    STARTED+=(sftp)
    wait_for 10 "sshd pid file" test -s "$d/sshd.pid" || die "sshd did not start; see $d/sshd.log"
    log "sftp (sshd) started, pid $(<"$d/sshd.pid")"
  fi
  wait_for 30 "sftp" bash -c "echo pwd | sftp -b - -P $SFTP_PORT -i '$d/client_key' -o BatchMode=yes \
      -o IdentitiesOnly=yes -o UserKnownHostsFile='$d/known_hosts' -o ConnectTimeout=5 $(id -un)@127.0.0.1" ||
    die "sftp login failed; see $d/sshd.log"
}

# ---------------------------------------------------------------- PostgreSQL
start_pg() {
  local d=$DIR/pg bin as=()
  bin=$(pg_bin)
  ((ROOT)) && as=(runuser -u postgres --) # initdb and postgres refuse to run as root
  mkdir -p "$d"
  if ((ROOT)); then
    chown postgres:postgres "$d"
    "${as[@]}" test -x "$d" || die "user postgres cannot reach $d; set BACKUP_TEST_DIR elsewhere (not under /root)"
  fi
  chmod 0700 "$d"
  if [[ ! -f $d/data/PG_VERSION ]]; then
    local t0
    t0=$(now)
    "${as[@]}" "$bin/initdb" -D "$d/data" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
      -E UTF8 --locale=C.UTF-8 >"$d/initdb.log" 2>&1 || { cat "$d/initdb.log" >&2; die "initdb failed"; }
    "${as[@]}" tee -a "$d/data/postgresql.conf" >/dev/null <<EOF
# test cluster: loopback only, own port and socket dir, durability off for speed
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$d/run'
max_connections = 200
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
    log "initdb took $(since "$t0") s"
  fi
  "${as[@]}" mkdir -p "$d/run"
  if "${as[@]}" "$bin/pg_ctl" -D "$d/data" status >/dev/null 2>&1; then
    log "pg already running, pid $(head -1 "$d/data/postmaster.pid")"
  else
    port_open "$PG_PORT" && die "port $PG_PORT is in use by something else (set BACKUP_TEST_PG_PORT)"
    STARTED+=(pg)
    # -w waits until it accepts connections; the server detaches from this shell
    "${as[@]}" "$bin/pg_ctl" -D "$d/data" -l "$d/postgres.log" -w -t 60 start >&2 ||
      die "postgres did not start; see $d/postgres.log"
    log "pg started, pid $(head -1 "$d/data/postmaster.pid")"
  fi
  wait_for 30 "pg" pg_isready -q -h 127.0.0.1 -p "$PG_PORT" || die "pg_isready failed on port $PG_PORT"
  local psql=(psql -X -q -v ON_ERROR_STOP=1 -h "$d/run" -p "$PG_PORT" -U postgres -d postgres -tA)
  [[ $("${as[@]}" "${psql[@]}" -c "select 1 from pg_roles where rolname='$PG_USER'") == 1 ]] ||
    "${as[@]}" "${psql[@]}" -c "create role $PG_USER login createdb password '$PG_PASS'"
  [[ $("${as[@]}" "${psql[@]}" -c "select 1 from pg_database where datname='$PG_DB'") == 1 ]] ||
    "${as[@]}" "${psql[@]}" -c "create database $PG_DB owner $PG_USER"
  [[ $(psql -X -tA "postgres://$PG_USER:$PG_PASS@127.0.0.1:$PG_PORT/$PG_DB" -c 'select 1') == 1 ]] ||
    die "cannot log in to postgres as $PG_USER"
}

T0=$(now)
want s3 && start_s3
want sftp && start_sftp
want pg && start_pg

if want s3; then
  cat <<EOF
export BACKUP_TEST_S3_ENDPOINT=http://127.0.0.1:$S3_PORT
export BACKUP_TEST_S3_BUCKET=$S3_BUCKET
export AWS_ACCESS_KEY_ID=$S3_ACCESS_KEY
export AWS_SECRET_ACCESS_KEY=$S3_SECRET_KEY
export AWS_REGION=us-east-1
EOF
fi
if want sftp; then
  d=$DIR/ssh
  cat <<EOF
export BACKUP_TEST_SFTP_URL='sftp://$(id -un)@127.0.0.1:$SFTP_PORT$DIR/sftp-root?key=$d/client_key&known_hosts=$d/known_hosts'
export BACKUP_TEST_SFTP_ROOT=$DIR/sftp-root
export BACKUP_TEST_SFTP_KEY=$d/client_key
export BACKUP_TEST_SFTP_KNOWN_HOSTS=$d/known_hosts
export BACKUP_TEST_SFTP_WRONG_KNOWN_HOSTS=$d/known_hosts_wrong
export BACKUP_TEST_SFTP_UNAUTHORIZED_KEY=$d/unauthorized_key
EOF
fi
if want pg; then
  echo "export BACKUP_TEST_PG_URL=postgres://$PG_USER:$PG_PASS@127.0.0.1:$PG_PORT/$PG_DB"
fi
echo "export BACKUP_TEST_STARTED='${STARTED[*]}'"
log "ready ($(since "$T0") s after the install step); started now: ${STARTED[*]:-none}"
