/**
 * Two Redis-backed Chat backend processes that both believe they own one room: two proxies whose
 * routes send the room to different backends (as during a failover, or while proxies disagree about
 * health). The room's write lease lets only one of them write: every send gets one seq of a single
 * gap-free sequence or a retryable NOT_OWNER, no seq is given twice, and once the writing backend's
 * sessions leave, the other takes the room over and every refused message gets in on a resend.
 */
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeChatEvent, type Reply } from '../../src/backends/chat/chat-codec.js';
import { ChatErrorCode } from '../../src/backends/chat/chat-errors.js';
import { RedisChatStore } from '../../src/backends/chat/redis-store.js';
import { type ChatMember, chatRoutes, joinMember } from '../helpers/chat-member.js';
import { type RunningProcess, startChatBackend, startProxy } from '../helpers/processes.js';
import { type RedisServer, startRedisServer } from '../helpers/redis-server.js';
import { metricValue } from '../helpers/metrics.js';

const PER_SIDE = 40;
const LEASE_TTL_MS = 2000;

let redis: RedisServer;
let backends: Awaited<ReturnType<typeof startChatBackend>>[] = [];
let proxies: RunningProcess[] = [];
let ports: number[] = [];

beforeAll(async () => {
  redis = await startRedisServer();
  const flags = ['--redis', redis.url, '--user-rate', '10000', '--admin-port', '0', '--lease-ttl-ms', String(LEASE_TTL_MS)];
  backends = await Promise.all([0, 1].map(() => startChatBackend(flags)));
  // Proxy i sends every chat session to backend i only: both backends serve the same rooms.
  const started = await Promise.all(backends.map((b) => startProxy({ backends: [], routes: chatRoutes([b.address]) })));
  proxies = started;
  ports = started.map((p) => p.port);
});

afterAll(async () => {
  await Promise.all(proxies.map((p) => p.stop()));
  await Promise.all(backends.map((b) => b.stop()));
  await redis?.stop();
});

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const range = (from: number, to: number): number[] => Array.from({ length: to - from + 1 }, (_, i) => from + i);

async function refusalsOf(backend: number): Promise<number> {
  return metricValue(backends[backend]!.adminPort!, 'livemux_chat_lease_refusals_total', 'reason="held"');
}

describe('two Chat backends that both serve one room', () => {
  it('give one gap-free sequence or a retryable NOT_OWNER, and hand the room over when the writer\'s sessions leave', async () => {
    const room = `contested-${Date.now()}`;
    const sides: ChatMember[] = [await joinMember(ports[0]!, 'host-a', room, { role: 'host' }), await joinMember(ports[1]!, 'host-b', room, { role: 'host' })];

    // Both sides send at once, pipelined, each message under its own client_msg_id.
    const ids = await Promise.all(
      sides.map(async (m, side) => {
        const posted: [string, number][] = [];
        for (const i of range(1, PER_SIDE)) {
          const clientMsgId = `${side}-${i}`;
          posted.push([clientMsgId, await m.post({ send: { body: Buffer.from(clientMsgId), clientMsgId } })]);
        }
        return posted;
      }),
    );
    for (const [side, m] of sides.entries()) {
      await m.until(() => ids[side]!.every(([, id]) => m.replyTo(id) !== undefined), 10_000, 'every reply');
    }

    const acked = new Map<number, string>(); // seq → client_msg_id
    const refused: string[][] = [[], []];
    for (const [side, m] of sides.entries()) {
      for (const [clientMsgId, id] of ids[side]!) {
        const reply = m.replyTo(id) as Reply;
        if (reply.ok) {
          expect(acked.has(reply.sent!.seq), `seq ${reply.sent!.seq} given twice`).toBe(false);
          acked.set(reply.sent!.seq, clientMsgId);
        } else {
          expect(reply, `${clientMsgId}: ${reply.errorMessage}`).toMatchObject({ errorCode: ChatErrorCode.NOT_OWNER });
          expect(reply.retryAfterMs).toBeGreaterThan(0);
          refused[side]!.push(clientMsgId);
        }
      }
    }
    // Exactly one backend wrote; the other refused every one of its sends, and counted them.
    const writer = refused[0]!.length === 0 ? 0 : 1;
    const other = 1 - writer;
    expect(refused[writer]).toEqual([]);
    expect(refused[other]).toHaveLength(PER_SIDE);
    expect([...acked.keys()].sort((a, b) => a - b)).toEqual(range(1, PER_SIDE));
    expect(await refusalsOf(other)).toBeGreaterThanOrEqual(PER_SIDE);
    // The writer's lease, under --lease-ttl-ms.
    const admin = new Redis(redis.url);
    try {
      const ttl = await admin.pttl(`livemux:chat:{${room}}:lease`);
      expect(ttl).toBeGreaterThan(0);
      expect(ttl).toBeLessThanOrEqual(LEASE_TTL_MS);
    } finally {
      admin.disconnect();
    }

    // The room moves: the writer's only session leaves, which releases the lease. The other side
    // resends what was refused (same client_msg_id), after retry_after_ms.
    await sides[writer]!.client.close();
    const m = sides[other]!;
    const deadline = Date.now() + 15_000;
    let pending = refused[other]!;
    while (pending.length > 0) {
      if (Date.now() > deadline) throw new Error(`${pending.length} messages still refused`);
      const next: string[] = [];
      let wait = 0;
      for (const clientMsgId of pending) {
        const reply = await m.request({ send: { body: Buffer.from(clientMsgId), clientMsgId } });
        if (reply.ok) acked.set(reply.sent!.seq, clientMsgId);
        else {
          expect(reply.errorCode).toBe(ChatErrorCode.NOT_OWNER);
          next.push(clientMsgId);
          wait = Math.max(wait, reply.retryAfterMs);
        }
      }
      pending = next;
      await sleep(wait);
    }

    // Redis holds one gap-free sequence: every message once, each acknowledged seq with its message.
    const store = new RedisChatStore({ url: redis.url });
    try {
      const { messages, oldestSeq } = await store.readHistory(room, 0, 1000);
      expect(oldestSeq).toBe(1);
      expect(messages.map((x) => x.seq)).toEqual(range(1, 2 * PER_SIDE));
      const stored = new Map(messages.map((x) => [x.seq, decodeChatEvent(x.body).message!.clientMsgId]));
      expect(new Set(stored.values()).size).toBe(2 * PER_SIDE);
      for (const [seq, clientMsgId] of acked) expect(stored.get(seq), `seq ${seq}`).toBe(clientMsgId);
      expect(acked.size).toBe(2 * PER_SIDE);
    } finally {
      await store.close();
      await m.client.close();
    }
  }, 60_000);
});
