// S2 (LibreChat): a revoked session refuses the send with 401, the page keeps the text and
// what is typed afterwards; signing in again (this tab, then another browser) shows the
// latest text; the next person on the same browser profile sees none of it.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startEnv, waitFor } from '../lib/env.js';
import { CALM_ROLES } from '../lib/server.js';
import { launchProfile, watchPage, shot, withFailureReport } from '../lib/browser.js';
import * as demo from '../lib/demo.js';

const S = 's2';
let env;
before(async () => { env = await startEnv({ proxies: 1, roles: CALM_ROLES }); });
after(async () => { await env?.close(); });

const LONG = Array.from({ length: 30 }, (_, i) => `Paragraph ${i + 1}: the customer explained the billing problem in detail, and this is my careful answer.`).join('\n');
const MORE = '\nP.S. typed while the session was already gone.';

test('S2: revoke, send refused with the text kept, sign in again restores the latest text; the next person sees none', async () => {
  const profile = await launchProfile();
  try {
    await withFailureReport(S, env.server, async () => {
      const proxy = env.proxies[0];
      let page = watchPage(profile.context.pages()[0] ?? (await profile.context.newPage()), 'shared-pc');
      await demo.gotoDemo(page, proxy);
      await demo.signIn(page, 'frank');
      await demo.openConv(page, 'conv-1');

      await page.getByTestId('reply').fill(LONG);
      await waitFor(async () => (await demo.serverDraft(page, 'conv-1'))?.text === LONG, { message: 'long draft autosaved' });
      const session = await demo.currentSession(page);
      assert.equal(session.user_id, 'frank');

      // The app's backend revokes the session; then the user presses Send.
      const revoke = await env.server.admin('DELETE', `/v1/admin/sessions/${session.handle}`);
      assert.ok([200, 204].includes(revoke.status), `revoke answered ${revoke.status}: ${revoke.text}`);
      const urlBefore = page.url();
      await page.getByTestId('send').click();
      await page.getByTestId('session-ended').waitFor({ state: 'visible', timeout: 5000 });
      assert.equal(await page.getByTestId('ended-reason').textContent(), 'revoked');
      await waitFor(async () => (await page.getByTestId('send-status').textContent()).includes('session ended'), { message: 'send refused with 401 and said so' });
      assert.equal(page.url(), urlBefore, 'no redirect');
      assert.equal(await demo.replyText(page), LONG, 'the text stays in the box');
      assert.equal((await demo.messages(page, 'conv-1').catch(() => [])).length, 0);
      const direct = await demo.pageFetch(page, '/demo/api/messages', {
        method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ conversation: 'conv-1', text: 'x', attachments: [] }),
      });
      assert.equal(direct.status, 401, 'the server refuses a send from the revoked session');
      assert.equal(direct.json?.code, 'session_expired');
      assert.equal(direct.json?.reason, 'revoked');
      await shot(page, S, '1-revoked-send-refused');

      // Keep typing: kept locally while no session can save it.
      await page.getByTestId('reply').press('End');
      await page.getByTestId('reply').press('Control+End');
      await page.keyboard.type(MORE, { delay: 5 });
      const LATEST = LONG + MORE;
      assert.equal(await demo.replyText(page), LATEST);
      await waitFor(async () => (await page.getByTestId('draft-status').textContent()) === 'Saved on this device', { message: 'kept on this device' });
      await page.waitForTimeout(800); // past the draft debounce, so the local copy is written
      await shot(page, S, '2-typed-after-revoke');

      // Sign in again in this tab: the latest text is there and reaches the server.
      await demo.signIn(page, 'frank');
      assert.equal(await demo.replyText(page), LATEST, 'same tab shows the latest text');
      await waitFor(async () => (await demo.serverDraft(page, 'conv-1'))?.text === LATEST, { message: 'latest text uploaded after sign-in' });
      await shot(page, S, '3-same-tab-restored');

      // Another browser (a new context): sign in, the latest text is there.
      const other = await env.browser.newContext();
      const page2 = await demo.openDemo(other, proxy, 'other-browser');
      await demo.signIn(page2, 'frank');
      await demo.openConv(page2, 'conv-1');
      assert.equal(await demo.replyText(page2), LATEST, 'a new browser shows the latest text');
      await shot(page2, S, '4-new-context-restored');
      await other.close();

      // frank walks away from the shared computer without signing out; his session ends
      // (revoked here, as an admin or an expiry would), and the browser is closed.
      const again = await demo.currentSession(page);
      assert.ok([200, 204].includes((await env.server.admin('DELETE', `/v1/admin/sessions/${again.handle}`)).status));
      await profile.close();

      // The next person opens the same browser profile and signs in.
      const reopened = await launchProfile(profile.userDataDir);
      Object.assign(profile, reopened);
      page = watchPage(profile.context.pages()[0] ?? (await profile.context.newPage()), 'shared-pc-next');
      await demo.gotoDemo(page, proxy);
      await demo.signIn(page, 'grace');
      for (const conv of ['conv-2', 'conv-3', 'conv-1']) { // conv-1 last: frank's draft was there
        await demo.openConv(page, conv);
        assert.equal(await demo.replyText(page), '', `grace sees no text in ${conv}`);
        assert.equal((await demo.clipShown(page)).shown, false);
        assert.equal(await demo.serverDraft(page, conv), null, `grace has no server draft in ${conv}`);
      }
      assert.deepEqual(await demo.badges(page), []);
      const storage = await page.evaluate(() => JSON.stringify({ ...localStorage }));
      assert.ok(!storage.includes('Paragraph 1') && !storage.includes('P.S. typed'), 'no readable copy of frank\'s text in storage');
      await shot(page, S, '5-next-person-sees-nothing');

      // grace signs out; frank signs in on the same profile and gets his text back.
      await page.getByTestId('signout').click();
      await page.getByTestId('signin').waitFor({ state: 'visible' });
      await demo.signIn(page, 'frank');
      await demo.openConv(page, 'conv-1');
      assert.equal(await demo.replyText(page), LATEST, 'frank gets his draft back');
      await shot(page, S, '6-frank-back');
    });
  } finally {
    await profile.dispose();
  }
});
