// The installable SDK (issue 14, point 5): `npm pack` of sdk/, the tarball installed
// offline into a fresh project, its `exports` resolved by Node, and a page of that
// project importing the package (through an import map, as a bundler would resolve it)
// driven in the browser against a real sessiond on another origin.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServer, CALM_ROLES, REPO } from '../lib/server.js';
import { launchBrowser, watchPage, shot, withFailureReport } from '../lib/browser.js';
import { waitFor } from '../lib/env.js';
import { startStatic } from '../lib/static.js';

const S = 'sdk-package';
const npm = (args, cwd) => execFileSync('npm', [...args, '--no-audit', '--no-fund', '--loglevel=error'], { cwd, encoding: 'utf8', timeout: 120_000 });

let project;
let tarball;
let site;
let server;
let browser;
before(async () => {
  project = mkdtempSync(join(tmpdir(), 'sessiond-sdk-app-'));
  // `npm pack` of the committed package (its dist is what the server embeds).
  const packed = JSON.parse(npm(['pack', '--json', '--pack-destination', project], join(REPO, 'sdk')));
  tarball = packed[0].filename;
  writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'fresh-app', version: '1.0.0', private: true, type: 'module' }));
  npm(['install', '--offline', `./${tarball}`], project);
});
after(async () => {
  await browser?.close();
  await server?.stop();
  await site?.close();
  if (project) rmSync(project, { recursive: true, force: true });
});

test('the packed SDK installs from its tarball and resolves through its exports', async () => {
  const pkgDir = join(project, 'node_modules', '@sessiond', 'sdk');
  const pkg = JSON.parse(readFileSync(join(pkgDir, 'package.json'), 'utf8'));
  assert.equal(pkg.license, 'Apache-2.0');
  assert.equal(pkg.sideEffects, false);
  assert.equal(pkg.private, undefined, 'publishable');
  assert.equal(pkg.exports['.'].types, './dist/sessiond.d.ts');
  for (const f of ['dist/sessiond.js', 'dist/sessiond.d.ts', 'dist/sessiond.bundle.js', 'dist/drafts.js', 'README.md']) {
    assert.ok(existsSync(join(pkgDir, f)), f);
  }
  assert.ok(!existsSync(join(pkgDir, 'src')) && !existsSync(join(pkgDir, 'test')), 'only what `files` lists');
  // The single-file build imports nothing; the module files and it export the same API.
  const bundle = readFileSync(join(pkgDir, 'dist', 'sessiond.bundle.js'), 'utf8');
  assert.ok(!/^\s*import\s/m.test(bundle), 'the bundle is one file');
  const names = execFileSync(process.execPath, ['--input-type=module', '-e', `
    const a = await import('@sessiond/sdk');
    const b = await import('@sessiond/sdk/bundle');
    console.log(JSON.stringify([Object.keys(a).sort(), Object.keys(b).sort()]));
  `], { cwd: project, encoding: 'utf8' });
  const [modules, single] = JSON.parse(names);
  assert.ok(modules.includes('Sessiond') && modules.includes('SessiondError'), modules.join());
  assert.deepEqual(single, modules);
  // The server serves the same build at /sdk/.
  server = await startServer({ roles: CALM_ROLES });
  for (const f of ['sessiond.js', 'sessiond.bundle.js']) {
    const served = await (await fetch(`${server.url}/sdk/${f}`)).text();
    assert.equal(served, readFileSync(join(pkgDir, 'dist', f), 'utf8'), `/sdk/${f} is the packed file`);
  }
  await server.stop();
  server = null;
});

test('a page of the fresh project imports the package and runs a session against sessiond', async () => {
  const page = `<!doctype html><meta charset="utf-8"><title>fresh app</title>
<script type="importmap">{"imports": {"@sessiond/sdk": "/node_modules/@sessiond/sdk/dist/sessiond.bundle.js"}}</script>
<p id="status">loading</p>
<script type="module">
import { Sessiond } from '@sessiond/sdk';
const sd = new Sessiond({ baseUrl: new URLSearchParams(location.search).get('base') });
window.sd = sd;
sd.on('connected', (h) => { document.getElementById('status').textContent = 'connected as ' + h.principal; });
window.started = sd.start().then((s) => ({ ok: s.handle }), (e) => ({ error: e.code ?? String(e) }));
</script>`;
  site = await startStatic({ roots: { '/node_modules/': join(project, 'node_modules') }, pages: { '/index.html': page } });
  server = await startServer({ roles: CALM_ROLES, allowedOrigins: [site.localhost] });
  browser = await launchBrowser();
  const context = await browser.newContext();
  try {
    await withFailureReport(S, server, async () => {
      const p = watchPage(await context.newPage(), 'fresh-app');
      await p.goto(`${site.localhost}/index.html?base=${encodeURIComponent(`http://localhost:${server.port}`)}`);
      await p.waitForFunction(() => window.started);
      const r = await p.evaluate(() => window.started);
      assert.ok(r.ok, JSON.stringify(r));
      await waitFor(async () => (await p.textContent('#status')).startsWith('connected as anon:'), { message: 'socket open' });
      const text = await p.evaluate(async () => {
        const d = window.sd.drafts('c1');
        await d.get();
        d.set('from the installed package');
        await d.flush();
        return (await window.sd.req('GET', '/v1/drafts/c1')).data?.text;
      });
      assert.equal(text, 'from the installed package');
      const s = await server.session(r.ok);
      assert.equal(s.state, 'active');
      await shot(p, S, '1-connected');
    });
  } finally {
    await context.close();
  }
});
