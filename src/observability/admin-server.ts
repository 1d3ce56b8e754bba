import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Metrics } from './metrics.js';
import { STATUS_PAGE } from './status-page.js';

/** Runtime control of a process through its admin port (Envoy's admin, in small). */
export interface AdminControl {
  /** The process logger: /log-level reads and sets its level, which its child loggers follow. */
  readonly logger: { level: string };
  /** The effective configuration with every secret replaced by "[redacted]". */
  config(): object;
  /** Starts a graceful drain (GOAWAY to every client, no new connections) and returns at once. */
  drain(): void;
}

/** What the admin server exposes. */
export interface AdminServerOptions {
  host: string;
  /** 0 picks a free port (tests); the bound port is returned. */
  port: number;
  /** Only its registry is read: the proxy's Metrics, or a Chat backend's ChatMetrics. */
  metrics: Pick<Metrics, 'registry'>;
  /** Readiness for /readyz: false while starting, draining, or with no backend reachable. */
  isReady: () => boolean;
  /** Live state for /status; without it /status is 404. */
  status?: () => object | Promise<object>;
  /** Runtime control endpoints; without it they are 404. */
  control?: AdminControl;
}

/** A running admin server. */
export interface AdminServer {
  readonly port: number;
  /** Stops listening and drops open keep-alive connections, so shutdown never waits on a scraper. */
  close(): Promise<void>;
}

const LOG_LEVELS = new Set(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']);

interface Reply {
  status: number;
  type: string;
  body: string;
  /** For 405: the methods the path takes. */
  allow?: string;
}

type Handler = (query: URLSearchParams) => Reply | Promise<Reply>;

/**
 * Starts the operator HTTP endpoint. It has NO authentication: anyone who reaches it can drain the
 * process or change its log level. Bind it to loopback (the default) or a private interface.
 *   GET  /metrics            Prometheus text format
 *   GET  /healthz            200 "ok" while the process runs (liveness)
 *   GET  /readyz             200 "ready" when `isReady()` and not failed on purpose, else 503
 *   GET  /status             JSON of `status()`
 *   GET  /                   the status page (HTML; reads /status and /metrics)
 * With `control`:
 *   GET  /config             the effective configuration, secrets redacted
 *   GET  /log-level          {"level": ...}
 *   POST /log-level?level=L  sets the log level (trace, debug, info, warn, error, fatal, silent)
 *   POST /healthcheck/fail   /readyz answers 503 from now on (take the process out before maintenance)
 *   POST /healthcheck/ok     undoes it
 *   POST /drain              starts a graceful drain
 * Anything else is 404; another method on a known path is 405.
 */
export async function startAdminServer(options: AdminServerOptions): Promise<AdminServer> {
  let failedOnPurpose = false;
  const get: Record<string, Handler> = {
    '/metrics': async () => text(200, await options.metrics.registry.metrics(), options.metrics.registry.contentType),
    '/healthz': () => text(200, 'ok\n'),
    '/readyz': () => {
      if (failedOnPurpose) return text(503, 'not ready: failed on purpose (POST /healthcheck/ok to undo)\n');
      return options.isReady() ? text(200, 'ready\n') : text(503, 'not ready\n');
    },
  };
  const post: Record<string, Handler> = {};
  const status = options.status;
  if (status) {
    get['/status'] = async () => json(200, options.control ? { ...(await status()), readinessFailedOnPurpose: failedOnPurpose } : await status());
    get['/'] = () => text(200, STATUS_PAGE, 'text/html; charset=utf-8');
  }
  const control = options.control;
  if (control) {
    get['/config'] = () => json(200, control.config());
    get['/log-level'] = () => json(200, { level: control.logger.level });
    post['/log-level'] = (query) => {
      const level = query.get('level') ?? '';
      if (!LOG_LEVELS.has(level)) return text(400, `level: expected one of ${[...LOG_LEVELS].join(', ')}, got "${level}"\n`);
      const previous = control.logger.level;
      control.logger.level = level;
      return json(200, { level, previous });
    };
    post['/healthcheck/fail'] = () => {
      failedOnPurpose = true;
      return text(200, 'readiness now fails on purpose: /readyz answers 503\n');
    };
    post['/healthcheck/ok'] = () => {
      failedOnPurpose = false;
      return text(200, 'readiness no longer fails on purpose\n');
    };
    post['/drain'] = () => {
      control.drain();
      return text(202, 'draining: GOAWAY sent to every client, no new connections; /status shows what remains\n');
    };
  }

  const server = createServer((req, res) => {
    handle(get, post, req)
      .then((reply) => send(res, reply))
      .catch((err: unknown) => {
        if (!res.headersSent) send(res, text(500, `error: ${err instanceof Error ? err.message : String(err)}\n`));
        else res.destroy();
      });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        server.closeAllConnections();
      }),
  };
}

async function handle(get: Record<string, Handler>, post: Record<string, Handler>, req: IncomingMessage): Promise<Reply> {
  const url = new URL(req.url ?? '/', 'http://admin');
  const path = url.pathname;
  const method = req.method === 'HEAD' ? 'GET' : req.method;
  const table = method === 'GET' ? get : method === 'POST' ? post : null;
  const handler = table && Object.hasOwn(table, path) ? table[path] : undefined;
  if (handler) return handler(url.searchParams);
  const allowed = [Object.hasOwn(get, path) ? 'GET, HEAD' : '', Object.hasOwn(post, path) ? 'POST' : ''].filter(Boolean).join(', ');
  if (allowed) return { ...text(405, 'method not allowed\n'), allow: allowed };
  return text(404, 'not found\n');
}

const TEXT = 'text/plain; charset=utf-8';

function text(status: number, body: string, type = TEXT): Reply {
  return { status, type, body };
}

function json(status: number, body: object): Reply {
  return { status, type: 'application/json', body: JSON.stringify(body) };
}

function send(res: ServerResponse, reply: Reply): void {
  res.writeHead(reply.status, {
    'content-type': reply.type,
    'cache-control': 'no-store',
    ...(reply.allow === undefined ? {} : { allow: reply.allow }),
  });
  res.end(reply.body);
}
