/**
 * The IM backend as a process: `livemux im-backend --port 7103 [--redis redis://127.0.0.1:6379]
 * [--send-rate 20] [--max-body 16384] [--inbox-max 1000] [--inbox-max-age-ms MS] [--history-max 10000]
 * [--recall-window-ms 120000] [--presence-ttl-ms 30000]` (every flag: src/cli/main.ts), or
 * `node dist/src/backends/im/main.js …`. Without --redis, conversations and inboxes live in this
 * process; with it, in Redis, shared by every IM backend process, which then reach each other's
 * devices through Redis pub/sub. With --admin-port, an admin HTTP server serves /metrics
 * (livemux_im_*), /healthz, /readyz and /status.
 * Prints `{"event":"listening","port":N}` on stdout once it accepts streams (with `"adminPort":M` when
 * the admin server runs; logs go to stderr), and exits 0 after a clean shutdown on SIGTERM/SIGINT.
 */
import { Redis } from 'ioredis';
import pino from 'pino';
import { createLogger } from '../../observability/logger.js';
import { parseBackendArgs, parseInteger, parseRate, serveBackend } from '../kit/backend-process.js';
import { RedisInboxStore } from '../kit/inbox/redis-inbox-store.js';
import { quit } from '../kit/redis/redis-handle.js';
import { runIfEntryPoint } from '../kit/process-entry.js';
import { createImBackend, type ImBackendOptions } from './im-backend.js';
import { RedisImStore } from './redis-store.js';

const DEFAULT_PORT = 7103;
/** Below this, renewing sessions every third of the TTL would compete with the traffic for the store. */
const MIN_PRESENCE_TTL_MS = 300;
const FLAGS = ['send-rate', 'max-body', 'inbox-max', 'inbox-max-age-ms', 'history-max', 'recall-window-ms', 'presence-ttl-ms'];

/**
 * Runs the IM backend until SIGTERM/SIGINT; resolves with the exit status (0 after a clean close).
 * Rejects with a LivemuxError (code ERR_USAGE) on bad arguments, or when the port cannot be bound.
 */
export async function runImBackend(argv: string[]): Promise<number> {
  const { common, values } = parseBackendArgs(argv, Object.fromEntries(FLAGS.map((f) => [f, { type: 'string' as const }])), DEFAULT_PORT);
  const sendRate = parseRate(values, 'send-rate');
  const maxBodyBytes = parseInteger(values, 'max-body', 1, 'bytes');
  const maxEntries = parseInteger(values, 'inbox-max', 1, 'entries');
  const maxAgeMs = parseInteger(values, 'inbox-max-age-ms', 1, 'ms');
  const maxMessages = parseInteger(values, 'history-max', 1, 'messages');
  const recallWindowMs = parseInteger(values, 'recall-window-ms', 0, 'ms');
  const presenceTtlMs = parseInteger(values, 'presence-ttl-ms', MIN_PRESENCE_TTL_MS, 'ms');
  const logger = createLogger({ level: common.logLevel, name: 'im-backend' }, pino.destination(2));
  const retention = { ...(maxEntries === undefined ? {} : { maxEntries }), ...(maxAgeMs === undefined ? {} : { maxAgeMs }) };
  const options: ImBackendOptions = {
    logger,
    processMetrics: true,
    retention,
    conversation: maxMessages === undefined ? {} : { maxMessages },
    // The burst stays two seconds' worth, as with the default rate.
    ...(sendRate === undefined ? {} : { sendRate, sendBurst: Math.max(1, Math.ceil(sendRate * 2)) }),
    ...(maxBodyBytes === undefined ? {} : { maxBodyBytes }),
    ...(recallWindowMs === undefined ? {} : { recallWindowMs }),
    ...(presenceTtlMs === undefined ? {} : { presenceTtlMs }),
  };
  // Redis mode: the three stores share one connection (each inbox store opens its own subscriber).
  let connection: Redis | null = null;
  if (common.redis !== undefined) {
    connection = new Redis(common.redis);
    connection.on('error', (err: Error) => logger.warn({ err }, 'im backend: redis error'));
    const inbox = new RedisInboxStore({ connection, keyPrefix: 'livemux:im:inbox:', retention, onError: (err) => logger.warn({ err }, 'im backend: redis subscriber error') });
    options.store = new RedisImStore({ connection, inbox });
    options.presenceBus = new RedisInboxStore({ connection, keyPrefix: 'livemux:im:presence:', onError: (err) => logger.warn({ err }, 'im backend: redis subscriber error') });
  }
  const im = createImBackend(options);
  return serveBackend({
    name: 'im backend',
    common,
    logger,
    handlers: im.handlers,
    metrics: im.metrics,
    status: () => ({ sessions: im.sessions, usersWithDevices: im.hub.users, stats: im.stats }),
    counters: () => ({ stats: im.stats, sessions: im.sessions }),
    async close() {
      await im.close();
      if (connection !== null) await quit(connection);
    },
  });
}

runIfEntryPoint(import.meta.url, 'im-backend', runImBackend);
