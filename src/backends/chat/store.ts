import type { Priority } from '../../protocol/constants.js';

/** Roles in a room (issue 4): only host and admin may moderate; whitelisted members' messages are never dropped. */
export type Role = 'member' | 'host' | 'admin' | 'whitelisted';

/** A room message as stored for history and recovery. `body` is the encoded message as members receive it. */
export interface StoredMessage {
  readonly seq: number;
  readonly priority: Priority;
  readonly senderId: string;
  readonly sentAtMs: number;
  readonly body: Buffer;
}

/**
 * A room member; `userId` is a non-empty string. `presence` is the presence (a proxy's liveness record,
 * see `startPresence`) the member is held under: once it expires, `purgeExpired` drops the member. A
 * member without one stays until it leaves.
 */
export interface Member {
  readonly userId: string;
  readonly role: Role;
  readonly joinedAtMs: number;
  readonly presence?: string;
}

/** One page of a listing; `next` is an opaque cursor for the following page, null at the end. */
export interface Page<T> {
  readonly items: readonly T[];
  readonly next: string | null;
}

/** History bounds: whichever is reached first trims the oldest messages. */
export interface HistoryLimits {
  readonly maxLength: number;
  readonly maxAgeMs: number;
}

/**
 * The answer to `acquireLease`: the room's lease with its fencing token, or the holder that has it and
 * how long its lease has left (it may renew before then, or release sooner).
 */
export type LeaseGrant =
  | { readonly acquired: true; readonly token: number }
  | { readonly acquired: false; readonly holder: string; readonly remainingMs: number };

/** A change to a room's attributes: `value` null deletes the key. `version` orders the change log. */
export interface AttributeChange {
  readonly version: number;
  readonly key: string;
  readonly value: string | null;
}

/**
 * Everything a Chat backend must not lose when a room's owner dies: sequence numbers, history,
 * membership, moderation state and room attributes. The in-memory store is the embedded default; the
 * Redis store lets a new owner continue where the old one stopped. Both pass one conformance suite
 * (test/conformance/chat-store.ts).
 *
 * Guarantees every implementation gives:
 * - `nextSeq` is strictly increasing per room across every process sharing the store, starting at 1;
 * - history reads return messages in ascending `seq`; `oldestSeq` tells a reader whether messages
 *   after a given seq were trimmed (a "history gap");
 * - moderation expiries are absolute times (ms since the epoch) compared with the caller's `nowMs`;
 * - moderation state (mutes, bans, the whitelist) is room state like membership: every store of the
 *   same backend sees it, so a room's new owner enforces it; `dropRoom` forgets it;
 * - attribute changes get strictly increasing versions per room, and `attributeChanges` returns them in
 *   that order;
 * - at most one holder has a room's lease at a time (see `acquireLease`), and the ordered writes
 *   (`nextSeq`, `appendHistory`, `setAttributes`, `dropRoom`) take effect only with the current lease's
 *   token, checked atomically with the write: a holder whose lease lapsed cannot write, even if it has
 *   not noticed yet. Membership, mutes, bans and the whitelist are per-user states written without a
 *   token (the Chat backend holds the lease before moderating anyway);
 * - presences expire by the store's own clock `ttlMs` after their last start or renewal, and an expired
 *   presence stays expired: `purgeExpired` may therefore drop every member held under one without racing
 *   a writer, since nobody can write under it again.
 *
 * Errors are `LivemuxError`s with a stable code: `ERR_STORE_CLOSED` (any call after `close`),
 * `ERR_STALE_OWNER` (an ordered write whose token is not the room's current lease token: nothing was
 * written), `ERR_HISTORY_ORDER` (see `appendHistory`), `ERR_BAD_CURSOR` (a `members` cursor this store did not
 * issue), `ERR_INVALID_ARGUMENT` (a negative, fractional or non-finite count, seq or time, an empty
 * user or presence ID, an unknown role or priority), `ERR_STORE_CORRUPT` (a stored record this code did not write).
 * A failing backend (Redis unreachable) rejects with its client library's error.
 */
export interface ChatStore {
  /**
   * Takes the room's write lease for `holder` (a name unique to the process, e.g. host and pid) for
   * `ttlMs`, or renews it when `holder` has it already (same token). A new lease gets a fencing token
   * from a per-room counter that only grows: every later lease of the room, by any holder, gets a higher
   * one, `dropRoom` included. While another holder's lease runs, the answer names that holder instead.
   */
  acquireLease(room: string, holder: string, ttlMs: number): Promise<LeaseGrant>;
  /** Extends the lease whose token is `token` to `ttlMs` from now; false when it is no longer current (lost). */
  renewLease(room: string, token: number, ttlMs: number): Promise<boolean>;
  /** Ends the lease whose token is `token` so another holder can take the room at once; a no-op when it is not current. */
  releaseLease(room: string, token: number): Promise<void>;

  /**
   * The next sequence number of `room`: 1 for a new (or dropped) room, then +1 per call, atomically.
   * Needs the current lease `token` (else `ERR_STALE_OWNER`, and no number is taken).
   */
  nextSeq(room: string, token: number): Promise<number>;

  /**
   * Stores `message` and trims the room's history, oldest first, while either bound is exceeded:
   * - age: messages whose `sentAtMs` is older than `nowMs - limits.maxAgeMs` (`Infinity` = no age
   *   bound); the message being appended is never trimmed by its own append;
   * - length: at least the newest `maxLength` messages stay. An implementation may keep a bounded
   *   slack beyond it (the Redis store trims whole stream nodes: at most 100 more), so readers must
   *   rely on `oldestSeq`, never on the bound being exact.
   * Trimming happens only here: a quiet room keeps its last messages until its next append or `dropRoom`.
   *
   * A room's messages must be appended in ascending `seq` (gaps are allowed: a seq that was taken and
   * never stored). A `seq` not above the highest ever appended to the room, trimmed or not, is rejected
   * with `ERR_HISTORY_ORDER`: it means two owners are writing one room, or one owner reordered its
   * writes. The store may keep a reference to `message.body`; do not mutate it afterwards.
   *
   * Resolves with the number of messages this append trimmed (by either bound), so that over a room's
   * life appended = retained + the sum of these counts. Needs the current lease `token`, checked first
   * (`ERR_STALE_OWNER`).
   */
  appendHistory(room: string, token: number, message: StoredMessage, limits: HistoryLimits, nowMs: number): Promise<number>;
  /**
   * Up to `limit` messages with seq > `afterSeq`, oldest first; `oldestSeq` is the oldest retained (null
   * if none), read atomically with the messages. A reader that saw `afterSeq` missed messages iff
   * `oldestSeq !== null && oldestSeq > afterSeq + 1` (a history gap). An `afterSeq` above every stored
   * seq (e.g. a client that remembers a room since dropped) returns no messages: compare it with
   * `latestHistory(room, 1)` to tell "up to date" from "stale".
   */
  readHistory(room: string, afterSeq: number, limit: number): Promise<{ messages: StoredMessage[]; oldestSeq: number | null }>;
  /** The latest `limit` messages, oldest first (what a member joining with since=0 gets). */
  latestHistory(room: string, limit: number): Promise<StoredMessage[]>;

  /**
   * Adds a member, or replaces the record (role, joinedAtMs, presence) of one already present, atomically.
   * Resolves true when the user was not a member.
   */
  join(room: string, member: Member): Promise<boolean>;
  /**
   * Removes a member, atomically; a user not in the room is a no-op. With `presence`, only a record held
   * under that presence is removed: a session that moved to another owner (who re-tagged the record
   * under its own presence) is not taken out by the old owner's late leave. Resolves true when a record
   * was removed.
   */
  leave(room: string, userId: string, presence?: string): Promise<boolean>;
  member(room: string, userId: string): Promise<Member | null>;
  /**
   * One page of the room's members in an implementation-defined stable order, starting after `cursor`
   * (null = the first page); `limit` is capped at `MAX_MEMBER_PAGE`. Every member present for the whole
   * walk appears exactly once; one that joins or leaves during it may or may not appear. A cursor stays
   * valid across joins and leaves; one this store did not issue is rejected with `ERR_BAD_CURSOR`.
   */
  members(room: string, cursor: string | null, limit: number): Promise<Page<Member>>;
  /** Members stored, those of expired presences included until `purgeExpired` drops them. */
  memberCount(room: string): Promise<number>;

  /**
   * Starts presence `presence`, alive for `ttlMs`. A presence ID must be new: one that expired or was
   * ended never comes back, so a caller that lost its presence starts another under a new ID.
   */
  startPresence(presence: string, ttlMs: number): Promise<void>;
  /** Extends a live presence to `ttlMs` from now; false (and nothing extended) when it expired or was ended. */
  renewPresence(presence: string, ttlMs: number): Promise<boolean>;
  /** Expires a presence at once (idempotent): its members go at the next `purgeExpired`. */
  endPresence(presence: string): Promise<void>;
  /**
   * Drops, atomically per presence, every member of `room` held under a presence that expired or was
   * ended, and resolves with their user IDs (in no particular order). Costs one read of the room's
   * presence list when none expired.
   */
  purgeExpired(room: string): Promise<string[]>;

  /** Mute (no sending) until `untilMs`; 0 lifts it. */
  setMute(room: string, userId: string, untilMs: number): Promise<void>;
  /** Ban (no rejoin) until `untilMs`; 0 lifts it. */
  setBan(room: string, userId: string, untilMs: number): Promise<void>;
  /** Active mute/ban expiry for a user at `nowMs` (active while `nowMs < untilMs`), or 0. */
  muteUntil(room: string, userId: string, nowMs: number): Promise<number>;
  banUntil(room: string, userId: string, nowMs: number): Promise<number>;
  /**
   * Puts `userId` on the room's whitelist (`on`) or takes it off; idempotent, and valid for a user who
   * never joined (a host may whitelist a guest before the guest arrives). Rejects an empty user ID.
   */
  setWhitelisted(room: string, userId: string, on: boolean): Promise<void>;
  /** Whether `userId` is on the room's whitelist. */
  isWhitelisted(room: string, userId: string): Promise<boolean>;

  /**
   * Applies `changes` atomically, in the object's key order, each real change getting the next version;
   * a no-op (setting the current value, deleting an absent key) is neither applied nor logged. Returns
   * the change log entries it appended (empty when nothing changed). Needs the current lease `token`
   * (`ERR_STALE_OWNER`), even when nothing would change.
   */
  setAttributes(room: string, token: number, changes: Readonly<Record<string, string | null>>): Promise<AttributeChange[]>;
  /** The whole map and the version of its last change (0 for a room without attributes), read atomically. */
  attributes(room: string): Promise<{ values: Record<string, string>; version: number }>;
  /**
   * Every change with version > `afterVersion`, in version order; `[]` when `afterVersion` is current.
   * The log is bounded (the newest `attributeLogLength` changes at least, 1000 by default), so this
   * returns **null** when it cannot bring a reader at `afterVersion` up to date: the changes after it were
   * trimmed, or `afterVersion` is ahead of the room's version (the room was dropped and recreated).
   * The caller then sends the full map from `attributes`.
   */
  attributeChanges(room: string, afterVersion: number): Promise<AttributeChange[] | null>;

  /**
   * Forgets everything about a room (idle TTL expired), its sequence and its lease included: the next
   * seq is 1 again. Only the fencing counter stays, so the room's next lease still gets a higher token.
   * Needs the current lease `token` (`ERR_STALE_OWNER`).
   */
  dropRoom(room: string, token: number): Promise<void>;
  /** Releases the store (the Redis store quits the connection it opened). Idempotent. */
  close(): Promise<void>;
}

/** Largest `members` page; a larger `limit` is capped to it. */
export const MAX_MEMBER_PAGE = 1000;
/** Largest `readHistory`/`latestHistory` batch; a larger `limit` is capped to it. */
export const MAX_HISTORY_READ = 10_000;
/** Default bound of the attribute change log. */
export const DEFAULT_ATTRIBUTE_LOG_LENGTH = 1000;
