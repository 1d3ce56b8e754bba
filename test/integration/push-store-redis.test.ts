import { RedisPushStore } from '../../src/backends/push/redis-store.js';
import { describePushStore } from '../conformance/push-store.js';
import { redisServerForFile } from '../helpers/redis-for-file.js';

const server = redisServerForFile();

// Each test gets its own key prefix on the one server, so tests never see each other's data.
describePushStore('redis', async (settings) => {
  const store = new RedisPushStore({ url: server.url, keyPrefix: server.prefix('test'), ...settings });
  return { store, cleanup: () => store.close() };
});
