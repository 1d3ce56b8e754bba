import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { RedisChatStore } from '../../src/backends/chat/redis-store.js';
import { Priority } from '../../src/protocol/constants.js';
import { describeChatStore } from '../conformance/chat-store.js';
import { redisServerForFile } from '../helpers/redis-for-file.js';
import { startRedisServer } from '../helpers/redis-server.js';

const server = redisServerForFile();

// Each test gets its own key prefix on the one server, so tests never see each other's rooms; a peer
// is a second connection on the same prefix, as a room's next owner would open.
describeChatStore('redis', async () => {
  const keyPrefix = server.prefix('test');
  const opened = [new RedisChatStore({ url: server.url, keyPrefix })];
  return {
    store: opened[0]!,
    async peer() {
      const peer = new RedisChatStore({ host: '127.0.0.1', port: server.port, keyPrefix });
      opened.push(peer);
      return peer;
    },
    async cleanup() {
      await Promise.all(opened.map((s) => s.close()));
    },
  };
});

/** A lease token of `room` for a test's writes. */
async function leaseToken(store: RedisChatStore, room: string): Promise<number> {
  const grant = await store.acquireLease(room, 'test', 60_000);
  if (!grant.acquired) throw new Error('lease not acquired');
  return grant.token;
}

describe('RedisChatStore specifics', () => {
  const limits = { maxLength: 100, maxAgeMs: 60_000 };

  it('names keys <prefix>{<room>}:<part>, livemux:chat: by default', async () => {
    const admin = new Redis(server.url);
    const store = new RedisChatStore({ url: server.url });
    try {
      const token = await leaseToken(store, 'keys-room');
      await store.nextSeq('keys-room', token);
      await store.appendHistory('keys-room', token, { seq: 1, priority: Priority.HIGH, senderId: 'u', sentAtMs: 1, body: Buffer.from('x') }, limits, 1);
      await store.startPresence('proxy-1', 60_000);
      await store.join('keys-room', { userId: 'u', role: 'member', joinedAtMs: 1, presence: 'proxy-1' });
      await store.setAttributes('keys-room', token, { a: 'b' });
      expect((await admin.keys('livemux:chat:{keys-room}:*')).sort()).toEqual(
        ['attrlog', 'attrs', 'attrver', 'fence', 'history', 'lease', 'members', 'order', 'presence', 'seq'].map((p) => `livemux:chat:{keys-room}:${p}`),
      );
      expect(await admin.get('livemux:chat:{keys-room}:lease')).toBe(`${token} test`);
      expect(await admin.hgetall('livemux:chat:{keys-room}:presence')).toEqual({ 'proxy-1': '1' });
      expect(await admin.pttl('livemux:chat:{presence}:proxy-1')).toBeGreaterThan(50_000);
      expect(await admin.xlen('livemux:chat:{keys-room}:history')).toBe(1);
      expect(await admin.xrange('livemux:chat:{keys-room}:history', '1-0', '1-0')).toHaveLength(1);
      await store.dropRoom('keys-room', token);
      // Only the fencing counter outlives a drop; presences are not room state.
      expect(await admin.keys('livemux:chat:{keys-room}:*')).toEqual(['livemux:chat:{keys-room}:fence']);
      expect(await admin.exists('livemux:chat:{presence}:proxy-1')).toBe(1);
      await store.endPresence('proxy-1');
    } finally {
      await store.close();
      admin.disconnect();
    }
  });

  it('quits the connection it opened, and leaves a lent one open', async () => {
    const lent = new Redis(server.url);
    const borrowing = new RedisChatStore(lent);
    const withOptions = new RedisChatStore({ connection: lent, keyPrefix: 'lent:' });
    expect(await borrowing.nextSeq('r', await leaseToken(borrowing, 'r'))).toBe(1);
    expect(await withOptions.nextSeq('r', await leaseToken(withOptions, 'r'))).toBe(1);
    await borrowing.close();
    await withOptions.close();
    expect(await lent.incr('lent:{r}:seq')).toBe(2);
    expect(lent.status).toBe('ready');
    lent.disconnect();

    const owning = new RedisChatStore({ url: server.url, keyPrefix: 'owning:' });
    await owning.nextSeq('r', await leaseToken(owning, 'r'));
    await owning.close();
    const internal = (owning as unknown as { redis: Redis }).redis;
    expect(internal.status).toBe('end');
  });

  it('closes promptly while the server cannot be reached', async () => {
    const dead = await startRedisServer();
    await dead.stop();
    const store = new RedisChatStore({ host: '127.0.0.1', port: dead.port });
    const started = Date.now();
    await store.close();
    expect(Date.now() - started).toBeLessThan(1000);
    await expect(store.nextSeq('r', 1)).rejects.toMatchObject({ code: 'ERR_STORE_CLOSED' });

    // Between reconnect attempts there is no socket to wait for, and a call queued meanwhile settles.
    const errors: Error[] = [];
    const retrying = new RedisChatStore({ host: '127.0.0.1', port: dead.port, onError: (err) => errors.push(err) });
    const client = (retrying as unknown as { redis: Redis }).redis;
    await new Promise((resolve) => client.once('reconnecting', resolve));
    const queued = retrying.memberCount('r');
    await retrying.close();
    await expect(queued).rejects.toMatchObject({ code: 'ERR_STORE_CLOSED' });
    expect(errors[0]?.message).toMatch(/ECONNREFUSED/);
    const statusAfter = client.status;
    await new Promise((r) => setTimeout(r, 300));
    expect(client.status).toBe(statusAfter); // no further attempt
  });

  it('loads its scripts into a server that has flushed them', async () => {
    const admin = new Redis(server.url);
    const store = new RedisChatStore({ url: server.url, keyPrefix: 'flush:' });
    try {
      const token = await leaseToken(store, 'r');
      await store.setAttributes('r', token, { a: '1' });
      await admin.script('FLUSH');
      expect(await store.setAttributes('r', token, { a: '2' })).toEqual([{ version: 2, key: 'a', value: '2' }]);
    } finally {
      await store.close();
      admin.disconnect();
    }
  });
});
