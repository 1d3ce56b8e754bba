/**
 * The IM backend (issue 10, docs/im.md) as BackendHandlers for createBackendServer. Each session of
 * business `im` is one device of one user (metadata `device_id`). A send is stored in its
 * conversation (ImStore: seq, history, dedupe, blocks) and then in both users' inboxes (the kit's
 * InboxHub), and only then acknowledged; the inboxes deliver it to every device of both users on
 * whichever process holds them, and keep it for the offline ones. Receipts and recalls travel the same
 * way; typing and presence are transient.
 */
import { createHash, randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import pino from 'pino';
import type { SessionOpenInfo } from '../../contract/backend-contract.js';
import { Code } from '../../protocol/codes.js';
import { Priority } from '../../protocol/constants.js';
import { TokenBucket } from '../../util/token-bucket.js';
import type { BackendHandlers, ProxyStreamContext } from '../kit/backend-server.js';
import { InboxHub } from '../kit/inbox/inbox-hub.js';
import type { DeviceFeed, FeedSink } from '../kit/inbox/device-feed.js';
import type { InboxEntry, InboxStore, RetentionLimits } from '../kit/inbox/inbox-store.js';
import { MemoryInboxStore } from '../kit/inbox/memory-inbox-store.js';
import {
  decodeImRequest,
  encodeEntriesEvent,
  encodeImEvent,
  encodeInboxPayload,
  encodeMessageFields,
  encodeOkReply,
  requestKind,
  type ImRequest,
  type ImRequestKind,
  type InboxPayload,
  type Message,
  type Reply,
  type SendRequest,
} from './im-codec.js';
import { ImError, ImErrorCode } from './im-errors.js';
import { RefuseReason, createImMetrics, newImStats, type ImMetrics, type ImStats } from './im-metrics.js';
import { MemoryImStore } from './memory-store.js';
import { Presence, type PresenceSession } from './presence.js';
import { MAX_CLIENT_MSG_ID_BYTES, MAX_DEVICE_ID_BYTES, MAX_USER_ID_BYTES } from './store-checks.js';
import { MAX_HISTORY_PAGE, type ConversationLimits, type ImStore, type StoredMessage } from './store.js';

/** Options of the IM backend; every one has a default. */
export interface ImBackendOptions {
  /** Conversations, blocks, reads, sessions, and the inboxes (default: a new MemoryImStore on a MemoryInboxStore with `retention`). */
  store?: ImStore;
  /** Carries presence changes between processes (default: a new MemoryInboxStore; only its publish/watch are used). */
  presenceBus?: InboxStore;
  /** Inbox retention when `store` is not given (default 1000 entries, 7 days). */
  retention?: Partial<RetentionLimits>;
  /** Conversation history bounds (default 10,000 messages, 180 days) and the resend window (default 24 h). */
  conversation?: Partial<ConversationLimits>;
  /** Largest message body (default 16384 bytes). */
  maxBodyBytes?: number;
  /** Per-user send limit on this process, messages/s (default 20) and burst (default 40). */
  sendRate?: number;
  sendBurst?: number;
  /** Per-user typing events/s passed on (default 2, burst 4); more are dropped silently. */
  typingRate?: number;
  /**
   * Per-user requests/s other than send, ack and typing (sync, read, recall, history, presence,
   * blocks), default 50, burst twice that: each costs the store a read or a write, so a client that
   * floods them is refused (RATE_LIMITED) before it costs anyone else.
   */
  requestRate?: number;
  /** How long after sending a message may be recalled (default 120 000 ms). */
  recallWindowMs?: number;
  /** A session not renewed for this long counts offline (default 30 000 ms; renewed every third). */
  presenceTtlMs?: number;
  /** Users one session may watch (default 100). */
  maxWatched?: number;
  /** Users one user may block (default 1000). */
  maxBlocked?: number;
  /** Inbox entries sent ahead of a device's acks (default 256). */
  window?: number;
  /** Least time between two writes of a device's inbox cursor (default 1000 ms; see docs/inbox.md). */
  cursorWriteIntervalMs?: number;
  /** Wall clock, ms since the epoch (default Date.now). */
  now?: () => number;
  logger?: pino.Logger;
  /** Also export Node process metrics (default false; the process sets it). */
  processMetrics?: boolean;
}

export const IM_DEFAULTS = Object.freeze({
  maxMessages: 10_000,
  maxAgeMs: 180 * 24 * 3600_000,
  dedupeTtlMs: 24 * 3600_000,
  maxBodyBytes: 16_384,
  sendRate: 20,
  sendBurst: 40,
  typingRate: 2,
  requestRate: 50,
  recallWindowMs: 120_000,
  presenceTtlMs: 30_000,
  cursorWriteIntervalMs: 1_000,
  maxWatched: 100,
  maxBlocked: 1000,
  historyPage: 50,
  /** Conversations whose unread counts a Sync reply carries (the most recent). */
  unreadConversations: 200,
});

/** Bytes of entries per Entries event: well under the default session window (256 KiB) and max payload. */
const MAX_EVENT_BYTES = 64 * 1024;
/**
 * Upper bounds of what protobuf adds around the data of an event (tags, lengths, request id, flags),
 * of an inbox entry around its stored body, and of one message's fields beyond its strings and body.
 * Events are sized with them to stay within the client's max_payload (PROTOCOL.md §7).
 */
const EVENT_OVERHEAD = 64;
const ENTRY_OVERHEAD = 16;
const MESSAGE_FIELDS_OVERHEAD = 64;
/** Per user id in a list reply (tag, length, and for Unread and PresenceEvent their numbers). */
const LISTED_USER_OVERHEAD = 32;
/**
 * The most one message may take in any event, beyond its body: every id at its longest. A session whose
 * max_payload is below the body limit plus this cannot receive every message, so it is refused.
 */
const MESSAGE_ENVELOPE = EVENT_OVERHEAD + ENTRY_OVERHEAD + MESSAGE_FIELDS_OVERHEAD + 36 + 2 * MAX_USER_ID_BYTES + MAX_CLIENT_MSG_ID_BYTES + MAX_DEVICE_ID_BYTES;

/** An ack's Reply: no fields but `ok` (reply() knows it by identity and writes it by hand). */
const ACKED: Partial<Reply> = Object.freeze({});

/** An IM backend: its handlers for createBackendServer, and what tests and the process need. */
export interface ImBackend {
  readonly handlers: BackendHandlers;
  readonly stats: Readonly<ImStats>;
  readonly metrics: ImMetrics;
  readonly hub: InboxHub;
  readonly store: ImStore;
  /** Open sessions. */
  readonly sessions: number;
  /** Resolves once every request received so far has been answered (tests). */
  settled(): Promise<void>;
  /** Closes the feeds (their cursors are written), stops presence, closes the stores. */
  close(): Promise<void>;
}

/** What this process counts per user: its open sessions and its rate limits. */
interface UserLimits {
  sessions: number;
  readonly sends: TokenBucket;
  readonly typing: TokenBucket;
  readonly requests: TokenBucket;
}

/** One device session. */
interface ImSession extends PresenceSession {
  readonly ctx: ProxyStreamContext;
  readonly session: number;
  readonly deviceId: string;
  /** The client's max_payload: no event to it may be larger. */
  readonly maxPayload: number;
  feed: DeviceFeed | null;
  /** Requests being worked on, whose Reply is still owed. */
  unanswered: number;
  /** The client sent CLOSE: the session ends once nothing is owed. */
  halfClosed: boolean;
  ended: boolean;
}

export function createImBackend(options: ImBackendOptions = {}): ImBackend {
  const log = options.logger ?? pino({ level: 'silent' });
  const now = options.now ?? Date.now;
  const store = options.store ?? new MemoryImStore({ inbox: new MemoryInboxStore({ retention: options.retention ?? {} }) });
  const inbox = store.inbox;
  const presenceBus = options.presenceBus ?? new MemoryInboxStore();
  const hub = new InboxHub({
    store: inbox,
    now,
    logger: log,
    cursorWriteIntervalMs: options.cursorWriteIntervalMs ?? IM_DEFAULTS.cursorWriteIntervalMs,
    ...(options.window === undefined ? {} : { window: options.window }),
  });
  const limits: ConversationLimits = {
    maxMessages: options.conversation?.maxMessages ?? IM_DEFAULTS.maxMessages,
    maxAgeMs: options.conversation?.maxAgeMs ?? IM_DEFAULTS.maxAgeMs,
    dedupeTtlMs: options.conversation?.dedupeTtlMs ?? IM_DEFAULTS.dedupeTtlMs,
  };
  const maxBodyBytes = options.maxBodyBytes ?? IM_DEFAULTS.maxBodyBytes;
  const sendRate = options.sendRate ?? IM_DEFAULTS.sendRate;
  const sendBurst = options.sendBurst ?? Math.max(IM_DEFAULTS.sendBurst, sendRate * 2);
  const typingRate = options.typingRate ?? IM_DEFAULTS.typingRate;
  const requestRate = options.requestRate ?? IM_DEFAULTS.requestRate;
  const recallWindowMs = options.recallWindowMs ?? IM_DEFAULTS.recallWindowMs;
  const maxWatched = options.maxWatched ?? IM_DEFAULTS.maxWatched;
  const maxBlocked = options.maxBlocked ?? IM_DEFAULTS.maxBlocked;
  const minPayload = maxBodyBytes + MESSAGE_ENVELOPE;
  const stats = newImStats();
  const instance = `${hostname()}-${process.pid}-${randomUUID().slice(0, 8)}`;

  const presence = new Presence({ store, bus: presenceBus, ttlMs: options.presenceTtlMs ?? IM_DEFAULTS.presenceTtlMs, now, log });
  const tables = new Map<ProxyStreamContext, Map<number, ImSession>>();
  /** Per user on this process: open sessions and their rate limits. */
  const users = new Map<string, UserLimits>();
  let sessionCount = 0;
  const pending = new Set<Promise<void>>();

  const metrics = createImMetrics(
    {
      stats,
      sessions: () => sessionCount,
      feeds: () => [...tables.values()].reduce((n, t) => n + [...t.values()].filter((s) => s.feed !== null).length, 0),
      watchedUsers: () => presence.watchedUsers,
    },
    { processMetrics: options.processMetrics ?? false },
  );

  const send = (s: ImSession, payload: Buffer, priority: Priority): void => {
    if (!s.ended && !s.ctx.gone) s.ctx.deliver(s.session, payload, priority);
  };

  const reply = (s: ImSession, requestId: number, fields: Partial<Reply>): void => {
    if (requestId === 0) return;
    // A send's (sendMessage answers `sent` alone), like an ack's, encoded by hand: nearly every Reply.
    const payload =
      fields === ACKED || fields.sent !== undefined
        ? encodeOkReply(requestId, fields.sent)
        : encodeImEvent({ reply: { requestId, ok: true, errorCode: '', errorMessage: '', retryAfterMs: 0, ...fields } });
    send(s, payload, Priority.HIGH);
  };

  const replyError = (s: ImSession, requestId: number, err: ImError): void => {
    reply(s, requestId, { ok: false, errorCode: err.code, errorMessage: err.message, retryAfterMs: err.retryAfterMs });
  };

  /** Runs a request's work and answers it; failures that are not ImErrors are logged and answered INTERNAL. */
  const run = (s: ImSession, requestId: number, kind: ImRequestKind, work: () => Promise<Partial<Reply> | null>): void => {
    s.unanswered++;
    const task = work().then(
      (result) => {
        if (result !== null) reply(s, requestId, result);
      },
      (err: unknown) => {
        if (err instanceof ImError) {
          replyError(s, requestId, err);
          return;
        }
        log.error({ err, user: s.userId, kind }, 'im: request failed');
        metrics.requestFailures.inc({ kind });
        if (kind === 'send') stats.refused.failed++;
        replyError(s, requestId, new ImError(ImErrorCode.INTERNAL, 'internal error'));
      },
    );
    pending.add(task);
    void task.finally(() => {
      pending.delete(task);
      if (--s.unanswered === 0 && s.halfClosed) finish(s);
    });
  };

  /** The client closed its side and has every Reply it is owed: the session ends (PROTOCOL.md §5.2). */
  const finish = (s: ImSession): void => {
    if (s.ended) return;
    end(s);
    s.ctx.close(s.session, Code.NORMAL, '');
  };

  const sink = (s: ImSession, resumed: boolean): FeedSink => ({
    entries(entries) {
      stats.entriesDelivered += entries.length;
      for (const chunk of chunks(entries, Math.min(MAX_EVENT_BYTES, s.maxPayload - EVENT_OVERHEAD))) send(s, encodeEntriesEvent(chunk), Priority.HIGH);
    },
    gap(fromSeq, toSeq) {
      stats.gaps++;
      send(s, encodeImEvent({ gap: { fromSeq, toSeq } }), Priority.HIGH);
    },
    transient(payload) {
      send(s, payload, Priority.LOW);
    },
    synced(lastSeq) {
      send(s, encodeImEvent({ synced: { lastSeq, resumed } }), Priority.HIGH);
    },
  });

  /**
   * (Re)starts delivery of the session's inbox after `afterSeq`; undefined: from the device's stored
   * cursor, for a session moved here (its Synced says `resumed`).
   */
  const startFeed = (s: ImSession, afterSeq: number | undefined): void => {
    s.feed?.close();
    s.feed = hub.attach(s.userId, s.deviceId, sink(s, afterSeq === undefined), afterSeq === undefined ? {} : { afterSeq });
  };

  /** Stores `payload` in both users' inboxes; idempotent by `dedupeKey`. */
  const toBothInboxes = async (a: string, b: string, payload: InboxPayload, dedupeKey: string): Promise<void> => {
    const body = encodeInboxPayload(payload);
    await Promise.all([hub.deliver(a, { body, dedupeKey }), hub.deliver(b, { body, dedupeKey })]);
  };

  const sendMessage = async (s: ImSession, req: SendRequest): Promise<Partial<Reply>> => {
    const to = checkUser('send.to', req.to, s.userId);
    if (typeof req.clientMsgId !== 'string' || req.clientMsgId === '' || Buffer.byteLength(req.clientMsgId) > MAX_CLIENT_MSG_ID_BYTES) {
      throw new ImError(ImErrorCode.BAD_REQUEST, `send.client_msg_id: expected 1..${MAX_CLIENT_MSG_ID_BYTES} bytes`);
    }
    if (req.body.length > maxBodyBytes) throw new ImError(ImErrorCode.TOO_LARGE, `send.body: ${req.body.length} bytes (limit ${maxBodyBytes})`);
    if (!user(s.userId).sends.take()) {
      throw new ImError(ImErrorCode.RATE_LIMITED, `send: more than ${sendRate} messages/s`, Math.ceil(1000 / sendRate));
    }
    const at = now();
    const message = { serverId: randomUUID(), sender: s.userId, recipient: to, body: Buffer.from(req.body), sentAtMs: at, clientMsgId: req.clientMsgId, senderDevice: s.deviceId };
    // Stored in the conversation and in both inboxes in one step: acknowledged means everywhere.
    const outcome = await store.storeMessage(message, encodeMessageFields(message), limits, at);
    if (outcome.kind === 'blocked') throw new ImError(ImErrorCode.BLOCKED, `send: ${to} does not accept your messages`);
    const stored = outcome.message;
    if (outcome.kind === 'stored') stats.messagesStored++;
    else stats.duplicates++;
    const { serverId, convSeq, sentAtMs, clientMsgId } = stored;
    return { sent: { serverId, convSeq, sentAtMs, clientMsgId, duplicate: outcome.kind === 'duplicate' } };
  };

  /** Every request but send, sync and ack. */
  const perform = async (s: ImSession, request: ImRequest, kind: ImRequestKind): Promise<Partial<Reply>> => {
    switch (kind) {
      case 'read': {
        const peer = checkUser('read.peer', request.read!.peer, s.userId);
        const read = await store.markRead(s.userId, peer, request.read!.convSeq);
        if (read.readSeq > 0) {
          // Delivered whether or not this call moved the position: a retried Read completes a receipt
          // that a failure cut short, and the dedupe key keeps it to one.
          const receipt = { reader: s.userId, peer, convSeq: read.readSeq, readAtMs: now() };
          await toBothInboxes(peer, s.userId, { read: receipt }, dedupeKey('read', s.userId, peer, read.readSeq));
          if (read.advanced) stats.receipts++;
        }
        return { read: { readSeq: read.readSeq, unread: read.unread } };
      }
      case 'recall': {
        const peer = checkUser('recall.peer', request.recall!.peer, s.userId);
        const outcome = await store.recall(s.userId, peer, request.recall!.convSeq, now(), recallWindowMs);
        if (outcome.kind === 'not_found') throw new ImError(ImErrorCode.NOT_FOUND, `recall: no message ${request.recall!.convSeq} with ${peer}`);
        if (outcome.kind === 'not_sender') throw new ImError(ImErrorCode.PERMISSION_DENIED, 'recall: only the sender may recall a message');
        if (outcome.kind === 'expired') throw new ImError(ImErrorCode.RECALL_EXPIRED, `recall: the ${recallWindowMs} ms window has passed`);
        const m = outcome.message;
        const notice = { serverId: m.serverId, sender: m.sender, recipient: m.recipient, convSeq: m.convSeq, recalledAtMs: m.recalledAtMs };
        await toBothInboxes(m.recipient, m.sender, { recall: notice }, dedupeKey('recall', m.serverId));
        if (outcome.kind === 'recalled') stats.recalls++;
        return {};
      }
      case 'history': {
        const peer = checkUser('history.peer', request.history!.peer, s.userId);
        const limit = Math.min(request.history!.limit || IM_DEFAULTS.historyPage, MAX_HISTORY_PAGE);
        const slice = await store.history(s.userId, peer, request.history!.beforeSeq, limit);
        // One Reply is one DATA: the page keeps the newest messages that fit the client's max_payload
        // (the newest always does, see minPayload), and says there is more before them.
        let budget = s.maxPayload - EVENT_OVERHEAD;
        let first = slice.messages.length;
        while (first > 0 && (budget -= messageBytes(slice.messages[first - 1]!)) >= 0) first--;
        const messages = slice.messages.slice(first === slice.messages.length ? first - 1 : first);
        const hasMore = slice.hasMore || messages.length < slice.messages.length;
        return { history: { messages: messages.map(wireMessage), hasMore, oldestRetainedSeq: slice.oldestRetainedSeq } };
      }
      case 'watchPresence': {
        const watched = request.watchPresence!.users;
        if (watched.length > maxWatched) throw new ImError(ImErrorCode.TOO_MANY_WATCHED, `watch_presence: ${watched.length} users (limit ${maxWatched})`);
        for (const u of watched) checkUser('watch_presence.users[]', u, null);
        const replyBytes = EVENT_OVERHEAD + watched.reduce((n, u) => n + Buffer.byteLength(u) + LISTED_USER_OVERHEAD, 0);
        if (replyBytes > s.maxPayload) {
          throw new ImError(ImErrorCode.TOO_MANY_WATCHED, `watch_presence: their states take ${replyBytes} bytes, over this connection's max_payload ${s.maxPayload}`);
        }
        return { presence: { users: await presence.watch(s, watched) } };
      }
      case 'block':
        if (!(await store.setBlocked(s.userId, checkUser('block.user', request.block!.user, s.userId), true, maxBlocked))) {
          throw new ImError(ImErrorCode.TOO_MANY_BLOCKED, `block: the block list holds ${maxBlocked} users already`);
        }
        return {};
      case 'unblock':
        await store.setBlocked(s.userId, checkUser('unblock.user', request.unblock!.user, s.userId), false, maxBlocked);
        return {};
      case 'listBlocked': {
        const after = request.listBlocked!.after;
        const all = await store.blocked(s.userId);
        const users = fitting(
          all.filter((u) => u > after),
          s.maxPayload - EVENT_OVERHEAD,
          (u) => Buffer.byteLength(u) + LISTED_USER_OVERHEAD,
        );
        return { blocked: { users, hasMore: users.length < all.filter((u) => u > after).length } };
      }
      default:
        throw new ImError(ImErrorCode.BAD_REQUEST, `im request: ${kind} is not handled here`);
    }
  };

  const sync = async (s: ImSession, requestId: number, afterSeq: number): Promise<null> => {
    const [lastInboxSeq, peers] = await Promise.all([inbox.lastSeq(s.userId), store.conversations(s.userId, IM_DEFAULTS.unreadConversations)]);
    const counts = (await store.unread(s.userId, peers)).filter((u) => u.count > 0);
    const unread = fitting(counts, s.maxPayload - EVENT_OVERHEAD, (u) => Buffer.byteLength(u.peer) + LISTED_USER_OVERHEAD);
    // The reply first, then the entries: the client learns the latest seq and the unread counts before them.
    reply(s, requestId, { sync: { lastInboxSeq, unread } });
    if (!s.ended) startFeed(s, afterSeq);
    return null;
  };

  const typing = async (s: ImSession, to: string): Promise<Partial<Reply>> => {
    if (!user(s.userId).typing.take()) return {};
    // A user who blocked the sender does not see them type either.
    if (await store.isBlocked(to, s.userId)) return {};
    stats.typing++;
    await hub.publish(to, encodeImEvent({ typing: { from: s.userId, atMs: now() } }));
    return {};
  };

  /** Answers RATE_LIMITED (and says so) when the user's request rate is spent. */
  const overRequestRate = (s: ImSession, id: number, kind: ImRequestKind): boolean => {
    if (user(s.userId).requests.take()) return false;
    replyError(s, id, new ImError(ImErrorCode.RATE_LIMITED, `${kind}: more than ${requestRate} requests/s`, Math.ceil(1000 / requestRate)));
    return true;
  };

  const onRequest = (s: ImSession, request: ImRequest): void => {
    const kind = requestKind(request);
    const id = request.requestId;
    if (kind === null) {
      replyError(s, id, new ImError(ImErrorCode.BAD_REQUEST, 'im request: no request kind set'));
      return;
    }
    switch (kind) {
      case 'send':
        run(s, id, kind, () =>
          sendMessage(s, request.send!).catch((err: unknown) => {
            if (err instanceof ImError) stats.refused[refuseReason(err.code)]++;
            throw err;
          }),
        );
        return;
      case 'sync':
        if (!overRequestRate(s, id, kind)) run(s, id, kind, () => sync(s, id, request.sync!.afterSeq));
        return;
      case 'ack':
        s.feed?.ack(request.ack!.inboxSeq);
        reply(s, id, ACKED);
        return;
      case 'typing':
        run(s, id, kind, async () => typing(s, checkUser('typing.to', request.typing!.to, s.userId)));
        return;
      default:
        if (!overRequestRate(s, id, kind)) run(s, id, kind, () => perform(s, request, kind));
    }
  };

  const user = (userId: string): UserLimits => {
    let state = users.get(userId);
    if (state === undefined) {
      state = {
        sessions: 0,
        sends: new TokenBucket(sendRate, sendBurst),
        typing: new TokenBucket(typingRate, typingRate * 2),
        requests: new TokenBucket(requestRate, requestRate * 2),
      };
      users.set(userId, state);
    }
    return state;
  };

  const end = (s: ImSession): void => {
    if (s.ended) return;
    s.ended = true;
    sessionCount--;
    tables.get(s.ctx)?.delete(s.session);
    s.feed?.close();
    const state = users.get(s.userId);
    if (state !== undefined && --state.sessions === 0) users.delete(s.userId);
    presence.closed(s).catch((err: unknown) => log.warn({ err, user: s.userId }, 'im: recording a session end failed'));
  };

  const handlers: BackendHandlers = {
    onOpen(ctx, session, info: SessionOpenInfo) {
      const deviceId = info.metadata.device_id ?? '';
      if (deviceId === '' || Buffer.byteLength(deviceId) > MAX_DEVICE_ID_BYTES) {
        ctx.close(session, Code.BACKEND_CLOSED, `im: metadata.device_id is required (1..${MAX_DEVICE_ID_BYTES} bytes)`);
        return;
      }
      if (info.userId === '' || Buffer.byteLength(info.userId) > MAX_USER_ID_BYTES) {
        ctx.close(session, Code.BACKEND_CLOSED, `im: the user id must be 1..${MAX_USER_ID_BYTES} bytes`);
        return;
      }
      if (info.maxPayload < minPayload) {
        ctx.close(session, Code.BACKEND_CLOSED, `im: this connection's max_payload ${info.maxPayload} is below the ${minPayload} bytes one message may take`);
        return;
      }
      let table = tables.get(ctx);
      if (table === undefined) tables.set(ctx, (table = new Map()));
      const s: ImSession = {
        ctx,
        session,
        userId: info.userId,
        deviceId,
        sessionKey: `${instance}/${ctx.proxyId}/${session}`,
        maxPayload: info.maxPayload,
        feed: null,
        unanswered: 0,
        halfClosed: false,
        ended: false,
        send: (payload, priority) => send(s, payload, priority),
      };
      table.set(session, s);
      sessionCount++;
      user(s.userId).sessions++;
      presence.opened(s).catch((err: unknown) => log.warn({ err, user: s.userId }, 'im: recording a session start failed'));
      // A session the proxy moved here after its backend failed continues silently: its device gets
      // what it had not acknowledged, from its stored cursor, without asking.
      if (info.reattach) startFeed(s, undefined);
    },
    onData(ctx, session, payload) {
      const s = tables.get(ctx)?.get(session);
      if (s === undefined) return;
      let request: ImRequest;
      try {
        request = decodeImRequest(payload);
      } catch (err) {
        // No request id to echo: the Reply carries 0.
        const e = err as ImError;
        send(s, encodeImEvent({ reply: { requestId: 0, ok: false, errorCode: e.code, errorMessage: e.message, retryAfterMs: 0 } }), Priority.HIGH);
        return;
      }
      onRequest(s, request);
    },
    onHalfClose(ctx, session) {
      const s = tables.get(ctx)?.get(session);
      if (s === undefined) {
        ctx.close(session, Code.NORMAL, '');
        return;
      }
      // The device sends nothing more: it still gets the Replies to what it sent before its CLOSE;
      // inbox entries in flight it has not acknowledged come again on its next Sync.
      s.halfClosed = true;
      if (s.unanswered === 0) finish(s);
    },
    onClose(ctx, session) {
      const s = tables.get(ctx)?.get(session);
      if (s !== undefined) end(s);
    },
    onProxyGone(ctx) {
      const table = tables.get(ctx);
      tables.delete(ctx);
      for (const s of table?.values() ?? []) end(s);
    },
  };

  return {
    handlers,
    stats,
    metrics,
    hub,
    store,
    get sessions() {
      return sessionCount;
    },
    async settled() {
      while (pending.size > 0) await Promise.allSettled([...pending]);
    },
    async close() {
      hub.close();
      presence.close();
      await Promise.all([store.close(), inbox.close(), presenceBus.close()]);
    },
  };
}

/** A user id a request names: 1..MAX_USER_ID_BYTES bytes, not `self` (null: may be anyone). */
function checkUser(what: string, value: string, self: string | null): string {
  if (typeof value !== 'string' || value === '' || Buffer.byteLength(value) > MAX_USER_ID_BYTES) {
    throw new ImError(ImErrorCode.BAD_REQUEST, `${what}: expected a user id of 1..${MAX_USER_ID_BYTES} bytes`);
  }
  if (value === self) throw new ImError(ImErrorCode.BAD_REQUEST, `${what}: that is you`);
  return value;
}

function refuseReason(code: ImErrorCode): RefuseReason {
  switch (code) {
    case ImErrorCode.TOO_LARGE:
      return RefuseReason.TOO_LARGE;
    case ImErrorCode.RATE_LIMITED:
      return RefuseReason.RATE_LIMITED;
    case ImErrorCode.BLOCKED:
      return RefuseReason.BLOCKED;
    default:
      return RefuseReason.BAD_REQUEST;
  }
}

/** A dedupe key of bounded length from any parts (user ids may be long). */
function dedupeKey(...parts: (string | number)[]): string {
  return createHash('sha256').update(JSON.stringify(parts)).digest('base64url');
}

function wireMessage(m: StoredMessage): Message {
  return {
    serverId: m.serverId,
    sender: m.sender,
    recipient: m.recipient,
    convSeq: m.convSeq,
    body: m.body,
    sentAtMs: m.sentAtMs,
    clientMsgId: m.clientMsgId,
    senderDevice: m.senderDevice,
    recalled: m.recalledAtMs !== 0,
  };
}

/** Bytes one stored message may take in a history page (an upper bound). */
function messageBytes(m: StoredMessage): number {
  return (
    MESSAGE_FIELDS_OVERHEAD +
    m.body.length +
    m.serverId.length +
    Buffer.byteLength(m.sender) +
    Buffer.byteLength(m.recipient) +
    Buffer.byteLength(m.clientMsgId) +
    Buffer.byteLength(m.senderDevice)
  );
}

/** The longest prefix of `items` whose sizes add up to at most `budget`. */
function fitting<T>(items: readonly T[], budget: number, size: (item: T) => number): T[] {
  let n = 0;
  while (n < items.length && (budget -= size(items[n]!)) >= 0) n++;
  return items.slice(0, n);
}

/** Entries split so that each event's entries stay under `maxBytes` (one entry larger than that goes alone). */
function* chunks(entries: readonly InboxEntry[], maxBytes: number): Generator<InboxEntry[]> {
  let chunk: InboxEntry[] = [];
  let bytes = 0;
  for (const e of entries) {
    const size = e.body.length + ENTRY_OVERHEAD;
    if (chunk.length > 0 && bytes + size > maxBytes) {
      yield chunk;
      chunk = [];
      bytes = 0;
    }
    chunk.push(e);
    bytes += size;
  }
  if (chunk.length > 0) yield chunk;
}
