import cluster, { type Worker } from 'node:cluster';
import net from 'node:net';
import type { Logger } from 'pino';
import { AggregatorRegistry, Counter, Gauge, type PrometheusContentType, collectDefaultMetrics } from 'prom-client';
import type { ProxyConfig } from '../../config/proxy-config.js';
import { DispatchRegistration } from '../../dispatch/registration.js';
import { type AdminServer, startAdminServer } from '../../observability/admin-server.js';
import { createLogger } from '../../observability/logger.js';
import { LivemuxError } from '../../protocol/errors.js';
import { Backoff } from '../../util/backoff.js';
import { HeapCompactor } from '../heap-compactor.js';
import { type BoundAddress, redactedConfig } from '../server.js';
import { type WorkerLoad, leastConnections } from './balancer.js';
import { type FromWorker, type ToWorker, WORKER_ENV, type WorkerQuestion, isLivemuxMessage } from './messages.js';

/** A worker that lived at least this long is replaced at once; one that died sooner, after a backoff. */
const STABLE_AFTER_MS = 10_000;
/** How long /status and /config wait for a worker's answer. */
const ANSWER_TIMEOUT_MS = 2_000;
/** After the drain deadline, how long workers get to exit before they are killed. */
const EXIT_GRACE_MS = 10_000;
/**
 * glibc malloc arenas a worker may use (MALLOC_ARENA_MAX, unless set in livemux's own environment). By
 * default every thread that mallocs (V8's garbage-collector helpers, libuv's pool running WebCrypto's
 * HMAC for each HELLO's JWT) gets an arena of its own, up to 8 per core; what a connect wave leaves in
 * them stays resident in each worker. A worker's JavaScript and sockets live on one thread: two arenas
 * (the main one and one the helpers share) serve it.
 */
const WORKER_MALLOC_ARENAS = '2';

/** One worker slot: the process in it now, and what the primary knows of it. */
interface Slot extends WorkerLoad {
  readonly index: number;
  worker: Worker;
  proxyId: string;
  /** Replacements so far in this slot. */
  generation: number;
  startedAt: number;
  ready: boolean;
  eventLoopLagMs: number;
}

/**
 * The primary of `livemux start --workers N`: owns the client listener, the admin port and the dispatch
 * registration; each worker (src/proxy/workers/worker.ts, forked with node:cluster) is a whole proxy.
 *
 * The primary accepts every connection itself, paused before a byte is read, and hands the socket to
 * the worker with the fewest open connections (see balancer.ts for why not node:cluster's scheduling);
 * TLS and the PROXY protocol header are the worker's, as in a single process. Its admin port speaks for
 * the whole proxy: /metrics aggregated over the workers with prom-client's AggregatorRegistry, /status
 * summed from their answers, readiness from their reports, /log-level and /drain forwarded to every
 * worker. A worker that dies is replaced in its slot (its clients reconnect and are placed on the
 * emptiest workers, the replacement first); SIGTERM drains every worker; SIGHUP reaches every worker.
 */
export class ProxyPrimary {
  private readonly slots: Slot[] = [];
  private readonly listener: net.Server;
  private readonly registry = new ClusterRegistry();
  private readonly restarts: Counter;
  private readonly handoffsRefused: Counter;
  private admin: AdminServer | null = null;
  private registration: DispatchRegistration | null = null;
  private draining = false;
  private stopping = false;
  /** Connections handed to workers since the start, and what gives back the heap a wave of them leaves. */
  private handedOff = 0;
  private readonly compactor: HeapCompactor;
  private readonly restartBackoff = new Backoff({ initialMs: 100, maxMs: 10_000, jitter: 'equal' });
  private requests = 0;
  private readonly answerWaiters = new Map<number, (body: object) => void>();

  private constructor(
    private readonly config: ProxyConfig,
    private readonly workerCount: number,
    private readonly logger: Logger,
  ) {
    collectDefaultMetrics({ register: this.registry, prefix: 'livemux_primary_' });
    const registers = [this.registry];
    const slots = this.slots;
    new Gauge({
      name: 'livemux_workers',
      help: 'Worker processes taking connections now.',
      registers,
      collect() {
        this.set(slots.filter((s) => s.accepting).length);
      },
    });
    this.restarts = new Counter({ name: 'livemux_worker_restarts_total', help: 'Workers that died and were replaced.', registers });
    this.handoffsRefused = new Counter({
      name: 'livemux_handoffs_refused_total',
      help: 'Connections the primary accepted but closed because no worker was taking connections.',
      registers,
    });
    this.listener = net.createServer({ pauseOnConnect: true }, (socket) => this.handOff(socket));
    // The primary keeps no connection, but handing a wave of them on grows its young generation and
    // leaves garbage (38 MB over 100,000 measured): it gives that back once the wave has passed, as workers do.
    this.compactor = new HeapCompactor(
      () => ({ open: this.slots.reduce((n, s) => n + s.reported + (s.handed - s.receivedAtReport), 0), arrived: this.handedOff }),
      ({ connections, durationMs }) => this.logger.info({ connections, durationMs: Math.round(durationMs) }, 'heap compacted after a wave of connections'),
    );
    cluster.on('message', (worker, message) => this.onMessage(worker, message));
  }

  /** Forks the workers, waits until each is ready, then listens, serves admin and registers. */
  static async start(config: ProxyConfig, workers: number): Promise<ProxyPrimary> {
    const logger = createLogger({ level: config.logLevel, proxyId: config.proxyId });
    const primary = new ProxyPrimary(config, workers, logger);
    await Promise.all(Array.from({ length: workers }, (_, i) => primary.fork(i, 0)));
    await primary.listen();
    return primary;
  }

  /** Where clients connect. */
  get address(): BoundAddress {
    const a = this.listener.address() as net.AddressInfo;
    return { host: a.address, port: a.port };
  }

  get adminPort(): number | null {
    return this.admin?.port ?? null;
  }

  /** Tells every worker to re-read routes.yaml now (SIGHUP); `trigger` is what their logs say caused it. */
  reloadRoutes(trigger = 'signal'): void {
    for (const s of this.slots) this.tell(s, { livemux: 'reload', trigger });
  }

  /**
   * Stops accepting, marks the registration draining, and drains every worker (GOAWAY to every client,
   * sessions finish until the drain deadline); the workers stay up until {@link close}. Idempotent.
   */
  drain(): void {
    if (this.draining) return;
    this.draining = true;
    this.listener.close();
    this.logger.info({ workers: this.slots.length }, 'draining every worker');
    void this.registration?.setDraining();
    for (const s of this.slots) {
      s.accepting = false;
      this.tell(s, { livemux: 'drain' });
    }
  }

  /** Drains, then stops every worker; resolves once every worker has exited. Idempotent. */
  async close(): Promise<void> {
    this.drain();
    if (!this.stopping) {
      this.stopping = true;
      for (const s of this.slots) this.tell(s, { livemux: 'stop' });
    }
    const exits = this.slots.filter((s) => !s.worker.isDead()).map((s) => new Promise((resolve) => s.worker.once('exit', resolve)));
    const deadline = setTimeout(() => {
      for (const s of this.slots) if (!s.worker.isDead()) s.worker.process.kill('SIGKILL');
    }, this.config.timeouts.drainMs + EXIT_GRACE_MS);
    await Promise.all(exits);
    clearTimeout(deadline);
    this.compactor.stop();
    await this.registration?.close();
    await this.admin?.close();
    this.logger.info('livemux stopped');
  }

  /** Readiness for /readyz: not draining, and a worker taking connections with a backend stream up. */
  get ready(): boolean {
    return !this.draining && this.slots.some((s) => s.accepting && s.ready);
  }

  /**
   * Live state for /status, in the shape of a single proxy's (so the status page reads it the same):
   * counts and totals summed over the workers, routes and endpoint health as the first worker to answer
   * sees them, each endpoint's stream state per worker where they differ; and `perWorker`, each worker's
   * own status.
   */
  async status(): Promise<object> {
    const perWorker = await Promise.all(
      this.slots.map(async (s) => {
        const status = s.worker.isDead() ? null : await this.ask(s, 'status');
        return { slot: s.index, pid: s.worker.process.pid, proxyId: s.proxyId, generation: s.generation, accepting: s.accepting, ...(status ?? { error: 'no answer' }) };
      }),
    );
    const answered = perWorker.filter((w): w is typeof w & WorkerStatus => !('error' in w));
    return {
      proxyId: this.config.proxyId,
      ready: this.ready,
      draining: this.draining,
      logLevel: this.logger.level,
      workers: perWorker.length,
      connections: sumOf(answered.map((w) => w.connections)),
      sessions: sumOf(answered.map((w) => w.sessions)),
      sessionsByBusiness: sumByKey(answered.map((w) => w.sessionsByBusiness)),
      totals: sumByKey(answered.map((w) => w.totals)),
      routes: answered[0]?.routes ?? null,
      backends: streamStates(answered.map((w) => w.backends)),
      health: answered[0]?.health ?? {},
      perWorker,
    };
  }

  /** /config: the configuration the primary was started with, and the routes table of a worker. */
  async effectiveConfig(): Promise<object> {
    const slot = this.slots.find((s) => s.accepting) ?? this.slots.find((s) => !s.worker.isDead());
    const worker = slot ? ((await this.ask(slot, 'config')) as { routes?: object } | null) : null;
    return { ...redactedConfig(this.config), workers: this.workerCount, routes: worker?.routes ?? null };
  }

  private async listen(): Promise<void> {
    const { listen, admin, dispatch } = this.config;
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
        metrics: { registry: this.registry },
        isReady: () => this.ready,
        status: () => this.status(),
        control: {
          logger: this.logLevel(),
          config: () => this.effectiveConfig(),
          drain: () => this.drain(),
        },
      });
    }
    const { host, port } = this.address;
    if (dispatch) {
      this.registration = await DispatchRegistration.start({
        redisUrl: dispatch.redisUrl,
        cluster: dispatch.cluster,
        id: this.config.proxyId,
        address: dispatch.publicAddress ?? `${host.includes(':') ? `[${host}]` : host}:${port}`,
        workers: this.workerCount,
        heartbeatMs: dispatch.heartbeatMs,
        ttlMs: dispatch.ttlMs,
        load: () => ({
          connections: this.slots.reduce((n, s) => n + s.reported + (s.handed - s.receivedAtReport), 0),
          eventLoopLagMs: Math.max(0, ...this.slots.map((s) => s.eventLoopLagMs)),
        }),
        logger: this.logger,
      });
    }
    this.logger.info({ address: host, port, admin: this.adminPort, workers: this.workerCount }, 'livemux listening');
  }

  /** The log level /log-level reads and sets: the primary's, and every worker's with it. */
  private logLevel(): { level: string } {
    const primary = this;
    return {
      get level() {
        return primary.logger.level;
      },
      set level(level: string) {
        primary.logger.level = level;
        for (const s of primary.slots) primary.tell(s, { livemux: 'log-level', level });
      },
    };
  }

  /** Starts a worker in slot `index`; resolves once it is ready, rejects if it exits first. */
  private fork(index: number, generation: number): Promise<void> {
    const proxyId = `${this.config.proxyId}-w${index}${generation > 0 ? `.${generation}` : ''}`;
    const worker = cluster.fork({
      [WORKER_ENV.index]: String(index),
      [WORKER_ENV.proxyId]: proxyId,
      [WORKER_ENV.logLevel]: this.logger.level,
      MALLOC_ARENA_MAX: process.env.MALLOC_ARENA_MAX ?? WORKER_MALLOC_ARENAS,
    });
    const slot: Slot = {
      index,
      worker,
      proxyId,
      generation,
      startedAt: performance.now(),
      ready: false,
      eventLoopLagMs: 0,
      reported: 0,
      receivedAtReport: 0,
      handed: 0,
      accepting: false,
    };
    this.slots[index] = slot;
    return new Promise((resolve, reject) => {
      const onExit = (code: number | null, signal: string | null): void => {
        worker.off('message', onReady);
        reject(new LivemuxError('ERR_WORKER', `worker ${index} exited (${signal ?? code}) before it was ready`));
      };
      const onReady = (message: unknown): void => {
        if (!isLivemuxMessage(message) || message.livemux !== 'ready') return;
        worker.off('message', onReady);
        worker.off('exit', onExit);
        slot.accepting = true;
        worker.once('exit', (code, signal) => this.workerExited(slot, code, signal));
        resolve();
      };
      worker.once('exit', onExit);
      worker.on('message', onReady);
    });
  }

  private workerExited(slot: Slot, code: number | null, signal: string | null): void {
    slot.accepting = false;
    if (this.draining || this.slots[slot.index] !== slot) return;
    const livedMs = performance.now() - slot.startedAt;
    if (livedMs >= STABLE_AFTER_MS) this.restartBackoff.reset();
    const delayMs = livedMs >= STABLE_AFTER_MS ? 0 : this.restartBackoff.next();
    this.restarts.inc();
    this.logger.error({ slot: slot.index, proxyId: slot.proxyId, workerPid: slot.worker.process.pid, code, signal, restartInMs: delayMs }, 'worker died; replacing it');
    setTimeout(() => {
      if (this.draining) return;
      this.fork(slot.index, slot.generation + 1).catch((err: Error) => {
        this.logger.error({ slot: slot.index, err: err.message }, 'replacement worker failed to start');
      });
    }, delayMs);
  }

  private handOff(socket: net.Socket): void {
    const i = leastConnections(this.slots);
    if (i < 0 || this.draining) {
      this.handoffsRefused.inc();
      socket.destroy();
      return;
    }
    const slot = this.slots[i]!;
    slot.handed++;
    this.handedOff++;
    // keepOpen false: once sent, the primary's copy of the socket is closed; the worker owns it.
    slot.worker.send({ livemux: 'conn' } satisfies ToWorker, socket, { keepOpen: false }, (err) => {
      if (err) socket.destroy();
    });
  }

  private onMessage(worker: Worker, message: unknown): void {
    if (!isLivemuxMessage(message)) return;
    const slot = this.slots.find((s) => s.worker === worker);
    if (!slot) return;
    const m = message as FromWorker;
    if (m.livemux === 'load') {
      slot.reported = m.connections;
      slot.receivedAtReport = m.received;
      slot.ready = m.ready;
      slot.eventLoopLagMs = m.eventLoopLagMs;
    } else if (m.livemux === 'answer') {
      this.answerWaiters.get(m.request)?.(m.body);
    }
  }

  /** A worker's answer (its /status or /config document), or null if it does not answer in time. */
  private ask(slot: Slot, what: WorkerQuestion): Promise<object | null> {
    const request = ++this.requests;
    return new Promise((resolve) => {
      const timer = setTimeout(() => done(null), ANSWER_TIMEOUT_MS);
      const done = (body: object | null): void => {
        clearTimeout(timer);
        this.answerWaiters.delete(request);
        resolve(body);
      };
      this.answerWaiters.set(request, done);
      this.tell(slot, { livemux: 'ask', request, what });
    });
  }

  private tell(slot: Slot, message: ToWorker): void {
    if (slot.worker.isConnected()) slot.worker.send(message);
  }
}

/**
 * The primary's /metrics: its own metrics (workers, restarts, its process under `livemux_primary_`)
 * followed by every worker's, aggregated by prom-client (counters and gauges summed over workers).
 */
class ClusterRegistry extends AggregatorRegistry<PrometheusContentType> {
  override async metrics(): Promise<string> {
    return `${await super.metrics()}\n${await this.clusterMetrics()}`;
  }
}

/** What the primary reads of a worker's /status (ProxyServer.status). */
interface WorkerStatus {
  connections: number;
  sessions: number;
  sessionsByBusiness: Record<string, number>;
  totals: Record<string, number>;
  routes: object;
  backends: Record<string, string>;
  health: object;
}

function sumOf(values: number[]): number {
  return values.reduce((a, b) => a + b, 0);
}

/** Per key, the sum over `records` (a key missing from one counts 0 there). */
function sumByKey(records: Record<string, number>[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const r of records) for (const [k, v] of Object.entries(r)) out[k] = (out[k] ?? 0) + v;
  return out;
}

/**
 * Each endpoint's stream state over the workers (each has its own stream): the state when they agree,
 * else how many workers are in each, e.g. "ready ×2, connecting ×1".
 */
function streamStates(perWorker: Record<string, string>[]): Record<string, string> {
  const counts = new Map<string, Map<string, number>>();
  for (const states of perWorker) {
    for (const [endpoint, state] of Object.entries(states)) {
      const byState = counts.get(endpoint) ?? counts.set(endpoint, new Map()).get(endpoint)!;
      byState.set(state, (byState.get(state) ?? 0) + 1);
    }
  }
  const out: Record<string, string> = {};
  for (const [endpoint, byState] of counts) {
    out[endpoint] = byState.size === 1 && [...byState.values()][0] === perWorker.length ? [...byState.keys()][0]! : [...byState].map(([state, n]) => `${state} ×${n}`).join(', ');
  }
  return out;
}
