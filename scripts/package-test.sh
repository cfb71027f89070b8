#!/usr/bin/env bash
# Builds the Debian package and checks it without installing it: its metadata and file
# list, the maintainer scripts, the unpacked binary run with the packaged config (only
# its ports and state directory rewritten: health, a session, the internal listener, a
# graceful SIGTERM stop with exit 0, an online backup), and the systemd unit through
# `systemd-analyze verify`. Nothing is installed into the machine: the package is only
# unpacked (`dpkg-deb -x`) into a temporary directory.
#
# By default the package holds the debug binary the other test steps already built
# (cargo-deb --no-build), so the step costs seconds, not a release build on a busy
# machine; the packaging itself (assets, conffiles, scripts, unit) is the same.
# SESSIOND_PACKAGE_RELEASE=1 runs the real `cargo deb -p sessiond` (release build) instead.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

fail() {
  echo "package-test: $*" >&2
  exit 1
}

for tool in cargo-deb dpkg-deb systemd-analyze curl; do
  command -v "$tool" >/dev/null 2>&1 || fail "$tool is missing (scripts/test install installs it)"
done

TMP="$(mktemp -d -t sessiond-package-XXXXXX)"
PID=""
cleanup() {
  if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then
    kill -KILL "$PID" 2>/dev/null || true
  fi
  rm -rf "$TMP"
}
trap cleanup EXIT

# ---- build the .deb
if [ "${SESSIOND_PACKAGE_RELEASE:-0}" = 1 ]; then
  cargo deb -p sessiond --output "$TMP/"
else
  # shellcheck disable=SC2086 # TEST_BIN_BUILD_ARGS is a list of cargo arguments
  cargo build ${TEST_BIN_BUILD_ARGS:--p sessiond}
  # cargo-deb refuses the dev profile by name; a profile directory of our own holding
  # a copy (cargo-deb strips what it packages) of the debug binary stands in for it.
  target_dir="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
  mkdir -p "$target_dir/package-test"
  cp -f "$target_dir/debug/sessiond" "$target_dir/package-test/sessiond"
  cargo deb -p sessiond --profile package-test --no-build --output "$TMP/"
fi
DEB="$(ls "$TMP"/*.deb)"
echo "built $(basename "$DEB") ($(stat -c %s "$DEB") bytes)"

# ---- metadata, file list, maintainer scripts
dpkg-deb --field "$DEB" Package Version Architecture Depends Section | tee "$TMP/fields"
grep -qx 'Package: sessiond' "$TMP/fields" || fail "wrong package name"
grep -q '^Depends:.*adduser' "$TMP/fields" || fail "Depends lacks adduser (postinst adds the user)"

dpkg-deb --contents "$DEB" | awk '{print $1, $6}' | sed 's#^\(.\{10\}\) \./#\1 /#' >"$TMP/contents"
expect() { # expect MODE PATH: the package holds PATH with permissions MODE
  grep -qx -- "$1 $2" "$TMP/contents" || {
    cat "$TMP/contents" >&2
    fail "missing or wrong mode: $1 $2"
  }
}
expect -rwxr-xr-x /usr/bin/sessiond
expect -rw-r----- /etc/sessiond/sessiond.toml
expect -rw-r--r-- /usr/share/doc/sessiond/copyright
expect -rw-r--r-- /usr/share/doc/sessiond/operations.md
expect -rw-r--r-- /usr/share/doc/sessiond/configuration.md
expect -rw-r--r-- /usr/share/doc/sessiond/sessiond.example.toml
UNIT_PATH="$(awk '$2 ~ /\/systemd\/system\/sessiond\.service$/ {print $2}' "$TMP/contents")"
[ -n "$UNIT_PATH" ] || fail "no systemd unit in the package"
expect -rw-r--r-- "$UNIT_PATH"
# Nothing beyond the binary, /etc/sessiond, the unit and the docs.
unexpected="$(awk '$1 !~ /^d/ {print $2}' "$TMP/contents" |
  grep -v -e '^/usr/bin/sessiond$' -e '^/etc/sessiond/sessiond.toml$' -e '^/usr/share/doc/sessiond/' -e "^$UNIT_PATH\$" || true)"
[ -z "$unexpected" ] || fail "unexpected files in the package: $unexpected"

dpkg-deb --control "$DEB" "$TMP/control"
grep -qx /etc/sessiond/sessiond.toml "$TMP/control/conffiles" || fail "the config is not a conffile"
for script in postinst postrm; do
  [ -x "$TMP/control/$script" ] || fail "no executable $script"
  sh -n "$TMP/control/$script" || fail "$script: syntax error"
  grep -q '#DEBHELPER#' "$TMP/control/$script" && fail "$script: #DEBHELPER# was not replaced"
done
grep -q 'adduser --system' "$TMP/control/postinst" || fail "postinst does not add the user"
grep -q 'deb-systemd-helper' "$TMP/control/postinst" || fail "postinst does not enable the unit"

# ---- unpack; the packaged config must be valid as shipped
ROOTFS="$TMP/root"
dpkg-deb -x "$DEB" "$ROOTFS"
BIN="$ROOTFS/usr/bin/sessiond"
"$BIN" --version
"$BIN" config check --config "$ROOTFS/etc/sessiond/sessiond.toml"

# Only the two ports and the state directory change.
STATE="$TMP/state"
CONF="$TMP/sessiond.toml"
sed -e 's#^listen = "127\.0\.0\.1:[0-9]*"$#listen = "127.0.0.1:0"#' \
  -e 's#^internal_listen = "127\.0\.0\.1:[0-9]*"$#internal_listen = "127.0.0.1:0"#' \
  -e "s#^data_dir = \"/var/lib/sessiond\"\$#data_dir = \"$STATE\"#" \
  "$ROOTFS/etc/sessiond/sessiond.toml" >"$CONF"
changed="$(diff "$ROOTFS/etc/sessiond/sessiond.toml" "$CONF" | grep -c '^>' || true)"
[ "$changed" = 3 ] || fail "expected to rewrite 3 lines of the packaged config, rewrote $changed"

# ---- run it as the unit would (serve --config FILE), on free ports
env -u RUST_LOG "$BIN" serve --config "$CONF" >"$TMP/stdout" 2>"$TMP/stderr" </dev/null &
PID=$!
for _ in $(seq 1 200); do
  grep -q '^internal ' "$TMP/stdout" && break
  kill -0 "$PID" 2>/dev/null || { cat "$TMP/stderr" >&2; fail "the server exited at start"; }
  sleep 0.1
done
PUBLIC="$(sed -n 's#^sessiond listening on \(http://.*\)$#\1#p' "$TMP/stdout")"
INTERNAL="$(sed -n 's#^internal (admin, metrics, readiness): \(http://.*\)$#\1#p' "$TMP/stdout")"
[ -n "$PUBLIC" ] && [ -n "$INTERNAL" ] || { cat "$TMP/stdout" "$TMP/stderr" >&2; fail "no announcement"; }
echo "public $PUBLIC, internal $INTERNAL"

status() { # status URL [curl args]: the HTTP status
  local url="$1"
  shift
  curl -s -o "$TMP/body" -w '%{http_code}' --max-time 5 "$@" "$url"
}
[ "$(status "$PUBLIC/healthz")" = 200 ] || fail "/healthz"
[ "$(status "$INTERNAL/readyz")" = 200 ] || fail "/readyz on the internal listener"
# The admin API is not on the browser-facing listener, and refuses the keyless.
[ "$(status "$PUBLIC/v1/admin/sessions")" = 404 ] || fail "admin API on the public listener"
# No keys configured: 403 forbidden ("an API key is required").
[ "$(status "$INTERNAL/v1/admin/sessions")" = 403 ] || fail "admin API without a key: $(cat "$TMP/body")"
[ "$(status "$PUBLIC/v1/session" -X POST -H 'content-type: application/json' -d '{"bearer":true}')" = 201 ] ||
  fail "creating a session: $(cat "$TMP/body")"
TOKEN="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["token"])' "$TMP/body")"
[ "$(status "$PUBLIC/v1/session" -H "authorization: Bearer $TOKEN")" = 200 ] || fail "reading the session back"
# Not dev mode: the cookie is Secure.
curl -s -D - -o /dev/null -X POST "$PUBLIC/v1/session" | grep -i '^set-cookie:.*; *secure' >/dev/null ||
  fail "the session cookie is not Secure"

# An online backup of the running server, through the packaged binary and config.
"$BIN" backup --config "$CONF" --to "$TMP/backup" | tee "$TMP/backup.out"
grep -q 'integrity ok' "$TMP/backup.out" || fail "backup not verified"

# SIGTERM is the unit's KillSignal: a graceful stop exits 0.
t0=$(date +%s%N)
kill -TERM "$PID"
rc=0
wait "$PID" || rc=$?
PID=""
echo "stopped on SIGTERM in $((($(date +%s%N) - t0) / 1000000)) ms, exit status $rc"
[ "$rc" = 0 ] || { cat "$TMP/stderr" >&2; fail "exit status $rc after SIGTERM"; }
[ -f "$STATE/sessiond.db" ] && [ -f "$STATE/server-secret" ] || fail "nothing in the state directory"

# ---- the unit: systemd-analyze verify, ExecStart pointed at the unpacked binary (verify
# checks that it exists), in a copy.
UNITS="$TMP/units"
mkdir -p "$UNITS"
sed "s#^ExecStart=/usr/bin/sessiond #ExecStart=$BIN #" "$ROOTFS$UNIT_PATH" >"$UNITS/sessiond.service"
grep -q "^ExecStart=$BIN serve --config /etc/sessiond/sessiond.toml\$" "$UNITS/sessiond.service" ||
  fail "ExecStart is not /usr/bin/sessiond serve --config /etc/sessiond/sessiond.toml"
for want in 'KillSignal=SIGTERM' 'User=sessiond' 'StateDirectory=sessiond' 'NoNewPrivileges=yes' \
  'ProtectSystem=strict' 'CapabilityBoundingSet=' 'SystemCallFilter=@system-service' 'Restart=on-failure'; do
  grep -qx "$want" "$UNITS/sessiond.service" || fail "the unit lacks $want"
done
verify_rc=0
SYSTEMD_LOG_COLOR=0 systemd-analyze verify --man=no "$UNITS/sessiond.service" >"$TMP/verify" 2>&1 || verify_rc=$?
cat "$TMP/verify"
[ "$verify_rc" = 0 ] || fail "systemd-analyze verify failed ($verify_rc)"
# Any remark about our unit (unknown setting, bad value) fails the step.
if grep -q 'sessiond\.service' "$TMP/verify"; then
  fail "systemd-analyze verify has remarks on the unit"
fi
# The exposure score of the hardening (lower is better; 10 is an unconfined service).
systemd-analyze security --offline=true "$UNITS/sessiond.service" 2>/dev/null | tail -n 1 || true
echo "package-test: ok"
