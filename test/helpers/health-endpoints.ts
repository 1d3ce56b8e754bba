import type { EndpointHealthSettings, MonitoredEndpoint } from '../../src/proxy/upstream/endpoint-health.js';
import type { Metrics } from '../../src/observability/metrics.js';

/** Per-section overrides of a base set of health settings. */
export type HealthOverrides = { [K in keyof EndpointHealthSettings]?: Partial<EndpointHealthSettings[K]> };

/** An endpoint as the health monitor sees it: `base` settings with `overrides` applied section by section. */
export function monitoredEndpoint(
  address: string,
  protocol: 'grpc' | 'tcp',
  base: EndpointHealthSettings,
  overrides: HealthOverrides = {},
): MonitoredEndpoint {
  return {
    address,
    protocol,
    poolConfig: {
      healthCheck: { ...base.healthCheck, ...overrides.healthCheck },
      circuitBreaker: { ...base.circuitBreaker, ...overrides.circuitBreaker },
      outlierDetection: { ...base.outlierDetection, ...overrides.outlierDetection },
    },
  };
}

/** The value of one sample line in Prometheus text, or undefined. */
export async function sample(metrics: Metrics, series: string): Promise<number | undefined> {
  const text = await metrics.registry.metrics();
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}
