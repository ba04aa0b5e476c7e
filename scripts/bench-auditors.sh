#!/usr/bin/env bash
# Auditor benchmark: the same gpt_pipe smoke with every receipt replayed
# (sample rate 1, no probation), with 0, 1, 2 and 4 auditors (one CPU
# worker each), all on this machine's cores. Prints, per run, verified
# receipts per second and the validator's own CPU time per verified
# receipt, which is what auditors take off the validator.
#
#   scripts/bench-auditors.sh
#   AUDITORS="0 2" STEPS=1 scripts/bench-auditors.sh
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${STEPS:-2}
MINERS=${MINERS:-4}
AUDITORS=${AUDITORS:-0 1 2 4}
# Stage jobs of a few hundred milliseconds on a 2-core machine.
MODEL=${MODEL:---d-model 96 --heads 4 --d-ff 384 --seq-len 64 --batch 8 --stages 4 --micro-batches 4}
cargo build --release -q
bin=target/release/locus
for n in $AUDITORS; do
  # shellcheck disable=SC2086
  out=$("$bin" local-smoke --steps "$STEPS" --miners "$MINERS" --sample-rate 1 \
    --probation-replays 0 --auditors "$n" --workload gpt_pipe $MODEL)
  replays=$(echo "$out" | sed -n 's/^replays: //p')
  wall=$(echo "$out" | sed -n 's/.*; wall time \([0-9.]*s\)$/\1/p')
  fingerprint=$(echo "$out" | sed -n 's/^final parameters: //p')
  echo "auditors $n: $replays; wall $wall; parameters $fingerprint"
done
