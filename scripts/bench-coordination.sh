#!/usr/bin/env bash
# Coordination benchmark: what the local smoke costs in wall time, bucket
# requests and memory, at 4, 16 and 64 miners, on a local directory and on
# the loopback S3 server. Each configuration runs RUNS times; medians are
# printed (the smoke's wall time is from its start to the validator's last
# score window; requests count every daemon's GET, PUT and LIST, idle
# polling included).
#
#   scripts/bench-coordination.sh
#   RUNS=3 scripts/bench-coordination.sh
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-5}
# --workspace: the loopback S3 server is not a default member.
cargo build --release -q --workspace
bin=target/release/locus

# median of the numbers on stdin
median() { sort -g | awk '{v[NR]=$1} END {if (NR==0) print "-"; else if (NR%2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'; }

# bench LABEL SMOKE-ARGS...: RUNS smokes, one summary line.
bench() {
  local label=$1
  shift
  local walls=() rpj=() idle=() peaks=""
  for _ in $(seq "$RUNS"); do
    local out
    if ! out=$("$bin" local-smoke "$@" 2>/dev/null); then
      echo "$label: the smoke failed" >&2
      return 1
    fi
    walls+=("$(echo "$out" | sed -n 's/.*; wall time \([0-9.]*\)s$/\1/p')")
    rpj+=("$(echo "$out" | sed -n 's/^bucket requests: [0-9]* total (\([0-9.]*\) per job.*/\1/p')")
    idle+=("$(echo "$out" | sed -n 's/^\([0-9]*\) miners got no work.*/\1/p' | grep . || echo 0)")
    peaks=$(echo "$out" | sed -n 's/^peak memory (RSS): //p')
  done
  printf '%-34s wall %6ss  requests/job %5s  miners without work %s  peak RSS (last run): %s\n' \
    "$label" \
    "$(printf '%s\n' "${walls[@]}" | median)" \
    "$(printf '%s\n' "${rpj[@]}" | median)" \
    "$(printf '%s\n' "${idle[@]}" | median)" \
    "$peaks"
}

echo "local smoke, MLP, median of $RUNS runs each ($(nproc) cores)"
bench "3 steps x 4 miners" --steps 3 --miners 4
bench "3 steps x 4 miners, loopback S3" --steps 3 --miners 4 --bucket s3-local
bench "3 steps x 16 miners" --steps 3 --miners 16
bench "3 steps x 4 miners, 8x8 DAG" --steps 3 --miners 4 --micro-batches 8 --replicas 8
bench "3 steps x 64 miners, 8x8 DAG" --steps 3 --miners 64 --micro-batches 8 --replicas 8
