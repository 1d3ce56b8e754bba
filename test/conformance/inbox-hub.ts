import { afterEach, describe, expect, it } from 'vitest';
import type { DeliveryLedger } from '../../src/backends/kit/inbox/delivery-ledger.js';
import type { DeviceFeed, FeedSink } from '../../src/backends/kit/inbox/device-feed.js';
import { InboxHub, type InboxHubOptions } from '../../src/backends/kit/inbox/inbox-hub.js';
import type { InboxEntry, InboxStore, InboxStoreOptions } from '../../src/backends/kit/inbox/inbox-store.js';

/**
 * Delivery to devices (InboxHub and DeviceFeed) over every InboxStore: memory from test/unit, Redis
 * (two stores on one server, as two backend processes) from test/integration.
 */

export interface HubFixture {
  /** The two "processes": with memory, one store shared; with Redis, two connections. */
  readonly stores: readonly [InboxStore, InboxStore];
  readonly ledgers: readonly [DeliveryLedger, DeliveryLedger];
  cleanup(): Promise<void>;
}

export type HubFixtureFactory = (options: InboxStoreOptions) => Promise<HubFixture>;

/** What one device session received. */
export class Device implements FeedSink {
  readonly got: InboxEntry[] = [];
  readonly gaps: [number, number][] = [];
  readonly transients: string[] = [];
  syncedAt: number | null = null;
  feed!: DeviceFeed;

  entries(entries: readonly InboxEntry[]): void {
    this.got.push(...entries);
  }
  gap(fromSeq: number, toSeq: number): void {
    this.gaps.push([fromSeq, toSeq]);
  }
  transient(payload: Buffer): void {
    this.transients.push(payload.toString());
  }
  synced(lastSeq: number): void {
    this.syncedAt = lastSeq;
  }
  get seqs(): number[] {
    return this.got.map((e) => e.seq);
  }
  get texts(): string[] {
    return this.got.map((e) => e.body.toString());
  }
}

async function eventually(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const range = (from: number, to: number): number[] => Array.from({ length: to - from + 1 }, (_, i) => from + i);
const body = (s: string): Buffer => Buffer.from(s);

export function describeInboxHub(name: string, factory: HubFixtureFactory): void {
  describe(`InboxHub over ${name}`, () => {
    let fixture: HubFixture | null = null;
    const hubs: InboxHub[] = [];
    afterEach(async () => {
      for (const hub of hubs.splice(0)) hub.close();
      await fixture?.cleanup();
      fixture = null;
    });

    /** Two hubs, one per "process"; options apply to both. */
    const open = async (
      hubOptions: Partial<InboxHubOptions> = {},
      storeOptions: InboxStoreOptions = {},
    ): Promise<[InboxHub, InboxHub]> => {
      fixture = await factory(storeOptions);
      const made = fixture.stores.map((store, i) => new InboxHub({ store, ledger: fixture!.ledgers[i]!, ...hubOptions })) as [InboxHub, InboxHub];
      hubs.push(...made);
      return made;
    };

    const attach = (hub: InboxHub, user: string, device: string, afterSeq?: number): Device => {
      const d = new Device();
      d.feed = hub.attach(user, device, d, afterSeq === undefined ? {} : { afterSeq });
      return d;
    };

    it('gives a new device everything retained, says when it is synced, then delivers live from another process', async () => {
      const [x, y] = await open();
      for (const i of range(1, 5)) await x.deliver('ann', { body: body(`old${i}`) });
      const phone = attach(y, 'ann', 'phone');
      await eventually(() => phone.syncedAt !== null, 'synced');
      expect(phone.syncedAt).toBe(5);
      expect(phone.seqs).toEqual(range(1, 5));
      // A device that keeps up gets live entries from the notices alone: no store read.
      let reads = 0;
      const read = y.store.read.bind(y.store);
      y.store.read = (...args) => (reads++, read(...args));
      for (const i of range(6, 30)) {
        await x.deliver('ann', { body: body(`new${i}`) });
        if (i % 5 === 0) phone.feed.ack(phone.got.at(-1)!.seq);
      }
      await eventually(() => phone.got.length === 30, '30 entries');
      expect(reads).toBe(0);
      expect(phone.seqs).toEqual(range(1, 30));
      expect(phone.texts.at(-1)).toBe('new30');
      expect(phone.gaps).toEqual([]);
    });

    it('keeps at most `window` entries unacknowledged, and continues as the device acknowledges', async () => {
      const [x, y] = await open({ window: 4, pageSize: 3 });
      for (const i of range(1, 10)) await x.deliver('ann', { body: body(`m${i}`) });
      const phone = attach(y, 'ann', 'phone');
      await eventually(() => phone.got.length === 4, 'the first window');
      // Live entries beyond the window wait too.
      await x.deliver('ann', { body: body('m11') });
      await new Promise((r) => setTimeout(r, 50));
      expect(phone.seqs).toEqual(range(1, 4));
      expect(phone.feed.unacknowledged).toBe(4);
      phone.feed.ack(2);
      await eventually(() => phone.got.length === 6, 'two more');
      phone.feed.ack(6);
      await eventually(() => phone.got.length === 10, 'four more');
      phone.feed.ack(10);
      await eventually(() => phone.got.length === 11, 'the live one');
      expect(phone.seqs).toEqual(range(1, 11));
      phone.feed.ack(11);
      await eventually(async () => (await y.store.cursor('ann', 'phone')) === 11, 'the cursor in the store');
      expect(phone.syncedAt).toBe(10);
    });

    it('sends again, to the next session of a device, what it did not acknowledge', async () => {
      const [x, y] = await open();
      for (const i of range(1, 6)) await x.deliver('ann', { body: body(`m${i}`) });
      const first = attach(y, 'ann', 'phone');
      await eventually(() => first.got.length === 6, 'six entries');
      first.feed.ack(3);
      first.feed.close();
      await eventually(async () => (await x.store.cursor('ann', 'phone')) === 3, 'cursor 3 stored');
      // The device claims more than it acknowledged (it saw 6, the acks got lost): unacked ones come again.
      const second = attach(x, 'ann', 'phone', 6);
      await eventually(() => second.syncedAt !== null, 'synced');
      expect(second.seqs).toEqual([4, 5, 6]);
      second.feed.close();
      // A device that lost its data asks from further back than its cursor, and gets it.
      const third = attach(x, 'ann', 'phone', 1);
      await eventually(() => third.syncedAt !== null, 'synced');
      expect(third.seqs).toEqual(range(2, 6));
      // A device ahead of the inbox (the store lost data) starts over from what is retained.
      third.feed.close();
      const ahead = attach(y, 'ann', 'tablet', 50);
      await eventually(() => ahead.syncedAt !== null, 'synced');
      expect(ahead.seqs).toEqual(range(1, 6));
    });

    it('reports what retention removed before the device got it as a gap', async () => {
      const [x, y] = await open({}, { retention: { maxEntries: 1000, maxAgeMs: 1000 } });
      // Appended straight to the store, with old times: retention judges by the appender's clock.
      let clock = 1_700_000_000_000;
      await x.store.append('ann', { body: body('a') }, clock);
      await x.store.append('ann', { body: body('b') }, clock);
      clock += 5000;
      await x.store.append('ann', { body: body('c') }, clock);
      const phone = attach(y, 'ann', 'phone');
      await eventually(() => phone.syncedAt !== null, 'synced');
      expect(phone.gaps).toEqual([[1, 2]]);
      expect(phone.texts).toEqual(['c']);
    });

    it('reaches every device of the user, each with its own cursor, and transients only while online', async () => {
      const [x, y] = await open();
      await x.deliver('ann', { body: body('m1') });
      const phone = attach(y, 'ann', 'phone');
      const laptop = attach(x, 'ann', 'laptop');
      const other = attach(y, 'bob', 'phone');
      await eventually(() => phone.syncedAt !== null && laptop.syncedAt !== null && other.syncedAt !== null, 'all synced');
      await x.publish('ann', body('typing…'));
      await y.deliver('ann', { body: body('m2') });
      await eventually(() => phone.got.length === 2 && laptop.got.length === 2 && phone.transients.length === 1 && laptop.transients.length === 1, 'both');
      expect(phone.transients).toEqual(['typing…']);
      expect(other.got).toEqual([]);
      expect(other.transients).toEqual([]);
      phone.feed.ack(2);
      laptop.feed.ack(1);
      await eventually(async () => (await x.store.cursor('ann', 'phone')) === 2 && (await x.store.cursor('ann', 'laptop')) === 1, 'both cursors');
      // A transient published while the device is away is gone for it.
      phone.feed.close();
      await x.publish('ann', body('missed'));
      // Across nodes a transient travels asynchronously: one to bob's device on y, published after it,
      // reaches y after it (one publisher, one subscriber connection), so 'missed' has been handled there.
      await x.publish('bob', body('after'));
      await eventually(() => other.transients.length === 1, 'the transient after it');
      const back = attach(y, 'ann', 'phone');
      await eventually(() => back.syncedAt !== null, 'synced');
      await x.publish('ann', body('seen'));
      await eventually(() => back.transients.length === 1, 'one transient');
      expect(back.transients).toEqual(['seen']);
      expect(back.got).toEqual([]);
      expect(y.feeds('ann')).toHaveLength(1);
      expect(x.feeds('ann')).toHaveLength(1);
    });

    it('passes over, for the device that made it, an entry of that origin, and counts it acknowledged', async () => {
      const [x, y] = await open();
      const phone = attach(y, 'ann', 'phone');
      const laptop = attach(x, 'ann', 'laptop');
      await eventually(() => phone.syncedAt !== null && laptop.syncedAt !== null, 'both synced');
      await x.deliver('ann', { body: body('sent from the phone'), origin: 'phone' });
      await x.deliver('ann', { body: body('from elsewhere') });
      await eventually(() => laptop.got.length === 2 && phone.got.length === 1, 'the entries');
      expect(phone.texts).toEqual(['from elsewhere']);
      expect(laptop.texts).toEqual(['sent from the phone', 'from elsewhere']);
      phone.feed.ack(2);
      await eventually(async () => (await y.store.cursor('ann', 'phone')) === 2, 'the phone cursor past both');
      // A later session of the phone, from before it, still passes over it.
      phone.feed.close();
      const again = attach(x, 'ann', 'phone', 0);
      await eventually(() => again.syncedAt !== null, 'synced');
      expect(again.texts).toEqual(['from elsewhere']);
    });

    it('delivers every entry exactly once, in order, while appends race the device\'s start', async () => {
      const [x, y] = await open({ window: 16, pageSize: 5 });
      const appends: Promise<unknown>[] = [];
      for (const i of range(1, 40)) appends.push(x.deliver('ann', { body: body(`m${i}`) }));
      const phone = attach(y, 'ann', 'phone');
      for (const i of range(41, 200)) appends.push((i % 2 ? x : y).deliver('ann', { body: body(`m${i}`) }));
      await Promise.all(appends);
      // Acknowledge as entries arrive, as an SDK does.
      await eventually(() => {
        phone.feed.ack(phone.got.at(-1)?.seq ?? 0);
        return phone.got.length >= 200;
      }, '200 entries', 10_000);
      expect(phone.seqs).toEqual(range(1, 200));
    });

    it('skips expired and superseded entries, and counts deliveries, collapses and expiries per ref', async () => {
      const [x, y] = await open();
      const ledger = x.ledger!;
      const now = Date.now();
      await x.deliver('ann', { body: body('gone'), ref: 'p0', expiresAtMs: now - 1 });
      await x.deliver('ann', { body: body('score 1-0'), ref: 'p1', collapseKey: 'match', expiresAtMs: now + 60_000 });
      await x.deliver('ann', { body: body('score 2-0'), ref: 'p2', collapseKey: 'match', expiresAtMs: now + 60_000 });
      await x.deliverMany(['ann', 'bob'], { body: body('news'), ref: 'p3', expiresAtMs: now + 60_000 });
      expect(await ledger.stats('p1', now)).toMatchObject({ targeted: 1, collapsed: 1, pending: 0 });
      expect(await ledger.stats('p0', now)).toMatchObject({ targeted: 1, pending: 0, expired: 1 });
      const phone = attach(y, 'ann', 'phone');
      await eventually(() => phone.syncedAt !== null, 'synced');
      expect(phone.texts).toEqual(['score 2-0', 'news']);
      // Per-entry acknowledgement, out of order: the cursor waits for the earlier one.
      phone.feed.ackEntry(4);
      await eventually(async () => (await ledger.stats('p3', now))?.delivered === 1, 'p3 delivered once');
      expect(phone.feed.cursor).toBe(2);
      phone.feed.ackEntry(3);
      expect(phone.feed.cursor).toBe(4);
      phone.feed.ackEntry(3); // a repeat counts nothing
      await eventually(async () => (await ledger.stats('p2', now))?.delivered === 1, 'p2 delivered');
      expect(await ledger.stats('p3', now)).toMatchObject({ targeted: 2, delivered: 1, pending: 1 });
      expect(await ledger.stats('p3', now + 60_000)).toMatchObject({ targeted: 2, delivered: 1, pending: 0, expired: 1 });
      await eventually(async () => (await y.store.cursor('ann', 'phone')) === 4, 'cursor 4');
    });

    it('keeps retrying a store that fails, and delivers once it answers', async () => {
      const [, y] = await open();
      let failures = 3;
      const real = y.store.read.bind(y.store);
      y.store.read = async (...args) => {
        if (failures-- > 0) throw new Error('store down');
        return real(...args);
      };
      await y.deliver('ann', { body: body('m1') });
      const phone = attach(y, 'ann', 'phone');
      await eventually(() => phone.got.length === 1, 'the entry after the failures', 10_000);
      expect(failures).toBeLessThan(0);
    });

    it('writes a device\'s cursor at most once per cursorWriteIntervalMs while open, and at once on close', async () => {
      const [x, y] = await open({ cursorWriteIntervalMs: 300 });
      let writes = 0;
      const ack = y.store.ack.bind(y.store);
      y.store.ack = (...args) => (writes++, ack(...args));
      for (const i of range(1, 6)) await x.deliver('ann', { body: body(`m${i}`) });
      const phone = attach(y, 'ann', 'phone');
      await eventually(() => phone.got.length === 6, 'six entries');
      const started = performance.now();
      phone.feed.ack(1);
      await eventually(async () => (await x.store.cursor('ann', 'phone')) === 1, 'the first cursor, at once');
      for (const seq of range(2, 5)) phone.feed.ack(seq);
      await eventually(async () => (await x.store.cursor('ann', 'phone')) === 5, 'the latest cursor, once the interval passed');
      expect(performance.now() - started).toBeGreaterThanOrEqual(290);
      expect(writes).toBe(2);
      phone.feed.ack(6);
      phone.feed.close();
      await eventually(async () => (await x.store.cursor('ann', 'phone')) === 6, 'the cursor written on close');
      expect(writes).toBe(3);
    });

    it('stops watching a user when the last device leaves, and writes each cursor on close', async () => {
      const [x, y] = await open();
      await x.deliver('ann', { body: body('m1') });
      const phone = attach(y, 'ann', 'phone');
      const laptop = attach(y, 'ann', 'laptop');
      await eventually(() => phone.got.length === 1 && laptop.got.length === 1, 'both');
      phone.feed.ack(1);
      expect(y.users).toBe(1);
      phone.feed.close();
      expect(y.users).toBe(1);
      y.close();
      expect(y.users).toBe(0);
      expect(laptop.feed.closed).toBe(true);
      await eventually(async () => (await x.store.cursor('ann', 'phone')) === 1, 'the phone cursor');
      // A closed feed ignores late notices and acks.
      await x.deliver('ann', { body: body('m2') });
      laptop.feed.ack(2);
      await new Promise((r) => setTimeout(r, 30));
      expect(laptop.got).toHaveLength(1);
      expect(await x.store.cursor('ann', 'laptop')).toBeNull();
    });
  });
}
