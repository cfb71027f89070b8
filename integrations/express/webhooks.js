// Receiving sessiond's lifecycle webhooks in Express (docs/integration.md, "Verify a
// webhook"). The official `standardwebhooks` package checks the signature and the
// timestamp over the raw body, so the route reads the body as bytes (express.raw), not
// through express.json, which would re-serialize it.
import express from 'express';
import standardwebhooks from 'standardwebhooks';

const { Webhook } = standardwebhooks;

/**
 * A router with `POST /webhooks/sessiond`: verifies each delivery with `secret` (the
 * endpoint's `whsec_…` secret), drops repeats by `webhook-id` (delivery is at least
 * once), and hands `{ id, type, timestamp, data }` to `onEvent`. A bad signature or a
 * stale timestamp is answered 401 and never reaches `onEvent`.
 */
export function sessiondWebhooks({ secret, onEvent, remember = 10_000 }) {
  const wh = new Webhook(secret);
  // Recently seen webhook-ids, bounded (oldest forgotten first).
  const seen = new Set();
  const router = express.Router();
  router.post('/webhooks/sessiond', express.raw({ type: 'application/json', limit: '1mb' }), async (req, res) => {
    let event;
    try {
      event = wh.verify(req.body, req.headers);
    } catch {
      return res.status(401).json({ error: 'invalid signature' });
    }
    const id = req.headers['webhook-id'];
    if (seen.has(id)) return res.status(204).end();
    try {
      await onEvent({ id, ...event });
    } catch {
      // Not remembered: sessiond retries it.
      return res.status(500).end();
    }
    seen.add(id);
    if (seen.size > remember) seen.delete(seen.values().next().value);
    res.status(204).end();
  });
  return router;
}
