// Express middleware that trusts sessiond: each request's cookie (or bearer token) is
// checked by sessiond's forward-auth endpoint, `/v1/auth/verify`, and the identity it
// answers with becomes `req.sessiond`. The app never parses or stores the token itself.
//
// sessiond decides everything about the session (live, ended and why, CSRF origin check
// for unsafe methods); this middleware only relays the headers that decision needs and
// maps the answer: 200 → next(), 401/403 → the same problem+json to the client,
// anything else (sessiond down, slow, 5xx) → 503, never "let the request through".

/** Headers of the incoming request that sessiond's decision depends on. */
const RELAYED = ['cookie', 'authorization', 'origin', 'referer', 'sec-fetch-site', 'user-agent'];

/**
 * @param {object} options
 * @param {string} options.sessiondUrl  base URL of sessiond, e.g. "http://127.0.0.1:7878"
 * @param {boolean} [options.touch=true]  whether a checked request counts as activity
 * @param {number} [options.timeoutMs=2000]  bound on the verify call
 * @param {boolean} [options.optional=false]  let requests without a live session through
 *        with `req.sessiond = null` instead of answering 401
 */
export function sessiond({ sessiondUrl, touch = true, timeoutMs = 2000, optional = false }) {
  if (!sessiondUrl) throw new Error('sessiond: sessiondUrl is required');
  const verifyUrl = new URL('/v1/auth/verify', sessiondUrl).toString();

  return async function sessiondAuth(req, res, next) {
    const headers = {
      // The original method and the app's own origin: sessiond applies its CSRF origin
      // check to unsafe methods against the app's origin, not its own.
      'x-forwarded-method': req.method,
      'x-forwarded-proto': req.protocol,
      'x-forwarded-host': req.get('host') ?? '',
      'x-sessiond-touch': touch ? '1' : '0',
    };
    for (const name of RELAYED) {
      const value = req.headers[name];
      if (value !== undefined) headers[name] = Array.isArray(value) ? value.join(', ') : value;
    }

    let answer;
    try {
      answer = await fetch(verifyUrl, { method: 'GET', headers, signal: AbortSignal.timeout(timeoutMs) });
    } catch (err) {
      req.log?.warn?.({ err }, 'sessiond unreachable');
      return unavailable(res);
    }

    if (answer.status === 200) {
      const h = (name) => answer.headers.get(name) || null;
      req.sessiond = {
        principal: h('x-session-principal'),
        role: h('x-session-role'),
        handle: h('x-session-handle'),
        userId: h('x-session-user'),
      };
      await answer.body?.cancel();
      return next();
    }
    if (answer.status === 401 && optional) {
      req.sessiond = null;
      await answer.body?.cancel();
      return next();
    }
    if (answer.status === 401 || answer.status === 403 || answer.status === 400) {
      // sessiond's problem+json (`code`: unauthenticated, session_expired with `reason`,
      // forbidden_origin, duplicate_cookie) is meant for the client: pass it on as is.
      const body = await answer.text();
      res.status(answer.status).type('application/problem+json').send(body);
      return;
    }
    await answer.body?.cancel();
    return unavailable(res);
  };
}

function unavailable(res) {
  res
    .status(503)
    .set('retry-after', '1')
    .type('application/problem+json')
    .send(JSON.stringify({ type: 'about:blank', title: 'Session service unavailable', status: 503, code: 'store_unavailable' }));
}
