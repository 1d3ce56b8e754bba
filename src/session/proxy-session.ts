import { FLAG_BATCH, FrameType, HEADER_SIZE, Priority } from '../protocol/constants.js';
import { BATCH_PREFIX, encodeBatch } from '../protocol/batch.js';
import { Code } from '../protocol/codes.js';
import { writeHeader } from '../protocol/encoder.js';
import { ReceiveCredit, type SendCredit, grantable } from '../protocol/flow-control.js';
import { encodeStatus } from '../protocol/messages.js';
import type { SessionOpenInfo } from '../contract/backend-contract.js';
import type { BackendLink } from '../proxy/upstream/link.js';
import type { LowPriorityPacer, PacedSession } from '../proxy/low-priority-pacer.js';
import type { DropReason, OutboundQueue, QueueOwner, WholeWrite } from '../proxy/outbound-queue.js';
import { Deque } from '../util/deque.js';
import type { Topic } from './topic-fanout.js';

/** What a session needs from its connection. Implemented by the proxy's Connection. */
export interface SessionHost {
  readonly out: OutboundQueue;
  /** Largest DATA payload the client takes (WELCOME `max_payload`); fixed once a session is open. */
  readonly maxPayload: number;
  /** Who the connection is, as its sessions' backends are told (SessionOpenInfo). */
  readonly userId: string;
  readonly clientAddress: string;
  readonly connectionId: string;
  /** The token's forwarded claims now (a REFRESH may change them). */
  readonly claims: Readonly<Record<string, string>>;
  /** The connection's low-priority frame cap, or null when uncapped. */
  readonly lowPacer: LowPriorityPacer | null;
  /** Connection-level credit for server→client DATA; the same object once a session is open. */
  readonly sendCredit: SendCredit;
  /** Registers a session blocked on connection credit, to be pumped on the next connection WINDOW_UPDATE. */
  awaitConnectionCredit(session: ProxySession): void;
  /** Returns connection-level credit for client→server bytes the backend has taken. */
  releaseConnectionCredit(bytes: number): void;
  sendSessionFrame(type: FrameType, sessionId: number, body: Buffer): void;
  sendWindowUpdate(sessionId: number, increment: number): void;
  drop(reason: DropReason, priority: Priority, frames?: number): void;
  /** The bound of the outbound queue was exceeded by system/high DATA. */
  slowConsumer(): void;
  /** The client half-closed the session: its backend has the half-close timeout to end it. */
  halfClosed(session: ProxySession): void;
  /** The session ended; `code` and `reason` are how (the CLOSE that began it, or the RESET). */
  retired(session: ProxySession, code: number, reason: string): void;
}

/** Session states, proxy view (PROTOCOL.md §5). */
export const SessionState = {
  OPEN: 'open',
  /** The proxy decided to close; CLOSE goes out after the session's queued DATA. */
  CLOSING: 'closing',
  CLOSED: 'closed',
} as const;
export type SessionState = (typeof SessionState)[keyof typeof SessionState];

/**
 * A session with this many bytes still in its connection's queue is backed up: one socket read of a
 * tcp upstream (64 KiB, or one `max_payload` while it streams: see TcpPassthroughLink), which the
 * queue writes through at once to a socket that is not itself backed up.
 */
const DELIVER_HIGH_WATER = 64 * 1024;

interface Blocked {
  payload: Buffer;
  priority: Priority;
  /** Frame flags: the priority, plus FLAG_BATCH for merged low messages. */
  flags: number;
}

/**
 * One client session bound to one backend link. Owns both directions' credit:
 * - client→backend: bytes are forwarded at once; credit returns to the client only once the backend
 *   stream has taken them without backing up, so a slow backend stops its clients (end-to-end backpressure);
 * - backend→client: DATA leaves only within the client's credit; system/high wait for credit (held bytes
 *   count against the connection's bound), low is dropped instead of waiting.
 */
export class ProxySession implements QueueOwner, PacedSession {
  state: SessionState = SessionState.OPEN;
  /** Topics this session is subscribed to; null until the first subscribe. */
  topics: Set<string> | null = null;
  /**
   * While this session is in exactly one topic: that topic, which brings it up to date lazily, and how
   * many of its turns it has been given (see Topic). Null in no topic or several (those are served each
   * message as it is published).
   */
  walkedTopic: Topic | null = null;
  topicSeq = 0;
  /**
   * What a topic walk reads for each member to write it at once (writeRuns), on the session itself:
   * its credit for server→client DATA (the client's session window) as a number, and what never
   * changes once a session is open, taken from the connection. Through the connection and a credit
   * object each, one member's write read eight objects (session, its credit, connection, its credit,
   * queue, writer, socket state, handle); now six, and a session is one object smaller. The walk's
   * JavaScript is ~5 % of the proxy's time at the broadcast peak (the write call ~91 %), so this shows
   * as ~1–2 % at most (BENCHMARKS.md, broadcast).
   */
  private sendWindow: number;
  private readonly out: OutboundQueue;
  private readonly connectionCredit: SendCredit;
  private readonly maxPayload: number;
  /**
   * DATA waiting for credit, in order; null while none does (most sessions never wait: 48 bytes each kept).
   * Declared with the fields above, which the walk reads too: V8 lays fields out in declaration order
   * (after the constructor's parameters), so these share the object's first cache line.
   */
  private blocked: Deque<Blocked> | null = null;
  private readonly recvCredit: ReceiveCredit;
  private blockedBytes = 0;
  private queued = 0;
  /** Bytes of this session's DATA in the connection's outbound queue. */
  private queuedBytes = 0;
  /** Who waits for this session to take DATA again (a paused tcp upstream); see `backedUp`. */
  private deliverable: (() => void) | null = null;
  private backendOpen = true;
  private closeFrame: Buffer | null = null;
  private closeSent = false;
  /** The client's CLOSE, once received: its direction is over (PROTOCOL.md §5.2). */
  private peerClose: { code: number; reason: string } | null = null;
  private owedCredit = 0;
  private awaitingDrain = false;
  /** Bumped on every rebind, so a drain callback registered on a previous link is ignored. */
  private binding = 0;
  /** While waiting to be bound again: client DATA kept in order (bounded by the withheld credit). */
  private held: Blocked[] | null = null;
  /** Consecutive endpoints that could not take this session (its route's retry policy bounds them). */
  bindFailures = 0;
  /** The endpoint this session was moved off when it failed; it goes back there when that recovers. */
  displacedFrom: string | null = null;

  /** When the session was opened (performance.now(), whole ms: a small integer, not a boxed double), for its close log line. */
  readonly openedAt = Math.floor(performance.now());
  /** The first CLOSE either side sent: what a graceful end is logged with. */
  private closeStatus: { code: number; reason: string } | null = null;

  constructor(
    private readonly host: SessionHost,
    /** Client-chosen id, in frame headers. */
    readonly id: number,
    /** Proxy-assigned id on the backend stream; unique per proxy, kept across rebinds. */
    readonly ref: number,
    /** The OPEN's business, as its route names it. */
    readonly business: string,
    /** The OPEN's metadata (routing may hash on it when the session must move). */
    readonly metadata: Readonly<Record<string, string>>,
    private boundLink: BackendLink,
    sendWindow: number,
    recvWindow: number,
  ) {
    this.sendWindow = sendWindow;
    this.out = host.out;
    this.connectionCredit = host.sendCredit;
    this.maxPayload = host.maxPayload;
    this.recvCredit = new ReceiveCredit(recvWindow);
  }

  /**
   * What the backend is told on open (SessionOpened), and what routing hashes on when the session must
   * move: made when asked, from the connection, rather than kept (an object of nine fields per session).
   */
  get info(): SessionOpenInfo {
    const h = this.host;
    return {
      userId: h.userId,
      business: this.business,
      metadata: this.metadata,
      clientAddress: h.clientAddress,
      connectionId: h.connectionId,
      clientSessionId: this.id,
      reattach: false,
      claims: h.claims,
      maxPayload: h.maxPayload,
    };
  }

  /** The backend link this session is bound to now. */
  get link(): BackendLink {
    return this.boundLink;
  }

  get discarded(): boolean {
    return this.state === SessionState.CLOSED;
  }

  onDequeued(size: number): void {
    this.queued--;
    this.queuedBytes -= size;
    this.maybeSendClose();
    if (this.deliverable && !this.backedUp) this.releaseDeliverable();
  }

  /**
   * True while the client is not taking this session's DATA: some waits for its credit, or a read's
   * worth is still in the connection's queue (the queue hands a socket a large write at once unless
   * the socket is backed up, so this only stays true while the client reads slower than the source).
   */
  get backedUp(): boolean {
    return this.blockedBytes > 0 || this.queuedBytes >= DELIVER_HIGH_WATER;
  }

  /**
   * True when no DATA of this session is held anywhere on its way to the client: none waits for credit,
   * none is in the connection's queue, and the socket writer keeps no write (OutboundQueue.released).
   */
  get released(): boolean {
    return this.blocked === null && this.queuedBytes === 0 && this.out.released;
  }

  /** Calls `fn` once this session is no longer {@link backedUp} or has ended; at once if it is not. */
  onDeliverable(fn: () => void): void {
    if (!this.backedUp || this.state === SessionState.CLOSED) return fn();
    const previous = this.deliverable;
    this.deliverable = previous ? () => (previous(), fn()) : fn;
  }

  private releaseDeliverable(): void {
    const fn = this.deliverable!;
    this.deliverable = null;
    fn();
  }

  // ── backend → client ────────────────────────────────────────────────────────────────────────────

  /** Queues a payload for the client, within its credit, the connection's bound and its low-priority cap. */
  deliver(payload: Buffer, priority: Priority): void {
    if (this.state !== SessionState.OPEN) {
      this.host.drop('session_closed', priority);
      return;
    }
    if (payload.length > this.maxPayload) {
      // Never split, never dropped in silence: the backend and the client both learn why it ended.
      this.closeByProxy(Code.MESSAGE_TOO_LARGE, `backend message of ${payload.length} bytes over this client's max_payload (${this.maxPayload})`);
      return;
    }
    if (priority === Priority.LOW && this.host.lowPacer && !this.host.lowPacer.admit(this, payload)) return;
    this.enqueue(payload, priority, priority);
  }

  /** The pacer allows one more low frame: send what it held, merged when more than one. */
  sendLowMerged(messages: Buffer[]): void {
    if (this.state !== SessionState.OPEN) {
      // Closing since they were held: like any DATA for a closing session, dropped and counted.
      this.host.drop('session_closed', Priority.LOW, messages.length);
      return;
    }
    // One frame, so at most max_payload: the newest messages that fit, older excess dropped as overflow.
    let from = messages.length;
    for (let bytes = 0; from > 0 && bytes + BATCH_PREFIX + messages[from - 1]!.length <= this.maxPayload; from--) {
      bytes += BATCH_PREFIX + messages[from - 1]!.length;
    }
    if (from === messages.length) from--; // a lone message fits by itself (deliver checked it)
    if (from > 0) this.host.drop('merge_overflow', Priority.LOW, from);
    const kept = from > 0 ? messages.slice(from) : messages;
    if (kept.length === 1) this.enqueue(kept[0]!, Priority.LOW, Priority.LOW);
    else this.enqueue(encodeBatch(kept), Priority.LOW, Priority.LOW | FLAG_BATCH);
  }

  /**
   * Queues `count` whole system or high DATA frames already encoded for this session's id (`frames`, one
   * run of a topic fan-out: see TopicFanOut; `largest` its largest payload) as one piece. False, with
   * nothing queued, when the run cannot go whole (closing, frames waiting for credit, too little credit,
   * over the queue's bound, a payload over the client's max_payload): the caller then delivers its
   * messages one by one, which wait, drop or close exactly as single frames do.
   */
  deliverRun(frames: Buffer, count: number, payloadBytes: number, largest: number, priority: Priority): boolean {
    if (this.state !== SessionState.OPEN || this.blocked !== null || !this.hasCredit(payloadBytes)) return false;
    if (largest > this.maxPayload) return false;
    if (this.out.admit(frames.length, priority) !== 'ok') return false;
    this.consumeCredit(payloadBytes);
    this.queued++;
    this.queuedBytes += frames.length;
    this.out.data(this, frames, null, priority, count);
    return true;
  }

  /**
   * Writes whole system and high DATA frames already encoded for this session's id (what a topic walk
   * brings, see Topic) to the socket at once, when nothing stands in the way: open, nothing waiting for
   * credit, credit for all of it, no payload over the client's max_payload, and the connection's queue
   * empty, within its bound and the socket taking writes (OutboundQueue.writeNow). False, with nothing
   * done, otherwise.
   */
  writeRuns(w: WholeWrite): boolean {
    if (this.state !== SessionState.OPEN || this.blocked !== null) return false;
    const n = w.payloadBytes;
    if (!this.hasCredit(n) || w.largest > this.maxPayload) return false;
    if (!this.out.writeNow(w)) return false;
    this.consumeCredit(n);
    return true;
  }

  private enqueue(payload: Buffer, priority: Priority, flags: number): void {
    const n = payload.length;
    const out = this.out;
    if (this.blocked === null && this.hasCredit(n)) {
      const admission = out.admit(HEADER_SIZE + n, priority);
      if (admission === 'drop') return this.host.drop('queue_full', priority);
      if (admission === 'overflow') return this.host.slowConsumer();
      this.write(payload, priority, flags);
      return;
    }
    if (priority === Priority.LOW) return this.host.drop('no_credit', priority);
    const admission = out.admit(n, priority);
    if (admission === 'overflow') return this.host.slowConsumer();
    (this.blocked ??= new Deque()).push({ payload, priority, flags });
    this.blockedBytes += n;
    out.hold(n);
    if (this.sendWindow >= n) this.host.awaitConnectionCredit(this);
  }

  /** Sends what waited for credit, in order, as far as credit allows. Called after WINDOW_UPDATEs. */
  pump(): void {
    const out = this.out;
    const blocked = this.blocked;
    let next = blocked?.peek();
    while (next && this.hasCredit(next.payload.length)) {
      blocked!.shift();
      const n = next.payload.length;
      this.blockedBytes -= n;
      out.unhold(n);
      if (this.state !== SessionState.CLOSED) this.write(next.payload, next.priority, next.flags);
      next = blocked!.peek();
    }
    // Given back once empty: an idle session keeps no deque.
    if (!next && this.blocked === blocked) this.blocked = null;
    if (next && this.sendWindow >= next.payload.length) this.host.awaitConnectionCredit(this);
    this.maybeSendClose();
    if (this.deliverable && !this.backedUp) this.releaseDeliverable();
  }

  /**
   * Adds a WINDOW_UPDATE increment to this session's credit; false when it is 0 or would overflow
   * 2^31-1 (a peer fault). The caller pumps.
   */
  grantCredit(increment: number): boolean {
    if (!grantable(this.sendWindow, increment)) return false;
    this.sendWindow += increment;
    return true;
  }

  private hasCredit(n: number): boolean {
    return this.sendWindow >= n && this.connectionCredit.bytes >= n;
  }

  private consumeCredit(n: number): void {
    this.sendWindow -= n;
    this.connectionCredit.consume(n);
  }

  private write(payload: Buffer, priority: Priority, flags: number): void {
    const n = payload.length;
    this.consumeCredit(n);
    const head = Buffer.allocUnsafe(HEADER_SIZE);
    writeHeader(head, 0, FrameType.DATA, flags, this.id, n);
    this.queued++;
    this.queuedBytes += HEADER_SIZE + n;
    this.out.data(this, head, payload, priority);
  }

  // ── client → backend ────────────────────────────────────────────────────────────────────────────

  /**
   * Accounts `n` bytes of client DATA against the session window; false when the client overran it.
   * Connection-level accounting is the caller's.
   */
  receive(n: number): boolean {
    return this.recvCredit.receive(n);
  }

  /** Forwards client DATA to the backend, or discards it if the backend side is gone, and returns credit. */
  forward(payload: Buffer, priority: Priority): void {
    this.owedCredit += payload.length;
    if (this.held) {
      // No credit goes back while held, so the client cannot send more than one window meanwhile.
      this.held.push({ payload, priority, flags: priority });
      return;
    }
    if (this.backendOpen) this.boundLink.data(this.ref, payload, priority);
    if (!this.backendOpen || this.link.isWritable(this.ref)) this.returnCredit();
    else if (!this.awaitingDrain) {
      this.awaitingDrain = true;
      const binding = this.binding;
      this.link.onDrain(this.ref, () => {
        if (binding !== this.binding) return;
        this.awaitingDrain = false;
        this.returnCredit();
      });
    }
  }

  /**
   * Moves the backend side to another link without the client noticing: the previous backend is told
   * the session closed (if its link can still hear it), the new one gets SessionOpened with
   * `reattach: true`. Only open sessions move; one already closing finishes where it is.
   */
  rebind(link: BackendLink): boolean {
    if (this.state !== SessionState.OPEN) return false;
    if (this.backendOpen) this.boundLink.closed(this.ref, 0, `moved to ${link.endpoint}`);
    this.binding++;
    this.boundLink = link;
    this.backendOpen = true;
    link.open(this.ref, { ...this.info, reattach: true });
    const held = this.held;
    this.held = null;
    for (const m of held ?? []) link.data(this.ref, m.payload, m.priority);
    // The new backend learns what the old one had: the client's direction is over.
    if (this.peerClose) link.halfClosed(this.ref, this.peerClose.code, this.peerClose.reason);
    // Credit held back for the old link's drain would otherwise never be returned.
    this.awaitingDrain = false;
    this.returnCredit();
    return true;
  }

  private returnCredit(): void {
    const n = this.owedCredit;
    if (n === 0) return;
    this.owedCredit = 0;
    this.host.releaseConnectionCredit(n);
    if (this.state === SessionState.CLOSED) return;
    const increment = this.recvCredit.release(n);
    if (increment > 0) this.host.sendWindowUpdate(this.id, increment);
  }

  // ── closing ─────────────────────────────────────────────────────────────────────────────────────

  /**
   * The client sent CLOSE: its direction is over, ours is not (PROTOCOL.md §5.2). The backend is told and
   * ends the session once it has sent its last message; the CLOSE that answers the client then carries
   * the backend's code. If the proxy side is already closing, the id retires once its CLOSE is out.
   */
  onPeerClose(code: number, reason: string): void {
    this.peerClose = { code, reason };
    this.closeStatus ??= this.peerClose;
    if (this.state !== SessionState.OPEN) {
      this.maybeSendClose();
      return;
    }
    // A backend between two bindings (suspended, or its link just died) hears it on rebind.
    if (this.backendOpen) this.boundLink.halfClosed(this.ref, code, reason);
    this.host.halfClosed(this);
  }

  /**
   * The proxy side closes (backend closed it, its endpoint failed, drain deadline). DATA already queued
   * is still delivered, then CLOSE; the id is retired when the client answers CLOSE.
   */
  beginClose(code: number, reason: string): void {
    if (this.state !== SessionState.OPEN) return;
    // What its topic published before goes out ahead of the CLOSE (and may itself close the session:
    // a message over the client's max_payload).
    this.walkedTopic?.catchUp(this);
    if (this.state !== SessionState.OPEN) return;
    this.closeStatus ??= { code, reason };
    this.state = SessionState.CLOSING;
    this.closeFrame = encodeStatus({ code, reason });
    this.maybeSendClose();
  }

  /**
   * The proxy ends the session on its own account (reload disabled its business, its endpoint left
   * with nowhere to move): the backend is told, and the client gets CLOSE with `code` after queued DATA.
   */
  closeByProxy(code: number, reason: string): void {
    this.held = null;
    this.detachBackend(code, reason);
    this.beginClose(code, reason);
  }

  /**
   * The endpoint could not take the session: hold what it did not deliver (`unsent`) and every DATA
   * that arrives until {@link rebind} replays it on the next endpoint, or a close discards it.
   */
  suspend(unsent: readonly Buffer[]): void {
    this.backendOpen = false;
    this.held = unsent.map((payload) => ({ payload, priority: Priority.HIGH, flags: Priority.HIGH }));
  }

  /** The link died with the session on it: nothing more can be said to that backend. */
  detachFromDeadLink(): void {
    this.backendOpen = false;
  }

  /** The backend closed the session; it must not be told again. */
  closedByBackend(code: number, reason: string): void {
    this.backendOpen = false;
    this.beginClose(code, reason);
  }

  /** Abortive end (RESET either way, connection gone): no more frames for this id. */
  retire(code: number, reason: string): void {
    if (this.state === SessionState.CLOSED) return;
    this.detachBackend(code, reason);
    this.state = SessionState.CLOSED;
    // Client DATA held for a rebind (or awaiting a drain) is discarded; its connection credit is not.
    this.held = null;
    this.awaitingDrain = false;
    this.returnCredit();
    this.out.unhold(this.blockedBytes);
    this.blockedBytes = 0;
    // Cleared, not only dropped: a pump() running below this retire stops at the next peek.
    this.blocked?.clear();
    this.blocked = null;
    const end = this.closeStatus ?? { code, reason };
    this.host.retired(this, end.code, end.reason);
    if (this.deliverable) this.releaseDeliverable();
  }

  /** Tells the backend the session ended, once. */
  private detachBackend(code: number, reason: string): void {
    if (!this.backendOpen) return;
    this.backendOpen = false;
    this.boundLink.closed(this.ref, code, reason);
  }

  private maybeSendClose(): void {
    if (this.state !== SessionState.CLOSING || this.queued > 0 || this.blocked !== null) return;
    if (!this.closeSent && this.closeFrame) {
      this.closeSent = true;
      this.host.sendSessionFrame(FrameType.CLOSE, this.id, this.closeFrame);
    }
    if (this.peerClose) this.retire(0, '');
  }

  /** Whether the client has already sent CLOSE (further DATA from it is a protocol violation). */
  get peerHasClosed(): boolean {
    return this.peerClose !== null;
  }

  /** Whether the backend still takes this session's DATA. */
  get attached(): boolean {
    return this.backendOpen;
  }
}
