import type { Picker, PickerPolicy, WeightedEndpoint } from '../types.js';

/**
 * Smooth weighted round robin, as in nginx (ngx_http_upstream_round_robin.c, "smooth weighted
 * round-robin balancing", 2012). Each pick adds every healthy endpoint's weight to its running
 * `current`, chooses the largest `current`, and subtracts the healthy total from the winner.
 *
 * Worked example, weights a=5 b=1 c=1 (total 7), `current` before → after each pick:
 *   pick 1: (5,1,1) → a, (-2,1,1)     pick 2: (3,2,2) → a, (-4,2,2)
 *   pick 3: (1,3,3) → b, (1,-4,3)     pick 4: (6,-3,4) → a, (-1,-3,4)
 *   pick 5: (4,-2,5) → c, (4,-2,-2)   pick 6: (9,-1,-1) → a, (2,-1,-1)
 *   pick 7: (7,0,0) → a, (0,0,0)      — back to the start: a a b a c a a.
 * Unlike plain weighted RR (a a a a a b c) the heavy endpoint's picks are spread out, so a burst of
 * OPENs does not land on one backend. Unhealthy endpoints take no part in a round, so their share is
 * spread over the others in the same proportions; ties go to the endpoint listed first.
 *
 * O(endpoints) per pick (every endpoint's health is asked), which is fine for pools of tens to
 * hundreds of endpoints and sessions opened far less often than messages flow. The session's hash key
 * is ignored. The rotation counters are the picker's only changing state; the endpoint list and weights
 * are fixed when it is built.
 */
export class SmoothWeightedRoundRobinPicker implements Picker {
  private readonly addresses: readonly string[];
  private readonly weights: Int32Array;
  private readonly current: Float64Array;

  constructor(endpoints: readonly WeightedEndpoint[]) {
    this.addresses = Object.freeze(endpoints.map((e) => e.address));
    this.weights = Int32Array.from(endpoints, (e) => e.weight);
    this.current = new Float64Array(endpoints.length);
    Object.freeze(this);
  }

  pick(_key: string, isHealthy: (endpoint: string) => boolean): string | null {
    let best = -1;
    let total = 0;
    for (let i = 0; i < this.addresses.length; i++) {
      if (!isHealthy(this.addresses[i]!)) continue;
      const weight = this.weights[i]!;
      this.current[i]! += weight;
      total += weight;
      if (best < 0 || this.current[i]! > this.current[best]!) best = i;
    }
    if (best < 0) return null;
    this.current[best]! -= total;
    return this.addresses[best]!;
  }
}

/** The `round_robin` policy: smooth weighted round robin over healthy endpoints. */
export const roundRobinPolicy: PickerPolicy = Object.freeze({
  name: 'round_robin',
  createPicker: (endpoints: readonly WeightedEndpoint[]) => new SmoothWeightedRoundRobinPicker(endpoints),
});
