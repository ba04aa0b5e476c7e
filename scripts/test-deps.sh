#!/usr/bin/env bash
# Installs what the tests need beyond the Rust toolchain. Idempotent; each
# step is skipped when its tool is already present.
set -euo pipefail
cd "$(dirname "$0")/.."
for script in discovery/tests/install-chromium.sh; do
  if [ -x "$script" ]; then "$script"; fi
done
# The wallet test loads a hotkey made by Bittensor's own wallet package.
if ! python3 -c "import bittensor_wallet" >/dev/null 2>&1; then
  python3 -m pip install -q --disable-pip-version-check bittensor-wallet==4.1.1
fi
# The commit-reveal tests check our drand timelock encryption against the SDK's
# own: the current release, and 1.2.0 (the release for the legacy epoch schedule of
# the runtime our chain bindings are built from) in its own directory.
if ! python3 -c "import bittensor_drand" >/dev/null 2>&1; then
  python3 -m pip install -q --disable-pip-version-check bittensor-drand==2.0.0
fi
if [ ! -d target/pydeps/bittensor-drand-1.2.0/bittensor_drand ]; then
  python3 -m pip install -q --disable-pip-version-check \
    --target target/pydeps/bittensor-drand-1.2.0 bittensor-drand==1.2.0
fi
# The export test loads `locus export`'s file with the safetensors package.
if ! python3 -c "import safetensors.numpy, numpy" >/dev/null 2>&1; then
  python3 -m pip install -q --disable-pip-version-check safetensors==0.7.0 numpy==2.4.6
fi
# Fuzzing installs the nightly toolchain and cargo-fuzz itself (pinned in
# scripts/fuzz.sh); scripts/test.sh does it beside the tests.
