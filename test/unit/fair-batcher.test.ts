import { describe, expect, it } from 'vitest';
import { FairBatcher } from '../../src/util/fair-batcher.js';

/** A writer that records batches and completes them only when told. */
function recorder() {
  const batches: string[][] = [];
  const pending: (() => void)[] = [];
  return {
    batches,
    write: (items: string[], done: () => void) => {
      batches.push(items);
      pending.push(done);
    },
    completeOne: () => pending.shift()?.(),
  };
}

const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('FairBatcher', () => {
  it('takes one item per key per round, so a key with one item is not queued behind a backlog', async () => {
    const w = recorder();
    const b = new FairBatcher<string, string>(w.write, { maxBatchBytes: 4, maxInFlight: 1, keyLimitBytes: 100 });
    for (let i = 0; i < 6; i++) b.push('heavy', `h${i}`, 1);
    b.push('light', 'l0', 1);
    await turn();
    // Chosen fairly (the light key's item is in the first batch), written in push order.
    expect(w.batches).toEqual([['h0', 'h1', 'h2', 'l0']]);
    w.completeOne();
    await turn();
    expect(w.batches[1]).toEqual(['h3', 'h4', 'h5']);
  });

  it('writes what fits one batch exactly in push order, across keys', async () => {
    const w = recorder();
    const b = new FairBatcher<number, string>(w.write, { maxBatchBytes: 100, maxInFlight: 1, keyLimitBytes: 100 });
    for (const [key, item] of [[1, 'a'], [2, 'b'], [1, 'c'], [3, 'd'], [2, 'e']] as const) b.push(key, item, 1);
    await turn();
    expect(w.batches).toEqual([['a', 'b', 'c', 'd', 'e']]);
  });

  it('keeps each key in push order and writes every item once', async () => {
    const w = recorder();
    const b = new FairBatcher<number, string>(w.write, { maxBatchBytes: 3, maxInFlight: 2, keyLimitBytes: 100 });
    for (let i = 0; i < 20; i++) b.push(i % 3, `${i % 3}:${i}`, 1);
    for (let n = 0; n < 20 && b.pending > 0; n++) {
      await turn();
      w.completeOne();
    }
    await turn();
    const all = w.batches.flat();
    expect(all).toHaveLength(20);
    for (const key of [0, 1, 2]) {
      const own = all.filter((x) => x.startsWith(`${key}:`)).map((x) => Number(x.split(':')[1]));
      expect(own).toEqual([...own].sort((a, c) => a - c));
    }
  });

  it('writes at most maxInFlight batches until they are done', async () => {
    const w = recorder();
    const b = new FairBatcher<number, string>(w.write, { maxBatchBytes: 1, maxInFlight: 2, keyLimitBytes: 100 });
    for (let i = 0; i < 5; i++) b.push(1, `x${i}`, 1);
    await turn();
    expect(w.batches).toHaveLength(2);
    w.completeOne();
    await turn();
    expect(w.batches).toHaveLength(3);
    b.flush(true);
    expect(w.batches.flat()).toEqual(['x0', 'x1', 'x2', 'x3', 'x4']);
  });

  it('reports a key full at keyLimitBytes and calls drained once it is under again', async () => {
    const w = recorder();
    const drained: string[] = [];
    const b = new FairBatcher<string, string>(w.write, { maxBatchBytes: 10, maxInFlight: 1, keyLimitBytes: 10 }, (k) => drained.push(k));
    b.push('a', 'a1', 6);
    expect(b.isFull('a')).toBe(false);
    b.push('a', 'a2', 6);
    expect(b.isFull('a')).toBe(true);
    await turn();
    expect(w.batches).toEqual([['a1', 'a2']]);
    expect(drained).toEqual(['a']);
    expect(b.isFull('a')).toBe(false);
  });

  it('writes an empty batch when scheduled with nothing queued, and discard drops everything', async () => {
    const w = recorder();
    const b = new FairBatcher<number, string>(w.write, { maxBatchBytes: 10, maxInFlight: 1, keyLimitBytes: 10 });
    b.schedule();
    await turn();
    expect(w.batches).toEqual([[]]);
    b.push(1, 'x', 1);
    expect(b.discard()).toBe(1);
    await turn();
    expect(w.batches).toHaveLength(1);
  });
});
