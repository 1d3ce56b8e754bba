import { afterAll, beforeAll } from 'vitest';
import { RedisDeliveryLedger } from '../../src/backends/kit/inbox/redis-delivery-ledger.js';
import { RedisInboxStore } from '../../src/backends/kit/inbox/redis-inbox-store.js';
import { describeInboxHub } from '../conformance/inbox-hub.js';
import { startRedisServer, type RedisServer } from '../helpers/redis-server.js';

let server: RedisServer;
let nextPrefix = 0;

beforeAll(async () => {
  server = await startRedisServer();
});
afterAll(async () => {
  await server?.stop();
});

// Two backend processes: two stores and two ledgers, each with its own connections, on one Redis.
describeInboxHub('two Redis stores', async (options) => {
  const n = nextPrefix++;
  const stores = [0, 1].map(() => new RedisInboxStore({ url: server.url, keyPrefix: `hub${n}:`, ...options })) as [RedisInboxStore, RedisInboxStore];
  const ledgers = [0, 1].map(() => new RedisDeliveryLedger({ url: server.url, keyPrefix: `hubledger${n}:` })) as [RedisDeliveryLedger, RedisDeliveryLedger];
  return {
    stores,
    ledgers,
    async cleanup() {
      await Promise.all([...stores, ...ledgers].map((s) => s.close()));
    },
  };
});
