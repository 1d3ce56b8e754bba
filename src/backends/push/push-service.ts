/**
 * What the push HTTP API does, without HTTP: accept a push (idempotently by id), address it, store its
 * record, hand it to delivery, and report its counters. The API layer (push-api.ts) validates the JSON
 * shape and the key; everything here is semantics.
 */
import { hash, randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type pino from 'pino';
import { Priority } from '../../protocol/constants.js';
import { ApiError } from './api-errors.js';
import { PUSH_ID_PATTERN } from './push-codec.js';
import type { RefStats } from '../kit/inbox/index.js';
import { ALL_TOPIC, type PushAudience, type PushRecord, type PushStore } from './store.js';

/** The JSON body of POST /v1/push after schema validation (push-api.ts). */
export interface PushCall {
  id?: string;
  to: { users: string[] } | { topic: string } | { all: true };
  data?: string;
  data_base64?: string;
  priority?: 'system' | 'high' | 'low';
  ttl_s?: number;
  collapse_key?: string;
}

/** 202 body of POST /v1/push. */
export interface Accepted {
  id: string;
  targeted: number;
}

/** 200 body of GET /v1/push/{id}: the contract's fields, then extensions. */
export interface PushStatusBody {
  id: string;
  targeted: number;
  delivered: number;
  pending: number;
  expired: number;
  /** Extension: of `expired`, the copies a newer push with the same collapse key replaced. */
  replaced: number;
  /**
   * Extension: what the counts count. `users` for a push to users (a user is delivered once one of
   * their devices acknowledged it), `devices` for a topic or all push (each subscribed device).
   */
  unit: 'users' | 'devices';
}

/** Where accepted pushes go: devices of named users, or every proxy for a topic. */
export interface PushDelivery {
  /** Topic (or ALL_TOPIC) pushes: published once per proxy; resolves when handed to every proxy or relayed. */
  publishTopic(record: PushRecord): Promise<void>;
  /**
   * Pushes to users: delivered to each user's devices wherever they are, kept for offline ones while
   * the TTL runs (every one of `users` is targeted).
   */
  deliverToUsers(record: PushRecord, users: readonly string[]): Promise<void>;
  /** The per-user counters of a push to users, or null once forgotten. */
  userStats(id: string, nowMs: number): Promise<RefStats | null>;
}

export interface PushServiceOptions {
  store: PushStore;
  delivery: PushDelivery;
  /** Largest decoded `data` (bytes). */
  maxDataBytes: number;
  /** How long an online device has to acknowledge a ttl_s 0 push before it counts as expired. */
  onlineAckWindowMs: number;
  /** How long records and counters stay readable after a push expired. */
  retentionMs: number;
  /** How long an id stays claimed by a call that died while creating it. */
  claimTtlMs: number;
  now: () => number;
  log: pino.Logger;
  /** Told of each push created (metrics). */
  onAccepted?: (audience: PushAudience) => void;
}

const PRIORITIES: Readonly<Record<NonNullable<PushCall['priority']>, Priority>> = { system: Priority.SYSTEM, high: Priority.HIGH, low: Priority.LOW };
/** Strict base64 (RFC 4648 §4, padded): Buffer.from would silently skip anything else. */
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
/** Longest user id in UTF-8 bytes (the schema counts characters; the inbox bounds bytes). */
const MAX_USER_ID_BYTES = 128;
/** A call that finds its id being created by another waits this long, polling, for the answer. */
const PENDING_WAIT_MS = 5_000;
const PENDING_POLL_MS = 20;

export class PushService {
  constructor(private readonly o: PushServiceOptions) {}

  /**
   * POST /v1/push. Throws ApiError for a call the contract refuses (INVALID_BODY, PAYLOAD_TOO_LARGE,
   * ID_CONFLICT, UNAVAILABLE).
   */
  async accept(keyName: string, call: PushCall): Promise<Accepted> {
    const data = this.decodeData(call);
    const audience: PushAudience = 'users' in call.to ? 'users' : 'topic' in call.to ? 'topic' : 'all';
    const users = 'users' in call.to ? distinct(call.to.users) : [];
    for (const user of users) {
      if (Buffer.byteLength(user) > MAX_USER_ID_BYTES) throw new ApiError('INVALID_BODY', `to.users: a user id is longer than ${MAX_USER_ID_BYTES} bytes in UTF-8`);
    }
    const priority = PRIORITIES[call.priority ?? 'high'];
    const ttlS = call.ttl_s ?? 0;
    const collapseKey = call.collapse_key ?? '';
    const topic = audience === 'topic' ? (call.to as { topic: string }).topic : audience === 'all' ? ALL_TOPIC : '';
    // Also for a generated id: the caller may repeat the call with the id it was answered.
    const fingerprint = hash('sha256', JSON.stringify([keyName, audience, topic, users.sort(), data.toString('base64'), priority, ttlS, collapseKey]), 'base64url');
    const id = call.id ?? randomUUID();

    // A generated id is new (122 random bits): only a caller's own id can exist or be in creation.
    const existing = call.id === undefined ? null : await this.claim(id);
    if (existing !== null) {
      if (existing.fingerprint !== fingerprint) {
        throw new ApiError('ID_CONFLICT', `id: push ${JSON.stringify(id)} exists with a different request (an id cannot be reused for another push)`);
      }
      return { id, targeted: existing.targeted };
    }
    try {
      const sentAtMs = this.o.now();
      const expiresAtMs = sentAtMs + (ttlS > 0 ? ttlS * 1000 : this.o.onlineAckWindowMs);
      if (audience === 'users') {
        // Counted per user by the kit's ledger as it stores the push for them; the record keeps it too.
        const record: PushRecord = { id, keyName, fingerprint, audience, topic, priority, collapseKey, data, sentAtMs, ttlS, expiresAtMs, targeted: users.length };
        await this.o.delivery.deliverToUsers(record, users);
        await this.o.store.complete(record, this.o.retentionMs);
        this.o.onAccepted?.(audience);
        return { id, targeted: record.targeted };
      }
      // Counted before publishing, and stored before: an ack may come back before the publish returns.
      const targeted = ttlS > 0 ? await this.o.store.subscriberCount(topic) : await this.o.store.onlineCount(topic);
      const record: PushRecord = { id, keyName, fingerprint, audience, topic, priority, collapseKey, data, sentAtMs, ttlS, expiresAtMs, targeted };
      await this.o.store.complete(record, this.o.retentionMs);
      await this.o.delivery.publishTopic(record);
      this.o.onAccepted?.(audience);
      return { id, targeted };
    } catch (err) {
      if (call.id !== undefined) await this.o.store.release(id).catch(() => {});
      if (err instanceof ApiError) throw err;
      this.o.log.error({ err, id }, 'push: creating a push failed');
      throw new ApiError('UNAVAILABLE', 'push store unavailable; retry with the same id');
    }
  }

  /** GET /v1/push/{id}: NOT_FOUND unless it exists and `keyName` created it. */
  async status(keyName: string, id: string): Promise<PushStatusBody> {
    if (!PUSH_ID_PATTERN.test(id)) throw new ApiError('NOT_FOUND', 'push: not found (not a valid id)');
    const status = await this.o.store.status(id).catch((err: unknown) => {
      this.o.log.error({ err, id }, 'push: reading a push failed');
      throw new ApiError('UNAVAILABLE', 'push store unavailable');
    });
    if (status === null || status.record.keyName !== keyName) throw new ApiError('NOT_FOUND', `push ${JSON.stringify(id)}: not found`);
    const { record, delivered, replaced } = status;
    if (record.audience === 'users') {
      const stats = await this.o.delivery.userStats(id, this.o.now()).catch((err: unknown) => {
        this.o.log.error({ err, id }, 'push: reading a push\'s counters failed');
        throw new ApiError('UNAVAILABLE', 'push store unavailable');
      });
      // The ledger keeps counters as long as the record (both: the expiry plus the retention).
      const s = stats ?? { targeted: record.targeted, delivered: 0, collapsed: 0, pending: 0, expired: record.targeted };
      return { id, targeted: s.targeted, delivered: s.delivered, pending: s.pending, expired: s.expired + s.collapsed, replaced: s.collapsed, unit: 'users' };
    }
    const targeted = Math.max(record.targeted, delivered);
    const undelivered = targeted - delivered;
    // Past its expiry nothing undelivered will be delivered; before it, only replaced copies are lost.
    const expired = this.o.now() >= record.expiresAtMs ? undelivered : Math.min(replaced, undelivered);
    return { id, targeted, delivered, pending: undelivered - expired, expired, replaced: Math.min(replaced, expired), unit: 'devices' };
  }

  /** The record already under `id`, or null once this call holds the claim to create it. */
  private async claim(id: string): Promise<PushRecord | null> {
    const deadline = this.o.now() + PENDING_WAIT_MS;
    for (;;) {
      let claim;
      try {
        claim = await this.o.store.claim(id, this.o.claimTtlMs);
      } catch (err) {
        this.o.log.error({ err, id }, 'push: claiming an id failed');
        throw new ApiError('UNAVAILABLE', 'push store unavailable; retry with the same id');
      }
      if (claim.kind === 'claimed') return null;
      if (claim.kind === 'done') return claim.record;
      if (this.o.now() >= deadline) throw new ApiError('UNAVAILABLE', `id: push ${JSON.stringify(id)} is still being created by another call; retry`, 1);
      await sleep(PENDING_POLL_MS);
    }
  }

  private decodeData(call: PushCall): Buffer {
    let data: Buffer;
    if (call.data_base64 !== undefined) {
      if (!BASE64.test(call.data_base64)) throw new ApiError('INVALID_BODY', 'data_base64: not valid padded base64');
      data = Buffer.from(call.data_base64, 'base64');
    } else {
      data = Buffer.from(call.data ?? '', 'utf8');
    }
    if (data.length > this.o.maxDataBytes) {
      throw new ApiError('PAYLOAD_TOO_LARGE', `data: ${data.length} bytes exceed the push size limit (${this.o.maxDataBytes} bytes)`);
    }
    return data;
  }
}

/** `items` without repeats, in first-seen order (the one-user call, the common one, allocates nothing). */
function distinct(items: string[]): string[] {
  return items.length === 1 ? items : [...new Set(items)];
}
