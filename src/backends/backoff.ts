/** Reconnect delays of a backend link. */
export interface BackoffOptions {
  /** Base delay of the first retry, in ms. */
  initialMs: number;
  /** Cap of the exponential growth, in ms. */
  maxMs: number;
}

/** Defaults for a proxy→backend link: peers share a data centre, so start fast and cap low. */
export const DEFAULT_BACKOFF: Readonly<BackoffOptions> = Object.freeze({ initialMs: 200, maxMs: 5_000 });

/**
 * Delay before retry number `attempt` (0-based): `d = min(maxMs, initialMs × 2^attempt)`, then
 * "equal jitter": uniformly in [d/2, d].
 *
 * Why equal jitter rather than the full jitter clients use (PROTOCOL.md): every proxy of a fleet
 * reconnects to the same endpoint at once when it comes back, so the delays must spread; but a dead
 * endpoint should not be retried in a near-zero loop either, which full jitter allows. `random` is
 * injectable for tests.
 */
export function backoffDelay(attempt: number, opts: BackoffOptions, random: () => number = Math.random): number {
  const ceiling = Math.min(opts.maxMs, opts.initialMs * 2 ** Math.min(attempt, 30));
  return Math.round(ceiling / 2 + random() * (ceiling / 2));
}
