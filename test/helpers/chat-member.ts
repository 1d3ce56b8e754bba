/**
 * Chat protocol clients for integration tests against real proxies and Chat backends: a member is one
 * SDK session of business `chat` in one room, seen through its decoded ChatEvents (docs/chat.md).
 */
import { connect, type ClientSession, type LivemuxClient } from '../../src/client/index.js';
import { WireRole, decodeChatEvent, encodeChatRequest, type ChatEvent, type ChatRequest, type Reply, type RoomMessage } from '../../src/backends/chat/chat-codec.js';
import type { PriorityName } from '../../src/protocol/constants.js';
import { mintToken } from '../../src/proxy/auth.js';
import { TEST_SECRET, startChatBackend, startProxy } from './processes.js';
import { type RedisServer, startRedisServer } from './redis-server.js';

/** routes.yaml for one `chat` business on `endpoints`, consistent_hash on metadata.room_id. */
export function chatRoutes(endpoints: string[], pool: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    version: 1,
    routes: [{ business: 'chat', pool: 'chat', policy: 'consistent_hash', hash_key: 'metadata.room_id' }],
    pools: { chat: { protocol: 'grpc', endpoints: endpoints.map((address) => ({ address })), ...pool } },
  };
}

/**
 * The set-up of the failover tests: a redis-server of its own, two Chat backends on it (with `args`
 * besides --redis), and two proxies that route `chat` by room and notice a dead backend within about
 * half a second. Members joined through {@link join} are closed by {@link closeMembers} and {@link stop}.
 */
export class ChatCluster {
  readonly members: ChatMember[] = [];

  private constructor(
    readonly redis: RedisServer,
    readonly backends: Awaited<ReturnType<typeof startChatBackend>>[],
    readonly proxies: Awaited<ReturnType<typeof startProxy>>[],
  ) {}

  static async start(args: string[] = []): Promise<ChatCluster> {
    const redis = await startRedisServer();
    const backendArgs = ['--redis', redis.url, ...args];
    const backends = await Promise.all([startChatBackend(backendArgs), startChatBackend(backendArgs)]);
    const routes = chatRoutes(
      backends.map((b) => b.address),
      // A killed backend fails its checks at once (refused); 500 ms only bounds a check of a live one,
      // which on a busy machine took over 200 ms and flapped healthy backends out of rotation.
      // Two failed checks in a row take one out: a single slow answer under load no longer flaps it.
      { health_check: { interval_ms: 500, timeout_ms: 500, unhealthy_threshold: 2, healthy_threshold: 1 }, circuit_breaker: { reset_timeout_ms: 300 } },
    );
    const proxies = await Promise.all([startProxy({ backends: [], routes }), startProxy({ backends: [], routes })]);
    return new ChatCluster(redis, backends, proxies);
  }

  /** Joins `user` to `room` through proxy `proxy` (0 or 1). */
  async join(proxy: number, user: string, room: string, opts: { sinceSeq?: number; role?: string } = {}): Promise<ChatMember> {
    const m = await joinMember(this.proxies[proxy]!.port, user, room, opts);
    this.members.push(m);
    return m;
  }

  /** Closes every member joined so far (their processes may already be gone). */
  async closeMembers(): Promise<void> {
    await Promise.all(this.members.splice(0).map((m) => m.client.close().catch(() => undefined)));
  }

  async stop(): Promise<void> {
    await this.closeMembers();
    await Promise.all(this.proxies.map((p) => p.stop()));
    await Promise.all(this.backends.map((b) => b.stop()));
    await this.redis.stop();
  }
}

/** A token for `user`, with a `role` claim when given (host, admin). */
export function chatToken(user: string, role?: string): Promise<string> {
  return mintToken({ secret: TEST_SECRET, sub: user, ...(role === undefined ? {} : { claims: { role } }) });
}

/** One received event and when it arrived (Date.now()). */
export interface Received {
  readonly event: ChatEvent;
  readonly at: number;
}

/** A chat session seen through its decoded events. */
export class ChatMember {
  readonly received: Received[] = [];
  /** Set once the session closed: the CLOSE code and reason. */
  closed: { code: number; reason: string } | null = null;
  private nextId = 1;
  private waiters: (() => void)[] = [];
  /** Replies by request id: a flood test waits on 1,300 of them, and a scan per look was cubic. */
  private readonly replies = new Map<number, Reply>();

  constructor(
    readonly user: string,
    readonly client: LivemuxClient,
    readonly session: ClientSession,
  ) {
    session.on('data', (payload: Buffer) => {
      const event = decodeChatEvent(payload);
      this.received.push({ event, at: Date.now() });
      if (event.reply && !this.replies.has(event.reply.requestId)) this.replies.set(event.reply.requestId, event.reply);
      this.wake();
    });
    session.on('close', (code: number, reason: string) => {
      this.closed = { code, reason };
      this.wake();
    });
  }

  get events(): ChatEvent[] {
    return this.received.map((r) => r.event);
  }

  get messages(): RoomMessage[] {
    return this.received.flatMap((r) => (r.event.message ? [r.event.message] : []));
  }

  /** Sends a request without waiting for its Reply; returns its request id (0 asks for no reply). */
  async post(req: Omit<ChatRequest, 'requestId'>, priority: PriorityName = 'high', wantReply = true): Promise<number> {
    const requestId = wantReply ? this.nextId++ : 0;
    await this.session.send(encodeChatRequest({ requestId, ...req }), { priority });
    return requestId;
  }

  replyTo(requestId: number): Reply | undefined {
    return this.replies.get(requestId);
  }

  async request(req: Omit<ChatRequest, 'requestId'>, priority: PriorityName = 'high', timeoutMs = 10_000): Promise<Reply> {
    const id = await this.post(req, priority);
    await this.until(() => this.replyTo(id) !== undefined, timeoutMs, `reply to request ${id}`);
    return this.replyTo(id)!;
  }

  say(text: string, priority: PriorityName = 'high', clientMsgId = ''): Promise<Reply> {
    return this.request({ send: { body: Buffer.from(text), clientMsgId } }, priority);
  }

  async until(done: () => boolean, timeoutMs = 10_000, what = 'condition'): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!done()) {
      if (Date.now() > deadline) throw new Error(`${this.user}: timed out waiting for ${what}; last events: ${JSON.stringify(this.events.slice(-3))}`);
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        setTimeout(resolve, 100);
      });
    }
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }
}

/** Connects `user` to the proxy on `port`, opens a chat session in `room` (no Join yet). */
export async function openMember(port: number, user: string, room: string, role?: string): Promise<ChatMember> {
  const client = await connect({ host: '127.0.0.1', port, token: await chatToken(user, role), reconnect: false });
  return new ChatMember(user, client, await client.open('chat', { room_id: room }));
}

/** openMember, then a Join with `sinceSeq` that must succeed. */
export async function joinMember(port: number, user: string, room: string, opts: { sinceSeq?: number; role?: string } = {}): Promise<ChatMember> {
  const m = await openMember(port, user, room, opts.role);
  const reply = await m.request({ join: { sinceSeq: opts.sinceSeq ?? 0, role: WireRole.UNSPECIFIED } });
  if (!reply.ok) throw new Error(`${user}: join ${room} failed: ${reply.errorCode} ${reply.errorMessage}`);
  return m;
}

/** "seq:sender:body" of each message, for comparing what members saw. */
export const view = (messages: readonly RoomMessage[]): string[] => messages.map((m) => `${m.seq}:${m.senderId}:${Buffer.from(m.body).toString()}`);
