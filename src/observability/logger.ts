import { hostname } from 'node:os';
import { pino, type DestinationStream, type Logger } from 'pino';

/** Settings of the process logger. */
export interface LoggerOptions {
  /** pino level name: trace, debug, info, warn, error, fatal or silent. */
  level: string;
  /** Stamped on every line as `proxy`, so lines from many proxies can be told apart once collected. */
  proxyId?: string;
  /** Stamped as `name` by processes that are not the proxy (e.g. "echo-backend"). */
  name?: string;
}

/**
 * Field names of the per-connection and per-session context carried by child loggers: pass one to
 * `logger.child(context satisfies LogContext)`. One spelling everywhere keeps log queries simple.
 */
export interface LogContext {
  /** Connection id. */
  conn?: string;
  /** Authenticated user id (the token's `sub`). */
  user?: string;
  /** Client-chosen session id. */
  session?: number;
}

/**
 * Creates the process logger: one JSON object per line on stdout (or `destination`, for tests),
 * ISO timestamps, the level as its name. stdout is written synchronously (pino's default), so the
 * last lines before a crash or `process.exit` are not lost. Tokens and secrets are redacted
 * wherever a caller logs them by accident: logs travel beyond the proxy's trust boundary.
 */
export function createLogger(options: LoggerOptions, destination?: DestinationStream): Logger {
  const settings = {
    level: options.level,
    base: { name: options.name, proxy: options.proxyId, pid: process.pid, host: hostname() },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label: string) => ({ level: label }) },
    redact: { paths: ['token', '*.token', 'jwtSecret', '*.jwtSecret'], censor: '[redacted]' },
  };
  return destination ? pino(settings, destination) : pino(settings);
}
