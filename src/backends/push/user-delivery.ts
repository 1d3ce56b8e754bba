/**
 * Pushes to users, through the backend kit's inbox (src/backends/kit/inbox, docs/inbox.md): the one
 * "deliver to a user's devices wherever they are, and keep it for them while they are offline" that IM
 * uses too. A push with a TTL is an inbox entry (collapse key, expiry, the push id as ref and dedupe
 * key); an online-only push is a transient published to the user's online devices. Either way the
 * kit's delivery ledger counts it per user: targeted, delivered (one of the user's devices acknowledged
 * it), collapsed, pending, expired.
 *
 * Entry bodies and transient payloads are `[priority byte][PushEvent]`: the device's node must know the
 * DATA priority without decoding the event.
 */
import type { Priority } from '../../protocol/constants.js';
import type { InboxHub, DeliveryLedger, RefStats } from '../kit/inbox/index.js';
import type { PushRecord } from './store.js';

/**
 * `[priority][event]`, as entries and transients carry a push. A body to be `stored` gets memory of its
 * own: the inbox keeps it for a long time and would otherwise copy it out of Node's shared pool.
 */
export function framePush(priority: Priority, event: Buffer, stored = false): Buffer {
  const body = stored ? Buffer.allocUnsafeSlow(event.length + 1) : Buffer.allocUnsafe(event.length + 1);
  body[0] = priority;
  event.copy(body, 1);
  return body;
}

/** The priority and event of a framed push. */
export function unframePush(body: Buffer): { priority: Priority; event: Buffer } {
  return { priority: (body[0] ?? 1) as Priority, event: body.subarray(1) };
}

export class UserDelivery {
  constructor(
    readonly hub: InboxHub,
    readonly ledger: DeliveryLedger,
  ) {}

  /** Stores (TTL) or publishes (online only) `event` for each user, each of them targeted. */
  async deliver(record: PushRecord, users: readonly string[], event: Buffer, nowMs: number): Promise<void> {
    const body = framePush(record.priority, event, record.ttlS > 0);
    if (record.ttlS > 0) {
      await this.hub.deliverMany(users, {
        body,
        ref: record.id,
        collapseKey: record.collapseKey,
        expiresAtMs: record.expiresAtMs,
        dedupeKey: record.id,
      });
    } else {
      // Not stored: counted as targeted first, so an ack can never come before its target.
      await this.ledger.target(record.id, users, record.expiresAtMs, nowMs);
      await Promise.all(users.map((user) => this.hub.publish(user, body)));
    }
  }

  stats(id: string, nowMs: number): Promise<RefStats | null> {
    return this.ledger.stats(id, nowMs);
  }
}
