// The Express recipe against a real sessiond (the debug binary, started on a free port by
// the e2e harness): identity, sign-in rotation, the CSRF origin check on an unsafe method,
// revocation seen at once, and sessiond being down answered 503 rather than let through.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, CALM_ROLES } from '../../e2e/lib/server.js';
import { createApp } from './app.js';

let server;
let app;
let appUrl;

before(async () => {
  server = await startServer({ roles: CALM_ROLES });
  app = await new Promise((resolve) => {
    const s = createApp({ sessiondUrl: server.url }).listen(0, '127.0.0.1', () => resolve(s));
  });
  appUrl = `http://127.0.0.1:${app.address().port}`;
});

after(async () => {
  await new Promise((r) => app?.close(r));
  await server?.stop();
});

/** A new anonymous session from sessiond; returns its cookie pair and body. */
async function newSession() {
  const res = await fetch(`${server.url}/v1/session`, { method: 'POST' });
  assert.equal(res.status, 201);
  const cookie = res.headers.getSetCookie().map((c) => c.split(';')[0]).find((c) => c.startsWith('sessiond='));
  assert.ok(cookie, 'sessiond sets its cookie');
  return { cookie, session: await res.json() };
}

test('no session: 401 problem from sessiond, passed through', async () => {
  const res = await fetch(`${appUrl}/me`);
  assert.equal(res.status, 401);
  assert.match(res.headers.get('content-type'), /application\/problem\+json/);
  assert.equal((await res.json()).code, 'unauthenticated');
  const pub = await (await fetch(`${appUrl}/public`)).json();
  assert.deepEqual(pub, { signedIn: false, principal: null });
});

test('a live session: the app sees sessiond identity; a forged identity header is ignored', async () => {
  const { cookie, session } = await newSession();
  const res = await fetch(`${appUrl}/me`, { headers: { cookie, 'x-session-principal': 'user:admin' } });
  assert.equal(res.status, 200);
  const me = await res.json();
  assert.equal(me.principal, session.principal);
  assert.equal(me.handle, session.handle);
  assert.equal(me.userId, null);
});

test('sign-in rotates the token: the new cookie is the user, the old one is refused', async () => {
  const { cookie } = await newSession();
  const t = await server.admin('POST', '/v1/admin/tickets', { user_id: 'ada', role: 'editor' });
  assert.equal(t.status, 200, t.text);
  const signin = await fetch(`${server.url}/v1/session/signin`, {
    method: 'POST',
    headers: { cookie, 'content-type': 'application/json' },
    body: JSON.stringify({ ticket: t.json.ticket }),
  });
  assert.equal(signin.status, 200, await signin.clone().text());
  const rotated = signin.headers.getSetCookie().map((c) => c.split(';')[0]).find((c) => c.startsWith('sessiond='));
  const me = await (await fetch(`${appUrl}/me`, { headers: { cookie: rotated } })).json();
  assert.equal(me.principal, 'user:ada');
  assert.equal(me.userId, 'ada');
  const old = await fetch(`${appUrl}/me`, { headers: { cookie } });
  assert.equal(old.status, 401);
});

test('unsafe method: the app origin passes, another origin gets 403 forbidden_origin', async () => {
  const { cookie, session } = await newSession();
  const post = (origin) =>
    fetch(`${appUrl}/notes`, {
      method: 'POST',
      headers: { cookie, origin, 'content-type': 'application/json' },
      body: JSON.stringify({ text: 'hello' }),
    });
  const evil = await post('http://evil.example');
  assert.equal(evil.status, 403);
  assert.equal((await evil.json()).code, 'forbidden_origin');
  const ok = await post(appUrl);
  assert.equal(ok.status, 200);
  assert.deepEqual(await ok.json(), { principal: session.principal, notes: ['hello'] });
});

test('revoked in sessiond: the next app request is refused with the reason', async () => {
  const { cookie, session } = await newSession();
  assert.equal((await fetch(`${appUrl}/me`, { headers: { cookie } })).status, 200);
  const revoke = await server.admin('DELETE', `/v1/admin/sessions/${session.handle}`);
  assert.equal(revoke.status, 204);
  const res = await fetch(`${appUrl}/me`, { headers: { cookie } });
  assert.equal(res.status, 401);
  const problem = await res.json();
  assert.equal(problem.code, 'session_expired');
  assert.equal(problem.reason, 'revoked');
});

test('sessiond unreachable: 503, never let through', async () => {
  const down = await new Promise((resolve) => {
    // A port nothing listens on: sessiond "down".
    const s = createApp({ sessiondUrl: 'http://127.0.0.1:9' }).listen(0, '127.0.0.1', () => resolve(s));
  });
  try {
    const { cookie } = await newSession();
    const res = await fetch(`http://127.0.0.1:${down.address().port}/me`, { headers: { cookie } });
    assert.equal(res.status, 503);
    assert.equal(res.headers.get('retry-after'), '1');
    assert.equal((await res.json()).code, 'store_unavailable');
  } finally {
    await new Promise((r) => down.close(r));
  }
});
