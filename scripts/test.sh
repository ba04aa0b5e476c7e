#!/usr/bin/env bash
# Runs every test of the workspace: unit tests, in-process integration tests
# and the process-level tests that start the real daemons against real
# buckets. Installs what the tests need first (see scripts/test-deps.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/test-deps.sh
cargo build --workspace --bins
cargo test --workspace --no-fail-fast "$@"

# Fuzzing: every decoder of bucket data for a bounded time after the tests
# (docs/fuzzing.md; `scripts/fuzz.sh --seconds 3600` for a longer run).
./scripts/fuzz.sh --seconds 30
