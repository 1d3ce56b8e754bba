/**
 * The Push backend (issue 11, docs/push.md): the always-on `push` session of every app and the HTTP
 * API business servers call, in one node. Wiring only: device sessions (device-sessions.ts), the API
 * semantics (push-service.ts) over a PushStore, and edge fan-out to every attached proxy
 * (proxy-fanout.ts). Several nodes share a Redis store; any node accepts any call.
 */
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import pino from 'pino';
import type { BackendHandlers } from '../kit/backend-server.js';
import { InboxHub, MemoryDeliveryLedger, MemoryInboxStore, type DeliveryLedger, type InboxStore } from '../kit/inbox/index.js';
import { ApiKeys, type ApiKeySpec } from './api-keys.js';
import { createDeviceSessions, proxyTopic, pushEvent, type DeviceSessions } from './device-sessions.js';
import { MemoryPushStore, PUSH_STORE_DEFAULTS } from './memory-store.js';
import { OnlineCounts } from './online-counts.js';
import { createPushApi } from './push-api.js';
import { createPushMetrics, type PushMetrics } from './push-metrics.js';
import { PushService, type PushDelivery } from './push-service.js';
import { ProxyFanOut } from './proxy-fanout.js';
import { ProxyRelay } from './proxy-relay.js';
import { UserDelivery } from './user-delivery.js';
import type { PushStore } from './store.js';

export const PUSH_DEFAULTS = {
  maxDataBytes: 4096,
  bodyLimitBytes: 256 * 1024,
  maxUsersPerPush: 1000,
  maxTtlS: 28 * 24 * 3600,
  maxTopicsPerDevice: 64,
  onlineAckWindowMs: 30_000,
  recordRetentionMs: 24 * 3_600_000,
  maxRecords: PUSH_STORE_DEFAULTS.maxRecords,
  nodeTtlMs: 15_000,
  claimTtlMs: 10_000,
} as const;

/** Options of a Push backend node; every one has a default. */
export interface PushBackendOptions {
  /** Where records, devices and topic logs live (default: a new MemoryPushStore). */
  store?: PushStore;
  /**
   * Pushes to users: the kit's inbox store and delivery ledger (default: in memory). Give the Redis ones
   * their own key prefix (the Push inbox of a user is not their IM inbox).
   */
  inbox?: { store: InboxStore; ledger: DeliveryLedger };
  /** This node's name in the store (default host-pid-random). */
  nodeId?: string;
  apiKeys?: readonly ApiKeySpec[];
  maxDataBytes?: number;
  bodyLimitBytes?: number;
  maxUsersPerPush?: number;
  maxTtlS?: number;
  maxTopicsPerDevice?: number;
  onlineAckWindowMs?: number;
  recordRetentionMs?: number;
  /**
   * Most pushes the in-memory store and ledger keep (the defaults of `store` and `inbox`), oldest
   * dropped first: their status is then 404 like a push past its retention.
   */
  maxRecords?: number;
  nodeTtlMs?: number;
  now?: () => number;
  logger?: pino.Logger;
  /** Also export Node process metrics (default false; the process sets it). */
  processMetrics?: boolean;
}

export interface PushBackend {
  readonly handlers: BackendHandlers;
  readonly service: PushService;
  /** The HTTP API (fastify), not listening: `api.listen({ host, port })`. */
  readonly api: FastifyInstance;
  readonly metrics: PushMetrics;
  readonly store: PushStore;
  readonly nodeId: string;
  readonly devices: DeviceSessions;
  /** Starts what needs the store before serving: taking topic pushes other nodes relay to this one. */
  start(): Promise<void>;
  /** Closes the API, forgets this node's online counts and closes the store. */
  close(): Promise<void>;
}

export function createPushBackend(options: PushBackendOptions = {}): PushBackend {
  const maxRecords = options.maxRecords ?? PUSH_DEFAULTS.maxRecords;
  const store = options.store ?? new MemoryPushStore({ maxRecords });
  const log = options.logger ?? pino({ level: 'silent' });
  const now = options.now ?? Date.now;
  const nodeId = options.nodeId ?? `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`;
  const online = new OnlineCounts(store, nodeId, options.nodeTtlMs ?? PUSH_DEFAULTS.nodeTtlMs, log);
  const fanOut = new ProxyFanOut((proxies) => online.setProxies(proxies));
  const relay = new ProxyRelay(store, fanOut, nodeId, log);
  const maxTtlS = options.maxTtlS ?? PUSH_DEFAULTS.maxTtlS;
  const inboxStore = options.inbox?.store ?? new MemoryInboxStore({ retention: { maxAgeMs: Math.max(1, maxTtlS) * 1000 } });
  const ledger = options.inbox?.ledger ?? new MemoryDeliveryLedger({ statsTtlMs: options.recordRetentionMs ?? PUSH_DEFAULTS.recordRetentionMs, maxRefs: maxRecords });
  const hub = new InboxHub({ store: inboxStore, ledger, now, logger: log });
  const users = new UserDelivery(hub, ledger);
  let metrics: PushMetrics | null = null;
  const devices = createDeviceSessions({
    store,
    hub,
    ledger,
    online,
    fanOut,
    maxTopicsPerDevice: options.maxTopicsPerDevice ?? PUSH_DEFAULTS.maxTopicsPerDevice,
    now,
    log,
    onAcks: (received, counted) => {
      metrics?.acksReceived.inc(received);
      metrics?.acksCounted.inc(counted);
    },
  });
  metrics = createPushMetrics({ devices: () => devices.size, proxies: () => fanOut.size }, { processMetrics: options.processMetrics ?? false });
  const delivery: PushDelivery = {
    async publishTopic(record) {
      const reached = fanOut.publish(proxyTopic(record.topic), pushEvent(record), record.priority);
      await relay.relay(record, reached).catch((err: unknown) => log.warn({ err, id: record.id }, 'push: relaying a topic push to other nodes failed'));
    },
    deliverToUsers: (record, to) => users.deliver(record, to, pushEvent(record), now()),
    userStats: (id, nowMs) => users.stats(id, nowMs),
  };
  const service = new PushService({
    store,
    delivery,
    maxDataBytes: options.maxDataBytes ?? PUSH_DEFAULTS.maxDataBytes,
    onlineAckWindowMs: options.onlineAckWindowMs ?? PUSH_DEFAULTS.onlineAckWindowMs,
    retentionMs: options.recordRetentionMs ?? PUSH_DEFAULTS.recordRetentionMs,
    claimTtlMs: PUSH_DEFAULTS.claimTtlMs,
    now,
    log,
    onAccepted: (audience) => metrics?.created(audience),
  });
  const api = createPushApi({
    service,
    keys: new ApiKeys(options.apiKeys ?? []),
    takeCall: (caller) => store.takeCall(caller.name, caller.rate, caller.burst),
    bodyLimit: options.bodyLimitBytes ?? PUSH_DEFAULTS.bodyLimitBytes,
    maxUsers: options.maxUsersPerPush ?? PUSH_DEFAULTS.maxUsersPerPush,
    maxTtlS,
    log,
    onAnswer: (route, status) => metrics?.answered(route, status),
  });
  return {
    handlers: devices.handlers,
    service,
    api,
    metrics,
    store,
    nodeId,
    devices,
    start: () => relay.start(),
    async close() {
      await api.close();
      hub.close();
      await devices.settled();
      await online.close();
      await Promise.all([store.close(), inboxStore.close(), ledger.close()]);
    },
  };
}
