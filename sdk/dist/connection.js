//! The WebSocket to `/v1/ws`: reconnects with backoff, sends application pings at the
//! announced interval, and declares the server dead when no frame arrives within
//! interval × misses.
import { backoffDelay } from "./timing.js";
/** How long a socket may take from creation to hello before it is retried. */
const CONNECT_TIMEOUT_MS = 10000;
/** Close code "reauthenticate": the session's token was rotated (a sign-in, maybe in
 * another tab); the session goes on, so the socket is reopened at once with the new
 * cookie (or bearer token), without a `lost` event. */
export const REAUTHENTICATE = 4010;
export class Connection {
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
    stop(code = 1000) {
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
        }
        catch {
            return this.retry();
        }
        this.ws = ws;
        this.live = false;
        ws.onmessage = (e) => ws === this.ws && this.frame(e.data);
        ws.onclose = (e) => ws === this.ws && this.drop(e.code);
        ws.onerror = () => undefined;
        this.timer = this.o.clock.setTimeout(() => ws === this.ws && this.kill(4004), CONNECT_TIMEOUT_MS);
    }
    frame(data) {
        this.lastFrame = this.o.clock.now();
        let m;
        try {
            m = JSON.parse(String(data));
        }
        catch {
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
        }
        else if (m.type !== "pong") {
            this.on.message(m);
        }
    }
    /** One timer per connection, ticking every interval: checks for a dead server and
     * sends the app ping when one is due. */
    schedule() {
        this.clear();
        this.timer = this.o.clock.setTimeout(() => this.tick(), this.interval * 1000);
    }
    tick() {
        const now = this.o.clock.now();
        if (now - this.lastFrame >= this.interval * this.misses * 1000)
            return this.kill(4004);
        if (now - this.lastPing >= this.pingEvery * 1000 - 50) {
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
            ws?.close(4000 <= code ? 1000 : code);
        }
        catch {
            /* already closing */
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
    retry() {
        const d = backoffDelay(this.attempt++, this.o.backoffBaseMs, this.o.backoffMaxMs, this.o.random);
        this.timer = this.o.clock.setTimeout(() => this.running && this.open(), d);
    }
}
