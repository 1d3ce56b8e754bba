import { readFileSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import type { Logger } from 'pino';
import type { ProxyConfig } from '../config/proxy-config.js';
import { createLogger } from '../observability/logger.js';
import { createMetrics, type Metrics } from '../observability/metrics.js';
import { startAdminServer } from '../observability/admin-server.js';
import { Code, codeLabel } from '../protocol/codes.js';
import { FrameType } from '../protocol/constants.js';
import { encodeFrame } from '../protocol/encoder.js';
import { LimitError, ProtocolError } from '../protocol/errors.js';
import { encodeStatus } from '../protocol/messages.js';
import { EventLoopLag } from '../observability/event-loop-lag.js';
import { DispatchRegistration } from '../dispatch/registration.js';
import { SessionRegistry } from '../session/registry.js';
import { createJwtVerifier, type TokenVerifier } from './auth.js';
import { EndpointHealthMonitor } from './upstream/endpoint-health.js';
import { BackendLinks } from './upstream/backend-links.js';
import { Connection } from './connection.js';
import { ConnectionGate } from './connection-gate.js';
import type { ProxyContext } from './context.js';
import { OverloadMonitor, OverloadState, type OverloadReading } from './overload.js';
import { createUserLimits, type UserLimiter } from './user-limits.js';
import { ProxyHeaderParser } from './proxy-protocol.js';
import { RouteReloader } from './route-reloader.js';
import { SessionMover } from './session-mover.js';
import { nodeInternals } from './socket-writer.js';
import { HeapCompactor } from './heap-compactor.js';
import { TimerWheel, WheelEntry } from './timer-wheel.js';

/** How long a refused connection's socket may take to deliver its ERROR. */
const REFUSED_GRACE_MS = 2_000;
/** Connections holding and sending less than this are never shed. */
const SHED_FLOOR_BYTES = 64 * 1024;
const OVERLOAD_STATE_NAMES = ['normal', 'refusing', 'shedding'] as const;

export interface ProxyServerOptions {
  /** Replaces the default HS256 JWT verifier (e.g. for an identity service). */
  verifier?: TokenVerifier;
  logger?: Logger;
  /**
   * Bind no port: connections arrive through {@link ProxyServer.adopt}, handed over by the primary of
   * `livemux start --workers` (src/proxy/workers), which owns the listener.
   */
  handoff?: boolean;
}

/** `{ proxy }`: livemux.yaml as loaded, its secrets (the JWT secret, a password in a Redis URL) redacted. */
export function redactedConfig(config: ProxyConfig): { proxy: object } {
  const dispatch = config.dispatch && { ...config.dispatch, redisUrl: config.dispatch.redisUrl.replace(/\/\/([^@/]*)@/, '//[redacted]@') };
  return { proxy: { ...config, auth: { ...config.auth, jwtSecret: '[redacted]' }, dispatch } };
}

/** Host and port a listener is bound to. */
export interface BoundAddress {
  host: string;
  port: number;
}

/**
 * The livemux proxy: accepts client connections (TCP or TLS, optionally behind a PROXY protocol
 * header), keeps one stream per backend endpoint, serves the admin endpoints, and drains gracefully.
 */
export class ProxyServer {
  private readonly connections = new Set<Connection>();
  private readonly listener: net.Server | null;
  private readonly links: BackendLinks;
  private readonly ctx: ProxyContext;
  private readonly tlsContext: tls.SecureContext | null;
  private readonly routes: RouteReloader;
  private readonly health: EndpointHealthMonitor;
  private readonly gate: ConnectionGate;
  private readonly users: UserLimiter;
  private readonly overload: OverloadMonitor;
  /** Bytes each connection had received at the previous shedding pass (who sends most, lately). */
  private inboundAtLastShed = new WeakMap<Connection, number>();
  private admin: { port: number; close(): Promise<void> } | null = null;
  private registration: DispatchRegistration | null = null;
  private lag: EventLoopLag | null = null;
  /** Connections handed to this server since it started (kept or not): the compactor's wave detector reads it. */
  private arrivals = 0;
  private compactor: HeapCompactor | null = null;
  private draining = false;
  private closedWaiters: (() => void)[] = [];

  private constructor(
    readonly config: ProxyConfig,
    readonly metrics: Metrics,
    readonly logger: Logger,
    verifier: TokenVerifier,
    handoff: boolean,
  ) {
    const registry = new SessionRegistry(metrics.fanOutDelay);
    this.health = new EndpointHealthMonitor({ logger, metrics });
    // The mover is created after the links it uses; the callback only runs once both exist.
    let mover: SessionMover | null = null;
    this.links = new BackendLinks(registry, this.health, {
      proxyId: config.proxyId,
      logger,
      metrics,
      onLinkReady: (endpoint) => mover?.endpointRecovered(endpoint),
    });
    mover = new SessionMover({ routes: () => this.routes.table, links: this.links, registry, metrics, logger });
    registry.setRelocator(mover);
    this.routes = new RouteReloader(config.routesFile, {
      logger,
      metrics,
      onSwap: (table) => {
        // New links first so sessions can move onto them, removed ones only once nobody is bound.
        this.links.add(table);
        mover.apply(table);
        this.links.prune(table);
      },
    });
    this.links.add(this.routes.table);
    // A breaker opening (or failing active checks) moves sessions off an endpoint whose stream is up.
    this.health.onChange((endpoint, healthy) => {
      const link = this.links.get(endpoint);
      if (healthy) mover.endpointRecovered(endpoint);
      else if (link) mover.relocate(registry.sessionsOn(link), endpoint, 'marked unhealthy');
    });
    metrics.setBackendMessageSource(() => this.links.messageCounts());
    this.gate = new ConnectionGate(config.connections);
    this.users = createUserLimits(config.users, logger);
    this.overload = new OverloadMonitor(config.overload, {
      changed: (state, reading) => this.overloadChanged(state, reading),
      shed: () => this.shed(),
      checked: () => {
        metrics.handshakes.set(this.gate.handshakes);
        metrics.handshakeBytes.set(this.gate.handshakeBytesHeld);
      },
    });
    this.ctx = {
      config,
      verifier,
      routes: () => this.routes.table,
      links: this.links,
      registry,
      metrics,
      logger,
      gate: this.gate,
      users: this.users,
      timers: new TimerWheel(),
      connectionClosed: (conn) => this.forget(conn as Connection),
    };
    this.tlsContext = config.tls
      ? tls.createSecureContext({ cert: readFileSync(config.tls.certFile), key: readFileSync(config.tls.keyFile) })
      : null;
    this.listener = handoff ? null : net.createServer((socket) => this.adopt(socket));
  }

  /** Loads the routes, opens backend links and starts listening (client port and admin port). */
  static async start(config: ProxyConfig, options: ProxyServerOptions = {}): Promise<ProxyServer> {
    const logger = options.logger ?? createLogger({ level: config.logLevel, proxyId: config.proxyId });
    const verifier = options.verifier ?? createJwtVerifier({ secret: config.auth.jwtSecret, issuer: config.auth.issuer, audience: config.auth.audience });
    const server = new ProxyServer(config, createMetrics(), logger, verifier, options.handoff ?? false);
    await server.listen();
    return server;
  }

  private async listen(): Promise<void> {
    const { listen, admin } = this.config;
    if (this.config.routesWatch) await this.routes.watch();
    const listener = this.listener;
    if (listener) {
      await new Promise<void>((resolve, reject) => {
        listener.once('error', reject);
        listener.listen(listen.port, listen.host, () => {
          listener.off('error', reject);
          resolve();
        });
      });
    }
    this.overload.start();
    this.compactor = new HeapCompactor(
      () => ({ open: this.connections.size, arrived: this.arrivals }),
      ({ connections, durationMs, heapBefore, heapAfter }) => {
        this.metrics.heapCompaction.observe(durationMs / 1000);
        const mb = (bytes: number): number => Math.round(bytes / 1048576);
        this.logger.info({ connections, durationMs: Math.round(durationMs), heapMB: mb(heapBefore), heapAfterMB: mb(heapAfter) }, 'heap compacted after a wave of connections');
      },
    );
    if (admin) {
      this.admin = await startAdminServer({
        host: admin.host,
        port: admin.port,
        metrics: this.metrics,
        isReady: () => this.ready,
        status: () => this.status(),
        control: {
          logger: this.logger,
          config: () => this.effectiveConfig(),
          drain: () => void this.drain().catch((err: unknown) => this.logger.error({ err }, 'drain failed')),
        },
      });
    }
    if (this.config.dispatch) this.registration = await this.register(this.config.dispatch);
    const { host, port } = this.address;
    // How client sockets are written (src/proxy/socket-writer.ts): said once, for whoever compares figures.
    const clientWrites = this.tlsContext || !nodeInternals ? 'socket.write' : 'libuv handle';
    this.logger.info({ address: host, port, admin: this.adminPort, tls: Boolean(this.tlsContext), clientWrites }, listener ? 'livemux listening' : 'proxy worker ready');
  }

  /** Client connections open now. */
  get connectionCount(): number {
    return this.connections.size;
  }

  /** Enters dispatch (docs/dispatch.md) under the public address, or the bound one. */
  private register(dispatch: NonNullable<ProxyConfig['dispatch']>): Promise<DispatchRegistration> {
    const lag = (this.lag = new EventLoopLag());
    const { host, port } = this.address;
    return DispatchRegistration.start({
      redisUrl: dispatch.redisUrl,
      cluster: dispatch.cluster,
      id: this.config.proxyId,
      address: dispatch.publicAddress ?? `${host.includes(':') ? `[${host}]` : host}:${port}`,
      workers: 1,
      heartbeatMs: dispatch.heartbeatMs,
      ttlMs: dispatch.ttlMs,
      load: () => ({ connections: this.connections.size, eventLoopLagMs: lag.takeP99Ms() }),
      logger: this.logger,
    });
  }

  /** Where clients connect (for a `handoff` server, the configured listen address). */
  get address(): BoundAddress {
    if (!this.listener) return { ...this.config.listen };
    const a = this.listener.address() as net.AddressInfo;
    return { host: a.address, port: a.port };
  }

  /** Admin HTTP port, or null when disabled. */
  get adminPort(): number | null {
    return this.admin?.port ?? null;
  }

  /**
   * Listening, not draining, not refusing for overload, and a backend stream up: what /readyz answers
   * (unless failed on purpose).
   */
  get ready(): boolean {
    return !this.draining && !this.overload.refusing && (this.listener?.listening ?? true) && this.links.anyReady();
  }

  /** Live state for the admin `/status` JSON and page; `totals` are counters the page turns into rates. */
  async status(): Promise<object> {
    let sessions = 0;
    for (const c of this.connections) sessions += c.sessionCount;
    const sessionsByBusiness: Record<string, number> = {};
    for (const { labels, value } of (await this.metrics.sessions.get()).values) {
      if (value > 0) sessionsByBusiness[String(labels.business)] = value;
    }
    const stats = this.metrics.frameStats;
    const sum = (values: Float64Array): number => values.reduce((a, b) => a + b, 0);
    return {
      proxyId: this.config.proxyId,
      ready: this.ready,
      draining: this.draining,
      logLevel: this.logger.level,
      connections: this.connections.size,
      sockets: this.gate.connections,
      handshakes: this.gate.handshakes,
      handshakeBytes: this.gate.handshakeBytesHeld,
      overload: OVERLOAD_STATE_NAMES[this.overload.state],
      sessions,
      sessionsByBusiness,
      totals: {
        framesIn: sum(stats.inFrames),
        framesOut: sum(stats.outFrames),
        bytesIn: sum(stats.inBytes),
        bytesOut: sum(stats.outBytes),
        connectionsAccepted: (await this.metrics.connectionsAccepted.get()).values[0]?.value ?? 0,
      },
      routes: this.routes.status(),
      backends: this.links.states(),
      health: this.health.snapshot(),
    };
  }

  /** The configuration in effect (livemux.yaml as loaded, and the routes table), secrets redacted. */
  effectiveConfig(): object {
    return { ...redactedConfig(this.config), routes: { tableVersion: this.routes.table.version, ...this.routes.table.config } };
  }

  /** Takes a client connection accepted elsewhere (or by this server's listener); refused while draining. */
  adopt(socket: net.Socket): void {
    this.arrivals++;
    if (this.draining) {
      socket.destroy();
      return;
    }
    socket.on('error', ignore); // errors before the Connection owns the socket end in 'close'
    if (!this.config.proxyProtocol) {
      const { address, port } = peerOf(socket);
      this.attach(socket, address, port, null);
      return;
    }
    // The PROXY header precedes everything, TLS included, so it is read from the raw socket first.
    const parser = new ProxyHeaderParser();
    const { timers } = this.ctx;
    const timer = new WheelEntry(() => socket.destroy());
    timers.schedule(timer, timers.now() + this.config.timeouts.handshakeMs);
    socket.once('close', () => timers.cancel(timer));
    const onData = (chunk: Buffer): void => {
      let parsed;
      try {
        parsed = parser.push(chunk);
      } catch (err) {
        timers.cancel(timer);
        socket.off('data', onData);
        this.metrics.protocolErrors.inc({ code: 'PROXY_HEADER' });
        this.logger.info({ err: (err as ProtocolError).message, addr: socket.remoteAddress }, 'bad PROXY protocol header');
        socket.destroy();
        return;
      }
      if (!parsed) return;
      timers.cancel(timer);
      socket.off('data', onData);
      socket.pause();
      const source = parsed.source;
      const { address, port } = source ?? peerOf(socket);
      this.attach(socket, address, port, parsed.rest);
    };
    socket.on('data', onData);
  }

  /**
   * Admits the connection through the overload state and the connection gate, then wraps it in TLS when
   * configured and hands it to a Connection, replaying bytes read ahead. A refused one gets its ERROR.
   */
  private attach(raw: net.Socket, ip: string, port: number | undefined, readAhead: Buffer | null): void {
    const refusal = this.overload.refusing
      ? new LimitError(Code.OVERLOADED, 'server: overloaded, not taking connections', 'overload.stop_accepting_at')
      : this.gate.admit(ip);
    if (refusal) {
      this.refuse(raw, refusal);
      return;
    }
    // Unshifted bytes are replayed to the Connection's reader, or fed to TLS (TLSSocket consumes what the
    // raw socket already buffered before it takes over the handle).
    if (readAhead && readAhead.length > 0) raw.unshift(readAhead);
    const socket = this.tlsContext
      ? new tls.TLSSocket(raw, { isServer: true, secureContext: this.tlsContext })
      : raw;
    // Without TLS the Connection listens on this very socket: one error listener, not an array of two.
    if (socket === raw) raw.off('error', ignore);
    this.connections.add(new Connection(socket, this.ctx, `${ip}:${port}`, ip));
    if (!this.tlsContext) raw.resume();
  }

  /**
   * Closes a connection the server will not take, with an ERROR saying why. Under overload a TLS client
   * gets no ERROR: its handshake would cost the CPU that is short.
   */
  private refuse(raw: net.Socket, err: LimitError): void {
    this.metrics.limitHits.inc({ limit: err.limit });
    this.metrics.connectionsClosed.inc({ code: codeLabel(err.wireCode) });
    if (this.tlsContext && err.wireCode === Code.OVERLOADED) {
      raw.destroy();
      return;
    }
    const socket = this.tlsContext ? new tls.TLSSocket(raw, { isServer: true, secureContext: this.tlsContext }) : raw;
    socket.on('error', () => {});
    socket.end(encodeFrame(FrameType.ERROR, 0, 0, encodeStatus({ code: err.wireCode, reason: err.message })));
    // On the proxy's wheel, like every per-connection deadline: a flood of refusals adds no timers.
    const { timers } = this.ctx;
    const grace = new WheelEntry(() => raw.destroy());
    timers.schedule(grace, timers.now() + REFUSED_GRACE_MS);
    raw.once('close', () => timers.cancel(grace));
    raw.resume();
  }

  private overloadChanged(state: OverloadState, reading: OverloadReading): void {
    this.metrics.overloadState.set(state);
    const level = state === OverloadState.NORMAL ? 'info' : 'warn';
    this.logger[level]({ state: OVERLOAD_STATE_NAMES[state], memory: Number(reading.memory.toFixed(3)), lagMs: Math.round(reading.lagMs) }, 'overload state');
  }

  /**
   * Closes the heaviest connections with OVERLOADED: those holding the most bytes (queued for them, held
   * for credit, partial frames) plus what they sent since the previous pass. 1% of the connections per
   * pass, at least one; a connection under SHED_FLOOR_BYTES is never shed, so light clients stay.
   */
  private shed(): void {
    const scored: [Connection, number][] = [];
    for (const c of this.connections) {
      const recent = c.inboundBytes - (this.inboundAtLastShed.get(c) ?? 0);
      this.inboundAtLastShed.set(c, c.inboundBytes);
      const score = c.heldBytes + recent;
      if (score >= SHED_FLOOR_BYTES) scored.push([c, score]);
    }
    scored.sort((a, b) => b[1] - a[1]);
    const count = Math.max(1, Math.ceil(this.connections.size / 100));
    for (const [c, score] of scored.slice(0, count)) {
      this.metrics.limitHits.inc({ limit: 'overload.shed_at' });
      this.logger.warn({ conn: c.id, user: c.userId, bytes: score }, 'overload: shedding connection');
      c.fail(Code.OVERLOADED, `server: overloaded; this connection holds or sent ${score} bytes`);
    }
  }

  private forget(conn: Connection): void {
    this.connections.delete(conn);
    if (this.connections.size === 0) {
      const waiters = this.closedWaiters;
      this.closedWaiters = [];
      for (const w of waiters) w();
    }
  }

  /**
   * Graceful drain (PROTOCOL.md §9): stop accepting, GOAWAY to every client, let sessions finish until
   * the drain deadline, then close what remains with GOING_AWAY. Resolves when every connection is gone.
   */
  async drain(deadlineMs = this.config.timeouts.drainMs): Promise<void> {
    if (!this.draining) {
      this.draining = true;
      this.listener?.close();
      void this.registration?.setDraining();
      this.logger.info({ connections: this.connections.size, deadlineMs }, 'draining');
      for (const c of this.connections) c.goAway(Code.GOING_AWAY, 'server draining', this.config.goawayReconnectAddress);
    }
    if (!(await this.allClosed(deadlineMs))) {
      for (const c of this.connections) c.forceClose(Code.GOING_AWAY, 'drain deadline reached');
      await this.allClosed(5_000);
    }
  }

  /** Re-reads routes.yaml now (SIGHUP); true when a new table took effect. */
  reloadRoutes(trigger = 'signal'): boolean {
    return this.routes.reload(trigger);
  }

  /** Drains (with the configured deadline), then releases backend links and the admin port. */
  async close(): Promise<void> {
    await this.drain();
    this.overload.stop();
    this.compactor?.stop();
    await this.users.close();
    await this.registration?.close();
    this.lag?.stop();
    await this.routes.close();
    this.links.closeAll();
    await this.admin?.close();
    this.logger.info('livemux stopped');
  }

  private allClosed(timeoutMs: number): Promise<boolean> {
    if (this.connections.size === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), timeoutMs);
      this.closedWaiters.push(() => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  }
}

function ignore(): void {}

/**
 * The client's address and port, without Node keeping them: `remoteAddress` caches `{ address, family,
 * port }` on the socket (`_peername`, ~100 bytes with its property for as long as the connection lives)
 * though the proxy reads it once, here. Deleting the property it just added gives the socket back its
 * shape; a later `remoteAddress` asks the kernel again.
 */
function peerOf(socket: net.Socket): { address: string; port: number | undefined } {
  const address = socket.remoteAddress ?? '';
  const port = socket.remotePort;
  delete (socket as { _peername?: unknown })._peername;
  return { address, port };
}
