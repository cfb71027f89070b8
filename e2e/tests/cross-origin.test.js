// Cross-origin use (issue 14, point 1): the page is served by a small static server on
// one origin and talks to sessiond on another, in both SDK modes.
//
// - Cookie mode, http://localhost:<A> → http://localhost:<B>: another origin but the same
//   site, so the Lax cookie flows with CORS credentials. (A cookie across *sites* needs
//   `SameSite=None; Secure`, which sessiond refuses in dev mode, and this suite's server
//   runs in dev mode over plain HTTP; docs/protocol.md describes that deployment.)
// - Bearer mode in a third-party iframe: the top page is http://127.0.0.1:<A>, the frame
//   http://localhost:<A> and sessiond http://127.0.0.1:<B>, another site to the frame,
//   so no cookie could flow: the token lives in the SDK's memory and travels as
//   `Authorization` and a `bearer.<token>` WebSocket subprotocol entry.
// - A page on an origin outside `allowed_origins` gets nothing: CORS refuses its fetches
//   and the server refuses its WebSocket even with a valid token.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { startServer, SHORT_ROLES, REPO } from '../lib/server.js';
import { launchBrowser, watchPage, shot, withFailureReport } from '../lib/browser.js';
import { waitFor } from '../lib/env.js';
import { startStatic } from '../lib/static.js';

const S = 'cross-origin';

/** The app page: the SDK from the app's own origin, sessiond at `?base=`, mode `?mode=`.
 * Everything the SDK emits is kept in `window.seen` for the test to read. */
export const APP_PAGE = (sdkUrl) => `<!doctype html><meta charset="utf-8"><title>app</title>
<body><p id="status">starting</p>
<script type="module">
import { Sessiond } from ${JSON.stringify(sdkUrl)};
const p = new URLSearchParams(location.search);
const sd = new Sessiond({ baseUrl: p.get('base'), auth: p.get('mode') || 'cookie' });
window.sd = sd;
window.seen = [];
for (const t of ['connected', 'reconnected', 'warning', 'renewed', 'ended', 'lost']) {
  sd.on(t, (e) => { window.seen.push({ t, e: JSON.parse(JSON.stringify(e ?? null)) }); document.getElementById('status').textContent = t; });
}
window.started = sd.start().then((s) => ({ ok: s }), (e) => ({ error: e.code ?? String(e) }));
</script></body>`;

const TOP_PAGE = (frameUrl) => `<!doctype html><meta charset="utf-8"><title>customer site</title>
<h1>A customer's site</h1><iframe id="widget" src="${frameUrl}" width="600" height="200"></iframe>`;

let site;
let server;
let browser;
const pages = { '/app.html': APP_PAGE('/sdk/sessiond.js') };
before(async () => {
  site = await startStatic({ roots: { '/sdk/': join(REPO, 'sdk', 'dist') }, pages });
  server = await startServer({ roles: SHORT_ROLES, allowedOrigins: [site.localhost] });
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
  await server?.stop();
  await site?.close();
});

const seen = (target, t) => target.evaluate((t) => window.seen.filter((x) => x.t === t).map((x) => x.e), t);
const started = (target) => target.evaluate(() => window.started);

test('cookie mode from another origin of the same site: session, socket, warning, renewal, drafts, ending', async () => {
  const context = await browser.newContext();
  try {
    await withFailureReport(`${S}-cookie`, server, async () => {
      const page = watchPage(await context.newPage(), 'cookie');
      const base = `http://localhost:${server.port}`;
      await page.goto(`${site.localhost}/app.html?mode=cookie&base=${encodeURIComponent(base)}`);
      await page.waitForFunction(() => window.started);
      const r = await started(page);
      assert.ok(r.ok, `start: ${JSON.stringify(r)}`);
      const cookies = await context.cookies(base);
      const sid = cookies.find((c) => c.name === 'sessiond');
      assert.ok(sid?.httpOnly, `the HttpOnly session cookie is set for sessiond's host: ${JSON.stringify(cookies)}`);
      assert.equal(await page.evaluate(() => document.cookie), '', 'the page cannot read it');
      await waitFor(async () => (await seen(page, 'connected')).length === 1, { message: 'socket open (cookie + allowed Origin)' });

      // The expiry warning arrives over the socket; the renewal goes through CORS.
      await waitFor(async () => (await seen(page, 'warning')).length > 0, { message: 'expiry warning' });
      const renewed = await page.evaluate(() => window.sd.renew().then((s) => s.state));
      assert.equal(renewed, 'active');

      // A draft saved cross-origin with the cookie, read back.
      const text = await page.evaluate(async () => {
        const d = window.sd.drafts('conv-1');
        await d.get();
        d.set('written on another origin');
        await d.flush();
        const r = await window.sd.req('GET', '/v1/drafts/conv-1');
        return r.data?.text;
      });
      assert.equal(text, 'written on another origin');
      await shot(page, S, 'cookie-1-live');

      // Revoked by an admin: the page hears it and ends.
      const handle = r.ok.handle;
      assert.ok([200, 204].includes((await server.admin('DELETE', `/v1/admin/sessions/${handle}`)).status));
      await waitFor(async () => (await seen(page, 'ended')).length === 1, { message: 'ended' });
      assert.equal((await seen(page, 'ended'))[0].reason, 'revoked');
      const after = await page.evaluate(() => window.sd.req('GET', '/v1/session', { noEnd: true }).then((r) => [r.status, r.data?.code]));
      assert.equal(after[0], 401, 'the page reads the 401 problem cross-origin');
    });
  } finally {
    await context.close();
  }
});

test('bearer mode in a third-party iframe: token in memory, socket by subprotocol, rotation on sign-in', async () => {
  const context = await browser.newContext();
  try {
    await withFailureReport(`${S}-bearer`, server, async () => {
      const base = `http://127.0.0.1:${server.port}`;
      const frameUrl = `${site.localhost}/app.html?mode=bearer&base=${encodeURIComponent(base)}`;
      pages['/top.html'] = TOP_PAGE(frameUrl);
      const page = watchPage(await context.newPage(), 'top');
      await page.goto(`${site.ip}/top.html`);
      const frame = await waitFor(() => page.frames().find((f) => f.url().startsWith(site.localhost)), { message: 'iframe' });
      await frame.waitForFunction(() => window.started);
      const r = await started(frame);
      assert.ok(r.ok, `start: ${JSON.stringify(r)}`);
      assert.equal(r.ok.token, undefined, 'the app never sees the token in the session');
      const first = await frame.evaluate(() => window.sd.authHeaders().authorization);
      assert.match(first, /^Bearer [A-Za-z0-9_-]{20,}$/);
      await waitFor(async () => (await seen(frame, 'connected')).length === 1, { message: 'socket open (bearer subprotocol)' });
      assert.deepEqual((await context.cookies()).filter((c) => c.name === 'sessiond'), [], 'no cookie at all');
      // This Chromium denies a third-party frame its storage altogether (the SDK runs
      // without local copies then); where it is readable, the token is not in it.
      const stored = await frame.evaluate(() => {
        try {
          return JSON.stringify({ ...localStorage }) + JSON.stringify({ ...sessionStorage });
        } catch (e) {
          return 'denied: ' + e.name;
        }
      });
      assert.ok(!stored.includes(first.slice(7)), 'the token is not in storage');

      await waitFor(async () => (await seen(frame, 'warning')).length > 0, { message: 'expiry warning' });
      assert.equal(await frame.evaluate(() => window.sd.renew().then((s) => s.state)), 'active');
      const text = await frame.evaluate(async () => {
        const d = window.sd.drafts('conv-1');
        await d.get();
        d.set('typed in the widget');
        await d.flush();
        return (await window.sd.req('GET', '/v1/drafts/conv-1')).data?.text;
      });
      assert.equal(text, 'typed in the widget');

      // Sign-in rotates the token: the SDK holds the new one, the old one is dead, and
      // the socket comes back with the new one.
      const t = await server.admin('POST', '/v1/admin/tickets', { user_id: 'wanda', role: 'editor' });
      assert.equal(t.status, 200, t.text);
      const principal = await frame.evaluate((ticket) => window.sd.signIn(ticket).then((s) => s.principal), t.json.ticket);
      assert.equal(principal, 'user:wanda');
      const second = await frame.evaluate(() => window.sd.authHeaders().authorization);
      assert.notEqual(second, first);
      const oldStatus = await frame.evaluate(([b, h]) => fetch(b + '/v1/session', { headers: { authorization: h } }).then((r) => r.status), [base, first]);
      assert.equal(oldStatus, 401, 'the rotated-out token is refused');
      await waitFor(async () => (await seen(frame, 'connected')).some((h) => h.principal === 'user:wanda'), { message: 'socket reopened with the new token' });
      await shot(page, S, 'bearer-1-signed-in-in-iframe');

      // 401 handling as in cookie mode: revoked → ended, the drafts API answers 401.
      const handle = (await frame.evaluate(() => window.sd.session.handle));
      assert.ok([200, 204].includes((await server.admin('DELETE', `/v1/admin/sessions/${handle}`)).status));
      await waitFor(async () => (await seen(frame, 'ended')).length === 1, { message: 'ended' });
      assert.equal((await seen(frame, 'ended'))[0].reason, 'revoked');
    });
  } finally {
    await context.close();
  }
});

test('a page outside allowed_origins gets no CORS answer and no socket, even with a valid token', async () => {
  const context = await browser.newContext();
  try {
    await withFailureReport(`${S}-refused`, server, async () => {
      const base = `http://localhost:${server.port}`;
      // A valid bearer token made outside any browser (no Origin: allowed, as curl is).
      const made = await fetch(`${base}/v1/session`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"bearer":true}' });
      assert.equal(made.status, 201);
      const token = (await made.json()).token;
      const before = (await server.admin('GET', '/v1/admin/sessions?limit=1000')).json.sessions.length;

      const page = watchPage(await context.newPage(), 'foreign');
      await page.goto(`${site.ip}/app.html?mode=bearer&base=${encodeURIComponent(base)}`);
      await page.waitForFunction(() => window.started);
      assert.deepEqual(await started(page), { error: 'network' }, 'CORS refuses the create');
      const r = await page.evaluate(async ([b, tok]) => {
        const fetchWith = await fetch(b + '/v1/session', { headers: { authorization: 'Bearer ' + tok } }).then(() => 'read', (e) => 'refused: ' + e.name);
        const ws = await new Promise((resolve) => {
          const s = new WebSocket(b.replace(/^http/, 'ws') + '/v1/ws', ['sessiond.v1', 'bearer.' + tok]);
          s.onopen = () => { s.close(); resolve('open'); };
          s.onclose = () => resolve('closed');
        });
        return { fetchWith, ws };
      }, [base, token]);
      assert.deepEqual(r, { fetchWith: 'refused: TypeError', ws: 'closed' });
      const after = (await server.admin('GET', '/v1/admin/sessions?limit=1000')).json.sessions.length;
      assert.equal(after, before, 'the refused page created no session');
    });
  } finally {
    await context.close();
  }
});
