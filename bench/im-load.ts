import { parseArgs } from 'node:util';
import { mintToken } from '../src/proxy/auth.js';
import type { LoadEngine, StepStats } from './im-load-engine.js';
import { judgePace } from './im-pace.js';
import { NativeLoadEngine } from './im-load-native.js';
import { NodeLoadEngine } from './im-load-node.js';

/**
 * IM load (issue 10's bench): `users` users in pairs, each on its own connection with one `im` session
 * (device_id `bench`), speaking the IM protocol directly (no SDK logic in the way).
 *
 * With `--business echo` the same users, connections, step search and pace rule drive the proxy's echo
 * backend instead: each send is a 64-byte DATA on the user's one `echo` session and its echo is both
 * its ack and its delivery. That is the echo round-trip rate with the IM load's shape (one session per
 * connection, open-loop offered rate), the like-for-like baseline of the IM memory target. The generator
 * offers sends at a fixed total rate, spread round-robin over the users, each to its pair partner,
 * and measures per step: sends acknowledged per second, send→ack latency (to the sender's Reply) and
 * send→recipient latency (to the recipient's Entries event), both on the engine's clock, since
 * sender and recipient live in it. Recipients acknowledge their inbox as the SDK's ImClient does
 * (cumulative Acks, once 64 entries are unacknowledged or a second after the first) and return
 * flow-control credit.
 *
 * `--engine` says what does that socket work (bench/im-load-engine.ts): `native` (the default,
 * bench/native/im-load.c, a fraction of the CPU per send) or `node` (in this process). This file keeps
 * what decides, the same for both: the steps, the pace rule, the search and the output.
 *
 * After a warm-up step at `start`, the peak search doubles the rate from `start` until a step does not keep pace (a marginal
 * miss twice: see judgeStep), then bisects `refinements` times; then one step at half the peak measures latency. Prints one JSON line per step
 * (`{"step":…}`; the warm-up's also names the engine's processes, `generatorPids`) and a last one with the result (`{"peak":…}`).
 */
const { values } = parseArgs({
  options: {
    port: { type: 'string' },
    users: { type: 'string', default: '2000' },
    seconds: { type: 'string', default: '4' },
    start: { type: 'string', default: '250' },
    refinements: { type: 'string', default: '2' },
    'max-rate': { type: 'string', default: '64000' },
    size: { type: 'string', default: '64' },
    business: { type: 'string', default: 'im' },
    engine: { type: 'string', default: 'native' },
  },
});
const USERS = Number(values.users) & ~1;
const STEP_MS = Number(values.seconds) * 1000;
/** A step keeps pace when every send of it was acknowledged within this long after the step ended (and bench/im-pace.ts). */
const SETTLE_MS = 2_000;
/** Recipients get a message after its sender's ack: how long to wait for the last deliveries after the acks. */
const DELIVER_MS = 500;
/** A step stops offering once more than this many seconds of its sends are unacknowledged. */
const MAX_BEHIND_S = 2;
/** Longest wait for a step's backlog to clear before the next step, and a quiet moment after it. */
const DRAIN_MS = 60_000;
const QUIET_MS = 300;
const secret = process.env.LIVEMUX_JWT_SECRET ?? '';
const business = values.business === 'echo' ? 'echo' : 'im';

interface StepResult {
  rate: number;
  ok: boolean;
  /** Missed the pace rule, but only just: worth one more run on a shared machine. */
  marginal: boolean;
  ackedPerSecond: number;
  stats: StepStats;
}

/** Numbers the steps, so that replies and deliveries of an earlier step's backlog are not counted in a later one. */
let stepNo = 0;

/** Offers `rate` sends/s for one step, waits for it to settle, and judges whether it kept pace. */
async function runStep(engine: LoadEngine, rate: number, kind: 'step' | 'half' | 'warmup' = 'step'): Promise<StepResult> {
  const started = performance.now();
  const stats = await engine.step({ step: ++stepNo, rate, ms: STEP_MS, settleMs: SETTLE_MS, deliverMs: DELIVER_MS });
  const ackedPerSecond = stats.acked / ((performance.now() - started) / 1000);
  const { ok, marginal, growthMs, medianAckMs } = judgePace(stats);
  const line = {
    [kind]: rate,
    ok,
    sent: stats.sent,
    acked: stats.acked,
    delivered: stats.delivered,
    ackP50Ms: medianAckMs,
    ackP99Ms: stats.ack.quantile(0.99),
    recipientP50Ms: stats.recipient.quantile(0.5),
    recipientP99Ms: stats.recipient.quantile(0.99),
    latencyGrowthMs: Math.round(growthMs),
    // What the engine itself spent per send (sending, decoding replies and deliveries, acking): it
    // shares the cores with what it measures.
    generatorCpuUsPerSend: Math.round(stats.cpuUs / Math.max(1, stats.sent)),
    ...(kind === 'warmup' ? { generatorPids: engine.pids } : {}),
  };
  console.log(JSON.stringify(line));
  // A step that fell behind leaves a backlog: let the system work it off before the next step measures.
  await engine.drain(DRAIN_MS, QUIET_MS);
  return { rate, ok, marginal, ackedPerSecond: ok ? stats.acked / (STEP_MS / 1000) : ackedPerSecond, stats };
}

const users = Array.from({ length: USERS }, (_, i) => ({ name: `u${i}`, partner: `u${i ^ 1}` }));
const tokens = await Promise.all(users.map((u) => mintToken({ secret, sub: u.name })));
const options = {
  port: Number(values.port),
  users: users.map((u, i) => ({ ...u, token: tokens[i]! })),
  business,
  bodyBytes: Math.max(16, Number(values.size)),
  maxRate: Number(values['max-rate']),
  maxBehindS: MAX_BEHIND_S,
} as const;
const engine: LoadEngine = values.engine === 'node' ? await NodeLoadEngine.start(options) : await NativeLoadEngine.start(options);
// The first seconds of traffic are slow (JIT, first reads of every inbox, pools warming up): not measured.
await runStep(engine, Number(values.start), 'warmup');

let best: StepResult | null = null;
let failed: number | null = null;
/**
 * Only a step that missed the pace rule by a small margin (judgePace's `marginal`: every send acked and
 * delivered, median ack and latency growth within twice their bounds) is run once more before it counts
 * as failed: this machine is shared, and another process's burst of seconds (a compile, a test run) can
 * push a step that keeps pace just over a bound, not to seconds. Until 2026-12-03 every complete but
 * slow step was rerun, and session 21's searches reran 16,000/s steps with a median ack of 2 s and
 * 12,000/s ones at 0.7-1.5 s, twice each, before the 10,000/s step that decided the target, whose
 * verdict then paid for their backlog.
 */
async function judgeStep(rate: number): Promise<StepResult> {
  const first = await runStep(engine, rate);
  return first.marginal ? runStep(engine, rate) : first;
}

for (let rate = Number(values.start); rate <= Number(values['max-rate']); rate *= 2) {
  const result = await judgeStep(rate);
  if (!result.ok) {
    failed = rate;
    break;
  }
  best = result;
}
for (let i = 0; i < Number(values.refinements) && best !== null && failed !== null; i++) {
  const rate = Math.round((best.rate + failed) / 2);
  const result = await judgeStep(rate);
  if (result.ok) best = result;
  else failed = rate;
}
const peak = best?.rate ?? 0;
const half = peak > 0 ? await runStep(engine, Math.round(peak / 2), 'half') : null;
console.log(
  JSON.stringify({
    peak,
    ackedPerSecondAtPeak: best?.ackedPerSecond ?? 0,
    half: half && {
      rate: half.rate,
      ok: half.ok,
      ackP50Ms: half.stats.ack.quantile(0.5),
      ackP99Ms: half.stats.ack.quantile(0.99),
      recipientP50Ms: half.stats.recipient.quantile(0.5),
      recipientP99Ms: half.stats.recipient.quantile(0.99),
    },
  }),
);
process.exit(0);
