/**
 * The Chat backend under overload, real processes (a Chat backend with a small room rate behind a
 * proxy): a flood of low messages neither delays nor loses system messages, and a member that stops
 * reading loses low messages (counted by the proxy) while the others receive everything.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { WireRole, decodeChatEvent, encodeChatRequest, type ChatEvent } from '../../src/backends/chat/chat-codec.js';
import { ChatErrorCode } from '../../src/backends/chat/chat-errors.js';
import { FrameType, Priority } from '../../src/protocol/constants.js';
import { type ChatMember, chatRoutes, chatToken, joinMember } from '../helpers/chat-member.js';
import { type RunningProcess, startChatBackend, startProxy } from '../helpers/processes.js';
import { RawClient } from '../helpers/raw-client.js';
import { metricValue } from '../helpers/metrics.js';

const ROOM_RATE = 20;
const processes: RunningProcess[] = [];
const members: ChatMember[] = [];
let proxy: Awaited<ReturnType<typeof startProxy>>;

beforeAll(async () => {
  // The room admits 20 messages/s (low only while more than half the burst is left); the per-user
  // limit is out of the way so that the room limit is what sheds the flood.
  const backend = await startChatBackend(['--room-rate', String(ROOM_RATE), '--user-rate', '10000']);
  processes.push(backend);
  // No per-connection low-priority cap: what a member loses here is the room limit or its own slowness.
  proxy = await startProxy({ backends: [], routes: chatRoutes([backend.address]), config: { limits: { low_priority_rate: 0 } } });
  processes.push(proxy);
});

afterEach(async () => {
  await Promise.all(members.splice(0).map((m) => m.client.close()));
});

afterAll(async () => {
  await Promise.all(processes.map((p) => p.stop('SIGTERM')));
});

async function join(user: string, room: string, role?: string): Promise<ChatMember> {
  const m = await joinMember(proxy.port, user, room, { role });
  members.push(m);
  return m;
}

async function metric(name: string, labels: string): Promise<number> {
  return metricValue(proxy.adminPort, name, labels);
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const text = (body: Uint8Array): string => Buffer.from(body).toString();

describe('chat under overload', () => {
  it('a flood of low messages from several members neither delays nor loses system messages', async () => {
    const room = `flood-${Date.now()}`;
    const host = await join('host-f', room, 'host');
    const flooders = await Promise.all(['f1', 'f2', 'f3'].map((u) => join(u, room)));
    const watcher = await join('watcher', room);
    const everyone = [host, ...flooders, watcher];

    const FLOOD = 150;
    const SYSTEM = 10;
    const floodStart = Date.now();
    const flood = flooders.map(async (m) => {
      const ids: number[] = [];
      for (let i = 0; i < FLOOD; i++) {
        ids.push(await m.post({ send: { body: Buffer.from(`${m.user}-low-${i}`), clientMsgId: '' } }, 'low'));
        if (i % 10 === 9) await sleep(5);
      }
      return ids;
    });
    // The host's system messages go out while the flood is on, each one timed from its send.
    const sentAt = new Map<string, number>();
    const systemIds: number[] = [];
    for (let i = 0; i < SYSTEM; i++) {
      await sleep(20);
      sentAt.set(`sys-${i}`, Date.now());
      systemIds.push(await host.post({ send: { body: Buffer.from(`sys-${i}`), clientMsgId: `s${i}` } }, 'system'));
    }
    const floodIds = await Promise.all(flood);

    const isSystem = (m: { priority: number }): boolean => m.priority === Priority.SYSTEM;
    for (const m of everyone) await m.until(() => m.messages.filter(isSystem).length === SYSTEM, 30_000, 'every system message');
    for (const id of systemIds) expect(host.replyTo(id)).toMatchObject({ ok: true });

    const delays: number[] = [];
    for (const m of everyone) {
      const system = m.received.filter((r) => r.event.message && isSystem(r.event.message));
      // Every system message, in the order sent, in ascending seq.
      expect(system.map((r) => text(r.event.message!.body))).toEqual(Array.from({ length: SYSTEM }, (_, i) => `sys-${i}`));
      const seqs = system.map((r) => r.event.message!.seq);
      expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
      for (const r of system) delays.push(r.at - sentAt.get(text(r.event.message!.body))!);
    }
    const worst = Math.max(...delays);

    // The flood really overloaded the room: most low messages were refused by the room limit.
    for (const [i, m] of flooders.entries()) await m.until(() => floodIds[i]!.every((id) => m.replyTo(id) !== undefined), 30_000, 'every flood reply');
    const replies = flooders.flatMap((m, i) => floodIds[i]!.map((id) => m.replyTo(id)!));
    const accepted = replies.filter((r) => r.ok).length;
    const limited = replies.filter((r) => r.errorCode === ChatErrorCode.RATE_LIMITED).length;
    expect(accepted + limited).toBe(replies.length);
    expect(limited).toBeGreaterThan(replies.length / 2);
    // Accepted low messages took seqs too; every member got each accepted message once, same seq.
    await watcher.until(() => watcher.messages.filter((m) => m.priority === Priority.LOW).length === accepted, 30_000, 'every accepted low message');
    const lowSeen = watcher.messages.filter((m) => m.priority === Priority.LOW);
    // System messages overtake the flood: at most 1.5 s, or half the time the room took to deliver
    // the flood when a busy machine stretches everything (behind the flood they would take all of it).
    const floodSpan = Math.max(...watcher.received.filter((r) => r.event.message?.priority === Priority.LOW).map((r) => r.at)) - floodStart;
    console.log(`system messages under a flood: worst send-to-receive delay ${worst} ms over ${delays.length} deliveries; the flood took ${floodSpan} ms`);
    expect(worst).toBeLessThan(Math.max(1_500, floodSpan / 2));
    expect(new Set(lowSeen.map((m) => m.seq)).size).toBe(lowSeen.length);
    // Each flooder's accepted messages keep their send order in the room.
    for (const m of flooders) {
      const mine = lowSeen.filter((x) => x.senderId === m.user).map((x) => Number(text(x.body).split('-').at(-1)));
      expect(mine).toEqual([...mine].sort((a, b) => a - b));
    }
  });

  it('a member that stops reading loses low messages, counted by the proxy, while the others get all of them', async () => {
    const room = `slow-${Date.now()}`;
    const host = await join('host-s', room, 'host');
    const fast = await join('fast', room);

    // The slow member: a raw client that grants a 16 KiB window and never returns credit, and stops
    // reading its socket once joined.
    const slow = await RawClient.handshake(proxy.port, await chatToken('slowpoke'), { sessionWindow: 16 * 1024, connectionWindow: 16 * 1024 * 1024 });
    slow.open(1, 'chat', { room_id: room });
    await slow.next(FrameType.OPEN_OK, 1);
    slow.data(1, encodeChatRequest({ requestId: 1, join: { sinceSeq: 0, role: WireRole.UNSPECIFIED } }));
    const events = (): ChatEvent[] => slow.frames.filter((f) => f.type === FrameType.DATA).map((f) => decodeChatEvent(f.payload));
    const deadline = Date.now() + 15_000;
    while (!events().some((e) => e.reply?.requestId === 1)) {
      if (Date.now() > deadline) throw new Error('the slow member did not join');
      await sleep(10);
    }
    expect(events().find((e) => e.reply)?.reply?.ok).toBe(true);
    slow.pause();
    const droppedBefore = await metric('livemux_dropped_frames_total', 'priority="low"');

    // The host is never room-limited: 200 low messages of 1 KiB, 200 KiB in all, far over the window.
    const COUNT = 200;
    const filler = 'x'.repeat(1000);
    for (let i = 0; i < COUNT; i++) await host.post({ send: { body: Buffer.from(`low-${i} ${filler}`), clientMsgId: '' } }, 'low', false);
    const fastLow = (): number => fast.messages.filter((m) => m.priority === Priority.LOW).length;
    await fast.until(() => fastLow() === COUNT, 30_000, 'the fast member to get every low message');
    expect(fast.messages.map((m) => m.seq)).toEqual(Array.from({ length: COUNT }, (_, i) => i + 1));
    await host.until(() => host.messages.length === COUNT, 30_000, 'the host to get its own messages');

    slow.resume();
    // Every message is either received by the slow member or counted as dropped, once what its socket
    // held has arrived (a bounded poll: on a busy machine that took longer than the 300 ms slept before).
    const accounted = async (): Promise<number> =>
      events().filter((e) => e.message?.priority === Priority.LOW).length + (await metric('livemux_dropped_frames_total', 'priority="low"')) - droppedBefore;
    const settleBy = Date.now() + 15_000;
    while ((await accounted()) < COUNT && Date.now() < settleBy) await sleep(50);
    const slowLow = events().filter((e) => e.message?.priority === Priority.LOW);
    expect(slowLow.length).toBeGreaterThan(0);
    expect(slowLow.length).toBeLessThan(COUNT / 4);
    // What it got is in order; everything else was dropped for want of credit, and counted.
    const seqs = slowLow.map((e) => e.message!.seq);
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
    const dropped = (await metric('livemux_dropped_frames_total', 'priority="low"')) - droppedBefore;
    expect(await metric('livemux_dropped_frames_total', 'reason="no_credit",priority="low"')).toBeGreaterThan(0);
    expect(slowLow.length + dropped).toBe(COUNT);

    // Returning credit brings the member back: the next message reaches it, and it recovers the rest by history.
    slow.windowUpdate(1, 1024 * 1024);
    await host.request({ send: { body: Buffer.from('back'), clientMsgId: '' } }, 'system');
    await fast.until(() => fast.messages.length === COUNT + 1, 15_000, 'the system message');
    const until = Date.now() + 15_000;
    while (!events().some((e) => e.message?.seq === COUNT + 1)) {
      if (Date.now() > until) throw new Error('the slow member did not get the message after returning credit');
      await sleep(10);
    }
    // A page holds what fits one message to this client (max_payload is half its 16 KiB window): page on.
    const recovered: number[] = [];
    for (let requestId = 2; recovered.length < COUNT + 1; requestId++) {
      slow.data(1, encodeChatRequest({ requestId, history: { afterSeq: recovered.at(-1) ?? 0, limit: 1000 } }));
      const until2 = Date.now() + 15_000;
      while (!events().some((e) => e.reply?.requestId === requestId)) {
        if (Date.now() > until2) throw new Error(`no history reply to request ${requestId}`);
        await sleep(10);
      }
      const page = events().find((e) => e.reply?.requestId === requestId)!.reply!.history!.messages.map((m) => m.seq);
      expect(page.length).toBeGreaterThan(0);
      recovered.push(...page);
    }
    expect(recovered).toEqual(Array.from({ length: COUNT + 1 }, (_, i) => i + 1));
    slow.destroy();
  });
});
