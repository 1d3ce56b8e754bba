import { MemoryInboxStore } from '../../src/backends/kit/inbox/memory-inbox-store.js';
import { MemoryImStore } from '../../src/backends/im/memory-store.js';
import { describeImStore } from '../conformance/im-store.js';

// One process: "another backend process on the same data" is the same instance.
describeImStore('memory', async () => {
  const stores = [new MemoryImStore()];
  return {
    store: stores[0]!,
    peer: async () => stores[0]!,
    async retaining(retention) {
      const store = new MemoryImStore({ inbox: new MemoryInboxStore({ retention }) });
      stores.push(store);
      return store;
    },
    async cleanup() {
      await Promise.all(stores.map((s) => s.close()));
    },
  };
});
