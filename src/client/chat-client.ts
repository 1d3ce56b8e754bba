import {
  WireRole,
  decodeChatEvent,
  encodeChatRequest,
  type AttributesChanged,
  type ChatEvent,
  type ChatRequest,
  type Joined,
  type MemberInfo,
  type Reply,
  type RoomMessage,
} from '../backends/chat/chat-codec.js';
import { Code } from '../protocol/codes.js';
import type { PriorityName } from '../protocol/constants.js';
import { LivemuxError } from '../protocol/errors.js';
import type { LivemuxClient } from './client.js';
import type { ClientSession } from './client-session.js';
import { SessionClosedError } from './errors.js';
import { EventQueue } from './event-queue.js';
import { RequestTracker } from './request-tracker.js';

/** What the application iterates over. */
export type ChatClientEvent =
  /** A room message, once each; messages of different priorities may arrive out of seq order. */
  | { readonly type: 'message'; readonly message: RoomMessage }
  /** Messages from_seq..to_seq were trimmed from the room's history before you got them. */
  | { readonly type: 'gap'; readonly fromSeq: number; readonly toSeq: number }
  /** Joined (again, after a reopen): the room's seq, online count and attributes then. */
  | { readonly type: 'joined'; readonly joined: Joined }
  | { readonly type: 'attributes'; readonly change: AttributesChanged }
  | { readonly type: 'member_joined'; readonly userId: string; readonly role: number; readonly onlineCount: number }
  | { readonly type: 'member_left'; readonly userId: string; readonly onlineCount: number }
  /** You were kicked or banned: the session ends after this event (it is not reopened). */
  | { readonly type: 'kicked'; readonly reason: string; readonly by: string }
  | { readonly type: 'banned'; readonly reason: string; readonly by: string; readonly untilMs: number };

export interface ChatJoinOptions {
  /** The highest seq of this room the app has shown (0: the latest messages). */
  readonly sinceSeq?: number;
  /** Ask for a lower role than the token grants (default: the highest granted). */
  readonly role?: WireRole;
  /** A request without a Reply for this long is sent again (default 5000 ms). */
  readonly resendAfterMs?: number;
  /** How long a hole in the seqs may stay open before the SDK fetches it with `history` (default 500 ms). */
  readonly gapFillAfterMs?: number;
}

const DEFAULT_RESEND_AFTER_MS = 5_000;
const DEFAULT_GAP_FILL_AFTER_MS = 500;
/** Seqs above the contiguous one remembered for dedupe. */
const MAX_AHEAD = 10_000;

/**
 * The typed Chat client (docs/chat.md) on one `chat` session of a LivemuxClient, in one room.
 *
 * Guarantees:
 * - Recovery is the SDK's, not the app's: the session reopens by itself and joins again with the
 *   highest seq up to which it has every message, so what was missed meanwhile arrives (or a gap);
 *   a hole in the live seqs that does not fill within `gapFillAfterMs` (a low message dropped by the
 *   proxy's cap, a session moved to another backend) is fetched with `history`.
 * - Each room message reaches the application once (deduplicated by seq).
 * - `send` resolves with the message's seq; it is resent with the same client_msg_id after a reopen
 *   or `resendAfterMs` without a Reply. (Chat's backend does not dedupe sends: a resend after a lost
 *   Reply may show the message twice in the room, with the same client_msg_id, which the app can fold.)
 */
export class ChatClient implements AsyncIterable<ChatClientEvent> {
  /** The last Joined event: the room's state at the (re)join. */
  joined: Joined | null = null;
  private readonly requests: RequestTracker<Reply>;
  private readonly queue = new EventQueue<ChatClientEvent>();
  /** Every seq up to this one was received (or reported in a gap). */
  private contiguous: number;
  /** Seqs received above `contiguous`. */
  private readonly ahead = new Set<number>();
  private gapTimer: NodeJS.Timeout | null = null;
  private filling = false;
  private closed = false;

  private constructor(
    private readonly session: ClientSession,
    readonly roomId: string,
    private readonly options: ChatJoinOptions,
  ) {
    this.contiguous = options.sinceSeq ?? 0;
    this.requests = new RequestTracker<Reply>((payload, priority) => session.send(payload, { priority }), options.resendAfterMs ?? DEFAULT_RESEND_AFTER_MS);
    session.on('data', (payload) => this.onEvent(decodeChatEvent(payload)));
    session.on('reopened', () => void this.onReopened());
    session.on('close', (code, reason) => {
      const quiet = this.closed || code === Code.NORMAL || code === Code.CANCELLED;
      this.finish(quiet ? null : new SessionClosedError(code, reason, 'chat'));
    });
  }

  /** Opens a `chat` session in `roomId` and joins; resolves once the Join was answered. */
  static async join(client: LivemuxClient, roomId: string, options: ChatJoinOptions = {}): Promise<ChatClient> {
    if (typeof roomId !== 'string' || roomId === '') throw new LivemuxError('ERR_INVALID_ARGUMENT', 'ChatClient.join: roomId must be a non-empty string');
    const session = await client.open('chat', { room_id: roomId }, { reopen: true });
    const chat = new ChatClient(session, roomId, options);
    try {
      await chat.join();
    } catch (err) {
      await chat.close();
      throw err;
    }
    return chat;
  }

  /** Every seq up to this one has reached the application (or was reported lost). */
  get lastSeq(): number {
    return this.contiguous;
  }

  /** Sends a room message at `priority` (default high) and resolves with its seq. */
  async send(body: Uint8Array | string, options: { priority?: PriorityName; clientMsgId?: string } = {}): Promise<number> {
    const bytes = typeof body === 'string' ? Buffer.from(body, 'utf8') : Buffer.from(body);
    const reply = await this.call({ send: { body: bytes, clientMsgId: options.clientMsgId ?? '' } }, options.priority ?? 'high');
    return reply.sent!.seq;
  }

  /** Sends a room message without asking for a Reply (barrage): success and failure are silent. */
  post(body: Uint8Array | string, priority: PriorityName = 'low'): void {
    if (this.closed) return;
    const bytes = typeof body === 'string' ? Buffer.from(body, 'utf8') : Buffer.from(body);
    this.session.send(encodeChatRequest({ requestId: 0, send: { body: bytes, clientMsgId: '' } }), { priority }).catch(() => undefined);
  }

  /** Retained messages after `afterSeq`, oldest first, and the oldest seq retained. */
  async history(afterSeq: number, limit = 50): Promise<{ messages: RoomMessage[]; oldestSeq: number }> {
    return (await this.call({ history: { afterSeq, limit } })).history!;
  }

  /** One page of the room's members. */
  async members(cursor = '', limit = 100): Promise<{ members: MemberInfo[]; nextCursor: string; onlineCount: number }> {
    return (await this.call({ listMembers: { cursor, limit } })).members!;
  }

  /** Host and admin: sets and deletes room attributes atomically; resolves with the new version. */
  async setAttributes(set: Record<string, string>, remove: string[] = []): Promise<number> {
    return (await this.call({ setAttributes: { set, delete: remove } })).attributes!.version;
  }

  /** Host and admin: a ModerateAction on `targetUser` (duration 0 = until lifted). */
  async moderate(action: number, targetUser: string, options: { durationMs?: number; reason?: string } = {}): Promise<void> {
    await this.call({ moderate: { action, targetUser, durationMs: options.durationMs ?? 0, reason: options.reason ?? '' } });
  }

  /** Yields events in arrival order; ends when the client closes (throws the session's error if it failed). */
  [Symbol.asyncIterator](): AsyncIterator<ChatClientEvent> {
    return { next: () => this.queue.next(), return: async () => ({ value: undefined, done: true }) };
  }

  /** Leaves the room and closes the session. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.gapTimer !== null) clearTimeout(this.gapTimer);
    await this.session.send(encodeChatRequest({ requestId: 0, leave: {} })).catch(() => undefined);
    await this.session.close();
    this.finish(null);
  }

  private async join(): Promise<void> {
    await this.call({ join: { sinceSeq: this.contiguous, role: this.options.role ?? WireRole.UNSPECIFIED } });
  }

  private call(request: Omit<ChatRequest, 'requestId'>, priority: PriorityName = 'high'): Promise<Reply> {
    return this.requests.call({ encode: (requestId) => encodeChatRequest({ requestId, ...request }), priority });
  }

  private onEvent(event: ChatEvent): void {
    if (event.reply) this.requests.replied(event.reply);
    else if (event.message) this.onMessage(event.message);
    else if (event.gap) this.onGap(event.gap.fromSeq, event.gap.toSeq);
    else if (event.joined) this.onJoined(event.joined);
    else if (event.attributesChanged) this.queue.push({ type: 'attributes', change: event.attributesChanged });
    else if (event.memberJoined) this.queue.push({ type: 'member_joined', ...event.memberJoined });
    else if (event.memberLeft) this.queue.push({ type: 'member_left', ...event.memberLeft });
    else if (event.kicked) this.removed({ type: 'kicked', ...event.kicked });
    else if (event.banned) this.removed({ type: 'banned', ...event.banned });
  }

  private onJoined(joined: Joined): void {
    this.joined = joined;
    // The room was dropped and recreated since (its seq restarted): start over from its seq.
    if (this.contiguous > joined.seq) {
      this.contiguous = 0;
      this.ahead.clear();
    }
    this.queue.push({ type: 'joined', joined });
  }

  private onMessage(message: RoomMessage): void {
    const seq = message.seq;
    if (seq <= this.contiguous || this.ahead.has(seq)) return;
    this.queue.push({ type: 'message', message });
    if (seq === this.contiguous + 1) {
      this.contiguous = seq;
      while (this.ahead.delete(this.contiguous + 1)) this.contiguous++;
    } else if (this.ahead.size < MAX_AHEAD) {
      this.ahead.add(seq);
      this.scheduleGapFill();
    } else {
      // Too far ahead to track: count it as the new base (what lies between is fetched by no one).
      this.contiguous = seq;
      this.ahead.clear();
    }
  }

  private onGap(fromSeq: number, toSeq: number): void {
    this.queue.push({ type: 'gap', fromSeq, toSeq });
    if (toSeq > this.contiguous) this.contiguous = toSeq;
    while (this.ahead.delete(this.contiguous + 1)) this.contiguous++;
    for (const seq of this.ahead) if (seq <= this.contiguous) this.ahead.delete(seq);
  }

  /** Fetches a hole that stayed open: messages of other priorities overtake, so give them a moment first. */
  private scheduleGapFill(): void {
    if (this.gapTimer !== null || this.filling) return;
    this.gapTimer = setTimeout(() => {
      this.gapTimer = null;
      void this.fillGap();
    }, this.options.gapFillAfterMs ?? DEFAULT_GAP_FILL_AFTER_MS);
    this.gapTimer.unref();
  }

  private async fillGap(): Promise<void> {
    if (this.closed || this.ahead.size === 0) return;
    this.filling = true;
    try {
      const target = Math.max(...this.ahead);
      while (this.contiguous < target && !this.closed) {
        const page = await this.history(this.contiguous, 1000);
        if (page.oldestSeq > this.contiguous + 1) this.onGap(this.contiguous + 1, page.oldestSeq - 1);
        if (page.messages.length === 0) break;
        for (const m of page.messages) this.onMessage(m);
      }
    } catch {
      // The session went away: the rejoin after the reopen recovers from `contiguous`.
    } finally {
      this.filling = false;
    }
    if (this.ahead.size > 0) this.scheduleGapFill();
  }

  private removed(event: ChatClientEvent): void {
    this.queue.push(event);
    // The backend closes the session next; it must not be reopened into a room we were removed from.
    this.closed = true;
    void this.session.close().catch(() => undefined);
  }

  private async onReopened(): Promise<void> {
    this.requests.resendAll();
    try {
      await this.join();
    } catch {
      // Ended again, or refused (BANNED): the session's close or the next reopen takes over.
    }
  }

  private finish(error: Error | null): void {
    this.closed = true;
    if (this.gapTimer !== null) clearTimeout(this.gapTimer);
    this.requests.failAll(error ?? new LivemuxError('ERR_CLIENT_CLOSED', 'chat: closed by the application'));
    this.queue.end(error);
  }
}
