import { MemoryImStore } from '../../src/backends/im/memory-store.js';
import { describeImStore } from '../conformance/im-store.js';

// One process: "another backend process on the same data" is the same instance.
describeImStore('memory', async () => {
  const store = new MemoryImStore();
  return { store, peer: async () => store, cleanup: () => store.close() };
});
