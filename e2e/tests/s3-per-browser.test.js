// S3 (Chainlit): two browsers behind one address with one user agent are two sessions;
// nothing one writes (session data, drafts, presence) shows in the other; a bogus or
// borrowed token maps to no existing session.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startEnv, waitFor } from '../lib/env.js';
import { CALM_ROLES } from '../lib/server.js';
import { shot, withFailureReport } from '../lib/browser.js';
import * as demo from '../lib/demo.js';

const S = 's3';
const SAME = { extraHTTPHeaders: { 'x-forwarded-for': '203.0.113.7' } };
let env;
before(async () => { env = await startEnv({ proxies: 1, roles: CALM_ROLES }); });
after(async () => { await env?.close(); });

test('S3: same IP, same user agent, two browsers: two sessions, nothing shared', async () => {
  await withFailureReport(S, env.server, async () => {
    const proxy = env.proxies[0];
    const ctxA = await env.browser.newContext(SAME);
    const ctxB = await env.browser.newContext(SAME);
    const a = await demo.openDemo(ctxA, proxy, 'browser-A');
    const b = await demo.openDemo(ctxB, proxy, 'browser-B');
    assert.equal(await a.evaluate(() => navigator.userAgent), await b.evaluate(() => navigator.userAgent));

    // Anonymous sessions first: one per browser.
    const anonA = await demo.currentSession(a);
    const anonB = await demo.currentSession(b);
    assert.ok(anonA && anonB, 'each browser got a session');
    assert.notEqual(anonA.handle, anonB.handle);
    assert.notEqual(anonA.principal, anonB.principal);

    const cookieA = await demo.sessionCookie(ctxA);
    const cookieB = await demo.sessionCookie(ctxB);
    assert.ok(cookieA.httpOnly && cookieA.sameSite === 'Lax' && cookieA.path === '/', `cookie attributes: ${JSON.stringify({ ...cookieA, value: '…' })}`);
    assert.equal(cookieA.expires, -1, 'a browser-session cookie (no Max-Age) by default');
    assert.notEqual(cookieA.value, cookieB.value);
    assert.ok(!cookieA.value.includes(anonA.handle), 'the token is not derived from the public handle');

    await demo.signIn(a, 'ivy');
    await demo.signIn(b, 'jack');
    const sa = await demo.currentSession(a);
    const sb = await demo.currentSession(b);
    assert.notEqual(sa.handle, sb.handle);
    assert.notEqual((await demo.sessionCookie(ctxA)).value, cookieA.value, 'sign-in rotated the token');
    assert.equal(sa.user_id, 'ivy');
    assert.equal(sb.user_id, 'jack');

    // Session data written by A is not visible to B.
    const put = await demo.pageFetch(a, '/v1/session/data/cart', {
      method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ items: ['ivy-only'] }),
    });
    assert.ok([200, 204].includes(put.status), `PUT session data answered ${put.status}: ${put.text}`);
    assert.deepEqual((await demo.pageFetch(a, '/v1/session/data/cart')).json, { items: ['ivy-only'] });
    assert.equal((await demo.pageFetch(b, '/v1/session/data/cart')).status, 404);

    // Drafts written in A are not visible in B, on screen or on the server.
    await demo.openConv(a, 'conv-1');
    await demo.openConv(b, 'conv-1');
    await demo.waitForRoom(a);
    await demo.waitForRoom(b);
    const secret = 'ivy: internal note, refund approved up to 40 EUR';
    await a.getByTestId('reply').fill(secret);
    await waitFor(async () => (await demo.serverDraft(a, 'conv-1'))?.text === secret, { message: 'A draft saved' });
    assert.equal(await demo.serverDraft(b, 'conv-1'), null, 'B has no draft in conv-1');
    assert.deepEqual((await demo.pageFetch(b, '/v1/drafts')).json.drafts, [], 'B lists no drafts');
    await b.reload();
    await demo.waitForReplyReady(b);
    assert.equal(await demo.replyText(b), '');
    assert.deepEqual(await demo.badges(b), []);

    // Presence: two distinct members, each marked "you" only in its own browser.
    await demo.waitForRoom(b);
    const inA = await waitFor(async () => { const m = await demo.presenceMembers(a); return m.length === 2 ? m : null; }, { message: 'A sees two members' });
    const inB = await waitFor(async () => { const m = await demo.presenceMembers(b); return m.length === 2 ? m : null; }, { message: 'B sees two members' });
    const youA = inA.filter((t) => t.endsWith('— you'));
    const youB = inB.filter((t) => t.endsWith('— you'));
    assert.equal(youA.length, 1);
    assert.equal(youB.length, 1);
    assert.ok(youA[0].includes('ivy') && !youA[0].includes('jack'), `A's own entry is ivy: ${youA[0]}`);
    assert.ok(youB[0].includes('jack') && !youB[0].includes('ivy'), `B's own entry is jack: ${youB[0]}`);
    await shot(a, S, '1-browser-A');
    await shot(b, S, '2-browser-B');

    // The admin sees two sessions, one per browser.
    const list = await env.server.admin('GET', '/v1/admin/sessions');
    assert.equal(list.status, 200, list.text);
    const rows = list.json.sessions;
    const handles = rows.map((s) => s.handle);
    assert.ok(handles.includes(sa.handle) && handles.includes(sb.handle));

    // A bogus token, an empty one, or a known public handle used as a token: never a
    // session that exists.
    const host = new URL(proxy.url).hostname;
    for (const value of ['garbage', '', sa.handle, `${sa.handle}x`]) {
      const c = await env.browser.newContext(SAME);
      await c.addCookies([{ name: cookieA.name, value, domain: host, path: '/' }]);
      const p = await c.newPage();
      await p.goto(`${proxy.url}/healthz`);
      const got = await demo.pageFetch(p, '/v1/session');
      assert.equal(got.status, 401, `GET /v1/session with cookie ${JSON.stringify(value)} answered ${got.status}`);
      const made = await demo.pageFetch(p, '/v1/session', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
      assert.equal(made.status, 201, `POST /v1/session with a bogus cookie makes a fresh session (${made.status})`);
      assert.ok(![sa.handle, sb.handle, anonA.handle, anonB.handle].includes(made.json.handle));
      await c.close();
    }
    await ctxA.close();
    await ctxB.close();
  });
});
