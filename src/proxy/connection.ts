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
  decodeHello,
  decodeOpen,
  decodeStatus,
  encodeGoAway,
  encodeStatus,
  encodeWelcome,
} from '../protocol/messages.js';
import { ProxySession, type SessionHost } from '../session/proxy-session.js';
import { SmallMap } from '../util/small-map.js';
import { NO_CLAIMS, forwardedClaims } from './auth.js';
import type { ProxyContext } from './context.js';
import { type DropReason, OutboundQueue } from './outbound-queue.js';
import { LowPriorityPacer } from './low-priority-pacer.js';
import { SessionAdmission } from './session-admission.js';
import { TokenBucket } from '../util/token-bucket.js';

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

/** The Connection a socket belongs to, for the socket listeners every connection shares. */
const OWNER = Symbol('livemux.connection');
type OwnedSocket = Socket & { [OWNER]: Connection };

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
  private claims: Readonly<Record<string, string>> = NO_CLAIMS;
  readonly out: OutboundQueue;
  /** Connection-level credit for server→client DATA, granted by the client. */
  sendCredit = new SendCredit(Defaults.connectionWindow);
  private readonly recvCredit: ReceiveCredit;
  private readonly sessions = new SmallMap<number, ProxySession>();
  /** Sessions waiting for connection credit; null while none does (an empty Set costs ~200 bytes). */
  private creditWaiters: Set<ProxySession> | null = null;
  /** Low-priority frame cap (see {@link lowPacer}); made when the first low message arrives. */
  private pacer: LowPriorityPacer | null = null;
  /** The client's HELLO `accepts_batch`, for the pacer. */
  private acceptsBatch = false;
  /** Created at WELCOME, once the user is known; OPEN is illegal before. */
  private admission!: SessionAdmission;
  private readonly decoder: FrameDecoder;
  private readonly bucket: TokenBucket;
  private pipelined: [FrameType, number, number, Buffer][] | null = null;
  private clientSessionWindow: number = Defaults.sessionWindow;
  private highestSessionId = 0;
  private lastInbound = Date.now();
  private lastActivity = Date.now();
  private missedPings = 0;
  private finishing = false;
  private handshakeTimer: NodeJS.Timeout | null;
  private heartbeatTimer: NodeJS.Timeout | null = null;
  /** See {@link log}. */
  private childLog: Logger | null = null;

  constructor(
    private readonly socket: Socket,
    private readonly ctx: ProxyContext,
    readonly clientAddress: string,
  ) {
    const { limits, timeouts } = ctx.config;
    this.recvCredit = new ReceiveCredit(limits.connectionWindow);
    this.bucket = new TokenBucket(limits.openResetRate, limits.openResetRate);
    this.decoder = new FrameDecoder(this, { maxPayload: limits.maxPayload });
    this.out = new OutboundQueue(
      socket,
      limits.outboundQueueBytes,
      this,
      ctx.metrics.frameStats,
    );
    this.handshakeTimer = setTimeout(
      () => this.fail(Code.HANDSHAKE_TIMEOUT, `handshake: no HELLO within ${timeouts.handshakeMs} ms`),
      timeouts.handshakeMs,
    );
    socket.setNoDelay(true);
    (socket as OwnedSocket)[OWNER] = this;
    socket.on('data', Connection.onSocketData);
    socket.on('error', Connection.onSocketError);
    socket.on('close', Connection.onSocketClose);
    ctx.metrics.connections.inc();
    ctx.metrics.connectionsAccepted.inc();
  }

  // The socket's listeners are shared by every connection (`this` is the socket, which knows its owner):
  // three closures and their contexts would cost each connection about 300 bytes.
  private static onSocketData(this: OwnedSocket, chunk: Buffer): void {
    this[OWNER].receive(chunk);
  }

  private static onSocketError(this: OwnedSocket, err: Error): void {
    this[OWNER].log.debug({ err }, 'socket error');
  }

  private static onSocketClose(this: OwnedSocket): void {
    this[OWNER].teardown(Code.NORMAL, 'socket closed');
  }

  /** @internal The outbound queue dropped DATA (OutboundHooks). */
  onDrop(reason: DropReason, priority: Priority, frames: number): void {
    this.drop(reason, priority, frames);
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
    this.lastInbound = Date.now();
    this.missedPings = 0;
    this.ctx.metrics.frameStats.countIn(type, HEADER_SIZE + payload.length);
    if (this.pipelined) {
      if (this.pipelined.length >= MAX_PIPELINED) {
        throw new ProtocolError(Code.RATE_LIMITED, `handshake: more than ${MAX_PIPELINED} frames before WELCOME`);
      }
      this.pipelined.push([type, flags, sessionId, payload]);
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
    const version = Math.max(...hello.versions.filter((v) => SUPPORTED_VERSIONS.includes(v)));
    if (!Number.isFinite(version)) {
      throw new ProtocolError(
        Code.UNSUPPORTED_VERSION,
        `HELLO: no supported version ([${hello.versions.join(',')}] vs [${SUPPORTED_VERSIONS.join(',')}])`,
      );
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

  private welcome(hello: Hello, version: number, userId: string, claims: Readonly<Record<string, string>>): void {
    if (this.state !== ConnState.AUTHENTICATING) return;
    this.transition(ConnState.OPEN);
    clearTimeout(this.handshakeTimer!);
    this.handshakeTimer = null;
    this.userId = userId;
    this.claims = claims;
    this.childLog = null; // made again with the user on its next use
    this.admission = new SessionAdmission(this.ctx, { userId, connectionId: this.id, clientAddress: this.clientAddress });
    this.sendCredit = new SendCredit(hello.connectionWindow || Defaults.connectionWindow);
    this.clientSessionWindow = hello.sessionWindow || Defaults.sessionWindow;
    const { limits, timeouts } = this.ctx.config;
    this.acceptsBatch = hello.acceptsBatch === true;
    this.sendControl(
      FrameType.WELCOME,
      encodeWelcome({
        version,
        connectionId: this.id,
        userId,
        heartbeatIntervalMs: timeouts.heartbeatIntervalMs,
        limits: {
          maxSessions: limits.maxSessions,
          maxPayload: limits.maxPayload,
          sessionWindow: limits.sessionWindow,
          connectionWindow: limits.connectionWindow,
          idleTimeoutMs: timeouts.idleMs,
          maxOpenRate: limits.openResetRate,
        },
      }),
    );
    this.heartbeatTimer = setInterval(() => this.heartbeat(), Math.min(timeouts.heartbeatIntervalMs, timeouts.idleMs || Infinity));
    this.ctx.logger.info({ conn: this.id, user: userId, client: hello.client?.sdk, addr: this.clientAddress }, 'connection authenticated');
    const queued = this.pipelined!;
    this.pipelined = null;
    try {
      for (const [type, flags, sessionId, payload] of queued) {
        if (this.closed) break; // a pipelined frame may have failed the connection
        HANDLERS[type]!(this, flags, sessionId, payload);
      }
    } catch (err) {
      if (err instanceof ProtocolError) this.fail(err.wireCode, err.message);
      else throw err;
    }
  }

  /** @internal */
  onOpen(sessionId: number, payload: Buffer): void {
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
      // Most OPENs carry no metadata: they share one empty object rather than keep one per session.
      metadata: isEmpty(open.metadata) ? NO_METADATA : open.metadata,
      clientAddress: this.clientAddress,
      connectionId: this.id,
      clientSessionId: sessionId,
      reattach: false,
      claims: this.claims,
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
    this.debug({ session: sessionId, business: open.business, endpoint: link.endpoint }, 'session opened');
    this.sendSessionFrame(FrameType.OPEN_OK, sessionId, EMPTY);
    this.lastActivity = Date.now();
  }

  /** @internal */
  onData(flags: number, sessionId: number, payload: Buffer): void {
    this.requireOpen('DATA');
    const n = payload.length;
    if (!this.recvCredit.receive(n)) {
      throw new ProtocolError(Code.FLOW_CONTROL_ERROR, `DATA: connection window exceeded (${n} bytes)`);
    }
    this.lastActivity = Date.now();
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
      const waiters = this.creditWaiters;
      this.creditWaiters = null;
      for (const s of waiters ?? []) s.pump();
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

  /**
   * The low-priority frame cap (limits.low_priority_rate, with the client's `accepts_batch`), or null
   * when uncapped. Made on first use: most connections never get a low message, and the pacer with its
   * token bucket and table costs about 350 bytes.
   */
  get lowPacer(): LowPriorityPacer | null {
    const { lowPriorityRate, lowPriorityMerge } = this.ctx.config.limits;
    if (this.pacer || lowPriorityRate === 0) return this.pacer;
    return (this.pacer = new LowPriorityPacer(lowPriorityRate, lowPriorityMerge, this.acceptsBatch, this.out, (reason) => this.drop(reason, Priority.LOW)));
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

  retired(session: ProxySession): void {
    this.debug({ session: session.id, business: session.business }, 'session closed');
    this.sessions.delete(session.id);
    this.admission.retired(session.business);
    this.pacer?.forget(session);
    this.creditWaiters?.delete(session);
    this.ctx.registry.remove(session);
    this.ctx.metrics.sessions.dec({ business: session.business });
    this.lastActivity = Date.now();
    if (this.state === ConnState.DRAINING && this.sessions.size === 0) this.finish();
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
    setTimeout(() => this.socket.destroy(), CLOSE_GRACE_MS).unref();
    this.teardown(code, message);
  }

  private finish(): void {
    if (this.finishing) return;
    this.finishing = true;
    this.out.finish();
    setTimeout(() => this.socket.destroy(), CLOSE_GRACE_MS).unref();
  }

  private teardown(code: number, reason: string): void {
    if (this.state === ConnState.CLOSED) return;
    this.transition(ConnState.CLOSED);
    if (this.handshakeTimer) clearTimeout(this.handshakeTimer);
    if (this.heartbeatTimer) clearInterval(this.heartbeatTimer);
    this.pacer?.close();
    this.pipelined = null;
    for (const s of [...this.sessions.values()]) s.retire(code, reason);
    this.ctx.metrics.connections.dec();
    this.ctx.metrics.connectionsClosed.inc({ code: codeName(code) });
    this.ctx.connectionClosed(this);
  }

  private heartbeat(): void {
    this.checkLiveness();
    // An idle connection gives back the buffers its traffic grew (once a PING just queued is out).
    this.out.compact();
    this.decoder.compact();
  }

  private checkLiveness(): void {
    const now = Date.now();
    const { heartbeatIntervalMs, heartbeatMisses, idleMs } = this.ctx.config.timeouts;
    if (idleMs > 0 && this.sessions.size === 0 && now - this.lastActivity >= idleMs) {
      this.goAway(Code.IDLE_TIMEOUT, `idle for ${idleMs} ms`);
      return;
    }
    if (now - this.lastInbound < heartbeatIntervalMs) return;
    if (this.missedPings >= heartbeatMisses) {
      this.fail(Code.HEARTBEAT_TIMEOUT, `heartbeat: ${this.missedPings} PINGs unanswered`);
      return;
    }
    this.missedPings++;
    this.lastInbound = now;
    const ping = Buffer.allocUnsafe(8);
    ping.writeDoubleBE(now);
    this.sendControl(FrameType.PING, ping);
  }

  /**
   * This connection's logger, `conn` (and `user` once known) stamped on every line. Made on first use
   * and kept: a pino child costs a connection about 650 bytes of heap (its object, prototype map and
   * bindings), and an idle connection logs nothing after its first line.
   */
  private get log(): Logger {
    return (this.childLog ??= this.ctx.logger.child(this.userId ? { conn: this.id, user: this.userId } : { conn: this.id }));
  }

  /** A debug line, without making the child logger when debug is off (per session opened and closed). */
  private debug(fields: object, message: string): void {
    if (this.ctx.logger.isLevelEnabled('debug')) this.log.debug(fields, message);
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
HANDLERS[FrameType.ERROR] = (c, _f, _s, p) => c.onPeerError(p);
for (const t of [FrameType.WELCOME, FrameType.OPEN_OK, FrameType.OPEN_FAIL, FrameType.GOAWAY]) {
  HANDLERS[t] = (c) => c.onServerOnlyFrame(t);
}
