import { LivemuxError } from '../../protocol/errors.js';
import { murmur3Int, murmur3String } from '../hash.js';
import type { Picker, PickerPolicy, WeightedEndpoint } from '../types.js';

/**
 * The `consistent_hash` policy: a hash ring with virtual nodes ("ketama"; Karger et al., "Consistent
 * hashing and random trees", STOC 1997), built as Envoy's ring_hash load balancer builds it
 * (source/extensions/load_balancing_policies/ring_hash/ring_hash_lb.cc): every endpoint is placed on
 * a 32-bit ring many times, in proportion to its weight; a key belongs to the first node at or after
 * its own hash, wrapping past the top.
 *
 * Worked example (positions shortened to 0-255 for the example; real ones are 32-bit). Endpoints a,
 * b, c with two nodes each, sorted by position:
 *
 *     a#0=12   b#0=40   c#0=77   a#1=130   c#1=181   b#1=230
 *
 *   - a key hashing to 100: the first node at or after 100 is a#1 (130), so a;
 *   - a key hashing to 240: nothing at or after 240, wrap to a#0 (12), so a;
 *   - b down: a key at 35 meets b#0 (40), skips it and walks on to c#0 (77), so c. Only b's keys
 *     move, each to the next owner after b's node, and they move back when b returns;
 *   - d added with d#0=60, d#1=200: keys in (40, 60] leave c for d, keys in (181, 200] leave b for d.
 *     Every moved key moves to d; no key moves between a, b and c. Removing d reverses exactly that.
 *
 * Sizing. An endpoint gets `round(weight × k)` nodes (at least one), where `k` nodes per unit of
 * weight is {@link VNODES_PER_WEIGHT} while the ring fits in {@link MAX_RING_SIZE}, else the largest
 * power of two (possibly a fraction: 1/2, 1/4, ...) that fits. An endpoint's nodes sit at
 * `murmur3(i as 4 bytes, seed = murmur3(address))` for i = 0, 1, ..., so they depend only on its
 * address, its weight and k; with V nodes an endpoint's share of the ring varies by about 1/√V
 * (V = 1024: ±3 %). Because k is fixed for pools up to MAX_RING_SIZE / VNODES_PER_WEIGHT of total
 * weight, and above that moves only in powers of two, adding or removing an endpoint leaves every
 * other endpoint's nodes where they were. That is stricter than Envoy, whose hashes per host follow
 * min_ring_size / host count, so every membership change reshapes every host's arcs. Measured with
 * 100k keys going from 10 to 11 endpoints: a ring of max(16384, 160 × hosts) nodes moved 15.5 % of
 * the keys, 6.7 % of all keys between endpoints that did not change; this ring moves 8.9 %, all to
 * the new endpoint. The one exception: a change that carries a large pool's total weight across a
 * power of two (above 256 with the defaults) halves or doubles k, and then keys also move between
 * unchanged endpoints.
 *
 * Build: O(V log V) for V nodes, once per picker (sorted as one Float64Array of position × 2^21 +
 * endpoint rank, exact in a double, so equal positions tie-break by address, independent of the order
 * of the list). Pick: one murmur3 of the key, a binary search (⌈log2 V⌉ ≤ 18 steps) and, while owners
 * are unhealthy, a walk clockwise that asks each distinct owner once. No allocation per pick.
 */
export class ConsistentHashPicker implements Picker {
  /** Addresses in ascending order; an owner is an index into it. */
  private readonly addresses: readonly string[];
  /** Node positions, ascending. */
  private readonly positions: Uint32Array;
  /** `owners[i]`: the endpoint of the node at `positions[i]`. */
  private readonly owners: Uint32Array;
  /** Scratch for a walk past unhealthy owners: `seen[o] === epoch[0]` once owner o was found unhealthy. */
  private readonly seen: Uint32Array;
  private readonly epoch = new Uint32Array(1);

  constructor(endpoints: readonly WeightedEndpoint[]) {
    if (endpoints.length === 0 || endpoints.length > RANK_LIMIT) {
      throw new LivemuxError('ERR_POLICY_ENDPOINTS', `consistent_hash: expected 1-${RANK_LIMIT} endpoints, got ${endpoints.length}`);
    }
    const sorted = [...endpoints].sort((a, b) => (a.address < b.address ? -1 : a.address > b.address ? 1 : 0));
    const k = vnodesPerWeight(sorted.reduce((sum, e) => sum + e.weight, 0));
    const counts = sorted.map((e) => Math.max(1, Math.round(e.weight * k)));
    const packed = new Float64Array(counts.reduce((a, b) => a + b, 0));
    let j = 0;
    sorted.forEach((e, rank) => {
      const seed = murmur3String(e.address);
      for (let i = 0; i < counts[rank]!; i++) packed[j++] = murmur3Int(i, seed) * RANK_LIMIT + rank;
    });
    packed.sort();
    this.positions = new Uint32Array(packed.length);
    this.owners = new Uint32Array(packed.length);
    for (let i = 0; i < packed.length; i++) {
      const position = Math.floor(packed[i]! / RANK_LIMIT);
      this.positions[i] = position;
      this.owners[i] = packed[i]! - position * RANK_LIMIT;
    }
    this.addresses = Object.freeze(sorted.map((e) => e.address));
    this.seen = new Uint32Array(sorted.length);
    Object.freeze(this);
  }

  /** Number of nodes on the ring. */
  get ringSize(): number {
    return this.positions.length;
  }

  /** The endpoint owning `hash` with every endpoint healthy: the first node at or after it (tests, docs). */
  ownerOf(hash: number): string {
    return this.addresses[this.owners[this.nodeAt(hash)]!]!;
  }

  pick(key: string, isHealthy: (endpoint: string) => boolean): string | null {
    const start = this.nodeAt(murmur3String(key));
    const owner = this.owners[start]!;
    const address = this.addresses[owner]!;
    if (isHealthy(address)) return address;
    return this.walk(start, owner, isHealthy);
  }

  /** Index of the first node at or after `hash`, wrapping to 0. */
  private nodeAt(hash: number): number {
    const positions = this.positions;
    let lo = 0;
    let hi = positions.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (positions[mid]! < hash) lo = mid + 1;
      else hi = mid;
    }
    return lo === positions.length ? 0 : lo;
  }

  /** Clockwise from `start` (owned by the unhealthy `first`) to the next node of a healthy endpoint. */
  private walk(start: number, first: number, isHealthy: (endpoint: string) => boolean): string | null {
    const { owners, addresses, seen } = this;
    const n = addresses.length;
    if (n === 1) return null;
    // A fresh epoch marks "unhealthy in this pick" without clearing the array.
    let epoch = this.epoch[0]! + 1;
    if (epoch > 0xffffffff) {
      seen.fill(0);
      epoch = 1;
    }
    this.epoch[0] = epoch;
    seen[first] = epoch;
    let down = 1;
    const size = owners.length;
    for (let step = 1; step < size; step++) {
      const i = start + step < size ? start + step : start + step - size;
      const owner = owners[i]!;
      if (seen[owner] === epoch) continue;
      const address = addresses[owner]!;
      if (isHealthy(address)) return address;
      seen[owner] = epoch;
      if (++down === n) return null;
    }
    return null;
  }
}

/** Nodes per unit of weight while the ring fits {@link MAX_RING_SIZE}: ±3 % load spread per endpoint. */
export const VNODES_PER_WEIGHT = 1024;

/** Largest ring: 2^18 nodes (2 MiB of tables), built in a few tens of milliseconds. */
export const MAX_RING_SIZE = 1 << 18;

/** Endpoint ranks share a double with a 32-bit position: 2^21 × 2^32 = 2^53, still exact. */
const RANK_LIMIT = 1 << 21;

/**
 * Nodes per unit of weight for a pool of `totalWeight`: {@link VNODES_PER_WEIGHT} when the ring fits
 * in {@link MAX_RING_SIZE}, else the largest power of two (2^-m allowed) for which it does.
 */
export function vnodesPerWeight(totalWeight: number): number {
  if (totalWeight * VNODES_PER_WEIGHT <= MAX_RING_SIZE) return VNODES_PER_WEIGHT;
  return 2 ** Math.floor(Math.log2(MAX_RING_SIZE / totalWeight));
}

/** The `consistent_hash` policy: a weighted ring with virtual nodes (see {@link ConsistentHashPicker}). */
export const consistentHashPolicy: PickerPolicy = Object.freeze({
  name: 'consistent_hash',
  createPicker: (endpoints: readonly WeightedEndpoint[]) => new ConsistentHashPicker(endpoints),
});
