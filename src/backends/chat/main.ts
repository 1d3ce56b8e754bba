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
import { parseArgs } from 'node:util';
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
import { runIfEntryPoint } from '../kit/process-entry.js';

const DEFAULT_HOST = '127.0.0.1';
const DEFAULT_PORT = 7102;
const STATS_LOG_INTERVAL_MS = 60_000;
/** The write lease is renewed every third of its TTL, which must stay a whole millisecond. */
const MIN_LEASE_TTL_MS = 3;
/** Below this, renewing presences every third of the TTL would compete with the room traffic for the store. */
const MIN_PRESENCE_TTL_MS = 300;

interface ChatArgs {
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
  words: string[];
  wordMode: WordFilterMode;
  logLevel: string;
}

/**
 * Runs the Chat backend until SIGTERM/SIGINT; resolves with the exit status (0 after a clean close).
 * Rejects with a LivemuxError (code ERR_USAGE) on bad arguments, or when the port cannot be bound.
 */
export async function runChatBackend(argv: string[]): Promise<number> {
  const args = parseChatArgs(argv);
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
  return 0;
}

function parseChatArgs(argv: string[]): ChatArgs {
  let values: Record<string, string | undefined>;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        host: { type: 'string' },
        port: { type: 'string' },
        'admin-host': { type: 'string' },
        'admin-port': { type: 'string' },
        redis: { type: 'string' },
        'room-rate': { type: 'string' },
        'user-rate': { type: 'string' },
        'lease-ttl-ms': { type: 'string' },
        'presence-ttl-ms': { type: 'string' },
        'buffer-system': { type: 'string' },
        'buffer-high': { type: 'string' },
        'buffer-low': { type: 'string' },
        words: { type: 'string' },
        'word-mode': { type: 'string' },
        'log-level': { type: 'string' },
      },
      strict: true,
    }));
  } catch (err) {
    throw new LivemuxError('ERR_USAGE', (err as Error).message);
  }
  const port = parsePort(values, 'port') ?? DEFAULT_PORT;
  const adminPort = parsePort(values, 'admin-port');
  const roomRate = parseRate(values, 'room-rate');
  const userRate = parseRate(values, 'user-rate');
  const leaseTtlMs = parseInteger(values, 'lease-ttl-ms', MIN_LEASE_TTL_MS, 'ms');
  const presenceTtlMs = parseInteger(values, 'presence-ttl-ms', MIN_PRESENCE_TTL_MS, 'ms');
  const wordMode = values['word-mode'] ?? WordFilterMode.REJECT;
  if (wordMode !== WordFilterMode.REJECT && wordMode !== WordFilterMode.MASK) {
    throw new LivemuxError('ERR_USAGE', `--word-mode: expected reject or mask, got "${wordMode}"`);
  }
  return {
    host: values.host ?? DEFAULT_HOST,
    port,
    adminHost: values['admin-host'] ?? DEFAULT_HOST,
    adminPort,
    redis: values.redis,
    roomRate,
    userRate,
    leaseTtlMs,
    presenceTtlMs,
    buffer: parseBufferBounds(values),
    words: (values.words ?? '').split(',').filter((w) => w !== ''),
    wordMode,
    logLevel: values['log-level'] ?? 'info',
  };
}

/** A port option (0 = any free port), or undefined when absent. */
function parsePort(values: Record<string, string | undefined>, name: string): number | undefined {
  const text = values[name];
  if (text === undefined) return undefined;
  const port = Number(text);
  if (text.trim() === '' || !Number.isInteger(port) || port < 0 || port > 65_535) {
    throw new LivemuxError('ERR_USAGE', `--${name}: expected an integer 0..65535, got "${text}"`);
  }
  return port;
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

/** A positive messages/s option, or undefined when absent. */
function parseRate(values: Record<string, string | undefined>, name: string): number | undefined {
  const text = values[name];
  if (text === undefined) return undefined;
  const rate = Number(text);
  if (!(Number.isFinite(rate) && rate > 0)) throw new LivemuxError('ERR_USAGE', `--${name}: expected a positive number of messages/s, got "${text}"`);
  return rate;
}

/**
 * A whole-number option of at least `min` (`unit` names what it counts in the error), or undefined when
 * absent: the TTLs (--lease-ttl-ms, --presence-ttl-ms, each with its own minimum) and the buffer bounds.
 */
function parseInteger(values: Record<string, string | undefined>, name: string, min: number, unit: string): number | undefined {
  const text = values[name];
  if (text === undefined) return undefined;
  const n = Number(text);
  if (text.trim() === '' || !Number.isSafeInteger(n) || n < min) {
    throw new LivemuxError('ERR_USAGE', `--${name}: expected an integer >= ${min} (${unit}), got "${text}"`);
  }
  return n;
}

runIfEntryPoint(import.meta.url, 'chat-backend', runChatBackend);
