import { randomUUID } from 'node:crypto';
import {
  decodeImEvent,
  encodeImRequest,
  type HistoryPage,
  type ImEvent,
  type ImRequest,
  type InboxItem,
  type Message,
  type PresenceEvent,
  type ReadReceipt,
  type ReadResult,
  type RecallNotice,
  type Reply,
  type SendResult,
  type SyncResult,
} from '../backends/im/im-codec.js';
import { Code } from '../protocol/codes.js';
import type { PriorityName } from '../protocol/constants.js';
import { LivemuxError } from '../protocol/errors.js';
import { Deque } from '../util/deque.js';
import type { LivemuxClient } from './client.js';
import type { ClientSession } from './client-session.js';
import { SessionClosedError } from './errors.js';
import { EventQueue } from './event-queue.js';
import { RequestTracker } from './request-tracker.js';

/** What the application iterates over. Inbox items come once each, in inbox order. */
export type ImClientEvent =
  | { readonly type: 'message'; readonly inboxSeq: number; readonly message: Message }
  | { readonly type: 'read'; readonly inboxSeq: number; readonly receipt: ReadReceipt }
  | { readonly type: 'recall'; readonly inboxSeq: number; readonly recall: RecallNotice }
  /** Inbox entries lost to retention before this device got them. */
  | { readonly type: 'gap'; readonly fromSeq: number; readonly toSeq: number }
  /** Caught up with the inbox as it was at the (re)sync. */
  | { readonly type: 'synced'; readonly lastSeq: number }
  | { readonly type: 'typing'; readonly from: string; readonly atMs: number }
  | { readonly type: 'presence'; readonly user: string; readonly online: boolean; readonly atMs: number };

export interface ImClientOptions {
  /** A stable id of this app install (1..128 bytes): the inbox keeps one cursor per device. */
  readonly deviceId: string;
  /** The highest inbox seq this device has processed (persisted by the app); default 0: everything retained. */
  readonly afterSeq?: number;
  /** Told each time the processed inbox seq advances: persist it and pass it as `afterSeq` next time. */
  readonly onInboxSeq?: (seq: number) => void;
  /** A request without a Reply for this long is sent again, idempotently (default 5000 ms). */
  readonly resendAfterMs?: number;
  /** Server ids of recent messages kept to drop redeliveries (default 10,000). */
  readonly dedupeWindow?: number;
}

const DEFAULT_RESEND_AFTER_MS = 5_000;
const DEFAULT_DEDUPE_WINDOW = 10_000;
/**
 * Acks are cumulative: the SDK acknowledges once 64 processed items are unacknowledged, or a second
 * after the first of them. A busy conversation (a few messages a second) costs one Ack a second, not
 * one per message, in the device's uplink, the proxy and the backend; a burst (a sync) one per 64,
 * and the backend's window (256) never fills. What a late Ack costs is redelivery, after a dropped
 * connection, of up to a second of items, which the SDK drops by seq: the backend writes a device's
 * cursor at most once a second (cursorWriteIntervalMs), so a backend crash redelivers as much anyway.
 */
const ACK_EVERY = 64;
const ACK_DELAY_MS = 1_000;
/** Typing and presence events held for an application that does not read (oldest dropped beyond). */
const MAX_TRANSIENTS = 1_000;

/**
 * The typed IM client (docs/im.md) on one `im` session of a LivemuxClient.
 *
 * Guarantees:
 * - `send` resolves once the message is stored (its SendResult); until then it is resent with the
 *   same client_msg_id on every reopen and after `resendAfterMs` without a Reply, so it is stored once.
 * - The session reopens by itself (`reopen: true`) and syncs from the last inbox seq it queued; a
 *   session the proxy moved to another backend resumes there (`synced` with `resumed`), and the
 *   presence watch list is sent again.
 * - Every inbox item reaches the application once, in inbox order (redeliveries are dropped by inbox
 *   seq and message server id). An item counts as processed when the application asks for the next
 *   event; processed items are acknowledged (so the server sends the next ones) and reported through
 *   `onInboxSeq`.
 */
export class ImClient implements AsyncIterable<ImClientEvent> {
  /** The Reply to the last Sync: the inbox's latest seq and unread counts per conversation. */
  syncResult: SyncResult = { lastInboxSeq: 0, unread: [] };
  private readonly requests: RequestTracker<Reply>;
  private readonly queue = new EventQueue<ImClientEvent>();
  private readonly seenIds = new Set<string>();
  private readonly seenOrder = new Deque<string>();
  private readonly dedupeWindow: number;
  /** Highest inbox seq queued for the application. */
  private queuedSeq: number;
  /** Highest inbox seq the application has processed, and what was acknowledged of it. */
  private processedSeq: number;
  private ackedSeq: number;
  private ackTimer: NodeJS.Timeout | null = null;
  /** The inbox seq of the item last handed to the application (processed when it asks again). */
  private handedSeq = 0;
  private transients = 0;
  private watching: string[] = [];
  private closed = false;

  private constructor(
    private readonly session: ClientSession,
    private readonly options: ImClientOptions,
  ) {
    this.queuedSeq = this.processedSeq = this.ackedSeq = options.afterSeq ?? 0;
    this.dedupeWindow = options.dedupeWindow ?? DEFAULT_DEDUPE_WINDOW;
    this.requests = new RequestTracker<Reply>((payload, priority) => session.send(payload, { priority }), options.resendAfterMs ?? DEFAULT_RESEND_AFTER_MS);
    session.on('data', (payload) => this.onEvent(decodeImEvent(payload)));
    session.on('reopened', () => void this.onReopened());
    session.on('close', (code, reason) => {
      // The application's own close, or a normal end, finishes iteration quietly.
      const quiet = this.closed || code === Code.NORMAL || code === Code.CANCELLED;
      this.onClosed(quiet ? null : new SessionClosedError(code, reason, 'im'));
    });
  }

  /**
   * Opens an `im` session on `client` for `options.deviceId`, syncs after `options.afterSeq`, and
   * resolves once the Sync was answered (`syncResult`); inbox items then arrive through iteration.
   */
  static async open(client: LivemuxClient, options: ImClientOptions): Promise<ImClient> {
    if (typeof options.deviceId !== 'string' || options.deviceId === '') {
      throw new LivemuxError('ERR_INVALID_ARGUMENT', 'ImClient.open: deviceId must be a non-empty string');
    }
    const session = await client.open('im', { device_id: options.deviceId }, { reopen: true });
    const im = new ImClient(session, options);
    try {
      await im.sync();
    } catch (err) {
      await im.close();
      throw err;
    }
    return im;
  }

  /**
   * Sends `body` to `to` and resolves once it is stored, with its server id and conversation seq.
   * Rejects with RequestFailedError (BLOCKED, TOO_LARGE, RATE_LIMITED, BAD_REQUEST) when refused.
   */
  async send(to: string, body: Uint8Array | string, options: { clientMsgId?: string } = {}): Promise<SendResult> {
    const clientMsgId = options.clientMsgId ?? randomUUID();
    const bytes = typeof body === 'string' ? Buffer.from(body, 'utf8') : Buffer.from(body);
    return (await this.call({ send: { to, body: bytes, clientMsgId } })).sent!;
  }

  /** Marks the conversation with `peer` read up to `convSeq` (the peer gets a receipt). */
  async read(peer: string, convSeq: number): Promise<ReadResult> {
    return (await this.call({ read: { peer, convSeq } })).read!;
  }

  /** Recalls your message at `convSeq` in the conversation with `peer` (RECALL_EXPIRED after the window). */
  async recall(peer: string, convSeq: number): Promise<void> {
    await this.call({ recall: { peer, convSeq } });
  }

  /** Tells `to` you are typing (low priority, fire and forget, rate-limited by the server). */
  typing(to: string): void {
    if (this.closed) return;
    this.session.send(encodeImRequest({ requestId: 0, typing: { to } }), { priority: 'low' }).catch(() => undefined);
  }

  /** A page of the conversation with `peer`, before `beforeSeq` (0: the latest), ascending. */
  async history(peer: string, options: { beforeSeq?: number; limit?: number } = {}): Promise<HistoryPage> {
    return (await this.call({ history: { peer, beforeSeq: options.beforeSeq ?? 0, limit: options.limit ?? 0 } })).history!;
  }

  /** Watches the online state of `users` (replacing the list; at most 100); resolves with their state now. */
  async watchPresence(users: readonly string[]): Promise<PresenceEvent[]> {
    this.watching = [...users];
    return (await this.call({ watchPresence: { users: this.watching } })).presence!.users;
  }

  async block(user: string): Promise<void> {
    await this.call({ block: { user } });
  }

  async unblock(user: string): Promise<void> {
    await this.call({ unblock: { user } });
  }

  /** Whom you block, ascending (fetched page by page: each page fits one message). */
  async blocked(): Promise<string[]> {
    const users: string[] = [];
    for (;;) {
      const page = (await this.call({ listBlocked: { after: users.at(-1) ?? '' } })).blocked!;
      users.push(...page.users);
      if (!page.hasMore || page.users.length === 0) return users;
    }
  }

  /** The highest inbox seq the application has processed. */
  get inboxSeq(): number {
    return this.processedSeq;
  }

  /**
   * Yields events in order. Each inbox item counts as processed when the next event is asked for.
   * Ends when the client closes; throws the session's error if it ended with one.
   */
  [Symbol.asyncIterator](): AsyncIterator<ImClientEvent> {
    return {
      next: async () => {
        if (this.handedSeq > 0) this.processed(this.handedSeq);
        this.handedSeq = 0;
        const result = await this.queue.next();
        if (!result.done) {
          const event = result.value;
          if ('inboxSeq' in event) this.handedSeq = event.inboxSeq;
          else if (event.type === 'typing' || event.type === 'presence') this.transients--;
        }
        return result;
      },
      return: async () => ({ value: undefined, done: true }),
    };
  }

  /** Acknowledges what was processed, closes the session, and ends iteration. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    if (this.handedSeq > 0) this.processed(this.handedSeq);
    this.flushAck();
    this.closed = true;
    await this.session.close();
    this.onClosed(null);
  }

  private async sync(): Promise<void> {
    this.syncResult = (await this.call({ sync: { afterSeq: this.queuedSeq } })).sync!;
  }

  private call(request: Omit<ImRequest, 'requestId'>, priority: PriorityName = 'high'): Promise<Reply> {
    return this.requests.call({ encode: (requestId) => encodeImRequest({ requestId, ...request }), priority });
  }

  private onEvent(event: ImEvent): void {
    if (event.reply) {
      // Before any entry behind it: an inbox behind what we hold means the server lost its data and
      // numbers from 1 again, so our seqs no longer mean anything.
      const sync = event.reply.sync;
      if (sync !== undefined && sync.lastInboxSeq < this.queuedSeq) this.restartSeqs();
      this.requests.replied(event.reply);
    } else if (event.entries) {
      for (const item of event.entries.items) this.onItem(item);
    } else if (event.synced) {
      this.queue.push({ type: 'synced', lastSeq: event.synced.lastSeq });
      // Moved to another backend, which knows nothing of this session: tell it again.
      if (event.synced.resumed && this.watching.length > 0) void this.watchPresence(this.watching).catch(() => undefined);
    } else if (event.gap) {
      this.queue.push({ type: 'gap', fromSeq: event.gap.fromSeq, toSeq: event.gap.toSeq });
    } else if (event.typing) {
      this.pushTransient({ type: 'typing', from: event.typing.from, atMs: event.typing.atMs });
    } else if (event.presence) {
      this.pushTransient({ type: 'presence', ...event.presence });
    }
  }

  private onItem(item: InboxItem): void {
    const seq = item.inboxSeq;
    if (seq <= this.queuedSeq) return; // redelivered: the application has it already
    this.queuedSeq = seq;
    if (item.message) {
      if (this.seen(item.message.serverId)) return this.skip(seq);
      this.queue.push({ type: 'message', inboxSeq: seq, message: item.message });
    } else if (item.read) {
      this.queue.push({ type: 'read', inboxSeq: seq, receipt: item.read });
    } else if (item.recall) {
      this.queue.push({ type: 'recall', inboxSeq: seq, recall: item.recall });
    } else {
      this.skip(seq); // an item kind from a newer protocol
    }
  }

  /** An item the application never sees still counts as processed once everything before it is. */
  private skip(seq: number): void {
    if (this.queue.length === 0 && this.handedSeq === 0) this.processed(seq);
  }

  /** Whether a message server id was seen (and remembers it, within the window). */
  private seen(serverId: string): boolean {
    if (this.seenIds.has(serverId)) return true;
    this.seenIds.add(serverId);
    this.seenOrder.push(serverId);
    if (this.seenOrder.length > this.dedupeWindow) this.seenIds.delete(this.seenOrder.shift()!);
    return false;
  }

  private pushTransient(event: ImClientEvent): void {
    // Transients are worth little late; an application that does not read must not grow this forever.
    if (this.transients >= MAX_TRANSIENTS) return;
    this.transients++;
    this.queue.push(event);
  }

  private processed(seq: number): void {
    if (seq <= this.processedSeq) return;
    this.processedSeq = seq;
    this.options.onInboxSeq?.(seq);
    if (this.processedSeq - this.ackedSeq >= ACK_EVERY) this.flushAck();
    else this.ackTimer ??= setTimeout(() => this.flushAck(), ACK_DELAY_MS).unref();
  }

  private flushAck(): void {
    if (this.ackTimer !== null) clearTimeout(this.ackTimer);
    this.ackTimer = null;
    if (this.closed || this.processedSeq <= this.ackedSeq) return;
    this.ackedSeq = this.processedSeq;
    this.session.send(encodeImRequest({ requestId: 0, ack: { inboxSeq: this.ackedSeq } })).catch(() => {
      // Lost with the session: the next Sync starts from what the server has, and we drop repeats.
    });
  }

  private restartSeqs(): void {
    this.queuedSeq = this.processedSeq = this.ackedSeq = 0;
    this.handedSeq = 0;
    this.options.onInboxSeq?.(0);
  }

  private async onReopened(): Promise<void> {
    // The old session's Replies are gone: resend what is unanswered, and sync from what we have.
    this.requests.resendAll();
    this.ackedSeq = Math.min(this.ackedSeq, this.processedSeq);
    try {
      await this.sync();
      if (this.watching.length > 0) await this.watchPresence(this.watching);
    } catch {
      // The session ended again: the next reopen (or close) takes over.
    }
  }

  private onClosed(error: Error | null): void {
    this.closed = true;
    if (this.ackTimer !== null) clearTimeout(this.ackTimer);
    this.requests.failAll(error ?? new LivemuxError('ERR_CLIENT_CLOSED', 'im: closed by the application'));
    this.queue.end(error);
  }
}
