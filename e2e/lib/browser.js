// The browser half of the harness: Debian's Chromium driven by playwright-core, with fake
// media devices, a fresh profile per browser, console capture and screenshots.
import { chromium } from 'playwright-core';
import { mkdtempSync, mkdirSync, rmSync, existsSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

export const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
export const SCREENSHOTS = resolve(dirname(fileURLToPath(import.meta.url)), '..', 'screenshots');

export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-dev-shm-usage',
  '--use-fake-device-for-media-stream',
  '--use-fake-ui-for-media-stream',
  // Background tabs must keep their timers: two tabs of one test run side by side.
  '--disable-background-timer-throttling',
  '--disable-renderer-backgrounding',
  '--disable-backgrounding-occluded-windows',
  // With E2E_WEB_DIR, pages fulfilled by interception count as public, and Chromium's
  // Local Network Access checks would block their WebSocket to 127.0.0.1.
  ...(process.env.E2E_WEB_DIR ? ['--disable-features=LocalNetworkAccessChecks,LocalNetworkAccessChecksWebSockets'] : []),
];

const CONTEXT_OPTIONS = {
  viewport: { width: 1280, height: 860 },
  // Same user agent for every context: S3 requires it, and it is Chromium's own anyway.
  permissions: ['microphone'],
};

/**
 * E2E_WEB_DIR=<dir with demo/, admin/, sdk/>: serve those pages from that directory
 * instead of the copies embedded in the binary at compile time (for iterating on web/
 * without a rebuild). Off by default: the suite tests what the server serves.
 */
async function routeWebOverride(context) {
  const dir = process.env.E2E_WEB_DIR;
  if (!dir) return context;
  const types = { js: 'text/javascript', html: 'text/html', css: 'text/css' };
  await context.route(/\/(demo|admin|sdk)\/.*/, async (route) => {
    const url = new URL(route.request().url());
    let rel = url.pathname.slice(1);
    if (rel.endsWith('/')) rel += 'index.html';
    const file = join(dir, rel);
    if (!existsSync(file) || url.pathname.startsWith('/demo/api/')) return route.fallback();
    await route.fulfill({ path: file, contentType: types[file.split('.').pop()] ?? 'application/octet-stream' });
  });
  return context;
}

function checkChromium() {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install -y chromium`);
}

/** Console lines of every page this harness opened, for failure reports. */
const consoleLog = [];
const openPages = new Set();

/** Watches a page: console messages and page errors go to the log; remembered for failure shots. */
export function watchPage(page, label) {
  openPages.add({ page, label });
  page.on('console', (msg) => consoleLog.push(`[${label}] ${msg.type()}: ${msg.text()}`));
  page.on('pageerror', (err) => consoleLog.push(`[${label}] pageerror: ${err.message}`));
  page.on('response', (res) => {
    if (res.status() >= 400) consoleLog.push(`[${label}] http ${res.status()} ${res.request().method()} ${res.url()}`);
  });
  page.on('close', () => { for (const p of openPages) if (p.page === page) openPages.delete(p); });
  if (consoleLog.length > 5000) consoleLog.splice(0, consoleLog.length - 5000);
  return page;
}

export function consoleLines() { return consoleLog.slice(); }

/** Launches a non-persistent Chromium; each newContext() gets its own cookie jar and storage. */
export async function launchBrowser() {
  checkChromium();
  // Playwright gives launch() a fresh temporary --user-data-dir of its own (and refuses
  // one passed in args); launchProfile() is the way to a chosen, reusable one.
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    timeout: 60_000,
  });
  return {
    browser,
    async newContext(opts = {}) { return routeWebOverride(await browser.newContext({ ...CONTEXT_OPTIONS, ...opts })); },
    async close() { await browser.close().catch(() => {}); },
  };
}

/**
 * A persistent profile (a "shared computer"): close() keeps the directory so the next
 * launch on the same dir is the same browser profile; dispose() removes it. `args` adds
 * Chromium flags for this profile only (e.g. `--host-resolver-rules`).
 */
export async function launchProfile(userDataDir = mkdtempSync(join(tmpdir(), 'sessiond-e2e-profile-')), { args = [] } = {}) {
  checkChromium();
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: [...CHROMIUM_ARGS, ...args],
    timeout: 60_000,
    ...CONTEXT_OPTIONS,
  });
  await routeWebOverride(context);
  return {
    context,
    userDataDir,
    async close() { await context.close().catch(() => {}); },
    async dispose() {
      await context.close().catch(() => {});
      rmSync(userDataDir, { recursive: true, force: true });
    },
  };
}

/** Saves `screenshots/<scenario>-<moment>.png` and returns its path. */
export async function shot(page, scenario, moment) {
  mkdirSync(SCREENSHOTS, { recursive: true });
  const path = join(SCREENSHOTS, `${scenario}-${moment}.png`);
  await page.screenshot({ path, fullPage: true });
  return path;
}

/**
 * Runs a scenario body; on failure screenshots every open page, writes the console log
 * and the server log tail next to them, prints both, and rethrows.
 */
export async function withFailureReport(scenario, server, body) {
  try {
    return await body();
  } catch (err) {
    mkdirSync(SCREENSHOTS, { recursive: true });
    let i = 0;
    for (const { page, label } of openPages) {
      i += 1;
      await page.screenshot({ path: join(SCREENSHOTS, `${scenario}-FAILED-${i}-${label}.png`), fullPage: true, timeout: 5000 }).catch(() => {});
    }
    const consoleText = consoleLines().join('\n');
    const serverText = server ? server.logs().slice(-200).join('\n') : '';
    writeFileSync(join(SCREENSHOTS, `${scenario}-FAILED-console.log`), consoleText + '\n');
    writeFileSync(join(SCREENSHOTS, `${scenario}-FAILED-server.log`), serverText + '\n');
    console.error(`--- ${scenario} failed: page console (last 100 lines) ---\n${consoleLines().slice(-100).join('\n')}`);
    console.error(`--- ${scenario} failed: server log (last 60 lines) ---\n${serverText.split('\n').slice(-60).join('\n')}`);
    throw err;
  }
}
