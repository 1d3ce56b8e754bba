import { describe, expect, it } from 'vitest';
import { MemoryChatStore } from '../../src/backends/chat/memory-store.js';
import { Priority } from '../../src/protocol/constants.js';
import { describeChatStore } from '../conformance/chat-store.js';

// The memory store keeps its rooms in the instance, so "another store of the same backend" is the
// instance itself: the owner that continues a room is the same process.
describeChatStore('memory', async () => {
  const store = new MemoryChatStore();
  return { store, peer: async () => store, cleanup: () => store.close() };
});

async function leaseToken(store: MemoryChatStore, room: string): Promise<number> {
  const grant = await store.acquireLease(room, 'test', 60_000);
  if (!grant.acquired) throw new Error('lease not acquired');
  return grant.token;
}

describe('MemoryChatStore specifics', () => {
  it('trims history exactly to maxLength', async () => {
    const store = new MemoryChatStore();
    const token = await leaseToken(store, 'r');
    for (let seq = 1; seq <= 50; seq++) {
      await store.appendHistory('r', token, { seq, priority: Priority.LOW, senderId: 'u', sentAtMs: seq, body: Buffer.alloc(1) }, { maxLength: 7, maxAgeMs: Number.POSITIVE_INFINITY }, seq);
    }
    expect((await store.latestHistory('r', 100)).map((m) => m.seq)).toEqual([44, 45, 46, 47, 48, 49, 50]);
  });

  it('keeps exactly attributeLogLength changes', async () => {
    const store = new MemoryChatStore({ attributeLogLength: 3 });
    const token = await leaseToken(store, 'r');
    for (let i = 1; i <= 5; i++) await store.setAttributes('r', token, { k: String(i) });
    expect(await store.attributeChanges('r', 1)).toBeNull();
    expect((await store.attributeChanges('r', 2))?.map((c) => c.value)).toEqual(['3', '4', '5']);
    expect(() => new MemoryChatStore({ attributeLogLength: 0 })).toThrow(/attributeLogLength/);
  });

  it('pages members in join order and keeps cursors valid across compaction', async () => {
    const store = new MemoryChatStore();
    for (let i = 0; i < 300; i++) await store.join('r', { userId: `u${i}`, role: 'member', joinedAtMs: i });
    const first = await store.members('r', null, 10);
    expect(first.items.map((m) => m.userId)).toEqual(Array.from({ length: 10 }, (_, i) => `u${i}`));
    // Enough leaves to compact the index (more than half the slots departed).
    for (let i = 0; i < 250; i++) await store.leave('r', `u${i}`);
    const next = await store.members('r', first.next, 10);
    expect(next.items.map((m) => m.userId)).toEqual(Array.from({ length: 10 }, (_, i) => `u${250 + i}`));
    expect(await store.memberCount('r')).toBe(50);
  });

  it('creates no room state on reads', async () => {
    const store = new MemoryChatStore();
    await store.readHistory('r', 0, 10);
    await store.members('r', null, 10);
    await store.attributes('r');
    await store.muteUntil('r', 'u', 0);
    await store.setMute('r', 'u', 0);
    expect((store as unknown as { rooms: Map<string, unknown> }).rooms.size).toBe(0);
  });
});
