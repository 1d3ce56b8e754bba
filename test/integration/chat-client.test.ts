/**
 * The SDK's typed ChatClient against a real proxy and Chat backend: join, send, events, and recovery
 * done by the SDK (not the app) when the connection drops: the session reopens, rejoins with the last
 * seq it has, and the messages sent meanwhile arrive once each.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type LivemuxClient } from '../../src/client/index.js';
import { ChatClient, type ChatClientEvent } from '../../src/client/chat-client.js';
import { chatRoutes, chatToken } from '../helpers/chat-member.js';
import { startCuttableForwarder } from '../helpers/cuttable-forwarder.js';
import { startChatBackend, startProxy } from '../helpers/processes.js';
import { until } from '../helpers/until.js';

let backend: Awaited<ReturnType<typeof startChatBackend>>;
let proxy: Awaited<ReturnType<typeof startProxy>>;
const clients: LivemuxClient[] = [];

beforeAll(async () => {
  backend = await startChatBackend();
  proxy = await startProxy({ backends: [], routes: chatRoutes([backend.address]) });
}, 30_000);

afterAll(async () => {
  await Promise.all(clients.map((c) => c.close()));
  await proxy?.stop();
  await backend?.stop();
});

async function client(user: string, port = proxy.port, role?: string): Promise<LivemuxClient> {
  const c = await connect({ host: '127.0.0.1', port, token: await chatToken(user, role), reconnect: { initialMs: 50, maxMs: 200 } });
  clients.push(c);
  return c;
}

/** Collects a ChatClient's events as it iterates. */
function collect(chat: ChatClient): ChatClientEvent[] {
  const events: ChatClientEvent[] = [];
  void (async () => {
    for await (const e of chat) events.push(e);
  })().catch(() => undefined);
  return events;
}

const texts = (events: ChatClientEvent[]): string[] => events.flatMap((e) => (e.type === 'message' ? [Buffer.from(e.message.body).toString()] : []));

describe('ChatClient', () => {
  it('joins, sends, and receives the room\'s messages with their seqs', async () => {
    const host = await ChatClient.join(await client('host-a', proxy.port, 'host'), 'sdk-room');
    const guest = await ChatClient.join(await client('guest-a'), 'sdk-room');
    const events = collect(guest);
    expect(host.joined).toMatchObject({ seq: 0 });
    expect(await host.send('hello')).toBe(1);
    expect(await guest.send('hi host', { clientMsgId: 'g-1' })).toBe(2);
    await until(() => texts(events).length === 2, 'two messages');
    expect(events.filter((e) => e.type === 'message').map((e) => (e.type === 'message' ? [e.message.seq, e.message.senderId] : []))).toEqual([
      [1, 'host-a'],
      [2, 'guest-a'],
    ]);
    expect(guest.lastSeq).toBe(2);
    expect((await guest.members()).onlineCount).toBe(2);
    await host.close();
    await guest.close();
  });

  it('recovers what it missed while its connection was down, once each, without the app doing anything', async () => {
    const host = await ChatClient.join(await client('host-b', proxy.port, 'host'), 'sdk-recover');
    const forwarder = await startCuttableForwarder(proxy.port);
    try {
      const guest = await ChatClient.join(await client('guest-b', forwarder.port), 'sdk-recover');
      const events = collect(guest);
      await host.send('before');
      await until(() => texts(events).length === 1, 'the first message');
      forwarder.hold(); // the guest hears nothing from now on
      for (const t of ['during-1', 'during-2', 'during-3']) await host.send(t);
      forwarder.cut(); // its connection dies; the SDK reconnects, reopens and rejoins since seq 1
      await until(() => texts(events).length === 4, 'the three missed messages');
      await host.send('after');
      await until(() => texts(events).length === 5, 'live again');
      expect(texts(events)).toEqual(['before', 'during-1', 'during-2', 'during-3', 'after']);
      // The first join, and the SDK's own rejoin after the reopen.
      expect(events.filter((e) => e.type === 'joined').length).toBe(2);
      expect(guest.lastSeq).toBe(5);
      await guest.close();
    } finally {
      await forwarder.close();
      await host.close();
    }
  });
});
