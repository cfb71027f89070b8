import { test } from "node:test";
import assert from "node:assert/strict";
import { webcrypto } from "node:crypto";
import { LocalStore, importLocalKey } from "../dist/sessiond.js";
import { FakeClock, MemBlobs, MemStorage } from "./helpers.js";

const key = () => Buffer.from(webcrypto.getRandomValues(new Uint8Array(32))).toString("base64");
const DAY = 86_400_000;

async function setup() {
  const clock = new FakeClock();
  const kv = new MemStorage();
  const blobs = new MemBlobs();
  const store = new LocalStore(kv, blobs, webcrypto, clock, DAY);
  const alice = await importLocalKey(webcrypto.subtle, "user:alice", key());
  const bob = await importLocalKey(webcrypto.subtle, "user:bob", key());
  return { clock, kv, blobs, store, alice, bob };
}

test("local copies are keyed by principal and encrypted", async () => {
  const { kv, store, alice, bob } = await setup();
  await store.write(alice, "conv-1", { text: "secret reply", seq: 3, p: true, atts: [] });
  assert.deepEqual(await store.read(alice, "conv-1"), { text: "secret reply", seq: 3, p: true, atts: [] });
  assert.equal(await store.read(bob, "conv-1"), null, "another principal's copy is never returned");
  assert.deepEqual(store.conversations(bob), []);
  assert.deepEqual(store.conversations(alice), ["conv-1"]);
  const raw = [...kv.m.entries()].join(" ");
  assert.ok(!raw.includes("secret") && !raw.includes("alice"), "storage holds neither the text nor the principal");
});

test("a copy moved into another principal's slot does not open", async () => {
  const { kv, store, alice, bob } = await setup();
  await store.write(alice, "c", { text: "mine", seq: 1, p: true, atts: [] });
  const [[slot, val]] = [...kv.m.entries()];
  kv.setItem(slot.replace(alice.prefix, bob.prefix), val);
  assert.equal(await store.read(bob, "c"), null);
});

test("attachments are encrypted per principal", async () => {
  const { blobs, store, alice, bob } = await setup();
  await store.putBlob(alice, "c", "voice.webm", new Blob(["OPUSDATA"], { type: "audio/webm" }));
  const b = await store.getBlob(alice, "c", "voice.webm");
  assert.equal(await b.text(), "OPUSDATA");
  assert.equal(b.type, "audio/webm");
  assert.equal(await store.getBlob(bob, "c", "voice.webm"), null);
  const [stored] = blobs.m.values();
  assert.ok(!Buffer.from(stored.data).toString().includes("OPUS"));
});

test("confirmed copies expire 24 h after confirmation; pending ones do not", async () => {
  const { clock, kv, store, alice, bob } = await setup();
  await store.write(alice, "sent", { text: "confirmed", seq: 2, p: false, atts: [] });
  await store.write(alice, "unsent", { text: "pending", seq: 2, p: true, atts: [] });
  await store.write(bob, "other", { text: "bob's", seq: 1, p: false, atts: [] });
  await clock.advance(DAY - 1000);
  assert.equal((await store.read(alice, "sent")).text, "confirmed");
  await clock.advance(2000);
  assert.equal(await store.read(alice, "sent"), null, "expired");
  assert.equal((await store.read(alice, "unsent")).text, "pending", "never confirmed: kept");
  await store.sweep();
  assert.equal(kv.length, 1, "sweep removed bob's expired copy without his key");
  assert.deepEqual(store.conversations(alice, true), ["unsent"]);
});

test("removeAll removes one principal's copies only", async () => {
  const { store, alice, bob } = await setup();
  await store.write(alice, "c1", { text: "a", seq: 0, p: true, atts: [] });
  await store.putBlob(alice, "c1", "voice.webm", new Blob(["x"]));
  await store.write(bob, "c1", { text: "b", seq: 0, p: true, atts: [] });
  await store.putBlob(bob, "c1", "voice.webm", new Blob(["y"]));
  await store.removeAll(alice);
  assert.equal(await store.read(alice, "c1"), null);
  assert.equal(await store.getBlob(alice, "c1", "voice.webm"), null);
  assert.equal((await store.read(bob, "c1")).text, "b");
  assert.equal(await (await store.getBlob(bob, "c1", "voice.webm")).text(), "y");
});
