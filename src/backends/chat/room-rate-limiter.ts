/**
 * The upstream message limit of one room (issue 4, seeds 001/003): one second of burst at
 * `ratePerSecond`, where low-priority messages may only take a token while more than `lowReserve` (half
 * the burst) are left. Under a flood of low messages the reserve stays for high ones, so low is
 * discarded before high; system messages (and privileged senders) are always admitted and take a token
 * when one is there, so they still count toward the room's load.
 */
import { Priority } from '../../protocol/constants.js';
import { TokenBucket } from '../../util/token-bucket.js';

export class RoomRateLimiter {
  private readonly bucket: TokenBucket;
  private readonly lowReserve: number;

  constructor(
    readonly ratePerSecond: number,
    now = performance.now(),
  ) {
    this.bucket = new TokenBucket(ratePerSecond, Math.max(1, ratePerSecond), now);
    this.lowReserve = this.bucket.burst / 2;
  }

  /** True when a message of `priority` may enter the room now; `privileged` senders always may. */
  admit(priority: Priority, privileged: boolean, now = performance.now()): boolean {
    if (privileged || priority === Priority.SYSTEM) {
      this.bucket.force(now);
      return true;
    }
    return this.bucket.take(now, priority === Priority.LOW ? this.lowReserve : 0);
  }
}
