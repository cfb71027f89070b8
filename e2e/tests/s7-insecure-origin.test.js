// S7 (issue 11, finding 6): the demo served from an origin that is not a secure context
// (a plain-HTTP intranet host; Chromium withholds WebCrypto there). Text typed after a
// revoke is kept on the device, encrypted, and comes back after a reload and sign-in;
// the page never claims a save that did not happen; the next person reads none of it.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startEnv, waitFor } from '../lib/env.js';
import { CALM_ROLES } from '../lib/server.js';
import { launchProfile, watchPage, shot, withFailureReport } from '../lib/browser.js';
import { startProxy } from '../lib/proxy.js';
import * as demo from '../lib/demo.js';

const S = 's7';
const HOST = 'insecure.test';
let env;
let site;
before(async () => {
  const proxy = await startProxy();
  // The browser reaches the proxy by a name that is not loopback, so the page is not a
  // secure context; the name resolves to 127.0.0.1 for this browser only (see below).
  site = { url: `http://${HOST}:${proxy.port}`, origin: `http://${HOST}:${proxy.port}` };
  env = await startEnv({ proxies: 0, roles: CALM_ROLES, browser: false, extraOrigins: [site.origin] });
  proxy.setTarget(env.server.port);
  env.proxies.push(proxy);
});
after(async () => { await env?.close(); });

const TEXT = 'Dear customer, here is what we found about the invoice.';
const MORE = '\nTyped on the intranet after the session was revoked.';

test('S7: not a secure context: text typed after a revoke survives a reload, encrypted; the next person reads none of it', async () => {
  const args = [`--host-resolver-rules=MAP ${HOST} 127.0.0.1`];
  const profile = await launchProfile(undefined, { args });
  try {
    await withFailureReport(S, env.server, async () => {
      let page = watchPage(profile.context.pages()[0] ?? (await profile.context.newPage()), 'intranet');
      await demo.gotoDemo(page, site);
      const ctx = await page.evaluate(() => ({ secure: window.isSecureContext, subtle: typeof crypto.subtle }));
      assert.deepEqual(ctx, { secure: false, subtle: 'undefined' }, 'the page is not a secure context');

      await demo.signIn(page, 'frank');
      await demo.openConv(page, 'conv-1');
      await page.getByTestId('reply').fill(TEXT);
      await waitFor(async () => (await demo.serverDraft(page, 'conv-1'))?.text === TEXT, { message: 'draft autosaved' });
      const session = await demo.currentSession(page);
      const revoke = await env.server.admin('DELETE', `/v1/admin/sessions/${session.handle}`);
      assert.ok([200, 204].includes(revoke.status), `revoke answered ${revoke.status}`);

      await page.getByTestId('reply').press('Control+End');
      await page.keyboard.type(MORE, { delay: 5 });
      await page.getByTestId('session-ended').waitFor({ state: 'visible', timeout: 10_000 });
      const LATEST = TEXT + MORE;
      await waitFor(async () => (await page.getByTestId('draft-status').textContent()) === 'Saved on this device', { message: 'kept on this device' });
      const stored = await page.evaluate(() => JSON.stringify({ ...localStorage }));
      assert.ok(stored.includes('sessiond:d:'), 'a local copy was written');
      assert.ok(!stored.includes('intranet') && !stored.includes('invoice'), 'the copy is not readable text');
      assert.equal(await page.getByTestId('ended-local').textContent(), 'your draft is kept on this device.');
      await shot(page, S, '1-typed-after-revoke');

      // Reload: a new anonymous session; frank signs in again and gets the latest text.
      await page.reload();
      await demo.gotoDemo(page, site);
      await demo.signIn(page, 'frank');
      await demo.openConv(page, 'conv-1');
      await waitFor(async () => (await demo.replyText(page)) === LATEST, { message: 'latest text shown after reload and sign-in' });
      await waitFor(async () => (await demo.serverDraft(page, 'conv-1'))?.text === LATEST, { message: 'latest text uploaded' });
      await shot(page, S, '2-restored-after-reload');

      // Typed again and kept locally, then frank leaves without signing out; his session
      // is revoked and the browser closed.
      await page.getByTestId('reply').press('Control+End');
      const again = await demo.currentSession(page);
      assert.ok([200, 204].includes((await env.server.admin('DELETE', `/v1/admin/sessions/${again.handle}`)).status));
      await page.keyboard.type(' PS.', { delay: 5 });
      await waitFor(async () => (await page.getByTestId('draft-status').textContent()) === 'Saved on this device', { message: 'kept on this device again' });
      await profile.close();

      // The next person on the same profile: nothing of frank's shows or is readable.
      Object.assign(profile, await launchProfile(profile.userDataDir, { args }));
      page = watchPage(profile.context.pages()[0] ?? (await profile.context.newPage()), 'intranet-next');
      await demo.gotoDemo(page, site);
      await demo.signIn(page, 'grace');
      for (const conv of ['conv-2', 'conv-1']) {
        await demo.openConv(page, conv);
        assert.equal(await demo.replyText(page), '', `grace sees no text in ${conv}`);
        assert.equal(await demo.serverDraft(page, conv), null, `grace has no server draft in ${conv}`);
      }
      const storage = await page.evaluate(() => JSON.stringify({ ...localStorage, ...sessionStorage }));
      assert.ok(!storage.includes('invoice') && !storage.includes('PS.'), 'no readable copy of frank\'s text');
      await shot(page, S, '3-next-person-sees-nothing');
    });
  } finally {
    await profile.dispose();
  }
});
