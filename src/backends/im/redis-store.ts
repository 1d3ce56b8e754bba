import { type Redis, ReplyError } from 'ioredis';
import { RedisInboxStore } from '../kit/inbox/redis-inbox-store.js';
import { RedisHandle, type RedisConnectionOptions } from '../kit/redis/redis-handle.js';
import { HISTORY, MARK_READ, RECALL, SESSION_OFFLINE, SESSION_ONLINE, SET_BLOCKED, STORE_MESSAGES, UNREAD } from './redis-scripts.js';
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

export interface RedisImStoreOptions extends RedisConnectionOptions {
  /** Prepended to every key (default `livemux:im:`). */
  readonly keyPrefix?: string;
  /**
   * The users' inboxes, on the same Redis: a send appends to them in its own script. Default: a
   * RedisInboxStore on this store's connection, key prefix `<keyPrefix>inbox:`.
   */
  readonly inbox?: RedisInboxStore;
}

type ConversationPart = 'seq' | 'history' | 'sent' | 'reads' | 'blockers' | 'recalled' | 'oldest';
type UserPart = 'convs' | 'blocks' | 'sessions';

/**
 * ImStore on Redis (6.2 or later). Per conversation, under `<prefix>{c:<conversation id>}:`:
 *
 * | key            | type   | holds |
 * |----------------|--------|-------|
 * | seq            | string | last conv_seq (INCR) |
 * | history        | stream | messages, ID `<convSeq>-0`, fields i s r c d t b (redis-scripts.ts) |
 * | sent           | hash   | user → messages sent in the conversation, ever |
 * | reads          | hash   | user → `<readSeq> <peer messages covered>` |
 * | blockers       | hash   | user → 1 when that user blocked the other |
 * | recalled       | hash   | convSeq → recalledAtMs |
 * | oldest         | string | a lower bound of the oldest message's sentAtMs (the age check's shortcut) |
 * | cmid:<n>:<sender>:<clientMsgId> | string | `<convSeq> <sentAt> <serverId>`, PX = dedupe TTL |
 *
 * Per user, under `<prefix>{u:<user>}:`: `convs` (sorted set peer → last activity, written by the send), `blocks` (set),
 * `sessions` (sorted set session key → expiry ms, the key expiring with its newest session). A block
 * is written to the user's `blocks` and the conversation's `blockers` (what sends check) in one script.
 *
 * Every conversation write is one script, so it is atomic; a send's script also appends the message's
 * entry to both users' inboxes (the kit's inbox_append, on `inbox`'s keys), so it writes keys of three
 * hash tags, and the conversation lists of its two users: IM needs one Redis primary, not Redis
 * Cluster. A recalled message's body stays in the stream
 * until retention removes it, but is never served again: history answers it empty.
 */
export class RedisImStore implements ImStore {
  readonly inbox: RedisInboxStore;
  private readonly handle: RedisHandle;
  private readonly prefix: string;
  /** Whether `close` closes the inbox too: only one this store made. */
  private readonly ownsInbox: boolean;
  /** Pair (conversation id) → when this process last recorded its activity (see touchDue). */
  private readonly touched = new Map<string, number>();
  /** Sends of this event-loop turn waiting to go to Redis in one STORE_MESSAGES call (queueStore). */
  private storeBatch: StoreBatch | null = null;
  /** The inboxes' age bound (ms; Infinity = none). */
  private readonly inboxMaxAgeMs: number;
  /**
   * The age marks (stream-trim.ts) last seen of conversations' histories (by conversation id) and of
   * users' inboxes (by user): while a send's cutoff is at or below one, its age check is skipped
   * (ageChecks). A mark only rises, so one remembered here, however old, is never above Redis's.
   */
  private readonly historyMarks = new Map<string, number>();
  private readonly inboxMarks = new Map<string, number>();

  constructor(options: RedisImStoreOptions = {}) {
    this.prefix = options.keyPrefix ?? 'livemux:im:';
    this.handle = new RedisHandle(options, imStoreClosed);
    this.ownsInbox = options.inbox === undefined;
    this.inbox = options.inbox ?? new RedisInboxStore({ connection: this.handle.redis, keyPrefix: `${this.prefix}inbox:` });
    this.inboxMaxAgeMs = this.inbox.scriptSettings.maxAgeMs;
  }

  private get redis(): Redis {
    return this.handle.redis;
  }

  async storeMessage(message: NewMessage, fields: Buffer, limits: ConversationLimits, nowMs: number): Promise<StoreOutcome> {
    this.handle.ensureOpen('storeMessage');
    checkMessage(message);
    checkCount('storeMessage nowMs', nowMs, 0);
    const { sender, recipient } = message;
    const conversation = conversationId(sender, recipient);
    const touch = this.touchDue(conversation, message.sentAtMs);
    const reply = await this.queueStore(limits, [
      conversation,
      message.serverId,
      sender,
      recipient,
      message.clientMsgId,
      // The sending device has the message (the Reply tells it); the sender's other devices get it:
      // it is the sender's entry's origin.
      message.senderDevice,
      message.sentAtMs,
      message.body,
      fields,
      nowMs,
      touch ? message.sentAtMs : '',
      this.ageChecks(conversation, sender, recipient, limits.maxAgeMs, nowMs),
    ]);
    // What the command that failed would have rejected with, had it run alone.
    if (reply[0] === 3) throw new ReplyError(reply[1]) as Error;
    if (reply[0] === 2) return { kind: 'blocked' };
    if (reply[0] === 0) {
      remember(this.historyMarks, conversation, reply[4]);
      remember(this.inboxMarks, recipient, reply[5]);
      remember(this.inboxMarks, sender, reply[6]);
      return { kind: 'stored', message: { ...message, convSeq: reply[1], recalledAtMs: 0 }, inboxSeqs: { recipient: reply[2], sender: reply[3] } };
    }
    const [convSeq, sentAtMs, serverId] = reply[1].split(' ') as [string, string, string];
    return { kind: 'duplicate', message: { ...message, serverId, convSeq: Number(convSeq), sentAtMs: Number(sentAtMs), recalledAtMs: 0 } };
  }

  /**
   * Runs one message's part of STORE_MESSAGES together with the other sends of this turn of the event
   * loop (up to STORE_BATCH) under the same limits: those the proxy's batch of events carried arrive in
   * one turn.
   */
  private queueStore(limits: ConversationLimits, args: (string | number | Buffer)[]): Promise<StoreReply> {
    let batch = this.storeBatch;
    if (batch === null || batch.replies.length === STORE_BATCH || batch.limits !== limits) {
      const { keyPrefix, maxEntries, maxAgeMs } = this.inbox.scriptSettings;
      const ageOrNone = (ms: number): string | number => (ms === Number.POSITIVE_INFINITY ? '' : ms);
      const shared = [this.prefix, keyPrefix, limits.dedupeTtlMs, limits.maxMessages, ageOrNone(limits.maxAgeMs), maxEntries, ageOrNone(maxAgeMs), MAX_CONVERSATIONS];
      const created: StoreBatch = { limits, args: shared, replies: [] };
      this.storeBatch = batch = created;
      queueMicrotask(() => this.runStoreBatch(created));
    }
    for (const arg of args) batch.args.push(arg);
    const { replies } = batch;
    return new Promise((resolve, reject) => replies.push({ resolve, reject }));
  }

  private runStoreBatch(batch: StoreBatch): void {
    if (this.storeBatch === batch) this.storeBatch = null;
    this.handle.io(STORE_MESSAGES.run(this.redis, [], batch.args)).then(
      (replies) => batch.replies.forEach((r, i) => r.resolve((replies as StoreReply[])[i]!)),
      (err: unknown) => batch.replies.forEach((r) => r.reject(err)),
    );
  }

  async history(a: string, b: string, beforeSeq: number, limit: number): Promise<HistorySlice> {
    this.handle.ensureOpen('history');
    checkUser('history user', a);
    checkUser('history peer', b);
    checkCount('history beforeSeq', beforeSeq, 0);
    checkCount('history limit', limit, 1);
    const count = Math.min(limit, MAX_HISTORY_PAGE);
    const end = beforeSeq === 0 ? '+' : `(${beforeSeq}-0`;
    const keys = [this.conv(a, b, 'history'), this.conv(a, b, 'recalled')];
    const [oldest, page] = (await this.handle.io(HISTORY.runBuffer(this.redis, keys, [end, count + 1]))) as [Buffer, [Buffer, Buffer[], Buffer][]];
    const messages = page.slice(0, count).map(([id, fields, recalledAt]) => toMessage(id, fields, Number(recalledAt.toString()))).reverse();
    return { messages, hasMore: page.length > count, oldestRetainedSeq: oldest.length === 0 ? 0 : seqOf(oldest) };
  }

  async recall(requester: string, peer: string, convSeq: number, nowMs: number, windowMs: number): Promise<RecallOutcome> {
    this.handle.ensureOpen('recall');
    checkUser('recall user', requester);
    checkUser('recall peer', peer);
    checkCount('recall convSeq', convSeq, 1);
    checkCount('recall nowMs', nowMs, 0);
    checkCount('recall windowMs', windowMs, 0);
    const keys = [this.conv(requester, peer, 'history'), this.conv(requester, peer, 'recalled')];
    const reply = (await this.handle.io(RECALL.runBuffer(this.redis, keys, [requester, convSeq, nowMs, windowMs]))) as [Buffer, Buffer[]?, Buffer?];
    const kind = reply[0].toString() as RecallOutcome['kind'];
    if (kind !== 'recalled' && kind !== 'already') return { kind } as RecallOutcome;
    return { kind, message: toMessage(Buffer.from(`${convSeq}-0`), reply[1]!, Number(reply[2]!.toString())) };
  }

  async markRead(reader: string, peer: string, convSeq: number): Promise<ReadOutcome> {
    this.handle.ensureOpen('markRead');
    checkUser('markRead user', reader);
    checkUser('markRead peer', peer);
    checkCount('markRead convSeq', convSeq, 0);
    const keys = (['seq', 'history', 'sent', 'reads'] as const).map((part) => this.conv(reader, peer, part));
    const [readSeq, advanced, unread] = (await this.handle.io(MARK_READ.run(this.redis, keys, [reader, peer, convSeq]))) as [number, number, number];
    return { readSeq, advanced: advanced === 1, unread };
  }

  async unread(user: string, peers: readonly string[]): Promise<UnreadCount[]> {
    this.handle.ensureOpen('unread');
    checkUser('unread user', user);
    for (const peer of peers) checkUser('unread peer', peer);
    // One script per conversation (each its own slot), sent together: one round trip.
    const replies = await this.handle.io(
      Promise.all(
        peers.map(
          (peer) =>
            UNREAD.run(this.redis, [this.conv(user, peer, 'seq'), this.conv(user, peer, 'sent'), this.conv(user, peer, 'reads')], [user, peer]) as Promise<[number, number, number]>,
        ),
      ),
    );
    return peers.map((peer, i) => {
      const [sent, covered, last] = replies[i]!;
      return { peer, count: sent - covered, lastConvSeq: last };
    });
  }

  async conversations(user: string, limit: number): Promise<string[]> {
    this.handle.ensureOpen('conversations');
    checkUser('conversations user', user);
    checkCount('conversations limit', limit, 1);
    return this.handle.io(this.redis.zrevrange(this.user(user, 'convs'), 0, limit - 1));
  }

  async setBlocked(user: string, target: string, on: boolean, maxBlocked: number): Promise<boolean> {
    this.handle.ensureOpen('setBlocked');
    checkUser('setBlocked user', user);
    checkUser('setBlocked target', target);
    checkCount('setBlocked maxBlocked', maxBlocked, 0);
    const keys = [this.user(user, 'blocks'), this.conv(user, target, 'blockers')];
    return (await this.handle.io(SET_BLOCKED.run(this.redis, keys, [user, target, on ? 1 : 0, maxBlocked]))) === 1;
  }

  async blocked(user: string): Promise<string[]> {
    this.handle.ensureOpen('blocked');
    checkUser('blocked user', user);
    return (await this.handle.io(this.redis.smembers(this.user(user, 'blocks')))).sort();
  }

  async isBlocked(user: string, target: string): Promise<boolean> {
    this.handle.ensureOpen('isBlocked');
    checkUser('isBlocked user', user);
    checkUser('isBlocked target', target);
    return (await this.handle.io(this.redis.sismember(this.user(user, 'blocks'), target))) === 1;
  }

  async sessionOnline(user: string, sessionKey: string, ttlMs: number, nowMs: number): Promise<boolean> {
    this.handle.ensureOpen('sessionOnline');
    checkSession(user, sessionKey, ttlMs, nowMs);
    const reply = await this.handle.io(SESSION_ONLINE.run(this.redis, [this.user(user, 'sessions')], [sessionKey, nowMs, nowMs + ttlMs, ttlMs]));
    return reply === 1;
  }

  async renewSessions(sessions: readonly { user: string; sessionKey: string }[], ttlMs: number, nowMs: number): Promise<void> {
    this.handle.ensureOpen('renewSessions');
    for (const { user, sessionKey } of sessions) checkSession(user, sessionKey, ttlMs, nowMs);
    if (sessions.length === 0) return;
    const pipeline = this.redis.pipeline();
    for (const { user, sessionKey } of sessions) {
      const key = this.user(user, 'sessions');
      pipeline.zadd(key, 'XX', nowMs + ttlMs, sessionKey).pexpire(key, ttlMs);
    }
    const results = await this.handle.io(pipeline.exec());
    for (const [err] of results ?? []) if (err) throw err;
  }

  async sessionOffline(user: string, sessionKey: string, nowMs: number): Promise<boolean> {
    this.handle.ensureOpen('sessionOffline');
    checkSession(user, sessionKey, 1, nowMs);
    return (await this.handle.io(SESSION_OFFLINE.run(this.redis, [this.user(user, 'sessions')], [sessionKey, nowMs]))) === 1;
  }

  async online(users: readonly string[], nowMs: number): Promise<boolean[]> {
    this.handle.ensureOpen('online');
    checkCount('online nowMs', nowMs, 0);
    for (const user of users) checkUser('online user', user);
    const counts = await this.handle.io(Promise.all(users.map((user) => this.redis.zcount(this.user(user, 'sessions'), `(${nowMs}`, '+inf'))));
    return counts.map((n) => n > 0);
  }

  async close(): Promise<void> {
    if (this.ownsInbox) await this.inbox.close();
    await this.handle.close();
  }

  /**
   * STORE_MESSAGES's age checks for a send at `nowMs` (history, recipient's inbox, sender's): '0' where
   * the remembered mark is at or above the cutoff, so the script's check would only read the mark and
   * stop. The marks' three GETs were a fifth of a send's calls in Redis.
   */
  private ageChecks(conversation: string, sender: string, recipient: string, historyMaxAgeMs: number, nowMs: number): string {
    const history = nowMs - historyMaxAgeMs;
    const inbox = nowMs - this.inboxMaxAgeMs;
    return checkDue(this.historyMarks.get(conversation), history) + checkDue(this.inboxMarks.get(recipient), inbox) + checkDue(this.inboxMarks.get(sender), inbox);
  }

  /**
   * Whether a send at `atMs` records the pair's activity: at most once per TOUCH_INTERVAL_MS per pair
   * on this process. The lists order conversations by recency, which a second's precision serves, and
   * two sorted-set writes per message would be a fifth of the send's cost in Redis.
   */
  private touchDue(key: string, atMs: number): boolean {
    const last = this.touched.get(key);
    if (last !== undefined && atMs - last < TOUCH_INTERVAL_MS && atMs >= last) return false;
    if (this.touched.size >= MAX_REMEMBERED) this.touched.clear();
    this.touched.set(key, atMs);
    return true;
  }

  private convPrefix(a: string, b: string): string {
    return `${this.prefix}{c:${conversationId(a, b)}}:`;
  }

  private conv(a: string, b: string, part: ConversationPart): string {
    return `${this.convPrefix(a, b)}${part}`;
  }

  private user(user: string, part: UserPart): string {
    return `${this.prefix}{u:${user}}:${part}`;
  }
}

/**
 * One message's answer from STORE_MESSAGES: stored (conv seq, both inbox seqs, the age marks of the
 * history and both inboxes, null where not checked), a resend, blocked, failed.
 */
type StoreReply = [0, number, number, number, number | null, number | null, number | null] | [1, string] | [2] | [3, string];

interface StoreBatch {
  /** The limits its messages were stored under (one call shares them; callers pass the same object). */
  readonly limits: ConversationLimits;
  readonly args: (string | number | Buffer)[];
  readonly replies: { resolve: (reply: StoreReply) => void; reject: (err: unknown) => void }[];
}

/** Most sends in one STORE_MESSAGES call: bounds the script's time, during which Redis serves no one else. */
const STORE_BATCH = 64;
const TOUCH_INTERVAL_MS = 1_000;
/**
 * Keys each of the store's memories (touchDue's pairs, the age marks) keeps; beyond, that map starts
 * over: a few extra writes or age checks, never a missed one.
 */
const MAX_REMEMBERED = 100_000;

/** '1' when an age check with `cutoff` is due ('0': the known mark is at or above it). */
function checkDue(mark: number | undefined, cutoff: number): string {
  return mark !== undefined && mark >= cutoff ? '0' : '1';
}

/** Keeps the highest mark seen of `key` (an answer from an older call may come after a newer one's). */
function remember(marks: Map<string, number>, key: string, mark: number | null): void {
  if (mark === null) return;
  const known = marks.get(key);
  if (known !== undefined && known >= mark) return;
  if (known === undefined && marks.size >= MAX_REMEMBERED) marks.clear();
  marks.set(key, mark);
}

function seqOf(id: Buffer): number {
  const text = id.toString();
  return Number(text.slice(0, text.indexOf('-')));
}

/** A history entry (fields i s r c d t b) as a StoredMessage; a recalled one without its body. */
function toMessage(id: Buffer, fields: (Buffer | string)[], recalledAtMs: number): StoredMessage {
  const text = (i: number): string => fields[i]!.toString();
  return {
    serverId: text(1),
    sender: text(3),
    recipient: text(5),
    convSeq: seqOf(id),
    clientMsgId: text(7),
    senderDevice: text(9),
    sentAtMs: Number(text(11)),
    body: recalledAtMs === 0 ? (fields[13] as Buffer) : Buffer.alloc(0),
    recalledAtMs,
  };
}
