/**
 * Health of every backend endpoint the route table names: one opossum circuit breaker per endpoint,
 * active checks fired through it, and passive ejection from failures reported by the links.
 *
 * An endpoint is healthy when both hold:
 * - its breaker is CLOSED. HALF_OPEN counts as unhealthy: the half-open trial is the next active
 *   check (the probe), never a client session, so no session lands on an endpoint nobody has seen
 *   answer since it was ejected;
 * - its active checks are passing: `unhealthy_threshold` consecutive failed checks clear this flag,
 *   `healthy_threshold` consecutive good ones set it again. New endpoints start passing (the first
 *   check runs at once): for grpc pools the link must also be READY, which gates unreachable ones.
 *
 * The breaker, per endpoint (settings from its pool):
 *
 *   CLOSED ──error % over the rolling window ≥ threshold (≥ volume_threshold outcomes)──▶ OPEN
 *   CLOSED ──outlier_detection.consecutive_failures reported failures in a row──────────▶ OPEN
 *   OPEN ──reset_timeout_ms──▶ HALF_OPEN ──probe check ok──▶ CLOSED
 *                                  └───────probe check fails──▶ OPEN (another reset_timeout_ms)
 *
 * The rolling window counts every outcome while the breaker is closed: active checks and the links'
 * `reportFailure`/`reportSuccess` (session binds, stream losses), so the percentage also reacts to
 * real traffic, not only to a check every few seconds. While OPEN, checks are not sent (opossum fails
 * them fast; they are not counted as check results). On HALF_OPEN the probe is sent at once, also when
 * periodic checks are off (`interval_ms: 0`), so an ejected endpoint always gets its chance to return.
 */
import CircuitBreaker from 'opossum';
import type pino from 'pino';
import type { Metrics } from '../../observability/metrics.js';
import { createHealthProbe, HealthCheckError, type HealthCheckResult, type HealthProbe } from './health-check.js';

/** Breaker state names, as in snapshots and `livemux_endpoint_breaker_state{state}`. */
export type BreakerState = 'closed' | 'open' | 'half_open';
const BREAKER_STATES: readonly BreakerState[] = ['closed', 'open', 'half_open'];

/** `health_check` of a pool. `intervalMs: 0` turns periodic checks off. */
export interface HealthCheckSettings {
  readonly intervalMs: number;
  readonly timeoutMs: number;
  readonly unhealthyThreshold: number;
  readonly healthyThreshold: number;
}

/** `circuit_breaker` of a pool (opossum's options). */
export interface CircuitBreakerSettings {
  readonly errorThresholdPercentage: number;
  readonly volumeThreshold: number;
  readonly resetTimeoutMs: number;
  readonly rollingWindowMs: number;
}

/** The health-related part of a pool's config. */
export interface EndpointHealthSettings {
  readonly healthCheck: HealthCheckSettings;
  readonly circuitBreaker: CircuitBreakerSettings;
  /** `consecutiveFailures: 0` turns passive ejection off. */
  readonly outlierDetection: { readonly consecutiveFailures: number };
}

/** What the monitor needs of an endpoint; the route table's EndpointSpec is one. */
export interface MonitoredEndpoint {
  readonly address: string;
  readonly protocol: 'grpc' | 'tcp';
  readonly poolConfig: EndpointHealthSettings;
}

/** One endpoint's health, for the admin status page. */
export interface EndpointHealthStatus {
  healthy: boolean;
  breaker: BreakerState;
  /** When the last active check finished (ISO 8601), or null before the first. */
  lastCheck: string | null;
  /** Result of that check. */
  lastCheckResult: HealthCheckResult | null;
  /** Failures reported by links since the last success or breaker close (passive ejection counter). */
  consecutiveFailures: number;
  /** Failed active checks in a row. */
  consecutiveCheckFailures: number;
  /** Good active checks in a row (an endpoint failing its checks returns at `healthy_threshold`). */
  consecutiveCheckSuccesses: number;
}

/** The proxy's view of endpoint health (docs: routing design, "Health"). */
export interface EndpointHealth {
  /** Sync, O(1): breaker closed and active checks passing. Unknown endpoints are healthy (no evidence). */
  isHealthy(endpoint: string): boolean;
  /** Passive: a link stream error, a tcp connect failure. Ignored for unknown endpoints. */
  reportFailure(endpoint: string, reason: string): void;
  /** Passive: the endpoint served something; resets the consecutive-failure count. */
  reportSuccess(endpoint: string): void;
  /** `fn` runs exactly when `isHealthy(endpoint)` changes value (not on add or removal). */
  onChange(fn: (endpoint: string, healthy: boolean) => void): void;
  /** Adds and removes endpoints (closing their clients and timers) and applies changed pool settings. */
  reconcile(specs: readonly MonitoredEndpoint[]): void;
  snapshot(): Record<string, EndpointHealthStatus>;
  /** Stops every check and timer. Idempotent; `onChange` never fires afterwards. */
  close(): void;
}

/** Runs one recorded outcome through the breaker: an active check, or a passive report. */
type Outcome = () => Promise<void>;

const PASSIVE_SUCCESS: Outcome = () => Promise.resolve();

/** One endpoint's mutable state. */
interface Entry {
  spec: MonitoredEndpoint;
  breaker: CircuitBreaker<[Outcome], void>;
  probe: HealthProbe;
  /** Bumped whenever the breaker or probe is replaced or the entry removed: late results are ignored. */
  generation: number;
  timer: NodeJS.Timeout | null;
  checkInFlight: boolean;
  checksPassing: boolean;
  checkFailures: number;
  checkSuccesses: number;
  passiveFailures: number;
  healthy: boolean;
  lastCheck: string | null;
  lastCheckResult: HealthCheckResult | null;
}

/**
 * EndpointHealth with opossum breakers and grpc.health.v1 / TCP connect checks. Guarantees:
 * - `onChange` listeners run synchronously, once per change of `isHealthy`, in registration order; one
 *   that throws is logged and does not stop the others;
 * - checks of one endpoint never overlap; each ends within `timeout_ms`;
 * - every timer is unref'd (health checking alone keeps no process alive) and `close()` stops them all.
 */
export class EndpointHealthMonitor implements EndpointHealth {
  private readonly entries = new Map<string, Entry>();
  private readonly listeners: ((endpoint: string, healthy: boolean) => void)[] = [];
  private readonly log: pino.Logger;
  private readonly metrics: Metrics;
  private closed = false;

  constructor(opts: { logger: pino.Logger; metrics: Metrics }) {
    this.log = opts.logger.child({ component: 'endpoint-health' });
    this.metrics = opts.metrics;
  }

  isHealthy(endpoint: string): boolean {
    return this.entries.get(endpoint)?.healthy ?? true;
  }

  reportFailure(endpoint: string, reason: string): void {
    const entry = this.entries.get(endpoint);
    if (entry === undefined) return;
    entry.passiveFailures++;
    if (!entry.breaker.closed) return;
    const limit = entry.spec.poolConfig.outlierDetection.consecutiveFailures;
    if (limit > 0 && entry.passiveFailures >= limit) {
      this.log.warn({ endpoint, reason, consecutiveFailures: entry.passiveFailures }, 'endpoint ejected: consecutive failures');
      entry.breaker.open();
      return;
    }
    this.log.debug({ endpoint, reason, consecutiveFailures: entry.passiveFailures }, 'endpoint failure reported');
    this.record(entry, () => Promise.reject(new Error(reason)));
  }

  reportSuccess(endpoint: string): void {
    const entry = this.entries.get(endpoint);
    if (entry === undefined) return;
    entry.passiveFailures = 0;
    if (entry.breaker.closed) this.record(entry, PASSIVE_SUCCESS);
  }

  onChange(fn: (endpoint: string, healthy: boolean) => void): void {
    this.listeners.push(fn);
  }

  reconcile(specs: readonly MonitoredEndpoint[]): void {
    if (this.closed) return;
    const wanted = new Map<string, MonitoredEndpoint>();
    // The first spec naming an address wins, as in RouteTable.endpoints().
    for (const spec of specs) if (!wanted.has(spec.address)) wanted.set(spec.address, spec);
    for (const [address, entry] of this.entries) {
      if (!wanted.has(address)) this.remove(entry);
    }
    for (const spec of wanted.values()) {
      const entry = this.entries.get(spec.address);
      if (entry === undefined) this.add(spec);
      else this.apply(entry, spec);
    }
  }

  snapshot(): Record<string, EndpointHealthStatus> {
    const out: Record<string, EndpointHealthStatus> = {};
    for (const [address, entry] of this.entries) {
      out[address] = {
        healthy: entry.healthy,
        breaker: breakerState(entry.breaker),
        lastCheck: entry.lastCheck,
        lastCheckResult: entry.lastCheckResult,
        consecutiveFailures: entry.passiveFailures,
        consecutiveCheckFailures: entry.checkFailures,
        consecutiveCheckSuccesses: entry.checkSuccesses,
      };
    }
    return out;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const entry of this.entries.values()) this.remove(entry);
  }

  // ── endpoints ─────────────────────────────────────────────────────────────────────────────────

  private add(spec: MonitoredEndpoint): void {
    const entry: Entry = {
      spec,
      breaker: this.createBreaker(spec),
      probe: createHealthProbe(spec.address, spec.protocol),
      generation: 0,
      timer: null,
      checkInFlight: false,
      checksPassing: true,
      checkFailures: 0,
      checkSuccesses: 0,
      passiveFailures: 0,
      healthy: true,
      lastCheck: null,
      lastCheckResult: null,
    };
    this.entries.set(spec.address, entry);
    this.publishBreaker(entry);
    this.metrics.endpointHealthy.set({ endpoint: spec.address }, 1);
    this.log.info({ endpoint: spec.address, protocol: spec.protocol }, 'endpoint health: monitoring');
    if (spec.poolConfig.healthCheck.intervalMs > 0) this.check(entry);
  }

  private remove(entry: Entry): void {
    const endpoint = entry.spec.address;
    this.entries.delete(endpoint);
    entry.generation++;
    this.stopTimer(entry);
    entry.breaker.shutdown();
    entry.probe.close();
    for (const state of BREAKER_STATES) this.metrics.endpointBreakerState.remove({ endpoint, state });
    this.metrics.endpointHealthy.remove({ endpoint });
    this.metrics.backendRoundTrip.remove({ endpoint });
    this.log.info({ endpoint }, 'endpoint health: no longer monitored');
  }

  /** Applies a reloaded spec: a new probe if the protocol changed, a new breaker if it or the breaker settings did. */
  private apply(entry: Entry, spec: MonitoredEndpoint): void {
    const before = entry.spec;
    entry.spec = spec;
    const protocolChanged = before.protocol !== spec.protocol;
    // Another protocol is another service: its breaker starts afresh too (and the outcome of a check
    // cut short by closing the old probe lands in the old breaker, not the new one).
    const breakerChanged = protocolChanged || !sameSettings(before.poolConfig.circuitBreaker, spec.poolConfig.circuitBreaker);
    const checksChanged = !sameSettings(before.poolConfig.healthCheck, spec.poolConfig.healthCheck);
    if (!protocolChanged && !breakerChanged && !checksChanged) return;
    this.log.info({ endpoint: spec.address, protocolChanged, breakerChanged, checksChanged }, 'endpoint health: settings changed');
    if (breakerChanged) {
      // Results of checks sent with the old probe or through the old breaker no longer apply.
      entry.generation++;
      entry.checkInFlight = false;
    }
    if (protocolChanged) {
      entry.probe.close();
      entry.probe = createHealthProbe(spec.address, spec.protocol);
    }
    if (breakerChanged) {
      const old = entry.breaker;
      const wasClosed = old.closed;
      old.shutdown();
      entry.breaker = this.createBreaker(spec);
      // An ejected endpoint stays out: the new breaker starts its reset timeout afresh.
      if (!wasClosed) entry.breaker.open();
      this.publishBreaker(entry);
    }
    this.stopTimer(entry);
    if (spec.poolConfig.healthCheck.intervalMs > 0 && !entry.checkInFlight) this.check(entry);
    this.update(entry);
  }

  /** A breaker for `spec`; its events act on whichever entry holds it (none once replaced or removed). */
  private createBreaker(spec: MonitoredEndpoint): Entry['breaker'] {
    const cb = spec.poolConfig.circuitBreaker;
    const breaker = new CircuitBreaker<[Outcome], void>((outcome) => outcome(), {
      name: spec.address,
      // Checks enforce their own timeout, which also tells a timeout from a failure.
      timeout: false,
      errorThresholdPercentage: cb.errorThresholdPercentage,
      volumeThreshold: cb.volumeThreshold,
      resetTimeout: cb.resetTimeoutMs,
      rollingCountTimeout: cb.rollingWindowMs,
      rollingPercentilesEnabled: false,
      enableSnapshots: false,
    });
    const owner = (): Entry | undefined => {
      const entry = this.entries.get(spec.address);
      return entry?.breaker === breaker ? entry : undefined;
    };
    breaker.on('open', () => {
      const entry = owner();
      if (entry) this.onBreaker(entry);
    });
    breaker.on('close', () => {
      const entry = owner();
      if (!entry) return;
      // A closed breaker is a fresh start for passive ejection.
      entry.passiveFailures = 0;
      this.onBreaker(entry);
    });
    breaker.on('halfOpen', () => {
      const entry = owner();
      if (!entry) return;
      this.onBreaker(entry);
      // The probe: sent now rather than at the next tick, and even when periodic checks are off.
      if (!entry.checkInFlight) {
        this.stopTimer(entry);
        this.check(entry);
      }
    });
    return breaker;
  }

  private onBreaker(entry: Entry): void {
    const state = breakerState(entry.breaker);
    this.log[state === 'closed' ? 'info' : 'warn']({ endpoint: entry.spec.address, breaker: state }, 'endpoint breaker state');
    this.publishBreaker(entry);
    this.update(entry);
  }

  // ── active checks ─────────────────────────────────────────────────────────────────────────────

  /** Sends one check through the breaker, then schedules the next. */
  private check(entry: Entry): void {
    const breaker = entry.breaker;
    const settings = entry.spec.poolConfig.healthCheck;
    if (breaker.opened) {
      // Fast-failed by opossum until HALF_OPEN, which sends the probe itself.
      this.schedule(entry, settings.intervalMs);
      return;
    }
    const generation = entry.generation;
    const started = Date.now();
    const sent = performance.now();
    const probe = entry.probe;
    entry.checkInFlight = true;
    breaker.fire(() => probe.check(settings.timeoutMs)).then(
      () => {
        // Only answered checks: a timeout measures the timeout, a refusal nothing.
        this.metrics.backendRoundTrip.series({ endpoint: entry.spec.address }).observe((performance.now() - sent) / 1000);
        this.onCheckResult(entry, generation, started, 'ok', null);
      },
      (err: unknown) => {
        // EOPENBREAKER: another trial already holds the half-open slot; not a check of the endpoint.
        const rejected = (err as { code?: unknown }).code === 'EOPENBREAKER';
        const result = err instanceof HealthCheckError ? err.result : 'fail';
        this.onCheckResult(entry, generation, started, rejected ? null : result, err);
      },
    );
  }

  private onCheckResult(entry: Entry, generation: number, started: number, result: HealthCheckResult | null, err: unknown): void {
    if (generation !== entry.generation || this.closed) return;
    entry.checkInFlight = false;
    const endpoint = entry.spec.address;
    const settings = entry.spec.poolConfig.healthCheck;
    if (result !== null) {
      this.metrics.healthChecks.inc({ endpoint, result });
      entry.lastCheck = new Date().toISOString();
      entry.lastCheckResult = result;
      if (result === 'ok') {
        entry.checkFailures = 0;
        entry.checkSuccesses++;
        if (!entry.checksPassing && entry.checkSuccesses >= settings.healthyThreshold) entry.checksPassing = true;
      } else {
        entry.checkSuccesses = 0;
        entry.checkFailures++;
        if (entry.checksPassing && entry.checkFailures >= settings.unhealthyThreshold) entry.checksPassing = false;
        this.log.debug({ endpoint, result, err: errorMessage(err), consecutive: entry.checkFailures }, 'health check failed');
      }
      this.update(entry);
    }
    this.schedule(entry, settings.intervalMs - (Date.now() - started));
  }

  private schedule(entry: Entry, delayMs: number): void {
    this.stopTimer(entry);
    if (entry.spec.poolConfig.healthCheck.intervalMs <= 0 || !this.entries.has(entry.spec.address)) return;
    entry.timer = setTimeout(() => {
      entry.timer = null;
      this.check(entry);
    }, Math.max(0, delayMs));
    entry.timer.unref();
  }

  private stopTimer(entry: Entry): void {
    if (entry.timer !== null) {
      clearTimeout(entry.timer);
      entry.timer = null;
    }
  }

  // ── outcomes and transitions ──────────────────────────────────────────────────────────────────

  /** Feeds a passive outcome into the breaker's rolling window (which may open it). */
  private record(entry: Entry, outcome: Outcome): void {
    // Rejections are the recorded failures themselves; opossum has already counted them.
    entry.breaker.fire(outcome).catch(() => {});
  }

  /** Recomputes `healthy`; the single place where it changes, so `onChange` fires exactly on transitions. */
  private update(entry: Entry): void {
    if (this.closed) return;
    const healthy = entry.breaker.closed && entry.checksPassing;
    if (healthy === entry.healthy) return;
    entry.healthy = healthy;
    const endpoint = entry.spec.address;
    this.metrics.endpointHealthy.set({ endpoint }, healthy ? 1 : 0);
    this.log[healthy ? 'info' : 'warn'](
      { endpoint, healthy, breaker: breakerState(entry.breaker), checksPassing: entry.checksPassing },
      'endpoint health changed',
    );
    for (const fn of this.listeners) {
      try {
        fn(endpoint, healthy);
      } catch (err) {
        this.log.error({ err, endpoint }, 'endpoint health: onChange listener threw');
      }
    }
  }

  private publishBreaker(entry: Entry): void {
    const current = breakerState(entry.breaker);
    for (const state of BREAKER_STATES) {
      this.metrics.endpointBreakerState.set({ endpoint: entry.spec.address, state }, state === current ? 1 : 0);
    }
  }
}

function breakerState(breaker: CircuitBreaker<[Outcome], void>): BreakerState {
  if (breaker.halfOpen) return 'half_open';
  return breaker.opened ? 'open' : 'closed';
}

/** Shallow equality of two flat settings objects. */
function sameSettings<T extends object>(a: T, b: T): boolean {
  const keys = Object.keys(a) as (keyof T)[];
  return keys.length === Object.keys(b).length && keys.every((key) => a[key] === b[key]);
}

function errorMessage(err: unknown): string | undefined {
  return err instanceof Error ? err.message : err === null ? undefined : String(err);
}
