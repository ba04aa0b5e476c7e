#!/usr/bin/env bash
# Installs headless Chromium for discovery/tests/ui/browser.rs and tests/discovery_ui.rs (Debian package).
# Safe to run repeatedly; does nothing when a Chromium is already there.
set -euo pipefail
for bin in chromium chromium-browser google-chrome; do
  if command -v "$bin" >/dev/null 2>&1; then
    echo "chromium present: $(command -v "$bin")"
    exit 0
  fi
done
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
echo "installed: $(command -v chromium)"
