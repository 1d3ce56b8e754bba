import { Counter, Gauge, Registry } from 'prom-client';
import { FRAME_TYPE_NAMES, MAX_FRAME_TYPE } from '../protocol/constants.js';
import { type HistogramSeries, SeriesHistogram } from './histogram.js';
import { collectProcessMetrics } from './process-metrics.js';

/**
 * Per-frame-type traffic counters for the hot path. Counting a frame is two array increments; the
 * Prometheus counters read these arrays only when scraped, so no label set is hashed per frame.
 */
export class FrameStats {
  /** Indexed by frame type (1..13; 16 slots so any 4-bit index is in range). */
  readonly inFrames = new Float64Array(16);
  readonly inBytes = new Float64Array(16);
  readonly outFrames = new Float64Array(16);
  readonly outBytes = new Float64Array(16);

  /** Counts one received frame of `type`, `bytes` long including its header. */
  countIn(type: number, bytes: number): void {
    this.inFrames[type]! += 1;
    this.inBytes[type]! += bytes;
  }

  /** Counts `frames` sent frames of `type`, `bytes` long in all including their headers. */
  countOut(type: number, bytes: number, frames = 1): void {
    this.outFrames[type]! += frames;
    this.outBytes[type]! += bytes;
  }
}

/** Messages carried by each backend link, by endpoint; read at scrape time. */
export type BackendMessageSource = () => Iterable<[endpoint: string, counts: { out: number; in: number }]>;

/**
 * Every metric the proxy exports, in its own registry (so tests and several proxies in one process
 * never collide). Names follow Prometheus conventions: `livemux_` prefix, `_total` on counters,
 * base units (bytes). Label values are bounded, and none comes from what a client sends: code names
 * from the registry (`UNKNOWN` for any other code), frame-type names, priorities, reasons, limit
 * names, business names the routes know (`(unknown)` for any other) and endpoint names from the config.
 */
export interface Metrics {
  readonly registry: Registry;
  /** livemux_connections: client connections open now. */
  readonly connections: Gauge;
  /** livemux_connections_accepted_total. */
  readonly connectionsAccepted: Counter;
  /** livemux_connections_closed_total{code}: by close code name (NORMAL, HEARTBEAT_TIMEOUT, ...). */
  readonly connectionsClosed: Counter<'code'>;
  /** livemux_sessions{business}: sessions open now. */
  readonly sessions: Gauge<'business'>;
  /** livemux_sessions_opened_total{business,result}: OPEN outcomes; result is `ok` or the OPEN_FAIL code name. */
  readonly sessionsOpened: Counter<'business' | 'result'>;
  /** livemux_protocol_errors_total{code}: protocol faults detected, by code name. */
  readonly protocolErrors: Counter<'code'>;
  /** livemux_dropped_frames_total{reason,priority}: DATA frames dropped from outbound queues. */
  readonly drops: Counter<'reason' | 'priority'>;
  /** livemux_backend_stream_state{endpoint,state}: 1 for the link's current state, 0 for the others. */
  readonly backendStreamState: Gauge<'endpoint' | 'state'>;
  /**
   * livemux_backend_messages_total{endpoint,direction}: messages on backend links (out = events to the
   * backend, in = commands from it), read from the links at scrape time once {@link Metrics.setBackendMessageSource} is called.
   */
  readonly backendMessages: Counter<'endpoint' | 'direction'>;
  setBackendMessageSource(source: BackendMessageSource): void;
  /** livemux_limit_hits_total{limit}: refusals by the limit that caused them, named by its livemux.yaml path. */
  readonly limitHits: Counter<'limit'>;
  /** livemux_handshakes: connections accepted and not yet WELCOMEd. */
  readonly handshakes: Gauge;
  /** livemux_handshake_bytes: bytes held for those connections. */
  readonly handshakeBytes: Gauge;
  /** livemux_overload_state: 0 normal, 1 refusing new connections, 2 also shedding. */
  readonly overloadState: Gauge;
  /** livemux_endpoint_breaker_state{endpoint,state}: 1 for the breaker's current state (closed, open, half_open), 0 for the others. */
  readonly endpointBreakerState: Gauge<'endpoint' | 'state'>;
  /** livemux_health_checks_total{endpoint,result}: active health checks by result (ok, fail, timeout). */
  readonly healthChecks: Counter<'endpoint' | 'result'>;
  /** livemux_endpoint_healthy{endpoint}: 1 while the endpoint may receive new sessions (breaker closed, checks passing). */
  readonly endpointHealthy: Gauge<'endpoint'>;
  /** livemux_route_reloads_total{result}: ok (new table in effect) or invalid (last good kept). */
  readonly routeReloads: Counter<'result'>;
  /** livemux_routing_decisions_total{business,endpoint}: sessions routed, by where they went. */
  readonly routingDecisions: Counter<'business' | 'endpoint'>;
  /** livemux_sessions_relocated_total{reason,result}: open sessions moved (or closed) by a failure or reload. */
  readonly sessionsRelocated: Counter<'reason' | 'result'>;
  /** Feeds livemux_frames_{received,sent}_total{type} and livemux_{received,sent}_bytes_total{type}. */
  readonly frameStats: FrameStats;
  /** livemux_session_open_duration_seconds{business}: OPEN received → OPEN_OK queued (handshake wait included for OPENs sent before WELCOME). */
  readonly openDuration: SeriesHistogram<'business'>;
  /** livemux_backend_round_trip_seconds{endpoint}: each active health check's round trip to the endpoint. */
  readonly backendRoundTrip: SeriesHistogram<'endpoint'>;
  /** livemux_outbound_queue_wait_seconds{lane}: queued → handed to the socket, one series per outbound-queue lane (control, system, high, low). */
  readonly queueWait: readonly HistogramSeries[];
  /** livemux_fanout_delay_seconds: per Publish, its arrival from the backend → handed to every local subscriber. */
  readonly fanOutDelay: HistogramSeries;
  /** livemux_route_reload_duration_seconds{result}: reading, validating and applying routes.yaml. */
  readonly reloadDuration: SeriesHistogram<'result'>;
  /** livemux_heap_compaction_seconds: the pause of each compacting collection after a wave of connections (src/proxy/heap-compactor.ts). */
  readonly heapCompaction: HistogramSeries;
}

/** Histogram buckets, in seconds, from what each measures on a healthy proxy to what an SRE pages on. */
const BUCKETS = {
  /** Microseconds in the common case (routing is synchronous), up to a slow token check before WELCOME. */
  open: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
  /** A loopback or in-datacenter gRPC call, up to the check timeout. */
  roundTrip: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
  /** One event-loop turn normally; seconds for a slow consumer before it is dropped. */
  queueWait: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
  /** The rest of the turn plus a walk writing to a room's members: sub-ms, to a few hundred ms for 10,000. */
  fanOut: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
  /** Parse, validate, build the table, move sessions: milliseconds, seconds for very large tables. */
  reload: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
  /** A full collection of a heap holding tens of thousands of connections: tens to hundreds of ms. */
  compaction: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
} as const;

/** Outbound-queue lanes in order (OutboundQueue), as `lane` label values. */
export const QUEUE_LANES = ['control', 'system', 'high', 'low'] as const;

/** Creates the metrics of one proxy, with Node process metrics (`livemux_process_*`, `livemux_nodejs_*`). */
export function createMetrics(): Metrics {
  const registry = new Registry();
  collectProcessMetrics(registry, 'livemux_');
  const registers = [registry];
  const frameStats = new FrameStats();
  let backendMessageSource: BackendMessageSource | null = null;

  /** A counter labelled by frame type whose values are copied from a FrameStats array at scrape time. */
  const frameCounter = (name: string, help: string, values: Float64Array): void => {
    const counter: Counter<'type'> = new Counter({
      name,
      help,
      labelNames: ['type'],
      registers,
      collect() {
        counter.reset();
        for (let type = 1; type <= MAX_FRAME_TYPE; type++) counter.inc({ type: FRAME_TYPE_NAMES[type]! }, values[type]!);
      },
    });
  };
  frameCounter('livemux_frames_received_total', 'Frames received from clients, by frame type.', frameStats.inFrames);
  frameCounter('livemux_received_bytes_total', 'Bytes received from clients (headers included), by frame type.', frameStats.inBytes);
  frameCounter('livemux_frames_sent_total', 'Frames sent to clients, by frame type.', frameStats.outFrames);
  frameCounter('livemux_sent_bytes_total', 'Bytes sent to clients (headers included), by frame type.', frameStats.outBytes);
  const queueWait = new SeriesHistogram<'lane'>({
    name: 'livemux_outbound_queue_wait_seconds',
    help: 'Time a frame waited in a connection\'s outbound queue before it was handed to the socket, by queue lane.',
    labelNames: ['lane'],
    buckets: BUCKETS.queueWait,
    registers,
  });

  return {
    registry,
    connections: new Gauge({ name: 'livemux_connections', help: 'Client connections currently open.', registers }),
    connectionsAccepted: new Counter({
      name: 'livemux_connections_accepted_total',
      help: 'Client connections accepted.',
      registers,
    }),
    connectionsClosed: new Counter({
      name: 'livemux_connections_closed_total',
      help: 'Client connections closed, by close code name.',
      labelNames: ['code'],
      registers,
    }),
    sessions: new Gauge({
      name: 'livemux_sessions',
      help: 'Sessions currently open, by business.',
      labelNames: ['business'],
      registers,
    }),
    sessionsOpened: new Counter({
      name: 'livemux_sessions_opened_total',
      help: 'OPEN requests answered, by business and result (ok or the OPEN_FAIL code name).',
      labelNames: ['business', 'result'],
      registers,
    }),
    protocolErrors: new Counter({
      name: 'livemux_protocol_errors_total',
      help: 'Protocol violations detected, by code name.',
      labelNames: ['code'],
      registers,
    }),
    drops: new Counter({
      name: 'livemux_dropped_frames_total',
      help: 'DATA frames dropped from outbound queues, by reason and priority.',
      labelNames: ['reason', 'priority'],
      registers,
    }),
    backendStreamState: new Gauge({
      name: 'livemux_backend_stream_state',
      help: 'State of each backend link: 1 for the current state, 0 for the others.',
      labelNames: ['endpoint', 'state'],
      registers,
    }),
    backendMessages: new Counter({
      name: 'livemux_backend_messages_total',
      help: 'Messages on backend links, by endpoint and direction (out = events to the backend, in = commands from it).',
      labelNames: ['endpoint', 'direction'],
      registers,
      collect() {
        if (!backendMessageSource) return;
        this.reset();
        for (const [endpoint, counts] of backendMessageSource()) {
          this.inc({ endpoint, direction: 'out' }, counts.out);
          this.inc({ endpoint, direction: 'in' }, counts.in);
        }
      },
    }),
    setBackendMessageSource(source) {
      backendMessageSource = source;
    },
    limitHits: new Counter({
      name: 'livemux_limit_hits_total',
      help: 'Connections, frames and sessions refused by a limit, by the livemux.yaml path of that limit.',
      labelNames: ['limit'],
      registers,
    }),
    handshakes: new Gauge({ name: 'livemux_handshakes', help: 'Client connections accepted and not yet WELCOMEd.', registers }),
    handshakeBytes: new Gauge({
      name: 'livemux_handshake_bytes',
      help: 'Bytes held for client connections not yet WELCOMEd (partial frames, frames pipelined behind HELLO).',
      registers,
    }),
    overloadState: new Gauge({
      name: 'livemux_overload_state',
      help: 'Overload protection: 0 normal, 1 refusing new connections, 2 refusing and shedding the heaviest connections.',
      registers,
    }),
    endpointBreakerState: new Gauge({
      name: 'livemux_endpoint_breaker_state',
      help: 'Circuit breaker of each endpoint: 1 for the current state (closed, open, half_open), 0 for the others.',
      labelNames: ['endpoint', 'state'],
      registers,
    }),
    healthChecks: new Counter({
      name: 'livemux_health_checks_total',
      help: 'Active health checks of backend endpoints, by endpoint and result (ok, fail, timeout).',
      labelNames: ['endpoint', 'result'],
      registers,
    }),
    endpointHealthy: new Gauge({
      name: 'livemux_endpoint_healthy',
      help: 'Whether each endpoint may receive new sessions (1) or not (0): breaker closed and active checks passing.',
      labelNames: ['endpoint'],
      registers,
    }),
    routeReloads: new Counter({
      name: 'livemux_route_reloads_total',
      help: 'routes.yaml reloads by result: ok (new table in effect) or invalid (last good config kept).',
      labelNames: ['result'],
      registers,
    }),
    routingDecisions: new Counter({
      name: 'livemux_routing_decisions_total',
      help: 'New sessions routed, by business and chosen endpoint.',
      labelNames: ['business', 'endpoint'],
      registers,
    }),
    sessionsRelocated: new Counter({
      name: 'livemux_sessions_relocated_total',
      help: 'Open sessions moved to another endpoint or closed, by reason (endpoint_failed, endpoint_removed, business_disabled, business_removed, connect_failed, owner_recovered) and result (moved, closed).',
      labelNames: ['reason', 'result'],
      registers,
    }),
    frameStats,
    openDuration: new SeriesHistogram({
      name: 'livemux_session_open_duration_seconds',
      help: 'From an OPEN received to its OPEN_OK queued, by business.',
      labelNames: ['business'],
      buckets: BUCKETS.open,
      registers,
    }),
    backendRoundTrip: new SeriesHistogram({
      name: 'livemux_backend_round_trip_seconds',
      help: 'Round trip of each active health check to a backend endpoint (grpc.health.v1 Check, or a TCP connect for tcp pools).',
      labelNames: ['endpoint'],
      buckets: BUCKETS.roundTrip,
      registers,
    }),
    queueWait: QUEUE_LANES.map((lane) => queueWait.series({ lane })),
    fanOutDelay: new SeriesHistogram({
      name: 'livemux_fanout_delay_seconds',
      help: 'Per Publish: from its arrival from a backend until it has been handed to every local subscriber (written to its socket, or queued).',
      buckets: BUCKETS.fanOut,
      registers,
    }).series({}),
    reloadDuration: new SeriesHistogram({
      name: 'livemux_route_reload_duration_seconds',
      help: 'Time to read, validate and apply routes.yaml, by result (ok, invalid).',
      labelNames: ['result'],
      buckets: BUCKETS.reload,
      registers,
    }),
    heapCompaction: new SeriesHistogram({
      name: 'livemux_heap_compaction_seconds',
      help: 'Event-loop pause of each full compacting garbage collection run once a wave of new connections has passed (its _count: how many ran).',
      buckets: BUCKETS.compaction,
      registers,
    }).series({}),
  };
}
