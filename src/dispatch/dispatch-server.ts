import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { Counter, Registry, collectDefaultMetrics } from 'prom-client';
import { type AdminServer, type Reply, json, startAdminServer } from '../observability/admin-server.js';
import { ProxyDirectory } from './directory.js';
import { CLUSTER_NAME } from './proxy-record.js';
import { rankProxies } from './rank.js';

/** Settings of `livemux dispatch` (docs/dispatch.md). */
export interface DispatchServerOptions {
  host: string;
  /** 0 picks a free port. */
  port: number;
  redisUrl: string;
  /** Addresses per answer unless the request asks for fewer (`limit`). */
  limit: number;
  /** Proxies lagging more than this are listed after the others. */
  maxLagMs: number;
  /** A cluster's registrations are read from Redis at most this often. */
  refreshMs: number;
  logger: Logger;
}

/** How long start-up waits for Redis before serving anyway (answering 503 until it is reachable). */
const STARTUP_WAIT_MS = 3_000;

/** Most addresses one answer may carry, whatever `limit` asks. */
export const MAX_LIMIT = 100;

/** The JSON body of a `GET /v1/dispatch` answer. */
export interface DispatchAnswer {
  cluster: string;
  /** `host:port` to try in this order. */
  addresses: string[];
  /** Why `addresses` is empty (status 503), or absent. */
  error?: string;
}

/** A running dispatcher. */
export interface DispatchServer {
  readonly port: number;
  close(): Promise<void>;
}

/**
 * `livemux dispatch`: the HTTP service clients ask where to connect (seed 001's DispatchServer).
 *   GET /v1/dispatch?cluster=<name>[&limit=N]
 *     200 {"cluster", "addresses": ["host:port", ...]}  healthy proxies, least loaded first
 *     503 {"cluster", "addresses": [], "error"}          no proxy available, or Redis unreachable
 *     400 {"error"}                                       cluster missing or malformed, bad limit
 * plus /metrics, /healthz and /readyz (ready while Redis is connected). Stateless apart from a
 * short cache: run as many as you like behind any HTTP load balancer.
 */
export async function startDispatchServer(options: DispatchServerOptions): Promise<DispatchServer> {
  const { logger } = options;
  const redis = new Redis(options.redisUrl, { enableOfflineQueue: false, maxRetriesPerRequest: 1 });
  let redisDown = false;
  redis.on('error', (err: Error) => {
    if (!redisDown) logger.warn({ err: err.message }, 'dispatch: redis unreachable');
    redisDown = true;
  });
  redis.on('ready', () => {
    if (redisDown) logger.info('dispatch: redis reachable again');
    redisDown = false;
  });
  // Commands fail fast while Redis is away (no offline queue), so give the first connection a moment
  // before answering; a Redis that is down at start only makes the dispatcher unready.
  await Promise.race([once(redis, 'ready'), sleep(STARTUP_WAIT_MS)]);
  const directory = new ProxyDirectory(redis, options.refreshMs);
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'livemux_dispatch_' });
  const answers = new Counter({
    name: 'livemux_dispatch_answers_total',
    help: 'Answers to GET /v1/dispatch by result: ok, no_proxy (503), redis_error (503), bad_request (400).',
    labelNames: ['result'],
    registers: [registry],
  });

  const dispatch = async (query: URLSearchParams): Promise<Reply> => {
    const cluster = query.get('cluster') ?? '';
    const limitText = query.get('limit');
    const limit = limitText === null ? options.limit : Number(limitText);
    const problem = !CLUSTER_NAME.test(cluster)
      ? `cluster: expected 1-64 characters of A-Z a-z 0-9 _ . -, got ${JSON.stringify(cluster.slice(0, 80))}`
      : !Number.isInteger(limit) || limit < 1 || limit > MAX_LIMIT
        ? `limit: expected an integer 1..${MAX_LIMIT}, got ${JSON.stringify(limitText!.slice(0, 20))}`
        : null;
    if (problem) {
      answers.inc({ result: 'bad_request' });
      return json(400, { error: problem });
    }
    let snapshot;
    try {
      snapshot = await directory.snapshot(cluster);
    } catch (err) {
      answers.inc({ result: 'redis_error' });
      logger.warn({ err: (err as Error).message, cluster }, 'dispatch: redis read failed');
      return json(503, { cluster, addresses: [], error: 'registry unavailable' } satisfies DispatchAnswer);
    }
    const ranked = rankProxies(snapshot.records, { maxLagMs: options.maxLagMs, assigned: snapshot.assigned }).slice(0, limit);
    if (ranked.length === 0) {
      answers.inc({ result: 'no_proxy' });
      return json(503, { cluster, addresses: [], error: `no proxy available in cluster "${cluster}"` } satisfies DispatchAnswer);
    }
    // The first address is where this client will most likely land.
    snapshot.assigned.set(ranked[0]!.id, (snapshot.assigned.get(ranked[0]!.id) ?? 0) + 1);
    answers.inc({ result: 'ok' });
    return json(200, { cluster, addresses: ranked.map((r) => r.address) } satisfies DispatchAnswer);
  };

  let admin: AdminServer;
  try {
    admin = await startAdminServer({
      host: options.host,
      port: options.port,
      metrics: { registry },
      isReady: () => redis.status === 'ready',
      routes: { '/v1/dispatch': dispatch },
    });
  } catch (err) {
    redis.disconnect();
    throw err;
  }
  logger.info({ address: options.host, port: admin.port }, 'dispatch listening');
  return {
    port: admin.port,
    async close() {
      await admin.close();
      redis.disconnect();
    },
  };
}
