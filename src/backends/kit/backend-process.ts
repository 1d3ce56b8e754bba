/**
 * What every reference backend process does the same way (chat-backend, im-backend): the common
 * command-line flags, checked into typed values with usage errors that name the flag; then serving
 * its handlers on a port, with an optional admin HTTP server (/metrics, /healthz, /readyz, /status),
 * the `{"event":"listening",…}` line on stdout, a periodic counters log, and a clean shutdown on
 * SIGTERM/SIGINT.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import pino from 'pino';
import { startAdminServer, type AdminServer } from '../../observability/admin-server.js';
import { LivemuxError } from '../../protocol/errors.js';
import { untilSignal } from '../../util/signals.js';
import { createBackendServer, type BackendHandlers } from './backend-server.js';

/** The flags every backend process takes. */
export interface CommonBackendArgs {
  readonly host: string;
  readonly port: number;
  readonly adminHost: string;
  /** Undefined: no admin server. */
  readonly adminPort: number | undefined;
  /** Undefined: the in-memory store. */
  readonly redis: string | undefined;
  readonly logLevel: string;
}

type OptionValues = Record<string, string | undefined>;
type StringOptions = Record<string, { type: 'string' }>;

const DEFAULT_HOST = '127.0.0.1';
const COMMON_OPTIONS: StringOptions = {
  host: { type: 'string' },
  port: { type: 'string' },
  'admin-host': { type: 'string' },
  'admin-port': { type: 'string' },
  redis: { type: 'string' },
  'log-level': { type: 'string' },
};

/**
 * Parses `argv` with the common flags plus `extra` (all string-valued); unknown flags and positionals
 * are usage errors (LivemuxError ERR_USAGE). Returns the common values and the raw values of `extra`.
 */
export function parseBackendArgs(argv: string[], extra: StringOptions, defaultPort: number): { common: CommonBackendArgs; values: OptionValues } {
  let values: OptionValues;
  try {
    const config: ParseArgsConfig = { args: argv, options: { ...COMMON_OPTIONS, ...extra }, strict: true };
    ({ values } = parseArgs(config) as { values: OptionValues });
  } catch (err) {
    throw new LivemuxError('ERR_USAGE', (err as Error).message);
  }
  return {
    common: {
      host: values.host ?? DEFAULT_HOST,
      port: parsePort(values, 'port') ?? defaultPort,
      adminHost: values['admin-host'] ?? DEFAULT_HOST,
      adminPort: parsePort(values, 'admin-port'),
      redis: values.redis,
      logLevel: values['log-level'] ?? 'info',
    },
    values,
  };
}

/** A port option (0 = any free port), or undefined when absent. */
export function parsePort(values: OptionValues, name: string): number | undefined {
  const text = values[name];
  if (text === undefined) return undefined;
  const port = Number(text);
  if (text.trim() === '' || !Number.isInteger(port) || port < 0 || port > 65_535) {
    throw new LivemuxError('ERR_USAGE', `--${name}: expected an integer 0..65535, got "${text}"`);
  }
  return port;
}

/** A positive number option (a rate), or undefined when absent; `unit` names what it counts in the error. */
export function parseRate(values: OptionValues, name: string, unit = 'messages/s'): number | undefined {
  const text = values[name];
  if (text === undefined) return undefined;
  const rate = Number(text);
  if (!(Number.isFinite(rate) && rate > 0)) throw new LivemuxError('ERR_USAGE', `--${name}: expected a positive number of ${unit}, got "${text}"`);
  return rate;
}

/** A whole-number option of at least `min` (`unit` names what it counts in the error), or undefined when absent. */
export function parseInteger(values: OptionValues, name: string, min: number, unit: string): number | undefined {
  const text = values[name];
  if (text === undefined) return undefined;
  const n = Number(text);
  if (text.trim() === '' || !Number.isSafeInteger(n) || n < min) {
    throw new LivemuxError('ERR_USAGE', `--${name}: expected an integer >= ${min} (${unit}), got "${text}"`);
  }
  return n;
}

/** One backend, as its process serves it. */
export interface ServedBackend {
  /** The process name in logs and errors, e.g. "chat backend". */
  readonly name: string;
  readonly common: CommonBackendArgs;
  readonly logger: pino.Logger;
  readonly handlers: BackendHandlers;
  /** Read by /metrics. */
  readonly metrics: { readonly registry: import('prom-client').Registry };
  /** What /status answers. */
  status(): object;
  /** Counters logged every `statsIntervalMs` when they changed, and once at shutdown. */
  counters(): object;
  /** Releases the backend (its timers, stores) after the server closed. */
  close(): Promise<void>;
}

const STATS_LOG_INTERVAL_MS = 60_000;

/**
 * Serves `backend` until SIGTERM/SIGINT and resolves with the exit status (0 after a clean close).
 * Rejects with a LivemuxError (ERR_USAGE) when a port cannot be bound, after releasing the backend.
 */
export async function serveBackend(backend: ServedBackend): Promise<number> {
  const { common, logger, name } = backend;
  let listening;
  try {
    listening = await createBackendServer(backend.handlers, { logger }).listen(common.host, common.port);
  } catch (err) {
    await backend.close();
    throw err;
  }
  let ready = true;
  let admin: AdminServer | null = null;
  if (common.adminPort !== undefined) {
    try {
      admin = await startAdminServer({ host: common.adminHost, port: common.adminPort, metrics: backend.metrics, isReady: () => ready, status: () => backend.status() });
    } catch (err) {
      await listening.close();
      await backend.close();
      throw new LivemuxError('ERR_USAGE', `--admin-port: cannot listen on ${common.adminHost}:${common.adminPort} (${(err as Error).message})`);
    }
  }
  const adminPort = admin === null ? {} : { adminPort: admin.port };
  process.stdout.write(`${JSON.stringify({ event: 'listening', port: listening.port, ...adminPort })}\n`);
  let lastCounters = '';
  const statsTimer = setInterval(() => {
    const now = JSON.stringify(backend.counters());
    if (now !== lastCounters) logger.info({ counters: backend.counters() }, `${name}: counters`);
    lastCounters = now;
  }, STATS_LOG_INTERVAL_MS);
  statsTimer.unref();
  const signal = await untilSignal();
  clearInterval(statsTimer);
  logger.info({ signal, counters: backend.counters() }, `${name}: shutting down`);
  ready = false;
  await listening.close();
  await admin?.close();
  await backend.close();
  return 0;
}
