import { afterEach, describe, expect, it } from 'vitest';
import { startAdminServer, type AdminServer } from '../../src/observability/admin-server.js';
import { createMetrics } from '../../src/observability/metrics.js';

let server: AdminServer | null = null;
afterEach(async () => {
  await server?.close();
  server = null;
});

async function start(options: { ready?: () => boolean; status?: () => object } = {}): Promise<string> {
  const metrics = createMetrics();
  metrics.connectionsAccepted.inc(3);
  server = await startAdminServer({
    host: '127.0.0.1',
    port: 0,
    metrics,
    isReady: options.ready ?? (() => true),
    ...(options.status && { status: options.status }),
  });
  expect(server.port).toBeGreaterThan(0);
  return `http://127.0.0.1:${server.port}`;
}

describe('startAdminServer', () => {
  it('serves Prometheus metrics', async () => {
    const base = await start();
    const res = await fetch(`${base}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(await res.text()).toContain('livemux_connections_accepted_total 3');
  });

  it('answers /healthz while running', async () => {
    const res = await fetch(`${await start({ ready: () => false })}/healthz`);
    expect(res.status).toBe(200);
    expect(await res.text()).toBe('ok\n');
  });

  it('answers /readyz from isReady()', async () => {
    let ready = false;
    const base = await start({ ready: () => ready });
    expect((await fetch(`${base}/readyz`)).status).toBe(503);
    ready = true;
    const res = await fetch(`${base}/readyz?verbose=1`);
    expect(res.status).toBe(200);
    expect(await res.text()).toBe('ready\n');
  });

  it('serves /status as JSON when given, 404 otherwise', async () => {
    const base = await start({ status: () => ({ connections: 2, draining: false }) });
    const res = await fetch(`${base}/status`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/json');
    expect(await res.json()).toEqual({ connections: 2, draining: false });
    await server!.close();
    server = null;
    expect((await fetch(`${await start()}/status`)).status).toBe(404);
  });

  it('answers 404 for other paths and 405 for other methods', async () => {
    const base = await start();
    expect((await fetch(`${base}/`)).status).toBe(404);
    expect((await fetch(`${base}/toString`)).status).toBe(404);
    const res = await fetch(`${base}/metrics`, { method: 'POST' });
    expect(res.status).toBe(405);
    expect(res.headers.get('allow')).toBe('GET, HEAD');
  });

  it('answers 500 when a handler fails', async () => {
    const base = await start({
      status: () => {
        throw new Error('boom');
      },
    });
    const res = await fetch(`${base}/status`);
    expect(res.status).toBe(500);
    expect(await res.text()).toBe('error: boom\n');
  });

  it('closes promptly even with a keep-alive connection open', async () => {
    const base = await start();
    await fetch(`${base}/healthz`, { keepalive: true });
    const started = Date.now();
    await server!.close();
    server = null;
    expect(Date.now() - started).toBeLessThan(1000);
    await expect(fetch(`${base}/healthz`)).rejects.toThrow();
  });

  it('rejects when the port is taken', async () => {
    await start();
    await expect(startAdminServer({ host: '127.0.0.1', port: server!.port, metrics: createMetrics(), isReady: () => true })).rejects.toThrow(/EADDRINUSE/);
  });
});
