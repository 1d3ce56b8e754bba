import { afterEach, describe, expect, it } from 'vitest';
import { HeapCompactor, exposedGc } from '../../src/proxy/heap-compactor.js';

// The compactor runs one full collection after a wave of new connections has passed: never mid-wave,
// never for churn that does not grow the count, again for the next wave that does.

const compactors: HeapCompactor[] = [];
afterEach(() => compactors.splice(0).forEach((c) => c.stop()));

function compactor(): { check: () => boolean; set: (open: number, arrived: number) => void; runs: number[] } {
  let now = { open: 0, arrived: 0 };
  const runs: number[] = [];
  const c = new HeapCompactor(() => now, (r) => runs.push(r.connections), () => {});
  compactors.push(c);
  return { check: () => c.check(), set: (open, arrived) => (now = { open, arrived }), runs };
}

describe('HeapCompactor', () => {
  it('compacts once a wave has passed, not while it is arriving', () => {
    const c = compactor();
    c.set(5_000, 5_000);
    expect(c.check()).toBe(false); // 5,000 arrived in the last period: the wave goes on
    c.set(9_000, 9_000);
    expect(c.check()).toBe(false);
    c.set(9_000, 9_010); // 10 arrivals (and 10 departures): quiet
    expect(c.check()).toBe(true);
    expect(c.runs).toEqual([9_000]);
    expect(c.check()).toBe(false); // once per wave
  });

  it('churn that does not grow the count, and small waves, never compact', () => {
    const c = compactor();
    c.set(20_000, 20_000);
    c.check();
    c.set(20_000, 20_000);
    expect(c.check()).toBe(true);
    // 40 connections replaced per period for a long time: the count stays, nothing runs.
    for (let i = 1; i <= 100; i++) {
      c.set(20_000, 20_000 + 40 * i);
      expect(c.check()).toBe(false);
    }
    // 3,000 more is under a quarter of 20,000: a ripple.
    c.set(23_000, 30_000);
    c.check();
    c.set(23_000, 30_000);
    expect(c.check()).toBe(false);
    expect(c.runs).toEqual([20_000]);
  });

  it('a wave after the count fell (clients reconnecting after a restart) is measured from the low', () => {
    const c = compactor();
    c.set(10_000, 10_000);
    c.check();
    c.check();
    c.set(1_000, 10_000); // most left
    c.check();
    c.set(10_000, 19_000); // and came back
    expect(c.check()).toBe(false);
    expect(c.check()).toBe(true);
    expect(c.runs).toEqual([10_000, 10_000]);
  });

  it("V8's gc() is reachable on this Node without --expose-gc (or the compactor would do nothing)", () => {
    expect(typeof exposedGc).toBe('function');
    expect(typeof (globalThis as { gc?: unknown }).gc).toBe('undefined'); // the main context is left as it was
    exposedGc!({ type: 'major', execution: 'sync', flavor: 'last-resort' });
  });
});
