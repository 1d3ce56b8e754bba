/**
 * Runs `fn` repeatedly for `seconds` after a short warm-up (so the JIT has settled) and returns the
 * units per second, where each call reports how many units it did.
 */
export function timed(seconds: number, fn: () => number, warmUpMs = 200): number {
  const warm = performance.now() + warmUpMs;
  while (performance.now() < warm) fn();
  let units = 0;
  const start = performance.now();
  const end = start + seconds * 1000;
  let now = start;
  while (now < end) {
    units += fn();
    now = performance.now();
  }
  return units / ((now - start) / 1000);
}

/**
 * The JSON line a round-trip load prints (bench/echo-load.ts, bench/passthrough-client.ts): round trips
 * per second over `seconds`, the median and 99th percentile of `latenciesMs` (sorted here), and `extra`
 * figures of the load (e.g. the generator's own CPU per round trip).
 */
export function roundTripLine(trips: number, seconds: number, latenciesMs: number[], extra: Record<string, number> = {}): string {
  latenciesMs.sort((a, b) => a - b);
  const pct = (q: number): number => latenciesMs[Math.min(latenciesMs.length - 1, Math.floor(q * latenciesMs.length))] ?? NaN;
  return JSON.stringify({ roundTrips: trips, roundTripsPerSecond: trips / seconds, p50Ms: pct(0.5), p99Ms: pct(0.99), ...extra });
}
