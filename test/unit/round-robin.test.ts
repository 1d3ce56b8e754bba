import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { getPolicy, policyNames, registerPolicy } from '../../src/routing/policies.js';
import { SmoothWeightedRoundRobinPicker, roundRobinPolicy } from '../../src/routing/round-robin.js';
import type { RouteContext } from '../../src/routing/types.js';

const ctx: RouteContext = { userId: 'u', connectionId: 'c', clientAddress: '127.0.0.1:1', metadata: {} };
const all = (): boolean => true;

function picks(picker: SmoothWeightedRoundRobinPicker, n: number, isHealthy: (e: string) => boolean = all): (string | null)[] {
  return Array.from({ length: n }, () => picker.pick(ctx, isHealthy));
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
    expect(picker.pick(ctx, () => false)).toBeNull();
    // Recovers once the endpoint is healthy again.
    expect(picker.pick(ctx, all)).toBe('a');
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

describe('policy registry', () => {
  it('has round_robin built in', () => {
    expect(policyNames()).toContain('round_robin');
    expect(getPolicy('round_robin')).toBe(roundRobinPolicy);
    expect(getPolicy('nope')).toBeUndefined();
  });

  it('refuses a second policy under a taken name', () => {
    expect(() => registerPolicy({ name: 'round_robin', createPicker: roundRobinPolicy.createPicker })).toThrow(/already registered/);
  });
});
