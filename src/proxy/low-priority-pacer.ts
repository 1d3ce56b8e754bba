import { Priority } from '../protocol/constants.js';
import type { DropReason, OutboundQueue } from './outbound-queue.js';
import { TokenBucket } from '../util/token-bucket.js';

/** What the pacer needs from a session: a way to send held low messages, merged, when a frame is allowed. */
export interface PacedSession {
  sendLowMerged(messages: Buffer[]): void;
}

/**
 * One connection's cap on low-priority DATA frames per second (PROTOCOL.md §8): a screen shows about
 * 20 messages a second, so more frames only cost battery and bandwidth. Within the cap a low message
 * leaves at once as its own frame. Over it, messages are held per session and sent merged, one BATCH
 * frame per session each time the cap allows a frame; a session holds at most `mergeMax` (older excess
 * is dropped and counted). Clients that cannot unpack batches lose the excess instead (counted).
 * Held bytes count against the connection's outbound bound.
 */
export class LowPriorityPacer {
  private readonly bucket: TokenBucket;
  /** Insertion order gives the sessions their turns fairly. */
  private readonly held = new Map<PacedSession, Buffer[]>();

  constructor(
    rate: number,
    private readonly mergeMax: number,
    private readonly acceptsBatch: boolean,
    private readonly out: OutboundQueue,
    private readonly drop: (reason: DropReason) => void,
  ) {
    this.bucket = new TokenBucket(rate, rate);
  }

  /** True: send `payload` now as a plain low frame. False: the pacer held or dropped it. */
  admit(session: PacedSession, payload: Buffer): boolean {
    if (this.held.size === 0 && this.bucket.take()) return true;
    if (!this.acceptsBatch) {
      this.drop('rate_capped');
      return false;
    }
    if (this.out.admit(payload.length, Priority.LOW) !== 'ok') {
      this.drop('queue_full');
      return false;
    }
    let messages = this.held.get(session);
    if (!messages) this.held.set(session, (messages = []));
    messages.push(payload);
    this.out.hold(payload.length);
    if (messages.length > this.mergeMax) {
      this.out.unhold(messages.shift()!.length);
      this.drop('merge_overflow');
    }
    clock.add(this);
    return false;
  }

  /** Sends held messages, one merged frame per session, as far as the cap allows. False when none is left. */
  release(): boolean {
    for (const [session, messages] of this.held) {
      if (!this.bucket.take()) return true;
      this.held.delete(session);
      let bytes = 0;
      for (const m of messages) bytes += m.length;
      this.out.unhold(bytes);
      session.sendLowMerged(messages);
    }
    return false;
  }

  /** The session ended: its held messages go with it, counted. */
  forget(session: PacedSession): void {
    const messages = this.held.get(session);
    if (!messages) return;
    this.held.delete(session);
    for (const m of messages) {
      this.out.unhold(m.length);
      this.drop('session_closed');
    }
  }

  close(): void {
    this.held.clear();
    clock.remove(this);
  }
}

const TICK_MS = 10;

/**
 * One timer for every pacer holding messages, instead of one per connection: under a room-wide flood
 * of low messages thousands of connections hold some at once.
 */
class PacerClock {
  private readonly active = new Set<LowPriorityPacer>();
  private timer: NodeJS.Timeout | null = null;

  add(pacer: LowPriorityPacer): void {
    this.active.add(pacer);
    this.timer ??= setInterval(() => this.tick(), TICK_MS);
  }

  remove(pacer: LowPriorityPacer): void {
    this.active.delete(pacer);
    this.stopIfIdle();
  }

  private tick(): void {
    for (const pacer of this.active) if (!pacer.release()) this.active.delete(pacer);
    this.stopIfIdle();
  }

  private stopIfIdle(): void {
    if (this.active.size > 0 || !this.timer) return;
    clearInterval(this.timer);
    this.timer = null;
  }
}

const clock = new PacerClock();
