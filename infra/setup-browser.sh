#!/usr/bin/env bash
# Installs what the report's headless-browser test needs: Debian's chromium (the test drives it
# through Playwright's Python package with executable_path=/usr/bin/chromium; Playwright's own
# browser download is never used, so `playwright install` is not run).
#
# Needs root for apt-get. Without root, or where there is no apt-get, it says so and exits 0:
# tests/integration/test_report_browser.py then skips with that reason.
set -euo pipefail

if command -v chromium >/dev/null 2>&1; then
  echo "chromium: $(chromium --version 2>/dev/null || echo present)"
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "setup-browser: no apt-get here; install chromium yourself or the browser test skips" >&2
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
  else
    echo "setup-browser: not root and no passwordless sudo; the browser test will skip" >&2
    exit 0
  fi
fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium
echo "chromium: $(chromium --version 2>/dev/null || echo installed)"
