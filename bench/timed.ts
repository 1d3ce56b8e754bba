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
