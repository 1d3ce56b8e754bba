import { Code } from '../protocol/codes.js';
import { LivemuxError, ProtocolError } from '../protocol/errors.js';
import { SendCredit } from '../protocol/flow-control.js';

interface Waiter {
  readonly bytes: number;
  readonly onGranted: () => void;
}

/**
 * Credit this client may spend on DATA towards the server (PROTOCOL.md §7), with a FIFO of claims
 * waiting for WINDOW_UPDATE. The client keeps one per connection and one per session; a DATA frame
 * needs room in both.
 *
 * Guarantees:
 * - Credit never goes below 0: {@link take} refuses more than is available.
 * - Claims are served strictly in arrival order. A claim that does not fit blocks every later one, even
 *   smaller ones, and {@link canTake} is false while any claim waits, so nobody overtakes a waiting send.
 * - A claim's callback runs synchronously inside the {@link grant} (or {@link cancel}) that made room,
 *   after its bytes are taken, so the frame can be written at once and frames leave in claim order.
 * - A WINDOW_UPDATE increment of 0, or one that would grow the window past 2^31-1, is a peer fault:
 *   {@link grant} throws a connection-scoped {@link ProtocolError} FLOW_CONTROL_ERROR.
 */
export class SendWindow {
  private readonly credit: SendCredit;
  private readonly waiters: Waiter[] = [];
  /** Set while callbacks run, so a callback that cancels or grants does not serve out of order. */
  private serving = false;

  /**
   * @param initial credit announced by the server (WELCOME limits).
   * @param scope names the window in error messages, e.g. `"connection"` or `"session 3"`.
   */
  constructor(
    initial: number,
    private readonly scope: string,
  ) {
    this.credit = new SendCredit(initial);
  }

  /** Bytes that may be sent now, ignoring waiting claims. */
  get available(): number {
    return this.credit.bytes;
  }

  /** Claims waiting for credit. */
  get waiting(): number {
    return this.waiters.length;
  }

  /** True when `bytes` fit now and no earlier claim is waiting. */
  canTake(bytes: number): boolean {
    return this.waiters.length === 0 && bytes <= this.credit.bytes;
  }

  /**
   * Spends `bytes` at once.
   * @throws LivemuxError ERR_SEND_WINDOW when {@link canTake} is false (an SDK bug: callers check first).
   */
  take(bytes: number): void {
    if (!this.canTake(bytes)) {
      throw new LivemuxError(
        'ERR_SEND_WINDOW',
        `${this.scope} window: cannot take ${bytes} bytes (${this.credit.bytes} available, ${this.waiters.length} waiting)`,
      );
    }
    this.credit.consume(bytes);
  }

  /**
   * Queues a claim for `bytes` when they cannot be taken now; `onGranted` runs once they are taken (never
   * inside this call, so the caller can store the returned handle first). Returns a function that
   * withdraws the claim if it is still waiting; later claims that now fit are then served.
   * @throws LivemuxError ERR_SEND_WINDOW when {@link canTake} is true: use {@link take}.
   */
  wait(bytes: number, onGranted: () => void): () => void {
    if (this.canTake(bytes)) {
      throw new LivemuxError('ERR_SEND_WINDOW', `${this.scope} window: ${bytes} bytes fit now, take them instead of waiting`);
    }
    const waiter: Waiter = { bytes, onGranted };
    this.waiters.push(waiter);
    return () => {
      const i = this.waiters.indexOf(waiter);
      if (i < 0) return;
      this.waiters.splice(i, 1);
      if (i === 0) this.serve();
    };
  }

  /**
   * Adds a WINDOW_UPDATE increment and serves the claims that now fit, in order.
   * @throws ProtocolError FLOW_CONTROL_ERROR (connection-scoped) for 0 or an overflow past 2^31-1.
   */
  grant(increment: number): void {
    if (!this.credit.grant(increment)) {
      throw new ProtocolError(
        Code.FLOW_CONTROL_ERROR,
        increment <= 0
          ? `WINDOW_UPDATE: ${this.scope} increment must be at least 1 (${increment})`
          : `WINDOW_UPDATE: ${this.scope} window overflow (${this.credit.bytes} + ${increment} vs 2^31-1)`,
      );
    }
    this.serve();
  }

  private serve(): void {
    if (this.serving) return;
    this.serving = true;
    try {
      for (let head = this.waiters[0]; head && head.bytes <= this.credit.bytes; head = this.waiters[0]) {
        this.waiters.shift();
        this.credit.consume(head.bytes);
        head.onGranted();
      }
    } finally {
      this.serving = false;
    }
  }
}
