// S1 (Chatwoot): text and a recorded clip left unsent in conversation A stay with A; B
// shows nothing of them, on screen or on the server; Send applies where it was pressed.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startEnv, waitFor } from '../lib/env.js';
import { CALM_ROLES } from '../lib/server.js';
import { shot, withFailureReport } from '../lib/browser.js';
import * as demo from '../lib/demo.js';

const S = 's1';
let env;
before(async () => { env = await startEnv({ proxies: 1, roles: CALM_ROLES }); });
after(async () => { await env?.close(); });

test('S1: text and audio stay in their conversation; send lands where it was pressed', async () => {
  await withFailureReport(S, env.server, async () => {
    const ctx = await env.browser.newContext();
    const page = await demo.openDemo(ctx, env.proxies[0], 'agent');
    await demo.signIn(page, 'agent-ana');
    await demo.openConv(page, 'conv-1');

    // Conversation A: text and a clip from the (fake) microphone, unsent.
    const textA = 'Hello, your parcel left our warehouse this morning; here is a voice note with details.';
    await page.getByTestId('reply').fill(textA);
    await demo.recordClip(page, 1500);
    const savedA = await waitFor(async () => {
      const d = await demo.serverDraft(page, 'conv-1');
      return d && d.text === textA && d.attachments.some((a) => a.name === 'voice.webm') ? d : null;
    }, { message: 'A draft (text + clip) saved on the server' });
    const clipA = await demo.serverAttachment(page, 'conv-1', 'voice.webm');
    assert.equal(clipA.status, 200);
    assert.ok(clipA.size > 0, 'the stored clip has bytes');
    assert.match(clipA.type, /^audio\//);
    assert.ok(savedA.seq >= 1);
    await shot(page, S, '1-A-text-and-clip');

    // Switch to B: its own (empty) draft, no clip, and the server holds nothing for B.
    await demo.openConv(page, 'conv-2');
    await demo.settle(page);
    assert.equal(await demo.replyText(page), '', 'B shows none of A\'s text');
    assert.deepEqual(await demo.clipShown(page), { shown: false, size: 0 }, 'B shows no clip');
    const draftB = await demo.serverDraft(page, 'conv-2');
    assert.ok(draftB === null || (draftB.text === '' && draftB.attachments.length === 0), `server draft of B is empty: ${JSON.stringify(draftB)}`);
    assert.deepEqual(await demo.badges(page), ['conv-1'], 'only A carries the draft badge');
    await shot(page, S, '2-B-empty');

    // Back to A: A's text and A's clip.
    await demo.openConv(page, 'conv-1');
    assert.equal(await demo.replyText(page), textA);
    const shownA = await demo.waitForClip(page);
    assert.equal(shownA, clipA.size, 'A shows its clip again: the recorded one');
    await shot(page, S, '3-A-restored');

    // Send in A and switch to B at once: the message lands in A, never in B.
    await page.getByTestId('send').click();
    await page.getByTestId('conv-conv-2').click();
    const sent = await waitFor(async () => {
      const list = await demo.messages(page, 'conv-1');
      return list.find((m) => m.text === textA);
    }, { message: 'the message in A' });
    assert.deepEqual(sent.attachments, ['voice.webm'], 'the clip went with A\'s message');
    assert.equal((await demo.messages(page, 'conv-2')).length, 0, 'nothing was sent to B');
    // A's draft is removed only after the send was confirmed; B's is still empty.
    await waitFor(async () => {
      const d = await demo.serverDraft(page, 'conv-1');
      return d === null || (d.text === '' && d.attachments.length === 0);
    }, { message: 'A\'s draft cleared after the confirmed send' });
    await demo.waitForReplyReady(page);
    assert.equal(await demo.replyText(page), '', 'B still empty after the send');
    const draftB2 = await demo.serverDraft(page, 'conv-2');
    assert.ok(draftB2 === null || (draftB2.text === '' && draftB2.attachments.length === 0));
    await shot(page, S, '4-B-after-send-in-A');

    await demo.openConv(page, 'conv-1');
    await waitFor(async () => (await page.getByTestId('message').allTextContents()).some((t) => t.includes(textA)), { message: 'A lists the sent message' });
    assert.equal(await demo.replyText(page), '');
    await shot(page, S, '5-A-sent');

    // A pending debounced save is flushed by a switch: type in C and leave at once.
    await demo.openConv(page, 'conv-3');
    const textC = 'Try resetting the password from the link we just sent.';
    await page.getByTestId('reply').fill(textC);
    await page.getByTestId('conv-conv-1').click();
    await waitFor(async () => (await demo.serverDraft(page, 'conv-3'))?.text === textC, { timeout: 3000, message: 'C flushed on switch' });
    assert.equal(await demo.replyText(page), '');

    // ... and by closing the page (pagehide) before the debounce fired.
    await demo.openConv(page, 'conv-2');
    const textB = 'Refund issued; it shows up within five working days.';
    await page.getByTestId('reply').fill(textB);
    await page.close({ runBeforeUnload: true });
    const probe = await demo.openDemo(ctx, env.proxies[0], 'probe');
    await waitFor(async () => (await demo.serverDraft(probe, 'conv-2'))?.text === textB, { timeout: 3000, message: 'B flushed on page close' });
    await ctx.close();
  });
});
