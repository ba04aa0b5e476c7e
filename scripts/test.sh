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
# `testkit` is what the tests' dev-dependencies switch on in the metrics and
# UI crates anyway: named here too, the daemons are compiled once, not once
# for `cargo build` and again (every crate above those two) for the tests.
features=(--features locus/fault-injection,locus/flex,locus-workloads/tokenizer,locus-observe/testkit,locus-discovery/testkit)
logs=target/ci-logs
mkdir -p "$logs"
# No incremental compilation: the workspace's own crates compile once here,
# and keeping their incremental caches cost a third more CPU (241 against
# 172 s for the workspace on two cores). A later incremental build (plain
# `cargo build`) recompiles the workspace's crates once, not dependencies.
export CARGO_INCREMENTAL=0
# The test binaries first: with them cargo builds the daemons of every
# package that has integration tests, in one graph (two cargo commands in a
# row leave a core idle while the first one links its last binaries). Then
# the daemons the process-level tests start that no test target needs
# (orchestratord), which reuse everything built before.
cargo test --workspace --no-run --message-format=json-render-diagnostics \
  "${features[@]}" >"$logs/test-binaries.json"
cargo build --workspace --bins "${features[@]}"
echo "built at ${SECONDS}s"

# The tests mostly wait on daemons and the bucket (about one core between
# two test binaries), so what needs only the CPU runs beside them:
# - fuzzing every decoder of bucket data for a bounded time (docs/fuzzing.md;
#   `scripts/fuzz.sh --seconds 3600` for a longer run), after building the
#   targets in fuzz/target with the nightly toolchain and cargo-fuzz, which
#   it installs first. One target at a time: libFuzzer runs each for a fixed
#   time, so sharing the CPU costs it executions, not wall time.
# - GPU miners and validators (burn-cuda) must keep compiling; checking them
#   needs no CUDA toolkit, running them a GPU (docs/operators/miner.md). All
#   CUDA code is in locus-workloads; minerd and validatord forward their
#   `cuda` feature to it, which `cargo tree` checks without compiling. The
#   check shares target/debug, whose build scripts and proc macros it reuses
#   (half its CPU), and adds its own units beside the tests' binaries
#   without touching them; the test binaries run without cargo.
# The check runs beside the fuzzing, which holds one core for a fixed time:
# one after the other, the side job outlasted the tests by a minute or more.
cuda_check() {
  for daemon in minerd validatord; do
    cargo tree -p "$daemon" --features "$daemon/cuda" -i burn-cuda --prefix none |
      grep -q "^$daemon " || { echo "$daemon/cuda does not build burn-cuda"; return 1; }
  done
  cargo check -p locus-workloads --features locus-workloads/cuda
  echo "side: CUDA check done at ${SECONDS}s"
}
side() {
  ./scripts/fuzz.sh --build
  echo "side: fuzz targets built at ${SECONDS}s"
  cuda_check >"$logs/cuda-check.log" 2>&1 &
  local cuda_pid=$! fuzzed=0 checked=0
  ./scripts/fuzz.sh --seconds 10 --jobs 1 || fuzzed=$?
  echo "side: fuzzing done at ${SECONDS}s"
  wait "$cuda_pid" || checked=$?
  cat "$logs/cuda-check.log"
  [ "$fuzzed" -eq 0 ] && [ "$checked" -eq 0 ]
}
side >"$logs/side.log" 2>&1 &
side_pid=$!

status=0
# The documentation examples (which `cargo test` would also run) first:
# they need target/debug, which the CUDA check holds once it starts.
cargo test --workspace --doc "${features[@]}" "$@" || status=$?
# The test binaries, two at a time: most of them wait on daemons and the
# bucket, not the CPU (scripts/run-test-binaries.py). The process-level
# tests use the daemons built above as they are (tests/common).
LOCUS_TEST_BINS_BUILT=1 ./scripts/run-test-binaries.py --jobs 2 \
  "$logs/test-binaries.json" -- "$@" || status=$?
echo "tests done at ${SECONDS}s"

if wait "$side_pid"; then
  sed -n -e '/^fuzzing /,/^fuzz: /p' -e '/^side: /p' "$logs/side.log"
else
  echo "---- the CUDA check or fuzzing failed ($logs/side.log):"
  tail -n 80 "$logs/side.log"
  status=1
fi
exit "$status"
