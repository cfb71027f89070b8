// "My devices" in the demo: one user signed in from two browsers sees both devices in
// each, ends the other one from the first, and the other browser shows the ending (with
// its "Here now" list cleared); presence names members, and the presence log reads
// well. The screenshots are looked at: the draft badge stays a small pill beside a
// two-line conversation title.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startEnv, waitFor } from '../lib/env.js';
import { CALM_ROLES } from '../lib/server.js';
import { shot, withFailureReport } from '../lib/browser.js';
import * as demo from '../lib/demo.js';

const S = 'devices';
const FIREFOX = 'Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0';
let env;
before(async () => { env = await startEnv({ proxies: 2, roles: CALM_ROLES }); });
after(async () => { await env?.close(); });

async function openDevices(page) {
  await page.getByTestId('devices-toggle').click();
  await page.getByTestId('devices').waitFor({ state: 'visible' });
}

async function deviceCount(page) {
  await page.getByTestId('devices-refresh').click();
  await waitFor(async () => !(await page.getByTestId('devices-status').textContent()).startsWith('Loading'), { message: 'devices listed' });
  return page.getByTestId('device').count();
}

test('devices: two browsers of one user see each other, one ends the other', async () => {
  await withFailureReport(S, env.server, async () => {
    const ctxA = await env.browser.newContext({ viewport: { width: 1100, height: 800 } });
    const ctxB = await env.browser.newContext({ userAgent: FIREFOX, viewport: { width: 1100, height: 800 } });
    const a = await demo.openDemo(ctxA, env.proxies[0], 'device-A');
    const b = await demo.openDemo(ctxB, env.proxies[1], 'device-B');
    // Anonymous: no devices button (the API says not_signed_in).
    assert.equal(await a.getByTestId('devices-toggle').isVisible(), false);
    assert.equal((await demo.pageFetch(a, '/v1/session/devices')).json.code, 'not_signed_in');
    // The names travel as the tickets' `info` claims; B's is hostile markup.
    const EVIL = '<img src=x onerror="window.__xss=1">Lena';
    await demo.signIn(a, 'lena', 'editor', 'Lena P.');
    await demo.signIn(b, 'lena', 'editor', EVIL);

    // Both in conv-1's room: presence names the members, as text.
    await demo.waitForRoom(a);
    await demo.waitForRoom(b);
    await waitFor(async () => (await demo.presenceMembers(a)).length === 2, { message: 'A sees two members' });
    assert.deepEqual((await demo.presenceMembers(a)).sort(), [`${EVIL} (editor)`, 'Lena P. (editor) — you'].sort());
    assert.equal(await a.locator('[data-testid="presence"] img').count(), 0, 'a name is never markup');
    assert.equal(await a.evaluate(() => window.__xss), undefined);
    assert.equal(await a.locator('[data-testid="presence"] .dot').count(), 2, 'each member has its colour dot');

    // Each browser lists two devices; its own is marked.
    await openDevices(a);
    await openDevices(b);
    await waitFor(async () => (await deviceCount(a)) === 2, { message: 'A lists two devices' });
    await waitFor(async () => (await deviceCount(b)) === 2, { message: 'B lists two devices' });
    const rowsA = await a.getByTestId('device').allTextContents();
    assert.ok(rowsA.some((r) => r.includes('Firefox 133 on Linux')), `B's browser named in A's list: ${rowsA}`);
    assert.equal(await a.locator('[data-testid="device"][data-current="true"]').count(), 1);
    assert.ok((await a.locator('[data-testid="device"][data-current="true"]').textContent()).includes('This device'));

    // A draft in conv-1, for the badge's look beside its (two-line) title.
    await a.getByTestId('reply').fill('We are on it.');
    await a.getByTestId('draft-badge-conv-1').waitFor({ state: 'visible' });
    const badge = await a.getByTestId('draft-badge-conv-1').boundingBox();
    assert.ok(badge.height < 24, `the badge stays one line high (${badge.height}px)`);
    await shot(a, S, '1-A-two-devices');
    await shot(b, S, '1-B-two-devices');

    // A ends B: B's page says why, and keeps nobody in "Here now".
    await a.locator('[data-testid="device"][data-current="false"]').getByTestId('device-end').click();
    await waitFor(async () => (await a.getByTestId('device').count()) === 1, { message: 'A lists one device' });
    await b.getByTestId('session-ended').waitFor({ state: 'visible', timeout: 10_000 });
    assert.equal(await b.getByTestId('ended-reason').textContent(), 'ended_by_user');
    assert.deepEqual(await demo.presenceMembers(b), [], 'an ended page lists nobody as here');
    assert.equal(await b.getByTestId('devices').isVisible(), false);
    assert.equal((await demo.pageFetch(b, '/v1/session')).status, 401, 'B\'s token is dead');
    // A's presence log names the member and reads as a sentence.
    await waitFor(async () => (await demo.presenceEvents(a)).includes(`${EVIL}'s session ended`), { message: 'A is told B ended' });
    assert.ok((await demo.presenceEvents(a)).every((e) => !e.includes(' \'s') && !e.includes('user:')), JSON.stringify(await demo.presenceEvents(a)));
    assert.deepEqual(await demo.presenceMembers(a), ['Lena P. (editor) — you']);
    await shot(a, S, '2-A-after-ending-B');
    await shot(b, S, '2-B-ended');

    // B signs in again; A signs out all the others at once.
    await demo.signIn(b, 'lena', 'editor', 'Lena B.');
    await waitFor(async () => (await deviceCount(a)) === 2, { message: 'A lists B again' });
    await a.getByTestId('devices-end-others').click();
    await waitFor(async () => (await a.getByTestId('devices-status').textContent()) === 'Signed out 1 other device.', { message: 'others ended' });
    await b.getByTestId('session-ended').waitFor({ state: 'visible', timeout: 10_000 });
    assert.equal((await demo.currentSession(a))?.user_id, 'lena', 'A goes on');
    await ctxA.close();
    await ctxB.close();
  });
});
