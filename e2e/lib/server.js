// The server half of the harness: builds `sessiond` once, starts it on a free port with a
// temporary data dir and short policies, and talks to its admin API from node.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const API_KEY = 'e2e-admin-key-123';
// A fixed ticket secret so a test could mint tickets itself; the demo asks the server.
export const TICKET_SECRET = 'e2e-ticket-secret-0123456789abcdef0123456789';

/** Short policy: a warning 3 s after the last activity, expiry at 8 s, lost after ~3 s. */
export const SHORT_POLICY = {
  idle_timeout: '8s',
  absolute_timeout: '1h',
  warn_before: '5s',
  heartbeat_interval: '1s',
  heartbeat_misses: 3,
};

/** For a watcher that must outlive a SHORT session in the same test: idle 60 s. */
export const WATCHER_POLICY = { ...SHORT_POLICY, idle_timeout: '60s', warn_before: '10s' };

/** Scenarios about drafts, not timeouts: idle long enough that a slow machine never
 * expires a session mid-scenario; heartbeats stay short. */
export const CALM_POLICY = { ...SHORT_POLICY, idle_timeout: '10m', warn_before: '1m' };

/** Timeout scenarios: editors expire fast, viewers watch them. */
export const SHORT_ROLES = { editor: SHORT_POLICY, viewer: WATCHER_POLICY, public: SHORT_POLICY };
export const CALM_ROLES = { editor: CALM_POLICY, viewer: CALM_POLICY, public: CALM_POLICY };

let built = false;

/** Builds the binary once per process (`cargo build` is a no-op when it is up to date). */
export function buildServer() {
  const bin = process.env.E2E_SESSIOND_BIN || join(REPO, 'target', 'debug', 'sessiond');
  if (built || process.env.E2E_SESSIOND_BIN || process.env.E2E_SKIP_BUILD) {
    if (!existsSync(bin)) throw new Error(`sessiond binary missing at ${bin}`);
    return bin;
  }
  const r = spawnSync('cargo', ['build', '-p', 'sessiond'], { cwd: REPO, stdio: ['ignore', 'inherit', 'inherit'], timeout: 15 * 60_000 });
  if (r.status !== 0) throw new Error(`cargo build -p sessiond failed (status ${r.status}, ${r.error ?? ''})`);
  built = true;
  return bin;
}

function toml(value) {
  if (Array.isArray(value)) return `[${value.map(toml).join(', ')}]`;
  if (typeof value === 'string') return JSON.stringify(value);
  return String(value);
}

function configText({ roles, allowedOrigins, extra }) {
  const lines = [
    'dev = true',
    'store = "sqlite"',
    `api_keys = ${toml([API_KEY])}`,
    `allowed_origins = ${toml(allowedOrigins)}`,
    '',
    '[tickets]',
    `hs256_secret = ${toml(TICKET_SECRET)}`,
  ];
  for (const [role, policy] of Object.entries(roles)) {
    lines.push('', `[roles.${role}]`);
    for (const [k, v] of Object.entries(policy)) lines.push(`${k} = ${toml(v)}`);
  }
  if (extra) lines.push('', extra);
  return lines.join('\n') + '\n';
}

/** The caller's environment minus SESSIOND_* (the server reads those as configuration). */
function serverEnv() {
  const env = { RUST_LOG: 'info' };
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('SESSIOND_')) env[k] = v;
  return env;
}

/**
 * Starts `sessiond serve` and resolves once it printed its listening line.
 * Returns { url, port, dataDir, apiKey, logs(), admin(method, path, body), stop() }.
 */
export async function startServer({ roles = SHORT_ROLES, allowedOrigins = [], extra = '' } = {}) {
  const bin = buildServer();
  const dataDir = mkdtempSync(join(tmpdir(), 'sessiond-e2e-'));
  const configPath = join(dataDir, 'e2e.toml');
  writeFileSync(configPath, configText({ roles, allowedOrigins, extra }));
  const child = spawn(bin, ['serve', '--config', configPath, '--listen', '127.0.0.1:0', '--data-dir', join(dataDir, 'data'), '--dev'], {
    cwd: dataDir,
    env: serverEnv(),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  // Bounded log buffer: the tail is what a failure report needs.
  const log = [];
  const keep = (chunk) => {
    for (const line of chunk.toString().split('\n')) if (line) log.push(line);
    if (log.length > 2000) log.splice(0, log.length - 2000);
  };
  child.stderr.on('data', keep);

  const url = await new Promise((resolveUrl, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`sessiond did not announce itself within 30 s:\n${log.slice(-40).join('\n')}`)), 30_000);
    child.stdout.on('data', (chunk) => {
      out += chunk.toString();
      keep(chunk);
      const m = out.match(/sessiond listening on (http:\/\/[^\s]+)/);
      if (m) {
        clearTimeout(timer);
        resolveUrl(m[1].replace(/\/$/, ''));
      }
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`sessiond exited (${code ?? signal}) before listening:\n${log.slice(-40).join('\n')}`));
    });
  });
  const port = Number(new URL(url).port);

  async function admin(method, path, body) {
    const res = await fetch(url + path, {
      method,
      headers: { authorization: `Bearer ${API_KEY}`, ...(body ? { 'content-type': 'application/json' } : {}) },
      body: body ? JSON.stringify(body) : undefined,
      signal: AbortSignal.timeout(5000),
    });
    const text = await res.text();
    let json = null;
    try { json = text ? JSON.parse(text) : null; } catch { /* not JSON */ }
    return { status: res.status, json, text };
  }

  /** One session as the admin API sees it (by handle; falls back to the list). */
  async function session(handle) {
    const one = await admin('GET', `/v1/admin/sessions/${handle}`);
    if (one.status === 200) return one.json.session ?? one.json;
    const list = await admin('GET', '/v1/admin/sessions?state=all&limit=1000');
    if (list.status !== 200) throw new Error(`admin session list answered ${list.status}: ${list.text}`);
    const found = list.json.sessions.find((x) => x.handle === handle);
    if (!found) throw new Error(`admin API does not know session ${handle}`);
    return found;
  }

  async function stop() {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    }
    if (!process.env.E2E_KEEP_DATA) rmSync(dataDir, { recursive: true, force: true });
  }

  return { url, port, dataDir, apiKey: API_KEY, logs: () => log.slice(), admin, session, stop, process: child };
}
