/**
 * Chat at scale, real processes over loopback: one redis-server, two Chat backends in Redis mode behind
 * `consistent_hash` on `room_id`, two proxies. Members of one room spread over both proxies see one
 * sequence; a returning member recovers exactly what it missed, or a HistoryGap when it was trimmed;
 * and killing a room's owner while messages flow loses no acknowledged system/high message.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { RoomMessage } from '../../src/backends/chat/chat-codec.js';
import type { PriorityName } from '../../src/protocol/constants.js';
import { ConsistentHashPicker } from '../../src/routing/policies/consistent-hash.js';
import { ChatCluster, type ChatMember, view } from '../helpers/chat-member.js';
import { metricValue } from '../helpers/metrics.js';

/** Messages of history each room retains in this file's cluster. */
const HISTORY = 100;
let cluster: ChatCluster;

beforeAll(async () => {
  // The history-gap test sends 1300 high messages in one burst, faster than Redis sequences them: the
  // room's high buffer must hold them all (its default, 1000, would answer the excess OVERLOADED).
  // A short history keeps the gap test's flood small enough for a busy machine.
  cluster = await ChatCluster.start(['--buffer-high', '2000', '--history-length', String(HISTORY)]);
});

afterEach(() => cluster.closeMembers());

afterAll(() => cluster?.stop());

async function metric(proxy: number, name: string, labels: string): Promise<number> {
  return metricValue(cluster.proxies[proxy]!.adminPort, name, labels);
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const range = (from: number, to: number): number[] => Array.from({ length: to - from + 1 }, (_, i) => from + i);

describe('a room spread over two proxies and two Redis-backed Chat backends', () => {
  it('every member, on either proxy, receives the same sequence: same seq, same message', async () => {
    const room = `spread-${Date.now()}`;
    const host = await cluster.join(0, 'host-1', room, { role: 'host' });
    const group = [host, await cluster.join(1, 'ann', room), await cluster.join(0, 'ben', room), await cluster.join(1, 'cat', room)];
    // Everyone sends at once, from both proxies; the host adds system messages.
    const replies = await Promise.all([
      ...group.flatMap((m) => range(0, 4).map((i) => m.say(`${m.user}-${i}`))),
      ...range(0, 2).map((i) => host.say(`pinned-${i}`, 'system')),
    ]);
    expect(replies.every((r) => r.ok)).toBe(true);
    const total = replies.length;
    for (const m of group) await m.until(() => m.messages.length === total, 10_000, `${total} messages`);
    // Events of different priorities may overtake each other: members order by seq (docs/chat.md §3).
    const bySeq = (m: ChatMember): RoomMessage[] => [...m.messages].sort((a, b) => a.seq - b.seq);
    expect(bySeq(host).map((m) => m.seq)).toEqual(range(1, total));
    for (const m of group) expect(view(bySeq(m))).toEqual(view(bySeq(host)));
    // Each reply's seq is the seq everyone saw that message under.
    const seen = new Map(host.messages.map((m) => [m.seq, m]));
    for (const r of replies) expect(seen.get(r.sent!.seq)).toBeDefined();
    // Each sender's messages keep their order.
    for (const m of group.slice(1)) {
      expect(view(bySeq(host)).filter((t) => t.includes(`:${m.user}:`)).map((t) => t.split(':')[2])).toEqual(range(0, 4).map((i) => `${m.user}-${i}`));
    }
  });

  it('a member reconnecting through the other proxy recovers exactly the messages it missed', async () => {
    const room = `return-${Date.now()}`;
    const host = await cluster.join(0, 'host-2', room, { role: 'host' });
    const dan = await cluster.join(0, 'dan', room);
    for (const i of range(1, 3)) expect((await host.say(`before-${i}`)).ok).toBe(true);
    await dan.until(() => dan.messages.length === 3, 5_000, 'three messages');
    const lastSeen = Math.max(...dan.messages.map((m) => m.seq));
    await dan.client.close();
    for (const i of range(1, 4)) expect((await host.say(`away-${i}`, i % 2 ? 'high' : 'system')).ok).toBe(true);

    const back = await cluster.join(1, 'dan', room, { sinceSeq: lastSeen });
    expect(back.events[0]?.joined).toMatchObject({ seq: 7, onlineCount: 2 });
    expect(back.events.some((e) => e.gap)).toBe(false);
    expect(view(back.messages)).toEqual(range(1, 4).map((i) => `${3 + i}:host-2:away-${i}`));
    // Live traffic continues after the recovery, in sequence, on the new proxy.
    await host.say('live');
    await back.until(() => back.messages.length === 5, 5_000, 'the live message');
    expect(view(back.messages).at(-1)).toBe('8:host-2:live');
  });

  it('a member that missed more than the room retains gets a HistoryGap, then every retained message', async () => {
    const room = `gap-${Date.now()}`;
    const host = await cluster.join(0, 'host-3', room, { role: 'host' });
    const eve = await cluster.join(1, 'eve', room);
    for (const i of range(1, 5)) expect((await host.say(`early-${i}`)).ok).toBe(true);
    await eve.until(() => eve.messages.length === 5, 5_000, 'five messages');
    await eve.client.close();

    // The room retains HISTORY messages (the Redis store may keep up to 100 more: it trims whole
    // nodes): HISTORY + 200 more push the ones eve missed first out of the history.
    const SENT = HISTORY + 200;
    const ids: number[] = [];
    for (const i of range(1, SENT)) ids.push(await host.post({ send: { body: Buffer.from(`flood-${i}`), clientMsgId: '' } }));
    await host.until(() => ids.every((id) => host.replyTo(id) !== undefined), 30_000, 'every reply');
    expect(ids.every((id) => host.replyTo(id)!.ok)).toBe(true);
    const latest = 5 + SENT;

    const back = await cluster.join(1, 'eve', room, { sinceSeq: 5 });
    const events = back.events;
    expect(events[0]?.joined?.seq).toBe(latest);
    const gap = events[1]?.gap;
    expect(gap).toBeDefined();
    expect(gap!.fromSeq).toBe(6);
    const firstKept = gap!.toSeq + 1;
    // Exactly the retained messages, from the first one after the gap to the latest, nothing twice.
    expect(back.messages.map((m) => m.seq)).toEqual(range(firstKept, latest));
    expect(back.messages.length).toBeGreaterThanOrEqual(HISTORY);
    expect(back.messages.length).toBeLessThanOrEqual(HISTORY + 100);
    expect(Buffer.from(back.messages[0]!.body).toString()).toBe(`flood-${firstKept - 5}`);
    // history agrees: the oldest retained seq is right after the gap.
    const page = await back.request({ history: { afterSeq: 5, limit: 10 } });
    expect(page.history?.oldestSeq).toBe(firstKept);
    expect(page.history?.messages.map((m) => m.seq)).toEqual(range(firstKept, firstKept + 9));
  }, 60_000);

  // Last: it kills one of the two backends.
  it('killing the room\'s owner during traffic loses no acknowledged system/high message', async () => {
    const room = `failover-${Date.now()}`;
    const owner = new ConsistentHashPicker(cluster.backends.map((b) => ({ address: b.address, weight: 1 }))).pick(room, () => true);
    const victim = cluster.backends.find((b) => b.address === owner)!;
    const host = await cluster.join(0, 'host-4', room, { role: 'host' });
    const audience = [await cluster.join(0, 'fay', room), await cluster.join(0, 'gus', room), await cluster.join(1, 'hal', room)];
    const everyone = [host, ...audience];
    const movedBefore = await Promise.all([0, 1].map((p) => metric(p, 'livemux_sessions_relocated_total', 'result="moved"')));

    // The host sends one message every 20 ms (every 4th at system priority), each with a client_msg_id
    // and a request_id. A message is acknowledged when a Reply{ok} arrives; one without a Reply after
    // a second is sent again under the same client_msg_id (it may then be in the room twice).
    const COUNT = 120;
    const KILL_AFTER = 40;
    const acked = new Map<number, string>(); // seq → client_msg_id, from every ok Reply
    const ackedIds = new Set<string>();
    const attempts = new Map<string, { ids: number[]; at: number; priority: PriorityName }>();
    let retries = 0;
    const send = async (clientMsgId: string, priority: PriorityName): Promise<void> => {
      const a = attempts.get(clientMsgId) ?? { ids: [], at: 0, priority };
      attempts.set(clientMsgId, a);
      a.at = Date.now();
      a.ids.push(await host.post({ send: { body: Buffer.from(`body-${clientMsgId}`), clientMsgId } }, priority));
    };
    const collect = (): void => {
      for (const [clientMsgId, a] of attempts) {
        for (const id of a.ids) {
          const r = host.replyTo(id);
          if (r?.ok) {
            acked.set(r.sent!.seq, clientMsgId);
            ackedIds.add(clientMsgId);
          }
        }
      }
    };
    const retryStale = async (): Promise<void> => {
      collect();
      for (const [clientMsgId, a] of attempts) {
        if (ackedIds.has(clientMsgId) || Date.now() - a.at < 1_000) continue;
        retries++;
        await send(clientMsgId, a.priority);
      }
    };

    let killedAt = 0;
    for (let i = 0; i < COUNT; i++) {
      await send(`m${i}`, i % 4 === 3 ? 'system' : 'high');
      if (i === KILL_AFTER) {
        collect();
        killedAt = Date.now();
        await victim.stop('SIGKILL');
      }
      await retryStale();
      await sleep(20);
    }
    const deadline = Date.now() + 20_000;
    while (ackedIds.size < COUNT) {
      if (Date.now() > deadline) throw new Error(`only ${ackedIds.size}/${COUNT} messages acknowledged`);
      await retryStale();
      await sleep(50);
    }
    expect(killedAt).toBeGreaterThan(0);
    // The new owner continued the sequence from Redis: no seq was handed out twice.
    const seqs = [...acked.keys()].sort((a, b) => a - b);
    expect(new Set(acked.values()).size).toBe(COUNT);
    const maxSeq = seqs.at(-1)!;

    // The new owner wrote once the dead owner's room lease lapsed (default TTL 3000 ms): until then it
    // answered NOT_OWNER, and the first ok reply after the last refusal bounds the recovery.
    const afterKill = host.received.filter((r) => r.at >= killedAt && r.event.reply !== undefined);
    const lastRefusal = afterKill.findLast((r) => r.event.reply!.errorCode === 'NOT_OWNER')?.at ?? killedAt;
    const recoveredAt = afterKill.find((r) => r.at >= lastRefusal && r.event.reply!.ok)!.at;
    expect(afterKill.every((r) => r.event.reply!.ok || r.event.reply!.errorCode === 'NOT_OWNER')).toBe(true);
    expect(recoveredAt - killedAt).toBeLessThan(3000 + 2500);

    // Every member ends with every acknowledged message: live, or fetched with `history` after a seq jump.
    let recovered = 0;
    for (const m of everyone) {
      await m.until(() => m.messages.some((x) => x.seq >= maxSeq), 5_000, `a message with seq >= ${maxSeq}`);
      const have = new Map(m.messages.map((x) => [x.seq, x]));
      const missing = seqs.filter((s) => !have.has(s));
      if (missing.length > 0) {
        let after = missing[0]! - 1;
        while (after < maxSeq) {
          const page = await m.request({ history: { afterSeq: after, limit: 1000 } });
          expect(page.ok).toBe(true);
          const got = page.history!.messages;
          if (got.length === 0) break;
          for (const x of got) if (!have.has(x.seq)) (have.set(x.seq, x), recovered++);
          after = got.at(-1)!.seq;
        }
      }
      for (const [seq, clientMsgId] of acked) {
        expect(have.get(seq), `${m.user}: seq ${seq}`).toMatchObject({ clientMsgId, senderId: 'host-4' });
        expect(Buffer.from(have.get(seq)!.body).toString()).toBe(`body-${clientMsgId}`);
      }
      // Nobody's session was closed: the proxies moved them.
      expect(m.closed).toBeNull();
    }
    // The three sessions on proxy 0 and the one on proxy 1 were moved to the surviving backend.
    const moved = await Promise.all([0, 1].map(async (p) => (await metric(p, 'livemux_sessions_relocated_total', 'result="moved"')) - movedBefore[p]!));
    console.log(
      `owner ${owner} killed after ${KILL_AFTER} sends: writes resumed after ${recoveredAt - killedAt} ms; ` +
        `${COUNT} messages acknowledged under ${acked.size} seqs (max ${maxSeq}), ` +
        `${retries} resends, ${recovered} messages fetched with history, sessions moved: ${moved.join(' + ')}`,
    );
    expect(moved[0]).toBeGreaterThanOrEqual(3);
    expect(moved[1]).toBeGreaterThanOrEqual(1);
  }, 60_000);
});
