import { test } from "node:test";
import assert from "node:assert/strict";
import { Sessiond } from "../dist/sessiond.js";
import { FakeServer, client, until } from "./helpers.js";

const puts = (s, c = "conv-1") => s.calls.filter((x) => x.method === "PUT" && x.path === `/v1/drafts/${c}`);

async function started(extra) {
  const server = new FakeServer();
  const env = await client(Sessiond, server, extra);
  await env.c.start();
  return { server, ...env };
}

test("set() autosaves after the debounce, once per burst, with the seq", async () => {
  const { server, c, clock } = await started();
  const d = c.drafts("conv-1");
  await d.get();
  d.set("h");
  d.set("he");
  d.set("hel");
  await clock.advance(399);
  assert.equal(puts(server).length, 0);
  await clock.advance(1);
  await until(() => d.seq === 1, "first save");
  assert.deepEqual(puts(server).map((x) => x.body), [{ text: "hel", seq: 0 }]);
});

test("a second set() while a save is in flight waits and uses the returned seq", async () => {
  const { server, c, clock } = await started();
  const d = c.drafts("conv-1");
  await d.get();
  const release = server.hold("PUT /v1/drafts/conv-1");
  d.set("first");
  await clock.advance(400);
  assert.equal(puts(server).length, 1, "first save in flight");
  d.set("first and second");
  await clock.advance(400);
  await clock.advance(2000);
  assert.equal(puts(server).length, 1, "second save waits for the first answer");
  release();
  await until(() => puts(server).length === 2, "second save");
  assert.deepEqual(
    puts(server).map((x) => x.body),
    [
      { text: "first", seq: 0 },
      { text: "first and second", seq: 1 },
    ],
  );
  await until(() => d.seq === 2, "seq 2");
  assert.equal(server.get("conv-1").text, "first and second");
});

test("unchanged text is not saved again", async () => {
  const { server, c, clock } = await started();
  const d = c.drafts("conv-1");
  await d.get();
  d.set("same");
  await clock.advance(500);
  await until(() => d.seq === 1);
  d.set("same");
  await clock.advance(500);
  await c.flushAll();
  assert.equal(puts(server).length, 1);
});

test("a 409 surfaces as conflict with both versions; nothing is overwritten until overwrite(seq)", async () => {
  const { server, c, clock } = await started();
  const d = c.drafts("conv-1");
  await d.get();
  server.put("conv-1", { text: "from the other tab", seq: 4 });
  const conflicts = [];
  c.on("conflict", (e) => conflicts.push(e));
  d.set("from this tab");
  await clock.advance(400);
  await until(() => conflicts.length === 1, "conflict event");
  assert.equal(conflicts[0].kind, "draft");
  assert.equal(conflicts[0].mine.text, "from this tab");
  assert.equal(conflicts[0].current.text, "from the other tab");
  assert.equal(conflicts[0].seq, 4);
  d.set("from this tab, more");
  await clock.advance(5000);
  assert.equal(server.get("conv-1").text, "from the other tab", "never silently overwritten");
  assert.equal(puts(server).length, 1, "no further saves while in conflict");
  await d.overwrite(conflicts[0].seq);
  assert.deepEqual(puts(server).at(-1).body, { text: "from this tab, more", seq: 4 });
  assert.equal(server.get("conv-1").text, "from this tab, more");
});

test("discardMine takes the server's version", async () => {
  const { server, c, clock } = await started();
  const d = c.drafts("conv-1");
  await d.get();
  server.put("conv-1", { text: "theirs", seq: 2 });
  d.set("mine");
  await clock.advance(400);
  await until(() => d.conflict !== null);
  const shown = d.discardMine();
  assert.equal(shown.text, "theirs");
  assert.equal(d.seq, 2);
  d.set("theirs, edited");
  await d.flush();
  assert.equal(server.get("conv-1").text, "theirs, edited");
});

test("clear() deletes with the current seq; a late save from another tab cannot revive it", async () => {
  const { server, c, clock } = await started();
  const d = c.drafts("conv-1");
  await d.get();
  d.set("send me");
  await clock.advance(400);
  await until(() => d.seq === 1);
  assert.equal(await d.clear(), true);
  const del = server.calls.find((x) => x.method === "DELETE");
  assert.equal(del.query.seq, "1");
  assert.equal(server.get("conv-1").deleted, true);
  // Another tab still at seq 1 saves late: refused with a conflict, draft stays deleted.
  const other = await client(Sessiond, server);
  await other.c.start();
  const od = other.c.drafts("conv-1");
  od.seq = 1;
  const seen = [];
  other.c.on("conflict", (e) => seen.push(e));
  od.set("send me, late");
  await od.flush();
  assert.equal(seen.length, 1);
  assert.equal(server.get("conv-1").deleted, true);
});

test("switching conversation flushes the pending save of the previous one", async () => {
  const { server, c } = await started();
  const a = c.drafts("conv-a");
  await a.get();
  a.set("typed in A");
  const b = c.drafts("conv-b");
  await b.get();
  await until(() => server.get("conv-a")?.text === "typed in A", "A flushed on switch");
  assert.equal((await c.drafts("conv-b").get()).text, "");
  assert.equal((await c.drafts("conv-a").get()).text, "typed in A");
});

test("pagehide sends pending text with fetch keepalive", async () => {
  const { server, c, win } = await started();
  const d = c.drafts("conv-1");
  await d.get();
  d.set("leaving now");
  win.fire("pagehide");
  const put = puts(server).at(-1);
  assert.ok(put, "the PUT started synchronously inside the handler");
  assert.equal(put.init.keepalive, true);
  assert.equal(put.body.text, "leaving now");
});

test("a 401 emits ended, keeps the text locally, and uploads it after sign-in", async () => {
  const { server, c, clock, storage } = await started();
  const ended = [];
  c.on("ended", (e) => ended.push(e.reason));
  const d = c.drafts("conv-1");
  await d.get();
  server.live = false;
  d.set("long message typed while expired");
  await clock.advance(400);
  await until(() => ended.length === 1, "ended");
  assert.deepEqual(ended, ["idle_timeout"]);
  d.set("long message typed while expired, and more");
  await clock.advance(400);
  await until(() => storage.length === 1, "local copy");
  assert.equal(d.text, "long message typed while expired, and more", "the text stays");
  server.live = true;
  await c.signIn("ticket");
  await until(() => server.get("conv-1")?.text === "long message typed while expired, and more", "uploaded after sign-in");
});

test("local copy from an earlier page is uploaded after sign-in; another principal never sees it", async () => {
  const server = new FakeServer();
  const first = await client(Sessiond, server);
  await first.c.start();
  const d = first.c.drafts("conv-9");
  await d.get();
  server.down = true;
  d.set("offline words");
  await first.clock.advance(400);
  await until(() => first.storage.length === 1, "local copy");
  await first.c.close();
  server.down = false;

  // Bob opens the same browser (same storage): sees nothing of Alice's.
  server.principal = "user:bob";
  const bob = await client(Sessiond, server, { storage: first.storage, blobs: first.blobs });
  await bob.c.start();
  assert.equal((await bob.c.drafts("conv-9").get()).text, "");
  assert.deepEqual(await bob.c.listDrafts(), []);
  assert.equal(server.get("conv-9"), undefined);

  // Alice signs in later: her copy goes to the server.
  server.principal = "user:alice";
  const alice = await client(Sessiond, server, { storage: first.storage, blobs: first.blobs });
  await alice.c.start();
  await until(() => server.get("conv-9")?.text === "offline words", "upload");
  assert.deepEqual(await alice.c.listDrafts(), ["conv-9"]);
});

test("signOut removes the principal's local copies", async () => {
  const { c, clock, storage, blobs, server } = await started();
  const d = c.drafts("conv-1");
  await d.get();
  d.set("x");
  await d.attach("voice.webm", new Blob(["clip"], { type: "audio/webm;codecs=opus" }));
  await clock.advance(400);
  await until(() => server.get("conv-1")?.attachments.length === 1);
  const att = server.calls.find((x) => x.path.endsWith("/attachments/voice.webm"));
  assert.equal(att.init.headers["content-type"], "audio/webm");
  await until(() => storage.length === 1 && blobs.m.size === 1);
  await c.signOut();
  assert.equal(storage.length, 0);
  assert.equal(blobs.m.size, 0);
  assert.equal(c.endedReason, "signed_out");
});

test("the fetch wrapper turns a 401 into ended and returns the response", async () => {
  const server = new FakeServer();
  const ended = [];
  const env = await client(Sessiond, server, {
    fetch: (url, init) => (String(url).includes("/demo/") ? Promise.resolve(new Response(JSON.stringify({ code: "session_expired", reason: "revoked" }), { status: 401 })) : server.fetch(url, init)),
  });
  await env.c.start();
  env.c.on("ended", (e) => ended.push(e.reason));
  const res = await env.c.fetch("http://app.test/demo/api/messages", { method: "POST" });
  assert.equal(res.status, 401);
  assert.deepEqual(ended, ["revoked"]);
});
