#!/usr/bin/env bash
# Install Debian's Chromium, its matching chromedriver and the fonts the screenshots need
# (CJK, emoji), when missing. The site's browser test (tests/test_site.py) drives them
# through selenium; they come from apt because selenium's own downloader cannot reach the
# network in CI.
set -euo pipefail

PACKAGES="chromium chromium-driver fonts-noto-cjk fonts-noto-color-emoji"

# shellcheck disable=SC2086
if dpkg -s $PACKAGES >/dev/null 2>&1; then
    exit 0
fi

SUDO=""
if [ "$(id -u)" != "0" ]; then
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $PACKAGES >/dev/null
chromium --version
chromedriver --version
