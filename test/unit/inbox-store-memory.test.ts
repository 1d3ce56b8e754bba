import { describe, expect, it } from 'vitest';
import { MemoryDeliveryLedger } from '../../src/backends/kit/inbox/delivery-ledger.js';
import { MemoryInboxStore } from '../../src/backends/kit/inbox/memory-inbox-store.js';
import { describeInboxStore } from '../conformance/inbox-store.js';

// One process: "another backend process on the same data" is the same instance.
describeInboxStore('memory', async ({ statsTtlMs, ...options }) => {
  const store = new MemoryInboxStore(options);
  const ledger = new MemoryDeliveryLedger(statsTtlMs === undefined ? {} : { statsTtlMs });
  return {
    store,
    peer: async () => store,
    ledger,
    peerLedger: async () => ledger,
    cleanup: async () => {
      await store.close();
      await ledger.close();
    },
  };
});

describe('MemoryInboxStore specifics', () => {
  it('trims to exactly maxEntries', async () => {
    const store = new MemoryInboxStore({ retention: { maxEntries: 3 } });
    for (let i = 1; i <= 20; i++) await store.append('u', { body: Buffer.from(String(i)) }, i);
    const page = await store.read('u', 0, 100, 0);
    expect(page.entries.map((e) => e.seq)).toEqual([18, 19, 20]);
    expect(page.gap).toEqual({ fromSeq: 1, toSeq: 17 });
  });

  it('rejects bad options at construction', () => {
    expect(() => new MemoryInboxStore({ retention: { maxEntries: 0 } })).toThrow(/retention.maxEntries/);
    expect(() => new MemoryInboxStore({ dedupeTtlMs: -1 })).toThrow(/dedupeTtlMs/);
    expect(() => new MemoryInboxStore({ maxDevices: 1.5 })).toThrow(/maxDevices/);
    expect(() => new MemoryDeliveryLedger({ statsTtlMs: 0 })).toThrow(/statsTtlMs/);
  });
});
