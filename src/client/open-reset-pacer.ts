/**
 * Below the server's own limit by this factor: frames sent evenly can still arrive bunched (Nagle, a
 * congested path), and the server judges arrival times. Overrunning costs every session on the
 * connection (GOAWAY RATE_LIMITED), a little headroom costs nothing.
 */
const HEADROOM = 0.9;

/**
 * Paces OPEN and RESET frames under WELCOME's `max_open_rate` (PROTOCOL.md: one token bucket for both,
 * burst = rate per second). Instead of refusing, it hands out send times: the client delays the frame.
 *
 * Guarantees: delays are non-decreasing in call order, so paced frames keep their order; a burst of
 * up to 90% of the rate goes out at once; after that frames leave at 90% of the rate.
 */
export class OpenResetPacer {
  private readonly ratePerMs: number;
  private readonly burst: number;
  /** May go negative: the debt later frames wait out. */
  private tokens: number;
  private last: number;

  constructor(ratePerSecond: number, now = performance.now()) {
    this.burst = Math.max(1, ratePerSecond * HEADROOM);
    this.ratePerMs = this.burst / 1000;
    this.tokens = this.burst;
    this.last = now;
  }

  /** Reserves the slot of one frame and returns how long to hold it, in ms (0 = send now). */
  reserve(now = performance.now()): number {
    this.tokens = Math.min(this.burst, this.tokens + (now - this.last) * this.ratePerMs);
    this.last = now;
    this.tokens -= 1;
    return this.tokens >= 0 ? 0 : Math.ceil(-this.tokens / this.ratePerMs);
  }
}
