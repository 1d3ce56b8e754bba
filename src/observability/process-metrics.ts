import { type Registry, collectDefaultMetrics } from 'prom-client';

/**
 * prom-client's three gauges that end in `_total` break the Prometheus naming rule `promtool check
 * metrics` enforces (`_total` is for counters). Their values are the sums of the `{type}` gauges
 * kept beside them (`nodejs_active_handles{type}`, ...), so nothing is lost without them.
 */
const MISNAMED = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'];

/** Node and process metrics (CPU, memory, event-loop lag, GC, handles) under `prefix`, promtool-clean. */
export function collectProcessMetrics(registry: Registry, prefix: string): void {
  collectDefaultMetrics({ register: registry, prefix });
  for (const name of MISNAMED) registry.removeSingleMetric(`${prefix}${name}`);
}
