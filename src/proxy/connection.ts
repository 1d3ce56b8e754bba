import { randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import {
  Defaults,
  FLAG_PRIORITY_MASK,
  FRAME_TYPE_NAMES,
  FrameType,
  HEADER_SIZE,
  MAX_PIPELINED,
  MAX_SESSION_ID,
  MAX_WINDOW,
  Priority,
  SUPPORTED_VERSIONS,
} from '../protocol/constants.js';
import { Code, codeName } from '../protocol/codes.js';
import { FrameDecoder, type FrameSink } from '../protocol/decoder.js';
import { encodeFrame, encodeWindowUpdate } from '../protocol/encoder.js';
import { ProtocolError } from '../protocol/errors.js';
import { ReceiveCredit, SendCredit } from '../protocol/flow-control.js';
import {
  type Hello,
  type Open,
  decodeHello,
  decodeOpen,
  decodeStatus,
  encodeGoAway,
  encodeStatus,
  encodeWelcome,
} from '../protocol/messages.js';
import { ProxySession, type SessionHost } from '../session/proxy-session.js';
import { forwardedClaims } from './auth.js';
import type { ProxyContext } from './context.js';
import { type DropReason, OutboundQueue } from './outbound-queue.js';
import { LowPriorityPacer } from './low-priority-pacer.js';
import { SessionAdmission } from './session-admission.js';
import { TokenBucket } from '../util/token-bucket.js';
import { WheelEntry } from './timer-wheel.js';

/** Connection states, server view (PROTOCOL.md §5). */
export const ConnState = {
  AWAIT_HELLO: 'await_hello',
  AUTHENTICATING: 'authenticating',
  OPEN: 'open',
  /** GOAWAY sent: no new sessions; closes when the last session ends. */
  DRAINING: 'draining',
  CLOSED: 'closed',
} as const;
export type ConnState = (typeof ConnState)[keyof typeof ConnState];

const TRANSITIONS: Record<ConnState, readonly ConnState[]> = {
  [ConnState.AWAIT_HELLO]: [ConnState.AUTHENTICATING, ConnState.CLOSED],
  [ConnState.AUTHENTICATING]: [ConnState.OPEN, ConnState.CLOSED],
  [ConnState.OPEN]: [ConnState.DRAINING, ConnState.CLOSED],
  [ConnState.DRAINING]: [ConnState.CLOSED],
  [ConnState.CLOSED]: [],
};

/** How long a closing socket may take to flush its last frame before it is destroyed. */
const CLOSE_GRACE_MS = 2_000;

type Handler = (conn: Connection, flags: number, sessionId: number, payload: Buffer) => void;

/**
 * One client TCP connection: owns the socket, the decoder, the session table and the outbound queue.
 * Frames arrive through {@link onFrame} and dispatch through a table indexed by frame type; every
 * protocol fault becomes RESET (session-scoped) or ERROR + close (connection-scoped) with its code.
 */
export class Connection implements FrameSink, SessionHost {
  readonly id = randomBytes(9).toString('base64url');
  state: ConnState = ConnState.AWAIT_HELLO;
  userId = '';
  /** The verified token's forwarded claims, passed to backends in SessionOpened. */
  private claims: Readonly<Record<string, string>> = {};
  readonly out: OutboundQueue;
  /** Connection-level credit for server→client DATA, granted by the client. */
  sendCredit = new SendCredit(Defaults.connectionWindow);
  /** Connection-level credit granted to the client for client→server DATA; set at WELCOME. */
  private recvCredit!: ReceiveCredit;
  /**
   * Largest DATA payload either way on this connection, as announced in WELCOME: the configured
   * max_payload, lowered to half the smallest initial window of both directions (PROTOCOL.md §7).
   */
  maxPayload: number;
  private readonly decoderLimits: { maxPayload: number; acceptBatch: false };
  private readonly sessions = new Map<number, ProxySession>();
  /** Sessions the client half-closed, with the time by which their backend must end them (made on first use). */
  private halfClosedSessions: Map<ProxySession, number> | null = null;
  private readonly creditWaiters = new Set<ProxySession>();
  /** Low-priority frame cap, set at WELCOME from the limits and the client's `accepts_batch`. */
  lowPacer: LowPriorityPacer | null = null;
  /** Created at WELCOME, once the user is known; OPEN is illegal before. */
  private admission!: SessionAdmission;
  private readonly decoder: FrameDecoder;
  private readonly bucket: TokenBucket;
  /** Frames that arrived before WELCOME, with their arrival time (performance.now()). */
  private pipelined: [FrameType, number, number, Buffer, number][] | null = null;
  /** While a pipelined frame is replayed: when it arrived; else 0 (it arrived now). */
  private replayedArrival = 0;
  private clientSessionWindow: number = Defaults.sessionWindow;
  private highestSessionId = 0;
  /** This connection's place in the proxy's timer wheel: every deadline below is checked by {@link onTimer}. */
  private readonly timer = new WheelEntry((now) => this.onTimer(now));
  private readonly handshakeDeadline: number;
  /** When the last frame arrived (wheel clock): the heartbeat counts silence from it. */
  private lastInbound: number;
  /** PINGs sent since that frame. */
  private pingsSent = 0;
  /** When the connection last became idle (no session): WELCOME, the last session retired, an OPEN. */
  private idleSince = 0;
  /** When a closing socket is destroyed if it has not finished flushing; 0 while not closing. */
  private destroyAt = 0;
  /** When the connection was accepted, and how many sessions it opened: for its access-log line. */
  private readonly acceptedAt = Date.now();
  private sessionsOpened = 0;
  private log: Logger;

  constructor(
    private readonly socket: Socket,
    private readonly ctx: ProxyContext,
    readonly clientAddress: string,
  ) {
    const { limits, timeouts } = ctx.config;
    this.log = ctx.logger.child({ conn: this.id, addr: clientAddress });
    this.maxPayload = limits.maxPayload;
    this.bucket = new TokenBucket(limits.openResetRate, limits.openResetRate);
    // Until WELCOME, pipelined DATA is held against the configured max_payload (PROTOCOL.md §2.4).
    this.decoderLimits = { maxPayload: limits.maxPayload, acceptBatch: false };
    this.decoder = new FrameDecoder(this, this.decoderLimits);
    this.out = new OutboundQueue(
      socket,
      limits.outboundQueueBytes,
      { onDrop: (reason, priority, frames) => this.drop(reason, priority, frames) },
      ctx.metrics.frameStats,
      ctx.metrics.queueWait,
    );
    this.lastInbound = ctx.timers.now();
    this.handshakeDeadline = this.lastInbound + timeouts.handshakeMs;
    ctx.timers.schedule(this.timer, this.handshakeDeadline);
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.receive(chunk));
    socket.on('error', (err) => this.log.debug({ err }, 'socket error'));
    socket.on('close', () => {
      ctx.timers.cancel(this.timer);
      this.teardown(Code.NORMAL, 'socket closed');
    });
    ctx.metrics.connections.inc();
    ctx.metrics.connectionsAccepted.inc();
  }

  /** Feeds bytes from the socket (or bytes that followed a PROXY protocol header). */
  receive(chunk: Buffer): void {
    try {
      this.decoder.push(chunk);
    } catch (err) {
      if (err instanceof ProtocolError) this.fail(err.wireCode, err.message);
      else {
        this.log.error({ err }, 'internal error while handling a frame');
        this.fail(Code.INTERNAL_ERROR, 'internal error');
      }
    }
  }

  onFrame(type: FrameType, flags: number, sessionId: number, payload: Buffer): void {
    if (this.closed) return;
    this.lastInbound = this.ctx.timers.now();
    this.pingsSent = 0;
    this.ctx.metrics.frameStats.countIn(type, HEADER_SIZE + payload.length);
    // A peer's ERROR ends the connection in every state, held frames included; it is never answered.
    if (type === FrameType.ERROR) return this.onPeerError(payload);
    if (this.pipelined) {
      if (this.pipelined.length >= MAX_PIPELINED) {
        throw new ProtocolError(Code.RATE_LIMITED, `handshake: more than ${MAX_PIPELINED} frames before WELCOME`);
      }
      this.pipelined.push([type, flags, sessionId, payload, performance.now()]);
      return;
    }
    HANDLERS[type]!(this, flags, sessionId, payload);
  }

  // ── handlers (called through HANDLERS) ──────────────────────────────────────────────────────────

  /** @internal */
  onHello(payload: Buffer): void {
    if (this.state !== ConnState.AWAIT_HELLO) {
      throw new ProtocolError(Code.UNEXPECTED_FRAME, 'HELLO: already received');
    }
    const hello = decodeHello(payload);
    // Checked in the order of PROTOCOL.md §5.1: versions, windows, then the token.
    const version = Math.max(...hello.versions.filter((v) => SUPPORTED_VERSIONS.includes(v)));
    if (!Number.isFinite(version)) {
      throw new ProtocolError(
        Code.UNSUPPORTED_VERSION,
        `HELLO: no supported version ([${hello.versions.join(',')}] vs [${SUPPORTED_VERSIONS.join(',')}])`,
      );
    }
    for (const [field, window] of [['session_window', hello.sessionWindow], ['connection_window', hello.connectionWindow]] as const) {
      if ((window ?? 0) > MAX_WINDOW) {
        throw new ProtocolError(Code.FLOW_CONTROL_ERROR, `HELLO: ${field} above 2^31-1 (${window})`);
      }
    }
    this.transition(ConnState.AUTHENTICATING);
    this.pipelined = [];
    this.ctx.verifier.verify(hello.token).then(
      (identity) => this.welcome(hello, version, identity.userId, forwardedClaims(identity.claims)),
      (err: unknown) => {
        if (err instanceof ProtocolError) this.fail(err.wireCode, err.message);
        else {
          this.log.error({ err }, 'token verifier failed');
          this.fail(Code.INTERNAL_ERROR, 'authentication unavailable');
        }
      },
    );
  }

  private welcome(hello: Hello, version: number, userId: string, claims: Record<string, string>): void {
    if (this.state !== ConnState.AUTHENTICATING) return;
    this.transition(ConnState.OPEN);
    this.userId = userId;
    this.claims = claims;
    this.log = this.log.child({ user: userId });
    this.admission = new SessionAdmission(this.ctx, { userId, connectionId: this.id, clientAddress: this.clientAddress });
    const clientConnectionWindow = hello.connectionWindow || Defaults.connectionWindow;
    this.sendCredit = new SendCredit(clientConnectionWindow);
    this.clientSessionWindow = hello.sessionWindow || Defaults.sessionWindow;
    const { limits, timeouts } = this.ctx.config;
    // At most half of every window a message crosses: with credit returned by half windows, a sender
    // with nothing in flight can always send one more message (PROTOCOL.md §7).
    const smallestWindow = Math.min(limits.sessionWindow, limits.connectionWindow, this.clientSessionWindow, clientConnectionWindow);
    this.maxPayload = Math.min(limits.maxPayload, Math.max(1, Math.floor(smallestWindow / 2)));
    this.decoderLimits.maxPayload = this.maxPayload;
    this.recvCredit = new ReceiveCredit(limits.connectionWindow);
    if (limits.lowPriorityRate > 0) {
      this.lowPacer = new LowPriorityPacer(limits.lowPriorityRate, limits.lowPriorityMerge, hello.acceptsBatch === true, this.out, (reason) =>
        this.drop(reason, Priority.LOW),
      );
    }
    this.sendControl(
      FrameType.WELCOME,
      encodeWelcome({
        version,
        connectionId: this.id,
        userId,
        heartbeatIntervalMs: timeouts.heartbeatIntervalMs,
        limits: {
          maxSessions: limits.maxSessions,
          maxPayload: this.maxPayload,
          sessionWindow: limits.sessionWindow,
          connectionWindow: limits.connectionWindow,
          idleTimeoutMs: timeouts.idleMs,
          maxOpenRate: limits.openResetRate,
        },
      }),
    );
    this.idleSince = this.ctx.timers.now();
    this.scheduleNext();
    // WELCOME leaves now: a held frame that fails the connection must not discard it (PROTOCOL.md §5.1).
    this.out.flush();
    this.log.info({ client: hello.client?.sdk }, 'connection authenticated');
    const queued = this.pipelined!;
    this.pipelined = null;
    try {
      for (const [type, flags, sessionId, payload, arrived] of queued) {
        if (this.closed) break; // a pipelined frame may have failed the connection
        this.replayedArrival = arrived;
        HANDLERS[type]!(this, flags, sessionId, payload);
      }
    } catch (err) {
      if (err instanceof ProtocolError) this.fail(err.wireCode, err.message);
      else throw err;
    } finally {
      this.replayedArrival = 0;
    }
  }

  /** @internal */
  onOpen(sessionId: number, payload: Buffer): void {
    const arrived = this.replayedArrival || performance.now();
    this.requireOpen('OPEN');
    if (!this.withinOpenResetRate('OPEN')) return;
    const open = decodeOpen(payload);
    if (sessionId <= this.highestSessionId) {
      const existing = this.sessions.get(sessionId);
      const why = `OPEN: session id ${sessionId} not above the highest used (${this.highestSessionId})`;
      if (existing) this.resetSession(existing, Code.SESSION_ID_REUSED, why);
      else this.sendStatus(FrameType.RESET, sessionId, Code.SESSION_ID_REUSED, why);
      return;
    }
    this.highestSessionId = sessionId;
    // Asking for a session is activity, even when refused (PROTOCOL.md §9.2).
    this.idleSince = this.ctx.timers.now();
    this.startSession(sessionId, open, arrived);
    // No id is left above this one: further sessions need a new connection (PROTOCOL.md §5.2).
    if (sessionId === MAX_SESSION_ID && this.state === ConnState.OPEN) {
      this.goAway(Code.SESSION_IDS_EXHAUSTED, `session id ${MAX_SESSION_ID} used: open further sessions on a new connection`);
    }
  }

  /** OPEN_OK and a session bound to a backend, or OPEN_FAIL with why (PROTOCOL.md §3.5). */
  private startSession(sessionId: number, open: Open, arrived: number): void {
    const m = this.ctx.metrics;
    const admission = this.admission.decide(open, this.sessions.size, this.state === ConnState.DRAINING);
    if (admission.kind === 'refuse') {
      const { code, reason, retryAfterMs } = admission;
      m.sessionsOpened.inc({ business: open.business, result: codeName(code) });
      this.log.info({ session: sessionId, business: open.business, code: codeName(code), reason }, 'session refused');
      this.sendStatus(FrameType.OPEN_FAIL, sessionId, code, reason, retryAfterMs);
      return;
    }
    const { link } = admission;
    const { registry, config } = this.ctx;
    const info = {
      userId: this.userId,
      business: open.business,
      metadata: open.metadata,
      clientAddress: this.clientAddress,
      connectionId: this.id,
      clientSessionId: sessionId,
      reattach: false,
      claims: this.claims,
      maxPayload: this.maxPayload,
    };
    const session = new ProxySession(
      this,
      sessionId,
      registry.allocateRef(),
      info,
      link,
      this.clientSessionWindow,
      config.limits.sessionWindow,
    );
    this.sessions.set(sessionId, session);
    this.admission.opened(open.business);
    registry.add(session);
    link.open(session.ref, info);
    m.sessions.inc({ business: open.business });
    m.sessionsOpened.inc({ business: open.business, result: 'ok' });
    this.sessionsOpened++;
    this.log.info({ session: sessionId, business: open.business, endpoint: link.endpoint }, 'session opened');
    this.sendSessionFrame(FrameType.OPEN_OK, sessionId, EMPTY);
    m.openDuration.series({ business: open.business }).observe((performance.now() - arrived) / 1000);
  }

  /** @internal */
  onData(flags: number, sessionId: number, payload: Buffer): void {
    this.requireOpen('DATA');
    const n = payload.length;
    // Only DATA held behind HELLO can be over it: the decoder checked it against the configured limit.
    if (n > this.maxPayload) {
      throw new ProtocolError(Code.FRAME_TOO_LARGE, `DATA: payload too large (${n} vs ${this.maxPayload} bytes announced in WELCOME)`);
    }
    if (!this.recvCredit.receive(n)) {
      throw new ProtocolError(Code.FLOW_CONTROL_ERROR, `DATA: connection window exceeded (${n} bytes)`);
    }
    const s = this.sessions.get(sessionId);
    if (!s || s.peerHasClosed) {
      this.releaseConnectionCredit(n);
      const why = `DATA: session ${sessionId} is not open`;
      if (s) this.resetSession(s, Code.UNKNOWN_SESSION, why);
      else this.sendStatus(FrameType.RESET, sessionId, Code.UNKNOWN_SESSION, why);
      return;
    }
    if (!s.receive(n)) {
      this.releaseConnectionCredit(n);
      this.resetSession(s, Code.SESSION_FLOW_CONTROL, `DATA: session ${sessionId} window exceeded (${n} bytes)`);
      return;
    }
    s.forward(payload, (flags & FLAG_PRIORITY_MASK) as Priority);
  }

  /** @internal */
  onClose(sessionId: number, payload: Buffer): void {
    this.requireOpen('CLOSE');
    const status = decodeStatus('CLOSE', payload);
    const s = this.sessions.get(sessionId);
    if (!s || s.peerHasClosed) {
      const why = `CLOSE: session ${sessionId} is not open`;
      if (s) this.resetSession(s, Code.UNKNOWN_SESSION, why);
      else this.sendStatus(FrameType.RESET, sessionId, Code.UNKNOWN_SESSION, why);
      return;
    }
    s.onPeerClose(status.code, status.reason);
  }

  /** @internal */
  onReset(sessionId: number, payload: Buffer): void {
    this.requireOpen('RESET');
    if (!this.withinOpenResetRate('RESET')) return;
    const status = decodeStatus('RESET', payload);
    // A RESET for an id already retired crossed ours on the wire: nothing left to do.
    this.sessions.get(sessionId)?.retire(status.code || Code.CANCELLED, status.reason);
  }

  /** @internal */
  onPing(payload: Buffer): void {
    this.requireOpen('PING');
    this.sendControl(FrameType.PONG, payload);
  }

  /** @internal */
  onPong(): void {
    // Liveness was already recorded when the frame arrived; PONG carries nothing else for the server.
    this.requireOpen('PONG');
  }

  /** @internal */
  onWindowUpdate(sessionId: number, payload: Buffer): void {
    this.requireOpen('WINDOW_UPDATE');
    const increment = payload.readUInt32BE(0);
    if (sessionId === 0) {
      if (!this.sendCredit.grant(increment)) {
        throw new ProtocolError(Code.FLOW_CONTROL_ERROR, `WINDOW_UPDATE: bad connection increment (${increment})`);
      }
      const waiters = [...this.creditWaiters];
      this.creditWaiters.clear();
      for (const s of waiters) s.pump();
      return;
    }
    // An update for a session that just closed may cross the close on the wire; ignore it.
    const s = this.sessions.get(sessionId);
    if (!s) return;
    if (!s.sendCredit.grant(increment)) {
      throw new ProtocolError(Code.FLOW_CONTROL_ERROR, `WINDOW_UPDATE: bad increment for session ${sessionId} (${increment})`);
    }
    s.pump();
  }

  /** @internal */
  onPeerError(payload: Buffer): void {
    let status = { code: Code.PROTOCOL_ERROR as number, reason: '' };
    try {
      status = decodeStatus('ERROR', payload);
    } catch {
      // The peer is closing anyway; an unreadable reason changes nothing.
    }
    this.log.info({ code: codeName(status.code), reason: status.reason }, 'client sent ERROR');
    this.socket.end();
    this.teardown(status.code, `client error: ${status.reason}`);
  }

  /** @internal */
  onServerOnlyFrame(type: FrameType): never {
    throw new ProtocolError(Code.UNEXPECTED_FRAME, `${FRAME_TYPE_NAMES[type]}: only the server sends this frame`);
  }

  // ── SessionHost ─────────────────────────────────────────────────────────────────────────────────

  awaitConnectionCredit(session: ProxySession): void {
    this.creditWaiters.add(session);
  }

  releaseConnectionCredit(bytes: number): void {
    if (this.state === ConnState.CLOSED) return;
    const increment = this.recvCredit.release(bytes);
    if (increment > 0) this.sendWindowUpdate(0, increment);
  }

  sendSessionFrame(type: FrameType, sessionId: number, body: Buffer): void {
    this.out.control(encodeFrame(type, 0, sessionId, body));
  }

  sendWindowUpdate(sessionId: number, increment: number): void {
    this.out.control(encodeWindowUpdate(sessionId, increment));
  }

  drop(reason: DropReason, priority: Priority, frames = 1): void {
    this.ctx.metrics.drops.inc({ reason, priority: PRIORITY_LABELS[priority] }, frames);
  }

  slowConsumer(): void {
    this.fail(Code.SLOW_CONSUMER, `outbound queue over its bound (${this.out.bytes} bytes queued)`);
  }

  halfClosed(session: ProxySession): void {
    const deadline = this.ctx.timers.now() + this.ctx.config.timeouts.halfCloseMs;
    (this.halfClosedSessions ??= new Map()).set(session, deadline);
    if (!this.timer.scheduled || deadline < this.timer.due) this.ctx.timers.schedule(this.timer, deadline);
  }

  retired(session: ProxySession, code: number, reason: string): void {
    const durationMs = Date.now() - session.openedAt;
    this.log.info({ session: session.id, business: session.business, durationMs, code: codeName(code), reason }, 'session closed');
    this.sessions.delete(session.id);
    this.halfClosedSessions?.delete(session);
    this.admission.retired(session.business);
    this.lowPacer?.forget(session);
    this.creditWaiters.delete(session);
    this.ctx.registry.remove(session);
    this.ctx.metrics.sessions.dec({ business: session.business });
    if (this.sessions.size > 0) return;
    if (this.state === ConnState.DRAINING) this.finish();
    else if (this.state === ConnState.OPEN) {
      this.idleSince = this.ctx.timers.now();
      this.scheduleNext();
    }
  }

  // ── lifecycle ───────────────────────────────────────────────────────────────────────────────────

  /**
   * Sends GOAWAY and stops taking sessions. Without sessions the connection closes once the GOAWAY is
   * written; otherwise when its last session ends (or {@link forceClose} at the drain deadline).
   */
  goAway(code: Code, reason: string, reconnectAddress = ''): void {
    if (this.state === ConnState.AWAIT_HELLO || this.state === ConnState.AUTHENTICATING) {
      this.fail(code, reason);
      return;
    }
    if (this.state !== ConnState.OPEN) return;
    this.transition(ConnState.DRAINING);
    this.sendControl(
      FrameType.GOAWAY,
      encodeGoAway({ lastSessionId: this.highestSessionId, code, reason, reconnectAddress }),
    );
    if (this.sessions.size === 0) this.finish();
  }

  /** Drain deadline: closes every remaining session with `code`, then the connection. */
  forceClose(code: Code, reason: string): void {
    for (const s of [...this.sessions.values()]) {
      this.sendStatus(FrameType.CLOSE, s.id, code, reason);
      s.retire(code, reason);
    }
    this.finish();
  }

  /** Connection-scoped fault: ERROR with the code, then close. Queued frames are abandoned. */
  fail(code: Code, message: string): void {
    if (this.state === ConnState.CLOSED) return;
    this.ctx.metrics.protocolErrors.inc({ code: codeName(code) });
    this.log.info({ code: codeName(code), reason: message }, 'closing connection');
    this.out.discard();
    const frame = encodeFrame(FrameType.ERROR, 0, 0, encodeStatus({ code, reason: message }));
    this.ctx.metrics.frameStats.countOut(FrameType.ERROR, frame.length);
    if (!this.socket.destroyed) this.socket.end(frame);
    this.destroyAfterGrace();
    this.teardown(code, message);
  }

  private finish(): void {
    if (this.destroyAt > 0) return;
    this.out.finish();
    this.destroyAfterGrace();
  }

  /** A closing socket gets CLOSE_GRACE_MS to flush its last frames; then it is destroyed. */
  private destroyAfterGrace(): void {
    if (this.destroyAt > 0) return;
    this.destroyAt = this.ctx.timers.now() + CLOSE_GRACE_MS;
    this.ctx.timers.schedule(this.timer, this.destroyAt);
  }

  private teardown(code: number, reason: string): void {
    if (this.state === ConnState.CLOSED) return;
    this.transition(ConnState.CLOSED);
    this.lowPacer?.close();
    this.pipelined = null;
    for (const s of [...this.sessions.values()]) s.retire(code, reason);
    this.ctx.metrics.connections.dec();
    this.ctx.metrics.connectionsClosed.inc({ code: codeName(code) });
    // The access log: one line per connection, whatever ended it (`user` is bound once authenticated).
    this.log.info(
      {
        durationMs: Date.now() - this.acceptedAt,
        bytesIn: this.socket.bytesRead,
        bytesOut: this.socket.bytesWritten,
        sessions: this.sessionsOpened,
        code: codeName(code),
        reason,
      },
      'connection closed',
    );
    this.ctx.connectionClosed(this);
  }

  /**
   * The connection's one timer callback, called by the proxy's wheel when the earliest of its deadlines
   * is due (PROTOCOL.md §9): handshake, idle, heartbeat, the close grace. Each is derived from a
   * timestamp the data path keeps (one clock read per frame), so nothing is rescheduled per frame; the
   * callback files the connection again for its next deadline. Any other per-connection deadline belongs
   * here too, so a connection keeps exactly one place in the wheel.
   */
  private onTimer(now: number): void {
    if (this.destroyAt > 0) {
      if (now >= this.destroyAt) this.socket.destroy();
      else this.ctx.timers.schedule(this.timer, this.destroyAt);
      return;
    }
    if (this.state === ConnState.AWAIT_HELLO || this.state === ConnState.AUTHENTICATING) {
      if (now >= this.handshakeDeadline) {
        this.fail(Code.HANDSHAKE_TIMEOUT, `handshake: no WELCOME within ${this.ctx.config.timeouts.handshakeMs} ms`);
      } else this.ctx.timers.schedule(this.timer, this.handshakeDeadline);
      return;
    }
    if (this.closed) return;
    const { heartbeatIntervalMs: interval, heartbeatMisses, idleMs, halfCloseMs } = this.ctx.config.timeouts;
    for (const [session, deadline] of this.halfClosedSessions ?? []) {
      if (now < deadline) continue;
      this.halfClosedSessions!.delete(session);
      session.closeByProxy(Code.HALF_CLOSE_TIMEOUT, `backend did not end the session within ${halfCloseMs} ms of the client's CLOSE`);
    }
    if (this.idleClockRuns && now - this.idleSince >= idleMs) {
      this.goAway(Code.IDLE_TIMEOUT, `idle for ${idleMs} ms`);
      return;
    }
    // PINGs go out after 1, 2, … heartbeatMisses whole intervals of silence; one more is the end.
    const silentIntervals = Math.floor((now - this.lastInbound) / interval);
    if (silentIntervals > heartbeatMisses) {
      this.fail(Code.HEARTBEAT_TIMEOUT, `heartbeat: nothing received for ${silentIntervals} intervals of ${interval} ms (${this.pingsSent} PINGs unanswered)`);
      return;
    }
    if (silentIntervals > this.pingsSent) {
      this.pingsSent = silentIntervals;
      const ping = Buffer.allocUnsafe(8);
      ping.writeDoubleBE(Date.now());
      this.sendControl(FrameType.PING, ping);
    }
    this.scheduleNext();
  }

  /** Files the connection in the wheel for its next heartbeat or idle deadline. */
  private scheduleNext(): void {
    const { heartbeatIntervalMs, idleMs } = this.ctx.config.timeouts;
    let next = this.lastInbound + (this.pingsSent + 1) * heartbeatIntervalMs;
    if (this.idleClockRuns) next = Math.min(next, this.idleSince + idleMs);
    for (const deadline of this.halfClosedSessions?.values() ?? []) next = Math.min(next, deadline);
    this.ctx.timers.schedule(this.timer, next);
  }

  /** Idle is counted while the connection is OPEN with no session (PROTOCOL.md §9.2). */
  private get idleClockRuns(): boolean {
    return this.ctx.config.timeouts.idleMs > 0 && this.state === ConnState.OPEN && this.sessions.size === 0;
  }

  private sendControl(type: FrameType, body: Buffer): void {
    this.out.control(encodeFrame(type, 0, 0, body));
  }

  private sendStatus(type: FrameType, sessionId: number, code: Code, reason: string, retryAfterMs = 0): void {
    if (type === FrameType.RESET) this.ctx.metrics.protocolErrors.inc({ code: codeName(code) });
    this.sendSessionFrame(type, sessionId, encodeStatus({ code, reason, retryAfterMs }));
  }

  private resetSession(s: ProxySession, code: Code, reason: string): void {
    this.sendStatus(FrameType.RESET, s.id, code, reason);
    s.retire(code, reason);
  }

  private requireOpen(frame: string): void {
    if (this.state !== ConnState.OPEN && this.state !== ConnState.DRAINING) {
      throw new ProtocolError(Code.UNEXPECTED_FRAME, `${frame}: not allowed before HELLO`);
    }
  }

  /**
   * The "rapid reset" guard: OPEN and RESET share one token bucket. A flood gets GOAWAY RATE_LIMITED,
   * every session is closed and the connection ends once that is written.
   */
  private withinOpenResetRate(frame: string): boolean {
    if (this.bucket.take()) return true;
    if (this.state === ConnState.OPEN) {
      const rate = this.ctx.config.limits.openResetRate;
      this.ctx.metrics.protocolErrors.inc({ code: codeName(Code.RATE_LIMITED) });
      this.log.warn({ frame }, 'OPEN/RESET flood: sending GOAWAY');
      this.goAway(Code.RATE_LIMITED, `${frame}: more than ${rate} OPEN/RESET per second`);
      // No CLOSE per session (PROTOCOL.md §9.3): the GOAWAY ends them all; the last one ends the connection.
      for (const s of [...this.sessions.values()]) s.retire(Code.RATE_LIMITED, 'connection rate limited');
    }
    return false;
  }

  private transition(to: ConnState): void {
    if (!TRANSITIONS[this.state].includes(to)) {
      throw new Error(`connection ${this.id}: illegal transition ${this.state} → ${to}`);
    }
    this.state = to;
  }

  get closed(): boolean {
    return this.state === ConnState.CLOSED;
  }

  /** Open sessions (for the drain loop and the admin status page). */
  get sessionCount(): number {
    return this.sessions.size;
  }
}

const EMPTY = Buffer.alloc(0);
const PRIORITY_LABELS = ['system', 'high', 'low'] as const;

const HANDLERS: Handler[] = [];
HANDLERS[FrameType.HELLO] = (c, _f, _s, p) => c.onHello(p);
HANDLERS[FrameType.OPEN] = (c, _f, s, p) => c.onOpen(s, p);
HANDLERS[FrameType.DATA] = (c, f, s, p) => c.onData(f, s, p);
HANDLERS[FrameType.CLOSE] = (c, _f, s, p) => c.onClose(s, p);
HANDLERS[FrameType.RESET] = (c, _f, s, p) => c.onReset(s, p);
HANDLERS[FrameType.PING] = (c, _f, _s, p) => c.onPing(p);
HANDLERS[FrameType.PONG] = (c) => c.onPong();
HANDLERS[FrameType.WINDOW_UPDATE] = (c, _f, s, p) => c.onWindowUpdate(s, p);
for (const t of [FrameType.WELCOME, FrameType.OPEN_OK, FrameType.OPEN_FAIL, FrameType.GOAWAY]) {
  HANDLERS[t] = (c) => c.onServerOnlyFrame(t);
}
