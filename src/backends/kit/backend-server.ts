/**
 * A small library for writing livemux backends in Node (docs/backend-contract.md): it serves
 * `livemux.v1.SessionBackend` and `grpc.health.v1.Health`, turns each proxy's Attach stream into a
 * ProxyStreamContext, calls the handlers per event, and batches the commands they issue per event-loop turn.
 */
import * as grpc from '@grpc/grpc-js';
import pino from 'pino';
import type { Priority } from '../../protocol/constants.js';
import { Code } from '../../protocol/codes.js';
import { TickBatcher } from '../../util/tick-batcher.js';
import { DrainWaiters } from '../../util/drain-waiters.js';
import {
  BACKEND_CONTRACT_VERSION,
  MAX_GRPC_MESSAGE_BYTES,
  SessionBackendService,
  isPriority,
  type BackendBatch,
  type BackendCommand,
  type ProxyBatch,
  type ProxyEvent,
  type ProxyEventCase,
  type SessionClosed,
  type SessionData,
  type SessionHalfClosed,
} from '../../contract/backend-contract.js';
import { HealthService, ServingStatus } from '../../contract/health.js';
import { HealthStatus } from './health-status.js';
import type { SessionOpenInfo } from '../../contract/backend-contract.js';

/** Counters of one proxy stream. */
export interface ProxyStreamStats {
  batchesReceived: number;
  eventsReceived: number;
  malformedEvents: number;
  /** Events for a session not open on the stream, e.g. DATA that crossed the backend's close. Dropped. */
  staleEvents: number;
  batchesSent: number;
  commandsSent: number;
  /** Commands issued after the stream ended. */
  commandsDropped: number;
}

/** A stream's counters before anything happened on it. */
export function newProxyStreamStats(): ProxyStreamStats {
  return { batchesReceived: 0, eventsReceived: 0, malformedEvents: 0, staleEvents: 0, batchesSent: 0, commandsSent: 0, commandsDropped: 0 };
}

/**
 * One proxy's Attach stream, as handlers see it. Commands issued in one event-loop turn travel in one
 * BackendBatch, in issue order. After the stream ended (`gone`), commands are dropped silently.
 */
export interface ProxyStreamContext {
  /** From ProxyHello: identifies the proxy process; the same proxy may reconnect with a new stream. */
  readonly proxyId: string;
  /** The proxy's address as seen by gRPC (for logs). */
  readonly peer: string;
  /** True once the stream ended; `onProxyGone` has been (or is being) called. */
  readonly gone: boolean;
  /** Sessions open on this stream: opened by the proxy, closed by neither side yet. */
  readonly sessions: ReadonlySet<number>;
  /** False while the stream's write buffer is full (the proxy reads slowly); see `onDrain`. */
  readonly writable: boolean;
  readonly stats: Readonly<ProxyStreamStats>;
  /** Sends `payload` to one session. */
  deliver(session: number, payload: Buffer, priority: Priority): void;
  /**
   * Closes one session; the client gets CLOSE with `code` (0, or e.g. 205 BACKEND_CLOSED). The session
   * leaves `sessions` at once: `onClose` is not called for it, and events already in flight are dropped.
   */
  close(session: number, code: number, reason: string): void;
  /** Adds the session to `topic` on this proxy (edge fan-out membership). */
  subscribe(session: number, topic: string): void;
  unsubscribe(session: number, topic: string): void;
  /** Delivers `payload` to every session of this proxy subscribed to `topic` (send once per proxy). */
  publish(topic: string, payload: Buffer, priority: Priority, excludeSession?: number): void;
  /** Calls `fn` when `writable` becomes true again (at once if it is; also when the stream ends). */
  onDrain(fn: () => void): void;
}

/**
 * What a backend implements. Handlers run synchronously, in the stream's event order, and only for
 * sessions in `ctx.sessions` (the library drops events racing a close). An exception in `onOpen` or
 * `onData` is logged and closes that session with INTERNAL_ERROR (406), never the stream.
 */
export interface BackendHandlers {
  onOpen(ctx: ProxyStreamContext, session: number, info: SessionOpenInfo): void;
  /** `payload` is a view into the received batch: copy it if kept long after the call. */
  onData(ctx: ProxyStreamContext, session: number, payload: Buffer, priority: Priority): void;
  /**
   * The client sent CLOSE: no more `onData` comes for the session, but it is still open the other way.
   * Deliver what is still owed (replies to requests in progress), then end it with `ctx.close`: the
   * client's CLOSE is answered with that code. Without this handler the library ends the session at
   * once with code 0, after the commands already issued (so replies issued synchronously in `onData`
   * still reach the client). A session not ended within the proxy's half-close timeout (default 10 s)
   * is ended by the proxy: `onClose` with 211 HALF_CLOSE_TIMEOUT.
   */
  onHalfClose?(ctx: ProxyStreamContext, session: number, code: number, reason: string): void;
  /**
   * The proxy ended the session (the client reset it or vanished, a proxy limit, …). Not called for a
   * session the backend closed itself with `ctx.close`, nor when the whole stream ends (`onProxyGone`).
   */
  onClose(ctx: ProxyStreamContext, session: number, code: number, reason: string): void;
  /**
   * A proxy attached (its stream's hello was accepted), before any of its sessions opens. A backend that
   * publishes to topics it did not subscribe itself (e.g. to every proxy in front of it) learns its
   * proxies here; `onProxyGone` follows when the stream ends.
   */
  onAttach?(ctx: ProxyStreamContext): void;
  /** The stream ended: every session of `ctx` is gone, and `onClose` will not be called for them. */
  onProxyGone?(ctx: ProxyStreamContext, reason: string): void;
}

export interface BackendServerOptions {
  logger?: pino.Logger;
  /** How long `close()` waits for streams to finish before cancelling them (default 2 000 ms). */
  closeGraceMs?: number;
}

/** A bound server. */
export interface ListeningBackend {
  /** The bound port (the ephemeral one when 0 was asked). */
  readonly port: number;
  /** Health as served on this port; "" and "livemux.v1.SessionBackend" start SERVING. */
  readonly health: HealthStatus;
  /**
   * Reports NOT_SERVING, flushes pending commands, ends every Attach stream with status OK (each
   * proxy sees its sessions end and reconnects elsewhere or later), then shuts the server down.
   */
  close(): Promise<void>;
}

export interface BackendServer {
  /** Binds `host:port` (port 0 = ephemeral). May be called again after a close (same handlers). */
  listen(host: string, port: number): Promise<ListeningBackend>;
}

type AttachCall = grpc.ServerDuplexStream<ProxyBatch, BackendBatch>;
type EventHandler = (stream: ProxyStream, event: ProxyEvent) => void;

// Per-command overhead in size hints: tags, lengths, session id.
const COMMAND_OVERHEAD = 16;
const SESSION_BACKEND_SERVICE_NAME = 'livemux.v1.SessionBackend';

const EVENT_HANDLERS: Readonly<Record<ProxyEventCase, EventHandler>> = {
  opened(stream, event) {
    if (stream.sessions.has(event.session)) {
      stream.malformed(`opened.session: ${event.session} is already open on this stream`);
      return;
    }
    stream.sessions.add(event.session);
    stream.handlers.onOpen(stream, event.session, event.opened as SessionOpenInfo);
  },
  data(stream, event) {
    if (!stream.sessions.has(event.session)) {
      stream.stats.staleEvents++;
      return;
    }
    const data = event.data as SessionData;
    if (!isPriority(data.priority)) {
      stream.malformed(`data.priority: expected 0 (SYSTEM), 1 (HIGH) or 2 (LOW), got ${data.priority}`);
      return;
    }
    stream.handlers.onData(stream, event.session, data.payload, data.priority);
  },
  closed(stream, event) {
    if (!stream.sessions.delete(event.session)) {
      stream.stats.staleEvents++;
      return;
    }
    const closed = event.closed as SessionClosed;
    stream.handlers.onClose(stream, event.session, closed.code, closed.reason);
  },
  halfClosed(stream, event) {
    if (!stream.sessions.has(event.session)) {
      stream.stats.staleEvents++;
      return;
    }
    const { code, reason } = event.halfClosed as SessionHalfClosed;
    if (stream.handlers.onHalfClose) stream.handlers.onHalfClose(stream, event.session, code, reason);
    else stream.close(event.session, Code.NORMAL, '');
  },
};

/** One Attach stream from one proxy. */
class ProxyStream implements ProxyStreamContext {
  proxyId = '';
  gone = false;
  readonly sessions = new Set<number>();
  readonly stats = newProxyStreamStats();
  private _writable = true;
  private readonly batcher = new TickBatcher<BackendCommand>((commands) => this.writeBatch(commands));
  private readonly drainWaiters: DrainWaiters;

  constructor(
    private readonly call: AttachCall,
    readonly handlers: BackendHandlers,
    private readonly log: pino.Logger,
    private readonly onGone: (stream: ProxyStream) => void,
  ) {
    this.drainWaiters = new DrainWaiters(log, 'backend');
    // Headers at once: the proxy learns the stream is accepted without waiting for a first command.
    call.sendMetadata(new grpc.Metadata());
    call.on('data', (batch: ProxyBatch) => this.onBatch(batch));
    call.on('drain', () => this.onCallDrain());
    // The proxy half-closed (GrpcBackendLink.close): it wants nothing more; finish our side.
    call.on('end', () => this.end('proxy closed the stream'));
    call.on('error', (err: Error) => this.finish(`stream error: ${err.message}`));
    call.on('cancelled', () => this.finish('stream cancelled (proxy gone or connection lost)'));
    call.on('close', () => this.finish('stream closed'));
  }

  get peer(): string {
    return this.call.getPeer();
  }

  get writable(): boolean {
    return this._writable;
  }

  deliver(session: number, payload: Buffer, priority: Priority): void {
    this.push({ deliver: { session, payload, priority } }, payload.length + COMMAND_OVERHEAD);
  }

  close(session: number, code: number, reason: string): void {
    this.sessions.delete(session);
    this.push({ close: { session, code, reason } }, reason.length + COMMAND_OVERHEAD);
  }

  subscribe(session: number, topic: string): void {
    this.push({ subscribe: { session, topic } }, topic.length + COMMAND_OVERHEAD);
  }

  unsubscribe(session: number, topic: string): void {
    this.push({ unsubscribe: { session, topic } }, topic.length + COMMAND_OVERHEAD);
  }

  publish(topic: string, payload: Buffer, priority: Priority, excludeSession = 0): void {
    this.push({ publish: { topic, payload, priority, excludeSession } }, topic.length + payload.length + COMMAND_OVERHEAD);
  }

  onDrain(fn: () => void): void {
    if (this._writable) fn();
    else this.drainWaiters.add(fn);
  }

  /** Flushes pending commands and ends the stream with status OK. */
  end(reason: string): void {
    if (this.gone) return;
    this.batcher.flush();
    this.call.end();
    this.finish(reason);
  }

  malformed(problem: string): void {
    this.stats.malformedEvents++;
    this.log.warn({ proxyId: this.proxyId, problem }, 'backend: malformed event ignored');
  }

  private push(command: BackendCommand, sizeHint: number): void {
    if (this.gone) {
      this.stats.commandsDropped++;
      return;
    }
    this.batcher.push(command, sizeHint);
  }

  private writeBatch(commands: BackendCommand[]): void {
    this.stats.batchesSent++;
    this.stats.commandsSent += commands.length;
    if (!this.call.write({ commands })) this._writable = false;
  }

  private onBatch(batch: ProxyBatch): void {
    if (this.gone) return;
    this.stats.batchesReceived++;
    if (this.proxyId === '' && !this.acceptHello(batch)) return;
    const events = batch.events;
    this.stats.eventsReceived += events.length;
    for (let i = 0; i < events.length; i++) this.onEvent(events[i]!);
  }

  /** The first batch must carry a ProxyHello of a contract version we speak; otherwise the stream fails. */
  private acceptHello(batch: ProxyBatch): boolean {
    const hello = batch.hello;
    if (hello == null || hello.proxyId === '') {
      this.fail(grpc.status.FAILED_PRECONDITION, 'ProxyBatch.hello: the first batch of a stream must carry a ProxyHello with a proxy_id');
      return false;
    }
    if (hello.contractVersion !== BACKEND_CONTRACT_VERSION) {
      this.fail(
        grpc.status.FAILED_PRECONDITION,
        `ProxyHello.contract_version: unsupported (got ${hello.contractVersion}, this backend speaks ${BACKEND_CONTRACT_VERSION})`,
      );
      return false;
    }
    this.proxyId = hello.proxyId;
    this.log.info({ proxyId: this.proxyId, peer: this.peer }, 'backend: proxy attached');
    try {
      this.handlers.onAttach?.(this);
    } catch (err) {
      this.log.error({ err, proxyId: this.proxyId }, 'backend: onAttach threw');
    }
    return true;
  }

  private onEvent(event: ProxyEvent): void {
    const kind = event.event;
    const handler = kind === undefined ? undefined : EVENT_HANDLERS[kind];
    if (handler === undefined) {
      this.malformed('event: no known member of the oneof is set (empty, or from a newer contract)');
      return;
    }
    if (!(event.session > 0)) {
      this.malformed(`${kind}.session: expected a non-zero session id, got ${event.session}`);
      return;
    }
    try {
      handler(this, event);
    } catch (err) {
      this.log.error({ err, proxyId: this.proxyId, session: event.session, event: kind }, 'backend: handler threw');
      if (kind !== 'closed') this.close(event.session, Code.INTERNAL_ERROR, 'backend handler failed');
    }
  }

  private fail(code: grpc.status, details: string): void {
    this.log.warn({ peer: this.peer, details }, 'backend: stream refused');
    this.call.emit('error', { code, details });
  }

  private onCallDrain(): void {
    this._writable = true;
    this.drainWaiters.release();
  }


  /** Runs once per stream, whichever way it ended. */
  private finish(reason: string): void {
    if (this.gone) return;
    this.gone = true;
    this.stats.commandsDropped += this.batcher.discard();
    this._writable = true;
    this.drainWaiters.release();
    this.onGone(this);
    // A stream refused before its hello never reached the handlers: nothing to tell them.
    if (this.proxyId === '') return;
    this.log.info({ proxyId: this.proxyId, reason }, 'backend: proxy stream gone');
    try {
      this.handlers.onProxyGone?.(this, reason);
    } catch (err) {
      this.log.error({ err, proxyId: this.proxyId }, 'backend: onProxyGone threw');
    }
    // Kept until now so that onProxyGone can walk them.
    this.sessions.clear();
  }
}

/**
 * Creates a backend server around `handlers`. Each `listen` starts a fresh gRPC server serving
 * SessionBackend and the standard health service.
 */
export function createBackendServer(handlers: BackendHandlers, opts: BackendServerOptions = {}): BackendServer {
  const log = (opts.logger ?? pino({ level: 'silent' })).child({ component: 'backend-server' });
  const closeGraceMs = opts.closeGraceMs ?? 2_000;

  return {
    listen(host: string, port: number): Promise<ListeningBackend> {
      const streams = new Set<ProxyStream>();
      const removeStream = (stream: ProxyStream): void => {
        streams.delete(stream);
      };
      const health = new HealthStatus();
      health.set('', ServingStatus.SERVING);
      health.set(SESSION_BACKEND_SERVICE_NAME, ServingStatus.SERVING);

      const server = new grpc.Server({
        'grpc.max_receive_message_length': MAX_GRPC_MESSAGE_BYTES,
        'grpc.max_send_message_length': MAX_GRPC_MESSAGE_BYTES,
        // Notice a proxy host that vanished without closing its sockets.
        'grpc.keepalive_time_ms': 30_000,
        'grpc.keepalive_timeout_ms': 10_000,
      });
      server.addService(SessionBackendService, {
        Attach: (call: AttachCall) => {
          streams.add(new ProxyStream(call, handlers, log, removeStream));
        },
      });
      server.addService(HealthService, health.implementation());

      const address = host.includes(':') && !host.startsWith('[') ? `[${host}]:${port}` : `${host}:${port}`;
      return new Promise((resolve, reject) => {
        server.bindAsync(address, grpc.ServerCredentials.createInsecure(), (err, boundPort) => {
          if (err) {
            reject(new Error(`backend server: cannot listen on ${address} (${err.message})`, { cause: err }));
            return;
          }
          log.info({ address: host, port: boundPort }, 'backend: listening');
          let closing: Promise<void> | null = null;
          resolve({
            port: boundPort,
            health,
            close: () => (closing ??= shutdown(server, streams, health, closeGraceMs)),
          });
        });
      });
    },
  };
}

function shutdown(server: grpc.Server, streams: Set<ProxyStream>, health: HealthStatus, graceMs: number): Promise<void> {
  health.setAll(ServingStatus.NOT_SERVING);
  for (const stream of [...streams]) stream.end('backend server closing');
  return new Promise((resolve) => {
    const timer = setTimeout(() => server.forceShutdown(), graceMs);
    timer.unref();
    server.tryShutdown(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}
