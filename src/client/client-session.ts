import { EventEmitter } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { Code, codeInfo } from '../protocol/codes.js';
import {
  FLAG_BATCH, FLAG_PRIORITY_MASK,
  FrameType,
  HEADER_SIZE,
  PRIORITY_NAMES,
  Priority,
  type PriorityName,
} from '../protocol/constants.js';
import { decodeBatch } from '../protocol/batch.js';
import { encodeFrame } from '../protocol/encoder.js';
import { LivemuxError, ProtocolError } from '../protocol/errors.js';
import type { Limits, Status } from '../protocol/messages.js';
import { Backoff, type BackoffOptions } from '../util/backoff.js';
import { BACKOFF_RESET_AFTER_MS } from './options.js';
import type { ClientConnection, SessionBinding, SessionEndpoint } from './connection.js';
import { SessionInbox, type IncomingMessage } from './session-inbox.js';
import { ClientClosedError, OpenFailedError, PayloadTooLargeError, SessionClosedError, statusOf } from './errors.js';
import { SESSION_TRANSITIONS, SessionState, transition } from './states.js';

/** Options of {@link ClientSession.send} and {@link ClientSession.trySend}. */
export interface SendOptions {
  /** DATA priority flag; the server and backend use it to order and shed load. Default `'high'`. */
  priority?: PriorityName;
}

/** Options of {@link LivemuxClient.open}. */
export interface OpenOptions {
  /**
   * Keep this session alive across failures (PROTOCOL.md §10): reopen it, same business and metadata,
   * on the next connection when the current one ends or the server drains it (CLOSE GOING_AWAY), and
   * on the same connection when it is refused or closed with a code that says to reopen (PROTOCOL.md
   * §10.1: at once for ENDPOINT_REMOVED, with backoff for BACKEND_UNAVAILABLE, BUSINESS_DISABLED …). The
   * session object stays the same, gets a new id and emits `'reopened'`; meanwhile it is `detached` and
   * sends queue. It ends only on a code that must not be retried, `close()`, `reset()`, or when the client
   * closes. The first open is not retried: `open()` rejects as usual. Default false: the session closes
   * with the code that ended it.
   */
  reopen?: boolean;
}

/** Events of a {@link ClientSession}. */
export type SessionEvents = {
  /** DATA from the server; its credit is returned to the server as soon as the listeners ran. */
  data: [payload: Buffer, priority: PriorityName];
  /**
   * The session ended; emitted once. `code` is PROTOCOL.md §6 (0 = normal). A session that ended before
   * any listener was attached (frames right behind OPEN_OK) emits it to the first one, after its data.
   */
  close: [code: number, reason: string];
  /** Reopened on a new connection (sessions opened with `reopen: true`); `id` changed. */
  reopened: [];
};

/** What a session needs from its client. */
export interface SessionHost {
  /** Resolves with a connection taking new sessions, dialing one if needed; rejects once the client is closed. */
  connection(): Promise<ClientConnection>;
  /** True once the client is closed for good: nothing will be reopened. */
  readonly closed: boolean;
  /** Aborted when the client closes, to cut a reopen's backoff wait short. */
  readonly signal: AbortSignal;
  /** Backoff of reopens after a retryable OPEN_FAIL or CLOSE. */
  readonly backoff: BackoffOptions;
}

interface Outgoing {
  /** The whole DATA frame, encoded at send time; the session id is patched in when it is written. */
  readonly frame: Buffer;
  readonly resolve: () => void;
  readonly reject: (err: Error) => void;
}

const PRIORITY_BY_NAME: Readonly<Record<PriorityName, Priority>> = { system: Priority.SYSTEM, high: Priority.HIGH, low: Priority.LOW };

/**
 * A session multiplexed on the client's connection: send, receive, close. Created by
 * {@link LivemuxClient.open}; never construct it directly.
 *
 * Guarantees:
 * - DATA leaves in `send` order. A send waits while the session or the connection window lacks room
 *   for it, and is never split: one send is one message at the backend.
 * - Received DATA is delivered in order, either to `'data'` listeners (credit returned at once) or, when
 *   there are none, buffered for async iteration (credit returned as each message is yielded), so a slow
 *   consumer slows the server instead of growing a buffer. Messages that arrive before any listener is
 *   attached are kept and handed to the first one.
 * - `'close'` is emitted exactly once (none if `open()` rejected: the application never had the
 *   session); afterwards sends reject with {@link SessionClosedError}.
 * - Nothing is delivered twice or out of order across a reopen; DATA in flight when a connection died
 *   may be lost (sends resolve when written to the socket, not when delivered).
 */
export class ClientSession extends EventEmitter<SessionEvents> implements AsyncIterable<IncomingMessage> {
  private stateValue: SessionState = SessionState.DETACHED;
  private binding: SessionBinding | null = null;
  private lastId = 0;
  private lastConnectionId = '';
  private limits: Limits | null = null;
  private readonly unsent: Outgoing[] = [];
  /** Withdraws the head message's claim on the connection window; set while it waits. */
  private withdrawClaim: (() => void) | null = null;
  private closeRequest: { code: number; reason: string } | null = null;
  private closeWritten = false;
  private readonly inbox = new SessionInbox({
    count: () => this.listenerCount('data'),
    emit: (message) => this.emit('data', message.payload, message.priority),
  });
  /** Code and reason the session ended with; null while it lives. */
  private ending: { code: number; reason: string } | null = null;
  /** A 'close' emitted while nobody listened, kept for the first listener. */
  private unheardClose: { code: number; reason: string } | null = null;
  /** The `open()` promise; null once settled (later OPEN_OKs are reopens). */
  private opening: { resolve: (s: ClientSession) => void; reject: (e: Error) => void } | null = null;
  private readonly closeWaiters: (() => void)[] = [];
  /** Paces reopens after retryable refusals; created on the first one. */
  private reopenBackoff: Backoff | null = null;
  private openedAt = 0;
  private readonly endpoint: SessionEndpoint = {
    openOk: () => this.onOpenOk(),
    openFail: (status) => this.onOpenFail(status),
    data: (payload, flags) => this.onData(payload, flags),
    close: (status) => this.onClose(status),
    reset: (status) => this.onReset(status),
    windowUpdate: () => this.pump(),
    connectionEnded: (cause) => this.onConnectionEnded(cause),
  };

  /** @internal Use {@link LivemuxClient.open}. */
  constructor(
    private readonly host: SessionHost,
    /** Route name the session was opened with. */
    readonly business: string,
    /** Metadata sent in OPEN (and again on every reopen). */
    readonly metadata: Readonly<Record<string, string>>,
    /** Whether the session is reopened on the next connection (see {@link OpenOptions.reopen}). */
    readonly reopen: boolean,
  ) {
    super();
    // Messages that arrived before the first 'data' listener go to it, after it is attached; so does a
    // 'close' that came before any listener could be (frames behind OPEN_OK are handled in the same turn
    // that resolves open(), before the caller's code runs), after those messages.
    // ('newListener' is not in SessionEvents, so this goes through the untyped base type.)
    (this as EventEmitter).on('newListener', (event: string | symbol) => {
      if (event === 'data') queueMicrotask(() => this.inbox.flushToListeners());
      if (event === 'close' && this.unheardClose) {
        const { code, reason } = this.unheardClose;
        this.unheardClose = null;
        queueMicrotask(() => this.emit('close', code, reason));
      }
    });
  }

  /** Session id on the current (or last) connection; changes on reopen. 0 before the first OPEN. */
  get id(): number {
    return this.lastId;
  }

  /** Connection id (from WELCOME) of the current or last connection. */
  get connectionId(): string {
    return this.lastConnectionId;
  }

  /** Where the session is in its lifecycle (see {@link SessionState}). */
  get state(): SessionState {
    return this.stateValue;
  }

  /** @internal Sends OPEN on a connection; resolves at OPEN_OK, rejects with why it failed. */
  start(): Promise<ClientSession> {
    const opened = new Promise<ClientSession>((resolve, reject) => (this.opening = { resolve, reject }));
    void this.attach();
    return opened;
  }

  /**
   * Queues `payload` as one DATA message and resolves once it is written to the socket (not once
   * delivered). Waits while the session or connection window lacks room; messages leave in call order.
   * A string is sent as UTF-8. The bytes are copied at once: the caller may reuse its buffer.
   * Rejects with {@link PayloadTooLargeError} over the connection's limit (max payload, and the initial
   * windows, since a message is never split), or {@link SessionClosedError} once closing or closed.
   */
  send(payload: Uint8Array | string, options: SendOptions = {}): Promise<void> {
    let frame: Buffer;
    try {
      frame = this.encode(payload, options);
    } catch (err) {
      return Promise.reject(err);
    }
    return new Promise((resolve, reject) => {
      this.unsent.push({ frame, resolve, reject });
      this.pump();
    });
  }

  /**
   * Like {@link send} but never waits: writes the message and returns true, or returns false (sending
   * nothing) when it cannot leave at once — no credit, earlier sends still queued, or not open yet.
   * @throws PayloadTooLargeError or SessionClosedError as {@link send} rejects.
   */
  trySend(payload: Uint8Array | string, options: SendOptions = {}): boolean {
    const frame = this.encode(payload, options);
    const binding = this.binding;
    if (!binding || this.stateValue !== SessionState.OPEN || this.unsent.length > 0) return false;
    const bytes = frame.length - HEADER_SIZE;
    const connectionWindow = binding.connection.sendWindow;
    if (!binding.sendWindow.canTake(bytes) || !connectionWindow.canTake(bytes)) return false;
    binding.sendWindow.take(bytes);
    connectionWindow.take(bytes);
    binding.writeData(frame);
    return true;
  }

  /**
   * Graceful close: queued sends are written first, then CLOSE; resolves when the server's CLOSE arrives
   * (or the session otherwise ends). Nothing can be sent once called. Idempotent. While the session
   * waits to be reopened it just ends; while its reopen awaits OPEN_OK, the reopen is abandoned (RESET).
   */
  close(code: number = Code.NORMAL, reason = ''): Promise<void> {
    checkCode('close', code);
    switch (this.stateValue) {
      case SessionState.CLOSED:
        return Promise.resolve();
      case SessionState.DETACHED:
        this.finish(code, reason, null);
        return Promise.resolve();
      case SessionState.OPENING:
        this.binding?.reset(Code.CANCELLED, reason);
        this.finish(code, reason, null);
        return Promise.resolve();
      case SessionState.OPEN:
        this.closeRequest = { code, reason };
        this.stateValue = transition('session', SESSION_TRANSITIONS, this.stateValue, SessionState.CLOSING);
        this.pump();
        return this.whenClosed();
      case SessionState.CLOSING:
        return this.whenClosed();
    }
  }

  /**
   * Abortive close: sends RESET at once (default code CANCELLED), drops queued sends (they reject with
   * {@link SessionClosedError}) and retires the id; the server does not answer. No-op once closed.
   */
  reset(code: number = Code.CANCELLED, reason = ''): void {
    checkCode('reset', code);
    if (this.stateValue === SessionState.CLOSED) return;
    this.binding?.reset(code, reason);
    this.finish(code, reason, null);
    // Abortive: what was received but not consumed is dropped too (finish returned its credit).
    this.inbox.clear();
  }

  /**
   * Yields each received message in order and returns its credit to the server as it is yielded.
   * Ends when the session has closed and every buffered message was yielded; throws
   * {@link SessionClosedError} instead when the server or the connection ended it with an error code
   * (any code but NORMAL and CANCELLED), with the underlying error as `cause`.
   * Breaking out of the loop does not close the session. Messages go to `'data'` listeners instead
   * while there are any.
   */
  [Symbol.asyncIterator](): AsyncIterator<IncomingMessage> {
    return {
      next: () => this.inbox.read(),
      return: () => Promise.resolve({ done: true, value: undefined }),
    };
  }

  /** Binds to a connection that takes new sessions and sends OPEN, after `delayMs` (a reopen's backoff). */
  private async attach(delayMs = 0): Promise<void> {
    if (delayMs > 0) {
      // Cut short when the client closes; connection() below then rejects and the session ends.
      await sleep(delayMs, undefined, { signal: this.host.signal }).catch(() => {});
    }
    // Every check after an await goes through detached(): close() or reset() may have run meanwhile.
    if (!this.detached()) return;
    let conn: ClientConnection;
    try {
      // Other microtasks run between the promise resolving and this line (a 'reconnected' listener
      // may close the client); if the connection no longer takes sessions, ask again.
      do conn = await this.host.connection();
      while (!conn.acceptsSessions && this.detached());
    } catch (err) {
      if (this.detached()) this.finishWith(err);
      return;
    }
    if (!this.detached()) return;
    try {
      this.binding = conn.open(this.endpoint, { business: this.business, metadata: { ...this.metadata } });
    } catch (err) {
      if (!(err instanceof OpenFailedError)) throw err;
      // Refused locally (max_sessions reached): a reopen waits its turn like after OPEN_FAIL.
      const status = { code: err.wireCode, reason: err.reason };
      if (this.reopen && !this.opening && this.retryable(status)) void this.attach(this.reopenDelay(status));
      else this.finishWith(err);
      return;
    }
    this.lastId = this.binding.id;
    this.lastConnectionId = conn.welcome.connectionId;
    this.limits = conn.welcome.limits;
    this.stateValue = transition('session', SESSION_TRANSITIONS, this.stateValue, SessionState.OPENING);
  }

  /** A call, not a property read: TypeScript would keep a narrowed `stateValue` across awaits. */
  private detached(): boolean {
    return this.stateValue === SessionState.DETACHED;
  }

  private onOpenOk(): void {
    this.expectState('OPEN_OK', SessionState.OPENING);
    this.stateValue = transition('session', SESSION_TRANSITIONS, this.stateValue, SessionState.OPEN);
    this.openedAt = performance.now();
    if (this.opening) {
      this.opening.resolve(this);
      this.opening = null;
    } else {
      this.emit('reopened');
    }
    this.pump();
  }

  private onOpenFail(status: Status): void {
    this.expectState('OPEN_FAIL', SessionState.OPENING);
    const binding = this.binding!;
    binding.retire();
    // OPEN crossed the server's GOAWAY: it was never looked at, so try again on the next connection.
    if (status.code === Code.GOING_AWAY && !binding.connection.acceptsSessions && !this.host.closed) {
      this.detach(0);
      return;
    }
    if (this.reopen && !this.opening && this.retryable(status)) {
      this.detach(this.reopenDelay(status));
      return;
    }
    this.finishWith(new OpenFailedError(this.business, status.code, status.reason, status.retryAfterMs ?? 0));
  }

  private onData(payload: Buffer, flags: number): void {
    this.expectState('DATA', SessionState.OPEN, SessionState.CLOSING);
    const binding = this.binding!;
    if (!binding.receiveCredit.receive(payload.length)) {
      const reason = `client: DATA overran the session window (${payload.length} bytes)`;
      binding.reset(Code.SESSION_FLOW_CONTROL, reason);
      binding.consumed(payload.length);
      this.finish(Code.SESSION_FLOW_CONTROL, reason, new SessionClosedError(Code.SESSION_FLOW_CONTROL, reason, 'receive'));
      return;
    }
    const priority = PRIORITY_NAMES[flags & FLAG_PRIORITY_MASK]!;
    // The decoder hands out views into socket chunks; the application may keep what it is given.
    if ((flags & FLAG_BATCH) === 0) this.inbox.push(Buffer.from(payload), priority, binding, payload.length);
    // A batch is several messages merged by the server's low-priority cap: each one is delivered (and
    // credited, length prefix included) on its own, as if it had come in its own frame.
    else decodeBatch(payload, (message, bytes) => this.inbox.push(Buffer.from(message), priority, binding, bytes));
  }

  private onClose(status: Status): void {
    this.expectState('CLOSE', SessionState.OPEN, SessionState.CLOSING);
    const binding = this.binding!;
    this.withdraw();
    if (this.stateValue === SessionState.CLOSING) {
      const request = this.closeRequest!;
      if (!this.closeWritten) binding.writeClose(request.code, request.reason);
      binding.retire();
      this.finish(request.code, request.reason, null);
      return;
    }
    // The server closed first: answer at once. A CLOSE's code says why its sender's direction ended
    // (PROTOCOL.md §5.2), and this side simply has nothing more to send: NORMAL. Queued sends are not
    // flushed first (the backend has ended the session and would not see them); they fail, or wait for
    // a reopen.
    binding.writeClose(Code.NORMAL, '');
    binding.retire();
    if (this.reopen && status.code === Code.GOING_AWAY && !this.host.closed) {
      this.detach(0);
      return;
    }
    if (this.reopen && this.retryable(status)) {
      this.detach(this.reopenDelay(status));
      return;
    }
    this.finish(status.code, status.reason, this.remoteError(status.code, status.reason));
  }

  private onReset(status: Status): void {
    this.expectState('RESET', SessionState.OPENING, SessionState.OPEN, SessionState.CLOSING);
    this.binding!.retire();
    this.finish(status.code, status.reason, this.remoteError(status.code, status.reason));
  }

  private onConnectionEnded(cause: LivemuxError): void {
    const canReopen = this.stateValue === SessionState.OPEN || this.stateValue === SessionState.OPENING;
    if (canReopen && this.reopen && !this.host.closed) {
      this.detach(0); // the client paces the reconnect itself
      return;
    }
    if (this.stateValue === SessionState.CLOSING) {
      // The application asked to close: it got what it wanted, minus the server's CLOSE.
      const { code, reason } = statusOf(cause);
      this.finish(code, reason, null);
      return;
    }
    this.finishWith(cause);
  }

  /** Writes queued DATA while both windows have room, then CLOSE if one is requested. */
  private pump(): void {
    const binding = this.binding;
    const sending = this.stateValue === SessionState.OPEN || this.stateValue === SessionState.CLOSING;
    if (!binding || !sending || this.withdrawClaim) return;
    const connectionWindow = binding.connection.sendWindow;
    const limit = maxMessage(this.limits!);
    for (let head = this.unsent[0]; head; head = this.unsent[0]) {
      const bytes = head.frame.length - HEADER_SIZE;
      if (bytes > limit) {
        // Queued under a previous connection's larger limits; this one can never send it.
        this.unsent.shift();
        head.reject(new PayloadTooLargeError(bytes, limit));
        continue;
      }
      if (!binding.sendWindow.canTake(bytes)) return; // this session's WINDOW_UPDATE pumps again
      binding.sendWindow.take(bytes);
      if (!connectionWindow.canTake(bytes)) {
        // Only the head waits on the connection window, so sessions take turns in arrival order.
        this.withdrawClaim = connectionWindow.wait(bytes, () => {
          this.withdrawClaim = null;
          this.writeHead(binding);
          this.pump();
        });
        return;
      }
      connectionWindow.take(bytes);
      this.writeHead(binding);
    }
    if (this.closeRequest && !this.closeWritten) {
      this.closeWritten = true;
      binding.writeClose(this.closeRequest.code, this.closeRequest.reason);
    }
  }

  private writeHead(binding: SessionBinding): void {
    const head = this.unsent.shift()!;
    binding.writeData(head.frame);
    head.resolve();
  }

  private encode(payload: Uint8Array | string, options: SendOptions): Buffer {
    if (this.closeRequest || this.ending) {
      const { code, reason } = this.ending ?? this.closeRequest!;
      throw new SessionClosedError(code, reason, 'send');
    }
    const name = options.priority ?? 'high';
    // hasOwn, not a plain lookup: 'constructor' and friends must not pass for a priority.
    if (!Object.hasOwn(PRIORITY_BY_NAME, name)) {
      throw new LivemuxError('ERR_INVALID_ARGUMENT', `send: priority must be one of ${PRIORITY_NAMES.join('|')} (${String(name)})`);
    }
    const priority = PRIORITY_BY_NAME[name];
    const bytes = typeof payload === 'string' ? Buffer.from(payload, 'utf8') : payload;
    const limit = maxMessage(this.limits!);
    if (bytes.length > limit) throw new PayloadTooLargeError(bytes.length, limit);
    return encodeFrame(FrameType.DATA, priority, this.lastId, bytes);
  }

  /** Leaves the current connection and opens again after `delayMs`; queued sends stay queued. */
  private detach(delayMs: number): void {
    this.withdraw();
    this.binding = null;
    this.stateValue = transition('session', SESSION_TRANSITIONS, this.stateValue, SessionState.DETACHED);
    void this.attach(delayMs);
  }

  /**
   * A refusal or close the protocol says to reopen after (PROTOCOL.md §10.1): a `backoff` code
   * (TOO_MANY_SESSIONS, BACKEND_UNAVAILABLE, BUSINESS_DISABLED, RATE_LIMITED …) or an `immediate` one
   * (ENDPOINT_REMOVED; GOING_AWAY is handled apart, on a new connection).
   */
  private retryable(status: Status): boolean {
    const { retry } = codeInfo(status.code);
    return !this.host.closed && (retry === 'backoff' || retry === 'immediate');
  }

  /**
   * Wait before reopening after `status` (PROTOCOL.md §10): an `immediate` code reopens at once the first
   * time, then backs off like the rest; the base is the hint, else the code's first delay.
   */
  private reopenDelay(status: Status): number {
    const backoff = (this.reopenBackoff ??= new Backoff(this.host.backoff));
    if (performance.now() - this.openedAt >= BACKOFF_RESET_AFTER_MS) backoff.reset();
    const immediate = codeInfo(status.code).retry === 'immediate';
    if (immediate && backoff.attempt === 0) {
      backoff.next();
      return 0;
    }
    return backoff.next(status.retryAfterMs || codeInfo(status.code).delayMs || this.host.backoff.initialMs);
  }

  private withdraw(): void {
    this.withdrawClaim?.();
    this.withdrawClaim = null;
  }

  /** Ends the session because of `err` (what a pending open() rejects with). */
  private finishWith(err: unknown): void {
    const { code, reason } = statusOf(err);
    this.finish(code, reason, err instanceof Error ? err : new SessionClosedError(code, reason));
  }

  /**
   * The one exit to CLOSED. `cause` is why the session failed — a pending open() rejects with it and
   * iteration throws a SessionClosedError wrapping it; null when the application ended the session.
   */
  private finish(code: number, reason: string, cause: Error | null): void {
    this.withdraw();
    this.binding?.retire();
    this.binding = null;
    this.stateValue = transition('session', SESSION_TRANSITIONS, this.stateValue, SessionState.CLOSED);
    // Iteration ends quietly for codes that imply no error (NORMAL, CANCELLED) and for the application's
    // own doing: close(), reset(), or closing the client.
    const failed = cause !== null && codeInfo(code).retry !== 'none' && !(cause instanceof ClientClosedError);
    const iterationError = !failed
      ? null
      : cause instanceof SessionClosedError
        ? cause
        : new SessionClosedError(code, reason, `session ${this.lastId}`, { cause });
    this.ending = { code, reason };
    this.inbox.end(iterationError);
    const dropped = this.unsent.splice(0);
    for (const out of dropped) out.reject(new SessionClosedError(code, reason, 'send'));
    for (const wake of this.closeWaiters.splice(0)) wake();
    if (this.opening) {
      this.opening.reject(cause ?? new SessionClosedError(code, reason, `open "${this.business}"`));
      this.opening = null;
      return; // the application never had this session: no 'close' event
    }
    if (this.listenerCount('close') === 0) this.unheardClose = { code, reason };
    else this.emit('close', code, reason);
  }

  private whenClosed(): Promise<void> {
    return new Promise((resolve) => this.closeWaiters.push(resolve));
  }

  private remoteError(code: number, reason: string): Error {
    return new SessionClosedError(code, reason, `session ${this.lastId}`);
  }

  /** A session frame in a state where the server must not send it is a connection-level fault. */
  private expectState(frame: string, ...legal: SessionState[]): void {
    if (!legal.includes(this.stateValue)) {
      throw new ProtocolError(Code.UNEXPECTED_FRAME, `${frame}: not expected on session ${this.lastId} while ${this.stateValue}`);
    }
  }
}

/** Largest DATA payload this client may send: a message is never split, so it must fit every window. */
function maxMessage(limits: Limits): number {
  return Math.min(limits.maxPayload, limits.sessionWindow, limits.connectionWindow);
}

function checkCode(what: string, code: number): void {
  if (!Number.isInteger(code) || code < 0 || code > 0xffff_ffff) {
    throw new LivemuxError('ERR_INVALID_ARGUMENT', `${what}: code must be an integer 0..4294967295 (${code})`);
  }
}
