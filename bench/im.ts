import { mkdtempSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { PACKAGE_ROOT } from '../src/paths.js';
import { startRedisServer } from '../test/helpers/redis-server.js';
import { type BenchProcess, type OutputLine, cpuUs, startProcess } from './processes.js';

/**
 * Issue 10's IM bench: 2,000 users in pairs (bench/im-load.ts), against one IM backend with the memory
 * store, then one with Redis (a redis-server started here), then two on Redis (users split between
 * them by consistent_hash, so messages cross processes), each set behind its own proxy, beside two
 * proxy echo round-trip rates measured in the same run: the same load against the echo backend (the
 * memory target's baseline: same users, connections, steps and pace rule) and the core section's
 * 64-connection closed loop (a second reference). Every process shares this machine's cores with the
 * load generator.
 *
 * BENCH_IM_GENERATOR picks the load generator's engine (bench/im-load-engine.ts), the same for every run
 * of the bench so the memory target's ratio compares like with like: `native` (the default,
 * bench/native/im-load.c, built with the system cc) or `node` (the in-process Node engine it replaced,
 * kept to compare). The generator's CPU column is the CPU time of every process of it.
 */
/** BENCH_IM_USERS lowers it for a quick check at small scale. */
export const IM_USERS = Number(process.env.BENCH_IM_USERS ?? 2_000);
const BIN = join(PACKAGE_ROOT, 'bin', 'livemux.js');
const LOAD = join(PACKAGE_ROOT, 'dist', 'bench', 'im-load.js');
const ECHO_LOAD = join(PACKAGE_ROOT, 'dist', 'bench', 'echo-load.js');

/** What one run of the load found. */
export interface ImRun {
  /** What ran: the store and how many IM backends, or the echo with the same load. */
  readonly store: string;
  readonly peak: number;
  readonly ackedPerSecond: number;
  readonly half: { rate: number; ok: boolean; ackP50Ms: number; ackP99Ms: number; recipientP50Ms: number; recipientP99Ms: number } | null;
  readonly steps: OutputLine[];
  /** CPU µs per acknowledged send of each process, at the peak step: where the machine's time goes. */
  readonly cpuAtPeak: CpuPerSend | null;
  /** The machine's 1-minute load average over the run's steps: what else shared the cores. */
  readonly load: number;
}

/** CPU µs per send, by process: the proxy, the backends together (`im`; the echo backend in the echo run), redis-server, the generator. */
type CpuPerSend = Record<'proxy' | 'im' | 'redis' | 'generator', number>;

/** The echo round-trip rate of the proxy in front of the echo backend, and what a round trip cost each process. */
export interface EchoFigure {
  readonly roundTripsPerSecond: number;
  readonly p99Ms: number;
  /** CPU µs per round trip of the proxy, the echo backend and the echo load generator. */
  readonly cpuUsPerRoundTrip: { proxy: number; backend: number; generator: number };
  /** The machine's 1-minute load average when it ended. */
  readonly load: number;
}

/**
 * Runs the echo load (bench/echo-load.ts, `args`) against a proxy and echo backend already running
 * (`pids`), reading their CPU time over the load's measuring window, so the IM figures can be set
 * beside the echo's not only in rates (which a loaded machine bends) but in CPU per operation.
 */
export async function measureEcho(args: string[], pids: { proxy: number; backend: number }, secret: string): Promise<EchoFigure> {
  const { process: load } = await startProcess(ECHO_LOAD, args, (l) => l.measuring === true, { LIVEMUX_JWT_SECRET: secret });
  const before = { proxy: cpuUs(pids.proxy), backend: cpuUs(pids.backend) };
  const result = await load.next((l) => 'roundTripsPerSecond' in l);
  const roundTrips = Math.max(1, result.roundTrips as number);
  return {
    roundTripsPerSecond: result.roundTripsPerSecond as number,
    p99Ms: result.p99Ms as number,
    cpuUsPerRoundTrip: {
      proxy: Math.round((cpuUs(pids.proxy) - before.proxy) / roundTrips),
      backend: Math.round((cpuUs(pids.backend) - before.backend) / roundTrips),
      generator: result.generatorCpuUs as number,
    },
    load: loadavg()[0]!,
  };
}

/**
 * What one run of the load drives: `label` names it in the table; `backend` is the livemux command of
 * its backends (`count` of them, flags `args`); `redisPid` is the redis-server whose CPU it shares.
 */
interface Target {
  readonly label: string;
  readonly backend: 'im-backend' | 'echo-backend';
  readonly args: readonly string[];
  readonly count: number;
  readonly redisPid?: number;
}

/** The label of the echo run with the IM load's shape, the memory target's baseline. */
const ECHO_SHAPED = 'echo, same load shape';

/**
 * BENCH_IM_RUNS picks some of the runs (comma-separated: echo, memory, redis, redis2) to keep a
 * measuring run short; all four by default. The 64-connection echo figure is always measured (seconds).
 */
const RUNS = new Set((process.env.BENCH_IM_RUNS ?? 'echo,memory,redis,redis2').split(',').map((r) => r.trim()));
/**
 * BENCH_IM_RATE: each run offers this one rate (a warm-up step and a measured step at it, then half of
 * it) instead of searching for the peak: CPU per send at a known rate, for an A/B or a profile. Its
 * "peak" is that rate when the step kept pace, else none.
 */
const FIXED_RATE = Number(process.env.BENCH_IM_RATE ?? 0);
/** BENCH_IM_GENERATOR: `native` (default) or `node`; see the header. */
const GENERATOR = process.env.BENCH_IM_GENERATOR === 'node' ? 'node' : 'native';

export async function benchIm(secret: string, echo: () => Promise<EchoFigure>): Promise<string> {
  const echoFigure = await echo();
  const runs: ImRun[] = [];
  // The echo with the IM load's shape: the same users, connections, step search and pace rule.
  if (RUNS.has('echo')) runs.push(await runLoad({ label: ECHO_SHAPED, backend: 'echo-backend', args: [], count: 1 }, secret));
  if (RUNS.has('memory')) runs.push(await runLoad({ label: 'memory', backend: 'im-backend', args: [], count: 1 }, secret));
  // A fresh Redis each: the second run must not inherit the first one's conversations and inboxes.
  for (const [run, count] of [['redis', 1], ['redis2', 2]] as const) {
    if (!RUNS.has(run)) continue;
    const redis = await startRedisServer();
    try {
      const label = count === 1 ? 'redis' : 'redis, 2 IM backends';
      runs.push(await runLoad({ label, backend: 'im-backend', args: ['--redis', redis.url], count, redisPid: redis.pid }, secret));
    } finally {
      await redis.stop();
    }
  }
  return report(echoFigure, runs);
}

/**
 * `target.count` backends and a proxy routing the load's business to them (IM by user_id); runs the
 * load and stops them. With two IM backends, a pair's users are on different backends half the time,
 * so half the messages reach their recipient through Redis pub/sub from the other process.
 */
async function runLoad(target: Target, secret: string): Promise<ImRun> {
  const env = { LIVEMUX_JWT_SECRET: secret };
  const im = target.backend === 'im-backend';
  // The generator offers far more than the product's 20 sends/s per user at the top steps.
  const backendArgs = [target.backend, '--host', '127.0.0.1', '--port', '0', ...(im ? ['--send-rate', '100000'] : []), ...target.args];
  const backends = await Promise.all(Array.from({ length: target.count }, () => startProcess(BIN, backendArgs, (l) => l.event === 'listening', env)));
  const dir = mkdtempSync(join(tmpdir(), 'livemux-bench-im-'));
  const business = im ? 'im' : 'echo';
  const route = im ? { business, pool: business, policy: 'consistent_hash', hash_key: 'user_id' } : { business, pool: business };
  writeFileSync(
    join(dir, 'routes.yaml'),
    stringify({
      version: 1,
      routes: [route],
      pools: { [business]: { protocol: 'grpc', endpoints: backends.map((b) => ({ address: `127.0.0.1:${b.line.port as number}` })) } },
    }),
  );
  // Senders do not read WINDOW_UPDATEs: large client→proxy windows keep them legal for the whole run.
  const limits = { session_window: 1 << 30, connection_window: 1 << 30, max_sessions: 4 };
  // Every user connects from 127.0.0.1: the per-address limit a public listener needs would refuse half of them.
  const connections = { max_per_address: 1_000_000 };
  writeFileSync(join(dir, 'livemux.yaml'), stringify({ listen: { host: '127.0.0.1', port: 0 }, admin: false, routes: './routes.yaml', log: { level: 'info' }, limits, connections }));
  const proxy = await startProcess(BIN, ['start', '--config', join(dir, 'livemux.yaml')], (l) => l.msg === 'livemux listening', env);
  const processes: BenchProcess[] = [proxy.process, ...backends.map((b) => b.process)];
  const store = target.label;
  try {
    await new Promise((r) => setTimeout(r, 500)); // the proxy's stream to the backend comes up
    // Each step line comes after the step's backlog is worked off: CPU time between two lines is what
    // its sends cost, whatever else the machine runs (the rates are not: they share the cores).
    const fixed = FIXED_RATE > 0 ? ['--start', String(FIXED_RATE), '--max-rate', String(FIXED_RATE), '--refinements', '0'] : [];
    const loadArgs = ['--port', String(proxy.line.port as number), '--users', String(IM_USERS), '--business', business, '--engine', GENERATOR, ...fixed];
    const load = await startProcess(LOAD, loadArgs, (l) => 'warmup' in l, env);
    const pids = { proxy: [proxy.process.pid], im: backends.map((b) => b.process.pid), redis: target.redisPid === undefined ? [] : [target.redisPid], generator: [...new Set([load.process.pid, ...(load.line.generatorPids as number[])])] };
    const cpu = (): CpuPerSend => ({
      proxy: sumCpu(pids.proxy),
      im: sumCpu(pids.im),
      redis: sumCpu(pids.redis),
      generator: sumCpu(pids.generator),
    });
    let before = cpu();
    console.log(`im ${store}: ${JSON.stringify(load.line)}`);
    const steps: OutputLine[] = [];
    const loads: number[] = [];
    for (;;) {
      const line = await load.process.next((l) => 'step' in l || 'half' in l || 'peak' in l, 300_000);
      if ('peak' in line) {
        const atPeak = steps.find((s) => s.ok === true && s.step === line.peak);
        const cpuAtPeak = (atPeak?.cpuUsPerSend as CpuPerSend | undefined) ?? null;
        const load = loads.reduce((a, b) => a + b, 0) / Math.max(1, loads.length);
        return { store, peak: line.peak as number, ackedPerSecond: line.ackedPerSecondAtPeak as number, half: line.half as ImRun['half'], steps, cpuAtPeak, load };
      }
      loads.push(loadavg()[0]!);
      const after = cpu();
      const sent = Math.max(1, line.sent as number);
      const cpuUsPerSend = Object.fromEntries(Object.entries(after).map(([k, v]) => [k, Math.round((v - before[k as keyof CpuPerSend]) / sent)])) as CpuPerSend;
      before = after;
      const measured = { ...line, cpuUsPerSend };
      console.log(`im ${store}: ${JSON.stringify(measured)}`);
      if ('step' in line) steps.push(measured);
    }
  } finally {
    for (const p of processes) p.stop();
  }
}

function sumCpu(pids: readonly number[]): number {
  return pids.reduce((total, pid) => total + cpuUs(pid), 0);
}

function report(echo: EchoFigure, runs: ImRun[]): string {
  const fmt = (n: number): string => Math.round(n).toLocaleString('en-US');
  // A quantile of no samples is NaN, which JSON carries as null.
  const ms = (n: number | null | undefined): string => (typeof n !== 'number' || Number.isNaN(n) ? '–' : n.toFixed(1));
  const verdict = (ok: boolean): string => (ok ? 'met' : '**missed**');
  const pct = (a: number, b: number): string => `${((a / b) * 100).toFixed(1)} %`;
  const byLabel = (label: string): ImRun | undefined => runs.find((r) => r.store === label);
  const [shaped, memory, redis] = [byLabel(ECHO_SHAPED), byLabel('memory'), byLabel('redis')];
  const e = echo.cpuUsPerRoundTrip;
  const targets = new Map<ImRun | undefined, string>();
  if (shaped !== undefined) targets.set(shaped, 'the baseline of the memory target');
  if (memory !== undefined) {
    const m = memory.cpuAtPeak;
    const s = shaped?.cpuAtPeak;
    // What the servers (not the generators) spend per operation: the rate ratio they would reach with the
    // machine to themselves, which the other load on a shared machine does not bend as it bends rates.
    const cpuRatio = m === null || s === null || s === undefined ? '' : `; by the servers' CPU per operation, (${s.proxy} + ${s.im}) / (${m.proxy} + ${m.im}) µs = ${pct(s.proxy + s.im, m.proxy + m.im)}`;
    const second = `; ${pct(memory.ackedPerSecond, echo.roundTripsPerSecond)} of the 64-connection echo`;
    targets.set(
      memory,
      shaped === undefined
        ? `≥ 25 % of the same-shape echo rate: not judged (no same-shape echo run in BENCH_IM_RUNS)${second}`
        : `≥ 25 % of the same-shape echo rate: ${verdict(memory.ackedPerSecond >= 0.25 * shaped.ackedPerSecond)} (${pct(memory.ackedPerSecond, shaped.ackedPerSecond)}${cpuRatio})${second}`,
    );
  }
  if (redis !== undefined) targets.set(redis, `≥ 10,000 acked sends/s: ${verdict(redis.ackedPerSecond >= 10_000)}`);
  const row = (r: ImRun): string => {
    const h = r.half;
    // The p99 target is IM's; the echo row shows its latency for comparison only.
    const p99Target = h === null || r === shaped ? '' : `; p99 send→recipient < 50 ms at half the peak: ${verdict(h.recipientP99Ms < 50)}`;
    const target = targets.get(r) ?? 'half the messages cross processes through Redis pub/sub (no target)';
    const c = r.cpuAtPeak;
    const cpu = c === null ? '–' : `${c.proxy} + ${c.im}${r.store.startsWith('redis') ? ` + ${c.redis}` : ''} + ${c.generator} = ${c.proxy + c.im + c.redis + c.generator}`;
    return `| ${r.store} | ${fmt(r.ackedPerSecond)} | ${h ? fmt(h.rate) : '–'} | ${ms(h?.ackP50Ms)} / ${ms(h?.ackP99Ms)} ms | ${ms(h?.recipientP50Ms)} / ${ms(h?.recipientP99Ms)} ms | ${cpu} | ${target}${p99Target} |`;
  };
  const step = (s: OutputLine): string =>
    `${fmt(s.step as number)} ${s.ok ? '✓' : `✗ (${fmt(s.acked as number)}/${fmt(s.sent as number)} acked, median ack ${ms(s.ackP50Ms as number)} ms, latency grew ${s.latencyGrowthMs} ms)`}`;
  return [
    `${fmt(IM_USERS)} users in pairs, one connection and one \`im\` session each, ${64}-byte bodies; every send stored in the conversation and both inboxes before its ack, and delivered to the recipient's device. ` +
      'Peak: the fastest 4 s step (a step that missed the rule below by a small margin, within twice its bounds, is run once more before it counts: the machine is shared) whose sends were all acknowledged (within 2 s after it) and delivered, with a steady ack latency (its last second at most 200 ms slower than its second) and a median ack latency of at most 100 ms. Recipients acknowledge as the SDK does (every 64 entries or a second after the first). Latency at half the peak, on the generator\'s clock (sender and recipient live in it). ' +
      'CPU per send: each process\'s CPU time (/proc) over the peak step and its backlog, per send; it hardly depends on what else the machine runs, and 2 cores give 2,000,000 µs a second, so it bounds the rate. ' +
      `Each user has a connection of its own, as each phone has, so nothing coalesces on a socket: per send the proxy reads the send and writes the Reply and the Entries on different sockets (and reads the recipient's Ack, about one a second). Putting several users on one connection would make the IM figures look better by measuring traffic no deployment sees; the generator's own CPU is its own column (generator: ${GENERATOR === 'native' ? 'the native engine, bench/native/im-load.c' : 'the Node engine (BENCH_IM_GENERATOR=node)'}).`,
    '',
    `Two echo baselines, both proxy + echo backend round trips of 64-byte bodies in the same run. **Same load shape** (the row "${ECHO_SHAPED}", the memory target's baseline): the very generator, users, connections (${fmt(IM_USERS)}, one session each, each its own HELLO with its own token), 4 s offered-rate steps, peak search and pace rule as the IM runs, each send a DATA on the user's \`echo\` session whose echo is its ack and its delivery. ` +
      `**64 connections × 4 sessions, closed loop** (the core section's load, one 64-byte message in flight per session, 256 in all): the proxy's best case, where a read or a write carries several sessions' frames. ` +
      `The memory target (≥ 25 % of the echo round-trip rate) is judged against the same-shape echo since 2026-12-03: the 64-connection echo measures the proxy with coalescing the IM load cannot have (proxy CPU per round trip ${e.proxy} µs there${shaped?.cpuAtPeak ? `, ${shaped.cpuAtPeak.proxy} µs with the IM load's shape` : ''}), and a closed loop rather than an offered rate, so a ratio to it mixes the cost of IM with the cost of another traffic shape and another rule. With both loads one user per connection, at an offered rate judged by one rule, the ratio measures what IM costs beside an echo. The IM load is not made lighter for it: still one connection per user; the echo is made as heavy.`,
    '',
    `The machine's 1-minute load average (2 cores: above 2, other work shared them and bent the rates, not the CPU per operation): 64-connection echo ${echo.load.toFixed(1)}, ${runs.map((r) => `${r.store} ${r.load.toFixed(1)}`).join(', ')}.`,
    '',
    `64 connections × 4 sessions, closed loop, in the same run: ${fmt(echo.roundTripsPerSecond)} round trips/s (p99 ${echo.p99Ms.toFixed(2)} ms); CPU µs per round trip: proxy ${e.proxy} + echo backend ${e.backend} + generator ${e.generator} = ${e.proxy + e.backend + e.generator}.`,
    '',
    '| run | acked sends (echo: round trips)/s at the peak | half-peak rate | send→ack p50 / p99 | send→recipient p50 / p99 | CPU µs per send at the peak: proxy + backend (+ redis) + generator | targets |',
    '| --- | --- | --- | --- | --- | --- | --- |',
    ...runs.map(row),
    '',
    'Peak search, sends/s offered; ✓ kept pace, ✗ did not:',
    ...runs.map((r) => `- ${r.store}: ${r.steps.map(step).join(', ')}`),
  ].join('\n');
}
