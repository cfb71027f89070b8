// A TCP proxy between one browser context and the server that a test can FREEZE: no byte
// moves in either direction while the sockets stay open. Chromium's offline emulation
// leaves open WebSockets untouched (crbug 563644), so a frozen proxy is how a test makes
// the network die under a live connection, as a pulled cable would.
import net from 'node:net';

/**
 * Listens on 127.0.0.1 (port 0 = free). `target` may be set later with setTarget(port),
 * so a proxy's origin can be put into the server's config before the server starts.
 */
export async function startProxy({ target = null, host = '127.0.0.1' } = {}) {
  let targetPort = target;
  let frozen = false;
  const pairs = new Set();

  const server = net.createServer((client) => {
    const upstream = net.connect({ host, port: targetPort });
    const pair = { client, upstream };
    pairs.add(pair);
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    // Manual forwarding (not pipe) so a freeze can stop reading at once; paused sockets
    // keep their bytes in the kernel, and thawing delivers them, like a recovered link.
    const forward = (from, to) => {
      from.on('data', (chunk) => {
        if (!to.write(chunk)) {
          from.pause();
          to.once('drain', () => { if (!frozen) from.resume(); });
        }
      });
    };
    forward(client, upstream);
    forward(upstream, client);
    if (frozen) { client.pause(); upstream.pause(); }
    const close = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', close);
    upstream.on('error', close);
    client.on('close', close);
    upstream.on('close', close);
  });
  await new Promise((r, j) => server.listen(0, host, r).once('error', j));
  const port = server.address().port;

  return {
    port,
    url: `http://${host}:${port}`,
    origin: `http://${host}:${port}`,
    setTarget(p) { targetPort = p; },
    get frozen() { return frozen; },
    get connections() { return pairs.size; },
    freeze() {
      frozen = true;
      for (const { client, upstream } of pairs) { client.pause(); upstream.pause(); }
    },
    thaw() {
      frozen = false;
      for (const { client, upstream } of pairs) { client.resume(); upstream.resume(); }
    },
    async close() {
      for (const { client, upstream } of pairs) { client.destroy(); upstream.destroy(); }
      pairs.clear();
      await new Promise((r) => server.close(() => r()));
    },
  };
}
