//! Time for the SDK: an injectable clock, a debouncer with a maximum wait, backoff with
//! jitter, and a cheap synchronous text hash.

/** The clock and timers the SDK uses; tests pass a fake one. */
export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(id: unknown): void;
}

export const realClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (id) => clearTimeout(id as ReturnType<typeof setTimeout>),
};

/**
 * Calls `fn` once `wait` ms have passed without another `call()`, but never later than
 * `maxWait` ms after the first call of a burst, so continuous typing still saves.
 */
export class Debouncer {
  private timer: unknown = null;
  private first = 0;
  constructor(
    private readonly fn: () => void,
    private readonly wait: number,
    private readonly maxWait: number,
    private readonly clock: Clock,
  ) {}

  get pending(): boolean {
    return this.timer !== null;
  }

  call(): void {
    const now = this.clock.now();
    if (this.timer === null) this.first = now;
    else this.clock.clearTimeout(this.timer);
    const delay = Math.max(0, Math.min(this.wait, this.first + this.maxWait - now));
    this.timer = this.clock.setTimeout(() => {
      this.timer = null;
      this.fn();
    }, delay);
  }

  cancel(): void {
    if (this.timer !== null) this.clock.clearTimeout(this.timer);
    this.timer = null;
  }
}

/**
 * Delay before reconnect attempt `attempt` (0-based): a random value in [cap/2, cap]
 * where cap = min(maxMs, baseMs * 2^attempt). The random half spreads out the
 * reconnects of many clients after a server restart.
 */
export function backoffDelay(attempt: number, baseMs: number, maxMs: number, random: () => number): number {
  const cap = Math.min(maxMs, baseMs * 2 ** Math.min(attempt, 30));
  return Math.round(cap / 2 + (random() * cap) / 2);
}

/** A 53-bit non-cryptographic hash (cyrb53), used only to notice unchanged text. */
export function hash(s: string): string {
  let h1 = 0xdeadbeef;
  let h2 = 0x41c6ce57;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    h1 = Math.imul(h1 ^ c, 2654435761);
    h2 = Math.imul(h2 ^ c, 1597334677);
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507) ^ Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507) ^ Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  return (4294967296 * (2097151 & h2) + (h1 >>> 0)).toString(36);
}
