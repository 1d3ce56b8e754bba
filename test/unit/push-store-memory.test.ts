import { describe, expect, it } from 'vitest';
import { Priority } from '../../src/protocol/constants.js';
import { MemoryPushStore } from '../../src/backends/push/memory-store.js';
import type { PushRecord } from '../../src/backends/push/store.js';
import { describePushStore } from '../conformance/push-store.js';

describePushStore('memory', async (settings) => {
  const store = new MemoryPushStore(settings);
  return { store, cleanup: () => store.close() };
});

describe('MemoryPushStore specifics', () => {
  const record = (id: string, sentAtMs: number, over: Partial<PushRecord> = {}): PushRecord => ({
    id,
    keyName: 'k',
    fingerprint: 'f',
    audience: 'topic',
    topic: 'news',
    priority: Priority.HIGH,
    collapseKey: '',
    data: Buffer.from('x'),
    sentAtMs,
    ttlS: 60,
    expiresAtMs: sentAtMs + 60_000,
    targeted: 1,
    ...over,
  });

  it('keeps at most maxRecords records, dropping the oldest first, and still owes a dropped topic push', async () => {
    const now = 1_000_000;
    const store = new MemoryPushStore({ maxRecords: 3, now: () => now });
    await store.touchDevice('u/d', now - 10);
    await store.subscribe('u/d', ['news'], now - 10, 8);
    for (let i = 1; i <= 5; i++) await store.complete(record(`p${i}`, now + i), 3_600_000);
    expect(await store.status('p1')).toBeNull();
    expect(await store.status('p2')).toBeNull();
    for (const id of ['p3', 'p4', 'p5']) expect((await store.status(id))?.record.id).toBe(id);
    // Dropped records are no longer counted, but a device that connects later still gets their pushes.
    expect(await store.ack([{ id: 'p1', device: 'u/d' }])).toBe(0);
    const topics = await store.touchDevice('u/d', now);
    expect((await store.backlog('u/d', topics, now)).map((r) => r.id)).toEqual(['p1', 'p2', 'p3', 'p4', 'p5']);
    // An id dropped is free again (a repeat of its call is a new push).
    expect(await store.claim('p1', 1000)).toEqual({ kind: 'claimed' });
    await store.close();
  });

  it('refuses a maxRecords that is not a positive integer', () => {
    expect(() => new MemoryPushStore({ maxRecords: 0 })).toThrow(/maxRecords/);
  });
});
