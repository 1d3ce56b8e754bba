/**
 * The Chat backend over a Redis that answers slowly (a real redis-server behind a forwarder that delays
 * every chunk), real processes behind a proxy: the store sequences far fewer messages per second than a
 * low-priority flood sends, so the room's low buffer overflows. System messages all arrive, in order and
 * soon; high ones are not dropped; low ones are, oldest first, each dropped sender that asked is told
 * OVERLOADED; and the backend's /metrics counts exactly the messages the receivers did not get.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ChatErrorCode } from '../../src/backends/chat/chat-errors.js';
import { Priority } from '../../src/protocol/constants.js';
import { type ChatMember, chatRoutes, joinMember } from '../helpers/chat-member.js';
import { startDelayingForwarder, type DelayingForwarder } from '../helpers/delaying-forwarder.js';
import { type RunningProcess, startChatBackend, startProxy } from '../helpers/processes.js';
import { startRedisServer, type RedisServer } from '../helpers/redis-server.js';
import { scrape } from '../helpers/metrics.js';

/** Each Redis round trip takes at least 2 × 10 ms; sequencing one message takes three. */
const REDIS_DELAY_MS = 10;
const LOW_BUFFER = 8;
const processes: RunningProcess[] = [];
const members: ChatMember[] = [];
let redis: RedisServer;
let forwarder: DelayingForwarder;
let backendAdmin: number;
let proxyPort: number;

beforeAll(async () => {
  redis = await startRedisServer();
  forwarder = await startDelayingForwarder(redis.port, REDIS_DELAY_MS);
  // No upstream limit in the way: what sheds the flood here is the room buffer.
  const backend = await startChatBackend([
    '--redis', `redis://127.0.0.1:${forwarder.port}`,
    '--admin-port', '0',
    '--room-rate', '100000',
    '--user-rate', '100000',
    '--buffer-low', String(LOW_BUFFER),
    '--buffer-high', '500',
    '--buffer-system', '500',
  ]);
  processes.push(backend);
  backendAdmin = backend.adminPort!;
  const proxy = await startProxy({ backends: [], routes: chatRoutes([backend.address]), config: { limits: { low_priority_rate: 0 } } });
  processes.push(proxy);
  proxyPort = proxy.port;
});

afterEach(async () => {
  await Promise.all(members.splice(0).map((m) => m.client.close()));
});

afterAll(async () => {
  await Promise.all(processes.map((p) => p.stop('SIGTERM')));
  await forwarder?.close();
  await redis?.stop();
});

async function join(user: string, room: string, role?: string): Promise<ChatMember> {
  const m = await joinMember(proxyPort, user, room, { role });
  members.push(m);
  return m;
}

/** Every sample of `name` on the backend's /metrics, keyed by its label text (`reason="x",priority="y"`). */
async function samples(name: string): Promise<Map<string, number>> {
  const text = await scrape(backendAdmin);
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    const match = /^(\w+)\{(.*)\} (\S+)$/.exec(line);
    if (match?.[1] === name) out.set(match[2]!, Number(match[3]));
  }
  return out;
}

/** The sum of the samples of `name` whose labels include `label`. */
async function total(name: string, label: string): Promise<number> {
  return [...(await samples(name)).entries()].filter(([labels]) => labels.includes(label)).reduce((sum, [, v]) => sum + v, 0);
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const text = (body: Uint8Array): string => Buffer.from(body).toString();

describe('chat over a slow store', () => {
  it('drops low first, never system, and counts exactly what the receivers did not get', async () => {
    const room = `slow-store-${Date.now()}`;
    const host = await join('host-x', room, 'host');
    const flooders = await Promise.all(['f1', 'f2', 'f3'].map((u) => join(u, room)));
    const watcher = await join('watcher', room);

    const FLOOD = 60;
    const SYSTEM = 10;
    const HIGH = 5;
    // f2 floods fire-and-forget (request_id 0): its drops are only counted; f1 and f3 ask for replies.
    const wantsReply = (m: ChatMember): boolean => m.user !== 'f2';
    const floodStart = Date.now();
    const flood = flooders.map(async (m) => {
      const ids: number[] = [];
      for (let i = 0; i < FLOOD; i++) {
        ids.push(await m.post({ send: { body: Buffer.from(`${m.user}-low-${i}`), clientMsgId: '' } }, 'low', wantsReply(m)));
        if (i % 10 === 9) await sleep(5);
      }
      return ids;
    });
    const highIds: number[] = [];
    for (let i = 0; i < HIGH; i++) highIds.push(await flooders[0]!.post({ send: { body: Buffer.from(`f1-high-${i}`), clientMsgId: '' } }, 'high'));
    const sentAt = new Map<string, number>();
    const systemIds: number[] = [];
    for (let i = 0; i < SYSTEM; i++) {
      await sleep(30);
      sentAt.set(`sys-${i}`, Date.now());
      systemIds.push(await host.post({ send: { body: Buffer.from(`sys-${i}`), clientMsgId: '' } }, 'system'));
    }
    const floodIds = await Promise.all(flood);

    // Every sender that asked hears back: system and high accepted, low accepted or OVERLOADED.
    await host.until(() => systemIds.every((id) => host.replyTo(id) !== undefined), 20_000, 'every system reply');
    for (const id of systemIds) expect(host.replyTo(id)).toMatchObject({ ok: true });
    const f1 = flooders[0]!;
    await f1.until(() => highIds.every((id) => f1.replyTo(id) !== undefined), 20_000, 'every high reply');
    for (const id of highIds) expect(f1.replyTo(id)).toMatchObject({ ok: true });
    for (const [i, m] of flooders.entries()) {
      if (wantsReply(m)) await m.until(() => floodIds[i]!.every((id) => m.replyTo(id) !== undefined), 20_000, 'every flood reply');
    }

    // The backend is done once every low message has reached it (f2 does not wait for replies, so its
    // last ones may still be on their way) and been sequenced or dropped, and nothing waits in its
    // buffers; by then the watcher has all it will get.
    const deadline = Date.now() + 20_000;
    const lowSettled = async (): Promise<number> =>
      (await total('livemux_chat_messages_accepted_total', 'priority="low"')) + (await total('livemux_chat_messages_dropped_total', 'priority="low"'));
    while (
      (await lowSettled()) < flooders.length * FLOOD ||
      (await total('livemux_chat_messages_buffered', 'priority=')) > 0 ||
      watcher.messages.length < (await total('livemux_chat_messages_accepted_total', 'priority='))
    ) {
      if (Date.now() > deadline) throw new Error('the backend did not drain its buffers');
      await sleep(50);
    }

    const seen = watcher.messages;
    // One seq order without holes: dropped messages never took a seq.
    expect(seen.map((m) => m.seq)).toEqual(Array.from({ length: seen.length }, (_, i) => i + 1));
    const system = seen.filter((m) => m.priority === Priority.SYSTEM);
    expect(system.map((m) => text(m.body))).toEqual(Array.from({ length: SYSTEM }, (_, i) => `sys-${i}`));
    const delays = watcher.received.filter((r) => r.event.message?.priority === Priority.SYSTEM).map((r) => r.at - sentAt.get(text(r.event.message!.body))!);
    // System messages jump the buffered flood: within 2 s, or half the time the room took to sequence
    // everything when a busy machine stretches it (queued behind the flood they would take all of it).
    const drainSpan = Math.max(...watcher.received.map((r) => r.at)) - floodStart;
    console.log(`slow store: ${seen.length} messages sequenced in ${drainSpan} ms, worst system send-to-receive delay ${Math.max(...delays)} ms`);
    expect(Math.max(...delays)).toBeLessThan(Math.max(2_000, drainSpan / 2));
    expect(seen.filter((m) => m.priority === Priority.HIGH).map((m) => text(m.body))).toEqual(Array.from({ length: HIGH }, (_, i) => `f1-high-${i}`));

    // Low was dropped, and only low; the counts are exactly what the watcher did not get.
    const low = seen.filter((m) => m.priority === Priority.LOW);
    const lostLow = flooders.length * FLOOD - low.length;
    expect(lostLow).toBeGreaterThan(FLOOD);
    expect(await total('livemux_chat_messages_dropped_total', 'priority="low"')).toBe(lostLow);
    expect(await total('livemux_chat_messages_dropped_total', 'reason="buffer_full",priority="low"')).toBe(lostLow);
    expect(await total('livemux_chat_messages_dropped_total', 'priority="high"')).toBe(0);
    expect(await total('livemux_chat_messages_dropped_total', 'priority="system"')).toBe(0);

    for (const [i, m] of flooders.entries()) {
      const mine = low.filter((x) => x.senderId === m.user).map((x) => Number(text(x.body).split('-').at(-1)));
      // Each flooder's surviving messages keep its order; the oldest went first, so its last one is there.
      expect(mine).toEqual([...mine].sort((a, b) => a - b));
      if (!wantsReply(m)) continue;
      // Every dropped message of a sender that asked got OVERLOADED: received + told = sent.
      const replies = floodIds[i]!.map((id) => m.replyTo(id)!);
      expect(replies.filter((r) => !r.ok).every((r) => r.errorCode === ChatErrorCode.OVERLOADED && r.retryAfterMs > 0)).toBe(true);
      expect(replies.filter((r) => r.ok).length).toBe(mine.length);
    }
    const lastSent = flooders.map((m) => `${m.user}-low-${FLOOD - 1}`);
    expect(lastSent.filter((body) => low.some((x) => text(x.body) === body)).length).toBeGreaterThan(0);
  }, 60_000);
});
