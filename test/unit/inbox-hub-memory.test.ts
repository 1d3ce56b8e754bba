import { MemoryDeliveryLedger } from '../../src/backends/kit/inbox/delivery-ledger.js';
import { MemoryInboxStore } from '../../src/backends/kit/inbox/memory-inbox-store.js';
import { describeInboxHub } from '../conformance/inbox-hub.js';

// One process: both "processes" share the store and the ledger.
describeInboxHub('the memory store', async (options) => {
  const store = new MemoryInboxStore(options);
  const ledger = new MemoryDeliveryLedger();
  return {
    stores: [store, store],
    ledgers: [ledger, ledger],
    async cleanup() {
      await store.close();
      await ledger.close();
    },
  };
});
