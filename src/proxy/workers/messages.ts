/**
 * What the primary of `livemux start --workers` and its workers say to each other over the cluster
 * IPC channel. Every message is an object with a `livemux` tag, so prom-client's own messages (metrics
 * aggregation) share the channel without confusion.
 */

/** Primary → worker. A `conn` message carries the client socket as its handle. */
export type ToWorker =
  | { livemux: 'conn' }
  | { livemux: 'status'; request: number }
  | { livemux: 'reload'; trigger: string }
  | { livemux: 'drain' };

/** Worker → primary. */
export type FromWorker =
  /** The proxy is up (backend links opened) and takes connections. */
  | { livemux: 'ready'; proxyId: string }
  /** Sent every LOAD_REPORT_MS: what the primary balances on and reports to dispatch. */
  | { livemux: 'load'; connections: number; received: number; ready: boolean; eventLoopLagMs: number }
  | { livemux: 'status'; request: number; status: object };

/** How often a worker reports its load. */
export const LOAD_REPORT_MS = 500;

/** Environment variables the primary sets for each worker it forks. */
export const WORKER_ENV = {
  /** 0-based slot of the worker; a replacement takes the slot of the worker it replaces. */
  index: 'LIVEMUX_WORKER_INDEX',
  /** The worker's proxy id (the primary's, plus the slot, plus the replacement count). */
  proxyId: 'LIVEMUX_WORKER_PROXY_ID',
} as const;

/** True for messages of this protocol (and not prom-client's, which share the channel). */
export function isLivemuxMessage(message: unknown): message is { livemux: string } {
  return typeof message === 'object' && message !== null && typeof (message as { livemux?: unknown }).livemux === 'string';
}
