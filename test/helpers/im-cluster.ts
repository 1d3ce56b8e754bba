/**
 * IM set-ups for integration tests: real proxies and IM backends over loopback, users as SDK ImClients.
 */
import { connect, type LivemuxClient } from '../../src/client/index.js';
import { ImClient, type ImClientEvent, type ImClientOptions } from '../../src/client/im-client.js';
import { mintToken } from '../../src/proxy/auth.js';
import { ConsistentHashPicker } from '../../src/routing/policies/consistent-hash.js';
import { TEST_SECRET, startImBackend, startProxy } from './processes.js';
import { type RedisServer, startRedisServer } from './redis-server.js';

/** routes.yaml for one `im` business on `endpoints`, consistent_hash on user_id. */
export function imRoutes(endpoints: string[], pool: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    version: 1,
    routes: [{ business: 'im', pool: 'im', policy: 'consistent_hash', hash_key: 'user_id' }],
    pools: { im: { protocol: 'grpc', endpoints: endpoints.map((address) => ({ address })), ...pool } },
  };
}

/** A device of a user: its connection, its ImClient, and every event it iterated. */
export class ImDevice {
  readonly events: ImClientEvent[] = [];
  /** Set when iteration ended with an error. */
  error: Error | null = null;
  private waiters: (() => void)[] = [];

  constructor(
    readonly user: string,
    readonly device: string,
    readonly client: LivemuxClient,
    readonly im: ImClient,
  ) {
    void (async () => {
      try {
        for await (const event of im) {
          this.events.push(event);
          this.wake();
        }
      } catch (err) {
        this.error = err as Error;
      }
      this.wake();
    })();
  }

  /** "sender>recipient:body" of each message event. */
  get texts(): string[] {
    return this.events.flatMap((e) => (e.type === 'message' ? [`${e.message.sender}>${e.message.recipient}:${Buffer.from(e.message.body).toString()}`] : []));
  }

  get messages(): Extract<ImClientEvent, { type: 'message' }>['message'][] {
    return this.events.flatMap((e) => (e.type === 'message' ? [e.message] : []));
  }

  async until(done: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!done()) {
      if (Date.now() > deadline) throw new Error(`${this.user}/${this.device}: timed out waiting for ${what}; last events: ${JSON.stringify(this.events.slice(-3))}`);
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        setTimeout(resolve, 100);
      });
    }
  }

  async close(): Promise<void> {
    await this.im.close().catch(() => undefined);
    await this.client.close();
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }
}

/** Connects `user` to the proxy on `port` and opens its IM client on `device`. */
export async function openDevice(port: number, user: string, device: string, options: Partial<ImClientOptions> = {}): Promise<ImDevice> {
  const client = await connect({ host: '127.0.0.1', port, token: await mintToken({ secret: TEST_SECRET, sub: user }), reconnect: { initialMs: 50, maxMs: 500 } });
  return new ImDevice(user, device, client, await ImClient.open(client, { deviceId: device, ...options }));
}

/**
 * Two IM backends on one Redis of their own, two proxies routing `im` by user_id that notice a dead
 * backend within about 200 ms. Devices opened through {@link open} are closed by {@link closeDevices}.
 */
export class ImCluster {
  readonly devices: ImDevice[] = [];

  private constructor(
    readonly redis: RedisServer,
    readonly backends: Awaited<ReturnType<typeof startImBackend>>[],
    readonly proxies: Awaited<ReturnType<typeof startProxy>>[],
  ) {}

  static async start(args: string[] = []): Promise<ImCluster> {
    const redis = await startRedisServer();
    const backendArgs = ['--redis', redis.url, ...args];
    const backends = await Promise.all([startImBackend(backendArgs), startImBackend(backendArgs)]);
    const routes = imRoutes(
      backends.map((b) => b.address),
      { health_check: { interval_ms: 200, timeout_ms: 200, unhealthy_threshold: 1, healthy_threshold: 1 }, circuit_breaker: { reset_timeout_ms: 300 } },
    );
    const proxies = await Promise.all([startProxy({ backends: [], routes }), startProxy({ backends: [], routes })]);
    return new ImCluster(redis, backends, proxies);
  }

  /** The backend that owns `user` while both are up. */
  ownerOf(user: string): Awaited<ReturnType<typeof startImBackend>> {
    const address = new ConsistentHashPicker(this.backends.map((b) => ({ address: b.address, weight: 1 }))).pick(user, () => true);
    return this.backends.find((b) => b.address === address)!;
  }

  /** A user name with `prefix` owned by backend `index`. */
  userOwnedBy(index: number, prefix: string): string {
    for (let i = 0; ; i++) {
      const user = `${prefix}-${i}`;
      if (this.ownerOf(user) === this.backends[index]) return user;
    }
  }

  async open(proxy: number, user: string, device: string, options: Partial<ImClientOptions> = {}): Promise<ImDevice> {
    const d = await openDevice(this.proxies[proxy]!.port, user, device, options);
    this.devices.push(d);
    return d;
  }

  async closeDevices(): Promise<void> {
    await Promise.all(this.devices.splice(0).map((d) => d.close().catch(() => undefined)));
  }

  async stop(): Promise<void> {
    await this.closeDevices();
    await Promise.all(this.proxies.map((p) => p.stop()));
    await Promise.all(this.backends.map((b) => b.stop()));
    await this.redis.stop();
  }
}
