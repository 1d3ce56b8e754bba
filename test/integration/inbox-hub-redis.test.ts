import { RedisDeliveryLedger } from '../../src/backends/kit/inbox/redis-delivery-ledger.js';
import { RedisInboxStore } from '../../src/backends/kit/inbox/redis-inbox-store.js';
import { describeInboxHub } from '../conformance/inbox-hub.js';
import { redisServerForFile } from '../helpers/redis-for-file.js';

const server = redisServerForFile();

// Two backend processes: two stores and two ledgers, each with its own connections, on one Redis.
describeInboxHub('two Redis stores', async (options) => {
  const [keyPrefix, ledgerPrefix] = [server.prefix('hub'), server.prefix('hubledger')];
  const stores = [0, 1].map(() => new RedisInboxStore({ url: server.url, keyPrefix, ...options })) as [RedisInboxStore, RedisInboxStore];
  const ledgers = [0, 1].map(() => new RedisDeliveryLedger({ url: server.url, keyPrefix: ledgerPrefix })) as [RedisDeliveryLedger, RedisDeliveryLedger];
  return {
    stores,
    ledgers,
    async cleanup() {
      await Promise.all([...stores, ...ledgers].map((s) => s.close()));
    },
  };
});
