import { murmur3String } from '../hash.js';
import type { Picker, PickerPolicy, WeightedEndpoint } from '../types.js';

/**
 * The `hash` policy: the key's hash modulo the healthy endpoints, weights honoured by giving each
 * endpoint `weight` consecutive slots.
 *
 * The endpoints are ordered by address (so reordering the list in routes.yaml changes nothing) and
 * laid out as slots, each endpoint repeated weight times; a key goes to slot
 * `murmur3(key) mod (number of healthy slots)`, counting only the slots of healthy endpoints.
 *
 * Worked example: endpoints 10.0.0.1 (weight 1), 10.0.0.2 (weight 2), 10.0.0.3 (weight 1) give the
 * slots [.1, .2, .2, .3]. The key "room-42" hashes to 0x41a958b2 = 1101617330; 1101617330 mod 4 = 2,
 * so slot 2: 10.0.0.2. With 10.0.0.2 down the healthy slots are [.1, .3]; 1101617330 mod 2 = 0, so
 * 10.0.0.1.
 *
 * The trade-off against `consistent_hash`: the mapping is perfectly even (exactly the weight's share
 * of the hash space) and needs no table, but when the healthy set changes, the modulus changes and
 * most keys move, not just the failed endpoint's: going from 10 to 9 healthy endpoints moves about
 * 90 % of all keys (test/unit/modulo-hash.test.ts measures it). Use it when sessions are cheap to move
 * and the pool rarely changes; use consistent_hash when a key's endpoint holds state worth keeping.
 *
 * Slots are not materialised: cumulative weights are precomputed and the slot is found by a binary
 * search when every endpoint is healthy, or by one pass over the healthy ones otherwise. Every pick
 * asks every endpoint's health once (the modulus depends on all of them): O(endpoints).
 */
export class ModuloHashPicker implements Picker {
  /** Addresses in ascending order. */
  private readonly addresses: readonly string[];
  private readonly weights: Uint32Array;
  /** `ends[i]`: one past the last slot of endpoint i when all are healthy. */
  private readonly ends: Float64Array;
  private readonly totalWeight: number;
  /** Scratch for one pick: which endpoints are healthy (avoids asking twice and allocating). */
  private readonly healthy: Uint8Array;

  constructor(endpoints: readonly WeightedEndpoint[]) {
    const sorted = [...endpoints].sort((a, b) => (a.address < b.address ? -1 : a.address > b.address ? 1 : 0));
    this.addresses = Object.freeze(sorted.map((e) => e.address));
    this.weights = Uint32Array.from(sorted, (e) => e.weight);
    this.ends = new Float64Array(sorted.length);
    let total = 0;
    sorted.forEach((e, i) => {
      total += e.weight;
      this.ends[i] = total;
    });
    this.totalWeight = total;
    this.healthy = new Uint8Array(sorted.length);
    Object.freeze(this);
  }

  pick(key: string, isHealthy: (endpoint: string) => boolean): string | null {
    const { addresses, weights, healthy } = this;
    const n = addresses.length;
    let healthyWeight = 0;
    for (let i = 0; i < n; i++) {
      const ok = isHealthy(addresses[i]!);
      healthy[i] = ok ? 1 : 0;
      if (ok) healthyWeight += weights[i]!;
    }
    if (healthyWeight === 0) return null;
    const hash = murmur3String(key);
    if (healthyWeight === this.totalWeight) {
      const slot = hash % healthyWeight;
      // First endpoint whose range ends after the slot.
      let lo = 0;
      let hi = n - 1;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if (this.ends[mid]! > slot) hi = mid;
        else lo = mid + 1;
      }
      return addresses[lo]!;
    }
    let slot = hash % healthyWeight;
    for (let i = 0; i < n; i++) {
      if (healthy[i] === 0) continue;
      const weight = weights[i]!;
      if (slot < weight) return addresses[i]!;
      slot -= weight;
    }
    return null; // unreachable: the slots of healthy endpoints add up to healthyWeight
  }
}

/** The `hash` policy: hash(key) modulo the healthy endpoints' slots (see {@link ModuloHashPicker}). */
export const moduloHashPolicy: PickerPolicy = Object.freeze({
  name: 'hash',
  createPicker: (endpoints: readonly WeightedEndpoint[]) => new ModuloHashPicker(endpoints),
});
