#!/usr/bin/env bash
# The one benchmark command: builds the load tool (crates/sessiond-bench) in release mode,
# runs its scenarios (hot path, session creation, draft autosaves, two nodes on one Redis)
# against their built-in baselines in interleaved rounds, and rewrites docs/benchmarks.md.
# Takes a few minutes on 2 cores.
# `create` runs sessiond on SQLite with group commit on and off (plus bare axum, the
# ceiling, and the naive insert, the baseline) so the gain is read within one run;
# `./target/release/sessiond-bench create --duration 4s` runs that scenario alone (so do
# `http-hot`, `drafts`, `cluster`, `ws-idle` and `expiry`). To check the tool's own client
# against wrk: `sessiond-bench serve bare-axum --cookies /tmp/c --for 30s` prints the URL
# to load, and `COOKIES=/tmp/c wrk -t1 -c64 -d8s -s bench/wrk-verify.lua URL` loads it.
# `ws-idle` holds --ws-conns idle WebSockets (each side in its own process, so each
# needs that many files: the ulimit below) through three heartbeats of --ws-heartbeat;
# `expiry` loads --expiry-sessions sessions (memory store) and a --expiry-burst of
# creates on SQLite, and measures every ending's lateness.
# Extra arguments go to the tool (e.g. `--duration 8s --rounds 5`, `--no-redis`);
# BENCH_DURATION and BENCH_ROUNDS set the defaults below.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"

cargo build --release -p sessiond-bench

commit="$(git rev-parse --short HEAD 2>/dev/null || true)"
if [ -n "$commit" ] && ! git diff --quiet HEAD 2>/dev/null; then
  commit="$commit with local changes"
fi
# Each client holds one connection; leave room for more clients than the default limit.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

./target/release/sessiond-bench all \
  --duration "${BENCH_DURATION:-6s}" \
  --rounds "${BENCH_ROUNDS:-3}" \
  --commit "$commit" \
  --out docs/benchmarks.md \
  "$@"
# No hot shard: commands per master of a local 3-master Redis Cluster (needs redis-cli);
# its table is appended, and a phase over the bar is reported, not fatal, like every bar.
if command -v redis-server >/dev/null && command -v redis-cli >/dev/null; then
  balance="$(mktemp)"
  if ! ./target/release/sessiond-bench cluster-balance --duration "${BENCH_DURATION:-6s}" --out "$balance"; then
    echo "cluster-balance: a phase is over the bar (see docs/benchmarks.md)" >&2
  fi
  if [ -s "$balance" ]; then
    {
      printf '\n## Redis Cluster balance (`cluster-balance`: 3 masters, one sessiond node, each phase %s)\n\n' "${BENCH_DURATION:-6s}"
      cat "$balance"
    } >> docs/benchmarks.md
  fi
  rm -f "$balance"
fi
echo "wrote docs/benchmarks.md"
