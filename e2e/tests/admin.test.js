// The admin page, live: a demo session shows up through the audit stream (no reload),
// its detail lists its connection and room, dropping the connection makes the demo
// reconnect with the same session, and revoking ends the demo's session. A read-only key
// sees everything and can change nothing.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { waitFor } from '../lib/env.js';
import { startServer, CALM_ROLES, API_KEY } from '../lib/server.js';
import { startProxy } from '../lib/proxy.js';
import { launchBrowser, watchPage, shot, withFailureReport } from '../lib/browser.js';
import * as demo from '../lib/demo.js';

const S = 'admin';
const READ_KEY = 'e2e-read-key-123';
let server;
let proxy;
let browser;

before(async () => {
  proxy = await startProxy();
  server = await startServer({
    roles: CALM_ROLES,
    allowedOrigins: [proxy.origin],
    extra: [
      '[audit]',
      'stream_poll_interval = "200ms"',
      '',
      '[[keys]]',
      'id = "dashboard"',
      'scope = "read"',
      `key = "${READ_KEY}"`,
    ].join('\n'),
  });
  proxy.setTarget(server.port);
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await proxy?.close();
  await server?.stop();
});

async function openAdmin(context, key, label) {
  const page = watchPage(await context.newPage(), label);
  await page.goto(`${server.url}/admin/`);
  await page.getByTestId('admin-key').fill(key);
  await page.getByTestId('admin-key-submit').click();
  await waitFor(async () => (await page.getByTestId('live-status').getAttribute('data-state')) === 'live', { message: `${label}: audit stream live` });
  return page;
}

const row = (page, handle) => page.locator(`[data-testid="session-row"][data-handle="${handle}"]`);

test('admin page: live session, its connection and room, drop, revoke', async () => {
  await withFailureReport(S, server, async () => {
    const adminCtx = await browser.newContext();
    const admin = await openAdmin(adminCtx, API_KEY, 'admin');
    // Marks this document: a reload would lose it.
    await admin.evaluate(() => { window.__noReload = true; });
    const nodes = admin.getByTestId('node-row');
    await waitFor(async () => (await nodes.count()) === 1, { message: 'one node listed' });
    assert.match(await nodes.first().getByTestId('node-lease-age').textContent(), /single node/);

    const demoCtx = await browser.newContext();
    const page = await demo.openDemo(demoCtx, proxy, 'demo');
    await demo.signIn(page, 'lena');
    await demo.waitForRoom(page);
    const s = await demo.currentSession(page);
    assert.ok(s?.handle, 'the demo has a session');

    // Through the stream: the row appears without a reload.
    await row(admin, s.handle).waitFor({ timeout: 10_000 });
    assert.equal(await admin.evaluate(() => window.__noReload), true, 'no reload happened');
    // The row can come from the `created` event while `signed_in` is still a poll away.
    await waitFor(async () => (await admin.locator('[data-testid="audit-row"][data-kind="signed_in"]').count()) >= 1, {
      message: 'the sign-in is in the live trail',
    });
    await waitFor(async () => (await nodes.first().getByTestId('node-connections').textContent()) === '1', { message: 'node shows one connection' });

    // Detail: its audit events and its connection, in its room.
    await row(admin, s.handle).getByTestId('session-open').click();
    const detail = admin.getByTestId('session-detail');
    await detail.waitFor({ state: 'visible' });
    assert.equal(await admin.getByTestId('detail-handle').textContent(), s.handle);
    const conn = admin.getByTestId('detail-connection');
    await waitFor(async () => (await conn.count()) === 1 && /conv-1/.test(await conn.first().getByTestId('detail-connection-rooms').textContent()), { message: 'the connection in room conv-1' });
    const firstId = await conn.first().getAttribute('data-connection-id');
    assert.ok(await admin.locator('[data-testid="detail-audit-row"][data-kind="signed_in"]').count() >= 1);
    await shot(admin, S, 'detail');

    // Drop the connection: the demo reconnects, same session, same user.
    await conn.first().getByTestId('drop-connection').click();
    await admin.locator('[data-testid="detail-audit-row"][data-kind="connection_dropped"]').waitFor({ timeout: 10_000 });
    await demo.waitForOnline(page, 15_000);
    await waitFor(async () => {
      await admin.getByTestId('detail-refresh').click();
      const ids = await conn.evaluateAll((rows) => rows.map((r) => r.dataset.connectionId));
      return ids.length === 1 && ids[0] !== firstId;
    }, { timeout: 15_000, interval: 500, message: 'a new connection replaced the dropped one' });
    const after = await demo.currentSession(page);
    assert.equal(after?.handle, s.handle, 'the session stayed');
    assert.equal(await page.getByTestId('session-ended').isVisible(), false);

    // Revoke: the demo shows the session ended.
    await admin.getByTestId('detail-revoke').click();
    await page.getByTestId('session-ended').waitFor({ state: 'visible', timeout: 10_000 });
    assert.match(await page.getByTestId('ended-reason').textContent(), /revoked/);
    await waitFor(async () => (await row(admin, s.handle).count()) === 0, { message: 'the revoked session left the live list' });
    // The detail re-reads the session when the stream brings its `ended` event.
    await waitFor(async () => /ended/.test(await admin.getByTestId('detail-summary').textContent()), {
      timeout: 10_000,
      message: 'the open detail shows the session ended',
    });
    await shot(admin, S, 'revoked');
    await demoCtx.close();
    await adminCtx.close();
  });
});

test('admin page with a read key: sees everything, changes nothing', async () => {
  await withFailureReport(`${S}-read`, server, async () => {
    const ctx = await browser.newContext();
    const admin = await openAdmin(ctx, READ_KEY, 'admin-read');
    await admin.getByTestId('admin-readonly').waitFor({ state: 'visible' });
    assert.match(await admin.getByTestId('admin-key-id').textContent(), /dashboard \(read\)/);

    const demoCtx = await browser.newContext();
    const page = await demo.openDemo(demoCtx, proxy, 'demo-2');
    await demo.signIn(page, 'mira');
    await demo.waitForRoom(page);
    const s = await demo.currentSession(page);
    await row(admin, s.handle).waitFor({ timeout: 10_000 });
    assert.equal(await row(admin, s.handle).getByTestId('revoke').isDisabled(), true);
    await row(admin, s.handle).getByTestId('session-open').click();
    const conn = admin.getByTestId('detail-connection');
    await waitFor(async () => (await conn.count()) === 1, { message: 'the connection listed' });
    assert.equal(await conn.first().getByTestId('drop-connection').isDisabled(), true);
    assert.equal(await admin.getByTestId('detail-revoke').isDisabled(), true);
    // The server refuses it too, whatever the page shows.
    const r = await admin.evaluate(async ({ key, handle }) => {
      const res = await fetch(`/v1/admin/sessions/${handle}`, { method: 'DELETE', headers: { authorization: `Bearer ${key}` } });
      return { status: res.status, body: await res.json() };
    }, { key: READ_KEY, handle: s.handle });
    assert.equal(r.status, 403);
    assert.equal(r.body.code, 'forbidden');
    assert.equal((await demo.currentSession(page))?.handle, s.handle, 'still signed in');
    await demoCtx.close();
    await ctx.close();
  });
});
