import { describe, expect, it } from 'vitest';
import { TokenBucket } from '../../src/util/token-bucket.js';

describe('TokenBucket', () => {
  it('admits the burst at once, then refills at the rate', () => {
    const b = new TokenBucket(10, 5, 0);
    expect(Array.from({ length: 6 }, () => b.take(0))).toEqual([true, true, true, true, true, false]);
    expect(b.take(99)).toBe(false); // 0.99 of a token
    expect(b.take(100)).toBe(true);
    expect(b.take(100)).toBe(false);
    // Never above the burst, however long it sat idle.
    expect(Array.from({ length: 6 }, () => b.take(100_000))).toEqual([true, true, true, true, true, false]);
  });

  it('take(keep) leaves a reserve that only keep-less takers may use', () => {
    const b = new TokenBucket(10, 4, 0);
    expect(b.take(0, 2)).toBe(true); // 4 → 3
    expect(b.take(0, 2)).toBe(true); // 3 → 2
    expect(b.take(0, 2)).toBe(false); // would leave 1 < 2
    expect(b.take(0)).toBe(true);
    expect(b.take(0)).toBe(true);
    expect(b.take(0)).toBe(false);
  });

  it('force() admits on an empty bucket without going negative', () => {
    const b = new TokenBucket(10, 1, 0);
    b.force(0);
    b.force(0);
    expect(b.take(0)).toBe(false);
    expect(b.take(100)).toBe(true); // one refill, not one after repaying a debt
  });

  it('reserve() borrows and returns non-decreasing waits', () => {
    const b = new TokenBucket(10, 2, 0);
    expect([b.reserve(0), b.reserve(0), b.reserve(0), b.reserve(0)]).toEqual([0, 0, 100, 200]);
    expect(b.take(250)).toBe(false); // the debt is paid first
    expect([b.reserve(300), b.reserve(300)]).toEqual([0, 100]);
  });

  it('full() only once every token, borrowed ones included, has come back: then it is a new bucket', () => {
    const b = new TokenBucket(10, 2, 0);
    expect(b.full(0)).toBe(true);
    b.take(0);
    expect(b.full(50)).toBe(false); // 1.5 of 2
    expect(b.full(100)).toBe(true);
    b.reserve(100);
    b.reserve(100);
    b.reserve(100); // one borrowed
    expect(b.full(300)).toBe(false); // 1 of 2: the debt was paid first
    expect(b.full(400)).toBe(true);
    // Exactly what a new bucket would do from here.
    const fresh = new TokenBucket(10, 2, 400);
    expect([b.take(400), b.take(400), b.take(400)]).toEqual([fresh.take(400), fresh.take(400), fresh.take(400)]);
  });
});
