#!/usr/bin/env bash
# Runs every test of the workspace: unit tests, in-process integration tests
# and the process-level tests that start the real daemons against real
# buckets. Installs what the tests need first (see scripts/test-deps.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/test-deps.sh
# The attack and fault-injection tests need daemons built with their
# test-only misbehaviour, which default builds leave out. The same feature
# set for the build and the tests, so `cargo test` (and the tests' own
# `cargo build`, tests/common/mod.rs) rebuild nothing: `locus/fault-injection`
# switches it on in every daemon and in the protocol crate; `flex` adds the
# second CPU backend the cross-backend replay tests compare ndarray with.
features=(--features locus/fault-injection,locus/flex,locus-workloads/tokenizer)
cargo build --workspace --bins "${features[@]}"
# GPU miners and validators (burn-cuda) must keep compiling; checking them
# needs no CUDA toolkit, running them a GPU (docs/operators/miner.md).
cargo check -p minerd -p validatord --features minerd/cuda,validatord/cuda
# The process-level tests use these binaries as they are (tests/common).
export LOCUS_TEST_BINS_BUILT=1
cargo test --workspace --no-fail-fast "${features[@]}" "$@"

# Fuzzing: every decoder of bucket data for a bounded time after the tests
# (docs/fuzzing.md; `scripts/fuzz.sh --seconds 3600` for a longer run).
./scripts/fuzz.sh --seconds 30
