#!/usr/bin/env bash
# The one test command: installs what is missing, checks formatting and
# lints, builds once in release mode, and runs every test (unit and
# integration, with real git, S3, disks and HTTP clients) with nextest.
set -euo pipefail
cd "$(dirname "$0")/../.."

tools/dev/setup.sh
# SeaweedFS may live in the repo's venv (setup.sh): tests find it on PATH.
export PATH="$PWD/.venv/bin:$PATH"

echo "== rustfmt"
cargo fmt --all --check
echo "== layers (no import cycles; the engine's layers point one way)"
python3 tools/dev/layers.py
echo "== clippy"
cargo clippy --release --workspace --all-targets --locked -- -D warnings
echo "== tests"
cargo nextest run --release --workspace --locked --no-fail-fast --test-threads 4 "$@"

# Nothing may be left behind, also after failures (fixtures clean up in Drop).
leftover=$(pgrep -a -f 'trove (serve|mountd|mount )|weed server|git-daemon' | grep -v '<defunct>' || true)
if [ -n "$leftover" ]; then
  echo "tests left processes running:"; echo "$leftover"; exit 1
fi
