import { randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import {
  Defaults,
  FLAG_PRIORITY_MASK,
  FRAME_TYPE_NAMES,
  FrameType,
  HEADER_SIZE,
  MAX_PIPELINED,
  MAX_QUEUED_CONTROL_BYTES,
  MAX_SESSION_ID,
  MAX_WINDOW,
  Priority,
  SUPPORTED_VERSIONS,
  TOKEN_SKEW_MS,
} from '../protocol/constants.js';
import { Code, codeLabel, codeName } from '../protocol/codes.js';
import { FrameDecoder, type FrameSink } from '../protocol/decoder.js';
import { encodeFrame, encodeWindowUpdate } from '../protocol/encoder.js';
import { LimitError, ProtocolError } from '../protocol/errors.js';
import { ReceiveCredit, SendCredit } from '../protocol/flow-control.js';
import {
  type Hello,
  type Open,
  decodeHello,
  decodeOpen,
  decodeRefresh,
  decodeStatus,
  encodeAuthState,
  encodeGoAway,
  encodeStatus,
  encodeWelcome,
} from '../protocol/messages.js';
import { ProxySession, type SessionHost } from '../session/proxy-session.js';
import type { HandshakingConnection } from './connection-gate.js';
import { SmallMap } from '../util/small-map.js';
import { NO_CLAIMS } from './auth.js';
import type { ProxyContext } from './context.js';
import { type Identity, verifyIdentity } from './identity.js';
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

/**
 * How long a closed connection's socket stays open, reading and discarding, so that its last frame
 * (ERROR, GOAWAY) reaches a client that reads late instead of being lost with the socket. The client
 * closing its end ends it at once. The socket counts against the connection limits meanwhile.
 */
const LINGER_MS = 10_000;
/** The same for a connection closed before WELCOME: its ERROR is all it gets, and it gets it at once. */
const UNWELCOMED_LINGER_MS = 1_000;
/** The bits of `Connection.flags`. */
const enum Flag {
  /** The client handles AUTH_STATE and REFRESH (HELLO `accepts_refresh`). */
  ACCEPTS_REFRESH = 1,
  /** AUTH_STATE asking for a REFRESH was sent for the token in effect. */
  REFRESH_ASKED = 2,
  /** A REFRESH token is being verified. */
  REFRESHING = 4,
  /** This connection counts against its user's `connections.max_per_user`. */
  USER_COUNTED = 8,
  /** The client's HELLO `accepts_batch`, for the pacer. */
  ACCEPTS_BATCH = 16,
}
/** REFRESH frames: a burst of this many, then one per REFRESH_INTERVAL_S seconds; one more → RATE_LIMITED. */
const REFRESH_BURST = 3;
const REFRESH_INTERVAL_S = 20;

type Handler = (conn: Connection, flags: number, sessionId: number, payload: Buffer) => void;

/** The Connection a socket belongs to, for the socket listeners every connection shares. */
const OWNER = Symbol('livemux.connection');
type OwnedSocket = Socket & { [OWNER]: Connection };

/**
 * One client TCP connection: owns the socket, the decoder, the session table and the outbound queue.
 * Frames arrive through {@link onFrame} and dispatch through a table indexed by frame type; every
 * protocol fault becomes RESET (session-scoped) or ERROR + close (connection-scoped) with its code.
 *
 * The connection is its own entry in the proxy's timer wheel (every deadline is checked by
 * {@link onTimer}), with one callback shared by every connection: a separate entry object would cost
 * each connection 72 bytes, a closure about 100.
 */
export class Connection extends WheelEntry implements FrameSink, SessionHost, HandshakingConnection {
  readonly id = randomBytes(9).toString('base64url');
  state: ConnState = ConnState.AWAIT_HELLO;
  userId = '';
  /** The verified token's forwarded claims, passed to backends in SessionOpened. */
  claims: Readonly<Record<string, string>> = NO_CLAIMS;
  /** When the token in effect lapses (its `exp` + skew), epoch ms; Infinity without `exp`. */
  private tokenDeadline = Infinity;
  /** The connection's booleans as bits of one small integer (see {@link Flag}): 8 bytes, not 8 each. */
  private flags = 0;
  /** Bytes received since the connection opened (overload shedding looks at who sends most). */
  inboundBytes = 0;
  readonly out: OutboundQueue;
  /** Connection-level credit for server→client DATA, granted by the client. */
  sendCredit = new SendCredit(Defaults.connectionWindow);
  /** Connection-level credit granted to the client for client→server DATA; set at WELCOME. */
  private recvCredit!: ReceiveCredit;
  /**
   * Largest DATA payload either way on this connection, as announced in WELCOME: the configured
   * max_payload, lowered to half the smallest initial window of both directions (PROTOCOL.md §7).
   * Before WELCOME, pipelined DATA is held against the configured max_payload (PROTOCOL.md §2.4). The
   * decoder reads its limits from the connection itself (DecoderLimits), not from an object of its own.
   */
  maxPayload: number;
  private readonly sessions = new SmallMap<number, ProxySession>();
  /** Sessions the client half-closed, with the time by which their backend must end them (made on first use). */
  private halfClosedSessions: Map<ProxySession, number> | null = null;
  /** Sessions waiting for connection credit; null while none does (an empty Set costs ~200 bytes). */
  private creditWaiters: Set<ProxySession> | null = null;
  /** Low-priority frame cap (see {@link lowPacer}); made when the first low message arrives. */
  private pacer: LowPriorityPacer | null = null;
  /** Created at WELCOME, once the user is known; OPEN is illegal before. */
  private admission!: SessionAdmission;
  private readonly decoder: FrameDecoder;
  /**
   * The rate guards: OPEN/RESET; frames that earn a reply (PING, and DATA/CLOSE on sessions that are not
   * open, PROTOCOL.md §9.6); REFRESH. Each is made on first use and given back by the periodic check
   * once full again: a full bucket is exactly a new one, and an idle connection keeps none (72 bytes each).
   */
  private bucket: TokenBucket | null = null;
  private replyBucket: TokenBucket | null = null;
  private refreshBucket: TokenBucket | null = null;
  /** Frames that arrived before WELCOME, with their arrival time (performance.now()). */
  private pipelined: [FrameType, number, number, Buffer, number][] | null = null;
  /** Bytes of the frames held in `pipelined`, headers included. */
  private pipelinedBytes = 0;
  /** While a pipelined frame is replayed: when it arrived; else 0 (it arrived now). */
  private replayedArrival = 0;
  private clientSessionWindow: number = Defaults.sessionWindow;
  private highestSessionId = 0;
  private readonly handshakeDeadline: number;
  /** When the last frame arrived (wheel clock): the heartbeat counts silence from it. */
  private lastInbound: number;
  /** PINGs sent since that frame. */
  private pingsSent = 0;
  /** When the connection last became idle (no session): WELCOME, the last session retired, an OPEN. */
  private idleSince = 0;
  /** When a closing socket is destroyed if it has not finished flushing; 0 while not closing. */
  private destroyAt = 0;
  /** When the connection was accepted (wheel clock), and how many sessions it opened: for its access-log line. */
  private readonly acceptedAt: number;
  private sessionsOpened = 0;

  /**
   * Takes over a socket the server has admitted through `ctx.gate` from `clientIp`; the gate is told
   * when the socket is gone.
   */
  constructor(
    private readonly socket: Socket,
    private readonly ctx: ProxyContext,
    readonly clientAddress: string,
    private readonly clientIp: string,
  ) {
    super(Connection.fireTimer);
    const { limits, timeouts } = ctx.config;
    this.maxPayload = limits.maxPayload;
    this.decoder = new FrameDecoder(this, this);
    this.out = new OutboundQueue(
      socket,
      limits.outboundQueueBytes,
      this,
      ctx.metrics.frameStats,
      ctx.metrics.queueWait,
    );
    this.lastInbound = this.acceptedAt = this.now();
    this.handshakeDeadline = this.lastInbound + timeouts.handshakeMs;
    ctx.timers.schedule(this, this.handshakeDeadline);
    socket.setNoDelay(true);
    (socket as OwnedSocket)[OWNER] = this;
    socket.on('data', Connection.onSocketData);
    socket.on('error', Connection.onSocketError);
    socket.on('close', Connection.onSocketClose);
    ctx.gate.handshakeStarted(this);
    ctx.metrics.connections.inc();
    ctx.metrics.connectionsAccepted.inc();
  }

  // The socket's listeners are shared by every connection (`this` is the socket, which knows its owner):
  // three closures and their contexts would cost each connection about 300 bytes.
  private static onSocketData(this: OwnedSocket, chunk: Buffer): void {
    this[OWNER].receive(chunk);
  }

  private static onSocketError(this: OwnedSocket, err: Error): void {
    this[OWNER].line('debug', { err }, 'socket error');
  }

  private static onSocketClose(this: OwnedSocket): void {
    const conn = this[OWNER];
    conn.ctx.timers.cancel(conn);
    conn.teardown(Code.NORMAL, 'socket closed');
    conn.ctx.gate.released(conn.clientIp);
  }

  /** The connection as routing names it (RouteContext). */
  get connectionId(): string {
    return this.id;
  }

  /** DecoderLimits: a server's decoder refuses BATCH from clients (PROTOCOL.md §2.3). */
  get acceptBatch(): false {
    return false;
  }

  /** @internal The outbound queue dropped DATA (OutboundHooks). */
  onDrop(reason: DropReason, priority: Priority, frames: number): void {
    this.drop(reason, priority, frames);
  }

  /** @internal A control reply did not fit the outbound bound (OutboundHooks). */
  onOverflow(kind: 'control' | 'total'): void {
    this.controlOverflow(kind);
  }

  /** Feeds bytes from the socket (or bytes that followed a PROXY protocol header). */
  receive(chunk: Buffer): void {
    this.inboundBytes += chunk.length;
    // A closed connection's socket lingers (LINGER_MS): what it still receives is read and dropped. Not
    // reading would leave bytes unread, and closing a socket with unread bytes resets it, which throws
    // away the ERROR still waiting in our send buffer for a client that reads late.
    if (this.closed) return;
    try {
      this.decoder.push(chunk);
      if (this.pipelined !== null || this.state === ConnState.AWAIT_HELLO) {
        const over = this.ctx.gate.handshakeHolds(this, this.decoder.bufferedBytes + this.pipelinedBytes);
        if (over) this.refuse(over);
      }
    } catch (err) {
      if (err instanceof ProtocolError) this.refuse(err);
      else {
        this.line('error', { err }, 'internal error while handling a frame');
        this.fail(Code.INTERNAL_ERROR, 'internal error');
      }
    }
  }

  /**
   * Limits that depend on the connection's state, applied to a frame's header before its payload is read:
   * before HELLO only a HELLO of at most `limits.max_hello_bytes` (or the peer's ERROR, which ends the
   * connection); behind HELLO (not yet WELCOMEd) at most `limits.handshake_bytes` of frames in all. So
   * nothing is buffered for a client nobody knows.
   */
  onHeader(type: FrameType, _flags: number, _sessionId: number, length: number): void {
    if (this.state === ConnState.AWAIT_HELLO) {
      if (type === FrameType.ERROR) return;
      if (type !== FrameType.HELLO) throw new ProtocolError(Code.UNEXPECTED_FRAME, `${FRAME_TYPE_NAMES[type]}: not allowed before HELLO`);
      const max = this.ctx.config.limits.maxHelloBytes;
      if (length > max) throw new LimitError(Code.FRAME_TOO_LARGE, `HELLO: payload too large (${length} vs limits.max_hello_bytes ${max})`, 'limits.max_hello_bytes');
    } else if (this.pipelined !== null) {
      const max = this.ctx.config.limits.handshakeBytes;
      const held = this.pipelinedBytes + HEADER_SIZE + length;
      if (held > max) {
        throw new LimitError(Code.FRAME_TOO_LARGE, `${FRAME_TYPE_NAMES[type]}: ${held} bytes held before WELCOME (limits.handshake_bytes ${max})`, 'limits.handshake_bytes');
      }
    }
  }

  onFrame(type: FrameType, flags: number, sessionId: number, payload: Buffer): void {
    if (this.closed) return;
    this.lastInbound = this.now();
    this.pingsSent = 0;
    this.ctx.metrics.frameStats.countIn(type, HEADER_SIZE + payload.length);
    // A peer's ERROR ends the connection in every state, held frames included; it is never answered.
    if (type === FrameType.ERROR) return this.onPeerError(payload);
    if (this.pipelined) {
      if (this.pipelined.length >= MAX_PIPELINED) {
        throw new ProtocolError(Code.RATE_LIMITED, `handshake: more than ${MAX_PIPELINED} frames before WELCOME`);
      }
      // A copy: a view would keep the whole socket chunk alive until WELCOME.
      this.pipelined.push([type, flags, sessionId, Buffer.from(payload), performance.now()]);
      this.pipelinedBytes += HEADER_SIZE + payload.length;
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
    this.setFlag(Flag.ACCEPTS_REFRESH, hello.acceptsRefresh === true);
    this.verify(hello.token, (identity) => this.welcome(hello, version, identity));
  }

  /** Verifies `token` and holds it to the identity limits; on success `then`, on failure ERROR with the code. */
  private verify(token: string, then: (identity: Identity) => void): void {
    verifyIdentity(this.ctx.verifier, token, this.ctx.config.auth).then(then, (err: unknown) => {
      if (err instanceof ProtocolError) this.refuse(err);
      else {
        this.line('error', { err }, 'token verifier failed');
        this.fail(Code.INTERNAL_ERROR, 'authentication unavailable');
      }
    });
  }

  private welcome(hello: Hello, version: number, identity: Identity): void {
    if (this.state !== ConnState.AUTHENTICATING) return;
    const { userId } = identity;
    const overUser = this.ctx.gate.userJoined(userId);
    if (overUser) return this.refuse(overUser);
    this.setFlag(Flag.USER_COUNTED, true);
    this.ctx.gate.handshakeEnded(this);
    this.transition(ConnState.OPEN);
    this.userId = userId;
    this.claims = identity.claims;
    this.tokenDeadline = identity.deadline;
    this.admission = new SessionAdmission(this.ctx, this);
    const clientConnectionWindow = hello.connectionWindow || Defaults.connectionWindow;
    this.sendCredit = new SendCredit(clientConnectionWindow);
    this.clientSessionWindow = hello.sessionWindow || Defaults.sessionWindow;
    const { limits, timeouts } = this.ctx.config;
    // At most half of every window a message crosses: with credit returned by half windows, a sender
    // with nothing in flight can always send one more message (PROTOCOL.md §7).
    const smallestWindow = Math.min(limits.sessionWindow, limits.connectionWindow, this.clientSessionWindow, clientConnectionWindow);
    this.maxPayload = Math.min(limits.maxPayload, Math.max(1, Math.floor(smallestWindow / 2)));
    this.recvCredit = new ReceiveCredit(limits.connectionWindow);
    this.setFlag(Flag.ACCEPTS_BATCH, hello.acceptsBatch === true);
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
          maxReplyRate: limits.replyRate,
        },
        expiresInMs: this.expiresInMs(Date.now()),
      }),
    );
    this.idleSince = this.now();
    // A token already within its refresh window is asked for at once (PROTOCOL.md §5.3).
    this.checkToken(Date.now());
    this.scheduleNext();
    // WELCOME leaves now: a held frame that fails the connection must not discard it (PROTOCOL.md §5.1).
    this.out.flush();
    this.line('info', { client: hello.client?.sdk }, 'connection authenticated');
    const queued = this.pipelined!;
    this.pipelined = null;
    this.pipelinedBytes = 0;
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
    this.idleSince = this.now();
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
      const { code, reason, retryAfterMs, limit } = admission;
      const business = this.admission.businessLabel(open.business);
      m.sessionsOpened.inc({ business, result: codeName(code) });
      if (limit) m.limitHits.inc({ limit });
      // A limit's refusals come at the rate the client sends: counted above, not one log line each.
      this.line(limit ? 'debug' : 'info', { session: sessionId, business, code: codeName(code), reason }, 'session refused');
      this.sendStatus(FrameType.OPEN_FAIL, sessionId, code, reason, retryAfterMs);
      return;
    }
    const { link, business } = admission;
    const { registry, config } = this.ctx;
    const session = new ProxySession(
      this,
      sessionId,
      registry.allocateRef(),
      business,
      // Most OPENs carry no metadata: they share one empty object rather than keep one per session.
      isEmpty(open.metadata) ? NO_METADATA : open.metadata,
      link,
      this.clientSessionWindow,
      config.limits.sessionWindow,
    );
    this.sessions.set(sessionId, session);
    this.admission.opened(business);
    registry.add(session);
    link.open(session.ref, session.info);
    m.sessions.inc({ business });
    m.sessionsOpened.inc({ business, result: 'ok' });
    this.sessionsOpened++;
    this.line('info', { session: sessionId, business, endpoint: link.endpoint }, 'session opened');
    this.sendSessionFrame(FrameType.OPEN_OK, sessionId, EMPTY);
    m.openDuration.series({ business }).observe((performance.now() - arrived) / 1000);
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
      if (!this.withinReplyRate('DATA on a session not open')) return;
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
      if (!this.withinReplyRate('CLOSE on a session not open')) return;
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
    if (this.withinReplyRate('PING')) this.sendControl(FrameType.PONG, payload);
  }

  /**
   * A fresh token (PROTOCOL.md §3.14): same user, verified like HELLO's; it replaces the token in effect
   * and is answered AUTH_STATE with its lifetime. One at a time, and only from clients that said they
   * can (HELLO `accepts_refresh`).
   * @internal
   */
  onRefresh(payload: Buffer): void {
    this.requireOpen('REFRESH');
    if (!this.has(Flag.ACCEPTS_REFRESH)) throw new ProtocolError(Code.UNEXPECTED_FRAME, 'REFRESH: HELLO did not set accepts_refresh');
    const { token } = decodeRefresh(payload);
    if (this.has(Flag.REFRESHING) || !(this.refreshBucket ??= new TokenBucket(1 / REFRESH_INTERVAL_S, REFRESH_BURST)).take()) {
      throw new LimitError(Code.RATE_LIMITED, `REFRESH: more than ${REFRESH_BURST}, then one per ${REFRESH_INTERVAL_S} s, one at a time`, 'refresh_rate');
    }
    this.setFlag(Flag.REFRESHING, true);
    this.verify(token, (identity) => {
      this.setFlag(Flag.REFRESHING, false);
      if (this.closed) return;
      if (identity.userId !== this.userId) return this.fail(Code.AUTH_FAILED, 'REFRESH: the token is for another user');
      this.claims = identity.claims;
      this.tokenDeadline = identity.deadline;
      this.setFlag(Flag.REFRESH_ASKED, false);
      this.line('debug', { expiresInMs: this.expiresInMs(Date.now()) }, 'token refreshed');
      this.sendControl(FrameType.AUTH_STATE, encodeAuthState({ expiresInMs: this.expiresInMs(Date.now()), refresh: false }));
      if (this.state === ConnState.OPEN || this.state === ConnState.DRAINING) this.scheduleNext();
    });
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
      const waiters = this.creditWaiters;
      this.creditWaiters = null;
      for (const s of waiters ?? []) s.pump();
      return;
    }
    // An update for a session that just closed may cross the close on the wire; ignore it.
    const s = this.sessions.get(sessionId);
    if (!s) return;
    if (!s.grantCredit(increment)) {
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
    this.line('info', { code: codeName(status.code), reason: status.reason.slice(0, 200) }, 'client sent ERROR');
    this.out.abort();
    this.linger();
    // Cut as in the line above: the access log's reason is not the client's to fill.
    this.teardown(status.code, `client error: ${status.reason.slice(0, 200)}`);
  }

  /** @internal */
  onServerOnlyFrame(type: FrameType): never {
    throw new ProtocolError(Code.UNEXPECTED_FRAME, `${FRAME_TYPE_NAMES[type]}: only the server sends this frame`);
  }

  // ── SessionHost ─────────────────────────────────────────────────────────────────────────────────

  /**
   * The low-priority frame cap (limits.low_priority_rate, with the client's `accepts_batch`), or null
   * when uncapped. Made on first use: most connections never get a low message, and the pacer with its
   * token bucket and table costs about 350 bytes.
   */
  get lowPacer(): LowPriorityPacer | null {
    const { lowPriorityRate, lowPriorityMerge } = this.ctx.config.limits;
    if (this.pacer || lowPriorityRate === 0) return this.pacer;
    return (this.pacer = new LowPriorityPacer(lowPriorityRate, lowPriorityMerge, this.has(Flag.ACCEPTS_BATCH), this.out, (reason) => this.drop(reason, Priority.LOW)));
  }

  awaitConnectionCredit(session: ProxySession): void {
    (this.creditWaiters ??= new Set()).add(session);
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

  /** A reply did not fit in the outbound queue (see OutboundQueue.control). */
  private controlOverflow(kind: 'control' | 'total'): void {
    if (kind === 'total') return this.slowConsumer();
    this.refuse(new LimitError(Code.CONTROL_FLOOD, `replies left unread (${MAX_QUEUED_CONTROL_BYTES} bytes of control frames queued)`, 'control_queue'));
  }

  /** Bytes this connection makes the proxy hold now: outbound queue, partial frames, frames held before WELCOME. */
  get heldBytes(): number {
    return this.out.bytes + this.decoder.bufferedBytes + this.pipelinedBytes;
  }

  halfClosed(session: ProxySession): void {
    const deadline = this.now() + this.ctx.config.timeouts.halfCloseMs;
    (this.halfClosedSessions ??= new Map()).set(session, deadline);
    if (!this.scheduled || deadline < this.due) this.ctx.timers.schedule(this, deadline);
  }

  retired(session: ProxySession, code: number, reason: string): void {
    const durationMs = Math.floor(performance.now()) - session.openedAt;
    // A client's RESET or CLOSE may carry 16 KiB of reason: a log line gets its start.
    this.line('info', { session: session.id, business: session.business, durationMs, code: codeName(code), reason: reason.slice(0, 200) }, 'session closed');
    this.sessions.delete(session.id);
    this.halfClosedSessions?.delete(session);
    this.admission.retired(session.business);
    this.pacer?.forget(session);
    this.creditWaiters?.delete(session);
    this.ctx.registry.remove(session);
    this.ctx.metrics.sessions.dec({ business: session.business });
    if (this.sessions.size > 0) return;
    if (this.state === ConnState.DRAINING) this.finish();
    else if (this.state === ConnState.OPEN) {
      this.idleSince = this.now();
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

  /**
   * Connection-scoped fault: ERROR with the code, then close. Frames not yet written are abandoned; the
   * ERROR goes out ahead of them, and the socket lingers so a client reading late still gets it.
   */
  fail(code: Code, message: string): void {
    if (this.state === ConnState.CLOSED) return;
    this.ctx.metrics.protocolErrors.inc({ code: codeName(code) });
    this.line('info', { code: codeName(code), reason: message }, 'closing connection');
    this.out.abort(encodeFrame(FrameType.ERROR, 0, 0, encodeStatus({ code, reason: message })));
    this.linger();
    this.teardown(code, message);
  }

  /** Fails with a protocol error's code; a limit's error is also counted by the limit it hit. */
  private refuse(err: ProtocolError): void {
    if (this.closed) return;
    if (err instanceof LimitError) this.ctx.metrics.limitHits.inc({ limit: err.limit });
    this.fail(err.wireCode, err.message);
  }

  /** The connection handshaking gave way to a newer one (connections.max_handshakes). */
  shutOut(err: LimitError): void {
    this.refuse(err);
  }

  private finish(): void {
    if (this.destroyAt > 0) return;
    this.out.finish();
    this.linger();
  }

  /**
   * Keeps the socket for at most LINGER_MS once its last frame is handed over (the wheel destroys it
   * then): the client closing its end ends it sooner (Node ends ours in turn), and a client that never
   * reads does not hold it longer. A connection never WELCOMEd has only its ERROR in flight, which leaves
   * at once: reading on what such a peer sends (a 1 MiB payload behind a refused header) would only cost
   * us, so it is not read, and destroyed after UNWELCOMED_LINGER_MS.
   */
  private linger(): void {
    if (this.destroyAt > 0) return;
    if (!this.has(Flag.USER_COUNTED)) this.socket.pause();
    this.destroyAt = this.now() + (this.has(Flag.USER_COUNTED) ? LINGER_MS : UNWELCOMED_LINGER_MS);
    this.ctx.timers.schedule(this, this.destroyAt);
  }

  private teardown(code: number, reason: string): void {
    if (this.state === ConnState.CLOSED) return;
    this.transition(ConnState.CLOSED);
    this.ctx.gate.handshakeEnded(this);
    if (this.has(Flag.USER_COUNTED)) this.ctx.gate.userLeft(this.userId);
    this.pacer?.close();
    this.pipelined = null;
    this.pipelinedBytes = 0;
    for (const s of [...this.sessions.values()]) s.retire(code, reason);
    this.ctx.metrics.connections.dec();
    this.ctx.metrics.connectionsClosed.inc({ code: codeLabel(code) });
    // The access log: one line per connection, whatever ended it (`user` is bound once authenticated).
    this.line(
      'info',
      {
        durationMs: this.now() - this.acceptedAt,
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

  private has(flag: Flag): boolean {
    return (this.flags & flag) !== 0;
  }
  private setFlag(flag: Flag, on: boolean): void {
    this.flags = on ? this.flags | flag : this.flags & ~flag;
  }

  private static fireTimer(this: Connection, now: number): void {
    this.onTimer(now);
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
      else this.ctx.timers.schedule(this, this.destroyAt);
      return;
    }
    if (this.state === ConnState.AWAIT_HELLO || this.state === ConnState.AUTHENTICATING) {
      if (now >= this.handshakeDeadline) {
        this.fail(Code.HANDSHAKE_TIMEOUT, `handshake: no WELCOME within ${this.ctx.config.timeouts.handshakeMs} ms`);
      } else this.ctx.timers.schedule(this, this.handshakeDeadline);
      return;
    }
    if (this.closed) return;
    this.checkToken(Date.now());
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
      this.out.controlNow(encodeFrame(FrameType.PING, 0, 0, ping));
    }
    // An idle connection gives back the lanes its traffic grew (a PING just queued is written first),
    // and the rate guards that have filled up again.
    this.out.compact();
    if (this.bucket?.full()) this.bucket = null;
    if (this.replyBucket?.full()) this.replyBucket = null;
    if (this.refreshBucket?.full()) this.refreshBucket = null;
    this.scheduleNext();
  }

  /** Files the connection in the wheel for its next heartbeat, idle, half-close or token deadline. */
  private scheduleNext(): void {
    const { heartbeatIntervalMs, idleMs } = this.ctx.config.timeouts;
    let next = this.lastInbound + (this.pingsSent + 1) * heartbeatIntervalMs;
    if (this.idleClockRuns) next = Math.min(next, this.idleSince + idleMs);
    for (const deadline of this.halfClosedSessions?.values() ?? []) next = Math.min(next, deadline);
    // The token's deadline is wall-clock time (a JWT's exp); the wheel runs on its own clock.
    const tokenCheck = this.nextTokenCheck(Date.now());
    if (tokenCheck !== Infinity) next = Math.min(next, this.now() + (tokenCheck - Date.now()));
    this.ctx.timers.schedule(this, next);
  }

  /**
   * Token lifetime (PROTOCOL.md §5.3): past its deadline → ERROR AUTH_EXPIRED; within
   * `auth.refresh_window_ms` of it, a client that accepts refresh is asked once for a REFRESH.
   */
  private checkToken(now: number): void {
    if (now >= this.tokenDeadline) {
      this.fail(Code.AUTH_EXPIRED, `token expired at ${new Date(this.tokenDeadline - TOKEN_SKEW_MS).toISOString()} (with ${TOKEN_SKEW_MS} ms of skew allowed) and was not refreshed`);
      return;
    }
    if (this.has(Flag.ACCEPTS_REFRESH) && !this.has(Flag.REFRESH_ASKED) && this.tokenDeadline - now <= this.ctx.config.auth.refreshWindowMs) {
      this.setFlag(Flag.REFRESH_ASKED, true);
      this.sendControl(FrameType.AUTH_STATE, encodeAuthState({ expiresInMs: this.expiresInMs(now), refresh: true }));
    }
  }

  /** When {@link checkToken} next has something to do (epoch ms). */
  private nextTokenCheck(now: number): number {
    if (this.tokenDeadline === Infinity) return Infinity;
    const askAt = this.tokenDeadline - this.ctx.config.auth.refreshWindowMs;
    return this.has(Flag.ACCEPTS_REFRESH) && !this.has(Flag.REFRESH_ASKED) && askAt > now ? askAt : this.tokenDeadline;
  }

  /** The token's remaining lifetime as announced on the wire: ms, at least 1, or 0 for never. */
  private expiresInMs(now: number): number {
    return this.tokenDeadline === Infinity ? 0 : Math.min(0xffff_ffff, Math.max(1, this.tokenDeadline - now));
  }

  /**
   * The wheel's clock in whole milliseconds, rounded up (so a deadline derived from it is never early).
   * A whole number fits a small-integer field; a fraction would be a 16-byte heap number for each of
   * the connection's timestamps and its wheel entry's due time.
   */
  private now(): number {
    return Math.ceil(this.ctx.timers.now());
  }

  /** Idle is counted while the connection is OPEN with no session (PROTOCOL.md §9.2). */
  private get idleClockRuns(): boolean {
    return this.ctx.config.timeouts.idleMs > 0 && this.state === ConnState.OPEN && this.sessions.size === 0;
  }

  /**
   * One log line of this connection, stamped with `conn`, `addr` and (once authenticated) `user`. No
   * pino child is kept per connection: one costs about 650 bytes of heap, more than the rest of an
   * idle connection's state, and the process logger's level (/log-level) then applies to every
   * connection at once.
   */
  private line(level: 'debug' | 'info' | 'warn' | 'error', fields: object, message: string): void {
    const logger = this.ctx.logger;
    if (!logger.isLevelEnabled(level)) return;
    const context = this.userId ? { conn: this.id, addr: this.clientAddress, user: this.userId } : { conn: this.id, addr: this.clientAddress };
    logger[level]({ ...context, ...fields }, message);
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

  /**
   * The guard for frames that earn a reply (PING → PONG; DATA or CLOSE on a session not open → RESET):
   * one token bucket of `limits.reply_rate`. A flood gets ERROR CONTROL_FLOOD (PROTOCOL.md §9.6).
   */
  private withinReplyRate(frame: string): boolean {
    const rate = this.ctx.config.limits.replyRate;
    if ((this.replyBucket ??= new TokenBucket(rate, rate)).take()) return true;
    this.refuse(new LimitError(Code.CONTROL_FLOOD, `${frame}: more than ${rate} frames that earn a reply per second`, 'limits.reply_rate'));
    return false;
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
    const rate = this.ctx.config.limits.openResetRate;
    if ((this.bucket ??= new TokenBucket(rate, rate)).take()) return true;
    if (this.state === ConnState.OPEN) {
      this.ctx.metrics.protocolErrors.inc({ code: codeName(Code.RATE_LIMITED) });
      this.line('warn', { frame }, 'OPEN/RESET flood: sending GOAWAY');
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
const NO_METADATA: Readonly<Record<string, string>> = Object.freeze({});

function isEmpty(record: Record<string, string>): boolean {
  for (const _ in record) return false;
  return true;
}
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
HANDLERS[FrameType.REFRESH] = (c, _f, _s, p) => c.onRefresh(p);
for (const t of [FrameType.WELCOME, FrameType.OPEN_OK, FrameType.OPEN_FAIL, FrameType.GOAWAY, FrameType.AUTH_STATE]) {
  HANDLERS[t] = (c) => c.onServerOnlyFrame(t);
}
