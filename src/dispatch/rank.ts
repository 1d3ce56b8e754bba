import type { ProxyRecord } from './proxy-record.js';

/** How proxies are ordered for a client (docs/dispatch.md). */
export interface RankOptions {
  /** Proxies whose event loop lags more than this go after every other one. */
  maxLagMs: number;
  /**
   * Connections this dispatcher has handed each proxy (by id) since its records were read: counted as
   * load, so a burst of clients between two heartbeats spreads instead of all choosing the same proxy.
   */
  assigned?: ReadonlyMap<string, number>;
}

/**
 * Orders a cluster's proxies for a client to try: draining proxies are left out; proxies whose event
 * loop lags past `maxLagMs` come last (overloaded, but better than no address); the rest come by
 * least load first, load being connections per worker, counting what this dispatcher assigned since
 * the records were read. Ties keep their id order, so an answer is deterministic for a given state.
 */
export function rankProxies(records: readonly ProxyRecord[], options: RankOptions): ProxyRecord[] {
  const load = (r: ProxyRecord): number => (r.connections + (options.assigned?.get(r.id) ?? 0)) / r.workers;
  const lagging = (r: ProxyRecord): number => (r.eventLoopLagMs > options.maxLagMs ? 1 : 0);
  return records
    .filter((r) => !r.draining)
    .sort((a, b) => lagging(a) - lagging(b) || load(a) - load(b) || a.eventLoopLagMs - b.eventLoopLagMs || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}
