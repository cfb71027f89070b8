import { test } from "node:test";
import assert from "node:assert/strict";
import { Sessiond } from "../dist/sessiond.js";
import { FakeServer, client, until } from "./helpers.js";

/** The fake server issuing tokens as sessiond does when a client asks for bearer mode. */
class TokenServer extends FakeServer {
  n = 0;
  route(call) {
    const res = super.route(call);
    if ((call.path === "/v1/session" && call.method === "POST") || call.path === "/v1/session/signin") {
      if (!call.body?.bearer || res.status >= 400) return res;
      return res.json().then((b) => new Response(JSON.stringify({ ...b, token: "tok" + ++this.n }), { status: res.status, headers: { "content-type": "application/json" } }));
    }
    return res;
  }
}

const auth = (call) => call.init.headers?.authorization;

test("bearer mode: the token is asked for, held in memory, and sent on HTTP and the socket", async () => {
  const server = new TokenServer();
  const { c, sockets, storage } = await client(Sessiond, server, { auth: "bearer" });
  const s = await c.start();
  const create = server.calls[0];
  assert.deepEqual(create.body, { bearer: true });
  assert.equal(create.init.credentials, "omit", "no cookie in bearer mode");
  assert.equal(s.token, undefined, "the app's session object never carries the token");
  assert.equal(c.session.token, undefined);
  await until(() => sockets.length === 1, "socket");
  assert.deepEqual(sockets[0].proto, ["sessiond.v1", "bearer.tok1"]);
  sockets[0].accept();
  await c.renew().catch(() => undefined);
  const later = server.calls.slice(1);
  assert.ok(later.length > 0);
  for (const call of later) {
    assert.equal(auth(call), "Bearer tok1", `${call.method} ${call.path}`);
    assert.equal(call.init.credentials, "omit");
  }
  assert.deepEqual(c.authHeaders(), { authorization: "Bearer tok1" });
  for (let i = 0; i < storage.length; i++) {
    assert.ok(!storage.getItem(storage.key(i)).includes("tok1"), "never in storage");
  }
});

test("bearer mode: a sign-in replaces the held token and reopens the socket with it", async () => {
  const server = new TokenServer();
  const { c, sockets } = await client(Sessiond, server, { auth: "bearer" });
  await c.start();
  await until(() => sockets.length === 1, "socket");
  sockets[0].accept();
  await c.signIn("ticket");
  const signin = server.calls.find((x) => x.path === "/v1/session/signin");
  assert.deepEqual(signin.body, { ticket: "ticket", bearer: true });
  assert.equal(auth(signin), "Bearer tok1", "the old token names the session to keep");
  await until(() => sockets.length === 2, "new socket");
  assert.deepEqual(sockets[1].proto, ["sessiond.v1", "bearer.tok2"]);
  await c.req("GET", "/v1/session");
  assert.equal(auth(server.calls.at(-1)), "Bearer tok2");
  await c.signOut();
  assert.deepEqual(c.authHeaders(), {}, "signed out: the token is forgotten");
});

test("bearer mode: a 401 ends the session as in cookie mode", async () => {
  const server = new TokenServer();
  const { c } = await client(Sessiond, server, { auth: "bearer" });
  await c.start();
  const ended = [];
  c.on("ended", (e) => ended.push(e.reason));
  server.live = false;
  await c.req("POST", "/v1/session/activity");
  assert.deepEqual(ended, ["idle_timeout"]);
});

test("cookie mode sends no Authorization and no bearer subprotocol", async () => {
  const server = new TokenServer();
  const { c, sockets } = await client(Sessiond, server);
  await c.start();
  assert.deepEqual(server.calls[0].body, {});
  await until(() => sockets.length === 1, "socket");
  assert.equal(sockets[0].proto, "sessiond.v1");
  for (const call of server.calls) {
    assert.equal(auth(call), undefined);
    assert.equal(call.init.credentials, "include");
  }
  assert.deepEqual(c.authHeaders(), {});
});
