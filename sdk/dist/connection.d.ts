import { type Clock } from "./timing.js";
/** The part of the browser WebSocket the SDK uses. */
export interface WsLike {
    readonly readyState: number;
    send(data: string): void;
    close(code?: number, reason?: string): void;
    onopen: ((e: unknown) => void) | null;
    onmessage: ((e: {
        data: unknown;
    }) => void) | null;
    onclose: ((e: {
        code: number;
    }) => void) | null;
    onerror: ((e: unknown) => void) | null;
}
export type WsCtor = new (url: string, protocols?: string | string[]) => WsLike;
/** The server's greeting on every (re)connect. */
export interface Hello {
    type: "hello";
    connection_id: string;
    handle: string;
    principal: string;
    role: string;
    idle_expires_at: string;
    absolute_expires_at: string;
    heartbeat_interval: number;
    heartbeat_misses: number;
    warn_before: number;
}
export interface ConnEvents {
    /** Every message except hello and pong. */
    message(m: {
        type: string;
        [k: string]: unknown;
    }): void;
    hello(h: Hello, reconnected: boolean): void;
    lost(code: number): void;
    /** The socket closed with `code`; return true to stop reconnecting (session over). */
    closed(code: number): boolean;
}
export interface ConnOptions {
    url: string;
    WebSocket: WsCtor;
    clock: Clock;
    random: () => number;
    backoffBaseMs: number;
    backoffMaxMs: number;
    /** true on a metered connection: ping less often, within what the server allows. */
    metered: () => boolean;
    /** The subprotocols of each new socket: `sessiond.v1`, and in bearer mode a
     * `bearer.<token>` entry with the token held at that moment (browsers cannot set
     * `Authorization` on a WebSocket). Default: `sessiond.v1` alone (the cookie). */
    protocols?: () => string | string[];
}
/** Close code "reauthenticate": the session's token was rotated (a sign-in, maybe in
 * another tab); the session goes on, so the socket is reopened at once with the new
 * cookie (or bearer token), without a `lost` event. */
export declare const REAUTHENTICATE = 4010;
export declare class Connection {
    private readonly o;
    private readonly on;
    private ws;
    private live;
    private running;
    private lostSent;
    private attempt;
    private timer;
    private lastFrame;
    private lastPing;
    private pingId;
    private interval;
    private misses;
    constructor(o: ConnOptions, on: ConnEvents);
    /** true once hello has arrived on the current socket. */
    get connected(): boolean;
    /** Seconds between application pings: the announced interval, or on a metered
     * connection the longest the server allows, interval × (misses - 1). */
    get pingEvery(): number;
    start(): void;
    stop(code?: number): void;
    /** Sends a message if the connection is up; false if it was not sent. */
    send(m: object): boolean;
    private clear;
    private open;
    private frame;
    /** One timer per connection, ticking every interval: checks for a dead server and
     * sends the app ping when one is due. */
    private schedule;
    private tick;
    /** Gives up on the current socket without waiting for the browser's close event. */
    private kill;
    private drop;
    private retry;
}
