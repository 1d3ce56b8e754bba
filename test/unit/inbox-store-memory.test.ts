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

describe('MemoryInboxStore dedupe bound', () => {
  it('keeps at most maxEntries dedupe keys per user, forgetting the oldest first', async () => {
    const store = new MemoryInboxStore({ retention: { maxEntries: 3 } });
    for (let i = 1; i <= 5; i++) await store.append('u', { body: Buffer.from(String(i)), dedupeKey: `k${i}` }, i);
    for (const i of [3, 4, 5]) expect((await store.append('u', { body: Buffer.from('again'), dedupeKey: `k${i}` }, 9)).duplicate).toBe(true);
    expect((await store.append('u', { body: Buffer.from('again'), dedupeKey: 'k1' }, 9)).duplicate).toBe(false);
    await store.close();
  });
});

describe('MemoryDeliveryLedger specifics', () => {
  it('keeps at most maxRefs refs, forgetting the first targeted first', async () => {
    const ledger = new MemoryDeliveryLedger({ maxRefs: 2 });
    for (const ref of ['r1', 'r2', 'r3']) await ledger.target(ref, ['ann', 'bob'], 0, 1);
    // A ref targeted again keeps its place (its age is its first target).
    await ledger.target('r2', ['cid'], 0, 2);
    await ledger.target('r4', ['ann'], 0, 3);
    expect(await ledger.stats('r1', 4)).toBeNull();
    expect(await ledger.stats('r2', 4)).toBeNull();
    expect((await ledger.stats('r3', 4))?.targeted).toBe(2);
    expect((await ledger.stats('r4', 4))?.targeted).toBe(1);
    expect(await ledger.delivered('r1', 'ann')).toBe(false);
    await ledger.close();
  });

  it('refuses a maxRefs that is not a positive integer', () => {
    expect(() => new MemoryDeliveryLedger({ maxRefs: 0 })).toThrow(/maxRefs/);
  });
});
