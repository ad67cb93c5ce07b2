#!/usr/bin/env bash
# Set-up for running the test suite on a fresh Debian 12 machine: the Debian packages the tests drive for real
# (listed in .ci/apt-packages: proxies, browser, Python), then the npm packages (which include Node 24 itself), then
# openai-python in .venv.
set -euo pipefail
cd "$(dirname "$0")/.."

pkgs=$(grep -v '^\s*#' .ci/apt-packages | tr '\n' ' ')
missing=""
for p in $pkgs; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  echo "setup: installing Debian packages:$missing"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  # policy-rc.d keeps Debian from starting nginx/haproxy/caddy as system services: tests start their own.
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null && $SUDO chmod +x /usr/sbin/policy-rc.d
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
  $SUDO rm -f /usr/sbin/policy-rc.d
fi
npm install --no-audit --no-fund
# openai-python, for the tests that drive the Python SDK (test/helpers/python-openai.ts), in a venv of the repository's
# own (Debian 12's system Python refuses `pip install`). Those tests are skipped, saying so, when this fails.
if ! .venv/bin/python -c 'import openai' >/dev/null 2>&1; then
  echo "setup: installing openai-python into .venv"
  { python3 -m venv .venv && .venv/bin/pip install -q openai; } || echo "setup: openai-python could not be installed; its tests will be skipped"
fi
