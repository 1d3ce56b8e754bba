import { describe, expect, it } from 'vitest';
import { Deque } from '../../src/util/deque.js';

describe('Deque', () => {
  it('keeps FIFO order across wrap-around and growth', () => {
    const d = new Deque<number>();
    const expected: number[] = [];
    let next = 0;
    // Interleave pushes and shifts so the head wraps inside a buffer that keeps growing.
    for (let round = 0; round < 50; round++) {
      for (let i = 0; i < round + 3; i++) {
        d.push(next);
        expected.push(next++);
      }
      for (let i = 0; i < round; i++) expect(d.shift()).toBe(expected.shift());
      expect(d.length).toBe(expected.length);
      expect(d.peek()).toBe(expected[0]);
    }
    while (d.length > 0) expect(d.shift()).toBe(expected.shift());
    expect(d.shift()).toBeUndefined();
    expect(d.peek()).toBeUndefined();
  });

  it('indexes, slices and binary-searches from the front', () => {
    const d = new Deque<number>();
    for (let i = 0; i < 20; i++) d.push(i * 10);
    d.shift();
    expect(d.at(0)).toBe(10);
    expect(d.at(18)).toBe(190);
    expect(d.at(19)).toBeUndefined();
    expect(d.slice(2, 5)).toEqual([30, 40, 50]);
    expect(d.lowerBound(45, (x) => x)).toBe(4);
    expect(d.lowerBound(1000, (x) => x)).toBe(19);
  });

  it('allocates nothing until the first push and frees a large buffer once emptied', () => {
    const empty = new Deque<number>();
    const bufOf = (d: Deque<number>): unknown[] => (d as unknown as { buf: unknown[] }).buf;
    expect(bufOf(empty).length).toBe(0);
    for (let i = 0; i < 5000; i++) empty.push(i);
    expect(bufOf(empty).length).toBeGreaterThanOrEqual(5000);
    while (empty.length > 0) empty.shift();
    expect(bufOf(empty).length).toBe(0);
    empty.push(1);
    expect(empty.shift()).toBe(1);
  });

  it('clear() forgets every item', () => {
    const d = new Deque<string>();
    d.push('a');
    d.push('b');
    d.clear();
    expect(d.length).toBe(0);
    expect(d.shift()).toBeUndefined();
  });
});
