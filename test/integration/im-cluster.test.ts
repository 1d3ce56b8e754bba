/**
 * IM across processes, real processes over loopback: one redis-server, two IM backends in Redis mode
 * behind `consistent_hash` on `user_id`, two proxies, users as SDK ImClients. Sender and recipient on
 * different proxies and owners; a recipient with three devices, one offline that syncs later; receipts
 * and recalls across devices; a send retried after a dropped connection is stored once; and killing an
 * owner (SIGKILL) during a stream of sends loses no acknowledged message and shows none twice.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { connect } from '../../src/client/index.js';
import { ImClient } from '../../src/client/im-client.js';
import type { SendResult } from '../../src/backends/im/im-codec.js';
import { mintToken } from '../../src/proxy/auth.js';
import { startCuttableForwarder } from '../helpers/cuttable-forwarder.js';
import { ImCluster, ImDevice } from '../helpers/im-cluster.js';
import { metricValue } from '../helpers/metrics.js';
import { TEST_SECRET } from '../helpers/processes.js';

let cluster: ImCluster;

beforeAll(async () => {
  // The failover test sends 50 messages/s from one user (the default limit is 20/s).
  cluster = await ImCluster.start(['--send-rate', '1000']);
}, 30_000);

afterEach(() => cluster.closeDevices());

afterAll(() => cluster?.stop());

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const count = <T>(items: readonly T[], item: T): number => items.filter((x) => x === item).length;

describe('IM over two proxies and two Redis-backed IM backends', () => {
  it('reaches a recipient\'s devices on another proxy and owner, and an offline device when it syncs', async () => {
    const ann = cluster.userOwnedBy(0, 'ann');
    const bob = cluster.userOwnedBy(1, 'bob');
    const annPhone = await cluster.open(0, ann, 'phone');
    const bobPhone = await cluster.open(1, bob, 'phone');
    const bobLaptop = await cluster.open(0, bob, 'laptop');
    // bob's tablet has been offline since before anything was sent.
    for (let i = 1; i <= 5; i++) await annPhone.im.send(bob, `m${i}`);
    const expected = [1, 2, 3, 4, 5].map((i) => `${ann}>${bob}:m${i}`);
    // ann's other devices would get them too; the sending phone has them from its Replies.
    for (const d of [bobPhone, bobLaptop]) {
      await d.until(() => d.texts.length === 5, `${d.user}/${d.device}: five messages`);
      expect(d.texts).toEqual(expected);
    }
    const tablet = await cluster.open(1, bob, 'tablet');
    expect(tablet.im.syncResult.unread).toEqual([{ peer: ann, count: 5, lastConvSeq: 5 }]);
    await tablet.until(() => tablet.texts.length === 5, 'the tablet catches up');
    expect(tablet.texts).toEqual(expected);
    // Both users see one order: the conversation's.
    expect(tablet.messages.map((m) => m.convSeq)).toEqual([1, 2, 3, 4, 5]);
  });

  it('carries receipts and recalls to every device of both users', async () => {
    const cat = cluster.userOwnedBy(0, 'cat');
    const dan = cluster.userOwnedBy(1, 'dan');
    const catPhone = await cluster.open(1, cat, 'phone');
    const catLaptop = await cluster.open(0, cat, 'laptop');
    const danPhone = await cluster.open(0, dan, 'phone');
    const danTablet = await cluster.open(1, dan, 'tablet');
    const first = await catPhone.im.send(dan, 'first');
    const oops = await catPhone.im.send(dan, 'oops');
    await danPhone.until(() => danPhone.texts.length === 2, 'two messages');
    expect(await danPhone.im.read(cat, first.convSeq)).toEqual({ readSeq: 1, unread: 1 });
    await catPhone.im.recall(dan, oops.convSeq);
    for (const d of [catPhone, catLaptop, danPhone, danTablet]) {
      await d.until(() => d.events.some((e) => e.type === 'read') && d.events.some((e) => e.type === 'recall'), `${d.user}/${d.device}: receipt and recall`);
      expect(d.events.find((e) => e.type === 'read')).toMatchObject({ receipt: { reader: dan, peer: cat, convSeq: 1 } });
      expect(d.events.find((e) => e.type === 'recall')).toMatchObject({ recall: { serverId: oops.serverId, convSeq: 2 } });
    }
    // dan's tablet clears its unread count from the receipt; a new device sees the state in Sync.
    const danLaptop = await cluster.open(0, dan, 'laptop');
    expect(danLaptop.im.syncResult.unread).toEqual([{ peer: cat, count: 1, lastConvSeq: 2 }]);
  });

  it('stores a send once when its connection dropped before the reply and the SDK resent it', async () => {
    const eve = cluster.userOwnedBy(0, 'eve');
    const fay = cluster.userOwnedBy(1, 'fay');
    const fayPhone = await cluster.open(0, fay, 'phone');
    const forwarder = await startCuttableForwarder(cluster.proxies[1]!.port);
    const client = await connect({ host: '127.0.0.1', port: forwarder.port, token: await mintToken({ secret: TEST_SECRET, sub: eve }), reconnect: { initialMs: 50, maxMs: 200 } });
    const evePhone = new ImDevice(eve, 'phone', client, await ImClient.open(client, { deviceId: 'phone', resendAfterMs: 60_000 }));
    cluster.devices.push(evePhone);
    try {
      forwarder.hold(); // eve hears nothing back from here on
      const sending = evePhone.im.send(fay, 'only once', { clientMsgId: 'eve-retry-1' });
      await fayPhone.until(() => fayPhone.texts.length === 1, 'the message is stored and delivered');
      forwarder.cut(); // the connection dies with the reply; the SDK reconnects and resends
      const result: SendResult = await sending;
      expect(result).toMatchObject({ clientMsgId: 'eve-retry-1', duplicate: true, convSeq: 1 });
      expect(result.serverId).toBe(fayPhone.messages[0]!.serverId);
      await evePhone.im.send(fay, 'after');
      await fayPhone.until(() => fayPhone.texts.length === 2, 'the next message');
      expect(fayPhone.texts).toEqual([`${eve}>${fay}:only once`, `${eve}>${fay}:after`]);
      const history = await fayPhone.im.history(eve);
      expect(history.messages.map((m) => m.clientMsgId).filter((id) => id === 'eve-retry-1')).toHaveLength(1);
    } finally {
      await forwarder.close();
    }
  });

  // Last: it kills one of the two backends.
  it('killing an owner during a stream of sends loses no acknowledged message and shows none twice', async () => {
    const victimIndex = 0;
    const victim = cluster.backends[victimIndex]!;
    const sender = cluster.userOwnedBy(victimIndex, 'gus');
    const nearby = cluster.userOwnedBy(victimIndex, 'hal'); // moves with the victim's sessions
    const faraway = cluster.userOwnedBy(1 - victimIndex, 'ivy');
    const senderPhone = await cluster.open(0, sender, 'phone', { resendAfterMs: 1_000 });
    const senderLaptop = await cluster.open(1, sender, 'laptop');
    const nearbyPhone = await cluster.open(1, nearby, 'phone');
    const farawayPhone = await cluster.open(0, faraway, 'phone');
    const movedBefore = await Promise.all([0, 1].map((p) => metricValue(cluster.proxies[p]!.adminPort, 'livemux_sessions_relocated_total', 'result="moved"')));

    // One send every 20 ms, alternating recipients, not waiting for acks; the owner dies after 40.
    const COUNT = 120;
    const KILL_AFTER = 40;
    const sends: Promise<{ to: string; text: string; result: SendResult }>[] = [];
    let killedAt = 0;
    for (let i = 0; i < COUNT; i++) {
      const to = i % 2 === 0 ? nearby : faraway;
      const text = `s${i}`;
      sends.push(senderPhone.im.send(to, text, { clientMsgId: `gus-${i}` }).then((result) => ({ to, text, result })));
      if (i === KILL_AFTER) {
        killedAt = Date.now();
        await victim.stop('SIGKILL');
      }
      await sleep(20);
    }
    const acked = await Promise.all(sends);
    const ackedAt = Date.now();
    expect(killedAt).toBeGreaterThan(0);

    // Every acknowledged message reaches its recipient and the sender's other device: once each.
    const byRecipient = (to: string): string[] => acked.filter((a) => a.to === to).map((a) => `${sender}>${to}:${a.text}`);
    for (const [device, want] of [
      [nearbyPhone, byRecipient(nearby)],
      [farawayPhone, byRecipient(faraway)],
      [senderLaptop, [...byRecipient(nearby), ...byRecipient(faraway)]],
      // The sending phone has them from its Replies: none comes back to it, moved or not.
      [senderPhone, []],
    ] as const) {
      const missing = (): string[] => want.filter((t) => !device.texts.includes(t));
      await device.until(() => missing().length === 0, `${device.user}/${device.device}: every acknowledged message`, 20_000).catch((err: Error) => {
        throw new Error(`${err.message.split(';')[0]}; missing: ${missing().join(', ')}; inbox seqs seen: ${device.messages.length}`);
      });
      for (const t of want) expect(count(device.texts, t), `${device.user}/${device.device}: ${t}`).toBe(1);
      expect(device.texts.length).toBe(want.length);
      expect(new Set(device.messages.map((m) => m.serverId)).size).toBe(want.length);
      // Nobody's iteration failed: the proxies moved the sessions, the SDK carried on.
      expect(device.error).toBeNull();
    }
    // Each conversation holds each client_msg_id once, under consecutive seqs.
    for (const recipientPhone of [nearbyPhone, farawayPhone]) {
      const history = await recipientPhone.im.history(sender, { limit: 200 });
      const ids = history.messages.map((m) => m.clientMsgId);
      expect(ids.length).toBe(COUNT / 2);
      expect(new Set(ids).size).toBe(COUNT / 2);
      expect(history.messages.map((m) => m.convSeq)).toEqual(Array.from({ length: COUNT / 2 }, (_, i) => i + 1));
    }
    const duplicates = acked.filter((a) => a.result.duplicate).length;
    const moved = await Promise.all([0, 1].map(async (p) => (await metricValue(cluster.proxies[p]!.adminPort, 'livemux_sessions_relocated_total', 'result="moved"')) - movedBefore[p]!));
    console.log(
      `owner killed after ${KILL_AFTER} of ${COUNT} sends: all ${acked.length} acknowledged within ${ackedAt - killedAt} ms of the kill, ` +
        `${duplicates} of them answered as resends of a stored message, each shown once on the recipient's and the sender's other device, never echoed to the sending phone; sessions moved: ${moved.join(' + ')}`,
    );
    expect(moved[0]! + moved[1]!).toBeGreaterThanOrEqual(2);
  }, 90_000);
});
