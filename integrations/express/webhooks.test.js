// The webhook recipe against a real sessiond: sessiond delivers lifecycle events to the
// Express app, which verifies them with the official standardwebhooks package; a forged
// or tampered delivery is refused.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import express from 'express';
import { startServer, CALM_ROLES } from '../../e2e/lib/server.js';
import { sessiondWebhooks } from './webhooks.js';

const SECRET = 'whsec_ZXhwcmVzcy1yZWNpcGUtc2VjcmV0LTAxMjM0NTY3ODk=';
let server;
let app;
let appUrl;
const events = [];

before(async () => {
  const web = express();
  web.use(sessiondWebhooks({ secret: SECRET, onEvent: (e) => events.push(e) }));
  app = await new Promise((resolve) => {
    const s = web.listen(0, '127.0.0.1', () => resolve(s));
  });
  appUrl = `http://127.0.0.1:${app.address().port}`;
  server = await startServer({
    roles: CALM_ROLES,
    extra: [
      '[webhook_delivery]',
      'poll_interval = "50ms"',
      'lease_ttl = "1s"',
      '[[webhooks]]',
      'id = "express"',
      `url = "${appUrl}/webhooks/sessiond"`,
      `secret = "${SECRET}"`,
      'events = ["session.created", "session.ended"]',
    ].join('\n'),
  });
});

after(async () => {
  await server?.stop();
  await new Promise((r) => app?.close(r));
});

async function until(what, cond, ms = 15_000) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const v = cond();
    if (v) return v;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.fail(`timed out waiting for ${what}`);
}

test('sessiond delivers signed lifecycle events the official verifier accepts', async () => {
  // The endpoint is sent the events after its cursor is set.
  const started = async () => (await server.admin('GET', '/v1/admin/webhooks')).json.endpoints[0].cursor != null;
  const end = Date.now() + 15_000;
  while (!(await started())) {
    assert.ok(Date.now() < end, 'endpoint cursor');
    await new Promise((r) => setTimeout(r, 50));
  }
  const res = await fetch(`${server.url}/v1/session`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"bearer":true}' });
  assert.equal(res.status, 201);
  const session = await res.json();
  const revoke = await server.admin('DELETE', `/v1/admin/sessions/${session.handle}`);
  assert.equal(revoke.status, 204);
  const ended = await until('the ended event', () => events.find((e) => e.type === 'session.ended'));
  const created = events.find((e) => e.type === 'session.created');
  assert.equal(created.data.handle, session.handle);
  assert.equal(ended.data.handle, session.handle);
  assert.equal(ended.data.reason, 'revoked');
  assert.match(ended.id, /^evt_\d+$/);
  assert.ok(events.indexOf(created) < events.indexOf(ended), 'in audit order');
});

test('a forged or tampered delivery is refused', async () => {
  const body = JSON.stringify({ type: 'session.ended', timestamp: new Date().toISOString(), data: { handle: 'x' } });
  const headers = {
    'content-type': 'application/json',
    'webhook-id': 'evt_1',
    'webhook-timestamp': String(Math.floor(Date.now() / 1000)),
    'webhook-signature': 'v1,bm90IGEgc2lnbmF0dXJl',
  };
  const before = events.length;
  const res = await fetch(`${appUrl}/webhooks/sessiond`, { method: 'POST', headers, body });
  assert.equal(res.status, 401);
  assert.equal(events.length, before);
});
