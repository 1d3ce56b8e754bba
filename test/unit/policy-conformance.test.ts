import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DEFAULT_POLICY, getPolicy, policyNames, registerPolicy } from '../../src/routing/registry.js';
import type { Picker, PickerPolicy, WeightedEndpoint } from '../../src/routing/types.js';

/**
 * The contract every registered policy keeps (routing/types.ts), run against each of them: a new
 * policy registered in routing/registry.ts is tested here without a line of new test code, once it is
 * given its traits below.
 */

/** Whether a policy places sessions by their key (the same key → the same endpoint while health holds). */
const KEYED: Record<string, boolean> = { round_robin: false, hash: true, consistent_hash: true };

const ENDPOINTS: readonly WeightedEndpoint[] = [
  { address: '10.0.0.1:7101', weight: 1 },
  { address: '10.0.0.2:7101', weight: 2 },
  { address: '10.0.0.3:7101', weight: 3 },
  { address: '[fd00::4]:7101', weight: 1 },
  { address: 'backend-5.internal:7101', weight: 1 },
];
const ADDRESSES = ENDPOINTS.map((e) => e.address);
const TOTAL_WEIGHT = ENDPOINTS.reduce((sum, e) => sum + e.weight, 0);
const all = (): boolean => true;
const keys = (n: number, prefix = 'key'): string[] => Array.from({ length: n }, (_, i) => `${prefix}-${i}`);

function tally(picker: Picker, keyList: readonly string[], isHealthy: (e: string) => boolean = all): Map<string | null, number> {
  const out = new Map<string | null, number>();
  for (const key of keyList) {
    const e = picker.pick(key, isHealthy);
    out.set(e, (out.get(e) ?? 0) + 1);
  }
  return out;
}

describe('policy registry', () => {
  it('has round_robin, hash and consistent_hash built in, round_robin the default', () => {
    expect(policyNames()).toEqual(['round_robin', 'hash', 'consistent_hash']);
    expect(DEFAULT_POLICY).toBe('round_robin');
    expect(getPolicy('nope')).toBeUndefined();
  });

  it('refuses a second policy under a taken name', () => {
    const taken = getPolicy('round_robin')!;
    expect(() => registerPolicy({ name: 'round_robin', createPicker: taken.createPicker })).toThrow(/policy round_robin: already registered/);
  });

  it('knows the traits of every registered policy (classify a new one in KEYED)', () => {
    expect(Object.keys(KEYED).sort()).toEqual([...policyNames()].sort());
  });
});

for (const name of policyNames()) {
  const policy = getPolicy(name) as PickerPolicy;
  const keyed = KEYED[name] ?? false;

  describe(`policy conformance: ${name}`, () => {
    it('is registered under its own name and frozen', () => {
      expect(policy.name).toBe(name);
      expect(Object.isFrozen(policy)).toBe(true);
    });

    it('returns only endpoints for which isHealthy is true, and null when there is none', () => {
      const picker = policy.createPicker(ENDPOINTS);
      fc.assert(
        fc.property(fc.array(fc.boolean(), { minLength: ENDPOINTS.length, maxLength: ENDPOINTS.length }), fc.array(fc.string(), { minLength: 1, maxLength: 20 }), (up, keyList) => {
          const healthy = new Set(ADDRESSES.filter((_, i) => up[i]));
          for (const key of keyList) {
            const e = picker.pick(key, (a) => healthy.has(a));
            if (healthy.size === 0) expect(e).toBeNull();
            else expect(healthy.has(e!)).toBe(true);
          }
        }),
        { numRuns: 300 },
      );
    });

    it('asks isHealthy only about its own endpoints', () => {
      const asked = new Set<string>();
      const picker = policy.createPicker(ENDPOINTS);
      for (const key of keys(200)) picker.pick(key, (e) => (asked.add(e), e !== ADDRESSES[0]));
      for (const e of asked) expect(ADDRESSES).toContain(e);
    });

    it('recovers when endpoints come back', () => {
      const picker = policy.createPicker(ENDPOINTS);
      expect(picker.pick('k', () => false)).toBeNull();
      expect(ADDRESSES).toContain(picker.pick('k', all));
    });

    it('reaches every endpoint', () => {
      const seen = tally(policy.createPicker(ENDPOINTS), keys(keyed ? 10_000 : TOTAL_WEIGHT));
      expect(new Set(seen.keys())).toEqual(new Set(ADDRESSES));
    });

    it('gives each endpoint its weight\'s share in the long run (±10 %), with all healthy and with one down', () => {
      const n = 100_000;
      const check = (down: string | null): void => {
        const up = ENDPOINTS.filter((e) => e.address !== down);
        const total = up.reduce((sum, e) => sum + e.weight, 0);
        const seen = tally(policy.createPicker(ENDPOINTS), keys(n), (e) => e !== down);
        for (const e of up) {
          const share = (seen.get(e.address) ?? 0) / n;
          const expected = e.weight / total;
          expect(Math.abs(share - expected) / expected, `${e.address}: ${share} vs ${expected}`).toBeLessThanOrEqual(0.1);
        }
        if (down) expect(seen.get(down)).toBeUndefined();
      };
      check(null);
      check(ADDRESSES[2]!);
    });

    it('is not changed by changes to the list it was built from', () => {
      const list = ENDPOINTS.map((e) => ({ ...e }));
      const picker = policy.createPicker(list);
      const reference = policy.createPicker(ENDPOINTS);
      list.reverse();
      list.push({ address: 'intruder:1', weight: 100 });
      list[0]!.weight = 50;
      list[1]!.address = 'renamed:1';
      expect(Object.isFrozen(picker)).toBe(true);
      for (const key of keys(2000)) expect(picker.pick(key, all)).toBe(reference.pick(key, all));
    });

    if (keyed) {
      it('is deterministic: the same key gives the same endpoint, from any picker built from the same endpoints in any order', () => {
        const a = policy.createPicker(ENDPOINTS);
        const b = policy.createPicker([...ENDPOINTS].reverse());
        fc.assert(
          fc.property(fc.string(), fc.subarray(ADDRESSES, { minLength: 1 }), (key, upList) => {
            const up = new Set(upList);
            const isHealthy = (e: string): boolean => up.has(e);
            const first = a.pick(key, isHealthy);
            expect(a.pick(key, isHealthy)).toBe(first);
            expect(b.pick(key, isHealthy)).toBe(first);
          }),
          { numRuns: 500 },
        );
      });

      it('moves a key off its endpoint when that endpoint is unhealthy', () => {
        const picker = policy.createPicker(ENDPOINTS);
        for (const key of keys(2000)) {
          const home = picker.pick(key, all)!;
          expect(picker.pick(key, (e) => e !== home)).not.toBe(home);
        }
      });
    } else {
      it('ignores the key', () => {
        const a = policy.createPicker(ENDPOINTS);
        const b = policy.createPicker(ENDPOINTS);
        const same = keys(50).map(() => a.pick('same', all));
        expect(keys(50).map((k) => b.pick(k, all))).toEqual(same);
      });
    }
  });
}
