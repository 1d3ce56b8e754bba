/**
 * What the IM backend keeps: each conversation's sequence, history, dedupe records, read positions,
 * recalls and blocks, and each user's conversation list and online sessions; and, through the kit's
 * InboxStore it is given (`inbox`), the users' inboxes, to which a stored message is appended in the
 * same step. The in-memory store is the embedded default; the Redis store lets every IM backend
 * process share them. Both pass one conformance suite (test/conformance/im-store.ts).
 */
import type { InboxStore } from '../kit/inbox/inbox-store.js';

/** A message as stored in its conversation's history. */
export interface StoredMessage {
  readonly serverId: string;
  readonly sender: string;
  readonly recipient: string;
  /** Per conversation, from 1, +1 per message stored: the order both users see. */
  readonly convSeq: number;
  readonly body: Buffer;
  readonly sentAtMs: number;
  readonly clientMsgId: string;
  readonly senderDevice: string;
  /** When it was recalled (ms since the epoch); 0 = not recalled. */
  readonly recalledAtMs: number;
}

/** A message to store; `serverId` is the one to use if it is new. */
export interface NewMessage {
  readonly serverId: string;
  readonly sender: string;
  readonly recipient: string;
  readonly body: Buffer;
  readonly sentAtMs: number;
  readonly clientMsgId: string;
  readonly senderDevice: string;
}

/** History and dedupe bounds. */
export interface ConversationLimits {
  /** At least this many of a conversation's newest messages are kept (the Redis store may keep up to 100 more). */
  readonly maxMessages: number;
  /** Messages older than this are removed at the next send (Infinity = no age bound). */
  readonly maxAgeMs: number;
  /** How long (sender, clientMsgId) is remembered. */
  readonly dedupeTtlMs: number;
}

/**
 * The answer to `storeMessage`. A duplicate carries the first send's ids and time; its body and other
 * fields are the request's (a client resends what it sent).
 */
export type StoreOutcome =
  /** `inboxSeqs`: the seq of the message's entry in the recipient's and in the sender's inbox. */
  | { readonly kind: 'stored'; readonly message: StoredMessage; readonly inboxSeqs: { readonly recipient: number; readonly sender: number } }
  | { readonly kind: 'duplicate'; readonly message: StoredMessage }
  | { readonly kind: 'blocked' };

export type RecallOutcome =
  | { readonly kind: 'recalled'; readonly message: StoredMessage }
  /** Recalled before: the same tombstone again (a retried recall). */
  | { readonly kind: 'already'; readonly message: StoredMessage }
  | { readonly kind: 'not_found' }
  | { readonly kind: 'not_sender' }
  | { readonly kind: 'expired' };

export interface HistorySlice {
  /** Ascending conv_seq, newest last. */
  readonly messages: StoredMessage[];
  /** Older retained messages exist before the first one. */
  readonly hasMore: boolean;
  /** The oldest retained conv_seq (0 = none retained). */
  readonly oldestRetainedSeq: number;
}

export interface ReadOutcome {
  /** The reader's position now (it never moves back, nor past the latest message). */
  readonly readSeq: number;
  /** True when this call moved it. */
  readonly advanced: boolean;
  /** Messages from the peer after the position. */
  readonly unread: number;
}

export interface UnreadCount {
  readonly peer: string;
  readonly count: number;
  /** The conversation's latest conv_seq. */
  readonly lastConvSeq: number;
}

/**
 * Guarantees every implementation gives:
 * - a conversation's `convSeq` is strictly increasing across every process sharing the store, from 1,
 *   without holes;
 * - `storeMessage` is atomic: dedupe check, block check, seq, history, counts, and the message's entry
 *   in the recipient's and the sender's inbox all happen, or none does (the Redis store runs them as
 *   one script; the memory store has nothing to lose in between);
 * - a (sender, clientMsgId) pair is stored once within `dedupeTtlMs`: later calls answer `duplicate`
 *   with the first send's serverId, convSeq and time;
 * - read positions only move forward; unread counts count the peer's messages after the position;
 * - a conversation's id does not depend on the order of its two users.
 *
 * Errors are LivemuxErrors: `ERR_STORE_CLOSED` after `close`, `ERR_INVALID_ARGUMENT` for an empty
 * user id or a bad number. A failing backend (Redis unreachable) rejects with its client's error.
 */
export interface ImStore {
  /** The users' inboxes this store appends messages to (deliver and read them through it). */
  readonly inbox: InboxStore;
  /**
   * Stores a message unless it is a duplicate or the recipient blocked the sender, and appends its
   * entry — `inboxMessageBody` (im-codec.ts) of `fields` and its conv_seq — to the recipient's and then
   * the sender's inbox, whose watchers are notified, and records the conversation's activity at
   * `sentAtMs` in both users' conversation lists (the Redis store to the second: at most once a second
   * per pair and process). `fields` is `encodeMessageFields` of the message. A duplicate or a refusal
   * appends and records nothing.
   */
  storeMessage(message: NewMessage, fields: Buffer, limits: ConversationLimits, nowMs: number): Promise<StoreOutcome>;
  /**
   * Up to `limit` messages of the conversation of `a` and `b` with convSeq < `beforeSeq` (0 = from the
   * latest), returned ascending.
   */
  history(a: string, b: string, beforeSeq: number, limit: number): Promise<HistorySlice>;
  /**
   * Recalls the message at `convSeq` if `requester` sent it and it is younger than `windowMs` at
   * `nowMs`; the history then shows it recalled.
   */
  recall(requester: string, peer: string, convSeq: number, nowMs: number, windowMs: number): Promise<RecallOutcome>;
  /** Moves `reader`'s read position in its conversation with `peer` to `convSeq` (capped at the latest). */
  markRead(reader: string, peer: string, convSeq: number): Promise<ReadOutcome>;
  /** The unread count of `user` in its conversation with each of `peers`, in order. */
  unread(user: string, peers: readonly string[]): Promise<UnreadCount[]>;
  /** `user`'s peers, most recent first (by their latest message stored), at most `limit`. */
  conversations(user: string, limit: number): Promise<string[]>;
  /**
   * `user` blocks (`on`) or unblocks `target`; idempotent. Resolves false, changing nothing, when
   * `target` is new to a block list that already holds `maxBlocked` users.
   */
  setBlocked(user: string, target: string, on: boolean, maxBlocked: number): Promise<boolean>;
  /** Whom `user` blocks, ascending (by UTF-16 code units, as JavaScript sorts). */
  blocked(user: string): Promise<string[]>;
  /** Whether `user` blocks `target`. */
  isBlocked(user: string, target: string): Promise<boolean>;
  /**
   * One device session of `user` (`sessionKey`, unique per session) is online until `nowMs + ttlMs`
   * unless renewed; resolves true when the user had no live session before (went online).
   */
  sessionOnline(user: string, sessionKey: string, ttlMs: number, nowMs: number): Promise<boolean>;
  /** Renews live sessions; one round trip for all. */
  renewSessions(sessions: readonly { user: string; sessionKey: string }[], ttlMs: number, nowMs: number): Promise<void>;
  /** The session ended; resolves true when the user has no live session left (went offline). */
  sessionOffline(user: string, sessionKey: string, nowMs: number): Promise<boolean>;
  /** Whether each user has a live session at `nowMs`. */
  online(users: readonly string[], nowMs: number): Promise<boolean[]>;
  close(): Promise<void>;
}

/** Most peers kept in a user's conversation list. */
export const MAX_CONVERSATIONS = 1000;
/** Largest history page. */
export const MAX_HISTORY_PAGE = 200;

/**
 * The id of the conversation of two users, the same whichever is given first: the smaller id
 * length-prefixed, then the other, so no pair of ids can produce another pair's id.
 */
export function conversationId(a: string, b: string): string {
  const [x, y] = a < b ? [a, b] : [b, a];
  return `${Buffer.byteLength(x)}:${x}|${y}`;
}
