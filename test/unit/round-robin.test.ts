import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { SmoothWeightedRoundRobinPicker } from '../../src/routing/policies/round-robin.js';

const all = (): boolean => true;

function picks(picker: SmoothWeightedRoundRobinPicker, n: number, isHealthy: (e: string) => boolean = all): (string | null)[] {
  return Array.from({ length: n }, (_, i) => picker.pick(`key-${i}`, isHealthy));
}

describe('SmoothWeightedRoundRobinPicker', () => {
  it('produces the nginx sequence for weights 5,1,1 (the worked example)', () => {
    const picker = new SmoothWeightedRoundRobinPicker([
      { address: 'a', weight: 5 },
      { address: 'b', weight: 1 },
      { address: 'c', weight: 1 },
    ]);
    expect(picks(picker, 14)).toEqual(['a', 'a', 'b', 'a', 'c', 'a', 'a', 'a', 'a', 'b', 'a', 'c', 'a', 'a']);
  });

  it('alternates equal weights in listed order', () => {
    const picker = new SmoothWeightedRoundRobinPicker([
      { address: 'x', weight: 1 },
      { address: 'y', weight: 1 },
      { address: 'z', weight: 1 },
    ]);
    expect(picks(picker, 6)).toEqual(['x', 'y', 'z', 'x', 'y', 'z']);
  });

  it('skips unhealthy endpoints and spreads their share over the rest', () => {
    const picker = new SmoothWeightedRoundRobinPicker([
      { address: 'a', weight: 2 },
      { address: 'b', weight: 1 },
      { address: 'c', weight: 1 },
    ]);
    const result = picks(picker, 30, (e) => e !== 'a');
    expect(result.filter((e) => e === 'b')).toHaveLength(15);
    expect(result.filter((e) => e === 'c')).toHaveLength(15);
  });

  it('returns null when no endpoint is healthy', () => {
    const picker = new SmoothWeightedRoundRobinPicker([{ address: 'a', weight: 1 }]);
    expect(picker.pick('k', () => false)).toBeNull();
    // Recovers once the endpoint is healthy again.
    expect(picker.pick('k', all)).toBe('a');
  });

  it('over any whole cycle, picks each healthy endpoint exactly its weight', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: 20 }), { minLength: 1, maxLength: 8 }), fc.nat(50), (weights, warmup) => {
        const endpoints = weights.map((weight, i) => ({ address: `e${i}`, weight }));
        const picker = new SmoothWeightedRoundRobinPicker(endpoints);
        picks(picker, warmup);
        const total = weights.reduce((a, b) => a + b, 0);
        const counts = new Map<string, number>();
        for (const e of picks(picker, total)) counts.set(e!, (counts.get(e!) ?? 0) + 1);
        for (const { address, weight } of endpoints) expect(counts.get(address) ?? 0).toBe(weight);
      }),
    );
  });
});

describe('round_robin and the hash key', () => {
  it('ignores the key: the same sequence whatever keys are given', () => {
    const endpoints = [
      { address: 'a', weight: 3 },
      { address: 'b', weight: 1 },
    ];
    const one = new SmoothWeightedRoundRobinPicker(endpoints);
    const other = new SmoothWeightedRoundRobinPicker(endpoints);
    const sameKey = Array.from({ length: 12 }, () => one.pick('room-1', all));
    expect(picks(other, 12)).toEqual(sameKey);
  });
});
