// The harness checks itself: the freezable proxy really stops bytes and keeps sockets
// open, Chromium launches with fake media, and the real server answers through a proxy.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { startProxy } from '../lib/proxy.js';
import { launchBrowser, watchPage, shot } from '../lib/browser.js';
import { startEnv } from '../lib/env.js';

test('a frozen proxy moves no byte either way and keeps the socket open; thawing delivers', async () => {
  const echo = net.createServer((s) => s.pipe(s));
  await new Promise((r) => echo.listen(0, '127.0.0.1', r));
  const proxy = await startProxy({ target: echo.address().port });
  try {
    const sock = net.connect(proxy.port, '127.0.0.1');
    await new Promise((r) => sock.once('connect', r));
    const received = [];
    sock.on('data', (d) => received.push(d.toString()));
    sock.write('one');
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(received.join(''), 'one');

    proxy.freeze();
    sock.write('two');
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(received.join(''), 'one', 'nothing crosses a frozen proxy');
    assert.equal(sock.destroyed, false, 'the socket stays open');
    assert.equal(proxy.connections, 1);

    proxy.thaw();
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(received.join(''), 'onetwo', 'bytes held during the freeze arrive after it');
    sock.destroy();
  } finally {
    await proxy.close();
    await new Promise((r) => echo.close(r));
  }
});

test('Chromium loads a page through the proxy, sees a fake microphone, and a freeze stalls it', async () => {
  const site = http.createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end('<!doctype html><title>e2e static</title><h1 data-testid="hello">hello from the harness</h1>');
  });
  await new Promise((r) => site.listen(0, '127.0.0.1', r));
  const proxy = await startProxy({ target: site.address().port });
  const b = await launchBrowser();
  try {
    const ctx = await b.newContext();
    const page = watchPage(await ctx.newPage(), 'static');
    await page.goto(proxy.url + '/');
    assert.equal(await page.getByTestId('hello').textContent(), 'hello from the harness');
    const audio = await page.evaluate(async () => {
      const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
      const rec = new MediaRecorder(stream);
      const chunks = [];
      rec.ondataavailable = (e) => chunks.push(e.data);
      const done = new Promise((r) => { rec.onstop = r; });
      rec.start();
      await new Promise((r) => setTimeout(r, 400));
      rec.stop();
      await done;
      stream.getTracks().forEach((t) => t.stop());
      const blob = new Blob(chunks, { type: rec.mimeType });
      return { type: blob.type, size: blob.size };
    });
    assert.match(audio.type, /^audio\//);
    assert.ok(audio.size > 0, 'the fake device records bytes');
    await shot(page, 'harness', 'static-page');

    proxy.freeze();
    const stalled = await page.evaluate(async () => {
      try {
        await fetch('/again', { signal: AbortSignal.timeout(800), cache: 'no-store' });
        return 'answered';
      } catch (e) {
        return e.name;
      }
    });
    assert.equal(stalled, 'TimeoutError', 'a request through a frozen proxy gets no answer');
    proxy.thaw();
    await ctx.close();
  } finally {
    await b.close();
    await proxy.close();
    await new Promise((r) => site.close(r));
  }
});

test('the real server starts with short policies and answers /healthz to Chromium through a proxy', async () => {
  const env = await startEnv({ proxies: 1 });
  try {
    const ctx = await env.browser.newContext();
    const page = watchPage(await ctx.newPage(), 'healthz');
    const res = await page.goto(env.proxies[0].url + '/healthz');
    assert.equal(res.status(), 200);
    assert.deepEqual(JSON.parse(await page.textContent('body')), { status: 'ok' });
    await shot(page, 'harness', 'healthz');
    await ctx.close();
  } finally {
    await env.close();
  }
});
