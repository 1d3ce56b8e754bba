/**
 * The bounded buffers of one room between a send's acceptance and its sequence number (issue 4: "a
 * bounded ring buffer per room and priority"). The room takes messages out system first, then high,
 * then low, each in arrival order, so one sender's messages of one priority keep their order and the
 * room still hands out one seq order for everyone.
 *
 * When a priority's buffer is full:
 * - low drops its OLDEST message to make room for the new one. Low is barrage and likes: what matters
 *   to viewers is what is happening now, and the oldest waiting message is the stalest one; dropping
 *   the head also bounds how late any low message that does get out can be (bound / drain rate), where
 *   dropping the tail would keep publishing a full buffer of ever older messages through an overload.
 * - high and system refuse the NEW message: their senders are told at once and can retry, and what
 *   was already accepted keeps its place. System is never dropped once accepted; its bound is meant to
 *   be generous, and refusing beyond it is backpressure, not loss.
 *
 * The rings are Deques, which grow on demand up to the bound: an idle room holds a few slots, not the
 * bound's worth.
 */
import { Priority } from '../../protocol/constants.js';
import { Deque } from '../../util/deque.js';

/** The most messages that may wait in one room, per priority. */
export interface RoomBufferBounds {
  readonly system: number;
  readonly high: number;
  readonly low: number;
}

/** What `offer` did with a message. */
export type OfferOutcome<T> =
  | { readonly kind: 'queued' }
  /** Queued after dropping `dropped`, the oldest low message. */
  | { readonly kind: 'queued_dropping'; readonly dropped: T }
  /** Not queued: its buffer (high or system) is full. */
  | { readonly kind: 'refused' };

const QUEUED = { kind: 'queued' } as const;
const REFUSED = { kind: 'refused' } as const;

export class RoomBuffer<T> {
  /** Indexed by Priority (system 0, high 1, low 2). */
  private readonly rings: readonly Deque<T>[] = [new Deque<T>(), new Deque<T>(), new Deque<T>()];
  private readonly bounds: readonly number[];
  private total = 0;

  /** Every bound must be a positive integer (the caller validated it). */
  constructor(bounds: RoomBufferBounds) {
    this.bounds = [bounds.system, bounds.high, bounds.low];
  }

  /** Queues `item` at `priority`, applying the drop policy above when its buffer is full. */
  offer(item: T, priority: Priority): OfferOutcome<T> {
    const ring = this.rings[priority]!;
    if (ring.length < this.bounds[priority]!) {
      ring.push(item);
      this.total++;
      return QUEUED;
    }
    if (priority !== Priority.LOW) return REFUSED;
    const dropped = ring.shift() as T;
    ring.push(item);
    return { kind: 'queued_dropping', dropped };
  }

  /** Removes and returns the next message to sequence: the oldest of the most important priority waiting. */
  take(): T | undefined {
    for (const ring of this.rings) {
      if (ring.length > 0) {
        this.total--;
        return ring.shift();
      }
    }
    return undefined;
  }

  /** Messages waiting at `priority`. */
  waiting(priority: Priority): number {
    return this.rings[priority]!.length;
  }

  /** Messages waiting at every priority. */
  get length(): number {
    return this.total;
  }
}
