/**
 * The Push backend as a process: `livemux push-backend [--config push.yaml] [--host H] [--port P]
 * [--http-host H] [--http-port P] [--redis URL] [--admin-port P] [--node-id ID] [--log-level L]`, or
 * `node dist/src/backends/push/main.js …`. Flags override the config file (docs/push.md
 * §Configuration). Without a Redis URL everything lives in this process (one node); with it, any
 * number of nodes share devices, records and topic logs.
 * Prints `{"event":"listening","port":N,"httpPort":M,"adminPort":A}` on stdout once it accepts streams
 * and calls (httpPort/adminPort only when they run; logs go to stderr), and exits 0 after a clean
 * shutdown on SIGTERM/SIGINT.
 */
import { parseArgs } from 'node:util';
import pino from 'pino';
import { createLogger } from '../../observability/logger.js';
import { startAdminServer, type AdminServer } from '../../observability/admin-server.js';
import { LivemuxError } from '../../protocol/errors.js';
import { untilSignal } from '../../util/signals.js';
import { createBackendServer } from '../kit/backend-server.js';
import { runIfEntryPoint } from '../kit/process-entry.js';
import { MemoryPushStore } from './memory-store.js';
import { createPushBackend } from './push-backend.js';
import { loadPushConfig, type PushConfig } from './push-config.js';
import { RedisPushStore } from './redis-store.js';
import { RedisDeliveryLedger, RedisInboxStore } from '../kit/inbox/index.js';

/** Runs a Push backend node until SIGTERM/SIGINT; resolves with the exit status (0 after a clean close). */
export async function runPushBackend(argv: string[]): Promise<number> {
  const { config, nodeId } = parsePushArgs(argv);
  const logger = createLogger({ level: config.logLevel, name: 'push-backend' }, pino.destination(2));
  const onError = (err: Error): void => logger.warn({ err }, 'push backend: redis error');
  const store =
    config.redis === null
      ? new MemoryPushStore({ deviceRetentionMs: config.deviceRetentionMs })
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
    nodeTtlMs: config.nodeTtlMs,
    logger,
    processMetrics: true,
  });
  if (config.http !== null && config.apiKeys.length === 0) {
    logger.warn('push backend: no API key configured (api_keys in the config, or LIVEMUX_PUSH_API_KEY): every API call is refused');
  }
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
  const signal = await untilSignal();
  logger.info({ signal }, 'push backend: shutting down');
  ready = false;
  await listening.close();
  await admin?.close();
  await push.close();
  return 0;
}

function parsePushArgs(argv: string[]): { config: PushConfig; nodeId: string | undefined } {
  let values: Record<string, string | undefined>;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        config: { type: 'string' },
        host: { type: 'string' },
        port: { type: 'string' },
        'http-host': { type: 'string' },
        'http-port': { type: 'string' },
        'admin-host': { type: 'string' },
        'admin-port': { type: 'string' },
        redis: { type: 'string' },
        'node-id': { type: 'string' },
        'log-level': { type: 'string' },
      },
      strict: true,
    }));
  } catch (err) {
    throw new LivemuxError('ERR_USAGE', (err as Error).message);
  }
  const file = loadPushConfig(values.config ?? null);
  const http = file.http ?? { host: '127.0.0.1', port: 7180 };
  const admin = file.admin ?? { host: '127.0.0.1', port: 9103 };
  const config: PushConfig = {
    ...file,
    listen: { host: values.host ?? file.listen.host, port: parsePort(values, 'port') ?? file.listen.port },
    http: values['http-port'] === 'off' ? null : values['http-host'] !== undefined || values['http-port'] !== undefined
      ? { host: values['http-host'] ?? http.host, port: parsePort(values, 'http-port') ?? http.port }
      : file.http,
    admin: values['admin-port'] !== undefined || values['admin-host'] !== undefined
      ? { host: values['admin-host'] ?? admin.host, port: parsePort(values, 'admin-port') ?? admin.port }
      : file.admin,
    redis: values.redis ?? file.redis,
    logLevel: values['log-level'] ?? file.logLevel,
  };
  return { config, nodeId: values['node-id'] };
}

/** A port option (0 = any free port), or undefined when absent. */
function parsePort(values: Record<string, string | undefined>, name: string): number | undefined {
  const text = values[name];
  if (text === undefined) return undefined;
  const port = Number(text);
  if (text.trim() === '' || !Number.isInteger(port) || port < 0 || port > 65_535) {
    throw new LivemuxError('ERR_USAGE', `--${name}: expected an integer 0..65535 (or "off" for --http-port), got "${text}"`);
  }
  return port;
}

runIfEntryPoint(import.meta.url, 'push-backend', runPushBackend);
