import { getHeapStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/** V8's gc() as `--expose-gc` defines it (the options V8 11 takes). */
type V8Gc = (options?: { type?: 'major' | 'minor'; execution?: 'sync' | 'async'; flavor?: 'regular' | 'last-resort' }) => void;

/** How often the compactor looks at the connection count. */
export const WAVE_CHECK_MS = 5_000;
/** A wave is at least this many connections more than the lowest count since the last compaction… */
const WAVE_MIN = 2_000;
/** …and at least this share of that lowest count: a busy proxy is not compacted for a ripple. */
const WAVE_SHARE = 0.25;
/** It has passed when fewer than this many connections arrived in the last check period. */
const WAVE_QUIET = 50;

/** What one compaction did, for its log line. */
export interface Compaction {
  connections: number;
  durationMs: number;
  heapBefore: number;
  heapAfter: number;
}

/**
 * One full, compacting garbage collection after a wave of new connections has passed (issue 12's
 * footprint). A wave of handshakes (HELLO, JWT, OPEN, routing) leaves the old generation holding
 * garbage and free space between the connections that stay, about 1 KB per connection, which V8 would
 * give back at a time of its choosing: with several workers on a small machine, that slack is RSS.
 * Compacting once the wave is over returns it at once. It costs one pause of the event loop, measured in
 * BENCHMARKS.md ("Connections held") and logged; it never runs while connections keep arriving (a pause
 * mid-wave would only delay the wave), nor for ordinary churn (a wave is net growth of the count).
 */
export class HeapCompactor {
  private low = 0;
  private lastArrivals = 0;
  private readonly timer: NodeJS.Timeout;

  constructor(
    /** Connections open now, and arrived since the start (accepted, whether they stayed or not). */
    private readonly count: () => { open: number; arrived: number },
    private readonly compacted: (c: Compaction) => void,
    private readonly gc: V8Gc | null = exposedGc,
  ) {
    this.timer = setInterval(() => this.check(), WAVE_CHECK_MS).unref();
  }

  /** @internal One look: compacts when a wave has come and gone. True when it did. */
  check(): boolean {
    const { open, arrived } = this.count();
    const recent = arrived - this.lastArrivals;
    this.lastArrivals = arrived;
    this.low = Math.min(this.low, open);
    const grown = open - this.low;
    if (this.gc === null || recent >= WAVE_QUIET || grown < WAVE_MIN || grown < this.low * WAVE_SHARE) return false;
    this.low = open;
    const heapBefore = getHeapStatistics().total_heap_size;
    const started = performance.now();
    // 'last-resort' is V8's own memory-reducing collection (the one a low-memory notification runs):
    // it moves live objects off fragmented pages and releases the pages freed.
    this.gc({ type: 'major', execution: 'sync', flavor: 'last-resort' });
    this.compacted({ connections: open, durationMs: performance.now() - started, heapBefore, heapAfter: getHeapStatistics().total_heap_size });
    return true;
  }

  stop(): void {
    clearInterval(this.timer);
  }
}

/**
 * V8's gc() without `--expose-gc` on the command line: the flag, set at run time, defines it in
 * contexts made afterwards. Null if this Node refuses (the compactor then does nothing).
 */
export const exposedGc: V8Gc | null = (() => {
  try {
    setFlagsFromString('--expose-gc');
    const gc: unknown = runInNewContext('gc');
    return typeof gc === 'function' ? (gc as V8Gc) : null;
  } catch {
    return null;
  }
})();
