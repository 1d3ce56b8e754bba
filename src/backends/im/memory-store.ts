import { performance } from 'node:perf_hooks';
import { Deque } from '../../util/deque.js';
import type { InboxStore } from '../kit/inbox/inbox-store.js';
import { MemoryInboxStore } from '../kit/inbox/memory-inbox-store.js';
import { decodeInboxPayload, inboxMessageBody } from './im-codec.js';
import { checkCount, checkMessage, checkSession, checkUser, imStoreClosed } from './store-checks.js';
import {
  MAX_CONVERSATIONS,
  MAX_HISTORY_PAGE,
  conversationId,
  type ConversationLimits,
  type HistorySlice,
  type ImStore,
  type NewMessage,
  type ReadOutcome,
  type RecallOutcome,
  type StoreOutcome,
  type StoredMessage,
  type UnreadCount,
} from './store.js';

/**
 * One retained message, compact: its stored inbox body (every field of the message, in the one buffer
 * that both inbox entries share) and what the store consults without decoding it. A store holds
 * millions of these; objects and strings per message are what its heap and its collector pay for.
 */
interface Kept {
  readonly convSeq: number;
  readonly sentAtMs: number;
  /** The sender's id as the conversation holds it (one string per user, not one per message). */
  readonly sender: string;
  readonly item: Buffer;
  /** 0 = not recalled. The body stays until retention drops the message, but is never served again. */
  recalledAtMs: number;
  /** When the resend dedupe forgets it (performance.now() ms). */
  readonly forgetAt: number;
}

/** Everything the store holds about one conversation. */
class Conversation {
  seq = 0;
  readonly history = new Deque<Kept>();
  /** Messages sent by each of the two users, ever (unread counts subtract from it). */
  readonly sent = new Map<string, number>();
  /** Reader → position and how many of the peer's messages it covered. */
  readonly reads = new Map<string, { readSeq: number; peerCount: number }>();
  /** Users who blocked the other. */
  readonly blockers = new Set<string>();
  /** `sender clientMsgId` → the message the first send stored; insertion = expiry order. */
  readonly dedupe = new Map<string, Kept>();

  constructor(
    /** The two users' ids, each held once: messages name their sender by one of these. */
    readonly users: readonly [string, string],
  ) {}
}

/** Everything the store holds about one user. */
class UserState {
  /** Peer → last activity; re-inserted on each touch, so iteration is oldest first. */
  readonly conversations = new Map<string, number>();
  readonly blocks = new Set<string>();
  /** Session key → expiry (the caller's clock, ms). */
  readonly sessions = new Map<string, number>();
}

/** ImStore in this process: the embedded default, for one IM backend process. */
export class MemoryImStore implements ImStore {
  readonly inbox: InboxStore;
  private readonly convs = new Map<string, Conversation>();
  private readonly users = new Map<string, UserState>();
  private closed = false;

  /** Appends to `inbox` (default: a new MemoryInboxStore with default retention). */
  constructor(options: { inbox?: InboxStore } = {}) {
    this.inbox = options.inbox ?? new MemoryInboxStore();
  }

  async storeMessage(message: NewMessage, fields: Buffer, limits: ConversationLimits, nowMs: number): Promise<StoreOutcome> {
    this.ensureOpen('storeMessage');
    checkMessage(message);
    checkCount('storeMessage nowMs', nowMs, 0);
    const conv = this.conversation(message.sender, message.recipient, true)!;
    const now = performance.now();
    for (const [key, seen] of conv.dedupe) {
      if (seen.forgetAt > now) break;
      conv.dedupe.delete(key);
    }
    const dedupeKey = `${message.sender} ${message.clientMsgId}`;
    const seen = conv.dedupe.get(dedupeKey);
    if (seen !== undefined) {
      return { kind: 'duplicate', message: { ...message, serverId: stored(seen).serverId, convSeq: seen.convSeq, sentAtMs: seen.sentAtMs, recalledAtMs: 0 } };
    }
    if (conv.blockers.has(message.recipient)) return { kind: 'blocked' };
    const convSeq = ++conv.seq;
    const sender = conv.users[0] === message.sender ? conv.users[0] : conv.users[1];
    const body = inboxMessageBody(fields, convSeq);
    const kept: Kept = { convSeq, sentAtMs: message.sentAtMs, sender, item: body, recalledAtMs: 0, forgetAt: now + limits.dedupeTtlMs };
    conv.history.push(kept);
    conv.sent.set(sender, (conv.sent.get(sender) ?? 0) + 1);
    conv.dedupe.set(dedupeKey, kept);
    const cutoff = nowMs - limits.maxAgeMs;
    for (let head = conv.history.peek(); head !== undefined && conv.history.length > 1; head = conv.history.peek()) {
      if (conv.history.length <= limits.maxMessages && head.sentAtMs >= cutoff) break;
      conv.history.shift();
    }
    // Nothing can fail in between (one process, its memory): appending after the history is atomic enough.
    const toRecipient = (await this.inbox.append(message.recipient, { body }, nowMs)).entry.seq;
    // The sending device has the message (the Reply tells it); the sender's other devices get it.
    const toSender = (await this.inbox.append(message.sender, { body, origin: message.senderDevice }, nowMs)).entry.seq;
    this.touch(message.sender, message.recipient, message.sentAtMs);
    this.touch(message.recipient, message.sender, message.sentAtMs);
    return { kind: 'stored', message: { ...message, convSeq, recalledAtMs: 0 }, inboxSeqs: { recipient: toRecipient, sender: toSender } };
  }

  async history(a: string, b: string, beforeSeq: number, limit: number): Promise<HistorySlice> {
    this.ensureOpen('history');
    checkUser('history user', a);
    checkUser('history peer', b);
    checkCount('history beforeSeq', beforeSeq, 0);
    checkCount('history limit', limit, 1);
    const conv = this.conversation(a, b, false);
    if (conv === undefined || conv.history.length === 0) return { messages: [], hasMore: false, oldestRetainedSeq: 0 };
    const end = beforeSeq === 0 ? conv.history.length : conv.history.lowerBound(beforeSeq - 1, (m) => m.convSeq);
    const start = Math.max(0, end - Math.min(limit, MAX_HISTORY_PAGE));
    return { messages: conv.history.slice(start, end).map(stored), hasMore: start > 0, oldestRetainedSeq: conv.history.peek()!.convSeq };
  }

  async recall(requester: string, peer: string, convSeq: number, nowMs: number, windowMs: number): Promise<RecallOutcome> {
    this.ensureOpen('recall');
    checkUser('recall user', requester);
    checkUser('recall peer', peer);
    checkCount('recall convSeq', convSeq, 1);
    checkCount('recall nowMs', nowMs, 0);
    checkCount('recall windowMs', windowMs, 0);
    const conv = this.conversation(requester, peer, false);
    const i = conv?.history.lowerBound(convSeq - 1, (m) => m.convSeq) ?? -1;
    const found = conv?.history.at(i);
    if (conv === undefined || found === undefined || found.convSeq !== convSeq) return { kind: 'not_found' };
    if (found.sender !== requester) return { kind: 'not_sender' };
    if (found.recalledAtMs !== 0) return { kind: 'already', message: stored(found) };
    if (found.sentAtMs + windowMs < nowMs) return { kind: 'expired' };
    found.recalledAtMs = nowMs;
    return { kind: 'recalled', message: stored(found) };
  }

  async markRead(reader: string, peer: string, convSeq: number): Promise<ReadOutcome> {
    this.ensureOpen('markRead');
    checkUser('markRead user', reader);
    checkUser('markRead peer', peer);
    checkCount('markRead convSeq', convSeq, 0);
    const conv = this.conversation(reader, peer, false);
    if (conv === undefined) return { readSeq: 0, advanced: false, unread: 0 };
    const sentByPeer = conv.sent.get(peer) ?? 0;
    const current = conv.reads.get(reader) ?? { readSeq: 0, peerCount: 0 };
    const target = Math.min(convSeq, conv.seq);
    if (target <= current.readSeq) return { readSeq: current.readSeq, advanced: false, unread: sentByPeer - current.peerCount };
    // The peer's messages after the new position are still unread; the retained history knows them.
    let later = 0;
    for (let i = conv.history.lowerBound(target, (m) => m.convSeq); i < conv.history.length; i++) if (conv.history.at(i)!.sender === peer) later++;
    const peerCount = sentByPeer - later;
    conv.reads.set(reader, { readSeq: target, peerCount });
    return { readSeq: target, advanced: true, unread: later };
  }

  async unread(user: string, peers: readonly string[]): Promise<UnreadCount[]> {
    this.ensureOpen('unread');
    checkUser('unread user', user);
    return peers.map((peer) => {
      checkUser('unread peer', peer);
      const conv = this.conversation(user, peer, false);
      if (conv === undefined) return { peer, count: 0, lastConvSeq: 0 };
      return { peer, count: (conv.sent.get(peer) ?? 0) - (conv.reads.get(user)?.peerCount ?? 0), lastConvSeq: conv.seq };
    });
  }

  /** Records activity in the conversation of `user` with `peer` (an older time changes nothing). */
  private touch(user: string, peer: string, atMs: number): void {
    const state = this.user(user);
    const previous = state.conversations.get(peer) ?? 0;
    state.conversations.delete(peer);
    state.conversations.set(peer, Math.max(previous, atMs));
    if (state.conversations.size > MAX_CONVERSATIONS) state.conversations.delete(state.conversations.keys().next().value!);
  }

  async conversations(user: string, limit: number): Promise<string[]> {
    this.ensureOpen('conversations');
    checkUser('conversations user', user);
    checkCount('conversations limit', limit, 1);
    const entries = [...(this.users.get(user)?.conversations ?? [])];
    entries.sort((x, y) => y[1] - x[1]);
    return entries.slice(0, limit).map(([peer]) => peer);
  }

  async setBlocked(user: string, target: string, on: boolean, maxBlocked: number): Promise<boolean> {
    this.ensureOpen('setBlocked');
    checkUser('setBlocked user', user);
    checkUser('setBlocked target', target);
    checkCount('setBlocked maxBlocked', maxBlocked, 0);
    const state = this.user(user);
    if (on && !state.blocks.has(target) && state.blocks.size >= maxBlocked) return false;
    const conv = this.conversation(user, target, on);
    if (on) {
      conv!.blockers.add(user);
      state.blocks.add(target);
    } else {
      conv?.blockers.delete(user);
      state.blocks.delete(target);
    }
    return true;
  }

  async blocked(user: string): Promise<string[]> {
    this.ensureOpen('blocked');
    checkUser('blocked user', user);
    return [...(this.users.get(user)?.blocks ?? [])].sort();
  }

  async isBlocked(user: string, target: string): Promise<boolean> {
    this.ensureOpen('isBlocked');
    checkUser('isBlocked user', user);
    checkUser('isBlocked target', target);
    return this.users.get(user)?.blocks.has(target) ?? false;
  }

  async sessionOnline(user: string, sessionKey: string, ttlMs: number, nowMs: number): Promise<boolean> {
    this.ensureOpen('sessionOnline');
    checkSession(user, sessionKey, ttlMs, nowMs);
    const sessions = this.liveSessions(user, nowMs);
    const wasOffline = sessions.size === 0;
    sessions.set(sessionKey, nowMs + ttlMs);
    return wasOffline;
  }

  async renewSessions(sessions: readonly { user: string; sessionKey: string }[], ttlMs: number, nowMs: number): Promise<void> {
    this.ensureOpen('renewSessions');
    for (const { user, sessionKey } of sessions) {
      checkSession(user, sessionKey, ttlMs, nowMs);
      const live = this.users.get(user)?.sessions;
      if (live?.has(sessionKey)) live.set(sessionKey, nowMs + ttlMs);
    }
  }

  async sessionOffline(user: string, sessionKey: string, nowMs: number): Promise<boolean> {
    this.ensureOpen('sessionOffline');
    checkSession(user, sessionKey, 1, nowMs);
    const sessions = this.liveSessions(user, nowMs);
    return sessions.delete(sessionKey) && sessions.size === 0;
  }

  async online(users: readonly string[], nowMs: number): Promise<boolean[]> {
    this.ensureOpen('online');
    checkCount('online nowMs', nowMs, 0);
    return users.map((user) => {
      checkUser('online user', user);
      return this.liveSessions(user, nowMs).size > 0;
    });
  }

  async close(): Promise<void> {
    this.closed = true;
  }

  private conversation(a: string, b: string, create: boolean): Conversation | undefined {
    const id = conversationId(a, b);
    let conv = this.convs.get(id);
    if (conv === undefined && create) this.convs.set(id, (conv = new Conversation([a, b])));
    return conv;
  }

  private user(user: string): UserState {
    let state = this.users.get(user);
    if (state === undefined) this.users.set(user, (state = new UserState()));
    return state;
  }

  /** The user's sessions with the expired ones dropped. */
  private liveSessions(user: string, nowMs: number): Map<string, number> {
    const sessions = this.user(user).sessions;
    for (const [key, expiresAt] of sessions) if (expiresAt <= nowMs) sessions.delete(key);
    return sessions;
  }

  private ensureOpen(method: string): void {
    if (this.closed) throw imStoreClosed(method);
  }
}

/** A kept message as the store's callers see it; a recalled one without its body. */
function stored(kept: Kept): StoredMessage {
  const m = decodeInboxPayload(kept.item).message!;
  const { serverId, sender, recipient, convSeq, sentAtMs, clientMsgId, senderDevice } = m;
  const body = kept.recalledAtMs === 0 ? Buffer.from(m.body) : Buffer.alloc(0);
  return { serverId, sender, recipient, convSeq, body, sentAtMs, clientMsgId, senderDevice, recalledAtMs: kept.recalledAtMs };
}
