/**
 * The per-user inbox of the backend kit: "deliver to a user's devices wherever they are, and keep it
 * for them while they are offline". IM keeps every message a user receives or sends there; Push keeps
 * its pushes with a TTL there. This file is the storage contract; `inbox-hub.ts` builds delivery to
 * devices (sync, live notification, acks, redelivery) on it. docs/inbox.md explains the whole module.
 */

/** One entry of a user's inbox, as stored and as delivered. */
export interface InboxEntry {
  /** Per user, from 1, +1 per append (duplicates take none): the order every device sees. */
  readonly seq: number;
  /** What the devices receive; opaque to the inbox. */
  readonly body: Buffer;
  /** The producer's id of what this entry carries (a push id), for its delivery statistics; '' = none. */
  readonly ref: string;
  /** A newer entry with the same non-empty key supersedes this one for devices that have not acknowledged it. */
  readonly collapseKey: string;
  /** The appender's clock (ms since the epoch) when appended: what age retention compares. */
  readonly createdAtMs: number;
  /** After this time (ms since the epoch) the entry is no longer delivered; 0 = only retention removes it. */
  readonly expiresAtMs: number;
}

/** What `append` stores; everything but `body` is optional. */
export interface AppendRequest {
  readonly body: Buffer;
  readonly ref?: string;
  readonly collapseKey?: string;
  /** 0 or absent: no expiry. */
  readonly expiresAtMs?: number;
  /**
   * Makes the append idempotent: a second append with the same key within the store's dedupe window
   * (`dedupeTtlMs`) stores nothing and answers the first one's seq and time (`duplicate: true`). Use
   * it for anything a producer may retry after a failure (a message id, a push id).
   */
  readonly dedupeKey?: string;
}

export interface AppendResult {
  /**
   * The entry stored. For a duplicate: the first append's seq and createdAtMs with this request's
   * other fields (the same, for a producer that retries what it sent).
   */
  readonly entry: InboxEntry;
  readonly duplicate: boolean;
  /** The entry this append superseded through its collapse key (still retained), or null. */
  readonly superseded: { readonly seq: number; readonly ref: string } | null;
}

/** One page of a user's inbox after some seq. */
export interface InboxPage {
  /** Deliverable entries, ascending seq: expired and superseded ones are left out. */
  readonly entries: InboxEntry[];
  /**
   * The highest seq this read examined (the `afterSeq` asked when it examined none): continue after
   * it. Above the last entry's seq when the page ended with skipped entries.
   */
  readonly throughSeq: number;
  /**
   * Entries `fromSeq..toSeq` (inclusive), right after `afterSeq`, are no longer retained (count or age
   * retention removed them): they will never be delivered. Null when nothing after `afterSeq` is lost.
   */
  readonly gap: { readonly fromSeq: number; readonly toSeq: number } | null;
  /** The user's latest seq (0: nothing ever appended), read atomically with the page. */
  readonly lastSeq: number;
}

/** A device's acknowledgement state. */
export interface DeviceCursor {
  readonly device: string;
  /** Every entry up to this seq is acknowledged by the device (cumulative). */
  readonly cursor: number;
  /** The caller's clock at the device's last `ack`. */
  readonly ackedAtMs: number;
}

/** What a watcher of a user hears. */
export type InboxNotice =
  /** An entry was appended (on any node sharing the store), in seq order per user. */
  | { readonly kind: 'entry'; readonly entry: InboxEntry }
  /** A transient payload published to the user: never stored. */
  | { readonly kind: 'transient'; readonly payload: Buffer }
  /**
   * Notices may have been lost (the store's notification link dropped and came back): read the inbox
   * after what you last saw. Transients sent meanwhile are lost for good, as transients are.
   */
  | { readonly kind: 'resync' };

export type InboxListener = (notice: InboxNotice) => void;

/** A registration of `watch`. */
export interface InboxWatch {
  /**
   * Resolves once notices of appends made from now on are sure to arrive. Read the inbox only after
   * it: an entry appended before is in that read, one appended after is notified (or both: dedupe by seq).
   */
  readonly ready: Promise<void>;
  /** Stops the notices to this listener (idempotent). */
  close(): void;
}

/** Retention: whichever bound is reached first removes the oldest entries, at appends. */
export interface RetentionLimits {
  /** At least this many of the newest entries are kept (the Redis store may keep up to 100 more). */
  readonly maxEntries: number;
  /** Entries created longer ago than this are removed (Infinity = no age bound). */
  readonly maxAgeMs: number;
}

/** Options every implementation takes. */
export interface InboxStoreOptions {
  /** Default 1000 entries, 7 days. */
  readonly retention?: Partial<RetentionLimits>;
  /** How long a `dedupeKey` is remembered (default 24 h). */
  readonly dedupeTtlMs?: number;
  /** Devices remembered per user; acknowledging a new one beyond it forgets the least recently acknowledged (default 32). */
  readonly maxDevices?: number;
}

export const INBOX_DEFAULTS = Object.freeze({
  maxEntries: 1000,
  maxAgeMs: 7 * 24 * 3600_000,
  dedupeTtlMs: 24 * 3600_000,
  maxDevices: 32,
});

/** Largest `read` page; a larger limit is capped to it. */
export const MAX_INBOX_READ = 1000;
/** Longest user id, device id, ref, collapse key or dedupe key, in UTF-8 bytes. */
export const MAX_INBOX_ID_BYTES = 256;

/**
 * Per-user inboxes shared by every backend process on the same store. The in-memory store is the
 * embedded default; the Redis store lets any node append to any user and reach that user's devices on
 * any other node. Both pass one conformance suite (test/conformance/inbox-store.ts).
 *
 * Guarantees every implementation gives:
 * - `seq` is strictly increasing per user across every process sharing the store, from 1, without
 *   holes (a duplicate append takes no seq); a user's seq never restarts;
 * - an append is atomic: seq, entry, collapse, dedupe and notice happen together or not at all;
 * - a `read` returns entries in ascending seq, and `gap` tells exactly which seqs after `afterSeq` were
 *   removed by retention (entries skipped as expired or superseded are not a gap);
 * - watchers of a user, on every process, are notified of each append after `ready`, in seq order per
 *   user; a notice may be lost only with a `resync` notice after it (at-most-once notices, at-least-once
 *   delivery for whoever reads after a `resync`);
 * - device cursors only move forward and never past the user's latest seq.
 *
 * Errors are `LivemuxError`s: `ERR_STORE_CLOSED` (any call after `close`), `ERR_INVALID_ARGUMENT` (an
 * empty or over-long id, a negative, fractional or non-finite number). A failing backend (Redis
 * unreachable) rejects with its client library's error.
 */
export interface InboxStore {
  /** Appends to `user`'s inbox (see AppendRequest), trims it by retention, and notifies its watchers. */
  append(user: string, request: AppendRequest, nowMs: number): Promise<AppendResult>;
  /**
   * Examines up to `limit` entries (capped at MAX_INBOX_READ) with seq > `afterSeq` and returns the
   * deliverable ones: entries expired at `nowMs`, or superseded by a newer entry of their collapse key,
   * are skipped. An `afterSeq` above `lastSeq` returns nothing: the caller knows it is stale.
   */
  read(user: string, afterSeq: number, limit: number, nowMs: number): Promise<InboxPage>;
  /** The user's latest seq (0: never appended to). */
  lastSeq(user: string): Promise<number>;
  /**
   * Records that `device` has every entry up to `seq` (capped at the latest seq; a cursor never moves
   * back) and resolves with its cursor. A device new to the user beyond `maxDevices` makes the store
   * forget the least recently acknowledged one.
   */
  ack(user: string, device: string, seq: number, nowMs: number): Promise<number>;
  /** The device's cursor, or null for a device that never acknowledged (or was forgotten). */
  cursor(user: string, device: string): Promise<number | null>;
  /** Every remembered device of the user, in no particular order. */
  devices(user: string): Promise<DeviceCursor[]>;
  forgetDevice(user: string, device: string): Promise<void>;
  /** Sends `payload` to the user's watchers on every process now, storing nothing (typing, online-only pushes). */
  publish(user: string, payload: Buffer): Promise<void>;
  /** Starts notices about `user` to `listener` (see InboxWatch for when they are sure to arrive). */
  watch(user: string, listener: InboxListener): InboxWatch;
  /** Releases the store (the Redis store quits the connections it opened). Idempotent. */
  close(): Promise<void>;
}
