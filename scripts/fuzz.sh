#!/usr/bin/env bash
# Long fuzzing runs with cargo-fuzz (libFuzzer) over every parser of bytes read from storage
# (the harnesses in fuzz/src/lib.rs; CI runs the same harnesses under proptest).
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET ...]
#
# Needs a nightly toolchain (`rustup toolchain list`) and `cargo install cargo-fuzz`.
# Corpora are kept in fuzz/corpus/TARGET (not committed); a crash is saved in
# fuzz/artifacts/TARGET and fails the run. Prints the executions each target reached.
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${1:-60}
shift || true
targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
  targets=(pack_trailer snapshot index key_envelope config)
fi

cargo +nightly fuzz build --fuzz-dir fuzz --features libfuzzer
bin=target/$(rustc +nightly -vV | sed -n 's/^host: //p')/release

for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
  log=$(mktemp)
  if ! "$bin/$t" "fuzz/corpus/$t" -artifact_prefix="fuzz/artifacts/$t/" \
    -max_total_time="$secs" -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "fuzz target $t FAILED (see above; the input is in fuzz/artifacts/$t)" >&2
    exit 1
  fi
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
  echo "$t: $execs executions in $secs s without a crash ($cov edges, corpus $(find "fuzz/corpus/$t" -type f | wc -l) inputs)"
  rm -f "$log"
done
