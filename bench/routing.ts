import { getPolicy, policyNames } from '../src/routing/registry.js';
import type { WeightedEndpoint } from '../src/routing/types.js';
import { timed } from './timed.js';

/** Picks per second of one policy for one pool size. */
export interface PickerResult {
  policy: string;
  endpoints: number;
  picksPerSecond: number;
}

/** Distinct keys cycled through (a power of two, so the index wraps with a mask). */
const KEY_COUNT = 1 << 16;

/**
 * Picks per second of every registered policy for pools of 10 and 1000 endpoints of weight 1, all
 * healthy, on one core: the cost of the routing decision of an OPEN. Keys are random room ids made in
 * advance, so the figure is the pick itself (key hash, ring search or rotation, health callbacks),
 * not key building. Not a test: nothing here passes or fails on time.
 */
export function benchPickers(seconds = 0.5, sizes: readonly number[] = [10, 1000]): PickerResult[] {
  const keys = Array.from({ length: KEY_COUNT }, () => `room-${Math.floor(Math.random() * 2 ** 48).toString(36)}`);
  const isHealthy = (_endpoint: string): boolean => true;
  const results: PickerResult[] = [];
  let cursor = 0;
  for (const name of policyNames()) {
    for (const size of sizes) {
      const endpoints: WeightedEndpoint[] = Array.from({ length: size }, (_, i) => ({ address: `10.${(i >> 8) & 255}.${i & 255}.1:7101`, weight: 1 }));
      const picker = getPolicy(name)!.createPicker(endpoints);
      let misses = 0;
      const picksPerSecond = timed(seconds, () => {
        for (let i = 0; i < 1024; i++) if (picker.pick(keys[cursor++ & (KEY_COUNT - 1)]!, isHealthy) === null) misses++;
        return 1024;
      });
      if (misses > 0) throw new Error(`${name}: ${misses} picks found no endpoint with all healthy`);
      results.push({ policy: name, endpoints: size, picksPerSecond });
    }
  }
  return results;
}
