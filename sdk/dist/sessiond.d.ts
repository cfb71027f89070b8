import { type Hello, type WsCtor } from "./connection.js";
import { DraftHandle, type DraftConflict, type DraftHost, type Res } from "./drafts.js";
import { Emitter } from "./emitter.js";
import { LocalStore, type BlobStore, type KV, type LocalKey } from "./local.js";
import { type Clock } from "./timing.js";
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
    current: {
        version: number;
        hash?: string;
    } | null;
    /** The version `saveSnapshot(room, state, {version})` must name to overwrite. */
    version: number;
}
export interface Events {
    session: Session;
    connected: Hello;
    lost: {
        code: number;
    };
    reconnected: Hello;
    warning: {
        secondsLeft: number;
        idleExpiresAt: string;
    };
    renewed: {
        idleExpiresAt: string;
        absoluteExpiresAt: string;
    };
    ended: {
        reason: string;
    };
    presence: RoomInfo;
    member_joined: {
        room: string;
        member: Member;
    };
    member_left: {
        room: string;
        member: Member;
        reason: string;
    };
    snapshot: {
        room: string;
        version: number;
        hash: string;
        by?: string;
    };
    conflict: DraftConflict | SnapshotConflict;
    draft_saved: {
        conversation: string;
        seq: number;
    };
    /** Unconfirmed draft text was (`saved`) or could not be (no key, storage full or
     * blocked) kept on this device. */
    draft_local: {
        conversation: string;
        saved: boolean;
    };
    error: {
        code: string;
        message?: string;
        conversation?: string;
        room?: string;
    };
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
    window?: (EventTarget & {
        document?: Document;
    }) | null;
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
export declare function idempotencyKey(c: Crypto): string;
export declare class SessiondError extends Error {
    readonly code: string;
    readonly status: number;
    constructor(code: string, status: number);
}
export declare class Sessiond extends Emitter<Events> implements DraftHost {
    private readonly o;
    /** The current session, once `start()` resolved. */
    session: Session | null;
    /** Why the session ended, or null while it is live. */
    endedReason: string | null;
    lk: LocalKey | null;
    readonly local: LocalStore;
    readonly clock: Clock;
    readonly draftDebounceMs: number;
    private readonly f;
    private readonly base;
    private readonly crypto;
    private readonly conn;
    private readonly handles;
    private readonly rooms;
    private readonly activity;
    private readonly unlisten;
    private readonly bearer;
    /** Bearer mode: the session token, in memory only; replaced when a sign-in rotates it. */
    private token;
    constructor(o?: Options);
    get ended(): boolean;
    /** true when drafts are copied to this device for the current principal (a key was
     * issued and storage is available; in a page that is not a secure context too). */
    get localCopies(): boolean;
    /** true while the WebSocket is up (hello received). */
    get connected(): boolean;
    /** Gets or creates this browser's session, connects, and starts listening. */
    start(): Promise<Session>;
    /** After an ending, checks whether this browser has a live session again (e.g. signed
     * in from another tab); resumes with it if so. */
    resume(): Promise<Session | null>;
    /** Signs in with a ticket from the app's backend; the token is rotated. */
    signIn(ticket: string): Promise<Session>;
    /** Saves drafts to the server, ends the session, and removes this principal's local
     * copies from this browser. */
    signOut(): Promise<void>;
    /** Resets the idle deadline (the "stay online" button). */
    renew(): Promise<Session>;
    /** The signed-in user's live sessions, this one first. Rejects with `not_signed_in`
     * (403) for an anonymous session. */
    devices(): Promise<Device[]>;
    /** Ends another of the user's sessions (it is told `ended_by_user`). This session's
     * own handle signs out, like `signOut()`. Rejects with `not_found` for a handle that
     * is not a live session of this user. */
    endDevice(handle: string): Promise<void>;
    /** Ends every other session of the user; resolves with how many were ended. */
    endOtherDevices(): Promise<number>;
    /** The draft of a conversation. Opening another conversation flushes the others. */
    drafts(conversation: string): DraftHandle;
    /** Conversations that hold unsent content (server, local copies, this tab). */
    listDrafts(): Promise<string[]>;
    /** Saves every pending draft now. */
    flushAll(keepalive?: boolean): Promise<unknown>;
    /** Joins a room; resolves with its members and last snapshot. Rooms are closed by
     * default: without a grant the promise rejects with `room_not_allowed`; `token` is a
     * room token (share link) that grants this one room. */
    join(room: string, o?: {
        token?: string;
    }): Promise<RoomInfo>;
    /** `X-Room-Token` for a room joined with a room token. */
    private roomHeaders;
    leave(room: string): void;
    /** Saves a room's shared state naming the version this tab last saw. A stale version
     * emits `conflict` and resolves null; nothing is overwritten. */
    saveSnapshot(room: string, state: unknown, o?: {
        version?: number;
    }): Promise<{
        version: number;
        hash: string;
    } | null>;
    /** Reads a room's current snapshot (after a `snapshot` event from another member). */
    loadSnapshot(room: string): Promise<RoomSnapshot | null>;
    /** Bearer mode: `{ authorization: "Bearer <token>" }` for the app's own calls to a
     * backend that checks the session through sessiond (forward-auth); `{}` in cookie
     * mode or without a session. Never added by itself: the token goes only where the app
     * sends it. */
    authHeaders(): Record<string, string>;
    /** fetch for the app's own API: a 401 emits `ended` (drafts are kept) and the
     * response is returned for the app to show, never a redirect. */
    fetch: (input: RequestInfo | URL, init?: RequestInit) => Promise<Response>;
    /** Stops listening and disconnects (pending drafts are flushed first). */
    close(): Promise<void>;
    fire<K extends keyof Events>(type: K, e: Events[K]): void;
    /** One HTTP call to sessiond. Never throws: a network failure is status 0. The fetch
     * is started synchronously, so keepalive requests go out inside pagehide. */
    req(method: string, path: string, o?: {
        json?: unknown;
        body?: BodyInit;
        type?: string;
        keepalive?: boolean;
        raw?: boolean;
        noEnd?: boolean;
        headers?: Record<string, string>;
    }): Promise<Res>;
    /** A create or sign-in answer as the session the app sees: in bearer mode its token
     * (when the server issued one) replaces the held one and is taken out of the object,
     * so the app never logs or stores it by accident. */
    private adopt;
    private handle;
    /** Adopts a (new or resumed) session: local key, socket, and pending uploads. */
    private begin;
    /** The socket was closed with 4010: the token was rotated (a sign-in here or in
     * another tab). The connection reopens by itself; this picks up the session as it is
     * now (its principal may have changed), without any "ended" or "lost" state. */
    private reauthenticated;
    private loadKey;
    private end;
    private listen;
    private sendActivity;
    private onHello;
    private onMessage;
}
