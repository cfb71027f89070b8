/** The clock and timers the SDK uses; tests pass a fake one. */
export interface Clock {
    now(): number;
    setTimeout(fn: () => void, ms: number): unknown;
    clearTimeout(id: unknown): void;
}
export declare const realClock: Clock;
/**
 * Calls `fn` once `wait` ms have passed without another `call()`, but never later than
 * `maxWait` ms after the first call of a burst, so continuous typing still saves.
 */
export declare class Debouncer {
    private readonly fn;
    private readonly wait;
    private readonly maxWait;
    private readonly clock;
    private timer;
    private first;
    constructor(fn: () => void, wait: number, maxWait: number, clock: Clock);
    get pending(): boolean;
    call(): void;
    cancel(): void;
}
/**
 * Delay before reconnect attempt `attempt` (0-based): a random value in [cap/2, cap]
 * where cap = min(maxMs, baseMs * 2^attempt). The random half spreads out the
 * reconnects of many clients after a server restart.
 */
export declare function backoffDelay(attempt: number, baseMs: number, maxMs: number, random: () => number): number;
/** A 53-bit non-cryptographic hash (cyrb53), used only to notice unchanged text. */
export declare function hash(s: string): string;
