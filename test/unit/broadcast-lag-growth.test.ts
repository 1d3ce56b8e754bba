import { describe, expect, it } from 'vitest';
import { lagGrowth } from '../../bench/broadcast-protocol.js';

/**
 * A receiver's samples over a 12 s step at 3,000 messages/s from a server writing rounds of `roundMs`:
 * a message waits for the next round, so its latency saws between `base` and `base + roundMs`, and a
 * server behind by a share `behind` of the pace adds that share of the time.
 */
function step(roundMs: number, behind: number, phaseMs = 0): { sentAt: number[]; lagMs: number[]; end: number } {
  const sentAt: number[] = [];
  const lagMs: number[] = [];
  for (let t = 0; t < 12_000; t += 1000 / 3000) {
    sentAt.push(t);
    lagMs.push(100 + (roundMs - ((t + phaseMs) % roundMs)) + behind * t);
  }
  return { sentAt, lagMs, end: 12_000 };
}

describe('lag growth (bench/broadcast-protocol.ts)', () => {
  it('stays near zero for a server that keeps pace, wherever its rounds fall, and finds one 10 % behind', () => {
    for (const roundMs of [200, 350, 500]) {
      for (const phaseMs of [0, 90, 170, 260]) {
        const steady = step(roundMs, 0, phaseMs);
        // Two one-second windows' means could differ by up to a round; the slope must stay within a tenth of one.
        expect(Math.abs(lagGrowth(steady.sentAt, steady.lagMs, steady.end))).toBeLessThan(0.1 * roundMs);
        const behind = step(roundMs, 0.1, phaseMs);
        // 10 % of the step's 12 s less two: the bound PACE_SLACK sets.
        expect(lagGrowth(behind.sentAt, behind.lagMs, behind.end)).toBeCloseTo(1000, -2);
      }
    }
  });

  it('leaves out the first second and what was sent after the end message, and is NaN from fewer than two samples', () => {
    // Latency 5 s high in the first second (a pipeline filling) and after the end: not counted.
    const sentAt = [0, 500, 1000, 2000, 3000, 4000, 4500];
    const lagMs = [5000, 5000, 100, 100, 100, 100, 5000];
    expect(lagGrowth(sentAt, lagMs, 4000)).toBe(0);
    expect(lagGrowth([0, 1500], [100, 100], 4000)).toBeNaN();
    expect(lagGrowth([], [], 4000)).toBeNaN();
  });
});
