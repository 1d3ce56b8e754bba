import { describe, expect, it } from 'vitest';
import { MapEviction } from '../../src/util/map-eviction.js';

describe('MapEviction', () => {
  it('drops the oldest entries beyond the bound, in insertion order, across a map emptied and refilled', () => {
    const map = new Map<string, { n: number }>();
    const eviction = new MapEviction(map);
    for (let i = 0; i < 10; i++) {
      map.set(`k${i}`, { n: i });
      eviction.trim(3);
    }
    expect([...map.keys()]).toEqual(['k7', 'k8', 'k9']);
    eviction.trim(0);
    expect(map.size).toBe(0);
    // The cursor reached the end: entries added afterwards are still found.
    for (let i = 10; i < 14; i++) map.set(`k${i}`, { n: i });
    eviction.trim(2);
    expect([...map.keys()]).toEqual(['k12', 'k13']);
  });

  it('treats a key deleted elsewhere and set again as new (it is then the newest)', () => {
    const map = new Map<string, { n: number }>([['a', { n: 1 }], ['b', { n: 2 }], ['c', { n: 3 }]]);
    const eviction = new MapEviction(map);
    eviction.trim(3, (v) => v.n === 1);
    expect([...map.keys()]).toEqual(['b', 'c']);
    map.delete('b');
    map.set('b', { n: 4 });
    eviction.trim(1);
    expect([...map.keys()]).toEqual(['b']);
  });

  it('drops dead oldest entries and stops at the first live one', () => {
    const map = new Map<string, number>([['a', 1], ['b', 2], ['c', 9], ['d', 1]]);
    new MapEviction(map).trim(Infinity, (v) => v < 5);
    expect([...map.keys()]).toEqual(['c', 'd']);
  });
});
