/**
 * The Chat backend as a real process behind a real proxy, driven by SDK clients speaking the Chat
 * protocol (docs/chat.md): members of one room get one sequence, a member that comes back with its
 * last seq gets exactly the messages it missed, and the token's role claim decides who may moderate.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { connect, type ClientSession, type LivemuxClient } from '../../src/client/index.js';
import {
  ModerateAction,
  WireRole,
  decodeChatEvent,
  encodeChatRequest,
  type ChatEvent,
  type ChatRequest,
  type Reply,
  type RoomMessage,
} from '../../src/backends/chat/chat-codec.js';
import { mintToken } from '../../src/proxy/auth.js';
import { ChatErrorCode } from '../../src/backends/chat/chat-errors.js';
import { type RunningProcess, TEST_SECRET, runLivemux, startProxy, testToken } from '../helpers/processes.js';

const processes: RunningProcess[] = [];
const clients: LivemuxClient[] = [];
let proxyPort: number;

beforeAll(async () => {
  const backend = runLivemux(['chat-backend', '--host', '127.0.0.1', '--port', '0']);
  processes.push(backend);
  const port = (await backend.waitFor((l) => l.event === 'listening')).port as number;
  const proxy = await startProxy({
    backends: [],
    routes: {
      version: 1,
      routes: [{ business: 'chat', pool: 'chat', policy: 'consistent_hash', hash_key: 'metadata.room_id' }],
      pools: { chat: { protocol: 'grpc', endpoints: [{ address: `127.0.0.1:${port}` }] } },
    },
  });
  processes.push(proxy);
  proxyPort = proxy.port;
});

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
});

afterAll(async () => {
  await Promise.all(processes.map((p) => p.stop('SIGTERM')));
});

/** A chat session seen through its decoded events. */
class ChatMember {
  readonly events: ChatEvent[] = [];
  private nextId = 1;
  private waiters: (() => void)[] = [];

  constructor(readonly session: ClientSession) {
    session.on('data', (payload: Buffer) => {
      this.events.push(decodeChatEvent(payload));
      for (const w of this.waiters.splice(0)) w();
    });
  }

  get messages(): RoomMessage[] {
    return this.events.flatMap((e) => (e.message ? [e.message] : []));
  }

  async request(req: Omit<ChatRequest, 'requestId'>): Promise<Reply> {
    const requestId = this.nextId++;
    await this.session.send(encodeChatRequest({ requestId, ...req }));
    await this.until(() => this.events.some((e) => e.reply?.requestId === requestId));
    return this.events.find((e) => e.reply?.requestId === requestId)!.reply!;
  }

  async until(done: () => boolean, timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!done()) {
      if (Date.now() > deadline) throw new Error(`timed out; events: ${JSON.stringify(this.events.slice(-3))}`);
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        setTimeout(resolve, 100);
      });
    }
  }
}

async function member(user: string, room: string, sinceSeq = 0, role?: string): Promise<ChatMember> {
  const token = role === undefined ? await testToken(user) : await mintToken({ secret: TEST_SECRET, sub: user, claims: { role } });
  const client = await connect({ host: '127.0.0.1', port: proxyPort, token, reconnect: false });
  clients.push(client);
  const m = new ChatMember(await client.open('chat', { room_id: room }));
  expect(await m.request({ join: { sinceSeq, role: WireRole.UNSPECIFIED } })).toMatchObject({ ok: true });
  return m;
}

const say = (m: ChatMember, text: string): Promise<Reply> => m.request({ send: { body: Buffer.from(text), clientMsgId: '' } });
const view = (messages: RoomMessage[]): string[] => messages.map((m) => `${m.seq}:${m.senderId}:${Buffer.from(m.body).toString()}`);

describe('chat backend behind the proxy', () => {
  it('two members of a room receive the same sequence; a returning member gets exactly what it missed', async () => {
    const room = `room-${Date.now()}`;
    const alice = await member('alice', room);
    const bob = await member('bob', room);
    // Both send at once: the room owner orders them, everyone sees that one order.
    const replies = await Promise.all([
      ...Array.from({ length: 4 }, (_, i) => say(alice, `a${i}`)),
      ...Array.from({ length: 4 }, (_, i) => say(bob, `b${i}`)),
    ]);
    expect(replies.every((r) => r.ok)).toBe(true);
    await alice.until(() => alice.messages.length === 8);
    await bob.until(() => bob.messages.length === 8);
    expect(alice.messages.map((m) => m.seq)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(view(bob.messages)).toEqual(view(alice.messages));
    expect(view(alice.messages).filter((t) => t.includes(':alice:')).map((t) => t.split(':')[2])).toEqual(['a0', 'a1', 'a2', 'a3']);

    // Bob goes away having seen seq 8; three messages are sent meanwhile.
    const lastSeen = bob.messages.at(-1)!.seq;
    await bob.session.close();
    for (const text of ['x1', 'x2', 'x3']) expect((await say(alice, text)).ok).toBe(true);

    const back = await member('bob', room, lastSeen);
    expect(back.events[0]?.joined).toMatchObject({ seq: 11, onlineCount: 2 });
    expect(back.events.some((e) => e.gap)).toBe(false);
    expect(view(back.messages)).toEqual(['9:alice:x1', '10:alice:x2', '11:alice:x3']);
    // And live traffic continues after the recovery, in sequence.
    await say(alice, 'live');
    await back.until(() => back.messages.length === 4);
    expect(view(back.messages).at(-1)).toBe('12:alice:live');
  });

  it('the token\'s role claim reaches the backend: a host may mute, a member gets PERMISSION_DENIED', async () => {
    const room = `mod-${Date.now()}`;
    const host = await member('hostess', room, 0, 'host');
    const bob = await member('bob', room);
    expect(host.events[0]?.joined?.role).toBe(WireRole.HOST);
    const denied = await bob.request({ moderate: { action: ModerateAction.MUTE, targetUser: 'hostess', durationMs: 0, reason: '' } });
    expect(denied).toMatchObject({ ok: false, errorCode: ChatErrorCode.PERMISSION_DENIED });
    const muted = await host.request({ moderate: { action: ModerateAction.MUTE, targetUser: 'bob', durationMs: 60_000, reason: 'spam' } });
    expect(muted.ok).toBe(true);
    expect(await say(bob, 'hello?')).toMatchObject({ ok: false, errorCode: ChatErrorCode.MUTED });
  });

  it('a member that sends and closes at once gets its replies first: the backend ends the session after answering', async () => {
    const zoe = await member('zoe', 'room-half-close');
    // No waiting between: the requests and CLOSE may reach the proxy in one write.
    void zoe.session.send(encodeChatRequest({ requestId: 98, listMembers: { cursor: '', limit: 10 } }));
    void zoe.session.send(encodeChatRequest({ requestId: 99, send: { body: Buffer.from('last words'), clientMsgId: '' } }));
    await zoe.session.close();
    const replies = zoe.events.flatMap((e) => (e.reply ? [e.reply] : []));
    expect(replies.map((r) => [r.requestId, r.ok])).toEqual([
      [1, true],
      [98, true],
      [99, true],
    ]);
    expect(zoe.messages.map((m) => Buffer.from(m.body).toString())).toContain('last words');
  });
});
