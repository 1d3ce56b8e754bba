import { describe, expect, it } from 'vitest';
import { Turns } from '../../bench/turns.js';

describe('bench Turns', () => {
  it('searches that ask again after each turn take turns round robin, one at a time', async () => {
    const order: string[] = [];
    let running = 0;
    let most = 0;
    const turns = new Turns<string>();
    const search = async (name: string, steps: number): Promise<void> => {
      for (let i = 0; i < steps; i++) {
        await turns.take(name, async () => {
          most = Math.max(most, ++running);
          // A turn that awaits (as a step does) keeps the others waiting.
          await new Promise((resolve) => setImmediate(resolve));
          order.push(name);
          running--;
        });
      }
    };
    await Promise.all([search('a', 3), search('b', 2), search('c', 3)]);
    expect(order).toEqual(['a', 'b', 'c', 'a', 'b', 'c', 'a', 'c']);
    expect(most).toBe(1);
  });

  it('tells each turn its owner and who is still taking turns; a failed turn does not stop the next', async () => {
    const seen: string[] = [];
    const turns = new Turns<string>((owner, members) => seen.push(`${owner}:${[...members].join('')}`));
    turns.join('a');
    turns.join('b');
    const failed = turns.take('a', () => Promise.reject(new Error('receiver died')));
    const next = turns.take('b', async () => {
      turns.leave('b');
      return 7;
    });
    await expect(failed).rejects.toThrow('receiver died');
    expect(await next).toBe(7);
    await turns.take('a', async () => undefined);
    expect(seen).toEqual(['a:ab', 'b:ab', 'a:a']);
  });
});
