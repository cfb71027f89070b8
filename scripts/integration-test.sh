#!/usr/bin/env bash
# The backend recipes of docs/integration.md, each against a real sessiond (the debug
# binary on a free port): an Express app (integrations/express, `node --test`) and a
# FastAPI app served by uvicorn (integrations/fastapi, unittest). Installs what is missing:
# the Express app's npm packages (from its lockfile) and a venv with the FastAPI recipe's
# requirements, outside the repository: $INTEGRATION_VENV, default
# ~/.cache/sessiond/integration-venv.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${INTEGRATION_VENV:-$HOME/.cache/sessiond/integration-venv}"
REQS="integrations/fastapi/requirements.txt"

# shellcheck disable=SC2086 # TEST_BIN_BUILD_ARGS is a list of cargo arguments
cargo build -q ${TEST_BIN_BUILD_ARGS:--p sessiond}
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/sessiond"

echo "-- express (integrations/express)"
if [ ! -d integrations/express/node_modules/standardwebhooks ]; then
  (cd integrations/express && npm ci --no-audit --no-fund --loglevel=error)
fi
(cd integrations/express && E2E_SESSIOND_BIN="$BIN" node --test --test-timeout=120000 test.js webhooks.test.js)

echo "-- fastapi (integrations/fastapi)"
# Reinstall when the requirements changed since the venv was made.
stamp="$VENV/.requirements.sha256"
want="$(sha256sum "$REQS" | cut -d' ' -f1)"
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "installing the FastAPI recipe's requirements into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r "$REQS"
  echo "$want" >"$stamp"
fi
(cd integrations/fastapi && SESSIOND_BIN="$BIN" "$VENV/bin/python" -m unittest -v test_app.py test_webhooks.py)
