// The admin page's webhook section: an endpoint that refuses every delivery leaves a dead
// letter that the page lists; a read key sees it with Retry and Delete disabled; an admin
// key retries it once the receiver recovers (the row goes, the receiver gets it) and
// deletes another.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { waitFor } from '../lib/env.js';
import { startServer, CALM_ROLES, API_KEY } from '../lib/server.js';
import { launchBrowser, watchPage, withFailureReport } from '../lib/browser.js';

const S = 'admin-webhooks';
const READ_KEY = 'e2e-read-key-456';
const SECRET = 'whsec_ZTJlLXdlYmhvb2stc2VjcmV0LTAxMjM0NTY3ODlhYg==';
let server;
let browser;
let receiver;
let failing = true;
const received = [];

before(async () => {
  receiver = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      if (!failing) received.push(req.headers['webhook-id']);
      res.writeHead(failing ? 500 : 204).end();
    });
  });
  await new Promise((r) => receiver.listen(0, '127.0.0.1', r));
  server = await startServer({
    roles: CALM_ROLES,
    extra: [
      '[audit]',
      'stream_poll_interval = "200ms"',
      '',
      '[webhook_delivery]',
      'poll_interval = "50ms"',
      'lease_ttl = "1s"',
      'max_attempts = 1',
      '',
      '[[keys]]',
      'id = "dashboard"',
      'scope = "read"',
      `key = "${READ_KEY}"`,
      '',
      '[[webhooks]]',
      'id = "crm"',
      `url = "http://127.0.0.1:${receiver.address().port}/hook"`,
      `secret = "${SECRET}"`,
      'events = ["session.created"]',
    ].join('\n'),
  });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
  await new Promise((r) => receiver?.close(r));
});

async function openAdmin(context, key, label) {
  const page = watchPage(await context.newPage(), label);
  await page.goto(`${server.url}/admin/`);
  await page.getByTestId('admin-key').fill(key);
  await page.getByTestId('admin-key-submit').click();
  await waitFor(async () => (await page.getByTestId('live-status').getAttribute('data-state')) === 'live', { message: `${label}: audit stream live` });
  return page;
}

/** A new session: its `created` event goes to the endpoint. */
async function newSession() {
  const res = await fetch(`${server.url}/v1/session`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"bearer":true}' });
  assert.equal(res.status, 201);
  return res.json();
}

const deadRow = (page, handle) => page.locator('[data-testid="dead-letter-row"]').filter({ hasText: handle });

test('admin page: dead letters listed, read key disabled, retry and delete with an admin key', async () => {
  await withFailureReport(S, server, async () => {
    await waitFor(async () => (await server.admin('GET', '/v1/admin/webhooks')).json.endpoints[0].cursor != null, { message: 'the endpoint started' });
    const a = await newSession();
    const b = await newSession();
    // Dead-lettering is no audit event: wait for both before the page loads its list.
    await waitFor(async () => (await server.admin('GET', '/v1/admin/webhooks/dead-letters')).json.dead_letters.length === 2, {
      message: 'two dead letters',
    });

    const readCtx = await browser.newContext();
    const reader = await openAdmin(readCtx, READ_KEY, 'admin-read');
    await waitFor(async () => (await deadRow(reader, a.handle).count()) === 1 && (await deadRow(reader, b.handle).count()) === 1, {
      message: 'both dead letters listed',
    });
    assert.equal(await deadRow(reader, a.handle).getByTestId('dead-letter-retry').isDisabled(), true);
    assert.equal(await deadRow(reader, a.handle).getByTestId('dead-letter-delete').isDisabled(), true);
    assert.match(await deadRow(reader, a.handle).getByTestId('dead-letter-error').textContent(), /HTTP 500/);
    assert.equal(await reader.locator('[data-testid="webhook-row"][data-endpoint="crm"] [data-testid="webhook-dead"]').textContent(), '2');
    await readCtx.close();

    const adminCtx = await browser.newContext();
    const admin = await openAdmin(adminCtx, API_KEY, 'admin');
    failing = false;
    await deadRow(admin, a.handle).getByTestId('dead-letter-retry').click();
    await waitFor(async () => (await deadRow(admin, a.handle).count()) === 0, { message: 'the retried dead letter is gone' });
    assert.equal(received.length, 1);
    assert.match(received[0], /^evt_\d+$/);
    await deadRow(admin, b.handle).getByTestId('dead-letter-delete').click();
    await waitFor(async () => (await deadRow(admin, b.handle).count()) === 0, { message: 'the deleted dead letter is gone' });
    const left = await server.admin('GET', '/v1/admin/webhooks/dead-letters');
    assert.deepEqual(left.json.dead_letters, []);
    await adminCtx.close();
  });
});
