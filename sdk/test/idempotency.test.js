import { test } from "node:test";
import assert from "node:assert/strict";
import { idempotencyKey } from "../dist/sessiond.js";

test("idempotency keys come from getRandomValues, never Math.random", () => {
  const real = Math.random;
  Math.random = () => {
    throw new Error("Math.random must not make an Idempotency-Key");
  };
  try {
    let calls = 0;
    const c = {
      getRandomValues(a) {
        calls++;
        return globalThis.crypto.getRandomValues(a);
      },
    };
    const a = idempotencyKey(c);
    const b = idempotencyKey(c);
    assert.equal(calls, 2);
    assert.match(a, /^[0-9a-f]{32}$/, "128 bits, valid header characters");
    assert.notEqual(a, b);
  } finally {
    Math.random = real;
  }
});

test("the SDK sources never use Math.random for keys", async () => {
  const { readFile } = await import("node:fs/promises");
  const src = await readFile(new URL("../src/sessiond.ts", import.meta.url), "utf8");
  const code = src.split("\n").filter((l) => !/^\s*(\*|\/\/|\/\*)/.test(l));
  const lines = code.filter((l) => l.includes("Math.random"));
  // The only use left is the reconnect jitter default (not a secret).
  assert.ok(lines.every((l) => l.includes("random: o.random ?? Math.random")), lines.join("\n"));
});
