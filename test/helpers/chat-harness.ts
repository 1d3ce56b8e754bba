/**
 * Drives a Chat backend's handlers the way a proxy would (SessionOpened, DATA with a ChatRequest) over
 * FakeProxyStreams, and reads back what each session received as decoded ChatEvents.
 */
import { Priority } from '../../src/protocol/constants.js';
import type { ChatBackend } from '../../src/backends/chat/chat-backend.js';
import { decodeChatEvent, encodeChatRequest, type ChatEvent, type ChatRequest, type Reply } from '../../src/backends/chat/chat-codec.js';
import type { FakeProxyStream } from './fake-proxy-stream.js';

export interface OpenOptions {
  room: string;
  role?: string;
  reattach?: boolean;
}

export class ChatHarness {
  private nextRequestId = 1;

  constructor(readonly chat: ChatBackend) {}

  open(stream: FakeProxyStream, session: number, userId: string, opts: OpenOptions): void {
    stream.open(session);
    this.chat.handlers.onOpen(stream, session, {
      userId,
      business: 'chat',
      metadata: { room_id: opts.room },
      clientAddress: '127.0.0.1:1',
      connectionId: `c-${session}`,
      clientSessionId: session,
      reattach: opts.reattach ?? false,
      claims: opts.role === undefined ? {} : { role: opts.role },
      maxPayload: 1 << 20,
    });
  }

  /** Sends a request without waiting (requests queue in their room); returns its request id. */
  request(stream: FakeProxyStream, session: number, req: Omit<ChatRequest, 'requestId'>, priority: Priority = Priority.HIGH): number {
    const requestId = this.nextRequestId++;
    this.chat.handlers.onData(stream, session, encodeChatRequest({ requestId, ...req }), priority);
    return requestId;
  }

  async call(stream: FakeProxyStream, session: number, req: Omit<ChatRequest, 'requestId'>, priority: Priority = Priority.HIGH): Promise<Reply> {
    const id = this.request(stream, session, req, priority);
    await this.chat.settled();
    return this.replyTo(stream, session, id);
  }

  events(stream: FakeProxyStream, session: number): ChatEvent[] {
    return (stream.inbox.get(session) ?? []).map((r) => decodeChatEvent(r.payload));
  }

  replyTo(stream: FakeProxyStream, session: number, requestId: number): Reply {
    const reply = this.events(stream, session).find((e) => e.reply?.requestId === requestId)?.reply;
    if (reply === undefined) throw new Error(`no reply to request ${requestId} on session ${session}`);
    return reply;
  }

  /** "seq:body" of each room message the session received, in arrival order. */
  messages(stream: FakeProxyStream, session: number): string[] {
    return this.events(stream, session).flatMap((e) => (e.message ? [`${e.message.seq}:${Buffer.from(e.message.body).toString()}`] : []));
  }
}
