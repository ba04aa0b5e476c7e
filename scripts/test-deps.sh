#!/usr/bin/env bash
# Installs what the tests need beyond the Rust toolchain. Idempotent; each
# step is skipped when its tool is already present.
set -euo pipefail
cd "$(dirname "$0")/.."
for script in observe/tests/install-chromium.sh; do
  if [ -x "$script" ]; then "$script"; fi
done
