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
import { serveBackend, type CommonBackendArgs } from '../kit/backend-process.js';
import { createChatBackend } from './chat-backend.js';
import { MemoryChatStore } from './memory-store.js';
import { RedisChatStore } from './redis-store.js';
import type { RoomBufferBounds } from './room-buffer.js';
import type { ChatStore } from './store.js';
import { WordFilterMode } from './word-filter.js';

/** The command line of `livemux chat-backend`, parsed and range-checked (src/cli/chat-backend-command.ts). */
export interface ChatArgs extends CommonBackendArgs {
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
  await serveBackend({
    name: 'chat backend',
    args,
    logger,
    handlers: chat.handlers,
    metrics: chat.metrics,
    status: () => ({ rooms: chat.rooms.size, stats: chat.stats }),
    // Accepted and dropped messages by reason and priority.
    counters: () => ({ stats: chat.stats, rooms: chat.rooms.size }),
    close: () => chat.close(),
  });
}
