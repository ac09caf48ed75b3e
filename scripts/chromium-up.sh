#!/usr/bin/env bash
# Installs Debian's Chromium for the browser tests (cmd/switchboard
# browser_test.go) when it is missing. The tests drive it headless through
# chromedp; nothing is downloaded but the apt package.
set -eu
cd -- "$(dirname "$0")/.."

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"

if ! command -v chromium >/dev/null; then
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-dejavu-core >/dev/null
fi
echo "chromium: $(chromium --version 2>/dev/null || echo missing)"
