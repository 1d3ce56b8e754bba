import type { Priority } from '../../protocol/constants.js';

/** Who a push is addressed to, as stored. */
export type PushAudience = 'users' | 'topic' | 'all';

/**
 * The topic every device is in: pushes `to: {all: true}` are topic pushes to it. Not a valid topic
 * name (TOPIC_PATTERN), so no app can subscribe to or unsubscribe from it by hand.
 */
export const ALL_TOPIC = '*';

/** A push as the API accepted it: what GET /v1/push/{id} and a device's backlog are made from. */
export interface PushRecord {
  readonly id: string;
  /** Name (never the secret) of the API key that created it: only that key may read it back. */
  readonly keyName: string;
  /** Digest of the request minus its id: a repeat must carry the same one (idempotency). */
  readonly fingerprint: string;
  readonly audience: PushAudience;
  /** For `topic`: the topic; `all`: ALL_TOPIC; `users`: "". */
  readonly topic: string;
  readonly priority: Priority;
  /** "" = none. */
  readonly collapseKey: string;
  readonly data: Buffer;
  readonly sentAtMs: number;
  /** ttl_s as given; 0 = online devices only. */
  readonly ttlS: number;
  /**
   * From then on, devices that have not acknowledged it never will: sentAtMs + ttl_s, or for ttl_s 0
   * sentAtMs + the online ack window (the time an online device has to acknowledge).
   */
  readonly expiresAtMs: number;
  /** Devices it was addressed to when accepted (202 `targeted`). */
  readonly targeted: number;
}

/** A record with its delivery counters (GET /v1/push/{id} derives pending and expired from them). */
export interface PushStatus {
  readonly record: PushRecord;
  /** Distinct devices that acknowledged it. */
  readonly delivered: number;
  /** Devices whose undelivered copy a newer push with the same collapse key replaced. */
  readonly replaced: number;
}

/** The answer to `claim`: the id is ours to create, or it exists (done) or is being created by another call. */
export type Claim =
  | { readonly kind: 'claimed' }
  | { readonly kind: 'pending' }
  | { readonly kind: 'done'; readonly record: PushRecord };

/** One acknowledgement: `device` (see deviceKey) has push `id`. */
export interface AckEntry {
  readonly id: string;
  readonly device: string;
}

/**
 * Everything the Push backend shares between its nodes: push records with their idempotency claims and
 * delivery counters, devices and their topics, the topic logs that keep pushes with a TTL for offline
 * devices, and how many devices each node has online per topic. The in-memory store is the embedded
 * default; the Redis store lets any node accept any call and a node die without losing a push with a
 * TTL. Both pass one conformance suite (test/conformance/push-store.ts).
 *
 * Guarantees every implementation gives:
 * - `claim` hands an id to exactly one caller until that caller `complete`s it (then every claim sees
 *   `done` with the record) or `release`s it, or the claim lapses after `claimTtlMs` (its holder died);
 * - a record and its counters live until `expiresAtMs + retentionMs` (as given to `complete`), then are
 *   forgotten;
 * - `ack` and `markReplaced` count a device at most once per push, and only for a topic push that
 *   exists and that the device was subscribed to when it was sent (pushes to users are counted by the
 *   kit's inbox);
 * - a device's topics, with the time each was subscribed, survive its sessions until it unsubscribes or
 *   has not been seen for `deviceRetentionMs`; every device is in ALL_TOPIC since it was first seen;
 * - `backlog` returns the topic pushes with a TTL a device is owed: sent to one of its topics after it
 *   subscribed, not expired, not acknowledged by it, not marked replaced for it; oldest first;
 * - online counts and attached proxies are per node and vanish `nodeTtlMs` after the node's last
 *   `renewNode` (it died);
 * - `forward` reaches the node's `listen`er on whichever process it runs, at most once;
 * - `takeCall` admits at most `burst` calls at once and `rate` per second after that, per key name,
 *   whichever nodes the calls arrive at.
 *
 * Times are the caller's clock (ms since the epoch), passed in. Errors are `LivemuxError`s with a stable
 * code: `ERR_STORE_CLOSED` (any call after `close`); a failing Redis rejects with ioredis's error.
 */
export interface PushStore {
  /** Claims `id` for creation, or reports what exists under it. */
  claim(id: string, claimTtlMs: number): Promise<Claim>;
  /**
   * Stores the record of a claimed id, with zero counters, and appends it to its topic's log when it is
   * a topic push with a TTL. Resolves once it is stored; its claim is then done.
   */
  complete(record: PushRecord, retentionMs: number): Promise<void>;
  /** Drops a claim whose creation failed, so that a retry may claim the id again. */
  release(id: string): Promise<void>;
  /** The record and counters of `id`, or null (never created, or forgotten). */
  status(id: string): Promise<PushStatus | null>;
  /** Counts each entry's device as delivered for its push; resolves with how many were new. */
  ack(entries: readonly AckEntry[]): Promise<number>;
  /** Counts `device`'s copy of each push of `ids` as replaced by a newer one of the same collapse key. */
  markReplaced(ids: readonly string[], device: string): Promise<void>;

  /**
   * Records that `device` was seen at `nowMs` (first time: it joins ALL_TOPIC) and resolves with its
   * topics (ALL_TOPIC included), each with the time it was subscribed.
   */
  touchDevice(device: string, nowMs: number): Promise<Map<string, number>>;
  /**
   * Subscribes `device` to `topics` at `nowMs` (already subscribed ones keep their time). Refuses,
   * changing nothing, when the device would have more than `maxTopics` (ALL_TOPIC not counted): resolves
   * with null then, else with the device's topics afterwards (without ALL_TOPIC), sorted.
   */
  subscribe(device: string, topics: readonly string[], nowMs: number, maxTopics: number): Promise<string[] | null>;
  /** Unsubscribes `device` from `topics`; resolves with its topics afterwards (without ALL_TOPIC), sorted. */
  unsubscribe(device: string, topics: readonly string[]): Promise<string[]>;
  /** Devices subscribed to `topic` (ALL_TOPIC: every device seen within the retention). */
  subscriberCount(topic: string): Promise<number>;
  /** The topic pushes `device` is owed (see the guarantees above); `topics` as `touchDevice` gave them. */
  backlog(device: string, topics: ReadonlyMap<string, number>, nowMs: number): Promise<PushRecord[]>;

  /**
   * Sets this node's count of online devices per topic (ALL_TOPIC: all its online devices); topics not
   * in `counts` keep their value, a 0 removes one. Keeps the node alive for `nodeTtlMs`.
   */
  setOnline(node: string, counts: ReadonlyMap<string, number>, nodeTtlMs: number): Promise<void>;
  /** Keeps the node's online counts for `nodeTtlMs` more; false when they had lapsed (call setOnline with all of them). */
  renewNode(node: string, nodeTtlMs: number): Promise<boolean>;
  /** Devices online on any live node and subscribed to `topic`. */
  onlineCount(topic: string): Promise<number>;
  /** Forgets this node's online counts and proxies (clean shutdown). */
  removeNode(node: string): Promise<void>;

  /**
   * Records the proxies attached to `node` (replacing its list); they live and lapse with the node's
   * online counts (`renewNode` keeps both).
   */
  setProxies(node: string, proxies: readonly string[], nodeTtlMs: number): Promise<void>;
  /** Proxy id → the live nodes attached to it (sorted). */
  proxyNodes(): Promise<Map<string, string[]>>;
  /** Hands `message` to `node`'s listener; at most once (a node that is gone, or not listening, loses it). */
  forward(node: string, message: string): Promise<void>;
  /** Starts handing this node's forwarded messages to `onMessage`; resolves once listening. */
  listen(node: string, onMessage: (message: string) => void): Promise<void>;

  /**
   * Takes one call from API key `keyName`'s allowance of `rate` calls/s with bursts of `burst`, shared
   * by every node using the store. Resolves 0 when the call may go, else how many ms until one may.
   */
  takeCall(keyName: string, rate: number, burst: number): Promise<number>;

  /** Releases the store (the Redis store quits the connection it opened). Idempotent. */
  close(): Promise<void>;
}

/**
 * The store's key for a device: devices are per user (a device id another user presents is another
 * device), and the device id alphabet has no `/`, so the key splits back unambiguously at its last `/`.
 */
export function deviceKey(userId: string, deviceId: string): string {
  return `${userId}/${deviceId}`;
}
