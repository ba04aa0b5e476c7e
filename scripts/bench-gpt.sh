#!/usr/bin/env bash
# gpt_pipe throughput benchmark: the distributed run (orchestrator, miners
# and validator at its default sample rate, all on this machine's cores)
# against `locus train` (the same model, data and jobs in one process).
#
#   scripts/bench-gpt.sh                 # the default bench size below
#   STEPS=2 MINERS=4 MODEL="--d-model 64 --seq-len 64" scripts/bench-gpt.sh
#
# Prints both runs' figures and the ratio of their examples (tokens) per
# second; the parameters both end with must be the same (fingerprints).
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${STEPS:-2}
MINERS=${MINERS:-4}
# Big enough that one stage job takes about a second on a 2-core machine.
MODEL=${MODEL:---d-model 128 --heads 4 --d-ff 512 --seq-len 128 --batch 8 --stages 4 --micro-batches 4}
cargo build --release -q
bin=target/release/locus
# shellcheck disable=SC2086
train=$("$bin" train --steps "$STEPS" --workload gpt_pipe $MODEL)
echo "$train"
# shellcheck disable=SC2086
smoke=$("$bin" local-smoke --steps "$STEPS" --miners "$MINERS" --workload gpt_pipe $MODEL)
echo "$smoke"
single=$(echo "$train" | sed -n 's/.*: \([0-9]*\) examples\/s$/\1/p' | tail -1)
distributed=$(echo "$smoke" | sed -n 's/^throughput: \([0-9]*\) examples\/s.*/\1/p')
a=$(echo "$train" | sed -n 's/^final parameters: //p')
b=$(echo "$smoke" | sed -n 's/^final parameters: //p')
echo "single process: $single tokens/s; distributed: $distributed tokens/s; ratio $(awk "BEGIN { printf \"%.2f\", $distributed / $single }")"
if [ "$a" != "$b" ]; then
  echo "the two runs end with different parameters ($a vs $b)" >&2
  exit 1
fi
