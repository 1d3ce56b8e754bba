/**
 * TCP passthrough for `protocol: tcp` pools: each session gets its own upstream TCP connection to a
 * plain (legacy) service, and the session's DATA payloads are tunnelled as one byte stream each way.
 * Frame boundaries and priorities do not survive the tunnel; byte order does.
 *
 * Per session:
 *
 *   open() ──connect──▶ connected ──upstream FIN──▶ sink.close(NORMAL, 'upstream closed')
 *     │                    └──────upstream error──▶ sink.close(BACKEND_UNAVAILABLE) + onFailure
 *     └──refused / connect timeout──────────────────▶ sink.unreachable(unsent bytes) + onFailure
 *   closed() (the proxy ends the session) ──▶ FIN upstream after pending bytes; no sink call
 *   halfClosed() (the client sent CLOSE) ──▶ FIN upstream after pending bytes; the upstream's bytes
 *     keep flowing until its own FIN, which ends the session as above (TCP half-close, end to end)
 *
 * The link itself has no stream to lose: its state is READY from construction until `close()`, and
 * the endpoint's health comes from the EndpointHealthMonitor (TCP connect checks, reported failures).
 */
import net from 'node:net';
import pino from 'pino';
import { parseHostPort } from '../../config/load-yaml.js';
import { Code } from '../../protocol/codes.js';
import { Priority } from '../../protocol/constants.js';
import { LivemuxError } from '../../protocol/errors.js';
import { DrainWaiters } from '../../util/drain-waiters.js';
import { LinkState, type BackendCommandSink, type BackendLink } from './link.js';
import type { SessionOpenInfo } from '../../contract/backend-contract.js';

/** Options of a TcpPassthroughLink. */
export interface TcpPassthroughLinkOptions {
  /** Upstream connect timeout per session, in ms (the route's `timeouts.connect_ms`). */
  connectMs: number;
  logger?: pino.Logger;
  /** An upstream connect failed or timed out, or a connected upstream failed (wire to `health.reportFailure`). */
  onFailure?: (endpoint: string, reason: string) => void;
  /** An upstream connection was established (wire to `health.reportSuccess`, so failures count as consecutive). */
  onSuccess?: (endpoint: string) => void;
}

/** Counters for metrics; monotonically increasing for the link's lifetime. */
export interface TcpLinkStats {
  connectsStarted: number;
  connectFailures: number;
  /** Connected upstreams that failed (reset, error) before either side closed. */
  upstreamErrors: number;
  bytesToUpstream: number;
  bytesFromUpstream: number;
  /** Events for a session with no upstream (never opened here, or already ended). */
  staleEvents: number;
}

/**
 * After `closed()`, how long the upstream gets to close its side before the socket is destroyed: a
 * service that ignores our FIN must not hold a descriptor forever.
 */
const CLOSE_GRACE_MS = 5_000;
/** TCP keepalive on upstream sockets: notices a vanished service host on an idle session. */
const KEEPALIVE_MS = 30_000;

/** One session's upstream connection. */
interface Upstream {
  readonly socket: net.Socket;
  connected: boolean;
  connectTimer: NodeJS.Timeout | null;
  readonly drainWaiters: DrainWaiters;
  /** Bytes received while connecting, kept here (not in the socket) so a failed connect can return them. */
  unsent: Buffer[];
  unsentBytes: number;
  /** The client ended its direction: FIN goes upstream once the unsent bytes are written. */
  halfClosed: boolean;
}

/** Bytes a connecting session may hold before it reports not writable (net.Socket's default mark). */
const CONNECTING_HIGH_WATER = 16 * 1024;

/**
 * BackendLink for tcp pools. Guarantees:
 * - bytes of one session reach the upstream in `data` call order, and the upstream's bytes reach the
 *   sink in the order read, each chunk as one `deliver` at HIGH priority;
 * - every session opened here ends with exactly one of: `sink.unreachable` (connect failed),
 *   `sink.close` (upstream end or failure), the proxy's `closed`, or `sink.linkDown` from `close()`;
 * - upstream errors never throw; a sink or callback that throws is logged.
 * Payloads are referenced, not copied, until the socket has written them: callers must not mutate them.
 */
export class TcpPassthroughLink implements BackendLink {
  readonly endpoint: string;
  readonly stats: TcpLinkStats = {
    connectsStarted: 0,
    connectFailures: 0,
    upstreamErrors: 0,
    bytesToUpstream: 0,
    bytesFromUpstream: 0,
    staleEvents: 0,
  };

  private _state: LinkState = LinkState.READY;
  private readonly upstreams = new Map<number, Upstream>();
  /** Sockets the proxy closed, still flushing their last bytes; destroyed by `close()`. */
  private readonly closing = new Set<net.Socket>();
  private readonly host: string;
  private readonly port: number;
  private readonly log: pino.Logger;

  /** @param endpoint `host:port` of the plain TCP service. */
  constructor(
    endpoint: string,
    private readonly sink: BackendCommandSink,
    private readonly opts: TcpPassthroughLinkOptions,
  ) {
    const parsed = parseHostPort(endpoint);
    if (parsed === null) throw new LivemuxError('ERR_BAD_ADDRESS', `tcp link: expected host:port, got "${endpoint}"`);
    this.endpoint = endpoint;
    this.host = parsed.host;
    this.port = parsed.port;
    this.log = (opts.logger ?? pino({ level: 'silent' })).child({ component: 'tcp-link', endpoint });
  }

  get state(): LinkState {
    return this._state;
  }

  /** Per session: false while its socket's write buffer is over the high-water mark. */
  isWritable(session: number): boolean {
    const upstream = this.upstreams.get(session);
    if (upstream === undefined) return true;
    return upstream.connected ? !upstream.socket.writableNeedDrain : upstream.unsentBytes < CONNECTING_HIGH_WATER;
  }

  /** Calls `fn` once `session`'s socket drained, at once if it is writable; also when the socket ends. */
  onDrain(session: number, fn: () => void): void {
    if (this.isWritable(session)) fn();
    else this.upstreams.get(session)!.drainWaiters.add(fn);
  }

  /** Connects a new upstream for `session`. On a closed link the session is closed (asynchronously) instead. */
  open(session: number, _info: SessionOpenInfo): void {
    if (this._state === LinkState.CLOSED) {
      // Never leave a session waiting on a link that will not connect it; async like every other close.
      queueMicrotask(() => this.closeSession(session, Code.BACKEND_UNAVAILABLE, 'backend link closed'));
      return;
    }
    if (this.upstreams.has(session)) {
      this.log.warn({ session }, 'tcp link: session opened twice; second open ignored');
      return;
    }
    this.stats.connectsStarted++;
    const socket = net.connect({ host: this.host, port: this.port });
    const upstream: Upstream = {
      socket,
      connected: false,
      connectTimer: null,
      drainWaiters: new DrainWaiters(this.log, 'tcp link'),
      unsent: [],
      unsentBytes: 0,
      halfClosed: false,
    };
    this.upstreams.set(session, upstream);
    upstream.connectTimer = setTimeout(
      () => this.fail(session, upstream, `upstream connect timed out after ${this.opts.connectMs} ms`, true),
      this.opts.connectMs,
    );
    upstream.connectTimer.unref();
    socket.setNoDelay(true);
    socket.on('connect', () => this.onConnect(session, upstream));
    socket.on('data', (chunk: Buffer) => this.onUpstreamData(session, upstream, chunk));
    socket.on('drain', () => upstream.drainWaiters.release());
    socket.on('end', () => this.onUpstreamEnd(session, upstream));
    socket.on('error', (err: NodeJS.ErrnoException) => {
      const cause = err.code ?? err.message;
      const reason = upstream.connected ? `upstream failed (${cause})` : `upstream connect failed (${cause})`;
      this.fail(session, upstream, reason, !upstream.connected);
    });
    // Whatever ended the socket, nobody may keep waiting for it to drain.
    socket.on('close', () => upstream.drainWaiters.release());
  }

  /**
   * Writes `payload` to the session's upstream. Bytes arriving while connecting are kept in order and
   * written on connect, or handed back through `sink.unreachable` if the connect fails, so the proxy can
   * replay them elsewhere. Both buffers are bounded without a limit here: the session returns
   * flow-control credit to its client only while `isWritable` is true, so at most one session window
   * plus the high-water mark is ever queued per session.
   */
  data(session: number, payload: Buffer, _priority: Priority): void {
    const upstream = this.upstreams.get(session);
    if (upstream === undefined) {
      this.stats.staleEvents++;
      return;
    }
    this.stats.bytesToUpstream += payload.length;
    if (upstream.connected) {
      upstream.socket.write(payload);
      return;
    }
    upstream.unsent.push(payload);
    upstream.unsentBytes += payload.length;
  }

  /**
   * The proxy ended the session: the upstream gets FIN after any pending bytes (also bytes written
   * while connecting), and is destroyed if it has not closed within 5 s. No sink call follows.
   */
  closed(session: number, _code: number, _reason: string): void {
    const upstream = this.upstreams.get(session);
    if (upstream === undefined) {
      this.stats.staleEvents++;
      return;
    }
    this.forget(session, upstream);
    for (const chunk of upstream.unsent) upstream.socket.write(chunk);
    // Still connecting: bytes the client sent before closing are still owed to the service, so the
    // socket is ended (flushed after the connect), not destroyed. A connect that fails now has nobody
    // to tell; the grace timer bounds one that hangs.
    const socket = upstream.socket;
    this.closing.add(socket);
    const grace = setTimeout(() => socket.destroy(), CLOSE_GRACE_MS);
    grace.unref();
    socket.once('close', () => {
      clearTimeout(grace);
      this.closing.delete(socket);
    });
    socket.end();
  }

  /**
   * The client ended its direction: the upstream gets FIN after any pending bytes (at once, or right
   * after the connect), and its own bytes keep flowing to the session until it closes its side, which
   * ends the session (`sink.close` NORMAL).
   */
  halfClosed(session: number, _code: number, _reason: string): void {
    const upstream = this.upstreams.get(session);
    if (upstream === undefined) {
      this.stats.staleEvents++;
      return;
    }
    upstream.halfClosed = true;
    if (upstream.connected) upstream.socket.end();
  }

  /** Destroys every upstream and reports the link down once; state becomes CLOSED. Idempotent. */
  close(): void {
    if (this._state === LinkState.CLOSED) return;
    this._state = LinkState.CLOSED;
    const upstreams = [...this.upstreams];
    for (const [session, upstream] of upstreams) {
      this.forget(session, upstream);
      upstream.socket.destroy();
    }
    for (const socket of this.closing) socket.destroy();
    this.closing.clear();
    this.log.info({ sessions: upstreams.length }, 'tcp link closed');
    try {
      this.sink.linkDown(this, 'closed by the proxy');
    } catch (err) {
      this.log.error({ err }, 'tcp link: sink.linkDown threw');
    }
  }

  private onConnect(session: number, upstream: Upstream): void {
    if (this.upstreams.get(session) !== upstream) return;
    upstream.connected = true;
    this.clearConnectTimer(upstream);
    for (const chunk of upstream.unsent) upstream.socket.write(chunk);
    upstream.unsent = [];
    upstream.unsentBytes = 0;
    if (upstream.halfClosed) upstream.socket.end();
    if (!upstream.socket.writableNeedDrain) upstream.drainWaiters.release();
    upstream.socket.setKeepAlive(true, KEEPALIVE_MS);
    this.log.debug({ session }, 'tcp link: upstream connected');
    this.callback(this.opts.onSuccess, this.endpoint);
  }

  private onUpstreamData(session: number, upstream: Upstream, chunk: Buffer): void {
    if (this.upstreams.get(session) !== upstream) return;
    this.stats.bytesFromUpstream += chunk.length;
    try {
      this.sink.deliver(session, chunk, Priority.HIGH);
    } catch (err) {
      this.log.error({ err, session }, 'tcp link: sink.deliver threw');
    }
  }

  private onUpstreamEnd(session: number, upstream: Upstream): void {
    if (this.upstreams.get(session) !== upstream) return;
    this.forget(session, upstream);
    // allowHalfOpen is off: net.Socket ends our side too once pending writes are flushed.
    this.closeSession(session, Code.NORMAL, 'upstream closed');
  }

  /** Ends a session whose upstream failed; `connectPhase` counts it as a connect failure. */
  private fail(session: number, upstream: Upstream, reason: string, connectPhase: boolean): void {
    if (this.upstreams.get(session) !== upstream) return;
    this.forget(session, upstream);
    upstream.socket.destroy();
    if (connectPhase) this.stats.connectFailures++;
    else this.stats.upstreamErrors++;
    this.log.warn({ session, reason }, 'tcp link: upstream failed');
    if (connectPhase) {
      // The service never saw this session: the proxy may bind it elsewhere with its bytes intact.
      try {
        this.sink.unreachable(session, reason, upstream.unsent);
      } catch (err) {
        this.log.error({ err, session }, 'tcp link: sink.unreachable threw');
      }
    } else this.closeSession(session, Code.BACKEND_UNAVAILABLE, reason);
    this.callback(this.opts.onFailure, this.endpoint, reason);
  }

  /** Drops the session's bookkeeping; later socket events for it are ignored. */
  private forget(session: number, upstream: Upstream): void {
    this.upstreams.delete(session);
    this.clearConnectTimer(upstream);
    // Late errors (e.g. a reset while flushing after `closed`) must not become unhandled 'error's.
    upstream.socket.on('error', () => {});
    upstream.drainWaiters.release();
  }

  private clearConnectTimer(upstream: Upstream): void {
    if (upstream.connectTimer !== null) {
      clearTimeout(upstream.connectTimer);
      upstream.connectTimer = null;
    }
  }

  private closeSession(session: number, code: number, reason: string): void {
    try {
      this.sink.close(session, code, reason);
    } catch (err) {
      this.log.error({ err, session }, 'tcp link: sink.close threw');
    }
  }

  private callback<A extends unknown[]>(fn: ((...args: A) => void) | undefined, ...args: A): void {
    if (fn === undefined) return;
    try {
      fn(...args);
    } catch (err) {
      this.log.error({ err }, 'tcp link: callback threw');
    }
  }
}
