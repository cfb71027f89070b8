// Test fakes: a manual clock, storage, blob store, WebSocket, event target, and an
// in-memory sessiond that follows docs/protocol.md for the routes the SDK uses.
import { webcrypto } from "node:crypto";

export class FakeClock {
  t = 1_000_000;
  timers = [];
  n = 0;
  now = () => this.t;
  setTimeout = (fn, ms) => {
    const id = ++this.n;
    this.timers.push({ id, at: this.t + Math.max(0, ms), fn });
    return id;
  };
  clearTimeout = (id) => {
    this.timers = this.timers.filter((x) => x.id !== id);
  };
  /** Moves time forward, running due timers in order and letting promises settle between. */
  async advance(ms) {
    const end = this.t + ms;
    for (;;) {
      await settle();
      const due = this.timers.filter((x) => x.at <= end).sort((a, b) => a.at - b.at || a.id - b.id)[0];
      if (!due) break;
      this.timers = this.timers.filter((x) => x !== due);
      this.t = due.at;
      due.fn();
    }
    this.t = end;
    await settle();
  }
}

/** Lets pending promise chains (including WebCrypto work) run. */
export async function settle() {
  for (let i = 0; i < 5; i++) {
    await new Promise((r) => setImmediate(r));
    await new Promise((r) => setTimeout(r, 1));
  }
}

export async function until(pred, what = "condition") {
  for (let i = 0; i < 400; i++) {
    if (pred()) return;
    await new Promise((r) => setTimeout(r, 5));
  }
  throw new Error(`timed out waiting for ${what}`);
}

export class MemStorage {
  m = new Map();
  get length() {
    return this.m.size;
  }
  key(i) {
    return [...this.m.keys()][i] ?? null;
  }
  getItem(k) {
    return this.m.has(k) ? this.m.get(k) : null;
  }
  setItem(k, v) {
    this.m.set(k, String(v));
  }
  removeItem(k) {
    this.m.delete(k);
  }
}

export class MemBlobs {
  m = new Map();
  async get(k) {
    return this.m.get(k);
  }
  async put(k, v) {
    this.m.set(k, v);
  }
  async del(k) {
    this.m.delete(k);
  }
  async keys() {
    return [...this.m.keys()];
  }
}

/** Collects listeners so tests can deliver trusted-looking events. */
export class FakeTarget {
  l = new Map();
  addEventListener(t, fn) {
    (this.l.get(t) ?? this.l.set(t, new Set()).get(t)).add(fn);
  }
  removeEventListener(t, fn) {
    this.l.get(t)?.delete(fn);
  }
  fire(t, e = {}) {
    for (const fn of this.l.get(t) ?? []) fn({ type: t, isTrusted: true, ...e });
  }
}

export function makeWs() {
  const all = [];
  class FakeWS {
    readyState = 0;
    sent = [];
    onopen = null;
    onmessage = null;
    onclose = null;
    onerror = null;
    constructor(url, proto) {
      this.url = url;
      this.proto = proto;
      all.push(this);
    }
    send(d) {
      this.sent.push(JSON.parse(d));
    }
    close(code = 1000) {
      if (this.readyState === 3) return;
      this.readyState = 3;
      this.closedWith = code;
    }
    /** Server side: accept and greet. */
    accept(hello = {}) {
      this.readyState = 1;
      this.onopen?.({});
      this.recv({ type: "hello", connection_id: "c" + all.length, handle: "s_h", principal: "user:alice", role: "editor", idle_expires_at: "x", absolute_expires_at: "y", heartbeat_interval: 30, heartbeat_misses: 3, warn_before: 120, ...hello });
    }
    recv(m) {
      this.onmessage?.({ data: JSON.stringify(m) });
    }
    serverClose(code) {
      this.readyState = 3;
      this.onclose?.({ code });
    }
    types() {
      return this.sent.map((m) => m.type);
    }
  }
  return { FakeWS, all };
}

const json = (status, body) => new Response(body === undefined ? null : JSON.stringify(body), { status, headers: { "content-type": status >= 400 ? "application/problem+json" : "application/json" } });

/** An in-memory sessiond following docs/protocol.md (drafts with seq rules and tombstones). */
export class FakeServer {
  principal = "user:alice";
  live = true;
  down = false;
  drafts = new Map(); // principal/conversation -> draft
  calls = [];
  holds = []; // [{match, release}] to delay answers
  keys = new Map();

  keyFor(p) {
    if (!this.keys.has(p)) this.keys.set(p, Buffer.from(webcrypto.getRandomValues(new Uint8Array(32))).toString("base64"));
    return this.keys.get(p);
  }
  session() {
    return { handle: "s_h", principal: this.principal, user_id: null, role: "editor", state: "active", idle_expires_at: "x", absolute_expires_at: "y", seconds_left: 900, policy: { heartbeat_interval: 30, heartbeat_misses: 3 } };
  }
  /** The next request whose "METHOD path" starts with `prefix` waits until released. */
  hold(prefix) {
    let release;
    const gate = new Promise((r) => (release = r));
    this.holds.push({ prefix, gate });
    return () => release();
  }
  fetch = async (url, init = {}) => {
    const u = new URL(url, "http://app.test");
    const method = init.method ?? "GET";
    const call = { method, path: u.pathname, query: Object.fromEntries(u.searchParams), init, body: typeof init.body === "string" ? JSON.parse(init.body) : init.body };
    this.calls.push(call);
    const h = this.holds.findIndex((x) => `${method} ${u.pathname}`.startsWith(x.prefix));
    if (h >= 0) {
      const [{ gate }] = this.holds.splice(h, 1);
      await gate;
    }
    if (this.down) throw new TypeError("fetch failed");
    return this.route(call);
  };
  route({ method, path, query, body }) {
    const s = `${method} ${path}`;
    if (s === "POST /v1/session") return json(201, this.session());
    if (s === "POST /v1/session/signin") {
      if (body?.ticket !== "ticket") return json(401, { code: "invalid_ticket" });
      this.live = true;
      return json(200, this.session());
    }
    if (!this.live) return json(401, { code: "session_expired", reason: "idle_timeout", status: 401 });
    if (s === "GET /v1/session") return json(200, this.session());
    if (s === "GET /v1/session/local-key") return json(200, { principal: this.principal, key: this.keyFor(this.principal) });
    if (s === "POST /v1/session/activity") return json(200, this.session());
    if (s === "DELETE /v1/session") {
      this.live = false;
      return new Response(null, { status: 204 });
    }
    if (s === "GET /v1/drafts") return json(200, { drafts: [...this.drafts.values()].filter((d) => d.principal === this.principal && !d.deleted).map((d) => ({ conversation: d.conversation, seq: d.seq, text_length: d.text.length, attachments: d.attachments })) });
    const m = path.match(/^\/v1\/drafts\/([^/]+)(?:\/attachments\/([^/]+))?$/);
    if (m) return this.draft(method, decodeURIComponent(m[1]), m[2] && decodeURIComponent(m[2]), query, body);
    return json(404, { code: "not_found" });
  }
  get(c) {
    return this.drafts.get(`${this.principal}/${c}`);
  }
  put(c, d) {
    this.drafts.set(`${this.principal}/${c}`, { principal: this.principal, conversation: c, text: "", attachments: [], deleted: false, seq: 0, ...this.get(c), ...d });
    return this.get(c);
  }
  view(d) {
    return d && { conversation: d.conversation, seq: d.seq, text: d.text, attachments: d.attachments, deleted: d.deleted || undefined };
  }
  draft(method, c, att, query, body) {
    const cur = this.get(c);
    const seq = cur?.seq ?? 0;
    if (method === "GET" && !att) return cur && !cur.deleted ? json(200, this.view(cur)) : json(404, { code: "not_found", seq });
    const want = Number(method === "PUT" && !att ? body.seq : query.seq);
    if (want !== seq) return json(409, { code: "conflict", current: this.view(cur) ?? null });
    if (method === "PUT" && !att) return json(200, this.view(this.put(c, { text: body.text, seq: seq + 1, deleted: false })));
    if (method === "DELETE" && !att) {
      this.put(c, { text: "", attachments: [], deleted: true, seq: seq + 1 });
      return json(200, { seq: seq + 1 });
    }
    if (method === "PUT" && att) {
      const atts = (cur?.attachments ?? []).filter((a) => a.name !== att).concat({ name: att, content_type: "audio/webm", size: body.size });
      return json(200, this.view(this.put(c, { attachments: atts, seq: seq + 1, deleted: false })));
    }
    return json(404, { code: "not_found" });
  }
}

export async function client(Sessiond, server, extra = {}) {
  const clock = new FakeClock();
  const { FakeWS, all } = makeWs();
  const storage = new MemStorage();
  const blobs = new MemBlobs();
  const target = new FakeTarget();
  const win = new FakeTarget();
  const c = new Sessiond({ baseUrl: "http://app.test", fetch: server.fetch, WebSocket: FakeWS, storage, blobs, crypto: webcrypto, clock, random: () => 0.5, activityTarget: target, window: win, metered: () => false, ...extra });
  return { c, clock, sockets: all, storage, blobs, target, win };
}
