/**
 * A token bucket refilled continuously at `ratePerSecond`, holding at most `burst` tokens: the one rate
 * limiter of the code base (the proxy's OPEN/RESET and reply flood guards, REFRESH pacing, open rates per
 * route and per user, the low-priority cap, the Chat backend's room and user limits, the SDK's OPEN/RESET
 * pacing). Cheap enough to keep one per
 * connection: three numbers and no timer.
 *
 * Guarantees: the tokens never exceed `burst`; {@link take} never lets them go below 0; only
 * {@link reserve} borrows, and what it borrows is paid back by later refills before anything else.
 */
export class TokenBucket {
  private tokens: number;
  private last: number;

  constructor(
    readonly ratePerSecond: number,
    readonly burst: number,
    now = performance.now(),
  ) {
    this.tokens = burst;
    this.last = now;
  }

  /**
   * Takes one token if more than `keep` would be left afterwards counting it (`keep` 0: any whole
   * token); false, taking nothing, otherwise. A caller keeps a reserve for more important traffic by
   * passing it as `keep`.
   */
  take(now = performance.now(), keep = 0): boolean {
    this.refill(now);
    if (this.tokens < 1 + keep) return false;
    this.tokens -= 1;
    return true;
  }

  /** Takes one token if there is one, and admits regardless: traffic that must pass but still counts as load. */
  force(now = performance.now()): void {
    this.refill(now);
    this.tokens = Math.max(0, this.tokens - 1);
  }

  /**
   * Takes one token now, borrowing when the bucket is empty, and returns how long to wait (ms) until
   * the borrowed token has been refilled: 0 = go now. Successive reservations return non-decreasing
   * waits, so paced items keep their order.
   */
  reserve(now = performance.now()): number {
    this.refill(now);
    this.tokens -= 1;
    return this.tokens >= 0 ? 0 : Math.ceil((-this.tokens * 1000) / this.ratePerSecond);
  }

  /** Whether the bucket holds `burst` tokens again: it is then indistinguishable from a new one. */
  full(now = performance.now()): boolean {
    this.refill(now);
    return this.tokens >= this.burst;
  }

  private refill(now: number): void {
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) / 1000) * this.ratePerSecond);
    this.last = now;
  }
}
