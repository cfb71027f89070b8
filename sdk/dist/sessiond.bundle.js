// timing.js
var realClock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (id) => clearTimeout(id)
};
var Debouncer = class {
  constructor(fn, wait, maxWait, clock) {
    this.fn = fn;
    this.wait = wait;
    this.maxWait = maxWait;
    this.clock = clock;
    this.timer = null;
    this.first = 0;
  }
  get pending() {
    return this.timer !== null;
  }
  call() {
    const now = this.clock.now();
    if (this.timer === null)
      this.first = now;
    else
      this.clock.clearTimeout(this.timer);
    const delay = Math.max(0, Math.min(this.wait, this.first + this.maxWait - now));
    this.timer = this.clock.setTimeout(() => {
      this.timer = null;
      this.fn();
    }, delay);
  }
  cancel() {
    if (this.timer !== null)
      this.clock.clearTimeout(this.timer);
    this.timer = null;
  }
};
function backoffDelay(attempt, baseMs, maxMs, random) {
  const cap = Math.min(maxMs, baseMs * 2 ** Math.min(attempt, 30));
  return Math.round(cap / 2 + random() * cap / 2);
}
function hash(s) {
  let h1 = 3735928559;
  let h2 = 1103547991;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    h1 = Math.imul(h1 ^ c, 2654435761);
    h2 = Math.imul(h2 ^ c, 1597334677);
  }
  h1 = Math.imul(h1 ^ h1 >>> 16, 2246822507) ^ Math.imul(h2 ^ h2 >>> 13, 3266489909);
  h2 = Math.imul(h2 ^ h2 >>> 16, 2246822507) ^ Math.imul(h1 ^ h1 >>> 13, 3266489909);
  return (4294967296 * (2097151 & h2) + (h1 >>> 0)).toString(36);
}

// connection.js
var CONNECT_TIMEOUT_MS = 1e4;
var REAUTHENTICATE = 4010;
var Connection = class {
  constructor(o, on) {
    this.o = o;
    this.on = on;
    this.ws = null;
    this.live = false;
    this.running = false;
    this.lostSent = false;
    this.attempt = 0;
    this.timer = null;
    this.lastFrame = 0;
    this.lastPing = 0;
    this.pingId = 0;
    this.interval = 30;
    this.misses = 3;
  }
  /** true once hello has arrived on the current socket. */
  get connected() {
    return this.live;
  }
  /** Seconds between application pings: the announced interval, or on a metered
   * connection the longest the server allows, interval × (misses - 1). */
  get pingEvery() {
    return this.o.metered() && this.misses > 1 ? this.interval * (this.misses - 1) : this.interval;
  }
  start() {
    if (this.running)
      return;
    this.running = true;
    this.open();
  }
  stop(code = 1e3) {
    this.running = false;
    this.live = false;
    this.clear();
    const ws = this.ws;
    this.ws = null;
    ws?.close(code);
  }
  /** Sends a message if the connection is up; false if it was not sent. */
  send(m) {
    if (!this.ws || !this.live || this.ws.readyState !== 1)
      return false;
    this.ws.send(JSON.stringify(m));
    return true;
  }
  clear() {
    if (this.timer !== null)
      this.o.clock.clearTimeout(this.timer);
    this.timer = null;
  }
  open() {
    this.clear();
    let ws;
    try {
      ws = new this.o.WebSocket(this.o.url, this.o.protocols?.() ?? "sessiond.v1");
    } catch {
      return this.retry();
    }
    this.ws = ws;
    this.live = false;
    ws.onmessage = (e) => ws === this.ws && this.frame(e.data);
    ws.onclose = (e) => ws === this.ws && this.drop(e.code);
    ws.onerror = () => void 0;
    this.timer = this.o.clock.setTimeout(() => ws === this.ws && this.kill(4004), CONNECT_TIMEOUT_MS);
  }
  frame(data) {
    this.lastFrame = this.o.clock.now();
    let m;
    try {
      m = JSON.parse(String(data));
    } catch {
      return;
    }
    if (m.type === "hello") {
      const h = m;
      this.interval = Math.max(1, h.heartbeat_interval || 30);
      this.misses = Math.max(1, h.heartbeat_misses || 3);
      this.live = true;
      this.attempt = 0;
      const re = this.lostSent;
      this.lostSent = false;
      this.lastPing = this.lastFrame;
      this.schedule();
      this.on.hello(h, re);
    } else if (m.type !== "pong") {
      this.on.message(m);
    }
  }
  /** One timer per connection, ticking every interval: checks for a dead server and
   * sends the app ping when one is due. */
  schedule() {
    this.clear();
    this.timer = this.o.clock.setTimeout(() => this.tick(), this.interval * 1e3);
  }
  tick() {
    const now = this.o.clock.now();
    if (now - this.lastFrame >= this.interval * this.misses * 1e3)
      return this.kill(4004);
    if (now - this.lastPing >= this.pingEvery * 1e3 - 50) {
      this.lastPing = now;
      this.send({ type: "ping", id: ++this.pingId });
    }
    this.schedule();
  }
  /** Gives up on the current socket without waiting for the browser's close event. */
  kill(code) {
    const ws = this.ws;
    this.ws = null;
    try {
      ws?.close(4e3 <= code ? 1e3 : code);
    } catch {
    }
    this.drop(code);
  }
  drop(code) {
    this.clear();
    const wasLive = this.live;
    this.live = false;
    this.ws = null;
    if (this.on.closed(code) || !this.running) {
      this.running = false;
      return;
    }
    if (code === REAUTHENTICATE) {
      this.attempt = 0;
      this.timer = this.o.clock.setTimeout(() => this.running && this.open(), 0);
      return;
    }
    if (wasLive && !this.lostSent) {
      this.lostSent = true;
      this.on.lost(code);
    }
    this.retry();
  }
  retry() {
    const d = backoffDelay(this.attempt++, this.o.backoffBaseMs, this.o.backoffMaxMs, this.o.random);
    this.timer = this.o.clock.setTimeout(() => this.running && this.open(), d);
  }
};

// drafts.js
var RETRY_MS = 5e3;
var DraftHandle = class {
  constructor(conversation, c) {
    this.conversation = conversation;
    this.c = c;
    this.text = "";
    this.seq = 0;
    this.conflict = null;
    this.server = [];
    this.pendingAtts = /* @__PURE__ */ new Map();
    this.savedH = hash("");
    this.dirty = false;
    this.loaded = false;
    this.dropped = false;
    this.ops = 0;
    this.queued = false;
    this.chain = Promise.resolve();
    this.lw = Promise.resolve();
    this.lastLocal = "";
    this.localH = "";
    this.retryTimer = null;
    this.deb = new Debouncer(() => void this.flush(), c.draftDebounceMs, 4 * c.draftDebounceMs, c.clock);
  }
  get path() {
    return `/v1/drafts/${encodeURIComponent(this.conversation)}`;
  }
  /** Attachments to show: the server's plus those still uploading. */
  get attachments() {
    const out = this.server.filter((a) => !this.pendingAtts.has(a.name));
    for (const [name, b] of this.pendingAtts)
      out.push({ name, content_type: b.type, size: b.size });
    return out;
  }
  /** true when there is something unsent (text or attachments). */
  get hasContent() {
    return this.text.trim() !== "" || this.attachments.length > 0;
  }
  /** true when the text as it stands is in this device's local copy (never assumed:
   * set only after the copy was written). */
  get savedLocally() {
    return this.localH !== "" && this.localH === hash(this.text);
  }
  /** true while a change has not been confirmed by the server. */
  get unsaved() {
    return this.dirty || this.pendingAtts.size > 0 || this.conflict !== null || this.deb.pending;
  }
  state(local = false) {
    return { conversation: this.conversation, text: this.text, seq: this.seq, attachments: this.attachments, local };
  }
  /** The draft to show: reloaded from the server unless this tab holds unsaved work. */
  async get() {
    await this.chain;
    if (this.loaded && this.unsaved)
      return this.state();
    return this.enqueue(() => this.load());
  }
  /** Sets the text; saved after the debounce (and on switch, hide and unload). */
  set(text) {
    if (this.dropped)
      return;
    this.text = text;
    this.dirty = true;
    this.deb.call();
  }
  /** Adds or replaces an attachment; uploaded at once (kept locally until confirmed). */
  attach(name, blob) {
    this.pendingAtts.set(name, blob);
    const lk = this.c.lk;
    const stored = lk ? this.c.local.putBlob(lk, this.conversation, name, blob).catch(() => void 0) : void 0;
    return this.enqueue(async () => {
      await stored;
      await this.save();
    });
  }
  /** Removes an attachment. */
  detach(name) {
    return this.enqueue(async () => {
      const lk = this.c.lk;
      if (lk)
        await this.c.local.delBlob(lk, this.conversation, name).catch(() => void 0);
      this.pendingAtts.delete(name);
      if (this.server.some((a) => a.name === name) && !this.c.ended) {
        const r = await this.c.req("DELETE", `${this.path}/attachments/${encodeURIComponent(name)}?seq=${this.seq}`);
        if (r.status === 404)
          this.server = this.server.filter((a) => a.name !== name);
        else
          this.applied(r);
      }
      await this.writeLocal();
    });
  }
  /** The bytes of an attachment: from memory, the server, or the local copy. */
  async attachment(name) {
    const p = this.pendingAtts.get(name);
    if (p)
      return p;
    if (!this.c.ended) {
      const r = await this.c.req("GET", `${this.path}/attachments/${encodeURIComponent(name)}`, { raw: true });
      if (r.status === 200 && r.res)
        return r.res.blob();
    }
    const lk = this.c.lk;
    return lk ? this.c.local.getBlob(lk, this.conversation, name) : null;
  }
  /** Saves now whatever is pending. With `keepalive` (page hide/unload) the request is
   * started synchronously and may outlive the page. */
  flush(keepalive = false) {
    this.deb.cancel();
    if (this.dropped || !this.dirty && !this.pendingAtts.size)
      return this.chain;
    if (keepalive && this.ops === 0)
      return this.enqueue(() => this.save(true), true);
    if (this.queued)
      return this.chain;
    this.queued = true;
    return this.enqueue(() => {
      this.queued = false;
      return this.save();
    });
  }
  /** After the app confirmed the message was sent: deletes the draft naming the current
   * seq. Resolves false (nothing removed) on conflict or failure. */
  clear() {
    this.deb.cancel();
    let ok = false;
    return this.enqueue(async () => {
      if (this.c.ended)
        return;
      const r = await this.c.req("DELETE", `${this.path}?seq=${this.seq}`);
      if (r.status === 200 || r.status === 404) {
        if (r.status === 200)
          this.seq = Number(r.data?.seq ?? this.seq + 1);
        this.reset("", []);
        this.c.fire("draft_saved", { conversation: this.conversation, seq: this.seq });
        ok = true;
      } else
        this.applied(r);
      const lk = this.c.lk;
      if (ok && lk)
        await this.c.local.remove(lk, this.conversation).catch(() => void 0);
    }).then(() => ok);
  }
  /** Resolves a conflict by keeping this tab's version, naming the server's current seq. */
  overwrite(seq) {
    this.conflict = null;
    this.seq = seq;
    this.savedH = "";
    this.dirty = true;
    return this.flush();
  }
  /** Resolves a conflict by taking the server's version. */
  discardMine() {
    const cur = this.conflict;
    if (cur) {
      const lk = this.c.lk;
      if (lk)
        for (const n of this.pendingAtts.keys())
          void this.c.local.delBlob(lk, this.conversation, n).catch(() => void 0);
      this.seq = cur.seq;
      this.reset(cur.current?.deleted ? "" : cur.current?.text ?? "", cur.current?.deleted ? [] : cur.current?.attachments ?? []);
      void this.writeLocal();
    }
    return this.state();
  }
  /** Forgets everything in memory (the principal changed); storage is untouched. */
  drop() {
    this.dropped = true;
    this.deb.cancel();
    if (this.retryTimer !== null)
      this.c.clock.clearTimeout(this.retryTimer);
  }
  reset(text, atts) {
    this.text = text;
    this.server = atts;
    this.pendingAtts.clear();
    this.savedH = hash(text);
    this.dirty = false;
    this.conflict = null;
  }
  enqueue(op, now = false) {
    this.ops++;
    const run = async () => {
      try {
        return await op();
      } finally {
        this.ops--;
      }
    };
    const p = now ? run() : this.chain.then(run);
    this.chain = p.then(() => void 0, () => void 0);
    return p;
  }
  async load() {
    const c = this.c;
    const lk = c.lk;
    const local = lk ? await c.local.read(lk, this.conversation) : null;
    const r = c.ended ? null : await c.req("GET", this.path);
    if (this.dropped)
      return this.state();
    this.loaded = true;
    const ok = r?.status === 200 || r?.status === 404;
    const server = r?.status === 200 && !r.data?.deleted ? r.data : null;
    const sseq = Number(r?.data?.seq ?? 0);
    const stext = server?.text ?? "";
    const pendingLocal = !!local && (local.p || local.atts.some((a) => a.p));
    if (ok && !pendingLocal) {
      this.seq = sseq;
      this.reset(stext, server?.attachments ?? []);
      void this.writeLocal();
      return this.state();
    }
    if (!local)
      return this.state(true);
    await this.adoptLocal(local.atts);
    this.text = local.text;
    if (!ok) {
      this.seq = local.seq;
      this.dirty = local.p;
      return this.state(true);
    }
    this.server = server?.attachments ?? [];
    this.savedH = hash(stext);
    if (local.seq === sseq) {
      this.seq = sseq;
      this.dirty = true;
      void this.flush();
    } else if (local.text === stext && !this.pendingAtts.size) {
      this.seq = sseq;
      this.dirty = false;
      void this.writeLocal();
    } else {
      this.seq = local.seq;
      this.raise(server, sseq);
    }
    return this.state();
  }
  async adoptLocal(atts) {
    const lk = this.c.lk;
    for (const a of atts) {
      const b = a.p && lk ? await this.c.local.getBlob(lk, this.conversation, a.name) : null;
      if (b)
        this.pendingAtts.set(a.name, b);
    }
  }
  raise(current, seq) {
    this.conflict = {
      kind: "draft",
      conversation: this.conversation,
      mine: { text: this.text, attachments: [...this.pendingAtts.keys()] },
      current,
      seq
    };
    this.c.fire("conflict", this.conflict);
  }
  async save(keepalive = false) {
    const c = this.c;
    if (this.conflict || this.dropped)
      return;
    const text = this.text;
    const h = hash(text);
    this.dirty = false;
    const lw = this.writeLocal();
    if (c.ended) {
      this.dirty = true;
      return lw;
    }
    if (h !== this.savedH) {
      const r = await c.req("PUT", this.path, { json: { text, seq: this.seq }, keepalive });
      if (!this.applied(r))
        return void await this.writeLocal();
      this.savedH = h;
    }
    for (const [name, blob] of keepalive ? [] : [...this.pendingAtts]) {
      const r = await c.req("PUT", `${this.path}/attachments/${encodeURIComponent(name)}?seq=${this.seq}`, {
        body: blob,
        type: blob.type.split(";")[0] || "application/octet-stream"
      });
      if (!this.applied(r))
        break;
      if (this.pendingAtts.get(name) === blob)
        this.pendingAtts.delete(name);
    }
    await this.writeLocal();
  }
  /** Applies a write's answer; false if it was not applied (conflict, failure, ended). */
  applied(r) {
    if (r.status === 200) {
      const d = r.data;
      this.seq = Number(d.seq);
      if (d.attachments)
        this.server = d.attachments;
      this.c.fire("draft_saved", { conversation: this.conversation, seq: this.seq });
      return true;
    }
    this.dirty = true;
    if (r.status === 409) {
      const cur = r.data?.current ?? null;
      this.raise(cur, Number(cur?.seq ?? 0));
    } else if (r.status === 0 || r.status >= 500) {
      if (this.retryTimer !== null)
        this.c.clock.clearTimeout(this.retryTimer);
      this.retryTimer = this.c.clock.setTimeout(() => {
        this.retryTimer = null;
        void this.flush();
      }, RETRY_MS);
    } else if (r.status !== 401) {
      this.dirty = false;
      this.pendingAtts.clear();
      this.c.fire("error", { code: String(r.data?.code ?? r.status), conversation: this.conversation });
    }
    return false;
  }
  /** Writes the local copy (serialised, latest state wins); skips unchanged content. */
  /** Writes the local copy (serialised, latest state wins); skips unchanged content.
   * Unconfirmed text is announced with `draft_local` ({saved}: whether it is now on this
   * device), so a page never claims a copy that was not written. */
  writeLocal() {
    this.lw = this.lw.then(async () => {
      if (this.dropped)
        return;
      const lk = this.c.lk;
      const text = this.text;
      const h = hash(text);
      const atts = this.attachments.map((a) => ({ name: a.name, type: a.content_type, size: a.size, p: this.pendingAtts.has(a.name) }));
      const d = { text, seq: this.seq, p: h !== this.savedH, atts };
      const sig = JSON.stringify({ ...d, text: h, k: lk?.prefix });
      if (sig === this.lastLocal)
        return;
      this.lastLocal = sig;
      let saved = false;
      try {
        if (!lk)
          saved = false;
        else if (!this.hasContent && !d.p)
          await this.c.local.remove(lk, this.conversation);
        else
          saved = await this.c.local.write(lk, this.conversation, d);
      } catch {
        this.lastLocal = "";
      }
      this.localH = saved ? h : "";
      if (d.p)
        this.c.fire("draft_local", { conversation: this.conversation, saved });
    }).catch(() => void 0);
    return this.lw;
  }
};

// emitter.js
var Emitter = class {
  constructor() {
    this.listeners = /* @__PURE__ */ new Map();
  }
  on(type, fn) {
    let set = this.listeners.get(type);
    if (!set)
      this.listeners.set(type, set = /* @__PURE__ */ new Set());
    set.add(fn);
    return () => this.off(type, fn);
  }
  off(type, fn) {
    this.listeners.get(type)?.delete(fn);
  }
  emit(type, e) {
    for (const fn of [...this.listeners.get(type) ?? []]) {
      try {
        fn(e);
      } catch (err) {
        queueMicrotask(() => {
          throw err;
        });
      }
    }
  }
};

// hmac.js
var K = new Uint32Array(64);
var H0 = new Uint32Array(8);
for (let n = 2, i = 0; i < 64; n++) {
  let prime = true;
  for (let d = 2; d * d <= n; d++)
    if (n % d === 0)
      prime = false;
  if (!prime)
    continue;
  if (i < 8)
    H0[i] = Math.sqrt(n) % 1 * 2 ** 32;
  K[i++] = Math.cbrt(n) % 1 * 2 ** 32;
}
function sha256(...parts) {
  const len = parts.reduce((n, p) => n + p.length, 0);
  const total = Math.ceil((len + 9) / 64) * 64;
  const m = new Uint8Array(total);
  let o = 0;
  for (const p of parts) {
    m.set(p, o);
    o += p.length;
  }
  m[len] = 128;
  const dv = new DataView(m.buffer);
  dv.setUint32(total - 8, Math.floor(len / 536870912));
  dv.setUint32(total - 4, len * 8 >>> 0);
  const h = H0.slice();
  const w = new Uint32Array(64);
  const rotr = (x, n) => x >>> n | x << 32 - n;
  for (let b = 0; b < total; b += 64) {
    for (let i = 0; i < 16; i++)
      w[i] = dv.getUint32(b + 4 * i);
    for (let i = 16; i < 64; i++) {
      const s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ w[i - 15] >>> 3;
      const s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ w[i - 2] >>> 10;
      w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    let [a, bb, c, d, e, f, g, hh] = h;
    for (let i = 0; i < 64; i++) {
      const t1 = hh + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + (e & f ^ ~e & g) + K[i] + w[i] >>> 0;
      const t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + (a & bb ^ a & c ^ bb & c) >>> 0;
      hh = g;
      g = f;
      f = e;
      e = d + t1 >>> 0;
      d = c;
      c = bb;
      bb = a;
      a = t1 + t2 >>> 0;
    }
    h[0] += a;
    h[1] += bb;
    h[2] += c;
    h[3] += d;
    h[4] += e;
    h[5] += f;
    h[6] += g;
    h[7] += hh;
  }
  const out = new Uint8Array(32);
  const ov = new DataView(out.buffer);
  for (let i = 0; i < 8; i++)
    ov.setUint32(4 * i, h[i]);
  return out;
}
function hmac(key, ...parts) {
  const k = new Uint8Array(64);
  k.set(key.length > 64 ? sha256(key) : key);
  const pad = (x) => k.map((b) => b ^ x);
  return sha256(pad(92), sha256(pad(54), ...parts));
}
var te = new TextEncoder();
var u32 = (n) => new Uint8Array([n >>> 24, n >>> 16 & 255, n >>> 8 & 255, n & 255]);
function tag(key, slot, iv, ct) {
  const s = te.encode(slot);
  return hmac(hmac(key, te.encode("sessiond-local-mac")), u32(s.length), s, u32(iv.length), iv, ct);
}
function xorStream(key, iv, data) {
  const ek = hmac(key, te.encode("sessiond-local-enc"));
  const out = new Uint8Array(data.length);
  for (let i = 0; i < data.length; i += 32) {
    const ks = hmac(ek, iv, u32(i / 32));
    for (let j = 0; j < 32 && i + j < data.length; j++)
      out[i + j] = data[i + j] ^ ks[j];
  }
  return out;
}
function sealHmac(key, slot, iv, plain) {
  const ct = xorStream(key, iv, plain);
  const out = new Uint8Array(ct.length + 32);
  out.set(ct);
  out.set(tag(key, slot, iv, ct), ct.length);
  return out;
}
function openHmac(key, slot, iv, sealed) {
  if (sealed.length < 32)
    throw new Error("sealed copy too short");
  const ct = sealed.subarray(0, sealed.length - 32);
  const want = tag(key, slot, iv, ct);
  let diff = 0;
  for (let i = 0; i < 32; i++)
    diff |= want[i] ^ sealed[ct.length + i];
  if (diff !== 0)
    throw new Error("local copy failed authentication");
  return xorStream(key, iv, ct);
}

// local.js
var NS = "sessiond:d:";
var te2 = new TextEncoder();
var td = new TextDecoder();
function toB64(b) {
  let s = "";
  for (let i = 0; i < b.length; i += 32768)
    s += String.fromCharCode(...b.subarray(i, i + 32768));
  return btoa(s);
}
function fromB64(s) {
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++)
    out[i] = bin.charCodeAt(i);
  return out;
}
async function importLocalKey(subtle, principal, b64) {
  const raw = fromB64(b64);
  if (raw.length !== 32)
    throw new Error("local key must be 32 bytes");
  const digest = subtle ? new Uint8Array(await subtle.digest("SHA-256", raw)) : sha256(raw);
  const prefix = Array.from(digest.subarray(0, 8), (b) => b.toString(16).padStart(2, "0")).join("");
  const key = subtle ? await subtle.importKey("raw", raw, "AES-GCM", false, ["encrypt", "decrypt"]) : raw;
  return { principal, key, prefix };
}
var LocalStore = class {
  constructor(kv, blobs, crypto, clock, ttl) {
    this.kv = kv;
    this.blobs = blobs;
    this.crypto = crypto;
    this.clock = clock;
    this.ttl = ttl;
  }
  get enabled() {
    return this.kv !== null;
  }
  slot(lk, conversation) {
    return `${NS}${lk.prefix}/${conversation}`;
  }
  async seal(lk, slot, plain) {
    const iv = this.crypto.getRandomValues(new Uint8Array(12));
    if (lk.key instanceof Uint8Array)
      return { iv, data: sealHmac(lk.key, slot, iv, plain).buffer };
    const data = await this.crypto.subtle.encrypt({ name: "AES-GCM", iv, additionalData: te2.encode(slot) }, lk.key, plain);
    return { iv, data };
  }
  async open(lk, slot, b) {
    if (lk.key instanceof Uint8Array)
      return openHmac(lk.key, slot, b.iv, new Uint8Array(b.data)).buffer;
    return this.crypto.subtle.decrypt({ name: "AES-GCM", iv: b.iv, additionalData: te2.encode(slot) }, lk.key, b.data);
  }
  rec(slot) {
    try {
      return JSON.parse(this.kv?.getItem(slot) ?? "null");
    } catch {
      return null;
    }
  }
  expired(r) {
    return r.at > 0 && this.clock.now() - r.at > this.ttl;
  }
  /** The principal's copy for a conversation, or null (none, expired, or not theirs). */
  async read(lk, conversation) {
    const slot = this.slot(lk, conversation);
    const r = this.rec(slot);
    if (!r)
      return null;
    if (this.expired(r)) {
      await this.remove(lk, conversation);
      return null;
    }
    try {
      const plain = await this.open(lk, slot, { iv: fromB64(r.iv), data: fromB64(r.ct).buffer });
      const d = JSON.parse(td.decode(plain));
      return d.who === lk.principal ? { text: d.text, seq: d.seq, p: d.p, atts: d.atts } : null;
    } catch {
      return null;
    }
  }
  /** Stores a copy; a copy with nothing pending counts as confirmed now. Resolves to
   * whether it was stored (false: no storage); rejects if storing failed (quota). */
  async write(lk, conversation, d) {
    if (!this.kv)
      return false;
    const slot = this.slot(lk, conversation);
    const pending = d.p || d.atts.some((a) => a.p);
    const sealed = await this.seal(lk, slot, te2.encode(JSON.stringify({ ...d, who: lk.principal })));
    const rec = { iv: toB64(sealed.iv), ct: toB64(new Uint8Array(sealed.data)), at: pending ? 0 : this.clock.now() };
    this.kv.setItem(slot, JSON.stringify(rec));
    return true;
  }
  /** Conversations with a copy of this principal; `pendingOnly` keeps those not yet confirmed. */
  conversations(lk, pendingOnly = false) {
    const out = [];
    const head = `${NS}${lk.prefix}/`;
    for (const k of this.slots()) {
      const r = k.startsWith(head) ? this.rec(k) : null;
      if (r && !this.expired(r) && (!pendingOnly || r.at === 0))
        out.push(k.slice(head.length));
    }
    return out;
  }
  slots() {
    const out = [];
    for (let i = 0; this.kv && i < this.kv.length; i++) {
      const k = this.kv.key(i);
      if (k?.startsWith(NS))
        out.push(k);
    }
    return out;
  }
  async putBlob(lk, conversation, name, blob) {
    if (!this.blobs)
      return;
    const slot = `${lk.prefix}/${conversation}/${name}`;
    const plain = new Uint8Array(await blob.arrayBuffer());
    const header = te2.encode(JSON.stringify({ who: lk.principal, type: blob.type }) + "\n");
    const all = new Uint8Array(header.length + plain.length);
    all.set(header);
    all.set(plain, header.length);
    await this.blobs.put(slot, await this.seal(lk, slot, all));
  }
  async getBlob(lk, conversation, name) {
    const slot = `${lk.prefix}/${conversation}/${name}`;
    try {
      const b = await this.blobs?.get(slot);
      if (!b)
        return null;
      const all = new Uint8Array(await this.open(lk, slot, b));
      const nl = all.indexOf(10);
      const head = JSON.parse(td.decode(all.subarray(0, nl)));
      return head.who === lk.principal ? new Blob([all.subarray(nl + 1)], { type: head.type }) : null;
    } catch {
      return null;
    }
  }
  async delBlob(lk, conversation, name) {
    await this.blobs?.del(`${lk.prefix}/${conversation}/${name}`);
  }
  /** Removes a conversation's copy and its attachments. */
  async remove(lk, conversation) {
    this.kv?.removeItem(this.slot(lk, conversation));
    await this.dropBlobs((k) => k.startsWith(`${lk.prefix}/${conversation}/`));
  }
  /** Removes every copy of the principal (their sign-out). */
  async removeAll(lk) {
    for (const k of this.slots())
      if (k.startsWith(`${NS}${lk.prefix}/`))
        this.kv?.removeItem(k);
    await this.dropBlobs((k) => k.startsWith(`${lk.prefix}/`));
  }
  /** Removes expired copies of every principal (readable without their keys) and
   * attachments whose copy is gone. */
  async sweep() {
    for (const k of this.slots()) {
      const r = this.rec(k);
      if (!r || this.expired(r))
        this.kv?.removeItem(k);
    }
    const live = new Set(this.slots().map((k) => k.slice(NS.length)));
    await this.dropBlobs((k) => !live.has(k.slice(0, k.lastIndexOf("/"))));
  }
  async dropBlobs(pred) {
    if (!this.blobs)
      return;
    for (const k of await this.blobs.keys())
      if (pred(k))
        await this.blobs.del(k);
  }
};
function idbBlobs(name = "sessiond") {
  const idb = globalThis.indexedDB;
  if (!idb)
    return null;
  let db = null;
  const run = (mode, f) => (db ?? (db = new Promise((res, rej) => {
    const r = idb.open(name, 1);
    r.onupgradeneeded = () => r.result.createObjectStore("b");
    r.onsuccess = () => res(r.result);
    r.onerror = () => rej(r.error);
  }))).then((d) => new Promise((res, rej) => {
    const q = f(d.transaction("b", mode).objectStore("b"));
    q.onsuccess = () => res(q.result);
    q.onerror = () => rej(q.error);
  }));
  return {
    get: (k) => run("readonly", (s) => s.get(k)),
    put: (k, v) => run("readwrite", (s) => s.put(v, k)).then(() => void 0),
    del: (k) => run("readwrite", (s) => s.delete(k)).then(() => void 0),
    keys: () => run("readonly", (s) => s.getAllKeys()).then((ks) => ks.map(String))
  };
}

// sessiond.js
function idempotencyKey(c) {
  return Array.from(c.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");
}
var SessiondError = class extends Error {
  constructor(code, status) {
    super(`${code} (${status})`);
    this.code = code;
    this.status = status;
  }
};
var ACTIVITY = ["pointerdown", "pointermove", "keydown", "wheel", "touchstart"];
var CLOSE_REASONS = {
  4e3: "signed_out",
  4001: "idle_timeout",
  4002: "absolute_timeout",
  4003: "revoked",
  4008: "unauthenticated",
  4012: "ended_by_user"
};
var JOIN_TIMEOUT_MS = 15e3;
var td2 = new TextDecoder();
function defaultMetered() {
  const nc = globalThis.navigator?.connection;
  return !!nc && (nc.saveData === true || nc.type === "cellular");
}
function encodeState(state) {
  if (typeof state === "string")
    return [state, "text/plain;charset=utf-8"];
  if (state instanceof Uint8Array || state instanceof Blob)
    return [state, "application/octet-stream"];
  return [JSON.stringify(state), "application/json"];
}
function decodeState(bytes, type) {
  if (type.startsWith("application/json"))
    return JSON.parse(td2.decode(bytes));
  return type.startsWith("text/") ? td2.decode(bytes) : bytes;
}
var ROOM_REFUSALS = /* @__PURE__ */ new Set(["room_not_allowed", "invalid_room_token", "room_access_revoked"]);
var Sessiond = class extends Emitter {
  constructor(o = {}) {
    super();
    this.o = o;
    this.session = null;
    this.endedReason = null;
    this.lk = null;
    this.handles = /* @__PURE__ */ new Map();
    this.rooms = /* @__PURE__ */ new Map();
    this.unlisten = [];
    this.token = null;
    this.fetch = async (input, init = {}) => {
      const res = await this.f(input, { credentials: "include", ...init });
      if (res.status === 401) {
        const p = await res.clone().json().catch(() => null);
        this.end(p?.reason ?? p?.code ?? "unauthenticated");
      }
      return res;
    };
    const g = globalThis;
    this.base = (o.baseUrl ?? g.location?.origin ?? "").replace(/\/$/, "");
    this.bearer = o.auth === "bearer";
    this.f = o.fetch ?? globalThis.fetch.bind(globalThis);
    this.clock = o.clock ?? realClock;
    this.crypto = o.crypto ?? globalThis.crypto;
    this.draftDebounceMs = o.draftDebounceMs ?? 400;
    let storage = null;
    try {
      storage = o.storage === void 0 ? g.localStorage ?? null : o.storage;
    } catch {
    }
    this.local = new LocalStore(storage, o.blobs === void 0 ? idbBlobs() : o.blobs, this.crypto, this.clock, o.localTtlMs ?? 864e5);
    const Ws = o.WebSocket ?? g.WebSocket;
    this.conn = new Connection({
      url: this.base.replace(/^http/, "ws") + "/v1/ws",
      WebSocket: Ws,
      clock: this.clock,
      random: o.random ?? Math.random,
      backoffBaseMs: o.backoffBaseMs ?? 500,
      backoffMaxMs: o.backoffMaxMs ?? 3e4,
      metered: o.metered ?? defaultMetered,
      protocols: this.bearer ? () => this.token ? ["sessiond.v1", "bearer." + this.token] : "sessiond.v1" : void 0
    }, {
      message: (m) => this.onMessage(m),
      hello: (h, re) => this.onHello(h, re),
      lost: (code) => this.emit("lost", { code }),
      closed: (code) => {
        const reason = CLOSE_REASONS[code];
        if (reason)
          this.end(reason);
        else if (code === REAUTHENTICATE)
          void this.reauthenticated();
        return !!reason || this.ended;
      }
    });
    this.activity = new Debouncer(() => this.sendActivity(), o.activityDebounceMs ?? 2e3, o.activityDebounceMs ?? 2e3, this.clock);
  }
  get ended() {
    return this.endedReason !== null;
  }
  /** true when drafts are copied to this device for the current principal (a key was
   * issued and storage is available; in a page that is not a secure context too). */
  get localCopies() {
    return this.lk !== null && this.local.enabled;
  }
  /** true while the WebSocket is up (hello received). */
  get connected() {
    return this.conn.connected;
  }
  /** Gets or creates this browser's session, connects, and starts listening. */
  async start() {
    const key = idempotencyKey(this.crypto);
    const r = await this.req("POST", "/v1/session", { json: this.bearer ? { bearer: true } : {}, headers: { "idempotency-key": key } });
    if (r.status !== 200 && r.status !== 201)
      throw new SessiondError(r.data?.code ?? "network", r.status);
    const s = this.adopt(r.data);
    this.listen();
    await this.begin(s);
    return s;
  }
  /** After an ending, checks whether this browser has a live session again (e.g. signed
   * in from another tab); resumes with it if so. */
  async resume() {
    const r = await this.req("GET", "/v1/session", { noEnd: true });
    if (r.status !== 200)
      return null;
    await this.begin(r.data);
    return r.data;
  }
  /** Signs in with a ticket from the app's backend; the token is rotated. */
  async signIn(ticket) {
    if (!this.ended)
      await this.flushAll();
    const r = await this.req("POST", "/v1/session/signin", { json: this.bearer ? { ticket, bearer: true } : { ticket }, noEnd: true });
    if (r.status !== 200 && r.status !== 201)
      throw new SessiondError(r.data?.code ?? "network", r.status);
    const s = this.adopt(r.data);
    await this.begin(s);
    return s;
  }
  /** Saves drafts to the server, ends the session, and removes this principal's local
   * copies from this browser. */
  async signOut() {
    if (!this.ended)
      await this.flushAll();
    const r = await this.req("DELETE", "/v1/session", { noEnd: true });
    if (r.status === 0 || r.status >= 500)
      throw new SessiondError(r.data?.code ?? "network", r.status);
    for (const h of this.handles.values())
      h.drop();
    this.handles.clear();
    if (this.lk)
      await this.local.removeAll(this.lk).catch(() => void 0);
    this.lk = null;
    this.token = null;
    this.end("signed_out");
  }
  /** Resets the idle deadline (the "stay online" button). */
  async renew() {
    const r = await this.req("POST", "/v1/session/renew");
    if (r.status !== 200)
      throw new SessiondError(r.data?.code ?? "network", r.status);
    this.session = r.data;
    this.emit("renewed", { idleExpiresAt: this.session.idle_expires_at, absoluteExpiresAt: this.session.absolute_expires_at });
    return this.session;
  }
  /** The signed-in user's live sessions, this one first. Rejects with `not_signed_in`
   * (403) for an anonymous session. */
  async devices() {
    const r = await this.req("GET", "/v1/session/devices");
    if (r.status !== 200)
      throw new SessiondError(r.data?.code ?? "network", r.status);
    return r.data.devices;
  }
  /** Ends another of the user's sessions (it is told `ended_by_user`). This session's
   * own handle signs out, like `signOut()`. Rejects with `not_found` for a handle that
   * is not a live session of this user. */
  async endDevice(handle) {
    if (handle === this.session?.handle)
      return this.signOut();
    const r = await this.req("DELETE", `/v1/session/devices/${encodeURIComponent(handle)}`);
    if (r.status !== 204)
      throw new SessiondError(r.data?.code ?? "network", r.status);
  }
  /** Ends every other session of the user; resolves with how many were ended. */
  async endOtherDevices() {
    const r = await this.req("POST", "/v1/session/devices/end-others");
    if (r.status !== 200)
      throw new SessiondError(r.data?.code ?? "network", r.status);
    return Number(r.data.ended);
  }
  /** The draft of a conversation. Opening another conversation flushes the others. */
  drafts(conversation) {
    for (const [k, h] of this.handles)
      if (k !== conversation)
        void h.flush();
    return this.handle(conversation);
  }
  /** Conversations that hold unsent content (server, local copies, this tab). */
  async listDrafts() {
    const out = /* @__PURE__ */ new Set();
    const r = this.ended ? null : await this.req("GET", "/v1/drafts");
    const ok = r?.status === 200;
    if (ok) {
      for (const d of r.data.drafts ?? [])
        if (d.text_length > 0 || d.attachments?.length)
          out.add(d.conversation);
    }
    if (this.lk)
      for (const c of this.local.conversations(this.lk, ok))
        out.add(c);
    for (const [c, h] of this.handles)
      if (h.hasContent)
        out.add(c);
      else if (!h.unsaved)
        out.delete(c);
    return [...out];
  }
  /** Saves every pending draft now. */
  flushAll(keepalive = false) {
    return Promise.all([...this.handles.values()].map((h) => h.flush(keepalive)));
  }
  /** Joins a room; resolves with its members and last snapshot. Rooms are closed by
   * default: without a grant the promise rejects with `room_not_allowed`; `token` is a
   * room token (share link) that grants this one room. */
  join(room, o = {}) {
    let r = this.rooms.get(room);
    if (!r)
      this.rooms.set(room, r = { version: 0, waiters: [] });
    const st = r;
    if (o.token)
      st.token = o.token;
    return new Promise((resolve, reject) => {
      const t = this.clock.setTimeout(() => {
        st.waiters = st.waiters.filter((w) => w !== done);
        reject(new SessiondError("join_timeout", 0));
      }, JOIN_TIMEOUT_MS);
      const done = (info) => {
        this.clock.clearTimeout(t);
        resolve(info);
      };
      st.waiters.push(done);
      (st.refusals ?? (st.refusals = [])).push((e) => {
        this.clock.clearTimeout(t);
        reject(e);
      });
      this.conn.send(joinMsg(room, st));
    });
  }
  /** `X-Room-Token` for a room joined with a room token. */
  roomHeaders(room) {
    const token = this.rooms.get(room)?.token;
    return token ? { "x-room-token": token } : {};
  }
  leave(room) {
    this.rooms.delete(room);
    this.conn.send({ type: "leave", room });
  }
  /** Saves a room's shared state naming the version this tab last saw. A stale version
   * emits `conflict` and resolves null; nothing is overwritten. */
  async saveSnapshot(room, state, o = {}) {
    const st = this.rooms.get(room) ?? { version: 0, waiters: [] };
    const [body, type] = encodeState(state);
    const r = await this.req("PUT", `/v1/rooms/${encodeURIComponent(room)}/snapshot?version=${o.version ?? st.version}`, { body, type, headers: this.roomHeaders(room) });
    if (r.status === 200) {
      st.version = Number(r.data.version);
      return { version: st.version, hash: r.data.hash };
    }
    if (r.status === 409) {
      const current = r.data?.current ?? null;
      this.emit("conflict", { kind: "snapshot", room, current, version: Number(current?.version ?? 0) });
    } else if (r.status !== 401)
      this.emit("error", { code: String(r.data?.code ?? "network"), room });
    return null;
  }
  /** Reads a room's current snapshot (after a `snapshot` event from another member). */
  async loadSnapshot(room) {
    const r = await this.req("GET", `/v1/rooms/${encodeURIComponent(room)}/snapshot`, { raw: true, headers: this.roomHeaders(room) });
    if (r.status !== 200 || !r.res)
      return null;
    const type = r.res.headers.get("content-type") ?? "application/octet-stream";
    const snap = {
      version: Number(r.res.headers.get("x-snapshot-version") ?? 0),
      hash: (r.res.headers.get("etag") ?? "").replace(/"/g, ""),
      content_type: type,
      state: decodeState(new Uint8Array(await r.res.arrayBuffer()), type)
    };
    const st = this.rooms.get(room);
    if (st)
      st.version = snap.version;
    return snap;
  }
  /** Bearer mode: `{ authorization: "Bearer <token>" }` for the app's own calls to a
   * backend that checks the session through sessiond (forward-auth); `{}` in cookie
   * mode or without a session. Never added by itself: the token goes only where the app
   * sends it. */
  authHeaders() {
    return this.bearer && this.token ? { authorization: "Bearer " + this.token } : {};
  }
  /** Stops listening and disconnects (pending drafts are flushed first). */
  async close() {
    await this.flushAll();
    this.conn.stop();
    for (const u of this.unlisten.splice(0))
      u();
  }
  fire(type, e) {
    this.emit(type, e);
  }
  /** One HTTP call to sessiond. Never throws: a network failure is status 0. The fetch
   * is started synchronously, so keepalive requests go out inside pagehide. */
  async req(method, path, o = {}) {
    const headers = { ...o.headers, ...this.authHeaders() };
    let body = o.body;
    if (o.json !== void 0) {
      headers["content-type"] = "application/json";
      body = JSON.stringify(o.json);
    } else if (o.type)
      headers["content-type"] = o.type;
    let res;
    try {
      res = await this.f(this.base + path, { method, headers, body, credentials: this.bearer ? "omit" : "include", keepalive: o.keepalive });
    } catch {
      return { status: 0, data: null };
    }
    let data = null;
    if (!o.raw || !res.ok) {
      const t = await res.text().catch(() => "");
      try {
        data = t ? JSON.parse(t) : null;
      } catch {
        data = null;
      }
    }
    if (res.status === 401 && !o.noEnd)
      this.end(data?.reason ?? data?.code ?? "unauthenticated");
    return { status: res.status, data, res };
  }
  /** A create or sign-in answer as the session the app sees: in bearer mode its token
   * (when the server issued one) replaces the held one and is taken out of the object,
   * so the app never logs or stores it by accident. */
  adopt(data) {
    const { token, ...s } = data;
    if (this.bearer && token)
      this.token = token;
    return s;
  }
  handle(conversation) {
    let h = this.handles.get(conversation);
    if (!h)
      this.handles.set(conversation, h = new DraftHandle(conversation, this));
    return h;
  }
  /** Adopts a (new or resumed) session: local key, socket, and pending uploads. */
  async begin(s) {
    const changed = s.principal !== this.session?.principal;
    this.session = s;
    this.endedReason = null;
    if (changed) {
      for (const h of this.handles.values())
        h.drop();
      this.handles.clear();
      this.lk = null;
    }
    this.lk ?? (this.lk = await this.loadKey(s.principal));
    this.emit("session", s);
    this.conn.stop();
    this.conn.start();
    await this.local.sweep().catch(() => void 0);
    await this.flushAll();
    if (this.lk) {
      for (const c of this.local.conversations(this.lk, true))
        if (!this.handles.has(c))
          await this.handle(c).get();
    }
  }
  /** The socket was closed with 4010: the token was rotated (a sign-in here or in
   * another tab). The connection reopens by itself; this picks up the session as it is
   * now (its principal may have changed), without any "ended" or "lost" state. */
  async reauthenticated() {
    const r = await this.req("GET", "/v1/session", { noEnd: true });
    if (r.status !== 200 || this.ended)
      return;
    const s = r.data;
    if (s.principal !== this.session?.principal)
      await this.begin(s);
    else if (this.session)
      Object.assign(this.session, s);
  }
  async loadKey(principal) {
    if (!this.local.enabled)
      return null;
    const r = await this.req("GET", "/v1/session/local-key", { noEnd: true });
    if (r.status !== 200 || r.data?.principal !== principal)
      return null;
    return importLocalKey(this.crypto.subtle, principal, r.data.key).catch(() => null);
  }
  end(reason) {
    if (this.ended)
      return;
    this.endedReason = reason;
    this.activity.cancel();
    this.conn.stop();
    this.emit("ended", { reason });
  }
  listen() {
    if (this.unlisten.length)
      return;
    const g = globalThis;
    const t = this.o.activityTarget === void 0 ? g.document : this.o.activityTarget;
    const onAct = (e) => {
      if (e.isTrusted !== false && !this.activity.pending && !this.ended)
        this.activity.call();
    };
    for (const ev of ACTIVITY)
      t?.addEventListener(ev, onAct, { passive: true, capture: true });
    this.unlisten.push(() => ACTIVITY.forEach((ev) => t?.removeEventListener(ev, onAct, { capture: true })));
    const w = this.o.window === void 0 ? g.window : this.o.window;
    const onHide = () => {
      if (isHidden(w))
        void this.flushAll(true);
    };
    const onPageHide = () => void this.flushAll(true);
    w?.addEventListener("pagehide", onPageHide);
    w?.document?.addEventListener("visibilitychange", onHide);
    this.unlisten.push(() => {
      w?.removeEventListener("pagehide", onPageHide);
      w?.document?.removeEventListener("visibilitychange", onHide);
    });
  }
  sendActivity() {
    if (this.ended || !this.session)
      return;
    if (!this.conn.send({ type: "activity" }))
      void this.req("POST", "/v1/session/activity");
  }
  onHello(h, reconnected) {
    if (this.session) {
      this.session.idle_expires_at = h.idle_expires_at;
      this.session.absolute_expires_at = h.absolute_expires_at;
    }
    for (const [room, st] of this.rooms)
      this.conn.send(joinMsg(room, st));
    this.emit(reconnected ? "reconnected" : "connected", h);
    if (reconnected)
      void this.flushAll();
  }
  onMessage(m) {
    switch (m.type) {
      case "expiry_warning":
        return this.emit("warning", { secondsLeft: m.seconds_left, idleExpiresAt: m.idle_expires_at });
      case "renewed":
        if (this.session)
          Object.assign(this.session, { idle_expires_at: m.idle_expires_at, absolute_expires_at: m.absolute_expires_at });
        return this.emit("renewed", { idleExpiresAt: m.idle_expires_at, absoluteExpiresAt: m.absolute_expires_at });
      case "session_ended":
        return this.end(m.reason);
      case "presence": {
        const s = m.snapshot;
        const snapshot = s ? { version: s.version, hash: s.hash, content_type: s.content_type, state: decodeState(fromB64(s.data ?? ""), s.content_type ?? "") } : null;
        const info = { room: m.room, members: m.members ?? [], snapshot };
        const st = this.rooms.get(m.room);
        if (st) {
          st.version = snapshot?.version ?? m.snapshot_version ?? 0;
          st.refusals = [];
          for (const w of st.waiters.splice(0))
            w(info);
        }
        return this.emit("presence", info);
      }
      case "member_joined":
        return this.emit("member_joined", { room: m.room, member: m.member });
      case "member_left":
        return this.emit("member_left", { room: m.room, member: m.member, reason: m.reason });
      case "snapshot_saved": {
        const st = this.rooms.get(m.room);
        if (st)
          st.version = m.version;
        return;
      }
      case "snapshot_updated":
        return this.emit("snapshot", { room: m.room, version: m.version, hash: m.hash, by: m.by });
      case "error": {
        const st = typeof m.room === "string" ? this.rooms.get(m.room) : void 0;
        if (st && ROOM_REFUSALS.has(m.code)) {
          this.rooms.delete(m.room);
          st.waiters = [];
          for (const f of (st.refusals ?? []).splice(0))
            f(new SessiondError(m.code, 403));
        }
        return this.emit("error", { code: m.code, message: m.message, ...typeof m.room === "string" ? { room: m.room } : {} });
      }
    }
  }
};
function joinMsg(room, st) {
  return st.token ? { type: "join", room, token: st.token } : { type: "join", room };
}
function isHidden(w) {
  return w?.document?.visibilityState === "hidden";
}
export {
  Debouncer,
  DraftHandle,
  LocalStore,
  Sessiond,
  SessiondError,
  backoffDelay,
  hash,
  idbBlobs,
  idempotencyKey,
  importLocalKey
};
