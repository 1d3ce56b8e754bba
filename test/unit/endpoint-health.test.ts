import net from 'node:net';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import {
  EndpointHealthMonitor,
  type EndpointHealthSettings,
  type MonitoredEndpoint,
} from '../../src/proxy/upstream/endpoint-health.js';
import { createMetrics, type Metrics } from '../../src/observability/metrics.js';
import { type HealthOverrides, monitoredEndpoint, sample } from '../helpers/health-endpoints.js';

/**
 * Passive ejection, the breaker's error percentage, transitions, reconcile and metrics. Periodic checks
 * are off here (interval 0) so every transition comes from the test's own reports; the half-open probe
 * is a real TCP connect to a real listener on 127.0.0.1. Active checks over gRPC and TCP are in
 * test/integration/endpoint-health.test.ts.
 */

const QUIET: EndpointHealthSettings = {
  healthCheck: { intervalMs: 0, timeoutMs: 500, unhealthyThreshold: 2, healthyThreshold: 1 },
  circuitBreaker: { errorThresholdPercentage: 50, volumeThreshold: 1_000, resetTimeoutMs: 60_000, rollingWindowMs: 10_000 },
  outlierDetection: { consecutiveFailures: 3 },
};

function endpoint(address: string, overrides: HealthOverrides = {}): MonitoredEndpoint {
  return monitoredEndpoint(address, 'tcp', QUIET, overrides);
}

async function waitFor(what: string, cond: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Lets opossum settle the outcome promises fired by reports (they resolve in microtasks). */
const settle = (): Promise<void> => new Promise((r) => setImmediate(r));

let monitor: EndpointHealthMonitor;
let metrics: Metrics;
let changes: [string, boolean][];
const servers: net.Server[] = [];

function newMonitor(): EndpointHealthMonitor {
  metrics = createMetrics();
  monitor = new EndpointHealthMonitor({ logger: pino({ level: 'silent' }), metrics });
  changes = [];
  monitor.onChange((ep, healthy) => changes.push([ep, healthy]));
  return monitor;
}

async function listener(): Promise<string> {
  const server = net.createServer((socket) => socket.destroy());
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `127.0.0.1:${(server.address() as net.AddressInfo).port}`;
}

afterEach(async () => {
  monitor?.close();
  await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
});

describe('EndpointHealthMonitor: passive ejection', () => {
  it('opens the breaker at exactly consecutive_failures reported failures, and says so once', async () => {
    newMonitor().reconcile([endpoint('127.0.0.1:7001')]);
    expect(monitor.isHealthy('127.0.0.1:7001')).toBe(true);
    monitor.reportFailure('127.0.0.1:7001', 'stream lost');
    monitor.reportFailure('127.0.0.1:7001', 'stream lost');
    await settle();
    expect(monitor.isHealthy('127.0.0.1:7001')).toBe(true);
    expect(changes).toEqual([]);
    monitor.reportFailure('127.0.0.1:7001', 'stream lost');
    // Synchronous: the proxy's next pick already avoids it.
    expect(monitor.isHealthy('127.0.0.1:7001')).toBe(false);
    monitor.reportFailure('127.0.0.1:7001', 'stream lost');
    await settle();
    expect(changes).toEqual([['127.0.0.1:7001', false]]);
    expect(monitor.snapshot()['127.0.0.1:7001']).toMatchObject({ healthy: false, breaker: 'open', consecutiveFailures: 4 });
  });

  it('counts failures as consecutive: a reported success resets the count', async () => {
    newMonitor().reconcile([endpoint('127.0.0.1:7001')]);
    for (const ok of [false, false, true, false, false, true, false, false]) {
      if (ok) monitor.reportSuccess('127.0.0.1:7001');
      else monitor.reportFailure('127.0.0.1:7001', 'connect refused');
    }
    await settle();
    expect(monitor.isHealthy('127.0.0.1:7001')).toBe(true);
    expect(monitor.snapshot()['127.0.0.1:7001']!.consecutiveFailures).toBe(2);
    expect(changes).toEqual([]);
  });

  it('never ejects when consecutive_failures is 0', async () => {
    newMonitor().reconcile([endpoint('127.0.0.1:7001', { outlierDetection: { consecutiveFailures: 0 } })]);
    for (let i = 0; i < 50; i++) monitor.reportFailure('127.0.0.1:7001', 'x');
    await settle();
    expect(monitor.isHealthy('127.0.0.1:7001')).toBe(true);
  });

  it('ignores reports about endpoints it does not monitor, and calls them healthy', () => {
    newMonitor().reconcile([endpoint('127.0.0.1:7001')]);
    for (let i = 0; i < 10; i++) monitor.reportFailure('127.0.0.1:7999', 'x');
    expect(monitor.isHealthy('127.0.0.1:7999')).toBe(true);
    expect(Object.keys(monitor.snapshot())).toEqual(['127.0.0.1:7001']);
  });
});

describe('EndpointHealthMonitor: error percentage (opossum)', () => {
  it('opens once the window holds volume_threshold outcomes with more than error_threshold_percentage failures', async () => {
    newMonitor().reconcile([
      endpoint('127.0.0.1:7001', {
        circuitBreaker: { volumeThreshold: 4, errorThresholdPercentage: 50 },
        outlierDetection: { consecutiveFailures: 0 },
      }),
    ]);
    // 1 success, then failures: 1/2 and 2/3 are below the volume threshold; 3/4 = 75 % > 50 % opens.
    monitor.reportSuccess('127.0.0.1:7001');
    monitor.reportFailure('127.0.0.1:7001', 'x');
    monitor.reportFailure('127.0.0.1:7001', 'x');
    await settle();
    expect(monitor.snapshot()['127.0.0.1:7001']!.breaker).toBe('closed');
    monitor.reportFailure('127.0.0.1:7001', 'x');
    await settle();
    expect(monitor.snapshot()['127.0.0.1:7001']!.breaker).toBe('open');
    expect(changes).toEqual([['127.0.0.1:7001', false]]);
  });

  it('stays closed at exactly the threshold percentage (opossum opens above it)', async () => {
    newMonitor().reconcile([
      endpoint('127.0.0.1:7001', {
        circuitBreaker: { volumeThreshold: 4, errorThresholdPercentage: 50 },
        outlierDetection: { consecutiveFailures: 0 },
      }),
    ]);
    for (const ok of [true, false, true, false]) {
      if (ok) monitor.reportSuccess('127.0.0.1:7001');
      else monitor.reportFailure('127.0.0.1:7001', 'x');
    }
    await settle();
    expect(monitor.isHealthy('127.0.0.1:7001')).toBe(true);
  });
});

describe('EndpointHealthMonitor: half-open probe', () => {
  it('closes the breaker when the probe (a TCP connect) succeeds after reset_timeout_ms', async () => {
    const address = await listener();
    newMonitor().reconcile([
      endpoint(address, { circuitBreaker: { resetTimeoutMs: 100 }, outlierDetection: { consecutiveFailures: 1 } }),
    ]);
    const ejectedAt = Date.now();
    monitor.reportFailure(address, 'stream lost');
    expect(monitor.snapshot()[address]!.breaker).toBe('open');
    await waitFor('the breaker to close', () => monitor.isHealthy(address));
    expect(Date.now() - ejectedAt).toBeGreaterThanOrEqual(95);
    expect(changes).toEqual([
      [address, false],
      [address, true],
    ]);
    expect(monitor.snapshot()[address]).toMatchObject({ breaker: 'closed', lastCheckResult: 'ok', consecutiveFailures: 0 });
    // Exactly one check ran: the probe (periodic checks are off).
    expect(await sample(metrics, `livemux_health_checks_total{endpoint="${address}",result="ok"}`)).toBe(1);
  });
});

describe('EndpointHealthMonitor: reconcile and close', () => {
  it('adds and removes endpoints; a removed endpoint leaves no state, metrics or timers behind', async () => {
    newMonitor().reconcile([endpoint('127.0.0.1:7001'), endpoint('127.0.0.1:7002')]);
    expect(Object.keys(monitor.snapshot()).sort()).toEqual(['127.0.0.1:7001', '127.0.0.1:7002']);
    expect(await sample(metrics, 'livemux_endpoint_healthy{endpoint="127.0.0.1:7002"}')).toBe(1);
    expect(await sample(metrics, 'livemux_endpoint_breaker_state{endpoint="127.0.0.1:7002",state="closed"}')).toBe(1);
    for (let i = 0; i < 3; i++) monitor.reportFailure('127.0.0.1:7002', 'x');
    expect(monitor.isHealthy('127.0.0.1:7002')).toBe(false);

    monitor.reconcile([endpoint('127.0.0.1:7001'), endpoint('127.0.0.1:7003')]);
    expect(Object.keys(monitor.snapshot()).sort()).toEqual(['127.0.0.1:7001', '127.0.0.1:7003']);
    expect(await sample(metrics, 'livemux_endpoint_healthy{endpoint="127.0.0.1:7002"}')).toBeUndefined();
    expect(await sample(metrics, 'livemux_endpoint_breaker_state{endpoint="127.0.0.1:7002",state="open"}')).toBeUndefined();
    expect(monitor.isHealthy('127.0.0.1:7002')).toBe(true);
    // Re-adding starts afresh.
    monitor.reconcile([endpoint('127.0.0.1:7002')]);
    expect(monitor.snapshot()['127.0.0.1:7002']).toMatchObject({ healthy: true, breaker: 'closed', consecutiveFailures: 0 });
    // Removal and re-adding are not health transitions.
    expect(changes).toEqual([['127.0.0.1:7002', false]]);
  });

  it('keeps the first spec of an address named twice', () => {
    newMonitor().reconcile([
      endpoint('127.0.0.1:7001', { outlierDetection: { consecutiveFailures: 1 } }),
      endpoint('127.0.0.1:7001', { outlierDetection: { consecutiveFailures: 100 } }),
    ]);
    monitor.reportFailure('127.0.0.1:7001', 'x');
    expect(monitor.isHealthy('127.0.0.1:7001')).toBe(false);
  });

  it('applies changed settings: a new outlier threshold at once, a new breaker that stays open', async () => {
    newMonitor().reconcile([endpoint('127.0.0.1:7001'), endpoint('127.0.0.1:7002', { outlierDetection: { consecutiveFailures: 1 } })]);
    monitor.reportFailure('127.0.0.1:7001', 'x');
    monitor.reconcile([
      endpoint('127.0.0.1:7001', { outlierDetection: { consecutiveFailures: 2 } }),
      endpoint('127.0.0.1:7002', { outlierDetection: { consecutiveFailures: 1 } }),
    ]);
    monitor.reportFailure('127.0.0.1:7001', 'x');
    expect(monitor.isHealthy('127.0.0.1:7001')).toBe(false);

    monitor.reportFailure('127.0.0.1:7002', 'x');
    expect(monitor.isHealthy('127.0.0.1:7002')).toBe(false);
    monitor.reconcile([
      endpoint('127.0.0.1:7001', { outlierDetection: { consecutiveFailures: 2 } }),
      endpoint('127.0.0.1:7002', { outlierDetection: { consecutiveFailures: 1 }, circuitBreaker: { resetTimeoutMs: 30_000 } }),
    ]);
    expect(monitor.snapshot()['127.0.0.1:7002']!.breaker).toBe('open');
    expect(await sample(metrics, 'livemux_endpoint_breaker_state{endpoint="127.0.0.1:7002",state="open"}')).toBe(1);
    expect(await sample(metrics, 'livemux_endpoint_breaker_state{endpoint="127.0.0.1:7002",state="closed"}')).toBe(0);
    expect(changes).toEqual([
      ['127.0.0.1:7001', false],
      ['127.0.0.1:7002', false],
    ]);
  });

  it('close() forgets every endpoint and never calls onChange again', async () => {
    const address = await listener();
    newMonitor().reconcile([endpoint(address, { circuitBreaker: { resetTimeoutMs: 50 }, outlierDetection: { consecutiveFailures: 1 } })]);
    monitor.reportFailure(address, 'x');
    monitor.close();
    monitor.close();
    await new Promise((r) => setTimeout(r, 150));
    monitor.reportFailure(address, 'x');
    monitor.reconcile([endpoint(address)]);
    expect(monitor.snapshot()).toEqual({});
    expect(changes).toEqual([[address, false]]);
  });

  it('a listener that throws neither stops the others nor the monitor', () => {
    newMonitor().reconcile([endpoint('127.0.0.1:7001', { outlierDetection: { consecutiveFailures: 1 } })]);
    const seen: boolean[] = [];
    monitor.onChange(() => {
      throw new Error('listener bug (test)');
    });
    monitor.onChange((_ep, healthy) => seen.push(healthy));
    monitor.reportFailure('127.0.0.1:7001', 'x');
    expect(seen).toEqual([false]);
    expect(changes).toEqual([['127.0.0.1:7001', false]]);
  });
});

describe('EndpointHealthMonitor: metrics', () => {
  it('publishes breaker state and health per endpoint', async () => {
    newMonitor().reconcile([endpoint('127.0.0.1:7001', { outlierDetection: { consecutiveFailures: 1 } })]);
    const series = (state: string) => `livemux_endpoint_breaker_state{endpoint="127.0.0.1:7001",state="${state}"}`;
    expect(await sample(metrics, series('closed'))).toBe(1);
    expect(await sample(metrics, series('open'))).toBe(0);
    expect(await sample(metrics, series('half_open'))).toBe(0);
    monitor.reportFailure('127.0.0.1:7001', 'x');
    expect(await sample(metrics, series('closed'))).toBe(0);
    expect(await sample(metrics, series('open'))).toBe(1);
    expect(await sample(metrics, 'livemux_endpoint_healthy{endpoint="127.0.0.1:7001"}')).toBe(0);
  });
});
