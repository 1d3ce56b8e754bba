import { afterAll, beforeAll } from 'vitest';
import { RedisPushStore } from '../../src/backends/push/redis-store.js';
import { describePushStore } from '../conformance/push-store.js';
import { startRedisServer, type RedisServer } from '../helpers/redis-server.js';

let server: RedisServer;
let nextPrefix = 0;

beforeAll(async () => {
  server = await startRedisServer();
});
afterAll(async () => {
  await server?.stop();
});

// Each test gets its own key prefix on the one server, so tests never see each other's data.
describePushStore('redis', async (settings) => {
  const store = new RedisPushStore({ url: server.url, keyPrefix: `test${nextPrefix++}:`, ...settings });
  return { store, cleanup: () => store.close() };
});
