import { describe, expect, it } from 'vitest';
import { seededRandom } from '../helpers/seeded-random.js';
import { Backoff } from '../../src/util/backoff.js';

const ALMOST_ONE = 1 - Number.EPSILON;

describe('Backoff with full jitter (SDK reconnects)', () => {
  it('doubles the bound per attempt from initialMs up to maxMs', () => {
    const backoff = new Backoff({ initialMs: 500, maxMs: 30_000, random: () => ALMOST_ONE });
    const delays = Array.from({ length: 9 }, () => backoff.next());
    // Each delay sits just under its bound: 500, 1000, 2000 ... capped at 30 000.
    expect(delays).toEqual([499, 999, 1999, 3999, 7999, 15_999, 29_999, 29_999, 29_999]);
    expect(backoff.attempt).toBe(9);
  });

  it('is full jitter: the lower bound is 0 at every attempt', () => {
    const backoff = new Backoff({ initialMs: 500, maxMs: 30_000, random: () => 0 });
    expect(Array.from({ length: 5 }, () => backoff.next())).toEqual([0, 0, 0, 0, 0]);
  });

  it('grows from the base a failure asks for instead of initialMs', () => {
    const backoff = new Backoff({ initialMs: 500, maxMs: 30_000, random: () => ALMOST_ONE });
    // e.g. RATE_LIMITED (delayMs 5000 in codes.ts)
    expect([backoff.next(5000), backoff.next(5000), backoff.next(5000), backoff.next(5000)]).toEqual([4999, 9999, 19_999, 29_999]);
  });

  it('reports the bound without consuming an attempt', () => {
    const backoff = new Backoff({ initialMs: 100, maxMs: 1000 });
    expect(backoff.ceiling()).toBe(100);
    expect(backoff.ceiling(300)).toBe(300);
    backoff.next();
    expect(backoff.ceiling()).toBe(200);
    expect(backoff.attempt).toBe(1);
  });

  it('starts over after reset', () => {
    const backoff = new Backoff({ initialMs: 500, maxMs: 30_000, random: () => ALMOST_ONE });
    backoff.next();
    backoff.next();
    backoff.next();
    backoff.reset();
    expect(backoff.attempt).toBe(0);
    expect(backoff.next()).toBe(499);
  });

  it('stays finite and capped however many attempts fail', () => {
    const backoff = new Backoff({ initialMs: 500, maxMs: 30_000, random: () => ALMOST_ONE });
    for (let i = 0; i < 2000; i += 1) backoff.next();
    expect(backoff.ceiling()).toBe(30_000);
    expect(backoff.next()).toBe(29_999);
  });

  it('hands out integer delays in [0, bound)', () => {
    const backoff = new Backoff({ initialMs: 250, maxMs: 4000, random: seededRandom(1) });
    for (let i = 0; i < 1000; i += 1) {
      const bound = backoff.ceiling();
      const delay = backoff.next();
      expect(Number.isInteger(delay)).toBe(true);
      expect(delay).toBeGreaterThanOrEqual(0);
      expect(delay).toBeLessThan(bound);
      if (i % 10 === 9) backoff.reset();
    }
  });

  it('spreads delays uniformly over [0, bound) so reconnecting clients do not arrive together', () => {
    const random = seededRandom(42);
    const bound = 8000;
    const samples = 20_000;
    const buckets = new Array<number>(10).fill(0);
    let sum = 0;
    for (let i = 0; i < samples; i += 1) {
      const backoff = new Backoff({ initialMs: 1000, maxMs: 30_000, random });
      for (let n = 0; n < 3; n += 1) backoff.next(); // fourth attempt: bound 8000
      const delay = backoff.next();
      sum += delay;
      buckets[Math.floor((delay / bound) * 10)]! += 1;
    }
    expect(sum / samples).toBeGreaterThan(bound * 0.48);
    expect(sum / samples).toBeLessThan(bound * 0.52);
    for (const count of buckets) {
      expect(count / samples).toBeGreaterThan(0.09);
      expect(count / samples).toBeLessThan(0.11);
    }
  });
});

describe('Backoff with equal jitter (backend links)', () => {
  it('doubles from initialMs up to maxMs, each delay in [d/2, d]', () => {
    const high = new Backoff({ initialMs: 100, maxMs: 1_000, jitter: 'equal', random: () => 1 });
    const low = new Backoff({ initialMs: 100, maxMs: 1_000, jitter: 'equal', random: () => 0 });
    expect(Array.from({ length: 6 }, () => high.next())).toEqual([100, 200, 400, 800, 1_000, 1_000]);
    expect(Array.from({ length: 6 }, () => low.next())).toEqual([50, 100, 200, 400, 500, 500]);
  });

  it('stays at maxMs after a long outage (no overflow)', () => {
    const backoff = new Backoff({ initialMs: 100, maxMs: 1_000, jitter: 'equal', random: () => 1 });
    for (let i = 0; i < 5_000; i++) backoff.next();
    expect(backoff.next()).toBe(1_000);
  });
});
