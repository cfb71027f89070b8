//! The WebSocket to `/v1/ws`: reconnects with backoff, sends application pings at the
//! announced interval, and declares the server dead when no frame arrives within
//! interval × misses.

import { backoffDelay, type Clock } from "./timing.js";

/** The part of the browser WebSocket the SDK uses. */
export interface WsLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((e: unknown) => void) | null;
  onmessage: ((e: { data: unknown }) => void) | null;
  onclose: ((e: { code: number }) => void) | null;
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
  message(m: { type: string; [k: string]: unknown }): void;
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

/** How long a socket may take from creation to hello before it is retried. */
const CONNECT_TIMEOUT_MS = 10_000;
/** Close code "reauthenticate": the session's token was rotated (a sign-in, maybe in
 * another tab); the session goes on, so the socket is reopened at once with the new
 * cookie (or bearer token), without a `lost` event. */
export const REAUTHENTICATE = 4010;

export class Connection {
  private ws: WsLike | null = null;
  private live = false;
  private running = false;
  private lostSent = false;
  private attempt = 0;
  private timer: unknown = null;
  private lastFrame = 0;
  private lastPing = 0;
  private pingId = 0;
  private interval = 30;
  private misses = 3;

  constructor(
    private readonly o: ConnOptions,
    private readonly on: ConnEvents,
  ) {}

  /** true once hello has arrived on the current socket. */
  get connected(): boolean {
    return this.live;
  }

  /** Seconds between application pings: the announced interval, or on a metered
   * connection the longest the server allows, interval × (misses - 1). */
  get pingEvery(): number {
    return this.o.metered() && this.misses > 1 ? this.interval * (this.misses - 1) : this.interval;
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.open();
  }

  stop(code = 1000): void {
    this.running = false;
    this.live = false;
    this.clear();
    const ws = this.ws;
    this.ws = null;
    ws?.close(code);
  }

  /** Sends a message if the connection is up; false if it was not sent. */
  send(m: object): boolean {
    if (!this.ws || !this.live || this.ws.readyState !== 1) return false;
    this.ws.send(JSON.stringify(m));
    return true;
  }

  private clear(): void {
    if (this.timer !== null) this.o.clock.clearTimeout(this.timer);
    this.timer = null;
  }

  private open(): void {
    this.clear();
    let ws: WsLike;
    try {
      ws = new this.o.WebSocket(this.o.url, this.o.protocols?.() ?? "sessiond.v1");
    } catch {
      return this.retry();
    }
    this.ws = ws;
    this.live = false;
    ws.onmessage = (e) => ws === this.ws && this.frame(e.data);
    ws.onclose = (e) => ws === this.ws && this.drop(e.code);
    ws.onerror = () => undefined;
    this.timer = this.o.clock.setTimeout(() => ws === this.ws && this.kill(4004), CONNECT_TIMEOUT_MS);
  }

  private frame(data: unknown): void {
    this.lastFrame = this.o.clock.now();
    let m: { type: string; [k: string]: unknown };
    try {
      m = JSON.parse(String(data));
    } catch {
      return;
    }
    if (m.type === "hello") {
      const h = m as unknown as Hello;
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
  private schedule(): void {
    this.clear();
    this.timer = this.o.clock.setTimeout(() => this.tick(), this.interval * 1000);
  }

  private tick(): void {
    const now = this.o.clock.now();
    if (now - this.lastFrame >= this.interval * this.misses * 1000) return this.kill(4004);
    if (now - this.lastPing >= this.pingEvery * 1000 - 50) {
      this.lastPing = now;
      this.send({ type: "ping", id: ++this.pingId });
    }
    this.schedule();
  }

  /** Gives up on the current socket without waiting for the browser's close event. */
  private kill(code: number): void {
    const ws = this.ws;
    this.ws = null;
    try {
      ws?.close(4000 <= code ? 1000 : code);
    } catch {
      /* already closing */
    }
    this.drop(code);
  }

  private drop(code: number): void {
    this.clear();
    const wasLive = this.live;
    this.live = false;
    this.ws = null;
    if (this.on.closed(code) || !this.running) {
      this.running = false;
      return;
    }
    if (code === REAUTHENTICATE) {
      // Not a loss: reconnect now. Should the new cookie not be in place yet (the sign-in
      // answer still on its way), that attempt fails and the usual backoff follows.
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

  private retry(): void {
    const d = backoffDelay(this.attempt++, this.o.backoffBaseMs, this.o.backoffMaxMs, this.o.random);
    this.timer = this.o.clock.setTimeout(() => this.running && this.open(), d);
  }
}
