import { afterEach, describe, expect, it } from 'vitest';
import type { DeliveryLedger } from '../../src/backends/kit/inbox/delivery-ledger.js';
import type { InboxEntry, InboxNotice, InboxStore, InboxStoreOptions } from '../../src/backends/kit/inbox/inbox-store.js';

/**
 * The InboxStore and DeliveryLedger contracts (src/backends/kit/inbox/), run against every
 * implementation: memory from test/unit, Redis from test/integration. A new store passes this file or
 * is not an InboxStore.
 */

/** One backend under test, fresh for each test. */
export interface InboxFixture {
  readonly store: InboxStore;
  /**
   * Another store on the same data: another backend process (Redis: a second connection with the same
   * key prefix; memory: the same instance). Closed by `cleanup`.
   */
  peer(): Promise<InboxStore>;
  readonly ledger: DeliveryLedger;
  /** Another ledger on the same data. */
  peerLedger(): Promise<DeliveryLedger>;
  cleanup(): Promise<void>;
}

export type InboxFixtureFactory = (options: InboxStoreOptions & { statsTtlMs?: number }) => Promise<InboxFixture>;

/** How far past `maxEntries` a store may keep entries (the Redis store trims whole stream nodes). */
const COUNT_SLACK = 100;
const T0 = 1_700_000_000_000;
const range = (from: number, to: number): number[] => Array.from({ length: to - from + 1 }, (_, i) => from + i);
const seqs = (entries: readonly InboxEntry[]): number[] => entries.map((e) => e.seq);
const text = (entries: readonly InboxEntry[]): string[] => entries.map((e) => e.body.toString());
const body = (s: string): Buffer => Buffer.from(s);

/** Polls `check` until it holds (bounded), for what only real time or another connection settles. */
async function eventually(check: () => Promise<boolean> | boolean, what: string, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Collects a watch's notices. */
class Notices {
  readonly got: InboxNotice[] = [];
  readonly listener = (n: InboxNotice): void => void this.got.push(n);
  get entries(): InboxEntry[] {
    return this.got.flatMap((n) => (n.kind === 'entry' ? [n.entry] : []));
  }
  get transients(): string[] {
    return this.got.flatMap((n) => (n.kind === 'transient' ? [n.payload.toString()] : []));
  }
}

export function describeInboxStore(name: string, factory: InboxFixtureFactory): void {
  describe(`InboxStore conformance: ${name}`, () => {
    let fixture: InboxFixture | null = null;
    const open = async (options: Parameters<InboxFixtureFactory>[0] = {}): Promise<InboxFixture> => (fixture = await factory(options));
    afterEach(async () => {
      await fixture?.cleanup();
      fixture = null;
    });

    describe('append and read', () => {
      it('numbers each user\'s entries from 1, without holes, independently per user', async () => {
        const { store } = await open();
        const a = [];
        for (const i of range(1, 5)) a.push((await store.append('ann', { body: body(`a${i}`) }, T0 + i)).entry);
        const b = await store.append('bob', { body: body('b1') }, T0);
        expect(seqs(a)).toEqual(range(1, 5));
        expect(b.entry.seq).toBe(1);
        expect(await store.lastSeq('ann')).toBe(5);
        expect(await store.lastSeq('bob')).toBe(1);
        expect(await store.lastSeq('nobody')).toBe(0);
        expect(a[2]).toEqual({ seq: 3, body: body('a3'), ref: '', collapseKey: '', createdAtMs: T0 + 3, expiresAtMs: 0 });
      });

      it('reads entries after a seq in order, in pages, with the latest seq', async () => {
        const { store } = await open();
        for (const i of range(1, 12)) await store.append('ann', { body: body(`m${i}`), ref: `r${i}` }, T0 + i);
        const first = await store.read('ann', 0, 5, T0);
        expect(seqs(first.entries)).toEqual(range(1, 5));
        expect(first).toMatchObject({ throughSeq: 5, lastSeq: 12, gap: null });
        const next = await store.read('ann', first.throughSeq, 100, T0);
        expect(seqs(next.entries)).toEqual(range(6, 12));
        expect(text(next.entries)).toEqual(range(6, 12).map((i) => `m${i}`));
        expect(next.entries[0]).toEqual({ seq: 6, body: body('m6'), ref: 'r6', collapseKey: '', createdAtMs: T0 + 6, expiresAtMs: 0 });
        expect(next.throughSeq).toBe(12);
        // Up to date, ahead (stale), and a user never written.
        expect(await store.read('ann', 12, 10, T0)).toEqual({ entries: [], throughSeq: 12, gap: null, lastSeq: 12 });
        expect(await store.read('ann', 40, 10, T0)).toEqual({ entries: [], throughSeq: 40, gap: null, lastSeq: 12 });
        expect(await store.read('nobody', 0, 10, T0)).toEqual({ entries: [], throughSeq: 0, gap: null, lastSeq: 0 });
      });

      it('keeps bodies byte for byte, empty and binary included', async () => {
        const { store, peer } = await open();
        const other = await peer();
        const bodies = [Buffer.alloc(0), Buffer.from([0, 255, 10, 13, 0x65, 32]), Buffer.from('é 漢字\n', 'utf8'), Buffer.alloc(70_000, 7)];
        for (const b of bodies) await store.append('ann', { body: b, ref: 'réf ☃', collapseKey: '' }, T0);
        const page = await other.read('ann', 0, 10, T0);
        // equals(), not toEqual: vitest diffs a 70 kB Buffer slowly.
        expect(page.entries.map((e, i) => e.body.equals(bodies[i]!))).toEqual([true, true, true, true]);
        expect(page.entries.every((e) => e.ref === 'réf ☃')).toBe(true);
      });

      it('gives every concurrent append of one user its own seq, across processes', async () => {
        const { store, peer } = await open();
        const other = await peer();
        const results = await Promise.all(range(1, 60).map((i) => (i % 2 ? store : other).append('ann', { body: body(`c${i}`) }, T0)));
        expect(results.map((r) => r.entry.seq).sort((a, b) => a - b)).toEqual(range(1, 60));
        const page = await store.read('ann', 0, 100, T0);
        expect(seqs(page.entries)).toEqual(range(1, 60));
        // Each body is stored under the seq its append answered.
        for (const r of results) expect(page.entries[r.entry.seq - 1]!.body).toEqual(r.entry.body);
      });
    });

    describe('retention', () => {
      it('keeps at least maxEntries of the newest, and reports what was removed as a gap', async () => {
        const { store } = await open({ retention: { maxEntries: 10, maxAgeMs: Number.POSITIVE_INFINITY } });
        for (const i of range(1, 300)) await store.append('ann', { body: body(`m${i}`) }, T0 + i);
        const page = await store.read('ann', 0, 1000, T0);
        const kept = seqs(page.entries);
        expect(kept.length).toBeGreaterThanOrEqual(10);
        expect(kept.length).toBeLessThanOrEqual(10 + COUNT_SLACK);
        expect(kept).toEqual(range(kept[0]!, 300));
        expect(page.gap).toEqual({ fromSeq: 1, toSeq: kept[0]! - 1 });
        // A reader that saw up to just before the oldest kept lost nothing.
        expect((await store.read('ann', kept[0]! - 1, 10, T0)).gap).toBeNull();
        expect((await store.read('ann', 5, 10, T0)).gap).toEqual({ fromSeq: 6, toSeq: kept[0]! - 1 });
      });

      it('removes entries older than maxAgeMs at the next append, never the newest', async () => {
        const { store } = await open({ retention: { maxEntries: 1000, maxAgeMs: 1000 } });
        for (const i of range(1, 5)) await store.append('ann', { body: body(`old${i}`) }, T0 + i);
        // Nothing is removed without an append, however late the read.
        expect(seqs((await store.read('ann', 0, 10, T0 + 60_000)).entries)).toEqual(range(1, 5));
        await store.append('ann', { body: body('late') }, T0 + 1004);
        const page = await store.read('ann', 0, 10, T0);
        expect(seqs(page.entries)).toEqual([4, 5, 6]);
        expect(page.gap).toEqual({ fromSeq: 1, toSeq: 3 });
        // An append older than the bound itself (a slow clock) is still kept by its own append.
        await store.append('ann', { body: body('ancient') }, T0 - 50_000);
        expect(seqs((await store.read('ann', 6, 10, T0)).entries)).toEqual([7]);
        expect(await store.lastSeq('ann')).toBe(7);
      });
    });

    describe('expiry and collapse', () => {
      it('skips expired entries without a gap, and continues after them', async () => {
        const { store } = await open();
        await store.append('ann', { body: body('keep1') }, T0);
        await store.append('ann', { body: body('short'), ref: 'p1', expiresAtMs: T0 + 100 }, T0);
        await store.append('ann', { body: body('keep2'), expiresAtMs: T0 + 10_000 }, T0);
        expect(text((await store.read('ann', 0, 10, T0 + 99)).entries)).toEqual(['keep1', 'short', 'keep2']);
        const later = await store.read('ann', 0, 10, T0 + 100);
        expect(text(later.entries)).toEqual(['keep1', 'keep2']);
        expect(later).toMatchObject({ gap: null, throughSeq: 3 });
        // A page that ends on a skipped entry still moves the reader past it.
        const partial = await store.read('ann', 1, 1, T0 + 100);
        expect(partial).toMatchObject({ entries: [], throughSeq: 2, gap: null, lastSeq: 3 });
        expect(text((await store.read('ann', 0, 10, T0 + 20_000)).entries)).toEqual(['keep1']);
      });

      it('supersedes an older entry of the same collapse key and names it', async () => {
        const { store } = await open();
        const first = await store.append('ann', { body: body('score 1-0'), ref: 'p1', collapseKey: 'match' }, T0);
        await store.append('ann', { body: body('other'), collapseKey: 'weather' }, T0);
        const second = await store.append('ann', { body: body('score 2-0'), ref: 'p2', collapseKey: 'match' }, T0);
        expect(first.superseded).toBeNull();
        expect(second.superseded).toEqual({ seq: 1, ref: 'p1' });
        expect(text((await store.read('ann', 0, 10, T0)).entries)).toEqual(['other', 'score 2-0']);
        const third = await store.append('ann', { body: body('score 2-1'), ref: 'p3', collapseKey: 'match' }, T0);
        expect(third.superseded).toEqual({ seq: 3, ref: 'p2' });
        // Keys are per user.
        expect((await store.append('bob', { body: body('x'), collapseKey: 'match' }, T0)).superseded).toBeNull();
        const page = await store.read('ann', 0, 10, T0);
        expect(seqs(page.entries)).toEqual([2, 4]);
        expect(page.gap).toBeNull();
      });

      it('does not name a superseded entry that retention already removed', async () => {
        const { store } = await open({ retention: { maxEntries: 1000, maxAgeMs: 1000 } });
        await store.append('ann', { body: body('v1'), ref: 'p1', collapseKey: 'k' }, T0);
        await store.append('ann', { body: body('filler') }, T0 + 5000);
        expect((await store.append('ann', { body: body('v2'), ref: 'p2', collapseKey: 'k' }, T0 + 5001)).superseded).toBeNull();
      });
    });

    describe('dedupe', () => {
      it('stores a retried append once and answers the first one', async () => {
        const { store, peer } = await open();
        const other = await peer();
        const first = await store.append('ann', { body: body('hello'), dedupeKey: 'msg-1' }, T0);
        await store.append('ann', { body: body('between') }, T0 + 1);
        const again = await other.append('ann', { body: body('hello'), dedupeKey: 'msg-1' }, T0 + 2);
        expect(first.duplicate).toBe(false);
        expect(again).toEqual({ entry: { ...first.entry }, duplicate: true, superseded: null });
        expect(await store.lastSeq('ann')).toBe(2);
        // Another key, or the same key for another user, is a new entry.
        expect((await store.append('ann', { body: body('x'), dedupeKey: 'msg-2' }, T0)).entry.seq).toBe(3);
        expect((await store.append('bob', { body: body('x'), dedupeKey: 'msg-1' }, T0)).duplicate).toBe(false);
      });

      it('forgets a dedupe key after dedupeTtlMs', async () => {
        const { store } = await open({ dedupeTtlMs: 150 });
        await store.append('ann', { body: body('a'), dedupeKey: 'k' }, T0);
        expect((await store.append('ann', { body: body('a'), dedupeKey: 'k' }, T0)).duplicate).toBe(true);
        await eventually(async () => !(await store.append('ann', { body: body('a'), dedupeKey: 'k' }, T0)).duplicate, 'the key to be forgotten');
        expect(await store.lastSeq('ann')).toBe(2);
      });
    });

    describe('device cursors', () => {
      it('moves a cursor forward only, never past the latest seq', async () => {
        const { store, peer } = await open();
        const other = await peer();
        for (const i of range(1, 5)) await store.append('ann', { body: body(`m${i}`) }, T0);
        expect(await store.cursor('ann', 'phone')).toBeNull();
        expect(await store.ack('ann', 'phone', 3, T0 + 10)).toBe(3);
        expect(await other.ack('ann', 'phone', 2, T0 + 11)).toBe(3);
        expect(await store.ack('ann', 'phone', 99, T0 + 12)).toBe(5);
        expect(await other.cursor('ann', 'phone')).toBe(5);
        expect(await store.ack('ann', 'laptop', 0, T0 + 13)).toBe(0);
        const devices = (await other.devices('ann')).sort((a, b) => a.device.localeCompare(b.device));
        expect(devices).toEqual([
          { device: 'laptop', cursor: 0, ackedAtMs: T0 + 13 },
          { device: 'phone', cursor: 5, ackedAtMs: T0 + 12 },
        ]);
        await store.forgetDevice('ann', 'phone');
        expect(await other.cursor('ann', 'phone')).toBeNull();
        expect(await store.devices('nobody')).toEqual([]);
        expect(await store.ack('nobody', 'd', 4, T0)).toBe(0);
      });

      it('forgets the least recently acknowledged device beyond maxDevices', async () => {
        const { store } = await open({ maxDevices: 2 });
        await store.append('ann', { body: body('m') }, T0);
        await store.ack('ann', 'd1', 1, T0 + 1);
        await store.ack('ann', 'd2', 1, T0 + 2);
        await store.ack('ann', 'd1', 1, T0 + 3);
        await store.ack('ann', 'd3', 0, T0 + 4);
        expect((await store.devices('ann')).map((d) => d.device).sort()).toEqual(['d1', 'd3']);
      });
    });

    describe('notices', () => {
      it('tells watchers on another process of each append, in seq order, with the whole entry', async () => {
        const { store, peer } = await open();
        const other = await peer();
        const seen = new Notices();
        const watch = other.watch('ann', seen.listener);
        await watch.ready;
        const appended: InboxEntry[] = [];
        for (const i of range(1, 20)) {
          const b = i === 3 ? Buffer.from([0, 0x65, 10, 255]) : body(`m${i}`);
          appended.push((await store.append('ann', { body: b, ref: i % 2 ? 'push-☃' : '', collapseKey: i === 5 ? 'k' : '', expiresAtMs: i === 7 ? T0 + 9 : 0 }, T0 + i)).entry);
        }
        await store.append('bob', { body: body('not for ann') }, T0);
        await eventually(() => seen.entries.length === 20, '20 notices');
        expect(seen.entries).toEqual(appended);
        watch.close();
      });

      it('tells every watcher, sends transients without storing them, and stops at close', async () => {
        const { store, peer } = await open();
        const other = await peer();
        const one = new Notices();
        const two = new Notices();
        const w1 = other.watch('ann', one.listener);
        const w2 = store.watch('ann', two.listener);
        await Promise.all([w1.ready, w2.ready]);
        await store.publish('ann', body('typing'));
        await store.append('ann', { body: body('m1'), dedupeKey: 'd' }, T0);
        await store.append('ann', { body: body('m1'), dedupeKey: 'd' }, T0); // a duplicate is not news
        await eventually(() => one.got.length === 2 && two.got.length === 2, 'two notices each');
        expect(one.transients).toEqual(['typing']);
        expect(seqs(two.entries)).toEqual([1]);
        expect(await store.lastSeq('ann')).toBe(1);
        w1.close();
        w1.close();
        await store.append('ann', { body: body('m2') }, T0);
        await eventually(() => two.got.length === 3, 'the second watcher still hears');
        // The first one, closed, heard nothing more (the second heard m2, sent after the close).
        expect(one.got).toHaveLength(2);
        w2.close();
      });

      it('watches one user twice with one listener as two registrations', async () => {
        const { store } = await open();
        const seen = new Notices();
        const a = store.watch('ann', seen.listener);
        const b = store.watch('ann', seen.listener);
        await Promise.all([a.ready, b.ready]);
        await store.append('ann', { body: body('m') }, T0);
        await eventually(() => seen.got.length === 2, 'two notices');
        a.close();
        await store.append('ann', { body: body('n') }, T0);
        await eventually(() => seen.got.length === 3, 'one more notice');
        b.close();
      });
    });

    describe('errors', () => {
      it('rejects bad arguments with ERR_INVALID_ARGUMENT', async () => {
        const { store } = await open();
        const bad = { code: 'ERR_INVALID_ARGUMENT' };
        await expect(store.append('', { body: body('x') }, T0)).rejects.toMatchObject(bad);
        await expect(store.append('ann', { body: 'x' as unknown as Buffer }, T0)).rejects.toMatchObject(bad);
        await expect(store.append('ann', { body: body('x'), ref: 'r'.repeat(257) }, T0)).rejects.toMatchObject(bad);
        await expect(store.append('ann', { body: body('x'), expiresAtMs: -1 }, T0)).rejects.toMatchObject(bad);
        await expect(store.append('ann', { body: body('x') }, 1.5)).rejects.toMatchObject(bad);
        await expect(store.read('ann', -1, 10, T0)).rejects.toMatchObject(bad);
        await expect(store.read('ann', 0, 0, T0)).rejects.toMatchObject(bad);
        await expect(store.ack('ann', '', 1, T0)).rejects.toMatchObject(bad);
        await expect(store.ack('ann', 'd', Number.NaN, T0)).rejects.toMatchObject(bad);
        expect(() => store.watch('', () => undefined)).toThrow(expect.objectContaining(bad));
        expect(await store.lastSeq('ann')).toBe(0);
      });

      it('refuses every call after close with ERR_STORE_CLOSED', async () => {
        const { store } = await open();
        await store.close();
        await store.close();
        const closed = { code: 'ERR_STORE_CLOSED' };
        await expect(store.append('ann', { body: body('x') }, T0)).rejects.toMatchObject(closed);
        await expect(store.read('ann', 0, 1, T0)).rejects.toMatchObject(closed);
        await expect(store.ack('ann', 'd', 1, T0)).rejects.toMatchObject(closed);
        await expect(store.publish('ann', body('x'))).rejects.toMatchObject(closed);
        expect(() => store.watch('ann', () => undefined)).toThrow(expect.objectContaining(closed));
      });
    });
  });

  describe(`DeliveryLedger conformance: ${name}`, () => {
    let fixture: InboxFixture | null = null;
    const open = async (options: Parameters<InboxFixtureFactory>[0] = {}): Promise<InboxFixture> => (fixture = await factory(options));
    afterEach(async () => {
      await fixture?.cleanup();
      fixture = null;
    });

    it('counts each member once, in exactly one state, on every process', async () => {
      const { ledger, peerLedger } = await open();
      const other = await peerLedger();
      await ledger.target('p1', ['ann', 'bob', 'cat', 'dan'], T0 + 1000, T0);
      expect(await other.stats('p1', T0)).toEqual({ targeted: 4, delivered: 0, collapsed: 0, pending: 4, expired: 0, expiresAtMs: T0 + 1000 });
      expect(await other.delivered('p1', 'ann')).toBe(true);
      expect(await ledger.delivered('p1', 'ann')).toBe(false);
      expect(await ledger.collapsed('p1', 'bob')).toBe(true);
      expect(await other.collapsed('p1', 'bob')).toBe(false);
      expect(await other.collapsed('p1', 'ann')).toBe(false); // delivered stays delivered
      expect(await ledger.stats('p1', T0)).toMatchObject({ targeted: 4, delivered: 1, collapsed: 1, pending: 2, expired: 0 });
      // A collapsed member that acknowledges after all was delivered.
      expect(await other.delivered('p1', 'bob')).toBe(true);
      expect(await ledger.stats('p1', T0)).toMatchObject({ delivered: 2, collapsed: 0, pending: 2 });
      // Past the expiry, the undecided are expired; an acknowledgement that arrives late still counts.
      expect(await ledger.stats('p1', T0 + 1000)).toMatchObject({ targeted: 4, delivered: 2, pending: 0, expired: 2 });
      expect(await ledger.delivered('p1', 'cat')).toBe(true);
      expect(await other.stats('p1', T0 + 5000)).toMatchObject({ targeted: 4, delivered: 3, collapsed: 0, pending: 0, expired: 1 });
    });

    it('targets idempotently, takes the latest expiry, and adds members that acknowledge unannounced', async () => {
      const { ledger } = await open();
      await ledger.target('p2', ['ann'], T0 + 10, T0);
      await ledger.delivered('p2', 'ann');
      await ledger.target('p2', ['ann', 'bob'], T0 + 5, T0);
      expect(await ledger.stats('p2', T0)).toMatchObject({ targeted: 2, delivered: 1, pending: 1, expiresAtMs: T0 + 10 });
      await ledger.target('p2', [], 0, T0);
      expect(await ledger.delivered('p2', 'cat')).toBe(true);
      expect(await ledger.stats('p2', T0)).toMatchObject({ targeted: 3, delivered: 2, pending: 1 });
      // A ref that never expires is never expired.
      await ledger.target('forever', ['ann'], 0, T0);
      expect(await ledger.stats('forever', Number.MAX_SAFE_INTEGER)).toMatchObject({ pending: 1, expired: 0, expiresAtMs: 0 });
    });

    it('knows nothing of a ref never targeted, and forgets one statsTtlMs after its expiry', async () => {
      const { ledger } = await open({ statsTtlMs: 150 });
      expect(await ledger.stats('nope', T0)).toBeNull();
      expect(await ledger.delivered('nope', 'ann')).toBe(false);
      expect(await ledger.collapsed('nope', 'ann')).toBe(false);
      expect(await ledger.stats('nope', T0)).toBeNull();
      const now = Date.now();
      await ledger.target('brief', ['ann'], now, now);
      expect(await ledger.stats('brief', now)).not.toBeNull();
      await eventually(async () => (await ledger.stats('brief', Date.now())) === null, 'the statistics to be forgotten');
      expect(await ledger.delivered('brief', 'ann')).toBe(false);
    });

    it('rejects bad arguments and calls after close', async () => {
      const { ledger } = await open();
      await expect(ledger.target('', ['a'], 0, T0)).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
      await expect(ledger.target('p', [''], 0, T0)).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
      await expect(ledger.target('p', ['a'], -5, T0)).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
      await expect(ledger.delivered('p', '')).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
      await ledger.close();
      await expect(ledger.stats('p', T0)).rejects.toMatchObject({ code: 'ERR_STORE_CLOSED' });
    });
  });
}
