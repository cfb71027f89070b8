// A tiny static file server for pages that live on another origin than sessiond (the
// cross-origin and packed-SDK scenarios): serves files from a map of URL prefixes to
// directories, on 127.0.0.1:0, reachable as http://127.0.0.1:<port> and
// http://localhost:<port> (two different sites to the browser).
import { createServer } from 'node:http';
import { readFile } from 'node:fs/promises';
import { join, normalize } from 'node:path';

const TYPES = { html: 'text/html; charset=utf-8', js: 'text/javascript; charset=utf-8', json: 'application/json', css: 'text/css' };

/** `roots`: { '/sdk/': '/abs/dir', '/': '/abs/other' } (longest prefix wins); `pages`:
 * { '/app.html': '<html>…' } served as they are. */
export async function startStatic({ roots = {}, pages = {} } = {}) {
  const prefixes = Object.keys(roots).sort((a, b) => b.length - a.length);
  const server = createServer(async (req, res) => {
    const path = decodeURIComponent(new URL(req.url, 'http://x').pathname);
    const send = (status, body, type = 'text/plain') => {
      res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
      res.end(body);
    };
    if (pages[path] !== undefined) return send(200, pages[path], TYPES.html);
    const prefix = prefixes.find((p) => path.startsWith(p));
    const rel = prefix ? normalize(path.slice(prefix.length)) : null;
    if (!prefix || rel.startsWith('..')) return send(404, 'not found');
    try {
      const body = await readFile(join(roots[prefix], rel));
      send(200, body, TYPES[rel.split('.').pop()] ?? 'application/octet-stream');
    } catch {
      send(404, 'not found');
    }
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const port = server.address().port;
  return {
    port,
    ip: `http://127.0.0.1:${port}`,
    localhost: `http://localhost:${port}`,
    close: () => new Promise((r) => { server.closeAllConnections?.(); server.close(() => r()); }),
  };
}
