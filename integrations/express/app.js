// A small Express app behind sessiond: `GET /me` shows who is signed in, `POST /notes`
// stores a note for the session's principal (an unsafe method, so sessiond checks the
// request's origin), `GET /public` works with or without a session.
//
//   SESSIOND_URL=http://127.0.0.1:7878 PORT=3000 node app.js
import express from 'express';
import { sessiond } from './sessiond.js';

export function createApp({ sessiondUrl }) {
  const app = express();
  const requireSession = sessiond({ sessiondUrl });
  const maybeSession = sessiond({ sessiondUrl, optional: true, touch: false });
  // Notes per principal, bounded: a recipe, not a database.
  const notes = new Map();

  app.get('/public', maybeSession, (req, res) => {
    res.json({ signedIn: req.sessiond !== null, principal: req.sessiond?.principal ?? null });
  });

  app.get('/me', requireSession, (req, res) => {
    res.json(req.sessiond);
  });

  app.post('/notes', requireSession, express.json({ limit: '4kb' }), (req, res) => {
    const text = typeof req.body?.text === 'string' ? req.body.text.slice(0, 1000) : null;
    if (text === null) return res.status(400).json({ code: 'invalid_request' });
    const mine = notes.get(req.sessiond.principal) ?? [];
    mine.push(text);
    if (mine.length > 100) mine.shift();
    notes.set(req.sessiond.principal, mine);
    res.json({ principal: req.sessiond.principal, notes: mine });
  });

  return app;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const sessiondUrl = process.env.SESSIOND_URL ?? 'http://127.0.0.1:7878';
  const port = Number(process.env.PORT ?? 3000);
  createApp({ sessiondUrl }).listen(port, '127.0.0.1', () => {
    console.log(`express app on http://127.0.0.1:${port}, trusting sessiond at ${sessiondUrl}`);
  });
}
