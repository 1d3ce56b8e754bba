import { readFileSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import type { Logger } from 'pino';
import type { ProxyConfig } from '../config/proxy-config.js';
import { createLogger } from '../observability/logger.js';
import { createMetrics, type Metrics } from '../observability/metrics.js';
import { startAdminServer } from '../observability/admin-server.js';
import { Code } from '../protocol/codes.js';
import { ProtocolError } from '../protocol/errors.js';
import { SessionRegistry } from '../session/registry.js';
import { createJwtVerifier, type TokenVerifier } from './auth.js';
import { EndpointHealthMonitor } from './upstream/endpoint-health.js';
import { BackendLinks } from './upstream/backend-links.js';
import { Connection } from './connection.js';
import type { ProxyContext } from './context.js';
import { ProxyHeaderParser } from './proxy-protocol.js';
import { RouteReloader } from './route-reloader.js';
import { SessionMover } from './session-mover.js';
import { nodeInternals } from './socket-writer.js';
import { TimerWheel, WheelEntry } from './timer-wheel.js';

export interface ProxyServerOptions {
  /** Replaces the default HS256 JWT verifier (e.g. for an identity service). */
  verifier?: TokenVerifier;
  logger?: Logger;
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
  private readonly listener: net.Server;
  private readonly links: BackendLinks;
  private readonly ctx: ProxyContext;
  private readonly tlsContext: tls.SecureContext | null;
  private readonly routes: RouteReloader;
  private readonly health: EndpointHealthMonitor;
  private admin: { port: number; close(): Promise<void> } | null = null;
  private draining = false;
  private closedWaiters: (() => void)[] = [];

  private constructor(
    readonly config: ProxyConfig,
    readonly metrics: Metrics,
    readonly logger: Logger,
    verifier: TokenVerifier,
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
    this.ctx = {
      config,
      verifier,
      routes: () => this.routes.table,
      links: this.links,
      registry,
      metrics,
      logger,
      timers: new TimerWheel(),
      connectionClosed: (conn) => this.forget(conn as Connection),
    };
    this.tlsContext = config.tls
      ? tls.createSecureContext({ cert: readFileSync(config.tls.certFile), key: readFileSync(config.tls.keyFile) })
      : null;
    this.listener = net.createServer((socket) => this.accept(socket));
  }

  /** Loads the routes, opens backend links and starts listening (client port and admin port). */
  static async start(config: ProxyConfig, options: ProxyServerOptions = {}): Promise<ProxyServer> {
    const logger = options.logger ?? createLogger({ level: config.logLevel, proxyId: config.proxyId });
    const verifier = options.verifier ?? createJwtVerifier({ secret: config.auth.jwtSecret, issuer: config.auth.issuer, audience: config.auth.audience });
    const server = new ProxyServer(config, createMetrics(), logger, verifier);
    await server.listen();
    return server;
  }

  private async listen(): Promise<void> {
    const { listen, admin } = this.config;
    if (this.config.routesWatch) await this.routes.watch();
    await new Promise<void>((resolve, reject) => {
      this.listener.once('error', reject);
      this.listener.listen(listen.port, listen.host, () => {
        this.listener.off('error', reject);
        resolve();
      });
    });
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
    // How client sockets are written (src/proxy/socket-writer.ts): said once, for whoever compares figures.
    const clientWrites = this.tlsContext || !nodeInternals ? 'socket.write' : 'libuv handle';
    this.logger.info({ address: this.address.host, port: this.address.port, admin: this.adminPort, tls: Boolean(this.tlsContext), clientWrites }, 'livemux listening');
  }

  /** Where clients connect. */
  get address(): BoundAddress {
    const a = this.listener.address() as net.AddressInfo;
    return { host: a.address, port: a.port };
  }

  /** Admin HTTP port, or null when disabled. */
  get adminPort(): number | null {
    return this.admin?.port ?? null;
  }

  /** Listening, not draining, and a backend stream up: what /readyz answers (unless failed on purpose). */
  get ready(): boolean {
    return !this.draining && this.listener.listening && this.links.anyReady();
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
    return {
      proxy: { ...this.config, auth: { ...this.config.auth, jwtSecret: '[redacted]' } },
      routes: { tableVersion: this.routes.table.version, ...this.routes.table.config },
    };
  }

  private accept(socket: net.Socket): void {
    if (this.draining) {
      socket.destroy();
      return;
    }
    socket.on('error', () => {}); // errors before the Connection owns the socket end in 'close'
    if (!this.config.proxyProtocol) {
      this.attach(socket, `${socket.remoteAddress}:${socket.remotePort}`, null);
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
      const address = source ? `${source.address}:${source.port}` : `${socket.remoteAddress}:${socket.remotePort}`;
      this.attach(socket, address, parsed.rest);
    };
    socket.on('data', onData);
  }

  /** Wraps in TLS when configured and hands the socket to a Connection, replaying bytes read ahead. */
  private attach(raw: net.Socket, clientAddress: string, readAhead: Buffer | null): void {
    // Unshifted bytes are replayed to the Connection's reader, or fed to TLS (TLSSocket consumes what the
    // raw socket already buffered before it takes over the handle).
    if (readAhead && readAhead.length > 0) raw.unshift(readAhead);
    const socket = this.tlsContext
      ? new tls.TLSSocket(raw, { isServer: true, secureContext: this.tlsContext })
      : raw;
    this.connections.add(new Connection(socket, this.ctx, clientAddress));
    if (!this.tlsContext) raw.resume();
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
      this.listener.close();
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
