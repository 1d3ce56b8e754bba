import { Redis } from 'ioredis';
import { describe, expect, it, vi } from 'vitest';
import { RedisDeliveryLedger } from '../../src/backends/kit/inbox/redis-delivery-ledger.js';
import { RedisInboxStore } from '../../src/backends/kit/inbox/redis-inbox-store.js';
import type { InboxNotice } from '../../src/backends/kit/inbox/inbox-store.js';
import { describeInboxStore } from '../conformance/inbox-store.js';
import { redisServerForFile } from '../helpers/redis-for-file.js';

const server = redisServerForFile();

// Each test gets its own key prefix on the one server; a peer is a second connection on the same
// prefix, as another backend process would open.
describeInboxStore('redis', async ({ statsTtlMs, ...options }) => {
  const keyPrefix = server.prefix('inbox');
  const ledgerPrefix = server.prefix('ledger');
  const stores = [new RedisInboxStore({ url: server.url, keyPrefix, ...options })];
  const ledgerOptions = { url: server.url, keyPrefix: ledgerPrefix, ...(statsTtlMs === undefined ? {} : { statsTtlMs }) };
  const ledgers = [new RedisDeliveryLedger(ledgerOptions)];
  return {
    store: stores[0]!,
    async peer() {
      const peer = new RedisInboxStore({ host: '127.0.0.1', port: server.port, keyPrefix, ...options });
      stores.push(peer);
      return peer;
    },
    ledger: ledgers[0]!,
    async peerLedger() {
      const peer = new RedisDeliveryLedger(ledgerOptions);
      ledgers.push(peer);
      return peer;
    },
    async cleanup() {
      await Promise.all([...stores, ...ledgers].map((s) => s.close()));
    },
  };
});

describe('RedisInboxStore specifics', () => {
  it('names keys <prefix>{<user>}:<part> and notices <prefix>{<user>}:notify, livemux:inbox: by default', async () => {
    const admin = new Redis(server.url);
    const store = new RedisInboxStore({ url: server.url });
    try {
      await store.append('keys-user', { body: Buffer.from('x'), collapseKey: 'k', dedupeKey: 'd1' }, 1);
      await store.ack('keys-user', 'phone', 1, 2);
      expect((await admin.keys('livemux:inbox:{keys-user}:*')).sort()).toEqual(
        ['collapse', 'dedupe:d1', 'devices', 'log', 'seq'].map((p) => `livemux:inbox:{keys-user}:${p}`),
      );
      expect(await admin.pttl('livemux:inbox:{keys-user}:dedupe:d1')).toBeGreaterThan(23 * 3600_000);
      expect(await admin.hgetall('livemux:inbox:{keys-user}:devices')).toEqual({ phone: '1 2' });
      const heard = new Promise<Buffer>((resolve) => {
        const sub = admin.duplicate();
        void sub.subscribe('livemux:inbox:{keys-user}:notify').then(async () => {
          sub.once('messageBuffer', (_channel: Buffer, message: Buffer) => {
            sub.disconnect();
            resolve(message);
          });
          await store.append('keys-user', { body: Buffer.from('body'), ref: 'r' }, 5);
        });
      });
      expect((await heard).toString()).toBe('e2 5 0 1 0 0\nrbody');
    } finally {
      await store.close();
      admin.disconnect();
    }
  });

  it('reads a notice header exactly, and ignores what another writer publishes on the channel', async () => {
    const admin = new Redis(server.url);
    const keyPrefix = server.prefix('notices');
    const store = new RedisInboxStore({ url: server.url, keyPrefix });
    try {
      const notices: InboxNotice[] = [];
      const watch = store.watch('ann', (notice) => notices.push(notice));
      await watch.ready;
      const channel = `${keyPrefix}{ann}:notify`;
      const foreign = ['x', 'e', 'e1 2 3 0 0', 'e1 2 3 0 0 0', 'e1 2 3 0 0 0 0\n', 'e1  2 3 0 0 0\n', 'e-1 2 3 0 0 0\n', 'e1 2 3 0 0 9\nab', 'e12345678901234567 2 3 0 0 0\n', 'e9007199254740993 2 3 0 0 0\n'];
      for (const text of foreign) await admin.publish(channel, text);
      await store.append('ann', { body: Buffer.from('the body'), ref: 'réf', collapseKey: 'k', origin: 'phone', expiresAtMs: Number.MAX_SAFE_INTEGER }, 1_700_000_000_000);
      await vi.waitFor(() => expect(notices).toHaveLength(1), { timeout: 10_000 });
      expect(notices[0]).toEqual({
        kind: 'entry',
        entry: { seq: 1, createdAtMs: 1_700_000_000_000, expiresAtMs: Number.MAX_SAFE_INTEGER, ref: 'réf', collapseKey: 'k', origin: 'phone', body: Buffer.from('the body') },
      });
      watch.close();
    } finally {
      await store.close();
      admin.disconnect();
    }
  });

  it('tells watchers to resync after its subscriber connection came back', async () => {
    const admin = new Redis(server.url);
    const store = new RedisInboxStore({ url: server.url, keyPrefix: 'resync:' });
    try {
      const notices: InboxNotice[] = [];
      const watch = store.watch('ann', (n) => notices.push(n));
      await watch.ready;
      // Kill every pub/sub connection on the server: ours reconnects and resubscribes.
      const clients = (await admin.client('LIST')) as string;
      for (const line of clients.split('\n').filter((l) => / sub=[1-9]/.test(l))) {
        await admin.client('KILL', 'ID', /id=(\d+)/.exec(line)![1]!);
      }
      const deadline = Date.now() + 5000;
      while (!notices.some((n) => n.kind === 'resync')) {
        if (Date.now() > deadline) throw new Error('no resync notice');
        await new Promise((r) => setTimeout(r, 20));
      }
      // Notices flow again after it.
      await store.append('ann', { body: Buffer.from('after') }, 1);
      while (!notices.some((n) => n.kind === 'entry')) {
        if (Date.now() > deadline) throw new Error('no notice after the resync');
        await new Promise((r) => setTimeout(r, 20));
      }
      watch.close();
    } finally {
      await store.close();
      admin.disconnect();
    }
  });

  it('closes promptly with watchers and a lent connection, leaving the lent one open', async () => {
    const lent = new Redis(server.url);
    const store = new RedisInboxStore({ connection: lent, keyPrefix: 'lent:' });
    await store.watch('ann', () => undefined).ready;
    await store.close();
    expect(lent.status).toBe('ready');
    expect(await lent.ping()).toBe('PONG');
    lent.disconnect();
  });
});
