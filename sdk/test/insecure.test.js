// A page that is not a secure context (plain-HTTP intranet): the browser withholds
// crypto.subtle but keeps getRandomValues. Local copies must still be kept, encrypted so
// the next person never reads them, and a copy is never claimed before it was written.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash, createHmac, webcrypto } from "node:crypto";
import { LocalStore, Sessiond, importLocalKey } from "../dist/sessiond.js";
import { hmac, sha256 } from "../dist/hmac.js";
import { FakeClock, FakeServer, MemBlobs, MemStorage, client, until } from "./helpers.js";

/** What a non-secure page's `crypto` looks like. */
const insecureCrypto = { getRandomValues: (a) => webcrypto.getRandomValues(a), subtle: undefined };
const key = () => Buffer.from(webcrypto.getRandomValues(new Uint8Array(32))).toString("base64");

test("sha256 and hmac match node's for lengths across block boundaries", () => {
  for (const n of [0, 1, 55, 56, 63, 64, 65, 119, 120, 1000, 4097]) {
    const data = webcrypto.getRandomValues(new Uint8Array(n));
    assert.equal(Buffer.from(sha256(data)).toString("hex"), createHash("sha256").update(data).digest("hex"), `sha256 of ${n} bytes`);
    const k = webcrypto.getRandomValues(new Uint8Array(32));
    assert.equal(Buffer.from(hmac(k, data.subarray(0, n >> 1), data.subarray(n >> 1))).toString("hex"), createHmac("sha256", k).update(data).digest("hex"), `hmac of ${n} bytes`);
  }
  assert.equal(Buffer.from(sha256(new TextEncoder().encode("abc"))).toString("hex"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
});

test("without WebCrypto the same key gives the same slots, and copies are encrypted per principal", async () => {
  const raw = key();
  const secure = await importLocalKey(webcrypto.subtle, "user:alice", raw);
  const alice = await importLocalKey(undefined, "user:alice", raw);
  assert.equal(alice.prefix, secure.prefix, "slot names do not depend on the context");
  const bob = await importLocalKey(undefined, "user:bob", key());
  const kv = new MemStorage();
  const blobs = new MemBlobs();
  const store = new LocalStore(kv, blobs, insecureCrypto, new FakeClock(), 86_400_000);
  assert.equal(await store.write(alice, "conv-1", { text: "secret reply", seq: 3, p: true, atts: [] }), true);
  assert.deepEqual(await store.read(alice, "conv-1"), { text: "secret reply", seq: 3, p: true, atts: [] });
  assert.equal(await store.read(bob, "conv-1"), null);
  const raw1 = [...kv.m.entries()].join(" ");
  assert.ok(!raw1.includes("secret") && !raw1.includes("alice"), "storage holds neither the text nor the principal");

  // Moved to another principal's slot, or altered by one bit: it does not open.
  const [[slot, val]] = [...kv.m.entries()];
  kv.setItem(slot.replace(alice.prefix, bob.prefix), val);
  assert.equal(await store.read(bob, "conv-1"), null);
  const rec = JSON.parse(val);
  const ct = Buffer.from(rec.ct, "base64");
  ct[0] ^= 1;
  kv.setItem(slot, JSON.stringify({ ...rec, ct: ct.toString("base64") }));
  assert.equal(await store.read(alice, "conv-1"), null, "a tampered copy is refused");

  await store.putBlob(alice, "c", "voice.webm", new Blob(["OPUSDATA"], { type: "audio/webm" }));
  assert.equal(await (await store.getBlob(alice, "c", "voice.webm")).text(), "OPUSDATA");
  assert.equal(await store.getBlob(bob, "c", "voice.webm"), null);
  assert.ok(![...blobs.m.values()].some((b) => Buffer.from(b.data).toString().includes("OPUS")));
});

test("without WebCrypto, text typed after the session ended is kept on the device and uploaded after sign-in", async () => {
  const server = new FakeServer();
  const first = await client(Sessiond, server, { crypto: insecureCrypto });
  await first.c.start();
  assert.equal(first.c.localCopies, true, "a local copy is kept without WebCrypto");
  const local = [];
  first.c.on("draft_local", (e) => local.push(e));
  const d = first.c.drafts("conv-1");
  await d.get();
  server.live = false;
  d.set("typed while revoked");
  await first.clock.advance(400);
  await until(() => first.c.ended, "ended");
  await until(() => local.some((e) => e.saved), "reported saved on this device");
  assert.equal(d.savedLocally, true);
  assert.equal(first.storage.length, 1);
  assert.ok(![...first.storage.m.values()].join().includes("typed while"), "encrypted");
  await first.c.close();
  server.live = true;

  // The next person on this browser sees nothing of it.
  server.principal = "user:bob";
  const bob = await client(Sessiond, server, { crypto: insecureCrypto, storage: first.storage, blobs: first.blobs });
  await bob.c.start();
  assert.equal((await bob.c.drafts("conv-1").get()).text, "");
  assert.deepEqual(await bob.c.listDrafts(), []);

  // A reload, then the same person signs in: the text comes back and reaches the server.
  server.principal = "user:alice";
  const again = await client(Sessiond, server, { crypto: insecureCrypto, storage: first.storage, blobs: first.blobs });
  await again.c.start();
  await until(() => server.get("conv-1")?.text === "typed while revoked", "uploaded");
});

test("with no storage, a copy is never reported as saved", async () => {
  const server = new FakeServer();
  const { c, clock } = await client(Sessiond, server, { crypto: insecureCrypto, storage: null });
  await c.start();
  assert.equal(c.localCopies, false);
  const local = [];
  c.on("draft_local", (e) => local.push(e));
  const d = c.drafts("conv-1");
  await d.get();
  server.live = false;
  d.set("nowhere to keep this");
  await clock.advance(400);
  await until(() => c.ended && local.length > 0, "local outcome reported");
  assert.ok(local.every((e) => e.saved === false), "never claims a save that did not happen");
  assert.equal(d.savedLocally, false);
});
