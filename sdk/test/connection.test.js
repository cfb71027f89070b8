import { test } from "node:test";
import assert from "node:assert/strict";
import { Sessiond } from "../dist/sessiond.js";
import { FakeServer, client, until } from "./helpers.js";

async function started(extra) {
  const server = new FakeServer();
  const env = await client(Sessiond, server, extra);
  const events = [];
  for (const t of ["connected", "lost", "reconnected", "ended", "warning", "renewed", "presence", "member_left"]) env.c.on(t, (e) => events.push([t, e]));
  await env.c.start();
  return { server, events, ...env };
}

test("connects with the sessiond.v1 subprotocol to /v1/ws", async () => {
  const { sockets, events } = await started();
  assert.equal(sockets.length, 1);
  assert.equal(sockets[0].url, "ws://app.test/v1/ws");
  assert.equal(sockets[0].proto, "sessiond.v1");
  sockets[0].accept();
  assert.deepEqual(events.map((e) => e[0]), ["connected"]);
});

test("app pings at the announced interval; a dead server is detected after interval x misses", async () => {
  const { sockets, clock, events } = await started();
  const ws = sockets[0];
  ws.accept({ heartbeat_interval: 10, heartbeat_misses: 3 });
  await clock.advance(10_000);
  assert.deepEqual(ws.types(), ["ping"]);
  ws.recv({ type: "pong", id: 1 });
  await clock.advance(10_000);
  assert.deepEqual(ws.types(), ["ping", "ping"]);
  // The server stops answering after the pong at t=10 s: lost at t=40 s, 30 s later.
  await clock.advance(19_999);
  assert.equal(events.filter((e) => e[0] === "lost").length, 0);
  await clock.advance(1);
  assert.equal(events.filter((e) => e[0] === "lost").length, 1, "lost after 30 s without a frame");
  assert.equal(ws.readyState, 3, "the dead socket is closed");
  // Reconnect after backoff (random 0.5 → 3/4 of 500 ms).
  await clock.advance(375);
  assert.equal(sockets.length, 2);
  sockets[1].accept();
  assert.deepEqual(events.map((e) => e[0]), ["connected", "lost", "reconnected"]);
});

test("a metered connection pings less often, never beyond interval x (misses-1)", async () => {
  const { sockets, clock } = await started({ metered: () => true });
  const ws = sockets[0];
  ws.accept({ heartbeat_interval: 10, heartbeat_misses: 3 });
  await clock.advance(10_000);
  assert.deepEqual(ws.types(), []);
  await clock.advance(10_000);
  assert.deepEqual(ws.types(), ["ping"]);
  ws.recv({ type: "pong", id: 1 });
  await clock.advance(20_000);
  assert.deepEqual(ws.types(), ["ping", "ping"]);
  ws.recv({ type: "pong", id: 2 });
  await clock.advance(20_000);
  assert.equal(ws.readyState, 1, "still connected with pongs every 20 s");
});

test("reconnect backoff grows while failing and resets after a successful hello", async () => {
  const { sockets, clock } = await started({ random: () => 1 });
  const opened = () => sockets.length;
  sockets[0].serverClose(1006);
  await clock.advance(499);
  assert.equal(opened(), 1);
  await clock.advance(1);
  assert.equal(opened(), 2, "first retry after 500 ms");
  sockets[1].serverClose(1006);
  await clock.advance(999);
  assert.equal(opened(), 2);
  await clock.advance(1);
  assert.equal(opened(), 3, "second retry after 1000 ms");
  sockets[2].serverClose(1006);
  await clock.advance(2000);
  assert.equal(opened(), 4, "third after 2000 ms");
  sockets[3].accept();
  sockets[3].serverClose(1001);
  await clock.advance(500);
  assert.equal(opened(), 5, "after a hello the backoff starts again at 500 ms");
});

test("session_ended and ending close codes end the session without reconnecting", async () => {
  const { sockets, clock, events, c } = await started();
  sockets[0].accept();
  sockets[0].recv({ type: "session_ended", reason: "revoked" });
  sockets[0].serverClose(4003);
  await clock.advance(60_000);
  assert.equal(sockets.length, 1, "no reconnect after an ending");
  assert.deepEqual(events.filter((e) => e[0] === "ended").map((e) => e[1].reason), ["revoked"]);
  assert.equal(c.endedReason, "revoked");
});

test("close code 4010 (token rotated) reconnects at once, without lost or ended, and takes the new principal", async () => {
  const { sockets, clock, events, c, server } = await started({ random: () => 1 });
  sockets[0].accept();
  server.principal = "user:bob"; // signed in from another tab: the cookie now names bob
  sockets[0].serverClose(4010);
  await clock.advance(0);
  assert.ok(sockets.length >= 2, "reopened without backoff");
  await until(() => c.session?.principal === "user:bob", "the session re-read");
  sockets.at(-1).accept();
  const kinds = events.map((e) => e[0]);
  assert.ok(!kinds.includes("lost") && !kinds.includes("ended"), kinds.join());
  assert.equal(c.ended, false);
});

test("close code 4001 alone ends the session with idle_timeout", async () => {
  const { sockets, events } = await started();
  sockets[0].accept();
  sockets[0].serverClose(4001);
  assert.deepEqual(events.filter((e) => e[0] === "ended").map((e) => e[1].reason), ["idle_timeout"]);
});

test("warning and renewed are passed on", async () => {
  const { sockets, events } = await started();
  sockets[0].accept();
  sockets[0].recv({ type: "expiry_warning", seconds_left: 120, idle_expires_at: "t1" });
  sockets[0].recv({ type: "renewed", idle_expires_at: "t2", absolute_expires_at: "t3" });
  assert.deepEqual(events.slice(1), [
    ["warning", { secondsLeft: 120, idleExpiresAt: "t1" }],
    ["renewed", { idleExpiresAt: "t2", absoluteExpiresAt: "t3" }],
  ]);
});

test("activity is debounced (one frame per 2 s of input) and never sent by timers alone", async () => {
  const { sockets, clock, target } = await started();
  const ws = sockets[0];
  ws.accept({ heartbeat_interval: 1000 });
  await clock.advance(60_000);
  assert.deepEqual(ws.types(), [], "no input, no activity");
  for (let i = 0; i < 30; i++) {
    target.fire(i % 2 ? "keydown" : "pointermove");
    await clock.advance(100);
  }
  assert.deepEqual(ws.types(), ["activity"]);
  await clock.advance(2000);
  assert.deepEqual(ws.types(), ["activity", "activity"]);
  await clock.advance(60_000);
  assert.equal(ws.types().length, 2, "nothing more without input");
  target.fire("wheel", { isTrusted: false });
  await clock.advance(3000);
  assert.equal(ws.types().length, 2, "synthetic events do not count");
  target.fire("touchstart");
  await clock.advance(2000);
  assert.equal(ws.types().length, 3);
});

test("join resolves with members and snapshot; rooms are rejoined after a reconnect", async () => {
  const { sockets, clock, events, c } = await started();
  sockets[0].accept();
  const joined = c.join("conv-1");
  assert.deepEqual(sockets[0].sent.at(-1), { type: "join", room: "conv-1" });
  const member = { connection_id: "c1", handle: "s_h", principal: "user:alice", role: "editor" };
  const data = Buffer.from(JSON.stringify({ notes: "hello" })).toString("base64");
  sockets[0].recv({ type: "presence", room: "conv-1", members: [member], snapshot: { version: 3, hash: "ab", content_type: "application/json", data } });
  const info = await joined;
  assert.deepEqual(info.members, [member]);
  assert.deepEqual(info.snapshot.state, { notes: "hello" });
  assert.equal(info.snapshot.version, 3);
  sockets[0].recv({ type: "member_left", room: "conv-1", member, reason: "lost" });
  assert.deepEqual(events.at(-1), ["member_left", { room: "conv-1", member, reason: "lost" }]);
  sockets[0].serverClose(1001);
  await clock.advance(1000);
  sockets[1].accept();
  assert.deepEqual(sockets[1].sent, [{ type: "join", room: "conv-1" }]);
});

test("saveSnapshot names the last seen version; 409 emits a conflict", async () => {
  const server = new FakeServer();
  let version = 3;
  const fetch = async (url, init = {}) => {
    const u = new URL(url);
    if (u.pathname === "/v1/rooms/conv-1/snapshot") {
      server.calls.push({ query: Object.fromEntries(u.searchParams), init });
      if (Number(u.searchParams.get("version")) !== version) return new Response(JSON.stringify({ code: "conflict", current: { version } }), { status: 409 });
      version++;
      return new Response(JSON.stringify({ room: "conv-1", version, hash: "h" + version }), { status: 200 });
    }
    return server.fetch(url, init);
  };
  const { c, sockets } = await client(Sessiond, server, { fetch });
  const conflicts = [];
  c.on("conflict", (e) => conflicts.push(e));
  await c.start();
  sockets[0].accept();
  const j = c.join("conv-1");
  sockets[0].recv({ type: "presence", room: "conv-1", members: [], snapshot: { version: 3, hash: "x", content_type: "text/plain", data: "" } });
  await j;
  assert.deepEqual(await c.saveSnapshot("conv-1", { notes: "a" }), { version: 4, hash: "h4" });
  assert.equal(server.calls.at(-1).query.version, "3");
  assert.equal(server.calls.at(-1).init.headers["content-type"], "application/json");
  version = 7; // someone else saved twice
  assert.equal(await c.saveSnapshot("conv-1", { notes: "b" }), null);
  assert.deepEqual(conflicts, [{ kind: "snapshot", room: "conv-1", current: { version: 7 }, version: 7 }]);
  assert.deepEqual(await c.saveSnapshot("conv-1", { notes: "b" }, { version: 7 }), { version: 8, hash: "h8" });
});
