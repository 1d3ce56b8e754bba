import { describe, expect, it } from 'vitest';
import { murmur3Int, murmur3String } from '../../src/routing/hash.js';
import { ConsistentHashPicker, MAX_RING_SIZE, VNODES_PER_WEIGHT, vnodesPerWeight } from '../../src/routing/policies/consistent-hash.js';
import type { WeightedEndpoint } from '../../src/routing/types.js';

const all = (): boolean => true;
const KEYS = Array.from({ length: 100_000 }, (_, i) => `room-${i}`);
const address = (i: number): string => `10.0.0.${i + 1}:7101`;
const pool = (n: number, weight = (_i: number) => 1): WeightedEndpoint[] =>
  Array.from({ length: n }, (_, i) => ({ address: address(i), weight: weight(i) }));
const pct = (x: number): string => `${(x * 100).toFixed(2)} %`;

function owners(picker: ConsistentHashPicker, isHealthy: (e: string) => boolean = all): string[] {
  return KEYS.map((key) => picker.pick(key, isHealthy)!);
}

function counts(list: readonly string[]): Map<string, number> {
  const out = new Map<string, number>();
  for (const e of list) out.set(e, (out.get(e) ?? 0) + 1);
  return out;
}

/** Keys whose endpoint differs between two assignments, with where they went. */
function moves(before: readonly string[], after: readonly string[]): { from: string; to: string }[] {
  const out: { from: string; to: string }[] = [];
  for (let i = 0; i < before.length; i++) if (before[i] !== after[i]) out.push({ from: before[i]!, to: after[i]! });
  return out;
}

// Every measurement is made while the tests are collected, so the numbers can appear in their names.
const ten = new ConsistentHashPicker(pool(10));
const tenOwners = owners(ten);
const loads = [...counts(tenOwners).values()];
const mean = KEYS.length / 10;
const maxDeviation = Math.max(...loads.map((l) => Math.abs(l - mean) / mean));

const eleven = new ConsistentHashPicker(pool(11));
const added = moves(tenOwners, owners(eleven));

const nine = new ConsistentHashPicker(pool(10).filter((e) => e.address !== address(3)));
const removed = moves(tenOwners, owners(nine));

const unhealthyOwners = owners(ten, (e) => e !== address(3));
const failedOver = moves(tenOwners, unhealthyOwners);

const weighted = counts(owners(new ConsistentHashPicker([{ address: 'a:1', weight: 1 }, { address: 'b:1', weight: 3 }])));
const shareA = (weighted.get('a:1') ?? 0) / KEYS.length;

describe('ConsistentHashPicker', () => {
  it(`10 endpoints, 100k keys: every load within ±10 % of the mean (max deviation ${pct(maxDeviation)}; loads ${Math.min(...loads)}-${Math.max(...loads)}, mean ${mean})`, () => {
    expect(loads).toHaveLength(10);
    expect(maxDeviation).toBeLessThanOrEqual(0.1);
  });

  it(`adding an 11th endpoint moves ${pct(added.length / KEYS.length)} of keys (≤ 1.2/11 = ${pct(1.2 / 11)}), every one to the new endpoint`, () => {
    expect(added.length / KEYS.length).toBeLessThanOrEqual(1.2 / 11);
    expect(added.length).toBeGreaterThan(0);
    expect(added.filter((m) => m.to !== address(10))).toEqual([]);
  });

  it(`removing one of 10 endpoints moves ${pct(removed.length / KEYS.length)} of keys (≤ 1.2/10 = ${pct(1.2 / 10)}), only the removed endpoint's`, () => {
    expect(removed.length / KEYS.length).toBeLessThanOrEqual(1.2 / 10);
    expect(removed.filter((m) => m.from !== address(3))).toEqual([]);
    expect(removed.length).toBe(counts(tenOwners).get(address(3)));
  });

  it(`one of 10 endpoints unhealthy: only its ${failedOver.length} keys (${pct(failedOver.length / KEYS.length)}) move, each to its next owner`, () => {
    expect(failedOver.filter((m) => m.from !== address(3))).toEqual([]);
    expect(failedOver.length).toBe(counts(tenOwners).get(address(3)));
    // The next owner on the ring is exactly the owner in a ring built without the endpoint, and the
    // keys come back when it recovers.
    expect(unhealthyOwners).toEqual(owners(nine));
    expect(owners(ten)).toEqual(tenOwners);
  });

  it(`weights 1 and 3 get 25 % and 75 % of keys within ±10 % (measured ${pct(shareA)} and ${pct(1 - shareA)})`, () => {
    expect(shareA).toBeGreaterThanOrEqual(0.25 * 0.9);
    expect(shareA).toBeLessThanOrEqual(0.25 * 1.1);
  });

  it('changing one endpoint\'s weight moves keys only to or from that endpoint', () => {
    const heavier = owners(new ConsistentHashPicker(pool(10, (i) => (i === 5 ? 2 : 1))));
    const changed = moves(tenOwners, heavier);
    expect(changed.length).toBeGreaterThan(0);
    expect(changed.filter((m) => m.to !== address(5))).toEqual([]);
  });

  it('does not depend on the order endpoints are listed in', () => {
    const reversed = new ConsistentHashPicker([...pool(10)].reverse());
    expect(owners(reversed)).toEqual(tenOwners);
  });

  it('walks past several unhealthy owners and returns null when none is healthy', () => {
    const up = new Set([address(0), address(9)]);
    for (const key of KEYS.slice(0, 2000)) expect(up.has(ten.pick(key, (e) => up.has(e))!)).toBe(true);
    const asked: string[] = [];
    expect(ten.pick('room-1', (e) => (asked.push(e), false))).toBeNull();
    // Each endpoint is asked once, however many of its nodes the walk passes.
    expect(asked.sort()).toEqual(pool(10).map((e) => e.address).sort());
  });

  it('places a key on the first node at or after its hash, wrapping past the top (pinned boundaries)', () => {
    // The ring recomputed independently: node i of an endpoint sits at murmur3Int(i, murmur3(address)).
    const nodes = pool(3).flatMap((e) =>
      Array.from({ length: VNODES_PER_WEIGHT }, (_, i) => ({ at: murmur3Int(i, murmur3String(e.address)), owner: e.address })),
    );
    nodes.sort((a, b) => a.at - b.at || (a.owner < b.owner ? -1 : 1));
    const picker = new ConsistentHashPicker(pool(3));
    expect(picker.ringSize).toBe(3 * VNODES_PER_WEIGHT);
    const first = nodes[0]!;
    const last = nodes[nodes.length - 1]!;
    expect(picker.ownerOf(0)).toBe(first.owner);
    expect(picker.ownerOf(first.at)).toBe(first.owner);
    expect(picker.ownerOf(last.at)).toBe(last.owner);
    expect(picker.ownerOf(last.at + 1)).toBe(first.owner); // wraps
    expect(picker.ownerOf(0xffffffff)).toBe(first.owner);
    for (let i = 1; i < 200; i++) {
      const node = nodes[i]!;
      expect(picker.ownerOf(node.at)).toBe(node.owner);
      if (nodes[i - 1]!.at < node.at) expect(picker.ownerOf(nodes[i - 1]!.at + 1)).toBe(node.owner);
    }
  });

  it('pins where keys land (a change here remaps deployed sessions)', () => {
    const picker = new ConsistentHashPicker(pool(3));
    expect(['room-1', 'room-2', 'room-3', 'room-42', 'user-7', '日本語'].map((k) => picker.pick(k, all))).toEqual([
      '10.0.0.2:7101',
      '10.0.0.3:7101',
      '10.0.0.3:7101',
      '10.0.0.1:7101',
      '10.0.0.2:7101',
      '10.0.0.3:7101',
    ]);
  });
});

describe('ring size', () => {
  it(`keeps ${VNODES_PER_WEIGHT} nodes per unit of weight up to a total weight of ${MAX_RING_SIZE / VNODES_PER_WEIGHT}, then halves in powers of two`, () => {
    expect(vnodesPerWeight(1)).toBe(1024);
    expect(vnodesPerWeight(256)).toBe(1024);
    expect(vnodesPerWeight(257)).toBe(512);
    expect(vnodesPerWeight(1000)).toBe(256);
    expect(vnodesPerWeight(10_000_000)).toBe(1 / 64);
    expect(new ConsistentHashPicker(pool(1000)).ringSize).toBe(256_000);
    // Even a huge weight range keeps at least one node per endpoint.
    expect(new ConsistentHashPicker([{ address: 'a:1', weight: 1 }, { address: 'b:1', weight: 10_000 }, ...pool(30, () => 10_000)]).ringSize).toBeLessThanOrEqual(MAX_RING_SIZE + 1);
  });

  const big = pool(1000);
  const bigOwners = owners(new ConsistentHashPicker(big));
  const bigAdded = moves(bigOwners, owners(new ConsistentHashPicker([...big, { address: 'new:1', weight: 1 }])));
  it(`1000 → 1001 endpoints: ${pct(bigAdded.length / KEYS.length)} of keys move, all to the new endpoint`, () => {
    expect(bigAdded.length / KEYS.length).toBeLessThanOrEqual(1.2 / 1001 + 0.001);
    expect(bigAdded.filter((m) => m.to !== 'new:1')).toEqual([]);
  });
});
