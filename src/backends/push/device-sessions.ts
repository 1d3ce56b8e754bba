/**
 * The device side of the Push backend (docs/push.md §Device protocol) as BackendHandlers: each push
 * session is one device of one user. On open the device is subscribed, on its proxy, to the proxy
 * topics of its stored topics (so topic pushes reach it by edge fan-out, from whichever node accepted
 * them), then gets its backlog (pushes with a TTL it is owed), then `Synced`. Its requests (ack,
 * subscribe, unsubscribe, list) run one at a time per session, in order.
 */
import type pino from 'pino';
import { Priority } from '../../protocol/constants.js';
import { Code } from '../../protocol/codes.js';
import { TickBatcher } from '../../util/tick-batcher.js';
import type { SessionOpenInfo } from '../../contract/backend-contract.js';
import type { BackendHandlers, ProxyStreamContext } from '../kit/backend-server.js';
import type { DeviceFeed, InboxHub, DeliveryLedger } from '../kit/inbox/index.js';
import type { OnlineCounts } from './online-counts.js';
import { unframePush } from './user-delivery.js';
import type { ProxyFanOut } from './proxy-fanout.js';
import { Audience, DEVICE_ID_PATTERN, PUSH_ID_PATTERN, TOPIC_PATTERN, decodePushEvent, decodePushRequest, encodePushEvent, type PushMessage, type PushRequest } from './push-codec.js';
import { ALL_TOPIC, deviceKey, type AckEntry, type PushRecord, type PushStore } from './store.js';

/** The proxy topic (edge fan-out) carrying a push topic's pushes; ALL_TOPIC is `push/all`. */
export function proxyTopic(topic: string): string {
  return topic === ALL_TOPIC ? 'push/all' : `push/t/${topic}`;
}

/** A push as the PushEvent devices receive, encoded once for every device. */
export function pushEvent(record: PushRecord): Buffer {
  const push: PushMessage = {
    id: record.id,
    data: record.data,
    priority: record.priority,
    collapseKey: record.collapseKey,
    sentAtMs: record.sentAtMs,
    expiresAtMs: record.ttlS > 0 ? record.expiresAtMs : 0,
    audience: record.audience === 'users' ? Audience.USERS : record.audience === 'topic' ? Audience.TOPIC : Audience.ALL,
    topic: record.audience === 'topic' ? record.topic : '',
  };
  return encodePushEvent({ push });
}

/** Error codes of a Reply (docs/push.md §Errors). */
export const DeviceErrorCode = {
  BAD_REQUEST: 'BAD_REQUEST',
  BAD_TOPIC: 'BAD_TOPIC',
  TOO_MANY_TOPICS: 'TOO_MANY_TOPICS',
  INTERNAL: 'INTERNAL',
} as const;
type DeviceErrorCode = (typeof DeviceErrorCode)[keyof typeof DeviceErrorCode];

class DeviceError extends Error {
  constructor(
    readonly code: DeviceErrorCode,
    message: string,
  ) {
    super(message);
  }
}

interface DeviceSession {
  readonly ctx: ProxyStreamContext;
  readonly session: number;
  readonly userId: string;
  readonly key: string;
  /** The user's inbox (pushes to users), delivered to this device. */
  feed: DeviceFeed | null;
  /** Pushes to users kept in the inbox, sent on this session and not acknowledged: id → inbox seq. */
  readonly unacked: Map<string, number>;
  /** Online-only pushes to users sent on this session and not acknowledged (bounded, oldest forgotten). */
  readonly transients: Set<string>;
  /** Backlog counts once each part is synced: topic logs, then the inbox; Synced goes when both are. */
  topicBacklog: number | null;
  inboxBacklog: number | null;
  inboxSent: number;
  /** Topic → subscribed at; ALL_TOPIC included. Empty until the device is loaded. */
  topics: Map<string, number>;
  /** Whether `topics` count in this node's online counts. */
  counted: boolean;
  ended: boolean;
  /** The session's requests, one at a time. */
  chain: Promise<void>;
  /** Tasks in `chain` not finished yet: none, and an ack runs at once (see onData). */
  queued: number;
}

export interface DeviceSessionsOptions {
  store: PushStore;
  /** Pushes to users: the kit's inbox and its ledger. */
  hub: InboxHub;
  ledger: DeliveryLedger;
  online: OnlineCounts;
  fanOut: ProxyFanOut;
  maxTopicsPerDevice: number;
  now: () => number;
  log: pino.Logger;
  /** Counters for metrics. */
  onAcks?: (received: number, counted: number) => void;
}

/** Most ids in one Ack, and most topics in one Subscribe/Unsubscribe. */
const MAX_ACK_IDS = 1000;
/** Online-only pushes to users remembered per session for their acks (the inbox window bounds the rest). */
const MAX_UNACKED_TRANSIENTS = 1024;
const MAX_TOPICS_PER_REQUEST = 64;

export interface DeviceSessions {
  readonly handlers: BackendHandlers;
  /** Device sessions open on this node. */
  readonly size: number;
  /** Resolves once the acks received so far are counted (tests). */
  settled(): Promise<void>;
}

export function createDeviceSessions(o: DeviceSessionsOptions): DeviceSessions {
  const sessions = new Map<ProxyStreamContext, Map<number, DeviceSession>>();
  let open = 0;
  let ackWrites: Promise<void> = Promise.resolve();
  // Acks of one turn, from every device, are counted in one store call.
  const acks = new TickBatcher<AckEntry>((entries) => {
    ackWrites = ackWrites
      .then(() => o.store.ack(entries))
      .then((counted) => o.onAcks?.(entries.length, counted))
      .catch((err: unknown) => o.log.warn({ err, acks: entries.length }, 'push: counting acks failed'));
  }, Infinity);

  const subscribeLocally = (s: DeviceSession, topics: Iterable<string>): void => {
    for (const topic of topics) {
      s.ctx.subscribe(s.session, proxyTopic(topic));
      if (s.counted) o.online.add(topic, 1);
    }
  };

  const reply = (s: DeviceSession, requestId: number, error: DeviceError | null, topics: string[] = []): void => {
    if (requestId === 0 || s.ended || s.ctx.gone) return;
    const fields = error === null ? { ok: true, errorCode: '', errorMessage: '' } : { ok: false, errorCode: error.code, errorMessage: error.message };
    s.ctx.deliver(s.session, encodePushEvent({ reply: { requestId, topics, ...fields } }), Priority.HIGH);
  };

  /** Loads the device, subscribes it on its proxy, sends its backlog, then Synced. */
  const start = async (s: DeviceSession): Promise<void> => {
    const now = o.now();
    const topics = await o.store.touchDevice(s.key, now);
    if (s.ended) return;
    s.topics = topics;
    s.counted = true;
    subscribeLocally(s, topics.keys());
    // Read after subscribing: a push sent meanwhile comes twice at worst (the SDK dedupes), never zero times.
    const owed = await o.store.backlog(s.key, topics, now);
    if (s.ended) return;
    const { send, replaced } = collapse(owed);
    if (replaced.length > 0) await o.store.markReplaced(replaced, s.key);
    for (const record of send) s.ctx.deliver(s.session, pushEvent(record), record.priority);
    s.topicBacklog = send.length;
    maybeSynced(s);
  };

  /** Synced, once the topic backlog and the inbox have both been sent. */
  const maybeSynced = (s: DeviceSession): void => {
    if (s.topicBacklog === null || s.inboxBacklog === null || s.ended) return;
    s.ctx.deliver(s.session, encodePushEvent({ synced: { backlog: s.topicBacklog + s.inboxBacklog, topics: topicList(s) } }), Priority.HIGH);
  };

  /** What the user's inbox feed hands this device. */
  const attachFeed = (s: DeviceSession, deviceId: string): DeviceFeed =>
    o.hub.attach(s.userId, deviceId, {
      entries(entries) {
        for (const e of entries) {
          if (s.ended) return;
          const { priority, event } = unframePush(e.body);
          s.unacked.set(e.ref, e.seq);
          s.inboxSent++;
          s.ctx.deliver(s.session, event, priority);
        }
      },
      gap() {
        // Pushes removed by retention before this device had them: nothing the device can do about it.
      },
      transient(payload) {
        if (s.ended) return;
        const { priority, event } = unframePush(payload);
        const id = decodePushEvent(event).push?.id;
        if (id === undefined) return;
        if (s.transients.size >= MAX_UNACKED_TRANSIENTS) s.transients.delete(s.transients.values().next().value!);
        s.transients.add(id);
        s.ctx.deliver(s.session, event, priority);
      },
      synced() {
        s.inboxBacklog = s.inboxSent;
        maybeSynced(s);
      },
    });

  /** An acknowledged push id: a push to users goes to the inbox or the ledger, a topic push to the store. */
  const acknowledge = (s: DeviceSession, id: string): void => {
    const seq = s.unacked.get(id);
    if (seq !== undefined) {
      s.unacked.delete(id);
      s.feed?.ackEntry(seq);
    } else if (s.transients.delete(id)) {
      o.ledger.delivered(id, s.userId).catch((err: unknown) => o.log.warn({ err, id }, 'push: counting a delivery failed'));
    } else {
      acks.push({ id, device: s.key }, 0);
    }
  };

  /** An Ack request: synchronous, no store call of its own (counts are written in batches). */
  const handleAck = (s: DeviceSession, requestId: number, ids: string[]): void => {
    if (ids.length > MAX_ACK_IDS) throw new DeviceError(DeviceErrorCode.BAD_REQUEST, `ack: ${ids.length} ids (at most ${MAX_ACK_IDS})`);
    for (const id of ids) if (PUSH_ID_PATTERN.test(id)) acknowledge(s, id);
    reply(s, requestId, null);
  };

  const handle = async (s: DeviceSession, request: PushRequest): Promise<void> => {
    if (request.ack !== undefined) {
      handleAck(s, request.requestId, request.ack.ids);
      return;
    }
    if (request.subscribe !== undefined) {
      const topics = checkTopics('subscribe', request.subscribe.topics);
      const after = await o.store.subscribe(s.key, topics, o.now(), o.maxTopicsPerDevice);
      if (after === null) throw new DeviceError(DeviceErrorCode.TOO_MANY_TOPICS, `subscribe: a device may have at most ${o.maxTopicsPerDevice} topics`);
      const added = topics.filter((t) => !s.topics.has(t));
      for (const t of added) s.topics.set(t, o.now());
      if (!s.ended) subscribeLocally(s, new Set(added));
      reply(s, request.requestId, null, after);
      return;
    }
    if (request.unsubscribe !== undefined) {
      const topics = checkTopics('unsubscribe', request.unsubscribe.topics);
      const after = await o.store.unsubscribe(s.key, topics);
      for (const t of new Set(topics)) {
        if (!s.topics.delete(t) || s.ended) continue;
        s.ctx.unsubscribe(s.session, proxyTopic(t));
        if (s.counted) o.online.add(t, -1);
      }
      reply(s, request.requestId, null, after);
      return;
    }
    if (request.listTopics !== undefined) {
      reply(s, request.requestId, null, topicList(s));
      return;
    }
    throw new DeviceError(DeviceErrorCode.BAD_REQUEST, 'push request: no request kind set');
  };

  /** Runs `task` after the session's earlier work (a task that throws does not stop the ones after it). */
  const after = (s: DeviceSession, task: () => void | Promise<void>): void => {
    s.queued++;
    s.chain = s.chain.then(task).then(
      () => void s.queued--,
      (err: unknown) => {
        s.queued--;
        o.log.error({ err, device: s.key }, 'push: a device task failed');
      },
    );
  };

  /** Runs `task` after the session's earlier work; `onFail` gets what it throws. */
  const enqueue = (s: DeviceSession, task: () => Promise<void>, onFail: (err: unknown) => void): void => {
    after(s, () => task().catch(onFail));
  };

  /** A device request failed: said to the device, and logged unless the request was at fault. */
  const requestFailed = (s: DeviceSession, requestId: number, err: unknown): void => {
    if (err instanceof DeviceError) {
      reply(s, requestId, err);
      return;
    }
    o.log.warn({ err, device: s.key }, 'push: a device request failed');
    reply(s, requestId, new DeviceError(DeviceErrorCode.INTERNAL, 'push: the push store is unavailable'));
  };

  const end = (s: DeviceSession): void => {
    if (s.ended) return;
    s.ended = true;
    open--;
    s.feed?.close();
    if (s.counted) for (const topic of s.topics.keys()) o.online.add(topic, -1);
  };

  const handlers: BackendHandlers = {
    onAttach(ctx) {
      o.fanOut.attach(ctx);
    },
    onOpen(ctx, session, info: SessionOpenInfo) {
      o.fanOut.attach(ctx);
      const deviceId = info.metadata.device_id;
      if (deviceId === undefined || !DEVICE_ID_PATTERN.test(deviceId)) {
        ctx.close(session, Code.BACKEND_CLOSED, 'push: metadata.device_id is required (1-128 characters of A-Z a-z 0-9 . _ : -)');
        return;
      }
      let table = sessions.get(ctx);
      if (table === undefined) sessions.set(ctx, (table = new Map()));
      const s: DeviceSession = {
        ctx,
        session,
        userId: info.userId,
        key: deviceKey(info.userId, deviceId),
        feed: null,
        unacked: new Map(),
        transients: new Set(),
        topicBacklog: null,
        inboxBacklog: null,
        inboxSent: 0,
        topics: new Map(),
        counted: false,
        ended: false,
        chain: Promise.resolve(),
        queued: 0,
      };
      table.set(session, s);
      open++;
      s.feed = attachFeed(s, deviceId);
      enqueue(s, () => start(s), (err) => {
        o.log.warn({ err, device: s.key }, 'push: loading a device failed');
        if (s.ended) return;
        table.delete(session);
        end(s);
        // Retryable: the SDK reopens with backoff and the device is loaded again.
        ctx.close(session, Code.INTERNAL_ERROR, 'push: the push store is unavailable');
      });
    },
    onData(ctx, session, payload) {
      const s = sessions.get(ctx)?.get(session);
      if (s === undefined) return;
      let request: PushRequest;
      try {
        request = decodePushRequest(payload);
      } catch (err) {
        // Its request_id is unknown: answered with 0, as the protocol says for undecodable requests.
        s.ctx.deliver(
          s.session,
          encodePushEvent({ reply: { requestId: 0, ok: false, errorCode: DeviceErrorCode.BAD_REQUEST, errorMessage: `push request: not a valid PushRequest (${(err as Error).message})`, topics: [] } }),
          Priority.HIGH,
        );
        return;
      }
      if (request.ack !== undefined && s.queued === 0) {
        // The device's acks are most of what it sends (one per push): with nothing ahead of it in the
        // chain, one is handled now, in order all the same, without a promise turn of its own.
        try {
          handleAck(s, request.requestId, request.ack.ids);
        } catch (err) {
          requestFailed(s, request.requestId, err);
        }
        return;
      }
      enqueue(s, () => handle(s, request), (err) => requestFailed(s, request.requestId, err));
    },
    onHalfClose(ctx, session) {
      const s = sessions.get(ctx)?.get(session);
      if (s === undefined) {
        ctx.close(session, Code.NORMAL, '');
        return;
      }
      // The device is done sending; the replies to what it sent before its CLOSE still reach it
      // (PROTOCOL.md §5.2): the session ends behind the requests already in its chain.
      after(s, () => {
        if (s.ended) return;
        sessions.get(ctx)?.delete(session);
        end(s);
        ctx.close(session, Code.NORMAL, '');
      });
    },
    onClose(ctx, session) {
      const s = sessions.get(ctx)?.get(session);
      if (s === undefined) return;
      sessions.get(ctx)!.delete(session);
      end(s);
    },
    onProxyGone(ctx) {
      o.fanOut.detach(ctx);
      for (const s of sessions.get(ctx)?.values() ?? []) end(s);
      sessions.delete(ctx);
    },
  };

  return {
    handlers,
    get size() {
      return open;
    },
    async settled() {
      acks.flush();
      await ackWrites;
    },
  };
}

function checkTopics(what: string, topics: string[]): string[] {
  if (topics.length === 0 || topics.length > MAX_TOPICS_PER_REQUEST) {
    throw new DeviceError(DeviceErrorCode.BAD_REQUEST, `${what}: 1 to ${MAX_TOPICS_PER_REQUEST} topics per request (got ${topics.length})`);
  }
  for (const t of topics) {
    if (!TOPIC_PATTERN.test(t)) throw new DeviceError(DeviceErrorCode.BAD_TOPIC, `${what}: topic ${JSON.stringify(t)} is not 1-128 characters of A-Z a-z 0-9 . _ : -`);
  }
  return topics;
}

function topicList(s: DeviceSession): string[] {
  return [...s.topics.keys()].filter((t) => t !== ALL_TOPIC).sort();
}

/**
 * Of topic pushes owed to one device (oldest first), those to send, and the ids of older ones a newer
 * push to the same topic with the same collapse key replaces (they will never be sent to this device).
 */
export function collapse(owed: readonly PushRecord[]): { send: PushRecord[]; replaced: string[] } {
  const slot = (r: PushRecord): string => `${r.topic}\u0000${r.collapseKey}`;
  const newest = new Map<string, PushRecord>();
  for (const r of owed) if (r.collapseKey !== '') newest.set(slot(r), r);
  const send: PushRecord[] = [];
  const replaced: string[] = [];
  for (const r of owed) {
    if (r.collapseKey === '' || newest.get(slot(r)) === r) send.push(r);
    else replaced.push(r.id);
  }
  return { send, replaced };
}
