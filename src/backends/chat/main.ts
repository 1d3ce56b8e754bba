/**
 * The Chat backend as a process: `livemux chat-backend --port 7102 [--redis redis://127.0.0.1:6379]
 * [--lease-ttl-ms 3000] [--presence-ttl-ms 10000] [--buffer-low 500]` (every option:
 * src/cli/chat-backend-command.ts). Without --redis, rooms live in this process
 * (MemoryChatStore); with it, in Redis, so another process can take a room over. With --admin-port, an
 * admin HTTP server (src/observability/admin-server.ts) serves /metrics (livemux_chat_*), /healthz,
 * /readyz and /status.
 * Prints `{"event":"listening","port":N}` on stdout once it accepts streams (with `"adminPort":M` when
 * the admin server runs; logs go to stderr), and returns after a clean shutdown on SIGTERM/SIGINT.
 */
import pino from 'pino';
import { createLogger } from '../../observability/logger.js';
import { startAdminServer, type AdminServer } from '../../observability/admin-server.js';
import { LivemuxError } from '../../protocol/errors.js';
import { untilSignal } from '../../util/signals.js';
import { createBackendServer } from '../kit/backend-server.js';
import { createChatBackend } from './chat-backend.js';
import { MemoryChatStore } from './memory-store.js';
import { RedisChatStore } from './redis-store.js';
import type { RoomBufferBounds } from './room-buffer.js';
import type { ChatStore } from './store.js';
import { WordFilterMode } from './word-filter.js';

const STATS_LOG_INTERVAL_MS = 60_000;

/** The command line of `livemux chat-backend`, parsed and range-checked (src/cli/chat-backend-command.ts). */
export interface ChatArgs {
  host: string;
  port: number;
  adminHost: string;
  /** Undefined: no admin server. */
  adminPort: number | undefined;
  redis: string | undefined;
  roomRate: number | undefined;
  userRate: number | undefined;
  leaseTtlMs: number | undefined;
  presenceTtlMs: number | undefined;
  /** Room buffer bounds given on the command line (absent ones keep their defaults). */
  buffer: Partial<RoomBufferBounds>;
  /** Messages of history per room; undefined keeps the default. */
  historyLength: number | undefined;
  words: string[];
  wordMode: WordFilterMode;
  logLevel: string;
}

/**
 * Runs the Chat backend until SIGTERM/SIGINT. Rejects when the port cannot be bound, or with a
 * LivemuxError (code ERR_USAGE) when the admin port cannot.
 */
export async function runChatBackend(args: ChatArgs): Promise<void> {
  const logger = createLogger({ level: args.logLevel, name: 'chat-backend' }, pino.destination(2));
  const store: ChatStore =
    args.redis === undefined
      ? new MemoryChatStore()
      : new RedisChatStore({ url: args.redis, onError: (err: Error) => logger.warn({ err }, 'chat backend: redis error') });
  const chat = createChatBackend({
    store,
    logger,
    processMetrics: true,
    words: args.words,
    wordMode: args.wordMode,
    buffer: args.buffer,
    ...(args.historyLength === undefined ? {} : { history: { maxLength: args.historyLength } }),
    ...(args.roomRate === undefined ? {} : { roomRate: args.roomRate }),
    // The burst stays two seconds' worth, as with the default rate.
    ...(args.userRate === undefined ? {} : { userRate: args.userRate, userBurst: Math.max(1, Math.ceil(args.userRate * 2)) }),
    ...(args.leaseTtlMs === undefined ? {} : { leaseTtlMs: args.leaseTtlMs }),
    ...(args.presenceTtlMs === undefined ? {} : { presenceTtlMs: args.presenceTtlMs }),
  });
  const server = createBackendServer(chat.handlers, { logger });
  const listening = await server.listen(args.host, args.port);
  let ready = true;
  let admin: AdminServer | null = null;
  if (args.adminPort !== undefined) {
    try {
      admin = await startAdminServer({
        host: args.adminHost,
        port: args.adminPort,
        metrics: chat.metrics,
        isReady: () => ready,
        status: () => ({ rooms: chat.rooms.size, stats: chat.stats }),
      });
    } catch (err) {
      await listening.close();
      await chat.close();
      throw new LivemuxError('ERR_USAGE', `--admin-port: cannot listen on ${args.adminHost}:${args.adminPort} (${(err as Error).message})`);
    }
  }
  const adminPort = admin === null ? {} : { adminPort: admin.port };
  process.stdout.write(`${JSON.stringify({ event: 'listening', port: listening.port, ...adminPort })}\n`);
  // Accepted and dropped messages by reason and priority, logged when they changed.
  let lastStats = '';
  const statsTimer = setInterval(() => {
    const now = JSON.stringify(chat.stats);
    if (now !== lastStats) logger.info({ stats: chat.stats, rooms: chat.rooms.size }, 'chat backend: message counters');
    lastStats = now;
  }, STATS_LOG_INTERVAL_MS);
  statsTimer.unref();
  const signal = await untilSignal();
  clearInterval(statsTimer);
  logger.info({ signal, stats: chat.stats }, 'chat backend: shutting down');
  ready = false;
  await listening.close();
  await admin?.close();
  await chat.close();
}
