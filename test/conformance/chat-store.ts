import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Priority } from '../../src/protocol/constants.js';
import {
  MAX_MEMBER_PAGE,
  type AttributeChange,
  type ChatStore,
  type HistoryLimits,
  type Member,
  type StoredMessage,
} from '../../src/backends/chat/store.js';

/**
 * The ChatStore contract (src/backends/chat/store.ts), run against every implementation: the memory
 * store from test/unit, the Redis store from test/integration. A new store passes this file or is not
 * a ChatStore.
 */

/** One backend under test, fresh for each test. */
export interface ChatStoreFixture {
  readonly store: ChatStore;
  /**
   * Another store on the same data: what a room's next owner gets (Redis: a second connection with the
   * same key prefix; memory: the same instance). Closed by `cleanup`.
   */
  peer(): Promise<ChatStore>;
  cleanup(): Promise<void>;
}

/** How far past `maxLength` a store may keep history (the Redis store trims whole stream nodes). */
const LENGTH_SLACK = 100;
const LONG_AGO = 1_700_000_000_000;
const NO_AGE: HistoryLimits = { maxLength: 1000, maxAgeMs: Number.POSITIVE_INFINITY };

function message(seq: number, sentAtMs = LONG_AGO + seq, priority: Priority = Priority.HIGH): StoredMessage {
  return { seq, priority, senderId: `user-${seq % 7}`, sentAtMs, body: Buffer.from(`message ${seq}`) };
}

const seqs = (messages: readonly StoredMessage[]): number[] => messages.map((m) => m.seq);
const range = (from: number, to: number): number[] => Array.from({ length: to - from + 1 }, (_, i) => from + i);

/** Long enough that no test outlives a lease it did not mean to lose. */
const LEASE_TTL = 60_000;

/**
 * One lease holder's ordered writes: it takes each room's lease on first use and writes with its
 * token. Tests that are not about leases write through one owner.
 */
class Owner {
  private readonly tokens = new Map<string, number>();

  constructor(
    readonly store: ChatStore,
    readonly holder: string,
  ) {}

  async token(room: string): Promise<number> {
    let token = this.tokens.get(room);
    if (token === undefined) {
      const grant = await this.store.acquireLease(room, this.holder, LEASE_TTL);
      if (!grant.acquired) throw new Error(`${this.holder}: the lease of ${room} is held by ${grant.holder}`);
      this.tokens.set(room, (token = grant.token));
    }
    return token;
  }

  async nextSeq(room: string): Promise<number> {
    return this.store.nextSeq(room, await this.token(room));
  }

  async appendHistory(room: string, m: StoredMessage, limits: HistoryLimits, nowMs: number): Promise<number> {
    return this.store.appendHistory(room, await this.token(room), m, limits, nowMs);
  }

  async setAttributes(room: string, changes: Readonly<Record<string, string | null>>): Promise<AttributeChange[]> {
    return this.store.setAttributes(room, await this.token(room), changes);
  }

  async dropRoom(room: string): Promise<void> {
    await this.store.dropRoom(room, await this.token(room));
    this.tokens.delete(room);
  }

  async release(room: string): Promise<void> {
    await this.store.releaseLease(room, await this.token(room));
    this.tokens.delete(room);
  }
}

async function appendAll(owner: Owner, room: string, from: number, to: number, limits = NO_AGE): Promise<void> {
  for (let seq = from; seq <= to; seq++) await owner.appendHistory(room, message(seq), limits, LONG_AGO + seq);
}

/** Every member, walking pages of `limit`; also returns the page sizes. */
async function walk(store: ChatStore, room: string, limit: number): Promise<{ ids: string[]; sizes: number[] }> {
  const ids: string[] = [];
  const sizes: number[] = [];
  let cursor: string | null = null;
  do {
    const page = await store.members(room, cursor, limit);
    ids.push(...page.items.map((m) => m.userId));
    sizes.push(page.items.length);
    cursor = page.next;
  } while (cursor !== null && sizes.length < 10_000);
  return { ids, sizes };
}

export function describeChatStore(name: string, factory: () => Promise<ChatStoreFixture>): void {
  describe(`ChatStore conformance: ${name}`, () => {
    let fixture: ChatStoreFixture;
    let store: ChatStore;
    let owner: Owner;

    beforeEach(async () => {
      fixture = await factory();
      store = fixture.store;
      owner = new Owner(store, 'owner-a');
    });
    afterEach(async () => {
      await fixture.cleanup();
    });

    describe('sequence', () => {
      it('starts at 1 and increases by one per call, per room', async () => {
        expect([await owner.nextSeq('a'), await owner.nextSeq('a'), await owner.nextSeq('a')]).toEqual([1, 2, 3]);
        expect([await owner.nextSeq('b'), await owner.nextSeq('a'), await owner.nextSeq('b')]).toEqual([1, 4, 2]);
      });

      it('gives 200 concurrent callers 200 distinct consecutive values', async () => {
        const values = await Promise.all(Array.from({ length: 200 }, () => owner.nextSeq('busy')));
        expect([...values].sort((x, y) => x - y)).toEqual(range(1, 200));
      });

      it('continues on another store of the same backend (a new owner)', async () => {
        const peer = new Owner(await fixture.peer(), 'owner-b');
        await owner.nextSeq('room');
        await owner.nextSeq('room');
        await owner.release('room');
        expect(await peer.nextSeq('room')).toBe(3);
        await peer.release('room');
        expect(await owner.nextSeq('room')).toBe(4);
      });
    });

    describe('history', () => {
      it('reads an unknown room as empty', async () => {
        expect(await store.readHistory('none', 0, 10)).toEqual({ messages: [], oldestSeq: null });
        expect(await store.latestHistory('none', 10)).toEqual([]);
      });

      it('returns messages in seq order with every field intact, binary bodies included', async () => {
        const odd: StoredMessage = { seq: 1, priority: Priority.SYSTEM, senderId: 'host-ü', sentAtMs: LONG_AGO, body: Buffer.from([0, 0xff, 0xfe, 10, 0]) };
        await owner.appendHistory('r', odd, NO_AGE, LONG_AGO);
        await owner.appendHistory('r', message(2, LONG_AGO + 2, Priority.LOW), NO_AGE, LONG_AGO + 2);
        await owner.appendHistory('r', { ...message(3), body: Buffer.alloc(0) }, NO_AGE, LONG_AGO + 3);
        const { messages, oldestSeq } = await store.readHistory('r', 0, 10);
        expect(oldestSeq).toBe(1);
        expect(seqs(messages)).toEqual([1, 2, 3]);
        const [first, second, third] = messages;
        expect({ ...first, body: [...first!.body] }).toEqual({ ...odd, body: [0, 0xff, 0xfe, 10, 0] });
        expect(second).toMatchObject({ priority: Priority.LOW, senderId: 'user-2', sentAtMs: LONG_AGO + 2 });
        expect(Buffer.from(second!.body).toString()).toBe('message 2');
        expect(third!.body.length).toBe(0);
      });

      it('reads after a seq, up to a limit', async () => {
        await appendAll(owner, 'r', 1, 10);
        expect(seqs((await store.readHistory('r', 3, 4)).messages)).toEqual([4, 5, 6, 7]);
        expect(seqs((await store.readHistory('r', 8, 100)).messages)).toEqual([9, 10]);
        expect(await store.readHistory('r', 10, 5)).toEqual({ messages: [], oldestSeq: 1 });
        expect(await store.readHistory('r', 50, 5)).toEqual({ messages: [], oldestSeq: 1 });
      });

      it('latestHistory returns the newest messages, oldest first', async () => {
        await appendAll(owner, 'r', 1, 10);
        expect(seqs(await store.latestHistory('r', 3))).toEqual([8, 9, 10]);
        expect(seqs(await store.latestHistory('r', 100))).toEqual(range(1, 10));
      });

      it('accepts gaps in seq and rejects a seq not above the highest appended', async () => {
        await owner.appendHistory('r', message(1), NO_AGE, LONG_AGO);
        await owner.appendHistory('r', message(5), NO_AGE, LONG_AGO);
        await expect(owner.appendHistory('r', message(5), NO_AGE, LONG_AGO)).rejects.toMatchObject({ code: 'ERR_HISTORY_ORDER' });
        await expect(owner.appendHistory('r', message(3), NO_AGE, LONG_AGO)).rejects.toMatchObject({ code: 'ERR_HISTORY_ORDER' });
        expect(seqs((await store.readHistory('r', 0, 10)).messages)).toEqual([1, 5]);
        // Another room has its own order.
        await owner.appendHistory('other', message(2), NO_AGE, LONG_AGO);
      });

      it('still rejects an old seq once the history holding it was trimmed', async () => {
        await appendAll(owner, 'r', 1, 300, { maxLength: 5, maxAgeMs: Number.POSITIVE_INFINITY });
        await expect(owner.appendHistory('r', message(2), NO_AGE, LONG_AGO)).rejects.toMatchObject({ code: 'ERR_HISTORY_ORDER' });
        await expect(owner.appendHistory('r', message(300), NO_AGE, LONG_AGO)).rejects.toMatchObject({ code: 'ERR_HISTORY_ORDER' });
      });

      it('trims by length, keeping at least the newest maxLength, and reports the gap through oldestSeq', async () => {
        const limits: HistoryLimits = { maxLength: 20, maxAgeMs: Number.POSITIVE_INFINITY };
        await appendAll(owner, 'r', 1, 400, limits);
        const kept = seqs(await store.latestHistory('r', 10_000));
        expect(kept.length).toBeGreaterThanOrEqual(20);
        expect(kept.length).toBeLessThanOrEqual(20 + LENGTH_SLACK);
        expect(kept).toEqual(range(400 - kept.length + 1, 400));

        const fromStart = await store.readHistory('r', 0, 1000);
        expect(fromStart.oldestSeq).toBe(kept[0]);
        expect(fromStart.oldestSeq! > 0 + 1).toBe(true); // a reader at seq 0 missed messages: a gap
        expect(seqs(fromStart.messages)).toEqual(kept);

        const atEdge = await store.readHistory('r', kept[0]! - 1, 1000);
        expect(atEdge.oldestSeq! > kept[0]! - 1 + 1).toBe(false); // no gap right at the oldest retained
        expect(seqs(atEdge.messages)).toEqual(kept);
      });

      it('trims exactly by age from the oldest, measured with sentAtMs against the append time', async () => {
        const limits: HistoryLimits = { maxLength: 1000, maxAgeMs: 1000 };
        const t0 = LONG_AGO;
        for (let seq = 1; seq <= 5; seq++) await owner.appendHistory('r', message(seq, t0 + seq * 100), limits, t0 + seq * 100);
        expect(seqs(await store.latestHistory('r', 100))).toEqual([1, 2, 3, 4, 5]);
        // Cutoff t0+350: sentAt 100, 200, 300 are older.
        await owner.appendHistory('r', message(6, t0 + 1350), limits, t0 + 1350);
        expect(seqs(await store.latestHistory('r', 100))).toEqual([4, 5, 6]);
        expect((await store.readHistory('r', 1, 10)).oldestSeq).toBe(4);
        // An exact boundary stays: sentAt == cutoff is not older.
        await owner.appendHistory('r', message(7, t0 + 1400), limits, t0 + 1400);
        expect(seqs(await store.latestHistory('r', 100))).toEqual([4, 5, 6, 7]);
      });

      it('resolves each append with the number it trimmed: appended = retained + trimmed', async () => {
        const byLength: HistoryLimits = { maxLength: 20, maxAgeMs: Number.POSITIVE_INFINITY };
        let trimmed = 0;
        for (let seq = 1; seq <= 400; seq++) {
          const n = await owner.appendHistory('r', message(seq), byLength, LONG_AGO + seq);
          expect(Number.isInteger(n) && n >= 0).toBe(true);
          trimmed += n;
        }
        expect(trimmed + (await store.latestHistory('r', 10_000)).length).toBe(400);
        const byAge: HistoryLimits = { maxLength: 1000, maxAgeMs: 1000 };
        await appendAll(owner, 'aged', 1, 5, byAge);
        expect(await owner.appendHistory('aged', message(6, LONG_AGO + 1004), byAge, LONG_AGO + 1004)).toBe(3);
        expect(await owner.appendHistory('aged', message(7, LONG_AGO + 1005), byAge, LONG_AGO + 1005)).toBe(1);
        expect(await owner.appendHistory('aged', message(8, LONG_AGO + 1005), byAge, LONG_AGO + 1005)).toBe(0);
      });

      it('trims a long backlog by age in one append', async () => {
        const limits: HistoryLimits = { maxLength: 1000, maxAgeMs: 60_000 };
        await appendAll(owner, 'r', 1, 350, limits);
        expect(await owner.appendHistory('r', message(351, LONG_AGO + 120_000), limits, LONG_AGO + 120_000)).toBe(350);
        expect(await store.readHistory('r', 0, 1000)).toMatchObject({ oldestSeq: 351 });
        expect(seqs(await store.latestHistory('r', 1000))).toEqual([351]);
      });

      it('never trims the message being appended, even one older than maxAge', async () => {
        const limits: HistoryLimits = { maxLength: 1000, maxAgeMs: 1000 };
        await owner.appendHistory('r', message(1, LONG_AGO), limits, LONG_AGO);
        await owner.appendHistory('r', message(2, LONG_AGO), limits, LONG_AGO + 50_000);
        expect(seqs(await store.latestHistory('r', 10))).toEqual([2]);
      });

      it('trims only on append: a quiet room keeps its messages', async () => {
        const limits: HistoryLimits = { maxLength: 1000, maxAgeMs: 1000 };
        await appendAll(owner, 'r', 1, 3, limits);
        expect(seqs((await store.readHistory('r', 0, 10)).messages)).toEqual([1, 2, 3]);
      });

      it('continues on another store of the same backend', async () => {
        const peer = new Owner(await fixture.peer(), 'owner-b');
        await appendAll(owner, 'r', 1, 3);
        await owner.release('r');
        await peer.appendHistory('r', message(4), NO_AGE, LONG_AGO);
        await expect(peer.appendHistory('r', message(2), NO_AGE, LONG_AGO)).rejects.toMatchObject({ code: 'ERR_HISTORY_ORDER' });
        expect(seqs((await store.readHistory('r', 2, 10)).messages)).toEqual([3, 4]);
      });

      it('rejects invalid arguments', async () => {
        await expect(store.readHistory('r', -1, 10)).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
        await expect(store.readHistory('r', 0, 0)).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
        await expect(store.latestHistory('r', 1.5)).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
        await expect(owner.appendHistory('r', message(0), NO_AGE, LONG_AGO)).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
        await expect(owner.appendHistory('r', message(1), { maxLength: 0, maxAgeMs: 1 }, LONG_AGO)).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
        await expect(owner.appendHistory('r', { ...message(1), priority: 3 as Priority }, NO_AGE, LONG_AGO)).rejects.toMatchObject({
          code: 'ERR_INVALID_ARGUMENT',
        });
        expect(await store.readHistory('r', 0, 10)).toEqual({ messages: [], oldestSeq: null });
      });
    });

    describe('members', () => {
      const member = (userId: string, role: Member['role'] = 'member', joinedAtMs = LONG_AGO): Member => ({ userId, role, joinedAtMs });

      it('joins, replaces, reads, counts and leaves', async () => {
        expect(await store.memberCount('r')).toBe(0);
        expect(await store.member('r', 'u1')).toBeNull();
        await store.join('r', member('u1'));
        await store.join('r', member('u2', 'host', LONG_AGO + 5));
        expect(await store.memberCount('r')).toBe(2);
        expect(await store.member('r', 'u2')).toEqual(member('u2', 'host', LONG_AGO + 5));
        await store.join('r', member('u1', 'admin', LONG_AGO + 9));
        expect(await store.member('r', 'u1')).toEqual(member('u1', 'admin', LONG_AGO + 9));
        expect(await store.memberCount('r')).toBe(2);
        await store.leave('r', 'u1');
        await store.leave('r', 'nobody');
        expect(await store.member('r', 'u1')).toBeNull();
        expect(await store.memberCount('r')).toBe(1);
        expect(await store.memberCount('other')).toBe(0);
      });

      it('pages 250 members in pages of 40, each exactly once', async () => {
        const ids = Array.from({ length: 250 }, (_, i) => `user-${(i * 7919) % 1000}`);
        for (const id of ids) await store.join('r', member(id, 'whitelisted'));
        const { ids: seen, sizes } = await walk(store, 'r', 40);
        expect(sizes).toEqual([40, 40, 40, 40, 40, 40, 10]);
        expect(new Set(seen).size).toBe(250);
        expect([...seen].sort()).toEqual([...ids].sort());
        const page = await store.members('r', null, 40);
        expect(page.items[0]).toEqual(member(page.items[0]!.userId, 'whitelisted'));
      });

      it('ends with a null cursor when the last page is exactly full', async () => {
        for (let i = 0; i < 80; i++) await store.join('r', member(`u${i}`));
        expect((await walk(store, 'r', 40)).sizes).toEqual([40, 40]);
        expect(await store.members('empty', null, 40)).toEqual({ items: [], next: null });
      });

      it('walks every member present throughout exactly once while others join and leave', async () => {
        const stable = Array.from({ length: 120 }, (_, i) => `stable-${i}`);
        const leaving = Array.from({ length: 60 }, (_, i) => `leaving-${i}`);
        for (let i = 0; i < 120; i++) {
          await store.join('r', member(stable[i]!));
          if (i < 60) await store.join('r', member(leaving[i]!));
        }
        const seen: string[] = [];
        let cursor: string | null = null;
        let round = 0;
        do {
          const page = await store.members('r', cursor, 25);
          seen.push(...page.items.map((m) => m.userId));
          cursor = page.next;
          // Churn between pages: some leave, newcomers join, a stable member's record is replaced.
          for (let k = 0; k < 10; k++) await store.leave('r', leaving[round * 10 + k] ?? 'none');
          await store.join('r', member(`newcomer-${round}`));
          await store.join('r', member(stable[(round * 37) % 120]!, 'host'));
          round++;
        } while (cursor !== null);
        expect(new Set(seen).size).toBe(seen.length);
        for (const id of stable) expect(seen).toContain(id);
      });

      it('caps a page at MAX_MEMBER_PAGE and rejects cursors it did not issue', async () => {
        for (let i = 0; i < 3; i++) await store.join('r', member(`u${i}`));
        expect((await store.members('r', null, MAX_MEMBER_PAGE + 500)).items).toHaveLength(3);
        await expect(store.members('r', 'not a cursor!', 10)).rejects.toMatchObject({ code: 'ERR_BAD_CURSOR' });
        await expect(store.members('r', '', 10)).rejects.toMatchObject({ code: 'ERR_BAD_CURSOR' });
        await expect(store.members('r', null, 0)).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
      });

      it('rejects an empty user ID and an unknown role', async () => {
        await expect(store.join('r', member(''))).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
        await expect(store.join('r', member('u', 'owner' as Member['role']))).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
        expect(await store.memberCount('r')).toBe(0);
      });

      it('are shared with another store of the same backend', async () => {
        const peer = await fixture.peer();
        await store.join('r', member('u1', 'host'));
        expect(await peer.member('r', 'u1')).toEqual(member('u1', 'host'));
        await peer.leave('r', 'u1');
        expect(await store.memberCount('r')).toBe(0);
      });
    });

    describe('presence', () => {
      // SHORT is what a busy machine must be able to do a handful of store calls in (at 100 ms, Redis
      // presences expired between two calls under load); LONG outlives every test.
      const SHORT = 1_000;
      const LONG = 60_000;
      const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
      const held = (userId: string, presence?: string): Member => ({ userId, role: 'member', joinedAtMs: LONG_AGO, ...(presence === undefined ? {} : { presence }) });
      const ids = async (room: string): Promise<string[]> => (await walk(store, room, 100)).ids.sort();

      it('join tells a new member from a replaced one; leave tells whether it removed one', async () => {
        await store.startPresence('p1', LONG);
        expect(await store.join('r', held('u1', 'p1'))).toBe(true);
        expect(await store.join('r', held('u1', 'p1'))).toBe(false);
        expect(await store.member('r', 'u1')).toEqual(held('u1', 'p1'));
        expect(await store.leave('r', 'u1')).toBe(true);
        expect(await store.leave('r', 'u1')).toBe(false);
        expect(await store.join('r', held('u2'))).toBe(true);
        expect(await store.member('r', 'u2')).toEqual(held('u2'));
      });

      it('leave with a presence removes only a record held under that presence', async () => {
        await store.startPresence('old-owner', LONG);
        await store.startPresence('new-owner', LONG);
        await store.join('r', held('u1', 'old-owner'));
        // The session moved: its new owner re-tagged the record before the old owner's leave arrived.
        await store.join('r', held('u1', 'new-owner'));
        expect(await store.leave('r', 'u1', 'old-owner')).toBe(false);
        expect(await store.member('r', 'u1')).toEqual(held('u1', 'new-owner'));
        await store.join('r', held('u2'));
        expect(await store.leave('r', 'u2', 'new-owner')).toBe(false);
        expect(await store.leave('r', 'u1', 'new-owner')).toBe(true);
        expect(await ids('r')).toEqual(['u2']);
      });

      it('purgeExpired drops exactly the members of an expired presence, once', async () => {
        await store.startPresence('dead', SHORT);
        await store.startPresence('alive', LONG);
        for (const u of ['a1', 'a2', 'a3']) await store.join('r', held(u, 'dead'));
        await store.join('r', held('b1', 'alive'));
        await store.join('r', held('c1'));
        await store.join('other', held('a4', 'dead'));
        expect(await store.purgeExpired('r')).toEqual([]);
        expect(await store.memberCount('r')).toBe(5);
        await sleep(SHORT * 2.5);
        expect((await store.purgeExpired('r')).sort()).toEqual(['a1', 'a2', 'a3']);
        expect(await store.memberCount('r')).toBe(2);
        expect(await ids('r')).toEqual(['b1', 'c1']);
        expect(await store.member('r', 'a1')).toBeNull();
        expect(await store.purgeExpired('r')).toEqual([]);
        // Per room: the other room keeps its member until purged itself.
        expect(await store.memberCount('other')).toBe(1);
        expect(await store.purgeExpired('other')).toEqual(['a4']);
        expect(await store.purgeExpired('none')).toEqual([]);
      });

      it('keeps a presence alive while renewed, and an expired presence stays expired', async () => {
        await store.startPresence('kept', SHORT * 2);
        await store.join('r', held('u1', 'kept'));
        for (let i = 0; i < 5; i++) {
          await sleep(SHORT / 2);
          expect(await store.renewPresence('kept', SHORT * 2)).toBe(true);
        }
        expect(await store.purgeExpired('r')).toEqual([]);
        await sleep(SHORT * 3);
        expect(await store.renewPresence('kept', SHORT * 2)).toBe(false);
        expect(await store.renewPresence('kept', SHORT * 2)).toBe(false);
        expect(await store.renewPresence('never-started', SHORT)).toBe(false);
        expect(await store.purgeExpired('r')).toEqual(['u1']);
      });

      it('ending a presence purges its members at once; one re-tagged under a live presence stays', async () => {
        await store.startPresence('stream-1', LONG);
        await store.startPresence('stream-2', LONG);
        await store.join('r', held('u1', 'stream-1'));
        await store.join('r', held('u2', 'stream-1'));
        await store.join('r', held('u2', 'stream-2'));
        await store.endPresence('stream-1');
        await store.endPresence('stream-1');
        expect(await store.renewPresence('stream-1', LONG)).toBe(false);
        expect(await store.purgeExpired('r')).toEqual(['u1']);
        expect(await store.member('r', 'u2')).toEqual(held('u2', 'stream-2'));
        // A member that left does not come back with a purge, nor does it count under its old presence.
        await store.leave('r', 'u2', 'stream-2');
        await store.endPresence('stream-2');
        expect(await store.purgeExpired('r')).toEqual([]);
        expect(await store.memberCount('r')).toBe(0);
      });

      it('are shared with another store: a new owner purges what the dead owner held', async () => {
        const peer = await fixture.peer();
        await store.startPresence('owner-a', SHORT);
        await peer.startPresence('owner-b', LONG);
        await store.join('r', held('gone', 'owner-a'));
        await store.join('r', held('moved', 'owner-a'));
        // The new owner re-tags the session the proxy moved to it; the other one never comes back.
        await peer.join('r', held('moved', 'owner-b'));
        expect(await peer.renewPresence('owner-a', SHORT)).toBe(true);
        await sleep(SHORT * 2.5);
        expect(await peer.purgeExpired('r')).toEqual(['gone']);
        expect(await store.memberCount('r')).toBe(1);
      });

      it('dropRoom leaves the presences alone: they are not room state', async () => {
        await store.startPresence('p', LONG);
        await store.join('r', held('u1', 'p'));
        await store.join('r2', held('u1', 'p'));
        await owner.dropRoom('r');
        expect(await store.memberCount('r')).toBe(0);
        expect(await store.renewPresence('p', LONG)).toBe(true);
        expect(await store.purgeExpired('r2')).toEqual([]);
        expect(await store.memberCount('r2')).toBe(1);
      });

      it('rejects empty presence IDs and TTLs below 1 ms', async () => {
        await expect(store.startPresence('', LONG)).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
        await expect(store.startPresence('p', 0)).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
        await expect(store.renewPresence('p', 1.5)).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
        await expect(store.endPresence('')).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
        await expect(store.join('r', held('u', ''))).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
        await expect(store.leave('r', 'u', '')).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
        expect(await store.memberCount('r')).toBe(0);
      });
    });

    describe('moderation', () => {
      it('a mute is active while now < untilMs, per room and user, and 0 lifts it', async () => {
        await store.setMute('r', 'u1', 2000);
        expect(await store.muteUntil('r', 'u1', 1000)).toBe(2000);
        expect(await store.muteUntil('r', 'u1', 1999)).toBe(2000);
        expect(await store.muteUntil('r', 'u1', 2000)).toBe(0);
        expect(await store.muteUntil('r', 'u2', 1000)).toBe(0);
        expect(await store.muteUntil('other', 'u1', 1000)).toBe(0);
        expect(await store.banUntil('r', 'u1', 1000)).toBe(0);
        await store.setMute('r', 'u1', 5000);
        expect(await store.muteUntil('r', 'u1', 3000)).toBe(5000);
        await store.setMute('r', 'u1', 0);
        expect(await store.muteUntil('r', 'u1', 1000)).toBe(0);
        await store.setMute('r', 'never-muted', 0);
      });

      it('a ban works the same, independently of mutes', async () => {
        await store.setBan('r', 'u1', LONG_AGO + 60_000);
        await store.setMute('r', 'u1', LONG_AGO + 1000);
        expect(await store.banUntil('r', 'u1', LONG_AGO)).toBe(LONG_AGO + 60_000);
        expect(await store.banUntil('r', 'u1', LONG_AGO + 60_000)).toBe(0);
        await store.setMute('r', 'u1', 0);
        expect(await store.banUntil('r', 'u1', LONG_AGO)).toBe(LONG_AGO + 60_000);
        await store.setBan('r', 'u1', 0);
        expect(await store.banUntil('r', 'u1', LONG_AGO)).toBe(0);
      });

      it('is shared with another store and validated', async () => {
        const peer = await fixture.peer();
        await store.setBan('r', 'u1', 9000);
        expect(await peer.banUntil('r', 'u1', 1000)).toBe(9000);
        await expect(store.setMute('r', 'u1', -1)).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
        await expect(store.banUntil('r', 'u1', Number.NaN)).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
      });
    });

    describe('whitelist', () => {
      it('adds and removes users per room, idempotently, members or not', async () => {
        expect(await store.isWhitelisted('r', 'u1')).toBe(false);
        await store.setWhitelisted('r', 'u1', true);
        await store.setWhitelisted('r', 'u1', true);
        await store.setWhitelisted('r', 'guest', true);
        expect(await store.isWhitelisted('r', 'u1')).toBe(true);
        expect(await store.isWhitelisted('r', 'guest')).toBe(true);
        expect(await store.isWhitelisted('r', 'u2')).toBe(false);
        expect(await store.isWhitelisted('other', 'u1')).toBe(false);
        expect(await store.member('r', 'guest')).toBeNull();
        await store.setWhitelisted('r', 'u1', false);
        await store.setWhitelisted('r', 'u1', false);
        await store.setWhitelisted('never', 'u1', false);
        expect(await store.isWhitelisted('r', 'u1')).toBe(false);
        expect(await store.isWhitelisted('r', 'guest')).toBe(true);
      });

      it('is independent of membership, mutes and bans', async () => {
        await store.join('r', { userId: 'u1', role: 'member', joinedAtMs: LONG_AGO });
        await store.setWhitelisted('r', 'u1', true);
        await store.leave('r', 'u1');
        await store.setMute('r', 'u1', LONG_AGO + 1000);
        await store.setBan('r', 'u1', 0);
        expect(await store.isWhitelisted('r', 'u1')).toBe(true);
        await store.setWhitelisted('r', 'u1', false);
        expect(await store.muteUntil('r', 'u1', LONG_AGO)).toBe(LONG_AGO + 1000);
      });

      it('is seen and changed by another store of the same backend (a new owner)', async () => {
        await store.setWhitelisted('r', 'u1', true);
        await store.setWhitelisted('r', 'u2', true);
        const peer = await fixture.peer();
        expect(await peer.isWhitelisted('r', 'u1')).toBe(true);
        await peer.setWhitelisted('r', 'u2', false);
        expect(await store.isWhitelisted('r', 'u2')).toBe(false);
        expect(await store.isWhitelisted('r', 'u1')).toBe(true);
      });

      it('rejects an empty user ID', async () => {
        await expect(store.setWhitelisted('r', '', true)).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
      });
    });

    describe('attributes', () => {
      it('start empty at version 0', async () => {
        expect(await store.attributes('r')).toEqual({ values: {}, version: 0 });
        expect(await store.attributeChanges('r', 0)).toEqual([]);
      });

      it('version each real change in key order and skip no-ops', async () => {
        expect(await owner.setAttributes('r', { seat1: 'alice', seat2: 'bob' })).toEqual([
          { version: 1, key: 'seat1', value: 'alice' },
          { version: 2, key: 'seat2', value: 'bob' },
        ]);
        expect(await owner.setAttributes('r', { seat1: null, game: '{"round":1}', seat2: 'bob', absent: null })).toEqual([
          { version: 3, key: 'seat1', value: null },
          { version: 4, key: 'game', value: '{"round":1}' },
        ]);
        expect(await owner.setAttributes('r', { seat2: 'bob' })).toEqual([]);
        expect(await owner.setAttributes('r', {})).toEqual([]);
        expect(await owner.setAttributes('r', { empty: '' })).toEqual([{ version: 5, key: 'empty', value: '' }]);
        expect(await store.attributes('r')).toEqual({ values: { seat2: 'bob', game: '{"round":1}', empty: '' }, version: 5 });
        expect(await store.attributes('other')).toEqual({ values: {}, version: 0 });
      });

      it('return the changes after a version, [] when current, null when ahead', async () => {
        await owner.setAttributes('r', { a: '1', b: '2' });
        await owner.setAttributes('r', { a: null, c: '3' });
        const all = await store.attributeChanges('r', 0);
        expect(all).toEqual([
          { version: 1, key: 'a', value: '1' },
          { version: 2, key: 'b', value: '2' },
          { version: 3, key: 'a', value: null },
          { version: 4, key: 'c', value: '3' },
        ]);
        expect(await store.attributeChanges('r', 2)).toEqual(all!.slice(2));
        expect(await store.attributeChanges('r', 4)).toEqual([]);
        expect(await store.attributeChanges('r', 5)).toBeNull();
        await expect(store.attributeChanges('r', -1)).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
      });

      it('answer null once the changes a reader needs were trimmed from the bounded log', async () => {
        const changes = Object.fromEntries(Array.from({ length: 1300 }, (_, i) => [`k${i}`, `v${i}`]));
        const applied = await owner.setAttributes('r', changes);
        expect(applied.map((c) => c.version)).toEqual(range(1, 1300));
        expect(await store.attributeChanges('r', 0)).toBeNull();
        expect(await store.attributeChanges('r', 199)).toBeNull();
        const recent = await store.attributeChanges('r', 1250);
        expect(recent?.map((c) => c.version)).toEqual(range(1251, 1300));
        expect(recent?.[0]).toEqual({ version: 1251, key: 'k1250', value: 'v1250' });
        // The default log keeps at least the newest 1000.
        expect((await store.attributeChanges('r', 300))?.length).toBe(1000);
        const { values, version } = await store.attributes('r');
        expect(version).toBe(1300);
        expect(Object.keys(values)).toHaveLength(1300);
      });

      it('get distinct consecutive versions from concurrent writes, continued by the next owner', async () => {
        const peer = new Owner(await fixture.peer(), 'owner-b');
        const write = (by: Owner, i: number): Promise<AttributeChange[]> => by.setAttributes('r', { [`k${i}`]: 'x', shared: String(i) });
        const results = await Promise.all(range(0, 19).map((i) => write(owner, i)));
        await owner.release('r');
        results.push(...(await Promise.all(range(20, 39).map((i) => write(peer, i)))));
        const versions = results.flat().map((c) => c.version);
        expect([...versions].sort((x, y) => x - y)).toEqual(range(1, versions.length));
        expect(versions.length).toBe(80);
        for (const changes of results) expect(changes[1]!.version).toBe(changes[0]!.version + 1);
        const log = await store.attributeChanges('r', 0);
        expect(log?.map((c) => c.version)).toEqual(range(1, 80));
        const { values } = await peer.store.attributes('r');
        expect(values.shared).toBe(log?.at(-1)?.value);
      });

      it('reject values that are neither strings nor null', async () => {
        await expect(owner.setAttributes('r', { a: 1 as unknown as string })).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
        expect(await store.attributes('r')).toEqual({ values: {}, version: 0 });
      });
    });

    describe('leases', () => {
      const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

      it('one holder at a time: the holder renews with the same token, another is told who holds it', async () => {
        const first = await store.acquireLease('r', 'backend-a', 5000);
        expect(first).toEqual({ acquired: true, token: expect.any(Number) });
        expect(await store.acquireLease('r', 'backend-a', 5000)).toEqual(first);
        const peer = await fixture.peer();
        const refused = await peer.acquireLease('r', 'backend-b', 5000);
        expect(refused).toMatchObject({ acquired: false, holder: 'backend-a' });
        expect(refused.acquired === false && refused.remainingMs > 0 && refused.remainingMs <= 5000).toBe(true);
        // Leases are per room.
        expect(await peer.acquireLease('other', 'backend-b', 5000)).toMatchObject({ acquired: true });
      });

      it('renewLease keeps a lease past its first expiry; a token that is not current is not renewed', async () => {
        const grant = await store.acquireLease('r', 'backend-a', 800);
        if (!grant.acquired) throw new Error('not acquired');
        await sleep(500);
        expect(await store.renewLease('r', grant.token, 800)).toBe(true);
        await sleep(500); // past the first expiry, well before the renewed one
        expect(await store.acquireLease('r', 'backend-b', 800)).toMatchObject({ acquired: false, holder: 'backend-a' });
        expect(await store.renewLease('r', grant.token + 1, 800)).toBe(false);
        expect(await store.renewLease('nowhere', grant.token, 800)).toBe(false);
      });

      it('releaseLease lets the next holder in at once, with a higher token; a stale release is a no-op', async () => {
        const a = await store.acquireLease('r', 'backend-a', 60_000);
        if (!a.acquired) throw new Error('not acquired');
        await store.releaseLease('r', a.token);
        const b = await store.acquireLease('r', 'backend-b', 60_000);
        if (!b.acquired) throw new Error('not acquired');
        expect(b.token).toBeGreaterThan(a.token);
        await store.releaseLease('r', a.token);
        expect(await store.acquireLease('r', 'backend-a', 60_000)).toMatchObject({ acquired: false, holder: 'backend-b' });
      });

      it('after expiry another holder takes over with a higher token; the old token writes nothing', async () => {
        const peer = await fixture.peer();
        const a = await store.acquireLease('r', 'backend-a', 100);
        if (!a.acquired) throw new Error('not acquired');
        expect(await store.nextSeq('r', a.token)).toBe(1);
        await store.appendHistory('r', a.token, message(1), NO_AGE, LONG_AGO);
        await store.setAttributes('r', a.token, { k: 'a' });
        await sleep(200);

        const b = await peer.acquireLease('r', 'backend-b', 60_000);
        if (!b.acquired) throw new Error('not acquired');
        expect(b.token).toBeGreaterThan(a.token);
        expect(await store.renewLease('r', a.token, 60_000)).toBe(false);
        const stale = { code: 'ERR_STALE_OWNER' };
        await expect(store.nextSeq('r', a.token)).rejects.toMatchObject(stale);
        await expect(store.appendHistory('r', a.token, message(5), NO_AGE, LONG_AGO)).rejects.toMatchObject(stale);
        await expect(store.setAttributes('r', a.token, { k: 'stale' })).rejects.toMatchObject(stale);
        await expect(store.setAttributes('r', a.token, {})).rejects.toMatchObject(stale);
        await expect(store.dropRoom('r', a.token)).rejects.toMatchObject(stale);

        // Nothing of the refused writes happened: the new holder continues right after the old one.
        expect(await peer.nextSeq('r', b.token)).toBe(2);
        await peer.appendHistory('r', b.token, message(2), NO_AGE, LONG_AGO);
        expect(seqs(await peer.latestHistory('r', 10))).toEqual([1, 2]);
        expect(await peer.attributes('r')).toEqual({ values: { k: 'a' }, version: 1 });
      });

      it('refuses ordered writes of a room nobody holds, or with a token never issued', async () => {
        const stale = { code: 'ERR_STALE_OWNER' };
        await expect(store.nextSeq('free', 1)).rejects.toMatchObject(stale);
        await expect(store.appendHistory('free', 1, message(1), NO_AGE, LONG_AGO)).rejects.toMatchObject(stale);
        const held = await owner.token('held');
        await expect(store.nextSeq('held', held + 1000)).rejects.toMatchObject(stale);
        await expect(store.setAttributes('held', held + 1000, { a: '1' })).rejects.toMatchObject(stale);
        expect(await store.attributes('held')).toEqual({ values: {}, version: 0 });
        expect(await owner.nextSeq('held')).toBe(1);
      });

      it('dropRoom ends the lease, and the next lease still gets a higher token', async () => {
        const before = await owner.token('r');
        await owner.dropRoom('r');
        const next = await store.acquireLease('r', 'backend-b', 60_000);
        expect(next.acquired && next.token > before).toBe(true);
      });

      it('rejects an empty holder, a holder with whitespace and a ttl below 1 ms', async () => {
        const invalid = { code: 'ERR_INVALID_ARGUMENT' };
        await expect(store.acquireLease('r', '', 1000)).rejects.toMatchObject(invalid);
        await expect(store.acquireLease('r', 'a b', 1000)).rejects.toMatchObject(invalid);
        await expect(store.acquireLease('r', 'a', 0)).rejects.toMatchObject(invalid);
        await expect(store.renewLease('r', 1, 0.5)).rejects.toMatchObject(invalid);
      });
    });

    describe('lifecycle', () => {
      it('dropRoom forgets one room entirely, its sequence included', async () => {
        for (const room of ['gone', 'kept']) {
          await owner.nextSeq(room);
          await owner.nextSeq(room);
          await owner.appendHistory(room, message(2), NO_AGE, LONG_AGO);
          await store.join(room, { userId: 'u1', role: 'host', joinedAtMs: LONG_AGO });
          await store.setMute(room, 'u2', LONG_AGO + 1000);
          await store.setBan(room, 'u3', LONG_AGO + 1000);
          await store.setWhitelisted(room, 'u4', true);
          await owner.setAttributes(room, { a: '1' });
        }
        await owner.dropRoom('gone');
        await owner.dropRoom('never-existed');
        expect(await owner.nextSeq('gone')).toBe(1);
        expect(await store.readHistory('gone', 0, 10)).toEqual({ messages: [], oldestSeq: null });
        await owner.appendHistory('gone', message(1), NO_AGE, LONG_AGO);
        expect(await store.memberCount('gone')).toBe(0);
        expect(await store.members('gone', null, 10)).toEqual({ items: [], next: null });
        expect(await store.muteUntil('gone', 'u2', LONG_AGO)).toBe(0);
        expect(await store.banUntil('gone', 'u3', LONG_AGO)).toBe(0);
        expect(await store.isWhitelisted('gone', 'u4')).toBe(false);
        expect(await store.attributes('gone')).toEqual({ values: {}, version: 0 });
        expect(await store.attributeChanges('gone', 1)).toBeNull();

        expect(await owner.nextSeq('kept')).toBe(3);
        expect(seqs(await store.latestHistory('kept', 10))).toEqual([2]);
        expect(await store.memberCount('kept')).toBe(1);
        expect(await store.muteUntil('kept', 'u2', LONG_AGO)).toBe(LONG_AGO + 1000);
        expect(await store.banUntil('kept', 'u3', LONG_AGO)).toBe(LONG_AGO + 1000);
        expect(await store.isWhitelisted('kept', 'u4')).toBe(true);
        expect(await store.attributes('kept')).toEqual({ values: { a: '1' }, version: 1 });
      });

      it('treats room names with key syntax as plain names', async () => {
        const rooms = ['a', 'a}:seq', '{a}', 'a:b', 'ä 房间'];
        for (const [i, room] of rooms.entries()) for (let k = 0; k <= i; k++) await owner.nextSeq(room);
        for (const [i, room] of rooms.entries()) expect(await owner.nextSeq(room)).toBe(i + 2);
      });

      it('close is idempotent, and every later call rejects with ERR_STORE_CLOSED', async () => {
        await owner.nextSeq('r');
        await store.close();
        await store.close();
        await expect(owner.nextSeq('r')).rejects.toMatchObject({ code: 'ERR_STORE_CLOSED' });
        await expect(store.members('r', null, 10)).rejects.toMatchObject({ code: 'ERR_STORE_CLOSED' });
        await expect(store.attributes('r')).rejects.toMatchObject({ code: 'ERR_STORE_CLOSED' });
        await expect(store.setWhitelisted('r', 'u', true)).rejects.toMatchObject({ code: 'ERR_STORE_CLOSED' });
        await expect(store.isWhitelisted('r', 'u')).rejects.toMatchObject({ code: 'ERR_STORE_CLOSED' });
        await expect(store.startPresence('p', 1000)).rejects.toMatchObject({ code: 'ERR_STORE_CLOSED' });
        await expect(store.purgeExpired('r')).rejects.toMatchObject({ code: 'ERR_STORE_CLOSED' });
      });
    });
  });
}
