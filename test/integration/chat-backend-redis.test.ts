/**
 * The Chat engine over RedisChatStore with a real redis-server: when a room's owner dies and another
 * backend process (here: another engine with its own connection) takes the room over, the sequence
 * continues, moved sessions keep receiving, and a member recovers exactly what it missed.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { createChatBackend, type ChatBackend } from '../../src/backends/chat/chat-backend.js';
import { WireRole } from '../../src/backends/chat/chat-codec.js';
import { RedisChatStore } from '../../src/backends/chat/redis-store.js';
import { ChatHarness } from '../helpers/chat-harness.js';
import { FakeProxyStream } from '../helpers/fake-proxy-stream.js';
import { redisServerForFile } from '../helpers/redis-for-file.js';

const server = redisServerForFile();
const backends: ChatBackend[] = [];

afterEach(async () => {
  await Promise.all(backends.splice(0).map((b) => b.close()));
});

function owner(keyPrefix: string): ChatHarness {
  const chat = createChatBackend({ store: new RedisChatStore({ url: server.url, keyPrefix }) });
  backends.push(chat);
  return new ChatHarness(chat);
}

const room = 'live-1';
const join = { sinceSeq: 0, role: WireRole.UNSPECIFIED };
const say = (text: string) => ({ send: { body: Buffer.from(text), clientMsgId: '' } });

describe('chat backend over Redis', () => {
  it('a new owner continues the sequence; moved and returning members lose nothing', async () => {
    const first = owner('failover:');
    const proxyA = new FakeProxyStream('proxy-a');
    first.open(proxyA, 1, 'alice', { room });
    first.open(proxyA, 2, 'bob', { room });
    expect((await first.call(proxyA, 1, { join })).ok).toBe(true);
    expect((await first.call(proxyA, 2, { join })).ok).toBe(true);
    for (const text of ['m1', 'm2', 'm3']) expect((await first.call(proxyA, 1, say(text))).ok).toBe(true);
    expect(first.messages(proxyA, 2)).toEqual(['1:m1', '2:m2', '3:m3']);

    // The owner goes (a clean shutdown releases its room leases; a dead one's lapse after their TTL);
    // the proxy moves alice's session to the next owner (reattach), bob reconnects later.
    await first.chat.close();
    const second = owner('failover:');
    const proxyB = new FakeProxyStream('proxy-a');
    second.open(proxyB, 7, 'alice', { room, reattach: true });
    await second.chat.settled();
    expect(second.events(proxyB, 7)).toEqual([]);
    for (const text of ['m4', 'm5']) expect((await second.call(proxyB, 7, say(text))).ok).toBe(true);
    expect(second.messages(proxyB, 7)).toEqual(['4:m4', '5:m5']);

    second.open(proxyB, 8, 'bob', { room });
    expect((await second.call(proxyB, 8, { join: { ...join, sinceSeq: 3 } })).ok).toBe(true);
    expect(second.events(proxyB, 8)[0]?.joined).toMatchObject({ seq: 5, onlineCount: 2 });
    expect(second.messages(proxyB, 8)).toEqual(['4:m4', '5:m5']);
  });
});
