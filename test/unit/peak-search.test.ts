import { describe, expect, it } from 'vitest';
import { seededRandom } from '../helpers/seeded-random.js';
import { PEAK_SEARCH, type Verdict, findPeak, staircase } from '../../bench/peak-search.js';

/**
 * A server whose steps keep pace with probability 1 / (1 + e^(ln(rate / edge) / width)): a sure pass far
 * below `edge`, a toss at it, saturated above twice it. In the quiet runs of 2026-12-03 (8 s steps)
 * 4,305/s missed about half the time and 4,695/s kept pace about a third: a width near 0.06–0.09. Fitted
 * to every staircase step of a run (12 s steps, bench/broadcast.ts, EDGE_STEP_SECONDS) it was 0.10–0.12
 * while a step's verdict compared two one-second windows, and 0.04–0.05 once it took the slope of latency
 * through every sample (2026-12-04 19:07). The
 * bisection the search replaced (one verdict per rate, a marginal miss run again) agrees within 10 %
 * over three searches of this model at 0.04 in ~2/3 of sets (a simulation outside the tests).
 */
function server(edge: number, width: number, seed: number): { step: (rate: number) => Promise<Verdict>; rates: number[] } {
  const next = seededRandom(seed);
  const rates: number[] = [];
  return {
    rates,
    step: async (rate) => {
      rates.push(rate);
      const ok = next() < 1 / (1 + Math.exp(Math.log(rate / edge) / width));
      return { rate, ok, saturated: rate > 2 * edge };
    },
  };
}

describe('peak search', () => {
  it('finds a sharp edge within one rung of the finest stride', async () => {
    for (const edge of [7.7, 1_100, 4_700, 9_000]) {
      const { rate } = await findPeak(async (r) => ({ rate: r, ok: r <= edge, saturated: r > 2 * edge }));
      expect(Math.abs(Math.log(rate / edge))).toBeLessThan(Math.log(2) / PEAK_SEARCH.rungsPerDoubling);
    }
  });

  it('halves from the start rate when nothing keeps pace, and fails when nothing down to the lowest rate does', async () => {
    const { rate } = await findPeak(async (r) => ({ rate: r, ok: r <= 1.3, saturated: r > 2.6 }));
    expect(rate).toBeGreaterThan(1.3 / 1.1);
    expect(rate).toBeLessThan(1.3 * 1.1);
    await expect(findPeak(async (r) => ({ rate: r, ok: false, saturated: true }))).rejects.toThrow(/no rate down to 0.5/);
  });

  it('three searches of a fuzzy edge agree within 10 % nearly always, whichever way the first tosses fall', async () => {
    const edge = 4_700;
    let agreeing = 0;
    const trials = 200;
    const steps: number[] = [];
    let short = 0;
    for (let t = 0; t < trials; t++) {
      const peaks: number[] = [];
      for (let pass = 0; pass < 3; pass++) {
        const s = server(edge, 0.04, t * 3 + pass + 1);
        const { rate, cutShort } = await findPeak(s.step);
        if (cutShort) short++;
        peaks.push(rate);
        steps.push(s.rates.length);
        expect(Math.abs(Math.log(rate / edge))).toBeLessThan(Math.log(1.15));
      }
      const sorted = [...peaks].sort((a, b) => a - b);
      if ((sorted[2]! - sorted[0]!) / sorted[1]! <= 0.1) agreeing++;
    }
    expect(agreeing / trials).toBeGreaterThan(0.9);
    // Most reach their tenth finest rate before the cap: an estimate from two or three rates is the spread's main source.
    expect(short / trials / 3).toBeLessThan(0.15);
    // The climb's 12 steps at most (5 → 10,240, the last saturated) and at most PEAK_SEARCH.maxSteps on the staircase.
    expect(Math.max(...steps)).toBeLessThanOrEqual(12 + PEAK_SEARCH.maxSteps);
  });

  it('widens its stride again when a few spoiled verdicts sent it to the finest too early, and still finds the edge', async () => {
    // A sharp edge at 4,700/s, but the staircase's 2nd and 3rd steps miss whatever their rate (a disturbance):
    // at the finest stride from ~3,600/s, six rates 4.4 % apart would end their mean near 4,100.
    let n = 0;
    const { rate, rates: finest, cutShort } = await findPeak(async (r, edge) => {
      if (edge) n++;
      const spoiled = edge && (n === 2 || n === 3);
      return { rate: r, ok: !spoiled && r <= 4_700, saturated: r > 9_400 };
    }, { ...PEAK_SEARCH, startRate: 80 });
    expect(Math.abs(Math.log(rate / 4_700))).toBeLessThan(Math.log(1.05));
    // The climb back costs steps, but the cap leaves room for six at the finest stride, all at the edge.
    expect(cutShort).toBe(false);
    expect(finest.length).toBe(PEAK_SEARCH.finestSteps + 1);
    expect(Math.min(...finest)).toBeGreaterThan(4_700 / 1.1);
  });

  it('counts the rate the next step would run, so a search cut short after misses does not average only rates above the edge', async () => {
    const rung = 2 ** (1 / 16);
    const options = { ...PEAK_SEARCH, strides: [1], maxSteps: 2 };
    const { rate, rates: finest } = await staircase(1_100, async (r) => ({ rate: r, ok: r <= 1_000, saturated: false }), options);
    [1_100, 1_100 / rung, 1_100 / rung ** 2].forEach((r, i) => expect(finest[i]).toBeCloseTo(r, 6));
    expect(finest).toHaveLength(3);
    expect(rate).toBeCloseTo(1_100 / rung, 6);
  });

  it('when cut short by the cap, estimates from every rate since the first reversal, not from the fastest rate kept', async () => {
    // The C relay's staircase of 2026-12-04 05:55 (pass 1): six kept on the way up from 3,044/s, then the
    // stride widened twice after four misses in a row and the cap came with no rate left at the finest.
    // Replayed with the search's settings then (6 finest steps, 18 at most).
    const verdicts = [1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0].map(Boolean);
    const then = { ...PEAK_SEARCH, finestSteps: 6, maxSteps: verdicts.length };
    const ran: number[] = [];
    const { rate, rates, cutShort } = await staircase(3_044.4, async (r) => {
      ran.push(r);
      return { rate: r, ok: verdicts[ran.length - 1]!, saturated: false };
    }, then);
    expect(ran).toHaveLength(then.maxSteps);
    expect(cutShort).toBe(true);
    // From the first miss (8,611/s) on, and the rate the next step would run.
    expect(rates.slice(0, -1)).toEqual(ran.slice(6));
    expect(rates.at(-1)!).toBeLessThan(ran.at(-1)!);
    expect(rate).toBeCloseTo(Math.exp(rates.reduce((a, r) => a + Math.log(r), 0) / rates.length), 6);
    // The fastest rate kept (7,241/s), which it then missed twice, was the old answer.
    expect(rate).toBeGreaterThan(6_000);
    expect(rate).toBeLessThan(7_000);
  });
});
