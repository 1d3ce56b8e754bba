/**
 * The IM backend as a process, in memory mode, behind a real proxy, driven by the SDK's ImClient: two
 * users talk, an offline device catches up, receipts, typing and presence flow (a device that closes
 * goes offline), and the backend's /metrics count what happened, promtool-clean.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect } from '../../src/client/index.js';
import { ImClient } from '../../src/client/im-client.js';
import { mintToken } from '../../src/proxy/auth.js';
import { imRoutes, openDevice, type ImDevice } from '../helpers/im-cluster.js';
import { metricValue, promtoolCheckMetrics, scrape } from '../helpers/metrics.js';
import { TEST_SECRET, startImBackend, startProxy } from '../helpers/processes.js';

let backend: Awaited<ReturnType<typeof startImBackend>>;
let proxy: Awaited<ReturnType<typeof startProxy>>;
const devices: ImDevice[] = [];

beforeAll(async () => {
  backend = await startImBackend(['--admin-port', '0', '--recall-window-ms', '60000']);
  proxy = await startProxy({ backends: [], routes: imRoutes([backend.address]) });
}, 30_000);

afterAll(async () => {
  await Promise.all(devices.map((d) => d.close()));
  await proxy?.stop();
  await backend?.stop();
});

async function device(user: string, name: string, afterSeq = 0, onInboxSeq?: (seq: number) => void): Promise<ImDevice> {
  const d = await openDevice(proxy.port, user, name, { afterSeq, ...(onInboxSeq ? { onInboxSeq } : {}) });
  devices.push(d);
  return d;
}

describe('the IM backend behind a proxy', () => {
  it('lets two users talk, keeps messages for an offline device, and delivers them once on its return', async () => {
    const ann = await device('ann', 'phone');
    const persisted: number[] = [];
    const bob = await device('bob', 'phone', 0, (seq) => persisted.push(seq));
    const sent = await ann.im.send('bob', 'hello bob');
    expect(sent).toMatchObject({ convSeq: 1, duplicate: false });
    await bob.until(() => bob.texts.length === 1, 'the message');
    expect(bob.messages[0]).toMatchObject({ serverId: sent.serverId, sender: 'ann', convSeq: 1 });
    const reply = await bob.im.send('ann', 'hi ann');
    expect(reply.convSeq).toBe(2);
    // ann's phone gets bob's answer, not her own message back: it had her Reply.
    await ann.until(() => ann.texts.length === 1, 'bob\'s answer on ann\'s phone');
    expect(ann.texts).toEqual(['bob>ann:hi ann']);

    // bob's phone goes away; ann writes three more; it comes back with the seq it persisted.
    await bob.until(() => persisted.at(-1) === 1, 'seq 1 processed');
    await bob.close();
    for (const t of ['one', 'two', 'three']) await ann.im.send('bob', t);
    const back = await device('bob', 'phone', bob.im.inboxSeq);
    expect(back.im.syncResult.unread).toEqual([{ peer: 'ann', count: 4, lastConvSeq: 5 }]);
    await back.until(() => back.events.some((e) => e.type === 'synced'), 'synced');
    // Exactly what it had not processed.
    expect(back.texts).toEqual(['ann>bob:one', 'ann>bob:two', 'ann>bob:three']);
    const read = await back.im.read('ann', 5);
    expect(read).toEqual({ readSeq: 5, unread: 0 });
    await ann.until(() => ann.events.some((e) => e.type === 'read'), 'the receipt');
    expect(ann.events.find((e) => e.type === 'read')).toMatchObject({ receipt: { reader: 'bob', peer: 'ann', convSeq: 5 } });
  });

  it('passes typing and presence on, recalls, and pages history for a new phone', async () => {
    const cat = await device('cat', 'phone');
    const dan = await device('dan', 'phone');
    expect(await cat.im.watchPresence(['dan', 'eve'])).toMatchObject([
      { user: 'dan', online: true },
      { user: 'eve', online: false },
    ]);
    const eve = await device('eve', 'laptop');
    await cat.until(() => cat.events.some((e) => e.type === 'presence' && e.user === 'eve' && e.online), 'eve online');
    await eve.close();
    await cat.until(() => cat.events.some((e) => e.type === 'presence' && e.user === 'eve' && !e.online), 'eve offline');
    dan.im.typing('cat');
    await cat.until(() => cat.events.some((e) => e.type === 'typing' && e.from === 'dan'), 'typing');
    const oops = await dan.im.send('cat', 'oops');
    await dan.im.recall('cat', oops.convSeq);
    await cat.until(() => cat.events.some((e) => e.type === 'recall'), 'the tombstone');
    for (let i = 1; i <= 5; i++) await dan.im.send('cat', `m${i}`);
    const newPhone = await device('cat', 'new-phone');
    const page = await newPhone.im.history('dan', { limit: 3 });
    expect(page.messages.map((m) => Buffer.from(m.body).toString())).toEqual(['m3', 'm4', 'm5']);
    const older = await newPhone.im.history('dan', { beforeSeq: page.messages[0]!.convSeq });
    expect(older.messages.map((m) => [Buffer.from(m.body).toString(), m.recalled])).toEqual([
      ['', true],
      ['m1', false],
      ['m2', false],
    ]);
    await expect(cat.im.send('cat', 'me')).rejects.toMatchObject({ errorCode: 'BAD_REQUEST' });
  });

  it('starts over when a device remembers more than the inbox holds (the server lost its data)', async () => {
    const seqs: number[] = [];
    const gil = await device('gil', 'phone', 999, (seq) => seqs.push(seq));
    expect(gil.im.syncResult.lastInboxSeq).toBe(0);
    expect(seqs).toEqual([0]);
    const hal = await device('hal', 'phone');
    await hal.im.send('gil', 'are you there?');
    await gil.until(() => gil.texts.length === 1, 'the message, inbox seq 1');
    expect(gil.events.find((e) => e.type === 'message')).toMatchObject({ inboxSeq: 1 });
  });

  it('refuses an IM session without a device id, and counts on /metrics', async () => {
    const client = await connect({ host: '127.0.0.1', port: proxy.port, token: await mintToken({ secret: TEST_SECRET, sub: 'zed' }), reconnect: false });
    try {
      await expect(ImClient.open(client, { deviceId: '' })).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
      const session = await client.open('im', {});
      const closed = await new Promise<[number, string]>((resolve) => session.once('close', (code, reason) => resolve([code, reason])));
      expect(closed).toEqual([205, 'im: metadata.device_id is required (1..128 bytes)']);
    } finally {
      await client.close();
    }
    expect(await metricValue(backend.adminPort!, 'livemux_im_messages_stored_total', '')).toBeGreaterThanOrEqual(11);
    expect(await metricValue(backend.adminPort!, 'livemux_im_recalls_total', '')).toBe(1);
    const text = await scrape(backend.adminPort!);
    expect(text).toMatch(/^livemux_im_process_cpu_seconds_total /m);
    expect(promtoolCheckMetrics(text)).toBe('');
  });
});
