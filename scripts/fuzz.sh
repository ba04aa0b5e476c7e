#!/usr/bin/env bash
# Fuzzes every decoder of bucket data (docs/fuzzing.md).
#
#   scripts/fuzz.sh [--seconds N] [--jobs J] [target...]   fuzz N s per target (default 30)
#   scripts/fuzz.sh --install                              only install the tools
#   scripts/fuzz.sh --build                                only install, build and seed
#
# Builds the targets once (later runs reuse the build), writes the seed
# corpus from real sealed objects, then runs each target for N seconds, J at
# a time (default: one per CPU). Exits non-zero if any target crashed,
# panicked, timed out or allocated past the limits below, and prints the
# path of the input that did it.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_FUZZ_VERSION=0.13.2
# A single allocation this large from an input of a few KiB means a length
# field was trusted; RSS bounds the whole process (ASan's quarantine included).
MALLOC_LIMIT_MB=64
RSS_LIMIT_MB=2048
# Seconds one input may take before it counts as a hang.
INPUT_TIMEOUT_S=10
ALL_TARGETS=(envelope records tensor grant paths keyfile)

seconds=30
jobs=$(nproc 2>/dev/null || echo 1)
install_only=false
build_only=false
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds="$2"; shift 2 ;;
    --jobs) jobs="$2"; shift 2 ;;
    --install) install_only=true; shift ;;
    --build) build_only=true; shift ;;
    -h | --help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "fuzz.sh: unknown option $1" >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done
[ ${#targets[@]} -gt 0 ] || targets=("${ALL_TARGETS[@]}")
for t in "${targets[@]}"; do
  case " ${ALL_TARGETS[*]} " in
    *" $t "*) ;;
    *) echo "fuzz.sh: unknown target $t (targets: ${ALL_TARGETS[*]})" >&2; exit 2 ;;
  esac
done

# libFuzzer's sanitizer runtime needs nightly; cargo-fuzz drives it.
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  rustup toolchain install nightly --profile minimal
fi
if [ "$(cargo fuzz --version 2>/dev/null)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]; then
  cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi
if $install_only; then exit 0; fi

# -a: debug assertions and overflow checks, so arithmetic on a length field
# that overflows is a finding rather than a silent wrap.
fuzz=(cargo +nightly fuzz)
build=(--fuzz-dir fuzz -a)
started=$SECONDS
"${fuzz[@]}" build "${build[@]}"
build_s=$((SECONDS - started))
host=$(rustc +nightly -vV | sed -n 's/^host: //p')
"fuzz/target/$host/release/seed_corpus" fuzz/corpus
if $build_only; then exit 0; fi

logs=fuzz/target/fuzz-logs
mkdir -p "$logs"
run_target() {
  local t=$1 rc=0
  "${fuzz[@]}" run "${build[@]}" "$t" -- \
    -max_total_time="$seconds" -timeout="$INPUT_TIMEOUT_S" \
    -rss_limit_mb="$RSS_LIMIT_MB" -malloc_limit_mb="$MALLOC_LIMIT_MB" \
    -print_final_stats=1 >"$logs/$t.log" 2>&1 || rc=$?
  echo "$rc" >"$logs/$t.rc"
}
echo "fuzzing ${targets[*]} for ${seconds}s each, $jobs at a time (logs in $logs/)"
fuzz_started=$SECONDS
running=0
for t in "${targets[@]}"; do
  rm -f "$logs/$t.rc"
  run_target "$t" &
  running=$((running + 1))
  if [ "$running" -ge "$jobs" ]; then
    wait -n || true
    running=$((running - 1))
  fi
done
wait || true
fuzz_s=$((SECONDS - fuzz_started))

stat() { sed -n "s/^stat::$1: *//p" "$2" | tail -1; }
failed=()
total_execs=0
for t in "${targets[@]}"; do
  log="$logs/$t.log"
  rc=$(cat "$logs/$t.rc" 2>/dev/null || echo 1)
  execs=$(stat number_of_executed_units "$log")
  rate=$(stat average_exec_per_sec "$log")
  rss=$(stat peak_rss_mb "$log")
  corpus=$(find "fuzz/corpus/$t" -type f | wc -l)
  total_execs=$((total_execs + ${execs:-0}))
  if [ "$rc" = 0 ]; then
    printf '  %-9s ok      %10s execs  %7s/s  peak rss %5s MB  corpus %s\n' \
      "$t" "${execs:-?}" "${rate:-?}" "${rss:-?}" "$corpus"
  else
    failed+=("$t")
    input=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
    printf '  %-9s FAILED  (exit %s)\n' "$t" "$rc"
    echo "---- $log (from the first error)"
    awk '/panicked at|ERROR:/ { on = 1 } on && n++ < 80' "$log" | grep . || tail -n 60 "$log"
    echo "----"
    if [ -n "$input" ]; then
      echo "  crashing input: $input"
      echo "  reproduce: cargo +nightly fuzz run --fuzz-dir fuzz -a $t $input"
    fi
  fi
done
summary="fuzz: ${#targets[@]} targets x ${seconds}s, $total_execs execs, build ${build_s}s, fuzzing ${fuzz_s}s"
if [ ${#failed[@]} -gt 0 ]; then
  echo "$summary: FAILED (${failed[*]})"
  exit 1
fi
echo "$summary: no crashes"
