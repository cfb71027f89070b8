#!/usr/bin/env bash
# Schemathesis against the real server's /openapi.json: no 5xx, every response matches
# the documented schema, status code and content type.
#
# Starts the debug binary (dev off, a known API key, the memory store, a temp data dir,
# a free loopback port), creates a session for its token, then runs schemathesis twice:
# the admin paths with the API key, every other path but sign-out and the dev-only demo
# with the session's token, as the cookie and as `Authorization: Bearer` (given
# explicitly, so schemathesis does not make up one for the documented bearer scheme; and
# the API key there would be presented as a session token). One worker: CPython 3.11's
# parser is not thread-safe under hypothesis' lambda introspection.
# Bounded: SCHEMATHESIS_MAX_EXAMPLES cases per operation (default 15) and
# SCHEMATHESIS_MAX_TIME seconds per run (default 90).
#
# The venv (schemathesis from PyPI) is created when missing, outside the repository:
# $SCHEMATHESIS_VENV, default ~/.cache/sessiond/schemathesis-venv.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${SCHEMATHESIS_VENV:-$HOME/.cache/sessiond/schemathesis-venv}"
MAX_EXAMPLES="${SCHEMATHESIS_MAX_EXAMPLES:-15}"
MAX_TIME="${SCHEMATHESIS_MAX_TIME:-90}"
API_KEY="schemathesis-admin-key-0123456789"

if [ ! -x "$VENV/bin/schemathesis" ]; then
  echo "installing schemathesis into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check 'schemathesis>=4,<5'
fi
"$VENV/bin/schemathesis" --version

# shellcheck disable=SC2086 # TEST_BIN_BUILD_ARGS is a list of cargo arguments
cargo build -q ${TEST_BIN_BUILD_ARGS:--p sessiond}
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/sessiond"

WORK="$(mktemp -d)"
SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ]; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

# Rate limits off: every generated request should reach its handler (429 is documented
# and checked by the Rust suite).
env SESSIOND_API_KEYS="[\"$API_KEY\"]" \
  SESSIOND_TICKETS__HS256_SECRET="schemathesis-ticket-secret-0123456789" \
  SESSIOND_RATE_LIMITS__ENABLED=false \
  SESSIOND_LOG_FORMAT=json RUST_LOG="${RUST_LOG:-warn}" \
  "$BIN" serve --listen 127.0.0.1:0 --store memory --data-dir "$WORK/data" \
  >"$WORK/stdout" 2>"$WORK/stderr" &
SERVER_PID=$!

BASE=""
for _ in $(seq 1 100); do
  BASE="$(sed -n 's/^sessiond listening on \(http:[^ ]*\)$/\1/p' "$WORK/stdout" | head -1)"
  [ -n "$BASE" ] && break
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    echo "the server exited:" >&2
    cat "$WORK/stderr" >&2
    exit 1
  fi
  sleep 0.1
done
if [ -z "$BASE" ]; then
  echo "the server did not announce its address" >&2
  exit 1
fi
echo "server: $BASE"

TOKEN="$(curl -fsS -X POST -H 'content-type: application/json' -d '{"bearer":true}' \
  "$BASE/v1/session" | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')"
COOKIE_NAME="__Host-sessiond"

CHECKS="not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance"
run() {
  local label="$1"
  shift
  echo "---- schemathesis: $label"
  "$VENV/bin/schemathesis" run "$BASE/openapi.json" \
    --checks "$CHECKS" \
    --max-examples "$MAX_EXAMPLES" \
    --max-time "$MAX_TIME" \
    --phases examples,coverage,fuzzing \
    --workers 1 \
    --seed 1 \
    --request-timeout 10 \
    --suppress-health-check all \
    --output-truncate true \
    --report junit --report-junit-path "$WORK/$label.xml" \
    "$@"
}

status=0
# Not signing the session out under the run (every later call would be 401); the demo
# routes are mounted in dev mode only.
run session --exclude-path-regex '^/(v1/admin|demo)/' --exclude-operation-id sign_out \
  -H "Authorization: Bearer $TOKEN" -H "Cookie: $COOKIE_NAME=$TOKEN" || status=1
# After the session run: the admin API may revoke sessions.
run admin --include-path-regex '^/v1/admin/' -H "Authorization: Bearer $API_KEY" || status=1
if ! kill -0 "$SERVER_PID" 2>/dev/null; then
  echo "the server died during the run:" >&2
  tail -50 "$WORK/stderr" >&2
  status=1
fi
exit "$status"
