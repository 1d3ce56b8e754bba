/**
 * A device for push tests: an SDK client on a proxy with its push session open (openPush), recording
 * every push the app receives.
 */
import { connect, type LivemuxClient } from '../../src/client/client.js';
import { openPush, type Push, type PushClient } from '../../src/client/push-client.js';
import { testToken } from './processes.js';

export interface TestDevice {
  readonly client: LivemuxClient;
  readonly push: PushClient;
  /** Every push the app got, in order. */
  readonly received: Push[];
  /** Resolves with the backlog count of the first Synced. */
  readonly synced: Promise<number>;
  /** Resolves once the app has got `count` pushes in all (bounded). */
  waitFor(count: number, timeoutMs?: number): Promise<Push[]>;
  close(): Promise<void>;
}

/** Connects `user`'s device `deviceId` through the proxy on `port` and opens its push session. */
export async function openDevice(port: number, user: string, deviceId: string): Promise<TestDevice> {
  const client = await connect({ host: '127.0.0.1', port, token: await testToken(user) });
  const push = await openPush(client, { deviceId });
  const received: Push[] = [];
  const waiters: (() => void)[] = [];
  push.on('push', (p) => {
    received.push(p);
    for (const w of waiters.splice(0)) w();
  });
  const synced = new Promise<number>((resolve) => push.once('synced', (backlog) => resolve(backlog)));
  return {
    client,
    push,
    received,
    synced,
    async waitFor(count, timeoutMs = 8_000) {
      const deadline = Date.now() + timeoutMs;
      while (received.length < count) {
        const left = deadline - Date.now();
        if (left <= 0) throw new Error(`device ${deviceId} of ${user}: ${received.length} pushes, expected ${count}`);
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, left);
          waiters.push(() => {
            clearTimeout(timer);
            resolve();
          });
        });
      }
      return received;
    },
    async close() {
      await client.close();
    },
  };
}
