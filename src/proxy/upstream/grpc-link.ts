/**
 * The proxy's end of one backend endpoint: a single long `SessionBackend.Attach` stream carrying every
 * session routed to that endpoint (docs/backend-contract.md).
 *
 * State machine (one transition function, `transition`; entry actions live there):
 *
 *   CONNECTING ──stream established──▶ READY ──stream ended──▶ DOWN ──retry established──▶ READY
 *        └──────────stream ended─────────────────────────────▶ DOWN
 *   any state ──close()──▶ CLOSED (final)
 *
 * - "Established" = the backend sent response headers, or the channel has been READY with our call on
 *   it for CHANNEL_READY_CONFIRM_MS without the call failing, whichever comes first. Headers alone cannot
 *   be required: many gRPC servers send them only with the first message, and a backend with no
 *   sessions may never send one. Channel READY alone is not enough: a draining or overloaded server
 *   keeps its connection up while refusing every new stream, and trusting the channel made the link
 *   flap READY/DOWN once per retry, telling the sink `linkDown` each time (and the picker routing
 *   sessions into each flap).
 * - Leaving CONNECTING or READY calls `sink.linkDown` exactly once: every session sent on that stream
 *   is gone. Retries happen while DOWN and stay DOWN until one is established, so a dead endpoint
 *   produces one `linkDown`, not one per retry.
 * - Events offered while DOWN or CLOSED are dropped (counted in `stats.eventsDropped`): the sink was
 *   told `linkDown` for every session of the dead stream, and a session opened on a DOWN link has no
 *   stream to exist on — the proxy must check `state` before binding a session.
 */
import * as grpc from '@grpc/grpc-js';
import pino from 'pino';
import type { Priority } from '../../protocol/constants.js';
import { DrainWaiters } from '../../util/drain-waiters.js';
import { FairBatcher } from '../../util/fair-batcher.js';
import { Backoff } from '../../util/backoff.js';
import { dispatchCommand, STALE_SESSION } from './command-dispatch.js';
import {
  ATTACH_METHOD,
  BACKEND_CONTRACT_VERSION,
  MAX_GRPC_MESSAGE_BYTES,
  type BackendBatch,
  type ProxyBatch,
  type ProxyEvent,
  type ProxyHello,
  type SessionOpenInfo,
} from '../../contract/backend-contract.js';
import { LinkState, type BackendCommandSink, type BackendLink } from './link.js';

/** Options of a GrpcBackendLink. */
/** Reconnect delays of a backend link, in ms. */
export interface LinkBackoffOptions {
  /** Base delay of the first retry. */
  initialMs: number;
  /** Cap of the exponential growth. */
  maxMs: number;
}

/** Defaults for a proxy→backend link: peers share a data centre, so start fast and cap low. */
export const LINK_BACKOFF: Readonly<LinkBackoffOptions> = Object.freeze({ initialMs: 200, maxMs: 5_000 });

export interface GrpcBackendLinkOptions {
  /** Sent in ProxyHello: unique per proxy process, stable for its lifetime. */
  proxyId: string;
  logger?: pino.Logger;
  /** Delays between attempts to re-open the stream (defaults: LINK_BACKOFF). */
  reconnect?: LinkBackoffOptions;
  /** Called after every state change, before `sink.linkDown` (so a picker stops routing here first). */
  onStateChange?: (state: LinkState) => void;
  /**
   * Interval of HTTP/2 keepalive pings, so a backend host that vanished without closing its sockets is
   * noticed in seconds, not at the TCP timeout. Default 30 000; 0 disables. Backends must permit it
   * (docs/backend-contract.md, "Keepalive").
   */
  keepaliveMs?: number;
}

/** Counters for metrics; monotonically increasing for the link's lifetime. */
export interface LinkStats {
  batchesSent: number;
  eventsSent: number;
  /** Events offered while DOWN/CLOSED, or pending when a stream ended. */
  eventsDropped: number;
  batchesReceived: number;
  commandsReceived: number;
  malformedCommands: number;
  /** Commands naming a session not open on this stream (a close race, or another backend's session). */
  staleCommands: number;
}

/**
 * 30 s: a vanished backend host is noticed within ~40 s. gRPC servers refuse pings more frequent than
 * their policy allows (grpc-go and grpc-java default to one per 5 min while they send nothing) by
 * closing the connection, so the contract asks backends to permit this interval.
 */
const DEFAULT_KEEPALIVE_MS = 30_000;
const KEEPALIVE_TIMEOUT_MS = 10_000;
/** After `close()`, how long the backend gets to end the stream before it is cancelled. */
const CLOSE_GRACE_MS = 2_000;
/**
 * How long a call must live on a READY channel, without response headers, to count as accepted: a
 * refusal (RST_STREAM, GOAWAY) arrives within a round trip; a backend that sends headers at once (as the
 * kit does) is READY as soon as they arrive and never waits this out.
 */
const CHANNEL_READY_CONFIRM_MS = 250;
/** Re-arm interval of the connectivity watch (grpc-js requires a deadline). */
const WATCH_SLICE_MS = 60_000;
// Fixed per-event overhead added to size hints: tags, lengths, session id.
const EVENT_OVERHEAD = 16;
/**
 * Fair scheduling of the shared stream (see FairBatcher). Batches of 64 KiB (one HTTP/2 stream window of
 * a gRPC server with default settings), two in flight: what waits beyond that waits in per-session
 * queues, so a session that sends little waits for one round of the busy sessions, not behind their
 * backlog. A session queuing 64 KiB or more is not writable: its client gets no credit back until the
 * queue is under that again (end-to-end backpressure, per session).
 */
const BATCH_BYTES = 64 * 1024;
const BATCHES_IN_FLIGHT = 2;
const SESSION_QUEUE_BYTES = 64 * 1024;

const TRANSITIONS: Readonly<Record<LinkState, readonly LinkState[]>> = {
  [LinkState.CONNECTING]: [LinkState.READY, LinkState.DOWN, LinkState.CLOSED],
  [LinkState.READY]: [LinkState.DOWN, LinkState.CLOSED],
  [LinkState.DOWN]: [LinkState.READY, LinkState.CLOSED],
  [LinkState.CLOSED]: [],
};

type AttachCall = grpc.ClientDuplexStream<ProxyBatch, BackendBatch>;

/**
 * BackendLink over gRPC. Guarantees:
 * - events of one session reach the backend in call order (one stream, one FIFO queue per session);
 * - sessions share the stream fairly: batches of ~64 KiB take one event from each session with events
 *   waiting, round robin, and only two batches are in flight, so a session sending little is not
 *   queued behind another's backlog (what one turn offers travels together when it fits one batch);
 * - the first batch of every stream carries ProxyHello, sent even when no event is pending;
 * - `sink.linkDown` is called once per stream that was CONNECTING or READY when it ended or was closed;
 * - a malformed command is counted and logged at warn, never thrown; a sink that throws is logged;
 * - a command reaches the sink only if it names a session opened on this stream and closed by neither
 *   side yet (or names none: Publish), so one backend cannot act on another backend's sessions.
 * Payloads and SessionOpenInfo objects are referenced, not copied, until their batch is written: callers
 * must not mutate them. Payloads handed to the sink are views into the received message.
 */
export class GrpcBackendLink implements BackendLink {
  readonly endpoint: string;
  readonly stats: LinkStats = {
    batchesSent: 0,
    eventsSent: 0,
    eventsDropped: 0,
    batchesReceived: 0,
    commandsReceived: 0,
    malformedCommands: 0,
    staleCommands: 0,
  };

  private _state: LinkState = LinkState.CONNECTING;
  /** False while DOWN/CLOSED: cached so the per-event check is one load. */
  private acceptingEvents = true;
  /** Sessions opened on the current stream, closed by neither side yet: the only ones commands may name. */
  private readonly sessions = new Set<number>();
  /** Per session, callbacks waiting for its queue to go under SESSION_QUEUE_BYTES. */
  private readonly drainWaiters = new Map<number, DrainWaiters>();
  private call: AttachCall | null = null;
  private helloPending = false;
  private readyAt = 0;
  private retryTimer: NodeJS.Timeout | null = null;

  private readonly client: grpc.Client;
  private readonly batcher: FairBatcher<number, ProxyEvent>;
  private readonly hello: ProxyHello;
  private readonly backoff: Backoff;
  private readonly backoffLimits: LinkBackoffOptions;
  private readonly log: pino.Logger;
  private readonly onStateChange: ((state: LinkState) => void) | undefined;
  private readonly retry = (): void => {
    this.retryTimer = null;
    this.startStream();
  };

  /**
   * Starts connecting at once.
   * @param endpoint `host:port` of the backend (plaintext gRPC).
   */
  constructor(
    endpoint: string,
    private readonly sink: BackendCommandSink,
    opts: GrpcBackendLinkOptions,
  ) {
    this.endpoint = endpoint;
    this.hello = { proxyId: opts.proxyId, contractVersion: BACKEND_CONTRACT_VERSION };
    this.backoffLimits = opts.reconnect ?? LINK_BACKOFF;
    this.backoff = new Backoff({ ...this.backoffLimits, jitter: 'equal' });
    this.log = (opts.logger ?? pino({ level: 'silent' })).child({ component: 'backend-link', endpoint });
    this.onStateChange = opts.onStateChange;
    this.client = new grpc.Client(endpoint, grpc.credentials.createInsecure(), this.channelOptions(opts.keepaliveMs));
    this.batcher = new FairBatcher<number, ProxyEvent>(
      (events, done) => this.writeBatch(events, done),
      { maxBatchBytes: BATCH_BYTES, maxInFlight: BATCHES_IN_FLIGHT, keyLimitBytes: SESSION_QUEUE_BYTES },
      (session) => this.releaseDrainWaiters(session),
    );
    this.startStream();
  }

  get state(): LinkState {
    return this._state;
  }

  messageCounts(): { out: number; in: number } {
    return { out: this.stats.eventsSent, in: this.stats.commandsReceived };
  }

  /** A session is writable while what it has queued for the stream is under SESSION_QUEUE_BYTES. */
  isWritable(session: number): boolean {
    return !this.batcher.isFull(session);
  }

  open(session: number, info: SessionOpenInfo): void {
    if (!this.acceptingEvents) {
      this.stats.eventsDropped++;
      return;
    }
    this.sessions.add(session);
    // SessionOpenInfo has exactly SessionOpened's fields, so it is sent as it is (no copy).
    this.batcher.push(session, { session, opened: info }, openSizeHint(info));
  }

  data(session: number, payload: Buffer, priority: Priority): void {
    if (!this.acceptingEvents) {
      this.stats.eventsDropped++;
      return;
    }
    this.batcher.push(session, { session, data: { payload, priority } }, payload.length + EVENT_OVERHEAD);
  }

  closed(session: number, code: number, reason: string): void {
    if (!this.acceptingEvents) {
      this.stats.eventsDropped++;
      return;
    }
    this.sessions.delete(session);
    this.batcher.push(session, { session, closed: { code, reason } }, reason.length + EVENT_OVERHEAD);
  }

  halfClosed(session: number, code: number, reason: string): void {
    if (!this.acceptingEvents) {
      this.stats.eventsDropped++;
      return;
    }
    // Still open for the backend's commands: it ends the session itself.
    this.batcher.push(session, { session, halfClosed: { code, reason } }, reason.length + EVENT_OVERHEAD);
  }

  /**
   * Calls `fn` once `session` is writable again, or at once if it is. Waiters are also released when the
   * stream ends (after `linkDown`): a waiter must never hang on a dead stream.
   */
  onDrain(session: number, fn: () => void): void {
    if (this.isWritable(session)) return fn();
    let waiters = this.drainWaiters.get(session);
    if (!waiters) this.drainWaiters.set(session, (waiters = new DrainWaiters(this.log, 'backend link')));
    waiters.add(fn);
  }

  private releaseDrainWaiters(session: number): void {
    const waiters = this.drainWaiters.get(session);
    if (!waiters) return;
    this.drainWaiters.delete(session);
    waiters.release();
  }

  private releaseAllDrainWaiters(): void {
    const all = [...this.drainWaiters.values()];
    this.drainWaiters.clear();
    for (const waiters of all) waiters.release();
  }

  /**
   * Ends the link for good: pending events are flushed, the stream is half-closed (the backend sees a
   * clean end and should finish it; it is cancelled after 2 s otherwise), `linkDown` is called if the
   * stream was CONNECTING or READY, and the state becomes CLOSED. Idempotent.
   */
  close(): void {
    if (this._state === LinkState.CLOSED) return;
    if (this.retryTimer !== null) {
      clearTimeout(this.retryTimer);
      this.retryTimer = null;
    }
    const call = this.call;
    if (call !== null) {
      this.batcher.flush(true);
      this.call = null;
      call.end();
      setTimeout(() => call.cancel(), CLOSE_GRACE_MS).unref();
    }
    this.batcher.discard();
    this.transition(LinkState.CLOSED, 'closed by the proxy');
    this.releaseAllDrainWaiters();
    // A started call outlives the channel's close; only calls not yet started are failed by it.
    this.client.close();
  }

  private channelOptions(keepaliveMs = DEFAULT_KEEPALIVE_MS): grpc.ChannelOptions {
    const options: grpc.ChannelOptions = {
      // One connection per link: the global pool would share one TCP connection between links (and
      // their failures) to the same endpoint.
      'grpc.use_local_subchannel_pool': 1,
      // grpc-js backs off reconnecting a channel on its own; keep its pace equal to ours so a retry is
      // not refused by a channel still waiting out a longer internal backoff.
      'grpc.initial_reconnect_backoff_ms': this.backoffLimits.initialMs,
      'grpc.max_reconnect_backoff_ms': this.backoffLimits.maxMs,
      'grpc.max_receive_message_length': MAX_GRPC_MESSAGE_BYTES,
      'grpc.max_send_message_length': MAX_GRPC_MESSAGE_BYTES,
    };
    if (keepaliveMs > 0) {
      options['grpc.keepalive_time_ms'] = keepaliveMs;
      options['grpc.keepalive_timeout_ms'] = Math.min(KEEPALIVE_TIMEOUT_MS, keepaliveMs);
    }
    return options;
  }

  /** Opens a new Attach stream; its first batch carries ProxyHello. */
  private startStream(): void {
    // Fail-fast (no waitForReady): an unreachable endpoint fails the call at once, so `state` says DOWN.
    const call = this.client.makeBidiStreamRequest(
      ATTACH_METHOD.path,
      ATTACH_METHOD.requestSerialize,
      ATTACH_METHOD.responseDeserialize,
    );
    this.call = call;
    call.on('data', (batch: BackendBatch) => this.onBackendBatch(call, batch));
    call.on('metadata', () => this.markEstablished(call));
    // 'status' carries the same information; without a listener, 'error' would be thrown.
    call.on('error', () => {});
    call.on('status', (status: grpc.StatusObject) => this.onStreamEnd(call, status));
    this.helloPending = true;
    this.batcher.schedule();
    this.watchChannel(call);
  }

  /** Marks the stream established once the channel is READY (and stays usable) while `call` is current. */
  private watchChannel(call: AttachCall): void {
    const channel = this.client.getChannel();
    const check = (): void => {
      if (call !== this.call) return;
      const connectivity = channel.getConnectivityState(true);
      // A refused stream fails within one round trip of the READY connection; one that outlives the
      // window was accepted. The timer is not cleared: markEstablished ignores a call no longer current.
      if (connectivity === grpc.connectivityState.READY) {
        setTimeout(() => this.markEstablished(call), CHANNEL_READY_CONFIRM_MS).unref();
      }
      else if (connectivity !== grpc.connectivityState.SHUTDOWN) {
        channel.watchConnectivityState(connectivity, Date.now() + WATCH_SLICE_MS, check);
      }
    };
    check();
  }

  private markEstablished(call: AttachCall): void {
    if (call !== this.call || this._state === LinkState.READY) return;
    this.readyAt = Date.now();
    this.transition(LinkState.READY, 'stream established');
  }

  private onStreamEnd(call: AttachCall, status: grpc.StatusObject): void {
    if (call !== this.call) return;
    this.call = null;
    this.stats.eventsDropped += this.batcher.discard();
    const reason =
      status.code === grpc.status.OK
        ? 'the backend ended the stream'
        : `stream failed: ${grpc.status[status.code] ?? status.code} (${status.details})`;
    const wasReady = this._state === LinkState.READY;
    if (this._state === LinkState.DOWN) this.log.debug({ reason, attempt: this.backoff.attempt }, 'backend link: retry failed');
    else this.transition(LinkState.DOWN, reason);
    this.releaseAllDrainWaiters();
    // Only a stream that stayed up a while resets the backoff: an endpoint that accepts and at once
    // drops the stream must not be retried at the initial pace forever.
    if (wasReady && Date.now() - this.readyAt >= this.backoffLimits.maxMs) this.backoff.reset();
    const delay = this.backoff.next();
    this.retryTimer = setTimeout(this.retry, delay);
    // Retrying alone is no reason to keep the process alive; the proxy's servers are.
    this.retryTimer.unref();
  }

  /** The single place where the state changes; entry actions follow the assignment. */
  private transition(to: LinkState, reason: string): boolean {
    const from = this._state;
    if (!TRANSITIONS[from].includes(to)) {
      this.log.error({ from, to, reason }, 'backend link: illegal state transition refused');
      return false;
    }
    this._state = to;
    this.acceptingEvents = to === LinkState.CONNECTING || to === LinkState.READY;
    if (!this.acceptingEvents) this.sessions.clear();
    const level = to === LinkState.READY || to === LinkState.CLOSED ? 'info' : 'warn';
    this.log[level]({ from, to, reason }, 'backend link state');
    try {
      this.onStateChange?.(to);
    } catch (err) {
      this.log.error({ err, to }, 'backend link: onStateChange threw');
    }
    // A DOWN link already reported its sessions gone; CLOSED after DOWN has nothing left to report.
    if (to === LinkState.DOWN || (to === LinkState.CLOSED && from !== LinkState.DOWN)) {
      try {
        this.sink.linkDown(this, reason);
      } catch (err) {
        this.log.error({ err }, 'backend link: sink.linkDown threw');
      }
    }
    return true;
  }

  /** Writes one batch; `done` once the stream has sent it (gRPC's write callback), so the next can be built. */
  private writeBatch(events: ProxyEvent[], done: () => void): void {
    const call = this.call;
    if (call === null) {
      this.stats.eventsDropped += events.length;
      done();
      return;
    }
    const batch: ProxyBatch = { hello: this.helloPending ? this.hello : null, events };
    this.helloPending = false;
    this.stats.batchesSent++;
    this.stats.eventsSent += events.length;
    call.write(batch, () => {
      if (call === this.call) done();
    });
  }


  private onBackendBatch(call: AttachCall, batch: BackendBatch): void {
    // After close() the sink has been told linkDown; late commands have nobody to go to.
    if (call !== this.call) return;
    this.stats.batchesReceived++;
    const commands = batch.commands;
    this.stats.commandsReceived += commands.length;
    for (let i = 0; i < commands.length; i++) {
      const command = commands[i]!;
      try {
        const problem = dispatchCommand(this.sink, command, this.sessions);
        if (problem === STALE_SESSION) this.stats.staleCommands++;
        else if (problem !== null) this.malformed(problem);
      } catch (err) {
        this.log.error({ err, command: command.command }, 'backend link: sink threw while applying a command');
      }
    }
  }

  private malformed(problem: string): void {
    this.stats.malformedCommands++;
    this.log.warn({ problem, malformedCommands: this.stats.malformedCommands }, 'backend link: malformed command ignored');
  }
}

/** Approximate encoded size of a SessionOpened event (only to keep batches near their cap). */
function openSizeHint(info: SessionOpenInfo): number {
  let size = EVENT_OVERHEAD * 2 + info.userId.length + info.business.length;
  size += info.clientAddress.length + info.connectionId.length;
  for (const key in info.metadata) size += key.length + (info.metadata[key]?.length ?? 0) + 4;
  return size;
}
