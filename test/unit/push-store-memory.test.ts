import { MemoryPushStore } from '../../src/backends/push/memory-store.js';
import { describePushStore } from '../conformance/push-store.js';

describePushStore('memory', async (settings) => {
  const store = new MemoryPushStore(settings);
  return { store, cleanup: () => store.close() };
});
