import { afterEach, describe, expect, it } from 'vitest';
import { createEchoHandlers } from '../../src/backends/echo/echo-backend.js';
import { createBackendServer, type ListeningBackend } from '../../src/backends/kit/backend-server.js';
import { GrpcHealthProbe, TcpConnectProbe, stallTolerantDeadline } from '../../src/proxy/upstream/health-check.js';

/** Blocks this process's event loop for `ms`, as a proxy swamped by its clients would. */
function busy(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until);
}

let backend: ListeningBackend | null = null;
afterEach(async () => {
  await backend?.close();
  backend = null;
});

describe('health checks of a busy proxy', () => {
  it('a gRPC check whose deadline passed while this process was stalled still reports the healthy backend', async () => {
    backend = await createBackendServer(createEchoHandlers()).listen('127.0.0.1', 0);
    const probe = new GrpcHealthProbe(`127.0.0.1:${backend.port}`);
    await probe.check(1_000); // the channel is connected
    const check = probe.check(200);
    busy(800);
    await expect(check).resolves.toBeUndefined();
    probe.close();
  });

  it('a TCP check likewise', async () => {
    backend = await createBackendServer(createEchoHandlers()).listen('127.0.0.1', 0);
    const probe = new TcpConnectProbe(`127.0.0.1:${backend.port}`);
    const check = probe.check(200);
    busy(800);
    await expect(check).resolves.toBeUndefined();
    probe.close();
  });

  it('a backend that does not answer still times out once the loop keeps time', async () => {
    let fired = 0;
    const started = performance.now();
    await new Promise<void>((resolve) => {
      stallTolerantDeadline(100, () => {
        fired++;
        resolve();
      });
    });
    expect(fired).toBe(1);
    expect(performance.now() - started).toBeGreaterThanOrEqual(95);
  });

  it('gives a stalled deadline more time at most three times', async () => {
    const started = performance.now();
    let done = false;
    await new Promise<void>((resolve) => {
      stallTolerantDeadline(50, () => {
        done = true;
        resolve();
      });
      // Stall past each re-armed deadline: the fourth lateness is not forgiven.
      const stall = (): void => {
        if (done) return;
        busy(200);
        setTimeout(stall, 0);
      };
      setTimeout(stall, 0);
    });
    expect(performance.now() - started).toBeLessThan(5_000);
  });
});
