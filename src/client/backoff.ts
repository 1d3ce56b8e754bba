/** Settings of {@link Backoff}. */
export interface BackoffOptions {
  /** Base of the first delay when the failure brings no delay of its own, in ms. */
  readonly initialMs: number;
  /** Cap of the exponential growth, in ms. */
  readonly maxMs: number;
  /** Uniform source in [0, 1); injectable so tests can pin the jitter. */
  readonly random?: () => number;
}

/** A connection (or reopened session) that stayed up this long resets its backoff (PROTOCOL.md §10). */
export const BACKOFF_RESET_AFTER_MS = 60_000;

/** Doubling stops here: 2^30 × any sane base is far over any cap, and 2^n must stay finite. */
const MAX_EXPONENT = 30;

/**
 * Reconnect delays: exponential backoff with full jitter (PROTOCOL.md, client reconnect guidance).
 * Delay number n (0-based, counted since the last {@link reset}) is uniform in
 * `[0, min(maxMs, base × 2^n))`, where `base` is the delay the failure's code asks for, or `initialMs`.
 *
 * Full jitter rather than "equal jitter" (src/backends/backoff.ts): after a proxy restart every client of
 * it reconnects at once; spreading them over the whole interval flattens that herd best, and a client
 * app, unlike a proxy, has no reason to keep a floor under the delay.
 *
 * Guarantees: every delay is an integer in `[0, maxMs)`; the bound doubles per call up to `maxMs`;
 * `reset()` returns to the first bound.
 */
export class Backoff {
  private attempts = 0;
  private readonly random: () => number;

  constructor(private readonly options: BackoffOptions) {
    this.random = options.random ?? Math.random;
  }

  /** Delays handed out since the last reset. */
  get attempt(): number {
    return this.attempts;
  }

  /** Upper bound (exclusive) of the next delay for `baseMs`, without consuming an attempt. */
  ceiling(baseMs = this.options.initialMs): number {
    return Math.min(this.options.maxMs, baseMs * 2 ** Math.min(this.attempts, MAX_EXPONENT));
  }

  /** The next delay in ms; counts one attempt. `baseMs` defaults to `initialMs`. */
  next(baseMs = this.options.initialMs): number {
    const delay = Math.floor(this.random() * this.ceiling(baseMs));
    this.attempts += 1;
    return delay;
  }

  /** Starts over from the first delay (called once a connection proved stable). */
  reset(): void {
    this.attempts = 0;
  }
}
