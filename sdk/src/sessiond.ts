//! sessiond browser SDK: the session, its WebSocket (heartbeats, presence, warnings),
//! debounced activity, rooms and snapshots, drafts with an encrypted local fallback, and
//! a fetch wrapper that turns a 401 into an `ended` event instead of a lost page.

import { Connection, REAUTHENTICATE, type Hello, type WsCtor } from "./connection.js";
import { DraftHandle, type DraftConflict, type DraftHost, type Res } from "./drafts.js";
import { Emitter } from "./emitter.js";
import { LocalStore, fromB64, idbBlobs, importLocalKey, type BlobStore, type KV, type LocalKey } from "./local.js";
import { Debouncer, realClock, type Clock } from "./timing.js";

export type { Clock } from "./timing.js";
export { Debouncer, backoffDelay, hash } from "./timing.js";
export type { Hello, WsCtor, WsLike } from "./connection.js";
export type { AttachmentMeta, Draft, DraftConflict, ServerDraft } from "./drafts.js";
export { DraftHandle } from "./drafts.js";
export type { BlobStore, KV, LocalKey, StoredBlob } from "./local.js";
export { LocalStore, idbBlobs, importLocalKey } from "./local.js";

export interface Policy {
  idle_timeout: number;
  absolute_timeout: number;
  warn_before: number;
  heartbeat_interval: number;
  heartbeat_misses: number;
}

export interface Session {
  handle: string;
  principal: string;
  user_id: string | null;
  role: string;
  state: string;
  created_at: string;
  last_activity_at: string;
  idle_expires_at: string;
  absolute_expires_at: string;
  seconds_left: number;
  policy: Policy;
}

/** One live session of the signed-in user ("my devices"). */
export interface Device {
  handle: string;
  role: string;
  created_at: string;
  last_active_at: string;
  client_ip: string | null;
  user_agent: string | null;
  /** Browser family and major version from the user agent, e.g. "Firefox 133". */
  browser: string | null;
  /** Operating system family, e.g. "macOS". */
  os: string | null;
  /** This browser's session. */
  current: boolean;
}

/** What the app says of a member (a ticket's `info` claim or the admin API). It is
 * user-controlled: render it as text, never as HTML. */
export interface MemberInfo {
  name?: string;
  /** An http(s) URL. */
  avatar_url?: string;
  /** `#rrggbb`. */
  color?: string;
}

export interface Member {
  connection_id: string;
  handle: string;
  principal: string;
  role: string;
  /** Absent when the app set none. */
  info?: MemberInfo;
}

/** A room's shared state. `state` is parsed JSON, text, or bytes, by content type. */
export interface RoomSnapshot {
  version: number;
  hash: string;
  content_type: string;
  state: unknown;
}

export interface RoomInfo {
  room: string;
  members: Member[];
  snapshot: RoomSnapshot | null;
}

export interface SnapshotConflict {
  kind: "snapshot";
  room: string;
  current: { version: number; hash?: string } | null;
  /** The version `saveSnapshot(room, state, {version})` must name to overwrite. */
  version: number;
}

export interface Events {
  session: Session;
  connected: Hello;
  lost: { code: number };
  reconnected: Hello;
  warning: { secondsLeft: number; idleExpiresAt: string };
  renewed: { idleExpiresAt: string; absoluteExpiresAt: string };
  ended: { reason: string };
  presence: RoomInfo;
  member_joined: { room: string; member: Member };
  member_left: { room: string; member: Member; reason: string };
  snapshot: { room: string; version: number; hash: string; by?: string };
  conflict: DraftConflict | SnapshotConflict;
  draft_saved: { conversation: string; seq: number };
  /** Unconfirmed draft text was (`saved`) or could not be (no key, storage full or
   * blocked) kept on this device. */
  draft_local: { conversation: string; saved: boolean };
  error: { code: string; message?: string; conversation?: string; room?: string };
}

/** How the session token travels. `cookie`: the HttpOnly cookie the browser sends by
 * itself (same site as sessiond). `bearer`: for contexts where that cookie does not flow
 * (a third-party iframe, a native shell): the token is held in this object's memory only
 * (never in storage) and sent as `Authorization: Bearer` and as a `bearer.<token>`
 * WebSocket subprotocol entry; a page reload starts a new session. */
export type AuthMode = "cookie" | "bearer";

export interface Options {
  /** Origin of the sessiond server; default: this page's origin. Another origin must be
   * listed in the server's `allowed_origins`. */
  baseUrl?: string;
  /** Default `cookie`. */
  auth?: AuthMode;
  fetch?: typeof fetch;
  WebSocket?: WsCtor;
  /** Text copies; default localStorage. null disables local copies. */
  storage?: KV | null;
  /** Attachment copies; default IndexedDB. */
  blobs?: BlobStore | null;
  crypto?: Crypto;
  clock?: Clock;
  random?: () => number;
  /** Where pointer/key/wheel/touch activity is heard; default document. */
  activityTarget?: EventTarget | null;
  /** Where pagehide and visibilitychange are heard; default window. */
  window?: (EventTarget & { document?: Document }) | null;
  /** Network Information API, for a longer app-ping interval on metered links. */
  metered?: () => boolean;
  activityDebounceMs?: number;
  draftDebounceMs?: number;
  backoffBaseMs?: number;
  backoffMaxMs?: number;
  /** How long a local copy is kept after the server confirmed it. */
  localTtlMs?: number;
}

/** A refused request: `code` is the server's problem code (or "network"). */
/** An unguessable Idempotency-Key: 128 bits from the platform CSPRNG, never
 * `Math.random` (within its replay window the key hands out the session token). */
export function idempotencyKey(c: Crypto): string {
  return Array.from(c.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");
}

export class SessiondError extends Error {
  constructor(
    readonly code: string,
    readonly status: number,
  ) {
    super(`${code} (${status})`);
  }
}

const ACTIVITY = ["pointerdown", "pointermove", "keydown", "wheel", "touchstart"];
const CLOSE_REASONS: Record<number, string> = {
  4000: "signed_out",
  4001: "idle_timeout",
  4002: "absolute_timeout",
  4003: "revoked",
  4008: "unauthenticated",
  4012: "ended_by_user",
};
const JOIN_TIMEOUT_MS = 15_000;
const td = new TextDecoder();

function defaultMetered(): boolean {
  const nc = (globalThis.navigator as { connection?: { saveData?: boolean; type?: string } } | undefined)?.connection;
  return !!nc && (nc.saveData === true || nc.type === "cellular");
}

function encodeState(state: unknown): [BodyInit, string] {
  if (typeof state === "string") return [state, "text/plain;charset=utf-8"];
  if (state instanceof Uint8Array || state instanceof Blob) return [state as BodyInit, "application/octet-stream"];
  return [JSON.stringify(state), "application/json"];
}

function decodeState(bytes: Uint8Array, type: string): unknown {
  if (type.startsWith("application/json")) return JSON.parse(td.decode(bytes));
  return type.startsWith("text/") ? td.decode(bytes) : bytes;
}

interface RoomState {
  version: number;
  waiters: ((r: RoomInfo) => void)[];
  /** Called when the server refuses the join (no grant, bad room token). */
  refusals?: ((e: SessiondError) => void)[];
  /** A room token (share link), sent with every join and snapshot request of the room. */
  token?: string;
}

/** Room error codes that refuse or end a membership (see docs/protocol.md, Room access). */
const ROOM_REFUSALS = new Set(["room_not_allowed", "invalid_room_token", "room_access_revoked"]);

export class Sessiond extends Emitter<Events> implements DraftHost {
  /** The current session, once `start()` resolved. */
  session: Session | null = null;
  /** Why the session ended, or null while it is live. */
  endedReason: string | null = null;
  lk: LocalKey | null = null;
  readonly local: LocalStore;
  readonly clock: Clock;
  readonly draftDebounceMs: number;
  private readonly f: typeof fetch;
  private readonly base: string;
  private readonly crypto: Crypto;
  private readonly conn: Connection;
  private readonly handles = new Map<string, DraftHandle>();
  private readonly rooms = new Map<string, RoomState>();
  private readonly activity: Debouncer;
  private readonly unlisten: (() => void)[] = [];
  private readonly bearer: boolean;
  /** Bearer mode: the session token, in memory only; replaced when a sign-in rotates it. */
  private token: string | null = null;

  constructor(private readonly o: Options = {}) {
    super();
    const g = globalThis as unknown as { location?: Location; localStorage?: Storage; WebSocket?: WsCtor; document?: Document; window?: Window };
    this.base = (o.baseUrl ?? g.location?.origin ?? "").replace(/\/$/, "");
    this.bearer = o.auth === "bearer";
    this.f = o.fetch ?? globalThis.fetch.bind(globalThis);
    this.clock = o.clock ?? realClock;
    this.crypto = o.crypto ?? globalThis.crypto;
    this.draftDebounceMs = o.draftDebounceMs ?? 400;
    let storage: KV | null = null;
    try {
      storage = o.storage === undefined ? g.localStorage ?? null : o.storage;
    } catch {
      // localStorage throws where storage is blocked; run without local copies.
    }
    this.local = new LocalStore(storage, o.blobs === undefined ? idbBlobs() : o.blobs, this.crypto, this.clock, o.localTtlMs ?? 86_400_000);
    const Ws = o.WebSocket ?? g.WebSocket;
    this.conn = new Connection(
      {
        url: this.base.replace(/^http/, "ws") + "/v1/ws",
        WebSocket: Ws as WsCtor,
        clock: this.clock,
        random: o.random ?? Math.random,
        backoffBaseMs: o.backoffBaseMs ?? 500,
        backoffMaxMs: o.backoffMaxMs ?? 30_000,
        metered: o.metered ?? defaultMetered,
        protocols: this.bearer ? () => (this.token ? ["sessiond.v1", "bearer." + this.token] : "sessiond.v1") : undefined,
      },
      {
        message: (m) => this.onMessage(m),
        hello: (h, re) => this.onHello(h, re),
        lost: (code) => this.emit("lost", { code }),
        closed: (code) => {
          const reason = CLOSE_REASONS[code];
          if (reason) this.end(reason);
          else if (code === REAUTHENTICATE) void this.reauthenticated();
          return !!reason || this.ended;
        },
      },
    );
    this.activity = new Debouncer(() => this.sendActivity(), o.activityDebounceMs ?? 2000, o.activityDebounceMs ?? 2000, this.clock);
  }

  get ended(): boolean {
    return this.endedReason !== null;
  }

  /** true when drafts are copied to this device for the current principal (a key was
   * issued and storage is available; in a page that is not a secure context too). */
  get localCopies(): boolean {
    return this.lk !== null && this.local.enabled;
  }

  /** true while the WebSocket is up (hello received). */
  get connected(): boolean {
    return this.conn.connected;
  }

  /** Gets or creates this browser's session, connects, and starts listening. */
  async start(): Promise<Session> {
    const key = idempotencyKey(this.crypto);
    const r = await this.req("POST", "/v1/session", { json: this.bearer ? { bearer: true } : {}, headers: { "idempotency-key": key } });
    if (r.status !== 200 && r.status !== 201) throw new SessiondError(r.data?.code ?? "network", r.status);
    const s = this.adopt(r.data);
    this.listen();
    await this.begin(s);
    return s;
  }

  /** After an ending, checks whether this browser has a live session again (e.g. signed
   * in from another tab); resumes with it if so. */
  async resume(): Promise<Session | null> {
    const r = await this.req("GET", "/v1/session", { noEnd: true });
    if (r.status !== 200) return null;
    await this.begin(r.data as Session);
    return r.data as Session;
  }

  /** Signs in with a ticket from the app's backend; the token is rotated. */
  async signIn(ticket: string): Promise<Session> {
    if (!this.ended) await this.flushAll();
    const r = await this.req("POST", "/v1/session/signin", { json: this.bearer ? { ticket, bearer: true } : { ticket }, noEnd: true });
    if (r.status !== 200 && r.status !== 201) throw new SessiondError(r.data?.code ?? "network", r.status);
    const s = this.adopt(r.data);
    await this.begin(s);
    return s;
  }

  /** Saves drafts to the server, ends the session, and removes this principal's local
   * copies from this browser. */
  async signOut(): Promise<void> {
    if (!this.ended) await this.flushAll();
    const r = await this.req("DELETE", "/v1/session", { noEnd: true });
    if (r.status === 0 || r.status >= 500) throw new SessiondError(r.data?.code ?? "network", r.status);
    for (const h of this.handles.values()) h.drop();
    this.handles.clear();
    if (this.lk) await this.local.removeAll(this.lk).catch(() => undefined);
    this.lk = null;
    this.token = null;
    this.end("signed_out");
  }

  /** Resets the idle deadline (the "stay online" button). */
  async renew(): Promise<Session> {
    const r = await this.req("POST", "/v1/session/renew");
    if (r.status !== 200) throw new SessiondError(r.data?.code ?? "network", r.status);
    this.session = r.data as Session;
    this.emit("renewed", { idleExpiresAt: this.session.idle_expires_at, absoluteExpiresAt: this.session.absolute_expires_at });
    return this.session;
  }

  /** The signed-in user's live sessions, this one first. Rejects with `not_signed_in`
   * (403) for an anonymous session. */
  async devices(): Promise<Device[]> {
    const r = await this.req("GET", "/v1/session/devices");
    if (r.status !== 200) throw new SessiondError(r.data?.code ?? "network", r.status);
    return r.data.devices as Device[];
  }

  /** Ends another of the user's sessions (it is told `ended_by_user`). This session's
   * own handle signs out, like `signOut()`. Rejects with `not_found` for a handle that
   * is not a live session of this user. */
  async endDevice(handle: string): Promise<void> {
    if (handle === this.session?.handle) return this.signOut();
    const r = await this.req("DELETE", `/v1/session/devices/${encodeURIComponent(handle)}`);
    if (r.status !== 204) throw new SessiondError(r.data?.code ?? "network", r.status);
  }

  /** Ends every other session of the user; resolves with how many were ended. */
  async endOtherDevices(): Promise<number> {
    const r = await this.req("POST", "/v1/session/devices/end-others");
    if (r.status !== 200) throw new SessiondError(r.data?.code ?? "network", r.status);
    return Number(r.data.ended);
  }

  /** The draft of a conversation. Opening another conversation flushes the others. */
  drafts(conversation: string): DraftHandle {
    for (const [k, h] of this.handles) if (k !== conversation) void h.flush();
    return this.handle(conversation);
  }

  /** Conversations that hold unsent content (server, local copies, this tab). */
  async listDrafts(): Promise<string[]> {
    const out = new Set<string>();
    const r = this.ended ? null : await this.req("GET", "/v1/drafts");
    const ok = r?.status === 200;
    if (ok) for (const d of r.data.drafts ?? []) if (d.text_length > 0 || d.attachments?.length) out.add(d.conversation);
    if (this.lk) for (const c of this.local.conversations(this.lk, ok)) out.add(c);
    for (const [c, h] of this.handles) if (h.hasContent) out.add(c);
    else if (!h.unsaved) out.delete(c);
    return [...out];
  }

  /** Saves every pending draft now. */
  flushAll(keepalive = false): Promise<unknown> {
    return Promise.all([...this.handles.values()].map((h) => h.flush(keepalive)));
  }

  /** Joins a room; resolves with its members and last snapshot. Rooms are closed by
   * default: without a grant the promise rejects with `room_not_allowed`; `token` is a
   * room token (share link) that grants this one room. */
  join(room: string, o: { token?: string } = {}): Promise<RoomInfo> {
    let r = this.rooms.get(room);
    if (!r) this.rooms.set(room, (r = { version: 0, waiters: [] }));
    const st = r;
    if (o.token) st.token = o.token;
    return new Promise((resolve, reject) => {
      const t = this.clock.setTimeout(() => {
        st.waiters = st.waiters.filter((w) => w !== done);
        reject(new SessiondError("join_timeout", 0));
      }, JOIN_TIMEOUT_MS);
      const done = (info: RoomInfo) => {
        this.clock.clearTimeout(t);
        resolve(info);
      };
      st.waiters.push(done);
      (st.refusals ??= []).push((e) => {
        this.clock.clearTimeout(t);
        reject(e);
      });
      // Not connected yet: the join goes out with the others on hello.
      this.conn.send(joinMsg(room, st));
    });
  }

  /** `X-Room-Token` for a room joined with a room token. */
  private roomHeaders(room: string): Record<string, string> {
    const token = this.rooms.get(room)?.token;
    return token ? { "x-room-token": token } : {};
  }

  leave(room: string): void {
    this.rooms.delete(room);
    this.conn.send({ type: "leave", room });
  }

  /** Saves a room's shared state naming the version this tab last saw. A stale version
   * emits `conflict` and resolves null; nothing is overwritten. */
  async saveSnapshot(room: string, state: unknown, o: { version?: number } = {}): Promise<{ version: number; hash: string } | null> {
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
    } else if (r.status !== 401) this.emit("error", { code: String(r.data?.code ?? "network"), room });
    return null;
  }

  /** Reads a room's current snapshot (after a `snapshot` event from another member). */
  async loadSnapshot(room: string): Promise<RoomSnapshot | null> {
    const r = await this.req("GET", `/v1/rooms/${encodeURIComponent(room)}/snapshot`, { raw: true, headers: this.roomHeaders(room) });
    if (r.status !== 200 || !r.res) return null;
    const type = r.res.headers.get("content-type") ?? "application/octet-stream";
    const snap: RoomSnapshot = {
      version: Number(r.res.headers.get("x-snapshot-version") ?? 0),
      hash: (r.res.headers.get("etag") ?? "").replace(/"/g, ""),
      content_type: type,
      state: decodeState(new Uint8Array(await r.res.arrayBuffer()), type),
    };
    const st = this.rooms.get(room);
    if (st) st.version = snap.version;
    return snap;
  }

  /** Bearer mode: `{ authorization: "Bearer <token>" }` for the app's own calls to a
   * backend that checks the session through sessiond (forward-auth); `{}` in cookie
   * mode or without a session. Never added by itself: the token goes only where the app
   * sends it. */
  authHeaders(): Record<string, string> {
    return this.bearer && this.token ? { authorization: "Bearer " + this.token } : {};
  }

  /** fetch for the app's own API: a 401 emits `ended` (drafts are kept) and the
   * response is returned for the app to show, never a redirect. */
  fetch = async (input: RequestInfo | URL, init: RequestInit = {}): Promise<Response> => {
    const res = await this.f(input, { credentials: "include", ...init });
    if (res.status === 401) {
      const p = await res
        .clone()
        .json()
        .catch(() => null);
      this.end(p?.reason ?? p?.code ?? "unauthenticated");
    }
    return res;
  };

  /** Stops listening and disconnects (pending drafts are flushed first). */
  async close(): Promise<void> {
    await this.flushAll();
    this.conn.stop();
    for (const u of this.unlisten.splice(0)) u();
  }

  fire<K extends keyof Events>(type: K, e: Events[K]): void {
    this.emit(type, e);
  }

  /** One HTTP call to sessiond. Never throws: a network failure is status 0. The fetch
   * is started synchronously, so keepalive requests go out inside pagehide. */
  async req(
    method: string,
    path: string,
    o: { json?: unknown; body?: BodyInit; type?: string; keepalive?: boolean; raw?: boolean; noEnd?: boolean; headers?: Record<string, string> } = {},
  ): Promise<Res> {
    const headers: Record<string, string> = { ...o.headers, ...this.authHeaders() };
    let body = o.body;
    if (o.json !== undefined) {
      headers["content-type"] = "application/json";
      body = JSON.stringify(o.json);
    } else if (o.type) headers["content-type"] = o.type;
    let res: Response;
    try {
      // Bearer mode sends no cookie: the token alone says who this is.
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
    if (res.status === 401 && !o.noEnd) this.end(data?.reason ?? data?.code ?? "unauthenticated");
    return { status: res.status, data, res };
  }

  /** A create or sign-in answer as the session the app sees: in bearer mode its token
   * (when the server issued one) replaces the held one and is taken out of the object,
   * so the app never logs or stores it by accident. */
  private adopt(data: Session & { token?: string }): Session {
    const { token, ...s } = data;
    if (this.bearer && token) this.token = token;
    return s;
  }

  private handle(conversation: string): DraftHandle {
    let h = this.handles.get(conversation);
    if (!h) this.handles.set(conversation, (h = new DraftHandle(conversation, this)));
    return h;
  }

  /** Adopts a (new or resumed) session: local key, socket, and pending uploads. */
  private async begin(s: Session): Promise<void> {
    const changed = s.principal !== this.session?.principal;
    this.session = s;
    this.endedReason = null;
    if (changed) {
      // Another person's drafts must never show: forget everything held in memory.
      for (const h of this.handles.values()) h.drop();
      this.handles.clear();
      this.lk = null;
    }
    this.lk ??= await this.loadKey(s.principal);
    this.emit("session", s);
    this.conn.stop();
    this.conn.start();
    await this.local.sweep().catch(() => undefined);
    await this.flushAll();
    if (this.lk) for (const c of this.local.conversations(this.lk, true)) if (!this.handles.has(c)) await this.handle(c).get();
  }

  /** The socket was closed with 4010: the token was rotated (a sign-in here or in
   * another tab). The connection reopens by itself; this picks up the session as it is
   * now (its principal may have changed), without any "ended" or "lost" state. */
  private async reauthenticated(): Promise<void> {
    const r = await this.req("GET", "/v1/session", { noEnd: true });
    // 401: this tab's cookie is not the new one yet; the sign-in in flight will begin().
    if (r.status !== 200 || this.ended) return;
    const s = r.data as Session;
    if (s.principal !== this.session?.principal) await this.begin(s);
    else if (this.session) Object.assign(this.session, s);
  }

  private async loadKey(principal: string): Promise<LocalKey | null> {
    if (!this.local.enabled) return null;
    const r = await this.req("GET", "/v1/session/local-key", { noEnd: true });
    if (r.status !== 200 || r.data?.principal !== principal) return null;
    return importLocalKey(this.crypto.subtle, principal, r.data.key).catch(() => null);
  }

  private end(reason: string): void {
    if (this.ended) return;
    this.endedReason = reason;
    this.activity.cancel();
    this.conn.stop();
    this.emit("ended", { reason });
  }

  private listen(): void {
    if (this.unlisten.length) return;
    const g = globalThis as unknown as { document?: EventTarget; window?: EventTarget & { document?: Document } };
    const t = this.o.activityTarget === undefined ? g.document : this.o.activityTarget;
    const onAct = (e: Event) => {
      // Synthetic events from scripts are not a person; timers never count either.
      if (e.isTrusted !== false && !this.activity.pending && !this.ended) this.activity.call();
    };
    for (const ev of ACTIVITY) t?.addEventListener(ev, onAct, { passive: true, capture: true });
    this.unlisten.push(() => ACTIVITY.forEach((ev) => t?.removeEventListener(ev, onAct, { capture: true })));
    const w = this.o.window === undefined ? g.window : this.o.window;
    const onHide = () => {
      if (isHidden(w)) void this.flushAll(true);
    };
    const onPageHide = () => void this.flushAll(true);
    w?.addEventListener("pagehide", onPageHide);
    w?.document?.addEventListener("visibilitychange", onHide);
    this.unlisten.push(() => {
      w?.removeEventListener("pagehide", onPageHide);
      w?.document?.removeEventListener("visibilitychange", onHide);
    });
  }

  private sendActivity(): void {
    if (this.ended || !this.session) return;
    if (!this.conn.send({ type: "activity" })) void this.req("POST", "/v1/session/activity");
  }

  private onHello(h: Hello, reconnected: boolean): void {
    if (this.session) {
      this.session.idle_expires_at = h.idle_expires_at;
      this.session.absolute_expires_at = h.absolute_expires_at;
    }
    for (const [room, st] of this.rooms) this.conn.send(joinMsg(room, st));
    this.emit(reconnected ? "reconnected" : "connected", h);
    if (reconnected) void this.flushAll();
  }

  private onMessage(m: { type: string; [k: string]: any }): void {
    switch (m.type) {
      case "expiry_warning":
        return this.emit("warning", { secondsLeft: m.seconds_left, idleExpiresAt: m.idle_expires_at });
      case "renewed":
        if (this.session) Object.assign(this.session, { idle_expires_at: m.idle_expires_at, absolute_expires_at: m.absolute_expires_at });
        return this.emit("renewed", { idleExpiresAt: m.idle_expires_at, absoluteExpiresAt: m.absolute_expires_at });
      case "session_ended":
        return this.end(m.reason);
      case "presence": {
        const s = m.snapshot;
        const snapshot = s ? { version: s.version, hash: s.hash, content_type: s.content_type, state: decodeState(fromB64(s.data ?? ""), s.content_type ?? "") } : null;
        const info: RoomInfo = { room: m.room, members: m.members ?? [], snapshot };
        const st = this.rooms.get(m.room);
        if (st) {
          // A repeated join of a room this connection is in gets no snapshot again, only
          // the stored version (`snapshot_version`): the page already holds that state.
          st.version = snapshot?.version ?? m.snapshot_version ?? 0;
          st.refusals = [];
          for (const w of st.waiters.splice(0)) w(info);
        }
        return this.emit("presence", info);
      }
      case "member_joined":
        return this.emit("member_joined", { room: m.room, member: m.member });
      case "member_left":
        return this.emit("member_left", { room: m.room, member: m.member, reason: m.reason });
      case "snapshot_saved": {
        const st = this.rooms.get(m.room);
        if (st) st.version = m.version;
        return;
      }
      case "snapshot_updated":
        return this.emit("snapshot", { room: m.room, version: m.version, hash: m.hash, by: m.by });
      case "error": {
        // A refused join rejects its promise; a revoked grant ends the membership (no
        // rejoin on reconnect). Either way the room is forgotten.
        const st = typeof m.room === "string" ? this.rooms.get(m.room) : undefined;
        if (st && ROOM_REFUSALS.has(m.code)) {
          this.rooms.delete(m.room);
          st.waiters = [];
          for (const f of (st.refusals ?? []).splice(0)) f(new SessiondError(m.code, 403));
        }
        return this.emit("error", { code: m.code, message: m.message, ...(typeof m.room === "string" ? { room: m.room } : {}) });
      }
    }
  }
}

function joinMsg(room: string, st: RoomState): { type: "join"; room: string; token?: string } {
  return st.token ? { type: "join", room, token: st.token } : { type: "join", room };
}

function isHidden(w: { document?: Document } | null | undefined): boolean {
  return w?.document?.visibilityState === "hidden";
}
