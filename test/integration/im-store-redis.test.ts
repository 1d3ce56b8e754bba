import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { encodeMessageFields, inboxMessageBody } from '../../src/backends/im/im-codec.js';
import { RedisImStore } from '../../src/backends/im/redis-store.js';
import { RedisInboxStore } from '../../src/backends/kit/inbox/redis-inbox-store.js';
import { describeImStore } from '../conformance/im-store.js';
import { redisServerForFile } from '../helpers/redis-for-file.js';

const server = redisServerForFile();

describeImStore('redis', async () => {
  const keyPrefix = server.prefix('im');
  const stores: { close(): Promise<void> }[] = [new RedisImStore({ url: server.url, keyPrefix })];
  return {
    store: stores[0] as RedisImStore,
    async peer() {
      const peer = new RedisImStore({ url: server.url, keyPrefix });
      stores.push(peer);
      return peer;
    },
    async retaining(retention) {
      // Data of its own: the conformance users' inboxes in the shared prefix are filled already.
      const prefix = server.prefix('im-retained');
      const inbox = new RedisInboxStore({ url: server.url, keyPrefix: `${prefix}inbox:`, retention });
      const store = new RedisImStore({ url: server.url, keyPrefix: prefix, inbox });
      stores.push(store, inbox);
      return store;
    },
    async cleanup() {
      await Promise.all(stores.map((s) => s.close()));
    },
  };
});

describe('RedisImStore specifics', () => {
  it('builds in Lua the same inbox bytes as im-codec\'s inboxMessageBody, multi-byte varints included', async () => {
    const store = new RedisImStore({ url: server.url, keyPrefix: 'bytes:' });
    try {
      const limits = { maxMessages: 1000, maxAgeMs: Number.POSITIVE_INFINITY, dedupeTtlMs: 60_000 };
      for (let i = 1; i <= 300; i++) {
        const message = { serverId: `s${i}`, sender: 'ann', recipient: 'bob', body: Buffer.alloc(i % 2 ? 5 : 200, i), sentAtMs: 1_700_000_000_000 + i, clientMsgId: `c${i}`, senderDevice: 'd' };
        const fields = encodeMessageFields(message);
        const outcome = await store.storeMessage(message, fields, limits, 1);
        if (outcome.kind !== 'stored') throw new Error('not stored');
        if (i % 50 !== 0 && i !== 1 && i !== 128 && i !== 129) continue;
        const [entry] = (await store.inbox.read('bob', i - 1, 1, 1)).entries;
        expect(entry!.body.equals(inboxMessageBody(fields, outcome.message.convSeq)), `message ${i}`).toBe(true);
      }
    } finally {
      await store.close();
    }
  });

  it('keeps a conversation in one hash tag and a user in another, livemux:im: by default', async () => {
    const admin = new Redis(server.url);
    const store = new RedisImStore({ url: server.url });
    try {
      const limits = { maxMessages: 100, maxAgeMs: Number.POSITIVE_INFINITY, dedupeTtlMs: 60_000 };
      const message = { serverId: 's1', sender: 'ann', recipient: 'bob', body: Buffer.from('hi'), sentAtMs: 5, clientMsgId: 'c1', senderDevice: 'd' };
      await store.storeMessage(message, encodeMessageFields(message), limits, 5);
      await store.markRead('bob', 'ann', 1);
      await store.setBlocked('ann', 'eve', true, 10);
      await store.sessionOnline('ann', 'p:1', 60_000, Date.now());
      expect((await admin.keys('livemux:im:{c:3:ann|bob}:*')).sort()).toEqual(
        ['cmid:3:ann:c1', 'history', 'reads', 'sent', 'seq'].map((p) => `livemux:im:{c:3:ann|bob}:${p}`),
      );
      expect((await admin.keys('livemux:im:{u:ann}:*')).sort()).toEqual(['blocks', 'convs', 'sessions'].map((p) => `livemux:im:{u:ann}:${p}`));
      expect(await admin.get('livemux:im:{c:3:ann|bob}:cmid:3:ann:c1')).toBe('1 5 s1');
      expect(await admin.hgetall('livemux:im:{c:3:ann|bob}:reads')).toEqual({ bob: '1 1' });
      expect(await admin.pttl('livemux:im:{u:ann}:sessions')).toBeGreaterThan(50_000);
    } finally {
      await store.close();
      admin.disconnect();
    }
  });

  it('skips the age checks whose marks it knows, and checks again once a cutoff passes them, whichever process trimmed', async () => {
    const admin = new Redis(server.url);
    const stores = [0, 1].map(() => {
      const inbox = new RedisInboxStore({ url: server.url, keyPrefix: 'aged:inbox:', retention: { maxEntries: 1000, maxAgeMs: 1000 } });
      return { inbox, store: new RedisImStore({ url: server.url, keyPrefix: 'aged:', inbox }) };
    });
    const [a, b] = stores.map((s) => s.store) as [RedisImStore, RedisImStore];
    const limits = { maxMessages: 1000, maxAgeMs: 1000, dedupeTtlMs: 60_000 };
    const T0 = 1_700_000_000_000;
    const send = (store: RedisImStore, text: string, at: number) => {
      const message = { serverId: text, sender: 'ann', recipient: 'bob', body: Buffer.from(text), sentAtMs: at, clientMsgId: text, senderDevice: 'd' };
      return store.storeMessage(message, encodeMessageFields(message), limits, at);
    };
    const gets = async (): Promise<number> => Number(/cmdstat_get:calls=(\d+)/.exec(await admin.info('commandstats'))?.[1] ?? 0);
    try {
      await send(a, 'm1', T0);
      const before = await gets();
      await send(a, 'm2', T0 + 10);
      // The dedupe record's GET alone: the history's and both inboxes' marks are known to be young enough.
      expect((await gets()) - before).toBe(1);
      // Another process, past the cutoff: it checks (its marks are unknown) and trims m1.
      await send(b, 'm3', T0 + 1005);
      // This one remembers marks below its cutoff now: it checks, and trims m2.
      await send(a, 'm4', T0 + 1012);
      expect((await a.history('ann', 'bob', 0, 10)).messages.map((m) => m.body.toString())).toEqual(['m3', 'm4']);
      for (const user of ['ann', 'bob']) {
        const page = await a.inbox.read(user, 0, 10, T0 + 1012);
        expect(page.entries.map((e) => e.seq), user).toEqual([3, 4]);
        expect(page.gap, user).toEqual({ fromSeq: 1, toSeq: 2 });
      }
    } finally {
      await Promise.all(stores.flatMap((s) => [s.store.close(), s.inbox.close()]));
      admin.disconnect();
    }
  });

  it('fails only the send whose Redis commands fail; the sends issued with it are stored', async () => {
    const admin = new Redis(server.url);
    const store = new RedisImStore({ url: server.url, keyPrefix: 'fail:' });
    try {
      // A conv_seq counter that is not a number: INCR fails for that conversation alone.
      await admin.hset('fail:{c:3:ann|cat}:seq', 'x', '1');
      const limits = { maxMessages: 100, maxAgeMs: Number.POSITIVE_INFINITY, dedupeTtlMs: 60_000 };
      const send = (recipient: string, clientMsgId: string) => {
        const message = { serverId: clientMsgId, sender: 'ann', recipient, body: Buffer.from(clientMsgId), sentAtMs: 5, clientMsgId, senderDevice: 'd' };
        return store.storeMessage(message, encodeMessageFields(message), limits, 5);
      };
      const [before, failed, after] = await Promise.allSettled([send('bob', 'c1'), send('cat', 'c2'), send('dan', 'c3')]);
      expect(before).toMatchObject({ status: 'fulfilled', value: { kind: 'stored' } });
      expect(failed).toMatchObject({ status: 'rejected', reason: { message: expect.stringContaining('WRONGTYPE') } });
      expect(after).toMatchObject({ status: 'fulfilled', value: { kind: 'stored' } });
      expect((await store.inbox.read('cat', 0, 10, 5)).entries).toEqual([]);
      expect((await store.history('ann', 'dan', 0, 10)).messages.map((m) => m.body.toString())).toEqual(['c3']);
    } finally {
      await store.close();
      admin.disconnect();
    }
  });
});
