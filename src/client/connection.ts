import { randomBytes } from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';
import { Code, codeName } from '../protocol/codes.js';
import { Defaults, FRAME_TYPE_NAMES, FrameType, MAX_SESSION_ID, SUPPORTED_VERSIONS } from '../protocol/constants.js';
import { FrameDecoder, type DecoderLimits } from '../protocol/decoder.js';
import { encodeFrame, encodeWindowUpdate } from '../protocol/encoder.js';
import { LivemuxError, ProtocolError } from '../protocol/errors.js';
import { ReceiveCredit } from '../protocol/flow-control.js';
import {
  decodeGoAway,
  decodeStatus,
  decodeWelcome,
  encodeHello,
  encodeOpen,
  encodeStatus,
  type GoAway,
  type Hello,
  type Limits,
  type Open,
  type Status,
  type Welcome,
} from '../protocol/messages.js';
import { ConnectionLostError, OpenFailedError, ServerError } from './errors.js';
import { Heartbeat } from './heartbeat.js';
import { OpenResetPacer } from './open-reset-pacer.js';
import type { Address, ClientLogger } from './options.js';
import { SendWindow } from './send-window.js';
import { CONNECTION_TRANSITIONS, ConnectionState, transition } from './states.js';

/** Everything needed to dial one connection. */
export interface DialParams {
  readonly address: Address;
  readonly tls: false | tls.ConnectionOptions;
  readonly hello: Hello;
  /** Overrides the server's heartbeat interval from WELCOME. */
  readonly heartbeatIntervalMs: number | undefined;
  readonly logger: ClientLogger;
}

/** What a connection reports to its owner. */
export interface ConnectionListener {
  /** GOAWAY arrived; the connection is now draining. */
  goAway(conn: ClientConnection, goAway: GoAway): void;
  /** A draining connection has no session left. */
  drained(conn: ClientConnection): void;
  /**
   * The connection is closed, for `cause`. Called once, before the sessions bound to it are told, so
   * the owner has decided whether the client reconnects by the time sessions ask.
   */
  ended(conn: ClientConnection, cause: LivemuxError): void;
}

/** The session frames a connection routes to a session bound to it. */
export interface SessionEndpoint {
  openOk(): void;
  openFail(status: Status): void;
  /** `payload` is a view into a socket chunk: copy it to keep it. Connection credit is already counted. */
  data(payload: Buffer, flags: number): void;
  close(status: Status): void;
  reset(status: Status): void;
  /** Session credit was granted (already added to the binding's window). */
  windowUpdate(): void;
  /** The connection ended; the binding is already retired. */
  connectionEnded(cause: LivemuxError): void;
}

/**
 * One session id on one connection: its windows and its frame writers. A session gets a new binding
 * (new id, new windows) each time it is (re)opened.
 */
export class SessionBinding {
  /** Credit for client→server DATA on this session. */
  readonly sendWindow: SendWindow;
  /** Credit granted to the server for server→client DATA on this session. */
  readonly receiveCredit: ReceiveCredit;
  /** Set once the id is retired: both CLOSEs exchanged, RESET, OPEN_FAIL, or the connection ended. */
  private retiredFlag = false;

  constructor(
    readonly connection: ClientConnection,
    readonly id: number,
    readonly endpoint: SessionEndpoint,
    limits: Limits,
    receiveWindow: number,
  ) {
    this.sendWindow = new SendWindow(limits.sessionWindow, `session ${id}`);
    this.receiveCredit = new ReceiveCredit(receiveWindow);
  }

  /** Writes a DATA frame that was encoded ahead (see ClientSession): only the session id is patched in. */
  writeData(frame: Buffer): void {
    frame.writeUInt32BE(this.id, 4);
    this.connection.write(frame);
  }

  /** Sends CLOSE; the id stays bound until the peer's CLOSE (or the one answered) retires it. */
  writeClose(code: number, reason: string): void {
    this.connection.write(encodeFrame(FrameType.CLOSE, 0, this.id, encodeStatus({ code, reason })));
  }

  /** Sends RESET (paced under max_open_rate) and retires the id at once. */
  reset(code: number, reason: string): void {
    if (this.retiredFlag) return;
    this.connection.writePaced(encodeFrame(FrameType.RESET, 0, this.id, encodeStatus({ code, reason })));
    this.retire();
  }

  /** Frees the id on its connection; later frames for it are ignored. Idempotent. */
  retire(): void {
    if (this.retiredFlag) return;
    this.retiredFlag = true;
    this.connection.unbind(this.id);
  }

  /**
   * `bytes` of received DATA were consumed by the application: returns credit to the server, batched
   * (ReceiveCredit). Session credit only while the id is live; connection credit while the connection is.
   */
  consumed(bytes: number): void {
    if (!this.retiredFlag) {
      const increment = this.receiveCredit.release(bytes);
      if (increment > 0) this.connection.write(encodeWindowUpdate(this.id, increment));
    }
    this.connection.consumed(bytes);
  }
}

type FrameHandler = (sessionId: number, flags: number, payload: Buffer) => void;

/** One entry of the dispatch table: where a frame type is legal, and what handles it. */
interface Route {
  readonly legalIn: readonly ConnectionState[];
  readonly handle: FrameHandler;
}

const NEVER: readonly ConnectionState[] = [];
const HANDSHAKE: readonly ConnectionState[] = [ConnectionState.HANDSHAKING];
const ESTABLISHED: readonly ConnectionState[] = [ConnectionState.OPEN, ConnectionState.DRAINING];
const ALWAYS: readonly ConnectionState[] = [...HANDSHAKE, ...ESTABLISHED];

/** PING payload size the SDK sends (as the server does). */
const PING_SIZE = 8;
/** How long a closing connection may take to flush its last frames before the socket is destroyed. */
const FLUSH_TIMEOUT_MS = 2000;

/** State established by WELCOME. */
interface Established {
  readonly welcome: Welcome;
  readonly sendWindow: SendWindow;
  readonly pacer: OpenResetPacer;
  readonly heartbeat: Heartbeat;
}

/**
 * One TCP/TLS connection to a livemux proxy, client side: handshake, frame dispatch, heartbeats,
 * connection-level flow control and the session ids bound to it. Owned by {@link LivemuxClient}; not
 * part of the public API.
 *
 * Guarantees:
 * - Every incoming frame goes through one dispatch table indexed by type; a frame not legal in the
 *   current state, or a decoder error, is answered with ERROR and the connection is closed.
 * - `ready` settles exactly once: WELCOME, or the first failure. `listener.ended` is called exactly once.
 * - Nothing is written after the connection is closed; frames already written are flushed first.
 */
export class ClientConnection {
  /** Resolves with WELCOME (limits filled with defaults); rejects with why the handshake failed. */
  readonly ready: Promise<Welcome>;
  /** Resolves when the socket is fully closed. */
  readonly closed: Promise<void>;

  private stateValue: ConnectionState = ConnectionState.HANDSHAKING;
  private readonly socket: net.Socket;
  private readonly decoderLimits: DecoderLimits = { maxPayload: Defaults.maxPayload };
  private readonly decoder: FrameDecoder;
  private readonly receiveCredit: ReceiveCredit;
  private readonly sessionReceiveWindow: number;
  private readonly bindings = new Map<number, SessionBinding>();
  private lastSessionId = 0;
  private established: Established | null = null;
  private goAwayReceived: GoAway | null = null;
  private socketError: Error | null = null;
  private readonly handshakeTimer: NodeJS.Timeout;
  private readonly paced: { frame: Buffer; due: number }[] = [];
  private pacedTimer: NodeJS.Timeout | null = null;
  private settleReady!: { resolve: (w: Welcome) => void; reject: (e: LivemuxError) => void };
  private readonly routes: Readonly<Record<FrameType, Route>>;

  constructor(
    private readonly params: DialParams,
    private readonly listener: ConnectionListener,
  ) {
    this.routes = {
      // Client-only frames: never legal from a server, so their handlers are never reached.
      [FrameType.HELLO]: { legalIn: NEVER, handle: () => {} },
      [FrameType.WELCOME]: { legalIn: HANDSHAKE, handle: (_id, _flags, p) => this.onWelcome(p) },
      [FrameType.OPEN]: { legalIn: NEVER, handle: () => {} },
      [FrameType.OPEN_OK]: { legalIn: ESTABLISHED, handle: (id) => this.bindings.get(id)?.endpoint.openOk() },
      [FrameType.OPEN_FAIL]: {
        legalIn: ESTABLISHED,
        handle: (id, _flags, p) => this.bindings.get(id)?.endpoint.openFail(decodeStatus('OPEN_FAIL', p)),
      },
      [FrameType.DATA]: { legalIn: ESTABLISHED, handle: (id, flags, p) => this.onData(id, flags, p) },
      [FrameType.CLOSE]: { legalIn: ESTABLISHED, handle: (id, _flags, p) => this.onClose(id, p) },
      [FrameType.RESET]: {
        legalIn: ESTABLISHED,
        handle: (id, _flags, p) => this.bindings.get(id)?.endpoint.reset(decodeStatus('RESET', p)),
      },
      [FrameType.PING]: { legalIn: ESTABLISHED, handle: (_id, _flags, p) => this.write(encodeFrame(FrameType.PONG, 0, 0, p)) },
      // Any frame proves liveness (recorded for every frame), so a PONG needs nothing more.
      [FrameType.PONG]: { legalIn: ESTABLISHED, handle: () => {} },
      [FrameType.GOAWAY]: { legalIn: ESTABLISHED, handle: (_id, _flags, p) => this.onGoAway(p) },
      [FrameType.WINDOW_UPDATE]: { legalIn: ESTABLISHED, handle: (id, _flags, p) => this.onWindowUpdate(id, p) },
      [FrameType.ERROR]: { legalIn: ALWAYS, handle: (_id, _flags, p) => this.onError(p) },
    };

    const hello = params.hello;
    this.receiveCredit = new ReceiveCredit(hello.connectionWindow || Defaults.connectionWindow);
    this.sessionReceiveWindow = hello.sessionWindow || Defaults.sessionWindow;
    this.decoder = new FrameDecoder({ onFrame: (type, flags, id, payload) => this.onFrame(type, flags, id, payload) }, this.decoderLimits);

    const { host, port } = params.address;
    this.socket = params.tls ? tls.connect(tlsOptions(params.address, params.tls)) : net.connect({ host, port });
    this.socket.setNoDelay(true);
    this.ready = new Promise((resolve, reject) => (this.settleReady = { resolve, reject }));
    // connect() and the reconnect loop observe `ready`; this guard only keeps a failure nobody awaits
    // (the connection was dropped in favour of another) from becoming an unhandled rejection.
    this.ready.catch(() => {});
    this.closed = new Promise((resolve) => this.socket.once('close', () => resolve()));
    this.socket.on('data', (chunk: Buffer) => this.onChunk(chunk));
    this.socket.on('error', (err) => (this.socketError = err));
    this.socket.once('close', () => this.shutdown(this.lostCause()));
    this.handshakeTimer = setTimeout(
      () => this.shutdown(new ConnectionLostError(`no WELCOME within ${Defaults.handshakeTimeoutMs} ms`)),
      Defaults.handshakeTimeoutMs,
    ).unref();
    // Written before the socket connects: Node queues it, so HELLO is the first thing on the wire.
    this.write(encodeFrame(FrameType.HELLO, 0, 0, encodeHello(hello)));
  }

  /** WELCOME of this connection. Only valid once `ready` resolved. */
  get welcome(): Welcome {
    return this.requireEstablished().welcome;
  }

  /** Credit for client→server DATA on the whole connection. Only valid once `ready` resolved. */
  get sendWindow(): SendWindow {
    return this.requireEstablished().sendWindow;
  }

  /** The GOAWAY received on this connection, if any. */
  get goAway(): GoAway | null {
    return this.goAwayReceived;
  }

  /** True while new sessions may be opened here. */
  get acceptsSessions(): boolean {
    return this.stateValue === ConnectionState.OPEN;
  }

  /**
   * Binds `endpoint` to the next session id and sends OPEN (paced under max_open_rate).
   * @throws OpenFailedError TOO_MANY_SESSIONS when WELCOME's max_sessions are already bound, without
   *   asking the server.
   */
  open(endpoint: SessionEndpoint, body: Open): SessionBinding {
    const { welcome } = this.requireEstablished();
    if (this.stateValue !== ConnectionState.OPEN) {
      throw new LivemuxError('ERR_CONNECTION_STATE', `open: connection is ${this.stateValue}, not open`);
    }
    if (this.bindings.size >= welcome.limits.maxSessions) {
      throw new OpenFailedError(body.business, Code.TOO_MANY_SESSIONS, `client: ${this.bindings.size} of ${welcome.limits.maxSessions} sessions already open`);
    }
    this.lastSessionId += 1;
    const binding = new SessionBinding(this, this.lastSessionId, endpoint, welcome.limits, this.sessionReceiveWindow);
    this.bindings.set(binding.id, binding);
    this.writePaced(encodeFrame(FrameType.OPEN, 0, binding.id, encodeOpen(body)));
    if (binding.id === MAX_SESSION_ID) {
      // The last id (PROTOCOL.md §5.2): this connection drains as after a GOAWAY, which the server sends too.
      this.drain({ lastSessionId: MAX_SESSION_ID, code: Code.SESSION_IDS_EXHAUSTED, reason: 'client: session ids exhausted' });
    }
    return binding;
  }

  /** Closes the connection without an ERROR frame (written frames are flushed first). */
  close(cause: LivemuxError): void {
    this.shutdown(cause);
  }

  /** Writes a frame now; a no-op once closed. */
  write(frame: Buffer): void {
    if (this.stateValue !== ConnectionState.CLOSED) this.socket.write(frame);
  }

  /** Writes an OPEN or RESET once the pacer allows it; paced frames keep their order. */
  writePaced(frame: Buffer): void {
    const now = performance.now();
    const delay = this.requireEstablished().pacer.reserve(now);
    if (delay === 0 && this.paced.length === 0) {
      this.write(frame);
      return;
    }
    this.paced.push({ frame, due: now + delay });
    if (!this.pacedTimer) this.armPacedTimer();
  }

  /** Called by a binding when its id is retired. */
  unbind(id: number): void {
    this.bindings.delete(id);
    if (this.bindings.size === 0 && this.stateValue === ConnectionState.DRAINING) this.listener.drained(this);
  }

  /** Returns connection credit for consumed bytes (batched). */
  consumed(bytes: number): void {
    if (this.stateValue === ConnectionState.CLOSED) return;
    const increment = this.receiveCredit.release(bytes);
    if (increment > 0) this.write(encodeWindowUpdate(0, increment));
  }

  private onChunk(chunk: Buffer): void {
    try {
      this.decoder.push(chunk);
    } catch (err) {
      if (!(err instanceof ProtocolError)) throw err;
      this.fail(err);
    }
  }

  private onFrame(type: FrameType, flags: number, sessionId: number, payload: Buffer): void {
    if (this.stateValue === ConnectionState.CLOSED) return;
    this.established?.heartbeat.received();
    const route = this.routes[type];
    if (!route.legalIn.includes(this.stateValue)) {
      throw new ProtocolError(Code.UNEXPECTED_FRAME, `${FRAME_TYPE_NAMES[type]}: not expected from a server while ${this.stateValue}`);
    }
    route.handle(sessionId, flags, payload);
  }

  private onWelcome(payload: Buffer): void {
    const raw = decodeWelcome(payload);
    if (!SUPPORTED_VERSIONS.includes(raw.version)) {
      throw new ProtocolError(Code.UNSUPPORTED_VERSION, `WELCOME: unsupported protocol version (${raw.version} vs ${SUPPORTED_VERSIONS.join(',')})`);
    }
    const welcome = withDefaults(raw);
    this.decoderLimits.maxPayload = welcome.limits.maxPayload;
    const intervalMs = this.params.heartbeatIntervalMs ?? welcome.heartbeatIntervalMs;
    const heartbeat = new Heartbeat(intervalMs, {
      ping: () => this.write(encodeFrame(FrameType.PING, 0, 0, randomBytes(PING_SIZE))),
      dead: (silentMs) => this.fail(new ProtocolError(Code.HEARTBEAT_TIMEOUT, `heartbeat: nothing received for ${Math.round(silentMs)} ms (limit ${2 * intervalMs} ms)`)),
    });
    this.established = {
      welcome,
      sendWindow: new SendWindow(welcome.limits.connectionWindow, 'connection'),
      pacer: new OpenResetPacer(welcome.limits.maxOpenRate),
      heartbeat,
    };
    this.stateValue = transition('connection', CONNECTION_TRANSITIONS, this.stateValue, ConnectionState.OPEN);
    clearTimeout(this.handshakeTimer);
    heartbeat.start();
    this.params.logger.debug({ connectionId: welcome.connectionId, userId: welcome.userId }, 'livemux client: connected');
    this.settleReady.resolve(welcome);
  }

  private onData(sessionId: number, flags: number, payload: Buffer): void {
    if (!this.receiveCredit.receive(payload.length)) {
      throw new ProtocolError(Code.FLOW_CONTROL_ERROR, `DATA: session ${sessionId} overran the connection window (${payload.length} bytes)`);
    }
    const binding = this.bindings.get(sessionId);
    if (binding) {
      binding.endpoint.data(payload, flags);
      return;
    }
    // Not delivered, so consumed now: the server must get this credit back (PROTOCOL.md §7).
    this.consumed(payload.length);
    this.unknownSession(sessionId);
  }

  private onClose(sessionId: number, payload: Buffer): void {
    const status = decodeStatus('CLOSE', payload);
    const binding = this.bindings.get(sessionId);
    if (binding) binding.endpoint.close(status);
    else this.unknownSession(sessionId);
  }

  /**
   * DATA or CLOSE for an id with no binding. An id this connection already retired is normal (frames in
   * flight when the client reset it) and is ignored: answering would spend the OPEN/RESET rate budget. An
   * id never used is answered with RESET UNKNOWN_SESSION, as the protocol asks.
   */
  private unknownSession(sessionId: number): void {
    if (sessionId <= this.lastSessionId) return;
    this.writePaced(encodeFrame(FrameType.RESET, 0, sessionId, encodeStatus({ code: Code.UNKNOWN_SESSION, reason: 'client: session was never opened' })));
  }

  private onWindowUpdate(sessionId: number, payload: Buffer): void {
    const increment = payload.readUInt32BE(0);
    if (sessionId === 0) {
      this.sendWindow.grant(increment);
      return;
    }
    // WINDOW_UPDATE for an unknown session is ignored (PROTOCOL.md §7): it may chase a retired id.
    const binding = this.bindings.get(sessionId);
    if (!binding) return;
    binding.sendWindow.grant(increment);
    binding.endpoint.windowUpdate();
  }

  private onGoAway(payload: Buffer): void {
    const goAway = decodeGoAway(payload);
    this.params.logger.info({ code: codeName(goAway.code), reason: goAway.reason, reconnectAddress: goAway.reconnectAddress }, 'livemux client: GOAWAY');
    // Already draining because this side used the last session id: the server's GOAWAY confirms it.
    if (this.goAwayReceived?.code === Code.SESSION_IDS_EXHAUSTED && goAway.code === Code.SESSION_IDS_EXHAUSTED) {
      this.goAwayReceived = goAway;
      return;
    }
    this.drain(goAway);
  }

  /** No new session goes here any more: the owner is told, and the connection ends with its last session. */
  private drain(goAway: GoAway): void {
    this.goAwayReceived = goAway;
    if (this.stateValue === ConnectionState.OPEN) {
      this.stateValue = transition('connection', CONNECTION_TRANSITIONS, this.stateValue, ConnectionState.DRAINING);
    }
    this.listener.goAway(this, goAway);
    if (this.bindings.size === 0 && this.stateValue === ConnectionState.DRAINING) this.listener.drained(this);
  }

  private onError(payload: Buffer): void {
    const status = decodeStatus('ERROR', payload);
    this.shutdown(new ServerError('ERROR', status.code, status.reason, status.retryAfterMs ?? 0));
  }

  /** Answers a protocol violation with ERROR, then closes. */
  private fail(err: ProtocolError): void {
    this.params.logger.warn({ code: err.code, message: err.message }, 'livemux client: protocol error, closing');
    this.write(encodeFrame(FrameType.ERROR, 0, 0, encodeStatus({ code: err.wireCode, reason: err.message })));
    this.shutdown(err);
  }

  /** Why the socket closed when nobody closed it on purpose. */
  private lostCause(): LivemuxError {
    if (this.goAwayReceived) {
      return new ServerError('GOAWAY', this.goAwayReceived.code, this.goAwayReceived.reason);
    }
    const detail = this.socketError ? this.socketError.message : 'closed by the peer';
    return new ConnectionLostError(detail, { cause: this.socketError ?? undefined });
  }

  private shutdown(cause: LivemuxError): void {
    if (this.stateValue === ConnectionState.CLOSED) return;
    const wasHandshaking = this.stateValue === ConnectionState.HANDSHAKING;
    this.stateValue = transition('connection', CONNECTION_TRANSITIONS, this.stateValue, ConnectionState.CLOSED);
    clearTimeout(this.handshakeTimer);
    this.established?.heartbeat.stop();
    if (this.pacedTimer) clearTimeout(this.pacedTimer);
    this.paced.length = 0;
    if (wasHandshaking) {
      // Nothing worth flushing yet, and a dial still in TCP connect would hold end() until it times out.
      this.socket.destroy();
    } else {
      // Flush what was written (a CLOSE, an ERROR) before closing, but never wait on a peer that stopped reading.
      this.socket.destroySoon();
      setTimeout(() => this.socket.destroy(), FLUSH_TIMEOUT_MS).unref();
    }
    if (wasHandshaking) this.settleReady.reject(cause);
    this.params.logger.debug({ cause: cause.message }, 'livemux client: connection closed');
    this.listener.ended(this, cause);
    const bindings = [...this.bindings.values()];
    this.bindings.clear();
    for (const binding of bindings) {
      binding.retire();
      binding.endpoint.connectionEnded(cause);
    }
  }

  private armPacedTimer(): void {
    const head = this.paced[0];
    if (!head) {
      this.pacedTimer = null;
      return;
    }
    this.pacedTimer = setTimeout(() => {
      const now = performance.now();
      while (this.paced[0] && this.paced[0].due <= now) this.write(this.paced.shift()!.frame);
      this.armPacedTimer();
    }, Math.max(1, Math.ceil(head.due - performance.now()))).unref();
  }

  private requireEstablished(): Established {
    if (!this.established) throw new LivemuxError('ERR_CONNECTION_STATE', 'connection: used before WELCOME');
    return this.established;
  }
}

/** SNI carries the host name unless the caller chose one (an IP address is not a valid SNI name). */
function tlsOptions({ host, port }: Address, options: tls.ConnectionOptions): tls.ConnectionOptions {
  const servername = options.servername ?? (net.isIP(host) === 0 ? host : undefined);
  return { ...options, host, port, ...(servername === undefined ? {} : { servername }) };
}

/** Proto3 sends 0 for an unset field; the protocol's meaning of 0 there is "the default". */
function withDefaults(w: Welcome): Welcome {
  const limits: Partial<Limits> = w.limits ?? {};
  return {
    ...w,
    heartbeatIntervalMs: w.heartbeatIntervalMs || Defaults.heartbeatIntervalMs,
    limits: {
      maxSessions: limits.maxSessions || Defaults.maxSessions,
      maxPayload: limits.maxPayload || Defaults.maxPayload,
      sessionWindow: limits.sessionWindow || Defaults.sessionWindow,
      connectionWindow: limits.connectionWindow || Defaults.connectionWindow,
      idleTimeoutMs: limits.idleTimeoutMs ?? 0,
      maxOpenRate: limits.maxOpenRate || Defaults.openResetRate,
    },
  };
}
