import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MapSweeper } from '../../src/util/map-sweeper.js';

describe('MapSweeper', () => {
  it('examines at most n entries per step, however large the map', () => {
    const map = new Map(Array.from({ length: 100_000 }, (_, i) => [i, i] as const));
    let calls = 0;
    const sweeper = new MapSweeper(map, () => {
      calls++;
      return true;
    });
    expect(sweeper.step(4)).toBe(4);
    expect(calls).toBe(4);
    expect(map.size).toBe(100_000 - 4);
  });

  it('goes on where the previous step stopped, and round again from the start', () => {
    const map = new Map([1, 2, 3, 4, 5].map((k) => [k, k] as const));
    const seen: number[] = [];
    const sweeper = new MapSweeper(map, (_v, k) => {
      seen.push(k);
      return false;
    });
    sweeper.step(2);
    sweeper.step(2);
    sweeper.step(2);
    expect(seen).toEqual([1, 2, 3, 4, 5, 1]);
  });

  it('stops on an empty map and on a map smaller than the step', () => {
    const empty = new MapSweeper(new Map<number, number>(), () => true);
    expect(empty.step(10)).toBe(0);
    const small = new Map([[1, 1]]);
    expect(new MapSweeper(small, () => false).step(10)).toBeLessThanOrEqual(2);
  });

  it('forgets every entry dead at the start within two rounds, keeps the live ones, and reaches entries added meanwhile', () => {
    fc.assert(
      fc.property(fc.array(fc.boolean(), { maxLength: 300 }), fc.integer({ min: 1, max: 16 }), fc.array(fc.boolean(), { maxLength: 50 }), (deadAtStart, n, added) => {
        const map = new Map(deadAtStart.map((dead, i) => [i, dead] as const));
        const sweeper = new MapSweeper(map, (dead) => dead);
        const steps = 2 * Math.ceil((deadAtStart.length + added.length) / n) + 2;
        for (let s = 0; s < steps; s++) {
          if (s === 1) added.forEach((dead, i) => map.set(deadAtStart.length + i, dead));
          expect(sweeper.step(n)).toBeLessThanOrEqual(n);
        }
        const all = [...deadAtStart, ...added];
        expect([...map.keys()]).toEqual(all.flatMap((dead, i) => (dead ? [] : [i])));
      }),
    );
  });
});
