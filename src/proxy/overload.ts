import { totalmem } from 'node:os';
import { type IntervalHistogram, monitorEventLoopDelay } from 'node:perf_hooks';
import { getHeapStatistics } from 'node:v8';
import type { ProxyConfig } from '../config/proxy-config.js';

/**
 * Overload protection in the spirit of Envoy's overload manager: resource monitors (memory, event-loop
 * lag) read on a fixed interval, and actions that switch on at thresholds.
 *
 *   NORMAL ──memory ≥ stop_accepting_at, or lag ≥ max_event_loop_lag_ms at two checks in a row──▶ REFUSING
 *   REFUSING ──memory ≥ shed_at, or lag ≥ 2 × max_event_loop_lag_ms at three checks in a row──▶ SHEDDING
 *   any ──every reading under its thresholds──▶ the state those readings call for
 *
 * REFUSING: new connections get ERROR OVERLOADED and /readyz answers 503, so a load balancer sends
 * clients elsewhere. SHEDDING: besides, at every check the connections making the proxy hold the most
 * are closed with OVERLOADED (see ProxyServer). Memory is the larger of the V8 heap's use of its limit
 * (what ran out when the process died of "JavaScript heap out of memory") and RSS against
 * `memory_limit_bytes` (default: the container's limit, else the machine's memory), since queued
 * frames live outside the heap.
 */
export const OverloadState = { NORMAL: 0, REFUSING: 1, SHEDDING: 2 } as const;
export type OverloadState = (typeof OverloadState)[keyof typeof OverloadState];

/** One reading of the monitored resources. */
export interface OverloadReading {
  /** Share of the memory limit in use, 0…1 (or more). */
  memory: number;
  /** Longest event-loop delay since the previous reading, ms. */
  lagMs: number;
}

export interface OverloadHooks {
  /** The state changed (after the change). */
  changed(state: OverloadState, reading: OverloadReading): void;
  /** A check found the proxy SHEDDING: close the heaviest connections. */
  shed(reading: OverloadReading): void;
  /** Every check, with its reading (metrics). */
  checked?(reading: OverloadReading): void;
}

/** Resolution of the event-loop delay histogram, ms. */
const LAG_RESOLUTION_MS = 10;

export class OverloadMonitor {
  private current: OverloadState = OverloadState.NORMAL;
  private timer: NodeJS.Timeout | null = null;
  private lagStreak = 0;
  private severeLagStreak = 0;
  private readonly histogram: IntervalHistogram;
  private readonly memoryLimit: number;

  constructor(
    private readonly settings: ProxyConfig['overload'],
    private readonly hooks: OverloadHooks,
    /** Replaces the process readings (tests). */
    private readonly read: (() => OverloadReading) | null = null,
  ) {
    this.histogram = monitorEventLoopDelay({ resolution: LAG_RESOLUTION_MS });
    this.memoryLimit = settings.memoryLimitBytes || constrainedMemory() || totalmem();
  }

  get state(): OverloadState {
    return this.current;
  }

  /** True while new connections are refused. */
  get refusing(): boolean {
    return this.current !== OverloadState.NORMAL;
  }

  start(): void {
    this.histogram.enable();
    this.timer = setInterval(() => this.check(), this.settings.checkIntervalMs).unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.histogram.disable();
  }

  /** Takes a reading and applies the state it calls for (public for tests). */
  check(): void {
    const reading = this.read ? this.read() : this.sample();
    const { stopAcceptingAt, shedAt, maxEventLoopLagMs } = this.settings;
    // Lag counts when it lasts: one long GC pause, or the machine lending the CPU elsewhere for a
    // moment, is not overload.
    const watched = maxEventLoopLagMs > 0;
    this.lagStreak = watched && reading.lagMs >= maxEventLoopLagMs ? this.lagStreak + 1 : 0;
    this.severeLagStreak = watched && reading.lagMs >= 2 * maxEventLoopLagMs ? this.severeLagStreak + 1 : 0;
    const next =
      reading.memory >= shedAt || this.severeLagStreak >= 3
        ? OverloadState.SHEDDING
        : reading.memory >= stopAcceptingAt || this.lagStreak >= 2
          ? OverloadState.REFUSING
          : OverloadState.NORMAL;
    this.hooks.checked?.(reading);
    if (next !== this.current) {
      this.current = next;
      this.hooks.changed(next, reading);
    }
    if (next === OverloadState.SHEDDING) this.hooks.shed(reading);
  }

  private sample(): OverloadReading {
    const heap = getHeapStatistics();
    const memory = Math.max(heap.used_heap_size / heap.heap_size_limit, process.memoryUsage.rss() / this.memoryLimit);
    // The histogram records how late its own timer ran; the first sample after a long block shows it.
    const lagMs = Math.max(0, this.histogram.max / 1e6 - LAG_RESOLUTION_MS);
    this.histogram.reset();
    return { memory, lagMs };
  }
}

/** The container's memory limit (cgroup), or 0 when there is none. */
function constrainedMemory(): number {
  const limit = (process as { constrainedMemory?: () => number | undefined }).constrainedMemory?.() ?? 0;
  // An unconstrained cgroup reports a huge number (2^63 or so): not a limit.
  return limit > 0 && limit < totalmem() * 4 ? limit : 0;
}
