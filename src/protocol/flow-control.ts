import { MAX_WINDOW } from './constants.js';

/**
 * Credit this side may spend sending DATA (PROTOCOL.md §7). One per session plus one per connection;
 * a DATA frame needs room in both.
 */
export class SendCredit {
  constructor(private available: number) {}

  get bytes(): number {
    return this.available;
  }

  consume(n: number): void {
    this.available -= n;
  }

  /** Adds a WINDOW_UPDATE increment; false when it is 0 or would overflow 2^31-1 (a peer fault). */
  grant(increment: number): boolean {
    if (!grantable(this.available, increment)) return false;
    this.available += increment;
    return true;
  }
}

/** Whether a WINDOW_UPDATE may add `increment` to `available` credit: not 0, not past 2^31-1 (else a peer fault). */
export function grantable(available: number, increment: number): boolean {
  return increment > 0 && available + increment <= MAX_WINDOW;
}

/**
 * Credit this side has granted its peer. `receive` enforces it; `release` is called as received bytes
 * are consumed and says when to send a WINDOW_UPDATE: once at least half the initial window is owed,
 * so updates are batched instead of one per frame. Since max_payload is at most half of every initial
 * window (PROTOCOL.md §7), a peer with nothing in flight then always has credit for one more message.
 */
export class ReceiveCredit {
  private remaining: number;
  private owed = 0;

  constructor(private readonly initial: number) {
    this.remaining = initial;
  }

  /** Accounts for `n` received bytes; false when the peer overran the window. */
  receive(n: number): boolean {
    if (n > this.remaining) return false;
    this.remaining -= n;
    return true;
  }

  /** Marks `n` bytes consumed; returns the increment to send now, or 0 to keep batching. */
  release(n: number): number {
    this.owed += n;
    if (this.owed < this.initial / 2) return 0;
    const increment = this.owed;
    this.owed = 0;
    this.remaining += increment;
    return increment;
  }
}
