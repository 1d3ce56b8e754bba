/**
 * The Chat backend as a process: `livemux chat-backend --port 7102 [--redis redis://127.0.0.1:6379]
 * [--lease-ttl-ms 3000] [--presence-ttl-ms 10000] [--buffer-low 500]` (every flag: src/cli/main.ts), or
 * `node dist/src/backends/chat/main.js …`. Without --redis, rooms live in this process
 * (MemoryChatStore); with it, in Redis, so another process can take a room over. With --admin-port, an
 * admin HTTP server (src/observability/admin-server.ts) serves /metrics (livemux_chat_*), /healthz,
 * /readyz and /status.
 * Prints `{"event":"listening","port":N}` on stdout once it accepts streams (with `"adminPort":M` when
 * the admin server runs; logs go to stderr), and exits 0 after a clean shutdown on SIGTERM/SIGINT.
 */
import pino from 'pino';
import { createLogger } from '../../observability/logger.js';
import { LivemuxError } from '../../protocol/errors.js';
import { parseBackendArgs, parseInteger, parseRate, serveBackend, type CommonBackendArgs } from '../kit/backend-process.js';
import { runIfEntryPoint } from '../kit/process-entry.js';
import { createChatBackend } from './chat-backend.js';
import { MemoryChatStore } from './memory-store.js';
import { RedisChatStore } from './redis-store.js';
import type { RoomBufferBounds } from './room-buffer.js';
import type { ChatStore } from './store.js';
import { WordFilterMode } from './word-filter.js';

const DEFAULT_PORT = 7102;
/** The write lease is renewed every third of its TTL, which must stay a whole millisecond. */
const MIN_LEASE_TTL_MS = 3;
/** Below this, renewing presences every third of the TTL would compete with the room traffic for the store. */
const MIN_PRESENCE_TTL_MS = 300;

interface ChatArgs {
  common: CommonBackendArgs;
  roomRate: number | undefined;
  userRate: number | undefined;
  leaseTtlMs: number | undefined;
  presenceTtlMs: number | undefined;
  /** Room buffer bounds given on the command line (absent ones keep their defaults). */
  buffer: Partial<RoomBufferBounds>;
  words: string[];
  wordMode: WordFilterMode;
}

/**
 * Runs the Chat backend until SIGTERM/SIGINT; resolves with the exit status (0 after a clean close).
 * Rejects with a LivemuxError (code ERR_USAGE) on bad arguments, or when the port cannot be bound.
 */
export async function runChatBackend(argv: string[]): Promise<number> {
  const args = parseChatArgs(argv);
  const { common } = args;
  const logger = createLogger({ level: common.logLevel, name: 'chat-backend' }, pino.destination(2));
  const store: ChatStore =
    common.redis === undefined
      ? new MemoryChatStore()
      : new RedisChatStore({ url: common.redis, onError: (err: Error) => logger.warn({ err }, 'chat backend: redis error') });
  const chat = createChatBackend({
    store,
    logger,
    processMetrics: true,
    words: args.words,
    wordMode: args.wordMode,
    buffer: args.buffer,
    ...(args.roomRate === undefined ? {} : { roomRate: args.roomRate }),
    // The burst stays two seconds' worth, as with the default rate.
    ...(args.userRate === undefined ? {} : { userRate: args.userRate, userBurst: Math.max(1, Math.ceil(args.userRate * 2)) }),
    ...(args.leaseTtlMs === undefined ? {} : { leaseTtlMs: args.leaseTtlMs }),
    ...(args.presenceTtlMs === undefined ? {} : { presenceTtlMs: args.presenceTtlMs }),
  });
  return serveBackend({
    name: 'chat backend',
    common,
    logger,
    handlers: chat.handlers,
    metrics: chat.metrics,
    status: () => ({ rooms: chat.rooms.size, stats: chat.stats }),
    // Accepted and dropped messages by reason and priority.
    counters: () => ({ stats: chat.stats, rooms: chat.rooms.size }),
    close: () => chat.close(),
  });
}

function parseChatArgs(argv: string[]): ChatArgs {
  const flags = ['room-rate', 'user-rate', 'lease-ttl-ms', 'presence-ttl-ms', 'buffer-system', 'buffer-high', 'buffer-low', 'words', 'word-mode'];
  const { common, values } = parseBackendArgs(argv, Object.fromEntries(flags.map((f) => [f, { type: 'string' as const }])), DEFAULT_PORT);
  const wordMode = values['word-mode'] ?? WordFilterMode.REJECT;
  if (wordMode !== WordFilterMode.REJECT && wordMode !== WordFilterMode.MASK) {
    throw new LivemuxError('ERR_USAGE', `--word-mode: expected reject or mask, got "${wordMode}"`);
  }
  return {
    common,
    roomRate: parseRate(values, 'room-rate'),
    userRate: parseRate(values, 'user-rate'),
    leaseTtlMs: parseInteger(values, 'lease-ttl-ms', MIN_LEASE_TTL_MS, 'ms'),
    presenceTtlMs: parseInteger(values, 'presence-ttl-ms', MIN_PRESENCE_TTL_MS, 'ms'),
    buffer: parseBufferBounds(values),
    words: (values.words ?? '').split(',').filter((w) => w !== ''),
    wordMode,
  };
}

/** The --buffer-system/-high/-low options given, each a positive integer (messages). */
function parseBufferBounds(values: Record<string, string | undefined>): Partial<RoomBufferBounds> {
  const bounds: { -readonly [K in keyof RoomBufferBounds]?: number } = {};
  for (const priority of ['system', 'high', 'low'] as const) {
    const bound = parseInteger(values, `buffer-${priority}`, 1, 'messages');
    if (bound !== undefined) bounds[priority] = bound;
  }
  return bounds;
}

runIfEntryPoint(import.meta.url, 'chat-backend', runChatBackend);
