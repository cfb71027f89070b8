// One scenario's world: proxies (one per browser context, so one can be frozen alone),
// a server that trusts their origins, a browser, and a teardown that undoes all of it.
import { startServer, SHORT_ROLES } from './server.js';
import { startProxy } from './proxy.js';
import { launchBrowser } from './browser.js';

export async function startEnv({ proxies = 2, roles = SHORT_ROLES, browser = true, extraOrigins = [] } = {}) {
  const list = [];
  for (let i = 0; i < proxies; i += 1) list.push(await startProxy());
  let server;
  try {
    server = await startServer({ roles, allowedOrigins: [...list.map((p) => p.origin), ...extraOrigins] });
  } catch (err) {
    await Promise.all(list.map((p) => p.close()));
    throw err;
  }
  for (const p of list) p.setTarget(server.port);
  const b = browser ? await launchBrowser() : null;
  return {
    server,
    proxies: list,
    browser: b,
    async close() {
      if (b) await b.close();
      await Promise.all(list.map((p) => p.close()));
      await server.stop();
    },
  };
}

/** Polls `fn` until it returns a truthy value or `timeout` ms pass. */
export async function waitFor(fn, { timeout = 10_000, interval = 100, message = 'condition' } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for ${message} (last: ${last instanceof Error ? last.message : JSON.stringify(last)})`);
    await new Promise((r) => setTimeout(r, interval));
  }
}
