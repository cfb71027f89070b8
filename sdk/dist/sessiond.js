//! sessiond browser SDK: the session, its WebSocket (heartbeats, presence, warnings),
//! debounced activity, rooms and snapshots, drafts with an encrypted local fallback, and
//! a fetch wrapper that turns a 401 into an `ended` event instead of a lost page.
import { Connection, REAUTHENTICATE } from "./connection.js";
import { DraftHandle } from "./drafts.js";
import { Emitter } from "./emitter.js";
import { LocalStore, fromB64, idbBlobs, importLocalKey } from "./local.js";
import { Debouncer, realClock } from "./timing.js";
export { Debouncer, backoffDelay, hash } from "./timing.js";
export { DraftHandle } from "./drafts.js";
export { LocalStore, idbBlobs, importLocalKey } from "./local.js";
/** A refused request: `code` is the server's problem code (or "network"). */
/** An unguessable Idempotency-Key: 128 bits from the platform CSPRNG, never
 * `Math.random` (within its replay window the key hands out the session token). */
export function idempotencyKey(c) {
    return Array.from(c.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");
}
export class SessiondError extends Error {
    constructor(code, status) {
        super(`${code} (${status})`);
        this.code = code;
        this.status = status;
    }
}
const ACTIVITY = ["pointerdown", "pointermove", "keydown", "wheel", "touchstart"];
const CLOSE_REASONS = {
    4000: "signed_out",
    4001: "idle_timeout",
    4002: "absolute_timeout",
    4003: "revoked",
    4008: "unauthenticated",
    4012: "ended_by_user",
};
const JOIN_TIMEOUT_MS = 15000;
const td = new TextDecoder();
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
        return JSON.parse(td.decode(bytes));
    return type.startsWith("text/") ? td.decode(bytes) : bytes;
}
/** Room error codes that refuse or end a membership (see docs/protocol.md, Room access). */
const ROOM_REFUSALS = new Set(["room_not_allowed", "invalid_room_token", "room_access_revoked"]);
export class Sessiond extends Emitter {
    constructor(o = {}) {
        super();
        this.o = o;
        /** The current session, once `start()` resolved. */
        this.session = null;
        /** Why the session ended, or null while it is live. */
        this.endedReason = null;
        this.lk = null;
        this.handles = new Map();
        this.rooms = new Map();
        this.unlisten = [];
        /** Bearer mode: the session token, in memory only; replaced when a sign-in rotates it. */
        this.token = null;
        /** fetch for the app's own API: a 401 emits `ended` (drafts are kept) and the
         * response is returned for the app to show, never a redirect. */
        this.fetch = async (input, init = {}) => {
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
        const g = globalThis;
        this.base = (o.baseUrl ?? g.location?.origin ?? "").replace(/\/$/, "");
        this.bearer = o.auth === "bearer";
        this.f = o.fetch ?? globalThis.fetch.bind(globalThis);
        this.clock = o.clock ?? realClock;
        this.crypto = o.crypto ?? globalThis.crypto;
        this.draftDebounceMs = o.draftDebounceMs ?? 400;
        let storage = null;
        try {
            storage = o.storage === undefined ? g.localStorage ?? null : o.storage;
        }
        catch {
            // localStorage throws where storage is blocked; run without local copies.
        }
        this.local = new LocalStore(storage, o.blobs === undefined ? idbBlobs() : o.blobs, this.crypto, this.clock, o.localTtlMs ?? 86400000);
        const Ws = o.WebSocket ?? g.WebSocket;
        this.conn = new Connection({
            url: this.base.replace(/^http/, "ws") + "/v1/ws",
            WebSocket: Ws,
            clock: this.clock,
            random: o.random ?? Math.random,
            backoffBaseMs: o.backoffBaseMs ?? 500,
            backoffMaxMs: o.backoffMaxMs ?? 30000,
            metered: o.metered ?? defaultMetered,
            protocols: this.bearer ? () => (this.token ? ["sessiond.v1", "bearer." + this.token] : "sessiond.v1") : undefined,
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
            },
        });
        this.activity = new Debouncer(() => this.sendActivity(), o.activityDebounceMs ?? 2000, o.activityDebounceMs ?? 2000, this.clock);
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
            await this.local.removeAll(this.lk).catch(() => undefined);
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
        const out = new Set();
        const r = this.ended ? null : await this.req("GET", "/v1/drafts");
        const ok = r?.status === 200;
        if (ok)
            for (const d of r.data.drafts ?? [])
                if (d.text_length > 0 || d.attachments?.length)
                    out.add(d.conversation);
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
            this.rooms.set(room, (r = { version: 0, waiters: [] }));
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
            // Not connected yet: the join goes out with the others on hello.
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
        }
        else if (r.status !== 401)
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
            state: decodeState(new Uint8Array(await r.res.arrayBuffer()), type),
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
        if (o.json !== undefined) {
            headers["content-type"] = "application/json";
            body = JSON.stringify(o.json);
        }
        else if (o.type)
            headers["content-type"] = o.type;
        let res;
        try {
            // Bearer mode sends no cookie: the token alone says who this is.
            res = await this.f(this.base + path, { method, headers, body, credentials: this.bearer ? "omit" : "include", keepalive: o.keepalive });
        }
        catch {
            return { status: 0, data: null };
        }
        let data = null;
        if (!o.raw || !res.ok) {
            const t = await res.text().catch(() => "");
            try {
                data = t ? JSON.parse(t) : null;
            }
            catch {
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
            this.handles.set(conversation, (h = new DraftHandle(conversation, this)));
        return h;
    }
    /** Adopts a (new or resumed) session: local key, socket, and pending uploads. */
    async begin(s) {
        const changed = s.principal !== this.session?.principal;
        this.session = s;
        this.endedReason = null;
        if (changed) {
            // Another person's drafts must never show: forget everything held in memory.
            for (const h of this.handles.values())
                h.drop();
            this.handles.clear();
            this.lk = null;
        }
        this.lk ?? (this.lk = await this.loadKey(s.principal));
        this.emit("session", s);
        this.conn.stop();
        this.conn.start();
        await this.local.sweep().catch(() => undefined);
        await this.flushAll();
        if (this.lk)
            for (const c of this.local.conversations(this.lk, true))
                if (!this.handles.has(c))
                    await this.handle(c).get();
    }
    /** The socket was closed with 4010: the token was rotated (a sign-in here or in
     * another tab). The connection reopens by itself; this picks up the session as it is
     * now (its principal may have changed), without any "ended" or "lost" state. */
    async reauthenticated() {
        const r = await this.req("GET", "/v1/session", { noEnd: true });
        // 401: this tab's cookie is not the new one yet; the sign-in in flight will begin().
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
        const t = this.o.activityTarget === undefined ? g.document : this.o.activityTarget;
        const onAct = (e) => {
            // Synthetic events from scripts are not a person; timers never count either.
            if (e.isTrusted !== false && !this.activity.pending && !this.ended)
                this.activity.call();
        };
        for (const ev of ACTIVITY)
            t?.addEventListener(ev, onAct, { passive: true, capture: true });
        this.unlisten.push(() => ACTIVITY.forEach((ev) => t?.removeEventListener(ev, onAct, { capture: true })));
        const w = this.o.window === undefined ? g.window : this.o.window;
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
                    // A repeated join of a room this connection is in gets no snapshot again, only
                    // the stored version (`snapshot_version`): the page already holds that state.
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
                // A refused join rejects its promise; a revoked grant ends the membership (no
                // rejoin on reconnect). Either way the room is forgotten.
                const st = typeof m.room === "string" ? this.rooms.get(m.room) : undefined;
                if (st && ROOM_REFUSALS.has(m.code)) {
                    this.rooms.delete(m.room);
                    st.waiters = [];
                    for (const f of (st.refusals ?? []).splice(0))
                        f(new SessiondError(m.code, 403));
                }
                return this.emit("error", { code: m.code, message: m.message, ...(typeof m.room === "string" ? { room: m.room } : {}) });
            }
        }
    }
}
function joinMsg(room, st) {
    return st.token ? { type: "join", room, token: st.token } : { type: "join", room };
}
function isHidden(w) {
    return w?.document?.visibilityState === "hidden";
}
