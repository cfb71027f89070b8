// S5 (Excalidraw): with short policies (editor idle 8 s, warning 5 s before, heartbeat
// 1 s × 3 misses), the warning comes before the deadline and "Stay online" renews;
// a lapse ends the session with its reason and the room is told; a dead network is
// seen as `lost` by the others within interval × misses; a rejoin restores the notes.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startEnv, waitFor } from '../lib/env.js';
import { SHORT_POLICY } from '../lib/server.js';
import { shot, withFailureReport } from '../lib/browser.js';
import * as demo from '../lib/demo.js';

const S = 's5';
const IDLE_MS = 8000;
const WARN_MS = 5000;
const HEARTBEAT_MS = 1000;
const MISSES = SHORT_POLICY.heartbeat_misses;
let env;
before(async () => { env = await startEnv({ proxies: 3 }); });
after(async () => { await env?.close(); });

/** Seconds shown by the dialog's "m:ss" countdown. */
function seconds(text) {
  const m = /^(\d+):(\d\d)$/.exec(text.trim());
  assert.ok(m, `countdown looks like m:ss: ${text}`);
  return Number(m[1]) * 60 + Number(m[2]);
}

function adminSession(handle) {
  return env.server.session(handle);
}

test('S5: warning before the deadline, Stay online renews, a lapse ends with idle_timeout and the room is told', async () => {
  await withFailureReport(`${S}-warning`, env.server, async () => {
    // The watcher is a viewer (idle 60 s) so it outlives the editor it watches.
    const watcherCtx = await env.browser.newContext();
    const watcher = await demo.openDemo(watcherCtx, env.proxies[1], 'watcher');
    await demo.signIn(watcher, 'walt', 'viewer');
    await demo.waitForRoom(watcher);

    const ctx = await env.browser.newContext();
    const page = await demo.openDemo(ctx, env.proxies[0], 'editor');
    await demo.signIn(page, 'eve', 'editor');
    await demo.waitForRoom(page);
    await waitFor(async () => (await demo.presenceMembers(watcher)).some((t) => t.includes('eve')), { message: 'watcher sees eve' });
    const { handle } = await demo.currentSession(page);
    await page.mouse.move(5, 5); // last activity now; from here on eve is idle

    // The warning appears before the deadline, counting down from at most warn_before.
    const dialog = page.getByTestId('expiry-warning');
    await dialog.waitFor({ state: 'visible', timeout: IDLE_MS + 2000 });
    const atWarning = await adminSession(handle);
    const leftAtWarning = Date.parse(atWarning.idle_expires_at) - Date.now();
    assert.ok(leftAtWarning > 0, `warned before the deadline (${leftAtWarning} ms left)`);
    assert.ok(await page.getByTestId('session-ended').isHidden());
    const c1 = seconds(await page.getByTestId('expiry-countdown').textContent());
    assert.ok(c1 > 0 && c1 <= WARN_MS / 1000, `countdown ${c1} s within warn_before`);
    await page.waitForTimeout(1500);
    const c2 = seconds(await page.getByTestId('expiry-countdown').textContent());
    assert.ok(c2 < c1, `the countdown runs (${c1} → ${c2})`);
    await shot(page, S, '1-warning-dialog');

    // Stay online: the deadline moves up, the dialog goes away, the session lives on.
    const before = Date.parse((await adminSession(handle)).idle_expires_at);
    await page.getByTestId('stay-online').click();
    await dialog.waitFor({ state: 'hidden', timeout: 3000 });
    const after = Date.parse((await adminSession(handle)).idle_expires_at);
    assert.ok(after - before >= 2000, `renewal moved the idle deadline up by ${after - before} ms`);
    const secondsLeft = Math.round((after - Date.now()) / 1000);
    assert.ok(secondsLeft > c2, `after renewal ${secondsLeft} s left, more than the ${c2} s shown`);
    await shot(page, S, '2-renewed');

    // The warning comes again with a full countdown; this time nobody answers.
    await dialog.waitFor({ state: 'visible', timeout: IDLE_MS + 2000 });
    const c3 = seconds(await page.getByTestId('expiry-countdown').textContent());
    assert.ok(c3 > c2, `the new countdown (${c3} s) starts above the old one (${c2} s)`);
    const t0 = Date.now();
    await page.getByTestId('session-ended').waitFor({ state: 'visible', timeout: WARN_MS + 3000 });
    const endedAfter = Date.now() - t0;
    assert.equal(await page.getByTestId('ended-reason').textContent(), 'idle_timeout');
    assert.ok(await dialog.isHidden(), 'the warning dialog closed on the ending');
    assert.ok(endedAfter <= WARN_MS + 2000, `ended ${endedAfter} ms after the warning`);
    await shot(page, S, '3-ended-idle-timeout');

    // The room was told: eve's session ended (not "left", not "lost"), in a sentence.
    const ev = await waitFor(async () => (await demo.presenceEvents(watcher)).find((t) => t.includes('eve') && !t.endsWith('joined')), { message: 'watcher told eve ended' });
    assert.equal(ev, "eve's session ended", `the room event names the member and the ending: ${ev}`);
    assert.ok(!(await demo.presenceMembers(watcher)).some((t) => t.includes('eve')), 'eve is gone from the member list');
    await shot(watcher, S, '4-watcher-sees-expired');

    // The audit trail records the ending with its reason.
    const audit = await env.server.admin('GET', `/v1/admin/audit?handle=${handle}`);
    assert.equal(audit.status, 200, audit.text);
    const events = audit.json.events;
    assert.ok(events.some((e) => e.reason === 'idle_timeout'), `audit has idle_timeout: ${audit.text.slice(0, 500)}`);
    await ctx.close();
    await watcherCtx.close();
  });
});

test('S5: a dead network (frozen proxy) is seen as lost by the room within interval × misses; not a logout', async () => {
  await withFailureReport(`${S}-lost`, env.server, async () => {
    const watcherCtx = await env.browser.newContext();
    const watcher = await demo.openDemo(watcherCtx, env.proxies[1], 'watcher2');
    await demo.signIn(watcher, 'wendy', 'viewer');
    await demo.waitForRoom(watcher);

    const proxy = env.proxies[2];
    const ctx = await env.browser.newContext();
    const page = await demo.openDemo(ctx, proxy, 'cut-off');
    await demo.signIn(page, 'carl', 'viewer');
    await demo.waitForRoom(page);
    await waitFor(async () => (await demo.presenceMembers(watcher)).some((t) => t.includes('carl')), { message: 'watcher sees carl' });

    proxy.freeze();
    const t0 = Date.now();
    const ev = await waitFor(async () => (await demo.presenceEvents(watcher)).find((t) => t.includes('carl') && t.includes('lost connection')), {
      timeout: HEARTBEAT_MS * MISSES + 6000, interval: 50, message: 'watcher told carl lost connection',
    });
    const seen = Date.now() - t0;
    const bound = HEARTBEAT_MS * (MISSES + 1) + 1500;
    assert.ok(seen <= bound, `lost seen after ${seen} ms (bound ${bound} ms = interval × (misses + 1) + slack)`);
    assert.ok(!(await demo.presenceMembers(watcher)).some((t) => t.includes('carl')), 'carl is gone from the member list');
    console.log(`S5 lost: the room saw "${ev}" ${seen} ms after the network froze`);
    await shot(watcher, S, '5-watcher-sees-lost');

    // The cut-off page notices too (its app pings go unanswered).
    await page.getByTestId('connection-lost').waitFor({ state: 'visible', timeout: HEARTBEAT_MS * MISSES + 5000 });
    assert.ok(await page.getByTestId('session-ended').isHidden(), 'a network blip is not a logout');
    await shot(page, S, '6-cut-off-reconnecting');

    // The network comes back: the same session reconnects and rejoins the room.
    proxy.thaw();
    await demo.waitForOnline(page, 20_000);
    await page.getByTestId('connection-lost').waitFor({ state: 'hidden' });
    assert.ok(await page.getByTestId('session-ended').isHidden());
    await waitFor(async () => (await demo.presenceMembers(watcher)).some((t) => t.includes('carl')), { timeout: 10_000, message: 'carl back in the room' });
    await ctx.close();
    await watcherCtx.close();
  });
});

test('S5: a rejoin after expiry restores the room snapshot (shared notes)', async () => {
  await withFailureReport(`${S}-rejoin`, env.server, async () => {
    const ctx = await env.browser.newContext();
    const page = await demo.openDemo(ctx, env.proxies[0], 'notes-writer');
    await demo.signIn(page, 'nora', 'editor');
    await demo.openConv(page, 'conv-2');
    await demo.waitForRoom(page);
    const notes = 'Customer: Mrs. Jansen\nOrder 1042, refund of 19.90 agreed\nCall back Friday';
    await page.getByTestId('notes').fill(notes);
    await waitFor(async () => /^Saved \(v\d+\)$/.test(await page.getByTestId('notes-status').textContent()), { message: 'notes snapshot saved' });
    const saved = await demo.pageFetch(page, '/v1/rooms/conv-2/snapshot');
    assert.equal(saved.status, 200);
    assert.deepEqual(JSON.parse(saved.text), { notes });

    // Idle until the session expires.
    await page.getByTestId('session-ended').waitFor({ state: 'visible', timeout: IDLE_MS + 4000 });
    assert.equal(await page.getByTestId('ended-reason').textContent(), 'idle_timeout');
    await shot(page, S, '7-notes-writer-expired');

    // Rejoin from a fresh browser: the notes come back from the room's snapshot.
    const ctx2 = await env.browser.newContext();
    const page2 = await demo.openDemo(ctx2, env.proxies[1], 'rejoin');
    await demo.signIn(page2, 'nora', 'editor');
    await demo.openConv(page2, 'conv-2');
    await demo.waitForRoom(page2);
    assert.equal(await page2.getByTestId('notes').inputValue(), notes, 'the snapshot restored byte for byte');
    const again = await demo.pageFetch(page2, '/v1/rooms/conv-2/snapshot');
    assert.equal(again.text, saved.text);
    await shot(page2, S, '8-rejoin-restored-notes');

    // And in the same tab, after signing in again and reloading.
    await demo.signIn(page, 'nora', 'editor');
    await page.reload();
    await demo.waitForReplyReady(page);
    await demo.openConv(page, 'conv-2');
    await demo.waitForRoom(page);
    assert.equal(await page.getByTestId('notes').inputValue(), notes);
    await ctx.close();
    await ctx2.close();
  });
});
