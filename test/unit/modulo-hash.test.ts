import { describe, expect, it } from 'vitest';
import { murmur3String } from '../../src/routing/hash.js';
import { ModuloHashPicker } from '../../src/routing/policies/modulo-hash.js';

const all = (): boolean => true;
const keys = Array.from({ length: 100_000 }, (_, i) => `room-${i}`);
const pct = (x: number): string => `${(x * 100).toFixed(1)} %`;

describe('ModuloHashPicker', () => {
  const example = new ModuloHashPicker([
    { address: '10.0.0.3', weight: 1 },
    { address: '10.0.0.1', weight: 1 },
    { address: '10.0.0.2', weight: 2 },
  ]);

  it('follows the worked example: "room-42" → slot 2 of [.1 .2 .2 .3], then slot 0 of [.1 .3] with .2 down', () => {
    expect(murmur3String('room-42')).toBe(1101617330);
    expect(1101617330 % 4).toBe(2);
    expect(example.pick('room-42', all)).toBe('10.0.0.2');
    expect(example.pick('room-42', (e) => e !== '10.0.0.2')).toBe('10.0.0.1');
  });

  it('maps exactly the hash modulo the slots (every key, all healthy and with one down)', () => {
    const slots = ['10.0.0.1', '10.0.0.2', '10.0.0.2', '10.0.0.3'];
    const without2 = ['10.0.0.1', '10.0.0.3'];
    for (const key of keys.slice(0, 2000)) {
      const h = murmur3String(key);
      expect(example.pick(key, all)).toBe(slots[h % 4]);
      expect(example.pick(key, (e) => e !== '10.0.0.2')).toBe(without2[h % 2]);
    }
  });

  it('does not depend on the order endpoints are listed in', () => {
    const reordered = new ModuloHashPicker([
      { address: '10.0.0.2', weight: 2 },
      { address: '10.0.0.1', weight: 1 },
      { address: '10.0.0.3', weight: 1 },
    ]);
    for (const key of keys.slice(0, 2000)) expect(reordered.pick(key, all)).toBe(example.pick(key, all));
  });

  // The documented trade-off against consistent_hash, measured.
  const ten = new ModuloHashPicker(Array.from({ length: 10 }, (_, i) => ({ address: `10.0.0.${i + 1}:7000`, weight: 1 })));
  const down = '10.0.0.4:7000';
  let moved = 0;
  for (const key of keys) if (ten.pick(key, all) !== ten.pick(key, (e) => e !== down)) moved++;
  const movedShare = moved / keys.length;

  it(`remaps most keys when one of 10 endpoints goes down: ${pct(movedShare)} of 100k keys moved (consistent_hash: ~10 %)`, () => {
    expect(movedShare).toBeGreaterThan(0.8);
  });
});
