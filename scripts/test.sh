#!/usr/bin/env bash
# Runs every check and test of the workspace: formatting, clippy, then all tests including
# the ones marked #[ignore = "needs ..."] (they need real servers; this script is where the
# servers get started once the S3, SFTP and PostgreSQL backends land).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo test"
cargo test --workspace -- --include-ignored
