// Issue 10, finding 2: a sign-in (token rotation) while a WebSocket is open closes that
// socket with 4010 "reauthenticate"; the SDK reconnects at once with the new cookie, so
// the person sees no "connection lost" or "session ended", and presence and expiry
// warnings go on over the new connection.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startEnv, waitFor } from '../lib/env.js';
import { shot, withFailureReport } from '../lib/browser.js';
import * as demo from '../lib/demo.js';

const S = 's6';
const IDLE_MS = 8000;
let env;
before(async () => { env = await startEnv({ proxies: 2 }); });
after(async () => { await env?.close(); });

/** This browser's live connections as the server lists them. */
async function connections(handle) {
  const r = await env.server.admin('GET', `/v1/admin/connections?handle=${handle}`);
  return (r.json ?? r).connections ?? [];
}

test('S6: sign-in with the WebSocket open: the SDK reconnects at once, presence and warnings go on', async () => {
  await withFailureReport(`${S}-rotation`, env.server, async () => {
    const watcherCtx = await env.browser.newContext();
    const watcher = await demo.openDemo(watcherCtx, env.proxies[1], 'watcher');
    await demo.signIn(watcher, 'walt', 'viewer');
    await demo.waitForRoom(watcher);

    // Signing in from the anonymous page: its socket (opened with the anonymous token)
    // is closed by the rotation, and the page goes on as eve.
    const ctx = await env.browser.newContext();
    const page = await demo.openDemo(ctx, env.proxies[0], 'editor');
    await demo.waitForOnline(page);
    await demo.signIn(page, 'eve', 'editor');
    await demo.waitForRoom(page);
    await waitFor(async () => (await demo.presenceMembers(watcher)).some((t) => t.includes('eve')), { message: 'watcher sees eve' });
    const { handle, principal } = await demo.currentSession(page);
    const [before] = await connections(handle);
    assert.ok(before, 'eve has a live connection');
    assert.equal(before.principal, 'user:eve');

    const joins = async () => (await demo.presenceEvents(watcher)).filter((t) => t === 'eve joined').length;
    const joinsBefore = await joins();

    // From now on, record whether the page ever shows "connection lost" or "ended".
    await page.evaluate(() => {
      window.__shown = [];
      const watch = (id) => new MutationObserver(() => {
        if (!document.getElementById(id).hidden) window.__shown.push(id);
      }).observe(document.getElementById(id), { attributes: true });
      watch('lost');
      watch('ended');
    });

    // The token is rotated behind the SDK's back (as a sign-in in another tab would):
    // the open socket authenticated with the old token and is closed with 4010.
    const rotated = await page.evaluate(async () => {
      const t = await fetch('/demo/api/ticket', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ user_id: 'eve', role: 'editor' }) }).then((r) => r.json());
      const r = await fetch('/v1/session/signin', { method: 'POST', credentials: 'include', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ticket: t.ticket }) });
      return { status: r.status, body: await r.json() };
    });
    assert.equal(rotated.status, 200, JSON.stringify(rotated.body));
    assert.equal(rotated.body.handle, handle, 'the session is kept');

    // A new connection of the same session, as the same principal, replaces the old one.
    const after = await waitFor(async () => {
      const list = await connections(handle);
      return list.length === 1 && list[0].connection_id !== before.connection_id && list[0].rooms.length > 0 && list[0];
    }, { timeout: 5000, message: 'the SDK reconnected with the new cookie and rejoined' });
    assert.equal(after.principal, principal);
    assert.deepEqual(after.rooms, before.rooms, 'the room was joined again');
    await demo.waitForOnline(page);
    await waitFor(async () => (await joins()) === joinsBefore + 1, { message: 'watcher sees eve join again' });
    await waitFor(async () => (await demo.presenceMembers(watcher)).filter((t) => t.includes('eve')).length === 1, { message: 'watcher lists eve once' });
    await shot(page, S, '1-reconnected');

    // Warnings go on over the new connection, and Stay online renews.
    await page.mouse.move(5, 5);
    const dialog = page.getByTestId('expiry-warning');
    await dialog.waitFor({ state: 'visible', timeout: IDLE_MS + 2000 });
    const beforeRenew = Date.parse((await env.server.session(handle)).idle_expires_at);
    await page.getByTestId('stay-online').click();
    await dialog.waitFor({ state: 'hidden', timeout: 3000 });
    const afterRenew = Date.parse((await env.server.session(handle)).idle_expires_at);
    assert.ok(afterRenew - beforeRenew >= 2000, `renewal moved the idle deadline by ${afterRenew - beforeRenew} ms`);
    await shot(page, S, '2-warning-renewed');

    const shown = await page.evaluate(() => window.__shown);
    assert.deepEqual(shown, [], `the page showed ${shown.join(', ')} during the rotation`);
    assert.ok(await page.getByTestId('session-ended').isHidden());
    assert.equal(await page.getByTestId('conn-status').textContent(), 'online');
  });
});
