import { TokenBucket } from '../util/token-bucket.js';

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
  private readonly bucket: TokenBucket;

  constructor(ratePerSecond: number, now = performance.now()) {
    const burst = Math.max(1, ratePerSecond * HEADROOM);
    this.bucket = new TokenBucket(burst, burst, now);
  }

  /** Reserves the slot of one frame and returns how long to hold it, in ms (0 = send now). */
  reserve(now = performance.now()): number {
    return this.bucket.reserve(now);
  }
}
