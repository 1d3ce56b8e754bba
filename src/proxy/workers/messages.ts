/**
 * What the primary of `livemux start --workers` and its workers say to each other over the cluster
 * IPC channel. Every message is an object with a `livemux` tag, so prom-client's own messages (metrics
 * aggregation) share the channel without confusion.
 */

/** What the primary may ask a worker for: its admin `/status` or `/config` document. */
export type WorkerQuestion = 'status' | 'config';

/** Primary → worker. A `conn` message carries the client socket as its handle. */
export type ToWorker =
  | { livemux: 'conn' }
  | { livemux: 'ask'; request: number; what: WorkerQuestion }
  | { livemux: 'reload'; trigger: string }
  | { livemux: 'log-level'; level: string }
  /** Graceful drain (GOAWAY to every client); the worker stays up until `stop`. */
  | { livemux: 'drain' }
  /** Drain (if not yet), close and exit 0. */
  | { livemux: 'stop' };

/** Worker → primary. */
export type FromWorker =
  /** The proxy is up (backend links opened) and takes connections. */
  | { livemux: 'ready'; proxyId: string }
  /** Sent every LOAD_REPORT_MS: what the primary balances on and reports to dispatch. */
  | { livemux: 'load'; connections: number; received: number; ready: boolean; eventLoopLagMs: number }
  | { livemux: 'answer'; request: number; body: object };

/** How often a worker reports its load. */
export const LOAD_REPORT_MS = 500;

/** Environment variables the primary sets for each worker it forks. */
export const WORKER_ENV = {
  /** 0-based slot of the worker; a replacement takes the slot of the worker it replaces. */
  index: 'LIVEMUX_WORKER_INDEX',
  /** The worker's proxy id (the primary's, plus the slot, plus the replacement count). */
  proxyId: 'LIVEMUX_WORKER_PROXY_ID',
  /** The log level in effect (a replacement starts with what /log-level last set, not the file's). */
  logLevel: 'LIVEMUX_WORKER_LOG_LEVEL',
} as const;

/** True for messages of this protocol (and not prom-client's, which share the channel). */
export function isLivemuxMessage(message: unknown): message is { livemux: string } {
  return typeof message === 'object' && message !== null && typeof (message as { livemux?: unknown }).livemux === 'string';
}
