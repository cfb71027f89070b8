// Driving the demo helpdesk (/demo/) by the stable data-testids listed in web/README.md,
// plus reads of the server's own view (drafts, session, messages) from inside a page, so
// a scenario checks what the server holds and not only what the screen shows.
import { watchPage } from './browser.js';
import { waitFor } from './env.js';

export const CONVS = ['conv-1', 'conv-2', 'conv-3'];

/** Opens the demo in a new page of `context`, through `proxy`, and waits for it to boot. */
export async function openDemo(context, proxy, label) {
  const page = watchPage(await context.newPage(), label);
  return gotoDemo(page, proxy);
}

/** Loads the demo in `page` and waits for it to boot. */
export async function gotoDemo(page, proxy) {
  await page.goto(`${proxy.url}/demo/`);
  // Booted: either the sign-in form (anonymous) or the desk (cookie of a signed-in user).
  await page.locator('[data-testid="signin"]:visible, [data-testid="whoami"]:not(:empty)').first().waitFor({ timeout: 15_000 });
  return page;
}

/** This browser's session cookie (HttpOnly: only the harness can read it). Found as the
 * one HttpOnly cookie sessiond sets, not by name: the name depends on the configuration
 * (`sessiond` in dev mode, `__Host-sessiond` on a Secure host-only cookie). */
export async function sessionCookie(context) {
  return (await context.cookies()).find((c) => c.httpOnly) ?? null;
}

/** Signs in through the demo's form (dev ticket) and waits until the desk is live. */
export async function signIn(page, user, role = 'editor', name = '') {
  const form = page.getByTestId('signin');
  if (!(await form.isVisible())) {
    // From the "session ended" banner the form is behind a button.
    await page.getByTestId('ended-signin').click();
  }
  await form.waitFor({ state: 'visible' });
  await page.getByTestId('signin-user').fill(user);
  await page.getByTestId('signin-role').selectOption(role);
  await page.getByTestId('signin-name').fill(name);
  await page.getByTestId('signin-submit').click();
  await waitFor(async () => (await page.getByTestId('whoami').textContent()).startsWith(`${user} (`), { message: `${user} signed in` });
  await page.getByTestId('session-ended').waitFor({ state: 'hidden' });
  await waitForOnline(page);
  await waitForReplyReady(page);
}

export async function waitForOnline(page, timeout = 10_000) {
  await waitFor(async () => (await page.getByTestId('conn-status').textContent()) === 'online', { timeout, message: 'conn-status online' });
}

/** The reply box is enabled once the open conversation's draft is loaded. */
export async function waitForReplyReady(page) {
  await waitFor(() => page.getByTestId('reply').isEnabled(), { message: 'reply box enabled' });
}

/** Opens a conversation and waits until its draft is shown and its room joined. */
export async function openConv(page, id) {
  await page.getByTestId(`conv-${id}`).click();
  await waitFor(async () => (await page.getByTestId(`conv-${id}`).getAttribute('aria-current')) === 'true', { message: `${id} current` });
  await waitForReplyReady(page);
}

/** Waits until the room's notes are usable (the join answered). */
export async function waitForRoom(page) {
  await waitFor(() => page.getByTestId('notes').isEnabled(), { message: 'room joined (notes enabled)' });
}

export async function replyText(page) {
  return page.getByTestId('reply').inputValue();
}

/** Records `ms` of audio from the fake microphone and waits for the clip to show. */
export async function recordClip(page, ms = 1200) {
  const button = page.getByTestId('record');
  await button.click();
  await waitFor(async () => (await button.getAttribute('aria-pressed')) === 'true', { message: 'recording started' });
  await page.waitForTimeout(ms);
  await button.click();
  await waitFor(async () => (await button.getAttribute('aria-pressed')) === 'false', { message: 'recording stopped' });
  await page.getByTestId('clip').waitFor({ state: 'visible' });
}

/** Waits for the open conversation's clip to show; returns its size in bytes. */
export async function waitForClip(page) {
  await page.getByTestId('clip').waitFor({ state: 'visible', timeout: 5000 });
  return waitFor(async () => (await clipShown(page)).size, { message: 'clip has bytes' });
}

/** Lets a just-opened conversation finish rendering (clip, badges) before checking absence. */
export async function settle(page, ms = 600) {
  await page.waitForTimeout(ms);
}

/** Whether the reply box shows a playable clip (visible, with a blob source of real bytes). */
export async function clipShown(page) {
  if (!(await page.getByTestId('clip').isVisible())) return { shown: false, size: 0 };
  const size = await page.getByTestId('clip-player').evaluate(async (audio) => {
    if (!audio.src) return 0;
    const b = await fetch(audio.src).then((r) => r.blob());
    return b.size;
  });
  return { shown: true, size };
}

/** A JSON request made by the page itself (its cookie, its origin); never throws. */
export async function pageFetch(page, path, init = {}) {
  return page.evaluate(async ({ path, init }) => {
    const r = await fetch(path, { credentials: 'include', cache: 'no-store', ...init });
    const text = await r.text();
    let json = null;
    try { json = text ? JSON.parse(text) : null; } catch { /* not JSON */ }
    return { status: r.status, json, text, type: r.headers.get('content-type') };
  }, { path, init });
}

/** The server's draft of a conversation for this page's session: null when it has none. */
export async function serverDraft(page, conv) {
  const r = await pageFetch(page, `/v1/drafts/${conv}`);
  if (r.status === 404) return null;
  if (r.status !== 200) throw new Error(`GET /v1/drafts/${conv} answered ${r.status}: ${r.text}`);
  return r.json;
}

/** Size and type of a draft attachment as stored by the server. */
export async function serverAttachment(page, conv, name) {
  return page.evaluate(async ({ conv, name }) => {
    const r = await fetch(`/v1/drafts/${conv}/attachments/${name}`, { credentials: 'include', cache: 'no-store' });
    if (r.status !== 200) return { status: r.status, size: 0, type: null };
    const b = await r.blob();
    return { status: r.status, size: b.size, type: r.headers.get('content-type') };
  }, { conv, name });
}

export async function currentSession(page) {
  const r = await pageFetch(page, '/v1/session');
  return r.status === 200 ? r.json : null;
}

export async function messages(page, conv) {
  const r = await pageFetch(page, `/demo/api/messages?conversation=${conv}`);
  if (r.status !== 200) throw new Error(`GET /demo/api/messages answered ${r.status}: ${r.text}`);
  return r.json.messages;
}

export async function presenceMembers(page) {
  return page.getByTestId('presence-member').allTextContents();
}

export async function presenceEvents(page) {
  return page.getByTestId('presence-event').allTextContents();
}

/** Whether any "draft" badge shows in the conversation list. */
export async function badges(page) {
  const out = [];
  for (const c of CONVS) if (await page.getByTestId(`draft-badge-${c}`).count()) out.push(c);
  return out;
}
