import net from 'node:net';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { createBackendServer, type ListeningBackend } from '../../src/backends/kit/backend-server.js';
import { createEchoHandlers } from '../../src/backends/echo/echo-backend.js';
import {
  EndpointHealthMonitor,
  type EndpointHealthSettings,
  type EndpointHealthStatus,
  type MonitoredEndpoint,
} from '../../src/proxy/upstream/endpoint-health.js';
import { ServingStatus } from '../../src/contract/health.js';
import { createMetrics, type Metrics } from '../../src/observability/metrics.js';
import { type HealthOverrides, monitoredEndpoint, sample } from '../helpers/health-endpoints.js';
import { freePort } from '../helpers/free-port.js';

/**
 * Active checks against real servers on 127.0.0.1: livemux backends (backend-server.ts serves
 * grpc.health.v1) for grpc pools, plain net servers for tcp pools. Backends are stopped and started
 * again on the same port to watch breakers open and half-open probes bring endpoints back.
 */

const FAST: EndpointHealthSettings = {
  // Answered checks take milliseconds; the timeout only bounds them, and on a loaded machine 300 ms
  // turned NOT_SERVING answers into timeouts. The silent-server test sets its own.
  healthCheck: { intervalMs: 40, timeoutMs: 3_000, unhealthyThreshold: 2, healthyThreshold: 2 },
  circuitBreaker: { errorThresholdPercentage: 50, volumeThreshold: 1_000, resetTimeoutMs: 60_000, rollingWindowMs: 10_000 },
  outlierDetection: { consecutiveFailures: 0 },
};

function endpoint(address: string, protocol: 'grpc' | 'tcp', overrides: HealthOverrides = {}): MonitoredEndpoint {
  return monitoredEndpoint(address, protocol, FAST, overrides);
}

async function waitFor(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

let monitor: EndpointHealthMonitor | undefined;
let metrics: Metrics;
let changes: [string, boolean][];
/** The endpoint's status at each transition, taken synchronously inside onChange. */
let atChange: EndpointHealthStatus[];
const backends: ListeningBackend[] = [];
const servers: net.Server[] = [];

function newMonitor(): EndpointHealthMonitor {
  metrics = createMetrics();
  const m = new EndpointHealthMonitor({ logger: pino({ level: 'silent' }), metrics });
  changes = [];
  atChange = [];
  m.onChange((ep, healthy) => {
    changes.push([ep, healthy]);
    atChange.push(m.snapshot()[ep]!);
  });
  monitor = m;
  return m;
}

async function startBackend(port = 0): Promise<ListeningBackend> {
  const backend = await createBackendServer(createEchoHandlers(), { closeGraceMs: 200 }).listen('127.0.0.1', port);
  backends.push(backend);
  return backend;
}

async function stopBackend(backend: ListeningBackend): Promise<void> {
  backends.splice(backends.indexOf(backend), 1);
  await backend.close();
}

const silentSockets = new Set<net.Socket>();

/**
 * A net server: accepting (and closing) connections, or accepting and never answering. Silent
 * sockets are destroyed at cleanup: grpc-js abandons a connection stuck before the HTTP/2 handshake
 * only at its own connect timeout (20 s), even after the channel was closed.
 */
async function tcpServer(mode: 'accept' | 'silent', port = 0): Promise<net.Server> {
  const server = net.createServer((socket) => {
    if (mode === 'accept') socket.destroy();
    else silentSockets.add(socket);
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return server;
}

async function closeServer(server: net.Server): Promise<void> {
  servers.splice(servers.indexOf(server), 1);
  await new Promise((r) => server.close(r));
}

const portOf = (server: net.Server): number => (server.address() as net.AddressInfo).port;

afterEach(async () => {
  monitor?.close();
  monitor = undefined;
  await Promise.all(backends.splice(0).map((b) => b.close()));
  for (const socket of silentSockets) socket.destroy();
  silentSockets.clear();
  await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
});

describe('grpc pools: grpc.health.v1 Check', () => {
  it('passes against a serving backend, fails on NOT_SERVING after unhealthy_threshold, recovers after healthy_threshold', async () => {
    const backend = await startBackend();
    const address = `127.0.0.1:${backend.port}`;
    newMonitor().reconcile([endpoint(address, 'grpc')]);
    const ok = `livemux_health_checks_total{endpoint="${address}",result="ok"}`;
    const fail = `livemux_health_checks_total{endpoint="${address}",result="fail"}`;
    await waitFor('three good checks', async () => ((await sample(metrics, ok)) ?? 0) >= 3);
    expect(monitor!.isHealthy(address)).toBe(true);

    backend.health.set('', ServingStatus.NOT_SERVING);
    await waitFor('the endpoint to turn unhealthy', () => !monitor!.isHealthy(address));
    expect(atChange[0]).toMatchObject({ healthy: false, breaker: 'closed', lastCheckResult: 'fail', consecutiveCheckFailures: 2 });
    expect(await sample(metrics, fail)).toBeGreaterThanOrEqual(2);
    expect(await sample(metrics, `livemux_endpoint_healthy{endpoint="${address}"}`)).toBe(0);

    backend.health.set('', ServingStatus.SERVING);
    await waitFor('the endpoint to recover', () => monitor!.isHealthy(address));
    expect(atChange[1]).toMatchObject({ healthy: true, lastCheckResult: 'ok', consecutiveCheckSuccesses: 2, consecutiveCheckFailures: 0 });
    expect(changes).toEqual([
      [address, false],
      [address, true],
    ]);
    expect(await sample(metrics, `livemux_endpoint_healthy{endpoint="${address}"}`)).toBe(1);
  });

  it('opens the breaker after failed checks when the backend dies, and the half-open probe closes it once it is back', async () => {
    const backend = await startBackend();
    const address = `127.0.0.1:${backend.port}`;
    // The breaker trips first (2 outcomes, > 50 % failed); the active threshold is out of reach.
    newMonitor().reconcile([
      endpoint(address, 'grpc', {
        healthCheck: { unhealthyThreshold: 1_000, healthyThreshold: 1 },
        circuitBreaker: { volumeThreshold: 4, resetTimeoutMs: 250 },
      }),
    ]);
    const ok = `livemux_health_checks_total{endpoint="${address}",result="ok"}`;
    await waitFor('two good checks', async () => ((await sample(metrics, ok)) ?? 0) >= 2);

    await stopBackend(backend);
    await waitFor('the breaker to open', () => monitor!.snapshot()[address]!.breaker === 'open');
    expect(monitor!.isHealthy(address)).toBe(false);
    expect(await sample(metrics, `livemux_endpoint_breaker_state{endpoint="${address}",state="open"}`)).toBe(1);
    // While open, no checks are sent: the count stands still between probes.
    const failed = (await sample(metrics, `livemux_health_checks_total{endpoint="${address}",result="fail"}`))!;
    expect(failed).toBeGreaterThanOrEqual(2);

    // A probe against the dead backend re-opens the breaker.
    await waitFor('a failed probe', async () =>
      ((await sample(metrics, `livemux_health_checks_total{endpoint="${address}",result="fail"}`)) ?? 0) > failed,
    );
    expect(monitor!.isHealthy(address)).toBe(false);

    await startBackend(Number(address.split(':')[1]));
    await waitFor('the probe to close the breaker', () => monitor!.isHealthy(address));
    expect(monitor!.snapshot()[address]).toMatchObject({ breaker: 'closed', lastCheckResult: 'ok' });
    expect(changes).toEqual([
      [address, false],
      [address, true],
    ]);
  });

  it('ejects on reported failures even while checks pass, and probes it back after reset_timeout_ms', async () => {
    const backend = await startBackend();
    const address = `127.0.0.1:${backend.port}`;
    newMonitor().reconcile([
      endpoint(address, 'grpc', {
        healthCheck: { intervalMs: 5_000 },
        circuitBreaker: { resetTimeoutMs: 200 },
        outlierDetection: { consecutiveFailures: 3 },
      }),
    ]);
    for (let i = 0; i < 3; i++) monitor!.reportFailure(address, 'backend stream lost');
    expect(monitor!.isHealthy(address)).toBe(false);
    expect(monitor!.snapshot()[address]!.breaker).toBe('open');
    await sleep(100);
    expect(monitor!.isHealthy(address)).toBe(false);
    // Well before the 5 s interval: the probe is sent as soon as the breaker is half-open.
    await waitFor('the probe to close the breaker', () => monitor!.isHealthy(address), 2_000);
    expect(changes).toEqual([
      [address, false],
      [address, true],
    ]);
    expect(monitor!.snapshot()[address]!.consecutiveFailures).toBe(0);
  });

  it('counts a backend that accepts TCP but never answers as a timeout', async () => {
    const server = await tcpServer('silent');
    const address = `127.0.0.1:${portOf(server)}`;
    newMonitor().reconcile([endpoint(address, 'grpc', { healthCheck: { timeoutMs: 150 } })]);
    await waitFor('the endpoint to turn unhealthy', () => !monitor!.isHealthy(address));
    expect(atChange[0]).toMatchObject({ lastCheckResult: 'timeout', consecutiveCheckFailures: 2 });
    expect(await sample(metrics, `livemux_health_checks_total{endpoint="${address}",result="timeout"}`)).toBeGreaterThanOrEqual(2);
    expect(await sample(metrics, `livemux_health_checks_total{endpoint="${address}",result="fail"}`)).toBeUndefined();
  });
});

describe('tcp pools: TCP connect checks', () => {
  it('marks an endpoint with nothing listening unhealthy after unhealthy_threshold checks', async () => {
    const address = `127.0.0.1:${await freePort()}`;
    newMonitor().reconcile([endpoint(address, 'tcp')]);
    expect(monitor!.isHealthy(address)).toBe(true);
    await waitFor('the endpoint to turn unhealthy', () => !monitor!.isHealthy(address));
    expect(atChange[0]).toMatchObject({ healthy: false, breaker: 'closed', lastCheckResult: 'fail', consecutiveCheckFailures: 2 });
    expect(await sample(metrics, `livemux_health_checks_total{endpoint="${address}",result="fail"}`)).toBeGreaterThanOrEqual(2);
    expect(await sample(metrics, `livemux_health_checks_total{endpoint="${address}",result="ok"}`)).toBeUndefined();
    expect(changes).toEqual([[address, false]]);
  });

  it('follows a service going away and coming back on the same port', async () => {
    let server = await tcpServer('accept');
    const port = portOf(server);
    const address = `127.0.0.1:${port}`;
    newMonitor().reconcile([endpoint(address, 'tcp')]);
    await waitFor('a good check', async () => ((await sample(metrics, `livemux_health_checks_total{endpoint="${address}",result="ok"}`)) ?? 0) >= 1);
    await closeServer(server);
    await waitFor('the endpoint to turn unhealthy', () => !monitor!.isHealthy(address));
    server = await tcpServer('accept', port);
    await waitFor('the endpoint to recover', () => monitor!.isHealthy(address));
    expect(changes).toEqual([
      [address, false],
      [address, true],
    ]);
  });
});

describe('reconcile with live checks', () => {
  it('starts checking added endpoints and stops checking removed ones', async () => {
    const a = await tcpServer('accept');
    const backend = await startBackend();
    const tcpAddress = `127.0.0.1:${portOf(a)}`;
    const grpcAddress = `127.0.0.1:${backend.port}`;
    newMonitor().reconcile([endpoint(tcpAddress, 'tcp')]);
    const okOf = (address: string) => `livemux_health_checks_total{endpoint="${address}",result="ok"}`;
    await waitFor('tcp checks', async () => ((await sample(metrics, okOf(tcpAddress))) ?? 0) >= 2);

    monitor!.reconcile([endpoint(grpcAddress, 'grpc')]);
    const tcpChecks = (await sample(metrics, okOf(tcpAddress)))!;
    await waitFor('grpc checks', async () => ((await sample(metrics, okOf(grpcAddress))) ?? 0) >= 3);
    // Several intervals later the removed endpoint has not been checked again.
    expect(await sample(metrics, okOf(tcpAddress))).toBe(tcpChecks);
    expect(Object.keys(monitor!.snapshot())).toEqual([grpcAddress]);
    expect(changes).toEqual([]);
  });

  it('switches the probe when a pool changes protocol', async () => {
    const server = await tcpServer('accept');
    const address = `127.0.0.1:${portOf(server)}`;
    newMonitor().reconcile([endpoint(address, 'tcp')]);
    await waitFor('tcp checks pass', async () => ((await sample(metrics, `livemux_health_checks_total{endpoint="${address}",result="ok"}`)) ?? 0) >= 1);
    // A plain TCP service does not speak gRPC: as a grpc pool it fails its checks.
    monitor!.reconcile([endpoint(address, 'grpc')]);
    await waitFor('the endpoint to turn unhealthy', () => !monitor!.isHealthy(address));
    expect(changes).toEqual([[address, false]]);
  });
});
