import { test } from "node:test";
import assert from "node:assert/strict";
import { Debouncer, backoffDelay } from "../dist/sessiond.js";
import { FakeClock } from "./helpers.js";

test("debounce collapses a burst into one call after the quiet period", async () => {
  const clock = new FakeClock();
  let n = 0;
  const d = new Debouncer(() => n++, 400, 10_000, clock);
  for (let i = 0; i < 5; i++) {
    d.call();
    await clock.advance(100);
  }
  assert.equal(n, 0, "no call while calls keep coming within the wait");
  await clock.advance(399);
  assert.equal(n, 1);
  await clock.advance(5000);
  assert.equal(n, 1, "nothing fires without new calls");
});

test("debounce fires at maxWait during continuous calls", async () => {
  const clock = new FakeClock();
  let n = 0;
  const d = new Debouncer(() => n++, 400, 1000, clock);
  for (let i = 0; i < 30; i++) {
    d.call();
    await clock.advance(100);
  }
  assert.ok(n >= 2 && n <= 3, `expected 2-3 calls in 3 s of typing, got ${n}`);
  d.cancel();
  await clock.advance(5000);
  assert.ok(!d.pending);
});

test("backoff grows exponentially, stays within [cap/2, cap], and caps", () => {
  for (let attempt = 0; attempt < 12; attempt++) {
    const cap = Math.min(30_000, 500 * 2 ** attempt);
    assert.equal(backoffDelay(attempt, 500, 30_000, () => 0), cap / 2);
    assert.equal(backoffDelay(attempt, 500, 30_000, () => 0.999999), Math.round(cap / 2 + (0.999999 * cap) / 2));
    for (let i = 0; i < 50; i++) {
      const d = backoffDelay(attempt, 500, 30_000, Math.random);
      assert.ok(d >= cap / 2 && d <= cap, `attempt ${attempt}: ${d} outside [${cap / 2}, ${cap}]`);
    }
  }
  assert.equal(backoffDelay(100, 500, 30_000, () => 1), 30_000);
});
