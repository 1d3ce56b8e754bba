import { afterEach, describe, expect, it } from 'vitest';
import { Priority } from '../../src/protocol/constants.js';
import { ALL_TOPIC, type PushRecord, type PushStore } from '../../src/backends/push/store.js';

/**
 * The PushStore contract (src/backends/push/store.ts), run against every implementation: the memory
 * store from test/unit, the Redis store from test/integration. A new store passes this file or is not
 * a PushStore.
 */

/** Options a test may ask of a fresh store. */
export interface PushStoreSettings {
  deviceRetentionMs?: number;
  topicLogLength?: number;
}

/** A fresh store for one test, and how to dispose of it. */
export interface PushStoreFixture {
  readonly store: PushStore;
  cleanup(): Promise<void>;
}

const DAY = 24 * 3_600_000;

let nextId = 0;
function record(fields: Partial<PushRecord> & Pick<PushRecord, 'sentAtMs'>): PushRecord {
  const id = fields.id ?? `push-${nextId++}`;
  return {
    id,
    keyName: 'key',
    fingerprint: `fp-${id}`,
    audience: 'topic',
    topic: 'news',
    priority: Priority.HIGH,
    collapseKey: '',
    data: Buffer.from([0, 1, 2, 255]),
    ttlS: 60,
    expiresAtMs: fields.sentAtMs + 60_000,
    targeted: 3,
    ...fields,
  };
}

/** Polls `check` every 20 ms until it is true, for at most `ms`. */
async function eventually(check: () => Promise<boolean>, ms = 3_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export function describePushStore(name: string, create: (settings: PushStoreSettings) => Promise<PushStoreFixture>): void {
  describe(`PushStore conformance: ${name}`, () => {
    let fixtures: PushStoreFixture[] = [];
    const open = async (settings: PushStoreSettings = {}): Promise<PushStore> => {
      const fixture = await create(settings);
      fixtures.push(fixture);
      return fixture.store;
    };
    afterEach(async () => {
      await Promise.all(fixtures.map((f) => f.cleanup()));
      fixtures = [];
    });

    it('hands an id to one claimant until it completes, releases, or its claim lapses', async () => {
      const store = await open();
      expect(await store.claim('a', 60_000)).toEqual({ kind: 'claimed' });
      expect(await store.claim('a', 60_000)).toEqual({ kind: 'pending' });
      await store.release('a');
      expect(await store.claim('a', 60_000)).toEqual({ kind: 'claimed' });
      const r = record({ id: 'a', sentAtMs: Date.now() });
      await store.complete(r, DAY);
      const done = await store.claim('a', 60_000);
      expect(done.kind).toBe('done');
      expect(done.kind === 'done' && done.record).toEqual(r);

      expect(await store.claim('b', 50)).toEqual({ kind: 'claimed' });
      await eventually(async () => (await store.claim('b', 60_000)).kind === 'claimed');
    });

    it('keeps a record with zero counters until its retention ends', async () => {
      const store = await open();
      expect(await store.status('nothing')).toBeNull();
      const now = Date.now();
      const r = record({ sentAtMs: now, expiresAtMs: now + 100 });
      await store.claim(r.id, 60_000);
      await store.complete(r, 100);
      expect(await store.status(r.id)).toEqual({ record: r, delivered: 0, replaced: 0 });
      await eventually(async () => (await store.status(r.id)) === null);
    });

    it('counts a device once per push, only for topic pushes it was subscribed to when sent', async () => {
      const store = await open();
      const t0 = Date.now() - 10_000;
      await store.touchDevice('u/old', t0);
      expect(await store.subscribe('u/old', ['news'], t0, 64)).toEqual(['news']);
      const news = record({ sentAtMs: t0 + 1_000 });
      const all = record({ audience: 'all', topic: ALL_TOPIC, sentAtMs: t0 + 1_000 });
      const users = record({ audience: 'users', topic: '', sentAtMs: t0 + 1_000 });
      for (const r of [news, all, users]) await store.complete(r, DAY);
      await store.touchDevice('u/late', t0 + 2_000);
      await store.subscribe('u/late', ['news'], t0 + 2_000, 64);

      expect(await store.ack([{ id: news.id, device: 'u/old' }, { id: news.id, device: 'u/old' }, { id: all.id, device: 'u/old' }])).toBe(2);
      expect(await store.ack([{ id: news.id, device: 'u/late' }, { id: all.id, device: 'u/late' }])).toBe(0);
      expect(await store.ack([{ id: users.id, device: 'u/old' }, { id: 'unknown', device: 'u/old' }])).toBe(0);
      expect(await store.ack([{ id: news.id, device: 'u/stranger' }])).toBe(0);
      expect((await store.status(news.id))!.delivered).toBe(1);
      expect((await store.status(all.id))!.delivered).toBe(1);

      await store.markReplaced([all.id], 'u/old');
      await store.markReplaced([all.id, all.id, news.id], 'u/late');
      expect((await store.status(all.id))!.replaced).toBe(1);
      expect((await store.status(news.id))!.replaced).toBe(0);
    });

    it('keeps a device in ALL_TOPIC and its topics, with their times, across touches', async () => {
      const store = await open();
      const t0 = Date.now();
      expect(await store.touchDevice('u/d', t0)).toEqual(new Map([[ALL_TOPIC, t0]]));
      expect(await store.subscribe('u/d', ['b', 'a', 'a'], t0 + 1, 64)).toEqual(['a', 'b']);
      expect(await store.subscribe('u/d', ['a', 'c'], t0 + 2, 64)).toEqual(['a', 'b', 'c']);
      expect(await store.touchDevice('u/d', t0 + 3)).toEqual(
        new Map([
          [ALL_TOPIC, t0],
          ['a', t0 + 1],
          ['b', t0 + 1],
          ['c', t0 + 2],
        ]),
      );
      expect(await store.unsubscribe('u/d', ['b', ALL_TOPIC, 'never'])).toEqual(['a', 'c']);
      expect(await store.subscriberCount('a')).toBe(1);
      expect(await store.subscriberCount('b')).toBe(0);
      await store.touchDevice('u/e', t0);
      expect(await store.subscriberCount(ALL_TOPIC)).toBe(2);
    });

    it('refuses a subscribe that would pass the topic limit, changing nothing', async () => {
      const store = await open();
      const now = Date.now();
      await store.subscribe('u/d', ['a', 'b'], now, 3);
      expect(await store.subscribe('u/d', ['c', 'd'], now, 3)).toBeNull();
      expect(await store.subscribe('u/d', ['a', 'c'], now, 3)).toEqual(['a', 'b', 'c']);
      expect(await store.subscriberCount('d')).toBe(0);
    });

    it('forgets a device not seen within the retention', async () => {
      const store = await open({ deviceRetentionMs: 1_000 });
      const t0 = Date.now() - 5_000;
      await store.subscribe('u/d', ['a'], t0, 64);
      expect(await store.subscriberCount(ALL_TOPIC)).toBe(0);
      const now = Date.now();
      expect(await store.touchDevice('u/d', now)).toEqual(new Map([[ALL_TOPIC, now]]));
      expect(await store.subscriberCount('a')).toBe(0);
    });

    it('owes a device the unexpired, unacked, unreplaced TTL pushes of its topics sent since it subscribed', async () => {
      const store = await open();
      const t0 = Date.now() - 10_000;
      await store.touchDevice('u/d', t0);
      await store.subscribe('u/d', ['news'], t0 + 100, 64);
      const before = record({ sentAtMs: t0 + 50 });
      const owed1 = record({ sentAtMs: t0 + 200 });
      const owedAll = record({ audience: 'all', topic: ALL_TOPIC, sentAtMs: t0 + 300 });
      const expired = record({ sentAtMs: t0 + 400, expiresAtMs: t0 + 500 });
      const acked = record({ sentAtMs: t0 + 500 });
      const replaced = record({ sentAtMs: t0 + 600 });
      const online = record({ sentAtMs: t0 + 700, ttlS: 0 });
      const other = record({ topic: 'sport', sentAtMs: t0 + 800 });
      const owed2 = record({ sentAtMs: t0 + 900 });
      for (const r of [owed2, before, owed1, owedAll, expired, acked, replaced, online, other]) await store.complete(r, DAY);
      await store.ack([{ id: acked.id, device: 'u/d' }]);
      await store.markReplaced([replaced.id], 'u/d');
      const topics = await store.touchDevice('u/d', Date.now());
      expect((await store.backlog('u/d', topics, Date.now())).map((r) => r.id)).toEqual([owed1.id, owedAll.id, owed2.id]);
      expect(await store.backlog('u/other', topics, Date.now())).toHaveLength(5);
    });

    it('bounds a topic log to its newest pushes', async () => {
      const store = await open({ topicLogLength: 3 });
      const t0 = Date.now() - 10_000;
      await store.touchDevice('u/d', t0);
      const pushes = Array.from({ length: 5 }, (_, i) => record({ audience: 'all', topic: ALL_TOPIC, sentAtMs: t0 + 1 + i }));
      for (const r of pushes) await store.complete(r, DAY);
      const topics = await store.touchDevice('u/d', Date.now());
      expect((await store.backlog('u/d', topics, Date.now())).map((r) => r.id)).toEqual(pushes.slice(2).map((r) => r.id));
    });

    it('sums online counts over live nodes and forgets a node that stops renewing', async () => {
      const store = await open();
      await store.setOnline('n1', new Map([[ALL_TOPIC, 3], ['a', 2]]), 60_000);
      await store.setOnline('n2', new Map([[ALL_TOPIC, 1], ['a', 1]]), 300);
      expect(await store.onlineCount(ALL_TOPIC)).toBe(4);
      await store.setOnline('n1', new Map([['a', 0]]), 60_000);
      expect(await store.onlineCount('a')).toBe(1);
      expect(await store.onlineCount(ALL_TOPIC)).toBe(4);
      expect(await store.renewNode('n1', 60_000)).toBe(true);
      expect(await store.renewNode('n9', 60_000)).toBe(false);
      await eventually(async () => (await store.onlineCount(ALL_TOPIC)) === 3);
      expect(await store.renewNode('n2', 60_000)).toBe(false);
      await store.removeNode('n1');
      expect(await store.onlineCount(ALL_TOPIC)).toBe(0);
    });

    it('keeps the proxies attached to each live node, lapsing with the node', async () => {
      const store = await open();
      await store.setOnline('n1', new Map(), 60_000);
      await store.setProxies('n1', ['p1', 'p2'], 60_000);
      await store.setOnline('n2', new Map(), 300);
      await store.setProxies('n2', ['p2', 'p3'], 300);
      expect(await store.proxyNodes()).toEqual(new Map([['p1', ['n1']], ['p2', ['n1', 'n2']], ['p3', ['n2']]]));
      await store.setProxies('n1', ['p1'], 60_000);
      expect((await store.proxyNodes()).get('p2')).toEqual(['n2']);
      await eventually(async () => !(await store.proxyNodes()).has('p3'));
      expect(await store.proxyNodes()).toEqual(new Map([['p1', ['n1']]]));
      await store.removeNode('n1');
      expect((await store.proxyNodes()).size).toBe(0);
    });

    it("hands a forwarded message to the node's listener only", async () => {
      const store = await open();
      const got: string[] = [];
      const other: string[] = [];
      await store.listen('n1', (m) => got.push(m));
      await store.listen('n2', (m) => other.push(m));
      await store.forward('n1', 'hello');
      await store.forward('n9', 'lost');
      await eventually(async () => got.length === 1);
      expect(got).toEqual(['hello']);
      expect(other).toEqual([]);
    });

    it('admits a burst of calls per key, then its rate, each key apart', async () => {
      const store = await open();
      const waits: number[] = [];
      for (let i = 0; i < 4; i++) waits.push(await store.takeCall('slow', 1, 3));
      expect(waits.slice(0, 3)).toEqual([0, 0, 0]);
      expect(waits[3]).toBeGreaterThan(0);
      expect(waits[3]).toBeLessThanOrEqual(1000);
      expect(await store.takeCall('other', 1, 1)).toBe(0);
    });

    it('refuses every call once closed', async () => {
      const store = await open();
      await store.close();
      await store.close();
      await expect(store.status('a')).rejects.toMatchObject({ code: 'ERR_STORE_CLOSED' });
      await expect(store.claim('a', 10)).rejects.toMatchObject({ code: 'ERR_STORE_CLOSED' });
    });
  });
}
