/**
 * What every reference backend process does the same way (chat-backend, im-backend): serving its
 * handlers on a port, with an optional admin HTTP server (/metrics, /healthz, /readyz, /status), the
 * `{"event":"listening",…}` line on stdout, a periodic counters log, and a clean shutdown on
 * SIGTERM/SIGINT or when the parent that forked it (`livemux up`) is gone. The command line is parsed
 * by src/cli (one `*-backend-command.ts` each).
 */
import pino from 'pino';
import type { Registry } from 'prom-client';
import { startAdminServer, type AdminServer } from '../../observability/admin-server.js';
import { LivemuxError } from '../../protocol/errors.js';
import { untilStop } from '../../util/signals.js';
import { createBackendServer, type BackendHandlers } from './backend-server.js';

/** The options every backend process takes, parsed and range-checked by its CLI command. */
export interface CommonBackendArgs {
  host: string;
  /** 0 picks a free port. */
  port: number;
  adminHost: string;
  /** Undefined: no admin server. */
  adminPort: number | undefined;
  /** Undefined: the in-memory store. */
  redis: string | undefined;
  logLevel: string;
}

/** One backend, as its process serves it. */
export interface ServedBackend {
  /** The process name in logs and errors, e.g. "chat backend". */
  readonly name: string;
  readonly args: CommonBackendArgs;
  readonly logger: pino.Logger;
  readonly handlers: BackendHandlers;
  /** Read by /metrics. */
  readonly metrics: { readonly registry: Registry };
  /** What /status answers. */
  status(): object;
  /** Counters logged every `statsIntervalMs` when they changed, and once at shutdown. */
  counters(): object;
  /** Releases the backend (its timers, stores) after the server closed. */
  close(): Promise<void>;
}

const STATS_LOG_INTERVAL_MS = 60_000;

/**
 * Serves `backend` until SIGTERM/SIGINT (or its parent is gone: src/util/signals.ts) and resolves
 * after a clean close. Rejects when the port cannot be bound, or with a LivemuxError (ERR_USAGE) when
 * the admin port cannot, after releasing the backend.
 */
export async function serveBackend(backend: ServedBackend): Promise<void> {
  const { args: common, logger, name } = backend;
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
  const reason = await untilStop();
  clearInterval(statsTimer);
  logger.info({ reason, counters: backend.counters() }, `${name}: shutting down`);
  ready = false;
  await listening.close();
  await admin?.close();
  await backend.close();
}
