/**
 * The Chat backend (issue 4, docs/chat.md) as BackendHandlers for createBackendServer: it keeps the
 * chat sessions of every proxy stream, decodes each DATA payload as a ChatRequest, runs it in its room's
 * serialized chain (ChatEngine) and answers with a Reply. A send is checked on arrival and waits in the
 * room's bounded buffer (room-buffer.ts); one step at a time in the chain sequences the next buffered
 * message, so other requests interleave and the chain never holds more than one step for all of them.
 * Rooms are created on first use and dropped (store included, unless another backend holds the room's
 * lease) after `idleTtlMs` without a joined session. Ordered writes run under the room's write lease
 * (room-leases.ts). Members are held under their proxy's presence (presence.ts); rooms with sessions
 * are swept for expired members every half presence TTL.
 */
import pino from 'pino';
import { Priority, PRIORITY_NAMES } from '../../protocol/constants.js';
import { Code } from '../../protocol/codes.js';
import { LivemuxError } from '../../protocol/errors.js';
import type { BackendHandlers, ProxyStreamContext } from '../kit/backend-server.js';
import type { SessionOpenInfo } from '../../contract/backend-contract.js';
import { decodeChatRequest, encodeChatEvent, requestKind, type ChatRequest, type ModerateRequest, type Reply, type SendRequest } from './chat-codec.js';
import { ChatEngine, DropReason, type ChatStats, type PendingSend, type ReplyResult } from './chat-engine.js';
import { ChatError, ChatErrorCode } from './chat-errors.js';
import { MeteredChatStore, createChatMetrics, moderationActionName, type ChatMetrics } from './chat-metrics.js';
import { MemoryChatStore } from './memory-store.js';
import { syncWhitelist } from './moderation.js';
import { ProxyPresences } from './presence.js';
import { Room, type ChatSession } from './room.js';
import { RoomLeases } from './room-leases.js';
import type { RoomBufferBounds } from './room-buffer.js';
import type { ChatStore, HistoryLimits } from './store.js';
import { WordFilter, WordFilterMode } from './word-filter.js';

/** Options of the Chat backend; every one has a default. */
export interface ChatBackendOptions {
  /** Where rooms live (default: a new MemoryChatStore). */
  store?: ChatStore;
  /** Upstream limit per room, messages/s (default 200). */
  roomRate?: number;
  /** Per-room overrides of `roomRate`, by room id. */
  roomRates?: Readonly<Record<string, number>>;
  /** Per-user send limit for members, messages/s (default 5) and burst (default 10). */
  userRate?: number;
  userBurst?: number;
  /** Sensitive words (default none) and what to do with a message containing one (default reject). */
  words?: readonly string[];
  wordMode?: WordFilterMode;
  /** Messages a member joining with since_seq 0 gets (default 50). */
  joinHistory?: number;
  /** History bounds per room (default 1000 messages, 24 h). */
  history?: Partial<HistoryLimits>;
  /** A room without joined sessions is dropped after this long (default 300 000 ms). */
  idleTtlMs?: number;
  /** Largest message body (default 4096 bytes). */
  maxBodyBytes?: number;
  /**
   * Lifetime of a room's write lease without renewal (default 3000 ms; renewed every third of it): how
   * long the rooms of a backend that died stay unwritable before another takes them over.
   */
  leaseTtlMs?: number;
  /**
   * Presence TTL (default 10 000 ms): members of a proxy that died, or whose owner died and whose
   * session never came back, are dropped within about this long. Renewed every third of it.
   */
  presenceTtlMs?: number;
  /**
   * Accepted messages that may wait for a seq per room and priority (default system 5000, high 1000,
   * low 500); positive integers. See room-buffer.ts for what happens beyond them.
   */
  buffer?: Partial<RoomBufferBounds>;
  /** Wall clock, ms since the epoch (default Date.now). */
  now?: () => number;
  logger?: pino.Logger;
  /** Also export Node process metrics in `metrics.registry` (default false; the process sets it). */
  processMetrics?: boolean;
}

/** A Chat backend: its handlers for createBackendServer, and what tests and the process need. */
export interface ChatBackend {
  readonly handlers: BackendHandlers;
  /** The engine's message counters: the one count that `metrics` exports. */
  readonly stats: Readonly<ChatStats>;
  /** Prometheus metrics of this backend, in their own registry (chat-metrics.ts). */
  readonly metrics: ChatMetrics;
  /** The store as given (the engine works through a MeteredChatStore wrapping it). */
  readonly store: ChatStore;
  /** Live rooms by id. */
  readonly rooms: ReadonlyMap<string, Room>;
  /** Resolves when every room's queued work is done and its buffer empty (tests). */
  settled(): Promise<void>;
  /** Stops the idle timers, releases the room leases and closes the store. */
  close(): Promise<void>;
}

export const CHAT_DEFAULTS = {
  roomRate: 200,
  userRate: 5,
  userBurst: 10,
  joinHistory: 50,
  historyMaxLength: 1000,
  historyMaxAgeMs: 24 * 3600_000,
  idleTtlMs: 300_000,
  maxBodyBytes: 4096,
  leaseTtlMs: 3000,
  presenceTtlMs: 10_000,
  // A store that keeps up empties these within milliseconds; they only fill while it lags. System is
  // never dropped, so its bound is the largest: beyond it, senders are refused (OVERLOADED) and retry.
  bufferSystem: 5000,
  bufferHigh: 1000,
  bufferLow: 500,
} as const;

/** Seconds-scale hint for a sender refused because its room's buffer is full. */
const OVERLOADED_RETRY_MS = 1000;

/** The buffer bounds of `options` with defaults; throws ERR_INVALID_ARGUMENT for a bound that is not a positive integer. */
function bufferBounds(options: Partial<RoomBufferBounds> = {}): RoomBufferBounds {
  const bounds = {
    system: options.system ?? CHAT_DEFAULTS.bufferSystem,
    high: options.high ?? CHAT_DEFAULTS.bufferHigh,
    low: options.low ?? CHAT_DEFAULTS.bufferLow,
  };
  for (const [name, value] of Object.entries(bounds)) {
    if (!Number.isSafeInteger(value) || value < 1) throw new LivemuxError('ERR_INVALID_ARGUMENT', `buffer.${name}: expected a positive integer, got ${value}`);
  }
  return Object.freeze(bounds);
}

export function createChatBackend(options: ChatBackendOptions = {}): ChatBackend {
  const store = options.store ?? new MemoryChatStore();
  const log = options.logger ?? pino({ level: 'silent' });
  const idleTtlMs = options.idleTtlMs ?? CHAT_DEFAULTS.idleTtlMs;
  const bounds = bufferBounds(options.buffer);
  const rooms = new Map<string, Room>();
  const metricsSource = {
    // Read at scrape time only, once the engine exists.
    get stats(): Readonly<ChatStats> {
      return engine.stats;
    },
    rooms,
  };
  const metrics = createChatMetrics(metricsSource, { processMetrics: options.processMetrics ?? false });
  const meteredStore = new MeteredChatStore(store, metrics);
  const leases = new RoomLeases({
    store: meteredStore,
    ttlMs: options.leaseTtlMs ?? CHAT_DEFAULTS.leaseTtlMs,
    log,
    onRefusal: (reason) => metrics.leaseRefusals.inc({ reason }),
  });
  const presenceTtlMs = options.presenceTtlMs ?? CHAT_DEFAULTS.presenceTtlMs;
  const presences = new ProxyPresences({
    store: meteredStore,
    ttlMs: presenceTtlMs,
    log,
    onLost: (proxyId, presence) => {
      for (const room of rooms.values()) {
        const lost = [...room.sessions].filter((s) => s.ctx.proxyId === proxyId);
        if (lost.length > 0) runTask(room, 'retag', () => engine.retag(room, lost, presence));
      }
    },
  });
  const engine = new ChatEngine({
    store: meteredStore,
    leases,
    wordFilter: new WordFilter(options.words ?? [], options.wordMode ?? WordFilterMode.REJECT),
    joinHistory: options.joinHistory ?? CHAT_DEFAULTS.joinHistory,
    historyLimits: {
      maxLength: options.history?.maxLength ?? CHAT_DEFAULTS.historyMaxLength,
      maxAgeMs: options.history?.maxAgeMs ?? CHAT_DEFAULTS.historyMaxAgeMs,
    },
    userRate: options.userRate ?? CHAT_DEFAULTS.userRate,
    userBurst: options.userBurst ?? CHAT_DEFAULTS.userBurst,
    maxBodyBytes: options.maxBodyBytes ?? CHAT_DEFAULTS.maxBodyBytes,
    now: options.now ?? Date.now,
    presenceOf: (ctx) => presences.presenceOf(ctx),
  });

  /** Rooms being dropped: a new Room of the same id starts after the drop finished. */
  const dropping = new Map<string, Promise<void>>();
  const sessions = new Map<ProxyStreamContext, Map<number, ChatSession>>();
  const streamRanks = new WeakMap<ProxyStreamContext, number>();
  let nextRank = 0;
  const rank = (ctx: ProxyStreamContext): number => streamRanks.get(ctx) ?? -1;

  const roomFor = (id: string): Room => {
    let room = rooms.get(id);
    if (room === undefined) {
      room = new Room(id, options.roomRates?.[id] ?? options.roomRate ?? CHAT_DEFAULTS.roomRate, rank, bounds, dropping.get(id));
      rooms.set(id, room);
    }
    return room;
  };

  /** After each task: a room nobody is in starts its idle countdown. */
  const checkIdle = (room: Room): void => {
    if (room.sessions.size > 0 || room.dropped) return;
    room.scheduleIdle(idleTtlMs, () => {
      void room.run(async () => {
        if (room.sessions.size > 0 || room.pending > 1 || room.dropped) return;
        room.dropped = true;
        rooms.delete(room.id);
        const drop = leases
          .drop(room)
          .catch((err: unknown) => log.warn({ err, room: room.id }, 'chat: dropping an idle room failed'));
        dropping.set(room.id, drop);
        await drop;
        if (dropping.get(room.id) === drop) dropping.delete(room.id);
      });
    });
  };

  /** Runs background work (no session asked for it) in the room's chain; a failure is logged. */
  const runTask = (room: Room, kind: string, task: () => Promise<void>): void => {
    void room
      .run(task)
      .catch((err: unknown) => log.warn({ err, room: room.id, kind }, 'chat: room task failed'))
      .finally(() => checkIdle(room));
  };

  // Rooms nobody is in are left alone: their idle drop forgets the members, and a join purges first.
  const sweep = setInterval(() => {
    for (const room of rooms.values()) if (room.sessions.size > 0) runTask(room, 'presence sweep', () => engine.purgeExpired(room));
  }, Math.max(1, Math.floor(presenceTtlMs / 2)));
  sweep.unref();

  /**
   * Runs `task` and answers `requestId` (0: no answer) unless the session ended. `kind` names the request
   * for logs and metrics.
   */
  const answer = async (room: Room, s: ChatSession, requestId: number, kind: string, task: () => Promise<ReplyResult>): Promise<void> => {
    let result: ReplyResult;
    try {
      result = await task();
    } catch (err) {
      if (!(err instanceof ChatError)) {
        log.error({ err, room: room.id, user: s.userId, kind }, 'chat: request failed');
        metrics.requestFailures.inc({ kind });
      }
      replyError(s, requestId, err instanceof ChatError ? err : new ChatError(ChatErrorCode.INTERNAL, 'internal error'));
      return;
    }
    reply(s, requestId, { ok: true, errorCode: '', errorMessage: '', retryAfterMs: 0, ...result });
  };

  /** Runs `task` in the room's chain and answers it (see `answer`). */
  const runRequest = (room: Room, s: ChatSession, requestId: number, kind: string, task: () => Promise<ReplyResult>): void => {
    s.unanswered++;
    runTask(room, kind, () => answer(room, s, requestId, kind, task));
  };

  /**
   * A send: checked now and put in the room's buffer. A session whose Join is still in the chain (or
   * whose earlier sends wait there behind it) is checked in the chain instead, after what it sent first.
   */
  const send = (room: Room, s: ChatSession, requestId: number, req: SendRequest, priority: Priority): void => {
    s.unanswered++;
    if (s.joined && s.sendsInChain === 0) {
      accept(room, s, requestId, req, priority);
      return;
    }
    s.sendsInChain++;
    runTask(room, 'send', async () => {
      s.sendsInChain--;
      accept(room, s, requestId, req, priority);
    });
  };

  const accept = (room: Room, s: ChatSession, requestId: number, req: SendRequest, priority: Priority): void => {
    let pending: PendingSend;
    try {
      pending = engine.admit(room, s, req, priority, requestId);
    } catch (err) {
      if (!(err instanceof ChatError)) throw err;
      replyError(s, requestId, err);
      return;
    }
    const outcome = room.buffer.offer(pending, priority);
    if (outcome.kind === 'refused') {
      replyError(s, requestId, overloaded(room, priority));
      return;
    }
    if (outcome.kind === 'queued_dropping') replyError(outcome.dropped.session, outcome.dropped.requestId, overloaded(room, Priority.LOW));
    drain(room);
  };

  const overloaded = (room: Room, priority: Priority): ChatError =>
    engine.refuse(
      DropReason.BUFFER_FULL,
      priority,
      new ChatError(ChatErrorCode.OVERLOADED, `send: room ${room.id} has ${room.buffer.waiting(priority)} ${PRIORITY_NAMES[priority]} messages waiting (limit reached)`, OVERLOADED_RETRY_MS),
    );

  /** Queues the step that sequences the room's next buffered message, unless one is queued already. */
  const drain = (room: Room): void => {
    if (room.draining || room.buffer.length === 0) return;
    room.draining = true;
    void room
      .run(() => {
        const pending = room.buffer.take()!;
        return answer(room, pending.session, pending.requestId, 'send', () => engine.sequence(room, pending));
      })
      .finally(() => {
        room.draining = false;
        drain(room);
        checkIdle(room);
      });
  };

  /** Answers one request of `s` (every request is answered exactly once, by this). */
  const reply = (s: ChatSession, requestId: number, fields: Omit<Reply, 'requestId'>): void => {
    s.unanswered--;
    if (requestId !== 0 && !s.ended && !s.ctx.gone) {
      s.ctx.deliver(s.session, encodeChatEvent({ reply: { requestId, ...fields } }), Priority.HIGH);
    }
    if (s.halfClosed && s.unanswered === 0) endHalfClosed(s);
  };

  /** The client closed its side and has every answer: the session leaves its room and ends. */
  const endHalfClosed = (s: ChatSession): void => {
    if (s.ended) return;
    ended(s);
    s.ctx.close(s.session, Code.NORMAL, '');
  };

  const replyError = (s: ChatSession, requestId: number, e: ChatError): void => {
    reply(s, requestId, { ok: false, errorCode: e.code, errorMessage: e.message, retryAfterMs: e.retryAfterMs });
  };

  const forget = (s: ChatSession): void => {
    s.ended = true;
    sessions.get(s.ctx)?.delete(s.session);
  };

  /** A moderate request, counted by action and result (ok or the error code) whatever the outcome. */
  const moderate = async (room: Room, s: ChatSession, req: ModerateRequest): Promise<ReplyResult> => {
    const action = moderationActionName(req.action);
    try {
      const result = await engine.moderate(room, s, req, forget);
      metrics.moderationActions.inc({ action, result: 'ok' });
      return result;
    } catch (err) {
      const code = err instanceof ChatError ? err.code : ChatErrorCode.INTERNAL;
      metrics.moderationActions.inc({ action, result: code.toLowerCase() });
      throw err;
    }
  };

  /** Every request but a send (see `send`). */
  const dispatch = (room: Room, s: ChatSession, request: ChatRequest): Promise<ReplyResult> => {
    switch (requestKind(request)) {
      case 'join':
        return syncWhitelist(store, room, s.userId).then(() => engine.join(room, s, request.join!, true));
      case 'leave':
        return engine.leave(room, s, true);
      case 'listMembers':
        return engine.listMembers(room, s, request.listMembers!);
      case 'moderate':
        return moderate(room, s, request.moderate!);
      case 'setAttributes':
        return engine.setAttributes(room, s, request.setAttributes!);
      case 'history':
        return engine.history(room, s, request.history!);
      default:
        return Promise.reject(new ChatError(ChatErrorCode.BAD_REQUEST, 'chat request: no request kind set'));
    }
  };

  /** The session ended on the proxy side: it leaves its room, announced to the others. */
  const ended = (s: ChatSession): void => {
    forget(s);
    if (!s.joined) return;
    const room = roomFor(s.roomId);
    // A Leave or a kick queued before the close may have taken it out already.
    runTask(room, 'leave after close', async () => {
      if (s.joined) await engine.leave(room, s, true);
    });
  };

  const handlers: BackendHandlers = {
    onOpen(ctx, session, info: SessionOpenInfo) {
      if (!streamRanks.has(ctx)) {
        streamRanks.set(ctx, nextRank++);
        presences.attach(ctx);
      }
      const roomId = info.metadata.room_id;
      if (roomId === undefined || roomId === '') {
        ctx.close(session, Code.BACKEND_CLOSED, 'chat: metadata.room_id is required');
        return;
      }
      let table = sessions.get(ctx);
      if (table === undefined) sessions.set(ctx, (table = new Map()));
      const s: ChatSession = { ctx, session, info, userId: info.userId, roomId, role: 'member', presence: '', joined: false, sendsInChain: 0, ended: false, unanswered: 0, halfClosed: false };
      table.set(session, s);
      // A session moved here after a failure continues silently: back into its room, no announcement.
      if (info.reattach) {
        const room = roomFor(roomId);
        runRequest(room, s, 0, 'rejoin', async () => {
          await syncWhitelist(store, room, s.userId);
          return engine.rejoin(room, s, forget);
        });
      }
    },
    onData(ctx, session, payload, priority) {
      const s = sessions.get(ctx)?.get(session);
      if (s === undefined) return;
      let request: ChatRequest;
      try {
        request = decodeChatRequest(payload);
      } catch (err) {
        const e = err as ChatError;
        s.ctx.deliver(s.session, encodeChatEvent({ reply: { requestId: 0, ok: false, errorCode: e.code, errorMessage: e.message, retryAfterMs: 0 } }), Priority.HIGH);
        return;
      }
      const room = roomFor(s.roomId);
      if (request.send !== undefined) send(room, s, request.requestId, request.send, priority);
      else runRequest(room, s, request.requestId, requestKind(request) ?? 'none', () => dispatch(room, s, request));
    },
    onHalfClose(ctx, session) {
      const s = sessions.get(ctx)?.get(session);
      if (s === undefined) {
        ctx.close(session, Code.NORMAL, '');
        return;
      }
      // Replies to what the client sent before its CLOSE still reach it (PROTOCOL.md §5.2).
      s.halfClosed = true;
      if (s.unanswered === 0) endHalfClosed(s);
    },
    onClose(ctx, session) {
      const s = sessions.get(ctx)?.get(session);
      if (s !== undefined) ended(s);
    },
    onProxyGone(ctx) {
      const table = sessions.get(ctx);
      sessions.delete(ctx);
      for (const s of table?.values() ?? []) ended(s);
      presences.detach(ctx);
    },
  };

  return {
    handlers,
    stats: engine.stats,
    metrics,
    store,
    rooms,
    async settled() {
      // Each sequencing step queues the next when it ends: wait until no room has a message waiting.
      do await Promise.all([...rooms.values()].map((r) => r.run(async () => undefined)));
      while ([...rooms.values()].some((r) => r.draining));
    },
    async close() {
      clearInterval(sweep);
      presences.close();
      for (const room of rooms.values()) room.cancelIdle();
      await leases.releaseAll();
      await store.close();
    },
  };
}
