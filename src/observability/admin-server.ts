import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Metrics } from './metrics.js';

/** What the admin server exposes. */
export interface AdminServerOptions {
  host: string;
  /** 0 picks a free port (tests); the bound port is returned. */
  port: number;
  /** Only its registry is read: the proxy's Metrics, or a Chat backend's ChatMetrics. */
  metrics: Pick<Metrics, 'registry'>;
  /** Readiness for /readyz: false while starting, draining, or with no backend reachable. */
  isReady: () => boolean;
  /** Live state for /status (it may have to ask other processes); without it /status is 404. */
  status?: () => object | Promise<object>;
  /** More GET paths, for a process whose service is HTTP itself (the dispatcher's /v1/dispatch). */
  routes?: Record<string, AdminRoute>;
}

/** A GET handler: answers on `res` (see {@link send}); `query` is the request's query string. */
export type AdminRoute = (res: ServerResponse, query: URLSearchParams) => Promise<void> | void;

/** A running admin server. */
export interface AdminServer {
  readonly port: number;
  /** Stops listening and drops open keep-alive connections, so shutdown never waits on a scraper. */
  close(): Promise<void>;
}

/**
 * Starts the operator HTTP endpoint (bind it to a private interface: it has no authentication).
 *   GET /metrics  Prometheus text format
 *   GET /healthz  200 "ok" while the process runs (liveness)
 *   GET /readyz   200 "ready" when `isReady()`, else 503 "not ready" (load balancer readiness)
 *   GET /status   JSON of `status()`
 * Anything else is 404; other methods on these paths are 405.
 */
export async function startAdminServer(options: AdminServerOptions): Promise<AdminServer> {
  const routes: Record<string, AdminRoute> = {
    ...options.routes,
    '/metrics': async (res) => {
      const body = await options.metrics.registry.metrics();
      send(res, 200, options.metrics.registry.contentType, body);
    },
    '/healthz': (res) => send(res, 200, TEXT, 'ok\n'),
    '/readyz': (res) => (options.isReady() ? send(res, 200, TEXT, 'ready\n') : send(res, 503, TEXT, 'not ready\n')),
  };
  const status = options.status;
  if (status) routes['/status'] = async (res) => send(res, 200, 'application/json', JSON.stringify(await status()));

  const server = createServer((req, res) => {
    handle(routes, req, res).catch((err: unknown) => {
      if (!res.headersSent) send(res, 500, TEXT, `error: ${err instanceof Error ? err.message : String(err)}\n`);
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

const TEXT = 'text/plain; charset=utf-8';

async function handle(routes: Record<string, AdminRoute>, req: IncomingMessage, res: ServerResponse): Promise<void> {
  // Only the path selects a handler; the query string is the handler's to read or ignore.
  const url = new URL(req.url ?? '/', 'http://admin');
  const path = url.pathname;
  const handler = Object.hasOwn(routes, path) ? routes[path] : undefined;
  if (!handler) return send(res, 404, TEXT, 'not found\n');
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.setHeader('allow', 'GET, HEAD');
    return send(res, 405, TEXT, 'method not allowed\n');
  }
  await handler(res, url.searchParams);
}

/** Writes a whole response, never cached. */
export function send(res: ServerResponse, status: number, contentType: string, body: string): void {
  res.writeHead(status, { 'content-type': contentType, 'cache-control': 'no-store' });
  res.end(body);
}
