import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { SmallMap } from '../../src/util/small-map.js';

describe('SmallMap', () => {
  it('behaves as a Map for any sequence of set, delete and get', () => {
    const op = fc.oneof(
      fc.record({ kind: fc.constant('set' as const), id: fc.integer({ min: 1, max: 6 }), value: fc.string() }),
      fc.record({ kind: fc.constant('delete' as const), id: fc.integer({ min: 1, max: 6 }) }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 40 }), (ops) => {
        const table = new SmallMap<number, string>();
        const map = new Map<number, string>();
        for (const o of ops) {
          if (o.kind === 'set') {
            table.set(o.id, o.value);
            map.set(o.id, o.value);
          } else expect(table.delete(o.id)).toBe(map.delete(o.id));
          expect(table.size).toBe(map.size);
          for (let id = 1; id <= 6; id++) expect(table.get(id)).toBe(map.get(id));
          expect([...table.values()].sort()).toEqual([...map.values()].sort());
        }
      }),
    );
  });
});
