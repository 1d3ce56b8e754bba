/**
 * The upstream message limit of one room (issue 4, seeds 001/003): a token bucket refilled at
 * `ratePerSecond` with one second of burst, where low-priority messages may only take a token while more
 * than `lowReserve` (half the burst by default) are left. Under a flood of low messages the reserve stays
 * for high ones, so low is discarded before high; system messages (and privileged senders) are always
 * admitted and take a token when one is there, so they still count toward the room's load.
 */
import { Priority } from '../../protocol/constants.js';

export class RoomRateLimiter {
  private tokens: number;
  private last: number;
  private readonly burst: number;
  private readonly lowReserve: number;

  constructor(
    readonly ratePerSecond: number,
    now = performance.now(),
  ) {
    this.burst = Math.max(1, ratePerSecond);
    this.lowReserve = this.burst / 2;
    this.tokens = this.burst;
    this.last = now;
  }

  /** True when a message of `priority` may enter the room now; `privileged` senders always may. */
  admit(priority: Priority, privileged: boolean, now = performance.now()): boolean {
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) / 1000) * this.ratePerSecond);
    this.last = now;
    if (privileged || priority === Priority.SYSTEM) {
      this.tokens = Math.max(0, this.tokens - 1);
      return true;
    }
    const floor = priority === Priority.LOW ? this.lowReserve + 1 : 1;
    if (this.tokens < floor) return false;
    this.tokens -= 1;
    return true;
  }
}
