#!/usr/bin/env bash
# Installs Debian's Chromium for the browser tests (cmd/switchboard
# browser_test.go) when it is missing. The tests drive it headless through
# chromedp; nothing is downloaded but the apt packages (Chromium, and fonts
# for text and emoji, so that screenshots show reactions as people see them).
set -eu
cd -- "$(dirname "$0")/.."

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"

missing=()
for pkg in chromium fonts-dejavu-core fonts-noto-color-emoji; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
echo "chromium: $(chromium --version 2>/dev/null || echo missing)"
