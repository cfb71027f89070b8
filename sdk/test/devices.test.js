import { test } from "node:test";
import assert from "node:assert/strict";
import { Sessiond, SessiondError } from "../dist/sessiond.js";
import { FakeServer, client } from "./helpers.js";

const DEVICES = [
  { handle: "s_h", role: "editor", created_at: "a", last_active_at: "b", client_ip: "203.0.113.7", user_agent: "UA", browser: "Firefox 133", os: "Linux", current: true },
  { handle: "s_other", role: "editor", created_at: "a", last_active_at: "b", client_ip: null, user_agent: null, browser: null, os: null, current: false },
];

/** The fake server plus the "my devices" routes of docs/protocol.md. */
class DevicesServer extends FakeServer {
  devices = DEVICES.slice();
  route(call) {
    const s = `${call.method} ${call.path}`;
    if (this.live && this.principal.startsWith("anon:") && s.startsWith("GET /v1/session/devices")) return new Response(JSON.stringify({ code: "not_signed_in", status: 403 }), { status: 403 });
    if (this.live && s === "GET /v1/session/devices") return new Response(JSON.stringify({ devices: this.devices }), { status: 200 });
    if (this.live && s === "POST /v1/session/devices/end-others") {
      const n = this.devices.length - 1;
      this.devices = this.devices.filter((d) => d.current);
      return new Response(JSON.stringify({ ended: n }), { status: 200 });
    }
    const m = this.live && call.method === "DELETE" && call.path.match(/^\/v1\/session\/devices\/(.+)$/);
    if (m) {
      const h = decodeURIComponent(m[1]);
      if (!this.devices.some((d) => d.handle === h)) return new Response(JSON.stringify({ code: "not_found", status: 404 }), { status: 404 });
      this.devices = this.devices.filter((d) => d.handle !== h);
      return new Response(null, { status: 204 });
    }
    return super.route(call);
  }
}

async function started(server = new DevicesServer()) {
  const env = await client(Sessiond, server);
  await env.c.start();
  return { server, ...env };
}

test("devices(), endDevice() and endOtherDevices() speak the devices routes", async () => {
  const { server, c } = await started();
  assert.deepEqual(await c.devices(), DEVICES);
  await assert.rejects(c.endDevice("s_other/../x"), (e) => e.code === "not_found");
  assert.equal(server.calls.at(-1).path, "/v1/session/devices/s_other%2F..%2Fx", "the handle is one path segment");
  await assert.rejects(c.endDevice("s_gone"), (e) => e instanceof SessiondError && e.code === "not_found" && e.status === 404);
  await c.endDevice("s_other");
  assert.deepEqual((await c.devices()).map((d) => d.handle), ["s_h"]);
  server.devices = DEVICES.slice();
  assert.equal(await c.endOtherDevices(), 1);
  assert.equal(c.ended, false, "this device goes on");
});

test("endDevice() with this session's handle signs out", async () => {
  const { server, c } = await started();
  const ended = [];
  c.on("ended", (e) => ended.push(e.reason));
  await c.endDevice("s_h");
  assert.equal(server.calls.at(-1).method, "DELETE");
  assert.equal(server.calls.at(-1).path, "/v1/session");
  assert.deepEqual(ended, ["signed_out"]);
});

test("an anonymous session is refused with not_signed_in; an ended one ends", async () => {
  const server = new DevicesServer();
  server.principal = "anon:x";
  const { c } = await started(server);
  await assert.rejects(c.devices(), (e) => e.code === "not_signed_in" && e.status === 403);
  server.live = false;
  const ended = [];
  c.on("ended", (e) => ended.push(e.reason));
  await assert.rejects(c.devices(), (e) => e.code === "session_expired");
  assert.deepEqual(ended, ["idle_timeout"]);
});

test("close code 4012 ends the session as ended_by_user", async () => {
  const { c, sockets } = await started();
  const ended = [];
  c.on("ended", (e) => ended.push(e.reason));
  sockets[0].accept();
  sockets[0].serverClose(4012);
  assert.deepEqual(ended, ["ended_by_user"]);
  assert.equal(c.endedReason, "ended_by_user");
});
