/** Settings of {@link Backoff}. */
export interface BackoffOptions {
  /** Base of the first delay when the caller brings no base of its own, in ms. */
  readonly initialMs: number;
  /** Cap of the exponential growth, in ms. */
  readonly maxMs: number;
  /**
   * How a delay is drawn under its bound `d`: `full` uniformly in [0, d) (the default), `equal`
   * uniformly in [d/2, d].
   *
   * Full jitter suits clients: after a proxy restart every client reconnects at once, and spreading them
   * over the whole interval flattens that herd best. Equal jitter suits a proxy's links to its backends:
   * every proxy of a fleet reconnects to an endpoint that comes back, so delays must spread, but a dead
   * endpoint should not be retried in a near-zero loop either, which full jitter allows.
   */
  readonly jitter?: 'full' | 'equal';
  /** Uniform source in [0, 1); injectable so tests can pin the jitter. */
  readonly random?: () => number;
}

/** Doubling stops here: 2^30 × any sane base is far over any cap, and 2^n must stay finite. */
const MAX_EXPONENT = 30;

/**
 * Exponential backoff with jitter, the one implementation for the SDK's reconnects and reopens
 * (PROTOCOL.md §10) and the proxy's backend links. Delay number n (0-based, counted since the last
 * {@link reset}) has the bound `min(maxMs, base × 2^n)`, where `base` is what the caller passes (e.g.
 * the delay a failure's code asks for) or `initialMs`.
 *
 * Guarantees: every delay is an integer no greater than `maxMs` (below it for full jitter); the bound
 * doubles per call up to `maxMs`; `reset()` returns to the first bound.
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

  /** Bound of the next delay for `baseMs`, without consuming an attempt. */
  ceiling(baseMs = this.options.initialMs): number {
    return Math.min(this.options.maxMs, baseMs * 2 ** Math.min(this.attempts, MAX_EXPONENT));
  }

  /** The next delay in ms; counts one attempt. `baseMs` defaults to `initialMs`. */
  next(baseMs = this.options.initialMs): number {
    const bound = this.ceiling(baseMs);
    this.attempts += 1;
    if (this.options.jitter === 'equal') return Math.round(bound / 2 + this.random() * (bound / 2));
    return Math.floor(this.random() * bound);
  }

  /** Starts over from the first delay (called once a connection proved stable). */
  reset(): void {
    this.attempts = 0;
  }
}
