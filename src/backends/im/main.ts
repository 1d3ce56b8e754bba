/**
 * The IM backend as a process: `livemux im-backend --port 7104 [--redis redis://127.0.0.1:6379]
 * [--send-rate 20] [--max-body 16384] [--inbox-max 1000] [--inbox-max-age-ms MS] [--history-max 10000]
 * [--recall-window-ms 120000] [--presence-ttl-ms 30000]` (every option: src/cli/im-backend-command.ts).
 * Without --redis, conversations and inboxes live in this process; with it, in Redis, shared by every
 * IM backend process, which then reach each other's devices through Redis pub/sub. With --admin-port,
 * an admin HTTP server serves /metrics (livemux_im_*), /healthz, /readyz and /status.
 * Prints `{"event":"listening","port":N}` on stdout once it accepts streams (with `"adminPort":M` when
 * the admin server runs; logs go to stderr), and returns after a clean shutdown on SIGTERM/SIGINT.
 */
import { Redis } from 'ioredis';
import pino from 'pino';
import { createLogger } from '../../observability/logger.js';
import { serveBackend, type CommonBackendArgs } from '../kit/backend-process.js';
import { RedisInboxStore } from '../kit/inbox/redis-inbox-store.js';
import { quit } from '../kit/redis/redis-handle.js';
import { createImBackend, type ImBackendOptions } from './im-backend.js';
import { RedisImStore } from './redis-store.js';

/** The command line of `livemux im-backend`, parsed and range-checked (src/cli/im-backend-command.ts); undefined = the default. */
export interface ImArgs extends CommonBackendArgs {
  /** Messages/s per user; the burst is two seconds' worth. */
  sendRate: number | undefined;
  maxBodyBytes: number | undefined;
  inboxMax: number | undefined;
  inboxMaxAgeMs: number | undefined;
  historyMax: number | undefined;
  recallWindowMs: number | undefined;
  presenceTtlMs: number | undefined;
}

/** Runs the IM backend until SIGTERM/SIGINT; rejects when the port cannot be bound. */
export async function runImBackend(args: ImArgs): Promise<void> {
  const logger = createLogger({ level: args.logLevel, name: 'im-backend' }, pino.destination(2));
  const retention = {
    ...(args.inboxMax === undefined ? {} : { maxEntries: args.inboxMax }),
    ...(args.inboxMaxAgeMs === undefined ? {} : { maxAgeMs: args.inboxMaxAgeMs }),
  };
  const options: ImBackendOptions = {
    logger,
    processMetrics: true,
    retention,
    conversation: args.historyMax === undefined ? {} : { maxMessages: args.historyMax },
    ...(args.sendRate === undefined ? {} : { sendRate: args.sendRate, sendBurst: Math.max(1, Math.ceil(args.sendRate * 2)) }),
    ...(args.maxBodyBytes === undefined ? {} : { maxBodyBytes: args.maxBodyBytes }),
    ...(args.recallWindowMs === undefined ? {} : { recallWindowMs: args.recallWindowMs }),
    ...(args.presenceTtlMs === undefined ? {} : { presenceTtlMs: args.presenceTtlMs }),
  };
  // Redis mode: the stores share one connection (each inbox store opens its own subscriber).
  let connection: Redis | null = null;
  if (args.redis !== undefined) {
    // Auto-pipelining sends the commands of one event-loop turn in one write: under load each send's
    // script, cursor writes and presence renewals share syscalls instead of one each.
    connection = new Redis(args.redis, { enableAutoPipelining: true });
    const onError = (err: Error): void => void logger.warn({ err }, 'im backend: redis error');
    connection.on('error', onError);
    const inbox = new RedisInboxStore({ connection, keyPrefix: 'livemux:im:inbox:', retention, onError });
    options.store = new RedisImStore({ connection, inbox });
    options.presenceBus = new RedisInboxStore({ connection, keyPrefix: 'livemux:im:presence:', onError });
  }
  const im = createImBackend(options);
  await serveBackend({
    name: 'im backend',
    args,
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
