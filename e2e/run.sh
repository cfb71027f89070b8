#!/usr/bin/env bash
# Runs the real-browser suite headless: installs Debian's Chromium and the pinned npm
# packages when missing (never a browser download of Playwright's own), builds sessiond,
# then runs every scenario file in turn.
set -euo pipefail
cd "$(dirname "$0")"

if [ ! -x "${CHROMIUM_PATH:-/usr/bin/chromium}" ]; then
  echo "e2e: installing chromium (apt)" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
if [ ! -d node_modules/playwright-core ]; then
  npm ci --no-audit --no-fund
fi
# shellcheck disable=SC2086 # TEST_BIN_BUILD_ARGS is a list of cargo arguments
(cd .. && cargo build ${TEST_BIN_BUILD_ARGS:--p sessiond})
export E2E_SKIP_BUILD=1
exec npm test --silent -- "$@"
