/**
 * The Push backend as a process: `livemux push-backend [--config push.yaml] [--host H] [--port P]
 * [--http-host H] [--http-port P|off] [--redis URL] [--admin-port P] [--node-id ID] [--log-level L]`
 * (src/cli/push-backend-command.ts). Flags override the config file (docs/push.md §4). Without a Redis URL everything lives in this process (one node); with it, any
 * number of nodes share devices, records and topic logs.
 * Prints `{"event":"listening","port":N,"httpPort":M,"adminPort":A}` on stdout once it accepts streams
 * and calls (httpPort/adminPort only when they run; logs go to stderr), and returns after a clean
 * shutdown on SIGTERM/SIGINT, or when the parent that forked it (`livemux up`) is gone.
 */
import pino from 'pino';
import { createLogger } from '../../observability/logger.js';
import { startAdminServer, type AdminServer } from '../../observability/admin-server.js';
import { LivemuxError } from '../../protocol/errors.js';
import { untilStop } from '../../util/signals.js';
import { createBackendServer } from '../kit/backend-server.js';
import { MemoryPushStore } from './memory-store.js';
import { missingPushNodeFlags } from './node-flags.js';
import { createPushBackend } from './push-backend.js';
import { loadPushConfig, type PushConfig } from './push-config.js';
import { RedisPushStore } from './redis-store.js';
import { RedisDeliveryLedger, RedisInboxStore } from '../kit/inbox/index.js';

/** The command line of `livemux push-backend` (src/cli/push-backend-command.ts): each flag overrides the config file. */
export interface PushArgs {
  /** push.yaml; undefined: every default. */
  config?: string;
  host?: string;
  port?: number;
  httpHost?: string;
  /** 'off': no HTTP API on this node. */
  httpPort?: number | 'off';
  adminHost?: string;
  adminPort?: number;
  redis?: string;
  nodeId?: string;
  logLevel?: string;
}

/**
 * Runs a Push backend node until SIGTERM/SIGINT (or its parent is gone), then returns. Rejects with a
 * ConfigError for a bad config file, or a LivemuxError when a port cannot be bound.
 */
export async function runPushBackend(args: PushArgs): Promise<void> {
  const config = applyArgs(loadPushConfig(args.config ?? null), args);
  const nodeId = args.nodeId;
  const logger = createLogger({ level: config.logLevel, name: 'push-backend' }, pino.destination(2));
  const onError = (err: Error): void => logger.warn({ err }, 'push backend: redis error');
  const store =
    config.redis === null
      ? new MemoryPushStore({ deviceRetentionMs: config.deviceRetentionMs, maxRecords: config.maxRecords })
      : new RedisPushStore({ url: config.redis, deviceRetentionMs: config.deviceRetentionMs, onError });
  // Pushes to users live in the kit's inbox, under their own prefixes (not the IM inbox of the same user).
  const inbox =
    config.redis === null
      ? undefined
      : {
          store: new RedisInboxStore({ url: config.redis, keyPrefix: 'livemux:push:inbox:', retention: { maxAgeMs: Math.max(1, config.limits.maxTtlS) * 1000 }, onError }),
          ledger: new RedisDeliveryLedger({ url: config.redis, keyPrefix: 'livemux:push:ledger:', statsTtlMs: config.recordRetentionMs, onError }),
        };
  const push = createPushBackend({
    store,
    ...(inbox === undefined ? {} : { inbox }),
    ...(nodeId === undefined ? {} : { nodeId }),
    apiKeys: config.apiKeys,
    ...config.limits,
    onlineAckWindowMs: config.onlineAckWindowMs,
    recordRetentionMs: config.recordRetentionMs,
    maxRecords: config.maxRecords,
    nodeTtlMs: config.nodeTtlMs,
    logger,
    processMetrics: true,
  });
  if (config.http !== null && config.apiKeys.length === 0) {
    logger.warn('push backend: no API key configured (api_keys in the config, or LIVEMUX_PUSH_API_KEY): every API call is refused');
  }
  const missing = missingPushNodeFlags();
  if (missing.length > 0) logger.info({ missing }, 'push backend: started without the V8 flags of a push node (docs/push.md §4, "V8 flags")');
  await push.start();
  const listening = await createBackendServer(push.handlers, { logger }).listen(config.listen.host, config.listen.port);
  let ready = true;
  let admin: AdminServer | null = null;
  const ports: Record<string, number> = { port: listening.port };
  try {
    if (config.http !== null) {
      await push.api.listen({ host: config.http.host, port: config.http.port });
      ports.httpPort = (push.api.server.address() as { port: number }).port;
    }
    if (config.admin !== null) {
      admin = await startAdminServer({
        host: config.admin.host,
        port: config.admin.port,
        metrics: push.metrics,
        isReady: () => ready,
        status: () => ({ node: push.nodeId, devices: push.devices.size, store: config.redis === null ? 'memory' : 'redis' }),
      });
      ports.adminPort = admin.port;
    }
  } catch (err) {
    await listening.close();
    await push.close();
    throw new LivemuxError('ERR_USAGE', `push backend: cannot listen (${(err as Error).message})`);
  }
  process.stdout.write(`${JSON.stringify({ event: 'listening', ...ports, node: push.nodeId })}\n`);
  const reason = await untilStop();
  logger.info({ reason }, 'push backend: shutting down');
  ready = false;
  await listening.close();
  await admin?.close();
  await push.close();
}

/** The config with the command line's overrides. */
function applyArgs(file: PushConfig, args: PushArgs): PushConfig {
  const http = file.http ?? { host: '127.0.0.1', port: 7180 };
  const admin = file.admin ?? { host: '127.0.0.1', port: 9103 };
  return {
    ...file,
    listen: { host: args.host ?? file.listen.host, port: args.port ?? file.listen.port },
    http:
      args.httpPort === 'off'
        ? null
        : args.httpHost !== undefined || args.httpPort !== undefined
          ? { host: args.httpHost ?? http.host, port: args.httpPort ?? http.port }
          : file.http,
    admin: args.adminHost !== undefined || args.adminPort !== undefined ? { host: args.adminHost ?? admin.host, port: args.adminPort ?? admin.port } : file.admin,
    redis: args.redis ?? file.redis,
    logLevel: args.logLevel ?? file.logLevel,
  };
}
