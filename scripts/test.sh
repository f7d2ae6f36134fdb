#!/usr/bin/env bash
# Runs every check and test of the workspace: formatting, clippy, then all tests including
# the ones marked #[ignore = "needs ..."], against real servers on loopback (S3: moto,
# SFTP: OpenSSH sshd, PostgreSQL) that scripts/test-servers/start.sh installs if missing
# and starts (reusing any of ours already running). They start in the background while
# clippy runs; on exit only the servers this run started are stopped.
set -euo pipefail
cd "$(dirname "$0")/.."

T0=$(date +%s)
servers_env=$(mktemp)
servers_log=$(mktemp)
servers_pid=

stop_servers() {
  local status=$?
  if [[ -n $servers_pid ]]; then
    wait "$servers_pid" 2>/dev/null || true # still starting if clippy failed
    local started
    started=$(sed -n "s/^export BACKUP_TEST_STARTED='\(.*\)'$/\1/p" "$servers_env")
    if [[ -n $started ]]; then
      echo "== stopping the test servers this run started: $started"
      # shellcheck disable=SC2086 # a list of names
      scripts/test-servers/stop.sh $started || true
    fi
  fi
  rm -f "$servers_env" "$servers_log"
  echo "== scripts/test.sh finished in $(($(date +%s) - T0)) s (exit $status)"
}
trap stop_servers EXIT

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== starting the test servers (log: $servers_log)"
scripts/test-servers/start.sh >"$servers_env" 2>"$servers_log" </dev/null &
servers_pid=$!

echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings

echo "== waiting for the test servers"
if ! wait "$servers_pid"; then
  # start.sh has already stopped whatever it had started
  cat "$servers_log" >&2
  echo "error: the test servers did not start (see above); the tests that need them cannot run" >&2
  exit 1
fi
cat "$servers_log"
# shellcheck disable=SC1090
source "$servers_env"

echo "== cargo test"
# The race of backups and garbage collection runs its full 1,000 rounds here (400 under a
# plain `cargo test`).
export GC_RACE_ROUNDS=1000
cargo test --workspace -- --include-ignored
