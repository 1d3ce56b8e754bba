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
 * Backpressure goes both ways, so neither side's speed costs the proxy memory: the client's bytes get
 * their flow-control credit back only while the upstream socket is writable (`isWritable`/`onDrain`,
 * used by the session), and the upstream socket is paused while the client is not taking what it was
 * sent (`sink.canDeliver`), so a fast service meets the speed of a slow phone instead of filling the
 * connection's queue until it is closed SLOW_CONSUMER.
 *
 * Reads are sized to the traffic (see {@link readBuffer}): an upstream that sends little reads into one
 * buffer shared by every upstream of the process and its bytes are copied out (an idle session holds no
 * read buffer of its own), while one that fills its reads gets a buffer of its own per read, as large
 * as one DATA frame of its client may be (`max_payload`, up to {@link BULK_READ_MAX}), whose bytes go
 * to the client as they are, never copied: a bulk stream costs the proxy one read, one DATA frame and
 * one writev per `max_payload` bytes, with no copy in user space. No read is larger than `max_payload`,
 * so each is one DATA frame, and a client that announced small windows gets the stream intact too.
 * When a frame has left the process at once (`sink.released`: the kernel took it), its buffer serves
 * the next read: a stream that keeps up allocates no memory per read, which V8 would answer with major
 * GCs (measured: 39 % of the proxy's CPU while streaming). A streaming session holds at most that one
 * spare buffer (up to BULK_READ_MAX) besides what is queued; an idle one holds none.
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
  /** DATA payloads written to upstreams, and chunks read from them (`livemux_backend_messages_total`). */
  messagesToUpstream: number;
  messagesFromUpstream: number;
  /** Events for a session with no upstream (never opened here, or already ended). */
  staleEvents: number;
  /** Times an upstream was paused because its client was not taking DATA. */
  upstreamPauses: number;
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
  /** Reading stopped until the client takes DATA again. */
  paused: boolean;
  connectTimer: NodeJS.Timeout | null;
  readonly drainWaiters: DrainWaiters;
  /** Bytes received while connecting, kept here (not in the socket) so a failed connect can return them. */
  unsent: Buffer[];
  unsentBytes: number;
  /** The client ended its direction: FIN goes upstream once the unsent bytes are written. */
  halfClosed: boolean;
  /** The last read filled its buffer: the next one gets a buffer of its own, {@link bulkRead} bytes. */
  bulk: boolean;
  /** Bytes of a bulk read: the client's `max_payload`, up to BULK_READ_MAX. */
  readonly bulkRead: number;
  /** SHARED_READ, or its first `max_payload` bytes when the client's `max_payload` is smaller. */
  readonly sharedRead: Buffer;
  /** A bulk read buffer nothing references any more (see `sink.released`): the next bulk read reuses it. */
  spare: Buffer | null;
}

/** Bytes a connecting session may hold before it reports not writable (net.Socket's default mark). */
const CONNECTING_HIGH_WATER = 16 * 1024;

/**
 * The read buffer of every upstream that is not streaming: bytes read into it are copied out at once
 * (before the event loop reads any other socket), so one serves them all. 64 KiB, what Node reads by
 * default.
 */
const SHARED_READ = Buffer.allocUnsafeSlow(64 * 1024);
/**
 * The largest read buffer a streaming upstream gets (when its client's `max_payload` is larger): past
 * this, bigger reads save little, and a read that comes back short holds the whole buffer until its
 * bytes are written.
 */
export const BULK_READ_MAX = 256 * 1024;
/** A bulk read that brought less than this fraction of its buffer is copied out, freeing the buffer. */
const BULK_KEEP_FRACTION = 4;

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
    messagesToUpstream: 0,
    messagesFromUpstream: 0,
    staleEvents: 0,
    upstreamPauses: 0,
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

  messageCounts(): { out: number; in: number } {
    return { out: this.stats.messagesToUpstream, in: this.stats.messagesFromUpstream };
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
  open(session: number, info: SessionOpenInfo): void {
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
    // No read may bring more than one DATA frame of this client can take.
    const maxPayload = Math.max(1, info.maxPayload);
    const upstream: Upstream = {
      // Assigned right below: the read callbacks need the record, the record needs the socket.
      socket: null as unknown as net.Socket,
      connected: false,
      paused: false,
      connectTimer: null,
      drainWaiters: new DrainWaiters(this.log, 'tcp link'),
      unsent: [],
      unsentBytes: 0,
      halfClosed: false,
      bulk: false,
      bulkRead: Math.min(maxPayload, BULK_READ_MAX),
      sharedRead: maxPayload < SHARED_READ.length ? SHARED_READ.subarray(0, maxPayload) : SHARED_READ,
      spare: null,
    };
    const socket = net.connect({
      host: this.host,
      port: this.port,
      onread: { buffer: () => readBuffer(upstream), callback: (n: number, buf: Uint8Array) => this.onRead(session, upstream, n, buf as Buffer) },
    });
    (upstream as { socket: net.Socket }).socket = socket;
    this.upstreams.set(session, upstream);
    upstream.connectTimer = setTimeout(
      () => this.fail(session, upstream, `upstream connect timed out after ${this.opts.connectMs} ms`, true),
      this.opts.connectMs,
    );
    upstream.connectTimer.unref();
    socket.setNoDelay(true);
    socket.on('connect', () => this.onConnect(session, upstream));
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
    this.stats.messagesToUpstream++;
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
    // Nobody takes its bytes any more, but reading on lets the service's FIN through, and the close.
    upstream.socket.resume();
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

  /**
   * `n` bytes were read into `buf` (from {@link readBuffer}): they go to the client as one DATA frame,
   * copied out first when `buf` is shared or mostly empty. A read that filled its buffer makes the next
   * one a bulk read. Always true: pausing is {@link pause}'s.
   */
  private onRead(session: number, upstream: Upstream, n: number, buf: Buffer): true {
    const bulk = buf !== upstream.sharedRead;
    upstream.bulk = n === buf.length;
    // Bytes for a session already ended (read on after `closed` only to see the FIN) are not wanted.
    if (this.upstreams.get(session) !== upstream) return true;
    const chunk = !bulk || n * BULK_KEEP_FRACTION < buf.length ? Buffer.from(buf.subarray(0, n)) : n === buf.length ? buf : buf.subarray(0, n);
    this.stats.bytesFromUpstream += n;
    this.stats.messagesFromUpstream++;
    try {
      this.sink.deliver(session, chunk, Priority.HIGH);
      // Written through already (the common case of a client that keeps up): the buffer is reused, so a
      // stream does not allocate one per read, whose external memory V8 answers with major GCs.
      if (bulk && this.sink.released?.(session) === true) upstream.spare = buf;
      if (!upstream.paused && !this.sink.canDeliver(session)) this.pause(session, upstream);
    } catch (err) {
      this.log.error({ err, session }, 'tcp link: sink.deliver threw');
    }
    return true;
  }

  /** Stops reading `upstream` until its client takes DATA again (the kernel then slows the service). */
  private pause(session: number, upstream: Upstream): void {
    upstream.paused = true;
    upstream.socket.pause();
    this.stats.upstreamPauses++;
    this.sink.onDeliverable(session, () => {
      if (this.upstreams.get(session) !== upstream) return;
      upstream.paused = false;
      upstream.socket.resume();
    });
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

/** The buffer of `upstream`'s next read: its own while it streams (a spare one if any), the shared one otherwise. */
function readBuffer(upstream: Upstream): Buffer {
  const spare = upstream.spare;
  upstream.spare = null;
  if (!upstream.bulk) return upstream.sharedRead;
  return spare ?? Buffer.allocUnsafeSlow(upstream.bulkRead);
}
