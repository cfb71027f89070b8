// Two tabs of one user editing one draft (Discourse's draft sequences): the stale tab is
// refused with 409, the demo shows the conflict with both versions, and nothing is
// silently overwritten until the user explicitly chooses.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startEnv, waitFor } from '../lib/env.js';
import { CALM_ROLES } from '../lib/server.js';
import { shot, withFailureReport } from '../lib/browser.js';
import * as demo from '../lib/demo.js';

const S = 'conflict';
let env;
before(async () => { env = await startEnv({ proxies: 1, roles: CALM_ROLES }); });
after(async () => { await env?.close(); });

test('two tabs, one draft: the conflict is surfaced and nothing is silently overwritten', async () => {
  await withFailureReport(S, env.server, async () => {
    const ctx = await env.browser.newContext();
    const tab1 = await demo.openDemo(ctx, env.proxies[0], 'tab1');
    await demo.signIn(tab1, 'kim');
    await demo.openConv(tab1, 'conv-3');
    const base = 'Dear customer, please try the reset link.';
    await tab1.getByTestId('reply').fill(base);
    await waitFor(async () => (await demo.serverDraft(tab1, 'conv-3'))?.text === base, { message: 'base draft saved' });

    // A second tab of the same browser (same session) opens the same draft.
    const tab2 = await demo.openDemo(ctx, env.proxies[0], 'tab2');
    await demo.waitForReplyReady(tab2);
    await demo.openConv(tab2, 'conv-3');
    assert.equal(await demo.replyText(tab2), base);

    // Tab 1 edits and saves first.
    const one = `${base} (tab one: it expires in 15 minutes)`;
    await tab1.getByTestId('reply').fill(one);
    await waitFor(async () => (await demo.serverDraft(tab1, 'conv-3'))?.text === one, { message: 'tab one saved' });
    const seqOne = (await demo.serverDraft(tab1, 'conv-3')).seq;

    // Tab 2, still on the old version, edits too: refused, shown as a conflict.
    const two = `${base} (tab two: or call us on 0800 123)`;
    await tab2.getByTestId('reply').fill(two);
    await tab2.getByTestId('conflict').waitFor({ state: 'visible', timeout: 5000 });
    assert.equal(await tab2.getByTestId('conflict-theirs').textContent(), one, 'the conflict shows the other tab\'s version');
    assert.equal(await demo.replyText(tab2), two, 'tab two keeps its own text');
    assert.equal(await tab2.getByTestId('draft-status').textContent(), 'Not saved — changed elsewhere', 'the status does not claim a save is under way');
    await tab2.waitForTimeout(1000); // more than a debounce: a silent retry would have landed by now
    const stored = await demo.serverDraft(tab2, 'conv-3');
    assert.equal(stored.text, one, 'the stored draft was not overwritten');
    assert.equal(stored.seq, seqOne, 'nor its sequence moved');
    await shot(tab2, S, '1-tab2-conflict');

    // A stale write from the page itself is refused the same way.
    const stale = await demo.pageFetch(tab2, '/v1/drafts/conv-3', { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ text: 'stale', seq: seqOne - 1 }) });
    assert.equal(stale.status, 409);
    assert.equal(stale.json.code, 'conflict');
    assert.equal(stale.json.current.text, one);

    // The user explicitly keeps their version: only now is tab one's text replaced.
    await tab2.getByTestId('conflict-keep-mine').click();
    await tab2.getByTestId('conflict').waitFor({ state: 'hidden' });
    await waitFor(async () => (await demo.serverDraft(tab2, 'conv-3'))?.text === two, { message: 'explicit overwrite saved' });

    // Tab 1 now holds the stale version: its next edit is the one refused.
    await tab1.getByTestId('reply').press('End');
    await tab1.keyboard.type(' Thanks!');
    await tab1.getByTestId('conflict').waitFor({ state: 'visible', timeout: 5000 });
    assert.equal(await tab1.getByTestId('conflict-theirs').textContent(), two);
    assert.equal((await demo.serverDraft(tab1, 'conv-3')).text, two, 'tab one did not overwrite tab two');
    await shot(tab1, S, '2-tab1-conflict');

    // Taking theirs puts tab two's text in tab one's box.
    await tab1.getByTestId('conflict-use-theirs').click();
    await tab1.getByTestId('conflict').waitFor({ state: 'hidden' });
    assert.equal(await demo.replyText(tab1), two);

    // Tab 1 sends; a late save from tab 2 cannot bring the sent draft back.
    await tab1.getByTestId('send').click();
    await waitFor(async () => (await demo.messages(tab1, 'conv-3')).some((m) => m.text === two), { message: 'message sent from tab one' });
    await waitFor(async () => (await demo.serverDraft(tab1, 'conv-3')) === null, { message: 'draft removed after the send' });
    await tab2.getByTestId('reply').press('End');
    await tab2.keyboard.type(' (late edit)');
    await tab2.getByTestId('conflict').waitFor({ state: 'visible', timeout: 5000 });
    assert.match(await tab2.getByTestId('conflict-theirs').textContent(), /sent or cleared elsewhere/);
    await tab2.waitForTimeout(1000);
    assert.equal(await demo.serverDraft(tab2, 'conv-3'), null, 'the sent draft stays gone');
    await shot(tab2, S, '3-late-save-after-send');
    await ctx.close();
  });
});
