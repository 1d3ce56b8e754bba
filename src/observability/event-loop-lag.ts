import { type IntervalHistogram, monitorEventLoopDelay } from 'node:perf_hooks';

/**
 * How late this process's event loop runs timers, sampled every 10 ms by libuv (no JS on the loop
 * is needed to measure it). `takeP99Ms` reads the p99 since the previous read and starts a new window,
 * so a caller that reads once per heartbeat reports that heartbeat's lag.
 */
export class EventLoopLag {
  private readonly histogram: IntervalHistogram = monitorEventLoopDelay({ resolution: 10 });

  constructor() {
    this.histogram.enable();
  }

  /** p99 event-loop delay since the last call (or since construction), in ms, minus the sampling interval. */
  takeP99Ms(): number {
    const ns = this.histogram.count > 0 ? this.histogram.percentile(99) : 0;
    this.histogram.reset();
    // A sample is the time between two 10 ms timer turns: an idle loop reads ~10 ms.
    return Math.max(0, Math.round((ns / 1e6 - 10) * 10) / 10);
  }

  stop(): void {
    this.histogram.disable();
  }
}
