/**
 * The broadcast bench's peak search (issue 14): the highest rate a server sustains, from steps whose
 * verdict (kept pace or not) is a coin toss near that rate.
 *
 * Near a coalescing server's peak a round of writes to the room lasts 200–500 ms, and whether a step's
 * latency grew past the bound depends on where the rounds fall: in the quiet runs of 2026-12-03 the
 * same system kept pace at 4,305 messages/s in one step and missed it in the next, and kept pace at
 * 5,120/s in one pass while missing 4,695/s in another. A bisection takes one verdict per rate and
 * follows it: one lucky 5,120 put a pass's peak there, one unlucky 4,305 put it at 3,948, and the
 * passes of one system spread 13–17 %. Here the edge is found by a staircase (the up-down method of
 * psychophysics): after the climb has bracketed it, each step goes up after keeping pace and down
 * after missing, so the steps gather where keeping pace and missing are equally likely, and the peak
 * is the geometric mean of the rates run once the stride is down to its finest: every verdict there
 * counts, none decides alone.
 */

/** What the search needs of a step: its rate, its verdict, and whether it was hopelessly behind. */
export interface Verdict {
  rate: number;
  ok: boolean;
  /** Far behind (messages lost, or received at well under the pace): the climb stops here. */
  saturated: boolean;
}

export interface PeakSearchOptions {
  /** First rate of the climb, which doubles from it (or halves, if it does not keep pace). */
  startRate: number;
  minRate: number;
  maxRate: number;
  /** Rungs per doubling of the staircase's finest stride (16: 4.4 % apart). */
  rungsPerDoubling: number;
  /** Strides of the staircase in rungs, the next one after each reversal (up after down, or down after up). */
  strides: number[];
  /** Steps at the finest stride whose rates make the estimate. */
  finestSteps: number;
  /** Moves the same way in a row that widen the stride again (see staircase). */
  sameWay: number;
  /**
   * Most staircase steps in all, in case the verdicts never settle (the estimate is then the mean of every
   * rate since the staircase's first reversal, see staircase). With 6 finest steps and 14 at most, a quarter of searches of an edge as fuzzy as the test's model
   * (width 0.04) ran out before their sixth finest rate, and so did the C relay's pass 2 of 2026-12-04
   * 02:33 (65.0 M from two rates, against 60.4 and 57.2); with 18, under a tenth.
   */
  maxSteps: number;
}

/**
 * 10 finest steps, 26 at most: with 6 and 18 (until 2026-12-04), three searches of the test's model of
 * an edge of width 0.06 agreed within 10 % in 78 % of 1,000 sets (71 % with the climb's 4 s verdicts
 * fuzzier, width 0.15), so three systems' passes all agreed in under half of the runs; with 10 and 26,
 * 90 % (87 %), for 5.5 more staircase steps per search (17.8 in all, ~13 minutes more per run of three
 * systems). 12 and 30 gained nothing more. The C relay's passes of 2026-12-04 16:23, the machine's drift
 * taken out by searching them at once, were 22 % apart: one climb missed 5,120/s by a toss, and its
 * staircase spent its 18 steps walking up from 3,044/s.
 */
export const PEAK_SEARCH: PeakSearchOptions = { startRate: 5, minRate: 0.5, maxRate: 100_000, rungsPerDoubling: 16, strides: [4, 2, 1], finestSteps: 10, sameWay: 4, maxSteps: 26 };

export interface PeakEstimate {
  /** The peak rate: geometric mean of the staircase's rates at its finest stride, and of the next one it would run. */
  rate: number;
  /**
   * The rates that made it, the next one last: the staircase's last steps (empty when the climb found no
   * edge, or the staircase never turned).
   */
  rates: number[];
  /** Cut short by maxSteps: the rates are every one since the staircase's first reversal. */
  cutShort: boolean;
}

/**
 * Climbs by doubling from `startRate` (`step(rate, false)`) until a step is saturated, halving instead
 * if nothing kept pace; then runs the staircase (`step(rate, true)`) in the bracket between the fastest
 * climb step that kept pace and the slowest faster one that did not, from one coarse stride above the
 * former (or the bracket's geometric middle, when that is lower). A
 * step that misses without being saturated does not stop the climb: a server that coalesces writes
 * more messages per syscall as the rate rises and may keep pace at twice a rate it just missed.
 */
export async function findPeak(step: (rate: number, edge: boolean) => Promise<Verdict>, options: PeakSearchOptions = PEAK_SEARCH): Promise<PeakEstimate> {
  const climb: Verdict[] = [];
  for (let rate = options.startRate; rate <= options.maxRate; rate *= 2) {
    const s = await step(rate, false);
    climb.push(s);
    if (s.saturated) break;
  }
  const kept = (): Verdict | undefined => climb.filter((s) => s.ok).sort((a, b) => b.rate - a.rate)[0];
  for (let rate = options.startRate / 2; !kept() && rate >= options.minRate; rate /= 2) climb.push(await step(rate, false));
  const low = kept();
  if (!low) throw new Error(`broadcast: no rate down to ${options.minRate} messages/s kept pace`);
  const high = climb.filter((s) => !s.ok && s.rate > low.rate).sort((a, b) => a.rate - b.rate)[0];
  // Nothing missed above it: the climb reached maxRate keeping pace.
  if (!high) return { rate: low.rate, rates: [], cutShort: false };
  // One coarse stride above the fastest rate kept: climbing steps are cheap (received on time), and the
  // edge lies nearer the bottom of the doubling than its middle as often as not (at 5,100–5,600/s from a
  // bracket of 5,120–10,240, a middle start spends two steps far behind, each draining seconds of backlog).
  return staircase(Math.min(low.rate * 2 ** (options.strides[0]! / options.rungsPerDoubling), Math.sqrt(low.rate * high.rate)), (rate) => step(rate, true), options);
}

/**
 * The up-down staircase from `start` (see the module's comment). Each time the verdict turns the
 * stride shrinks one notch; a run of `sameWay` moves the same way widens it one notch again and
 * drops the finest rates gathered so far: the edge is further than the stride reaches (a start far
 * from it, or a disturbance that spoiled a few verdicts and sent the stride to its finest early), and
 * a mean of rates walking towards it would stop short of it.
 */
export async function staircase(start: number, step: (rate: number) => Promise<Verdict>, options: PeakSearchOptions = PEAK_SEARCH): Promise<PeakEstimate> {
  const rung = 2 ** (1 / options.rungsPerDoubling);
  const finestStride = options.strides.length - 1;
  let stride = 0;
  let rate = start;
  let previous: boolean | undefined;
  let run = 0;
  let finest: number[] = [];
  let fastestKept = 0;
  /** Every rate run from the first reversal on: what a search cut short by maxSteps estimates from. */
  const straddling: number[] = [];
  for (let n = 0; n < options.maxSteps && finest.length < options.finestSteps; n++) {
    const s = await step(rate);
    if (stride === finestStride) finest.push(rate);
    if (s.ok) fastestKept = Math.max(fastestKept, rate);
    const reversal = previous !== undefined && s.ok !== previous;
    if (reversal || straddling.length > 0) straddling.push(rate);
    if (reversal) {
      stride = Math.min(stride + 1, finestStride);
      run = 1;
    } else if (++run >= options.sameWay && stride > 0) {
      stride--;
      finest = [];
      run = 0;
    }
    previous = s.ok;
    rate = Math.max(options.minRate, rate * rung ** (s.ok ? options.strides[stride]! : -options.strides[stride]!));
  }
  // A search cut short by maxSteps estimates from every rate since its first reversal instead: all of
  // them straddle the edge, and its few finest rates (or none: the C relay, 2026-12-04 05:55, widened
  // its stride again twice and ended on the fastest rate kept, 7,241/s, which it then missed twice)
  // average too few verdicts. In the test's model (three searches of an edge of width 0.06, 600 sets)
  // the three agree within 10 % in 76 % of sets this way, 70 % on the finest rates alone.
  const cutShort = finest.length < options.finestSteps;
  const made = cutShort && straddling.length > 0 ? straddling : finest;
  if (made.length === 0) return { rate: fastestKept || rate, rates: [], cutShort };
  // The rate the next step would run counts too: the last verdict decided it (the usual practice with
  // up-down staircases). Without it, a search cut short by maxSteps after two misses at the finest
  // stride (the C relay, 2026-12-03 16:41: 7,241 and 6,934/s) averages two rates above the edge.
  made.push(rate);
  return { rate: Math.exp(made.reduce((sum, r) => sum + Math.log(r), 0) / made.length), rates: made, cutShort };
}
