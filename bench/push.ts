import { mkdtempSync, writeFileSync } from 'node:fs';
import { Agent, get } from 'node:http';
import { cpus, loadavg, setPriority, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { stringify } from 'yaml';
import { PUSH_NODE_FLAGS } from '../src/backends/push/node-flags.js';
import { PACKAGE_ROOT } from '../src/paths.js';
import { LatencyHistogram, clockMs } from './broadcast-protocol.js';
import { BenchProcess, type OutputLine, cpuUs, startProcess } from './processes.js';

/**
 * The push section (issue 11): a Push backend node (in-memory store, as `npm start` runs it) behind
 * one proxy, PUSH_DEVICES devices (one user each) in DEVICE_PROCESSES client processes with the SDK's
 * push client, which acknowledges every push.
 * (a) One POST to all: the time from sending the call until GET /v1/push/{id} (polled every POLL_MS)
 *     reports every device delivered (acknowledged), TRIALS times, after one untimed warm-up push (the
 *     first push to all runs every process's fan-out and ack paths through V8's unoptimised tiers).
 * (b) Pushes to one random user each (ttl_s 60: stored in the user's inbox, then delivered): the
 *     offered rate doubles from 500 calls/s while a STEP_SECONDS step keeps pace (≥ 95 % of the
 *     offered calls answered 202, none failed, HTTP p99 < 1 s, and ≥ 95 % of the accepted pushes at
 *     their devices within DELIVERY_GRACE_MS of the step's end, HTTP → device p99 < 1 s: a node that
 *     answers faster than it delivers only builds a backlog), or halves while the first steps do not;
 *     then REFINEMENTS bisections between the fastest step that kept pace and the slowest that did not.
 *     A rate whose step fails is tried once more (both tries are listed) before it counts as failed.
 *     The peak is the fastest step that kept pace. Each step, and the run at half the peak, starts once
 *     the devices have every push accepted before it: a step that fell behind leaves a backlog, which is
 *     neither counted in the next step nor timed as its latency. Then LATENCY_SECONDS at half the peak, timing each
 *     push from just before its HTTP call to the device (CLOCK_MONOTONIC, shared by every process on
 *     the machine).
 * Both report the CPU time each part of the system spent per device reached (a) or per call (b): unlike
 * times, these hardly depend on what else the machine runs.
 *
 * Knobs (for profiling one part at a known load; a partial run says so in its table): BENCH_PUSH_DEVICES
 * (10,000), BENCH_PUSH_PARTS (`ab`; `a` or `b` runs one), BENCH_PUSH_RATE ((b) at this rate, no peak
 * search; after one untimed step at that rate), BENCH_PUSH_SECONDS (5, the length of that run),
 * BENCH_PUSH_CLIENT_NICE (10; 0 runs the simulated clients at the servers' priority); and for diagnosis
 * only BENCH_PUSH_NODE_FLAGS=none (the push node without its V8 flags).
 */
export const PUSH_DEVICES = Number(process.env.BENCH_PUSH_DEVICES ?? 10_000);
/** Which parts run (profiling one at a time): `a`, `b` or `ab`. */
const PARTS = process.env.BENCH_PUSH_PARTS ?? 'ab';
/** (b) at this one rate for LATENCY_SECONDS, no peak search (profiling a known load); 0 = search. */
const FIXED_RATE = Number(process.env.BENCH_PUSH_RATE ?? 0);
/** The devices' and load generator's nice value (0: as the servers'). */
const CLIENT_NICE = Number(process.env.BENCH_PUSH_CLIENT_NICE ?? 10);
const DEVICE_PROCESSES = 4;
const TRIALS = 3;
const POLL_MS = 10;
const STEP_SECONDS = 3;
const DELIVERY_GRACE_MS = 1000;
const SETTLE_POLL_MS = 200;
const SETTLE_MAX_MS = 30_000;
const LATENCY_SECONDS = Number(process.env.BENCH_PUSH_SECONDS ?? 5);
const KEY = 'bench-push-key-0123456789abcdef';
const FIRST_RATE = 500;
const REFINEMENTS = 2;
const MIN_RATE = 50;
const MAX_RATE = 64_000;
const BIN = join(PACKAGE_ROOT, 'bin', 'livemux.js');
const DIST_BENCH = join(PACKAGE_ROOT, 'dist', 'bench');

interface Step {
  rate: number;
  ok: boolean;
  accepted: number;
  p99Ms: number;
  /** Pushes the devices had DELIVERY_GRACE_MS after the step, and their HTTP → device latency. */
  received: number;
  latency: LatencyHistogram;
  /** CPU µs per accepted call over the step and its grace period. */
  cpu: CpuShare;
}

/** CPU µs per unit of work (a device reached, or a call) of each part of the system. */
export interface CpuShare {
  node: number;
  proxy: number;
  devices: number;
  /** The HTTP load generator ((b) only). */
  load?: number;
}

export interface PushResult {
  toAllMs: number[];
  toAllCpu: CpuShare;
  steps: Step[];
  peak: number;
  half: { rate: number; latency: LatencyHistogram; received: number; accepted: number; cpu: CpuShare };
  /** 1-minute load average of the machine when the section started and when it ended. */
  load: [number, number];
}

export async function benchPush(secret: string): Promise<PushResult> {
  const loadAtStart = loadavg()[0]!;
  const env = { LIVEMUX_JWT_SECRET: secret };
  const dir = mkdtempSync(join(tmpdir(), 'livemux-bench-push-'));
  writeFileSync(join(dir, 'push.yaml'), stringify({ api_keys: [{ name: 'bench', key: KEY, rate: 1_000_000 }], log: { level: 'warn' } }));
  // With the V8 flags `livemux up` starts a push node with (BENCH_PUSH_NODE_FLAGS=none: without them, for an A/B).
  const nodeFlags = process.env.BENCH_PUSH_NODE_FLAGS === 'none' ? [] : PUSH_NODE_FLAGS;
  const backend = await startProcess(BIN, ['push-backend', '--config', join(dir, 'push.yaml'), '--port', '0', '--http-port', '0'], (l) => l.event === 'listening', env, { nodeFlags });
  const api = `http://127.0.0.1:${String(backend.line.httpPort)}`;
  writeFileSync(
    join(dir, 'routes.yaml'),
    stringify({
      version: 1,
      routes: [{ business: 'push', pool: 'push', policy: 'consistent_hash', hash_key: 'user_id' }],
      pools: { push: { protocol: 'grpc', endpoints: [{ address: `127.0.0.1:${String(backend.line.port)}` }] } },
    }),
  );
  // Every device connects from 127.0.0.1, all at once: the per-address and handshake limits a public
  // listener keeps (issue 8) would refuse most of them.
  const connections = { max: 1_000_000, max_per_address: 1_000_000, max_handshakes: 1_000_000 };
  writeFileSync(join(dir, 'livemux.yaml'), stringify({ listen: { host: '127.0.0.1', port: 0 }, admin: { host: '127.0.0.1', port: 0 }, routes: './routes.yaml', log: { level: 'info' }, connections }));
  const proxy = await startProcess(BIN, ['start', '--config', join(dir, 'livemux.yaml')], (l) => l.msg === 'livemux listening', env);
  const port = proxy.line.port as number;
  await sleep(500); // the proxy's stream to the backend

  const per = Math.ceil(PUSH_DEVICES / DEVICE_PROCESSES);
  const devices = Array.from({ length: DEVICE_PROCESSES }, (_, i) => {
    const count = Math.min(per, PUSH_DEVICES - i * per);
    return new BenchProcess(join(DIST_BENCH, 'push-devices.js'), ['--port', String(port), '--first', String(i * per), '--count', String(count)], env);
  });
  await Promise.all(devices.map((d) => d.next((l) => l.event === 'ready', 300_000)));
  // The devices and the load generator stand for phones and business servers, which a deployment does
  // not run on the push node's or the proxy's cores. On 2 shared cores, at the servers' priority, they
  // take the core a server is waiting for: traces put every late burst of pushes on a push-node stall
  // spent as much waiting, runnable, as running (push-trace.ts). At a lower priority they still get every
  // cycle the servers leave (a starved generator offers less, a starved device reports later: both count
  // against the servers), as the broadcast bench gives its server a core of its own.
  for (const d of devices) if (CLIENT_NICE !== 0) setPriority(d.pid, CLIENT_NICE);
  /** What the devices received since the previous report. */
  /** (b)'s accepted pushes the devices have not reported yet (they all have a TTL: each one arrives). */
  let owed = 0;
  const report = async (): Promise<{ received: number; latency: LatencyHistogram }> => {
    const lines = devices.map((d) => d.next((l) => l.event === 'report'));
    for (const d of devices) d.signal('SIGUSR2');
    const latency = new LatencyHistogram();
    let received = 0;
    let repeats = 0;
    for (const line of await Promise.all(lines)) {
      latency.merge(line.counts as number[]);
      received += line.received as number;
      repeats += line.repeats as number;
    }
    if (repeats > 0) process.stderr.write(`push bench: ${repeats} pushes reached a device that already had them (not counted)\n`);
    owed = Math.max(0, owed - received);
    return { received, latency };
  };
  /**
   * Waits until the devices have every push (b) accepted so far (at most SETTLE_MAX_MS): the backlog of
   * a step that did not keep pace is delivered before the next step starts, neither counted in it nor
   * timed as its latency. (Waiting for a quiet moment is not enough: a starved proxy can pause longer.)
   */
  const settle = async (): Promise<void> => {
    const deadline = performance.now() + SETTLE_MAX_MS;
    await report();
    while (owed > 0 && performance.now() < deadline) {
      await sleep(SETTLE_POLL_MS);
      await report();
    }
    if (owed > 0) process.stderr.write(`push bench: ${owed} accepted pushes still not at their devices after ${SETTLE_MAX_MS} ms; going on\n`);
  };
  /** CPU µs so far of the push node, the proxy and the device processes. */
  const cpu = (): CpuShare => ({ node: cpuUs(backend.process.pid), proxy: cpuUs(proxy.process.pid), devices: devices.reduce((sum, d) => sum + cpuUs(d.pid), 0) });
  const share = (before: CpuShare, after: CpuShare, units: number): CpuShare => ({
    node: (after.node - before.node) / units,
    proxy: (after.proxy - before.proxy) / units,
    devices: (after.devices - before.devices) / units,
  });

  process.stderr.write(`push bench: ${PUSH_DEVICES} devices ready\n`);
  const toAllMs: number[] = [];
  let toAllCpu: CpuShare = { node: 0, proxy: 0, devices: 0 };
  if (PARTS.includes('a')) {
    const poller = new StatusPoller(api);
    // A push that never gets to 100 % says whether the devices did not get it or their acks were not counted.
    const pushToAll = (id: string): Promise<number> =>
      poller.pushToAll(id).catch(async (err: Error) => {
        throw new Error(`${err.message}; the devices received ${(await report()).received} pushes in part (a) (${PUSH_DEVICES} per push)`);
      });
    await pushToAll(`bench-all-${Date.now()}-warm-up`);
    const cpuBeforeAll = cpu();
    const from = clockMs();
    for (let trial = 0; trial < TRIALS; trial++) {
      await sleep(1000); // what the previous trial left (its last acks' writes, collections) is not timed
      toAllMs.push(await pushToAll(`bench-all-${Date.now()}-${trial}`));
    }
    // Includes the pauses: idle processes spend next to nothing (heartbeats are 30 s apart).
    toAllCpu = share(cpuBeforeAll, cpu(), TRIALS * PUSH_DEVICES);
    // CLOCK_MONOTONIC, as V8's profiles time their samples: to cut a profile (BENCH_NODE_FLAGS) to the trials.
    process.stderr.write(`push bench: (a) trials ran from ${from.toFixed(0)} to ${clockMs().toFixed(0)} ms\n`);
    poller.close();
  }

  // One load generator for every run of (b), started before any: see push-load.ts.
  const generator = PARTS.includes('b') ? new BenchProcess(join(DIST_BENCH, 'push-load.js'), ['--api', api, '--key', KEY, '--users', String(PUSH_DEVICES)], env, { input: true }) : null;
  await generator?.next((l) => l.event === 'ready');
  if (generator !== null && CLIENT_NICE !== 0) setPriority(generator.pid, CLIENT_NICE);
  const load = async (rate: number, seconds: number): Promise<OutputLine> => {
    const finished = generator!.next((l) => l.event === 'done', 120_000 + seconds * 1000);
    generator!.send(JSON.stringify({ rate, seconds }));
    const done = await finished;
    owed += done.accepted as number;
    return done;
  };
  const steps: Step[] = [];
  const step = async (rate: number): Promise<boolean> => {
    await settle(); // also starts the devices' counts afresh
    const cpuBefore = cpu();
    const done = await load(rate, STEP_SECONDS);
    await sleep(DELIVERY_GRACE_MS);
    const { received, latency } = await report();
    const accepted = done.accepted as number;
    const stepCpu = { ...share(cpuBefore, cpu(), Math.max(1, accepted)), load: (done.cpuUs as number) / Math.max(1, accepted) };
    const p99Ms = done.p99Ms as number;
    const answered = accepted >= 0.95 * (done.offered as number) && done.failed === 0 && p99Ms < 1000;
    const ok = answered && received >= 0.95 * accepted && latency.quantile(0.99) < 1000;
    steps.push({ rate, ok, accepted, p99Ms, received, latency, cpu: stepCpu });
    process.stderr.write(`push bench: ${rate} calls/s offered: ${JSON.stringify(done)}, ${received} received\n`);
    return ok;
  };
  /** Waits for the exits: a process profiled (BENCH_NODE_FLAGS=--cpu-prof) writes its profile as it exits. */
  const stop = async (): Promise<void> => {
    const all = [...devices, ...(generator === null ? [] : [generator]), proxy.process, backend.process];
    for (const p of all) p.stop();
    await Promise.all(all.map((p) => p.exited));
  };
  const notRun = { rate: 0, latency: new LatencyHistogram(), received: 0, accepted: 0, cpu: { node: 0, proxy: 0, devices: 0 } };
  if (!PARTS.includes('b')) {
    await stop();
    return { toAllMs, toAllCpu, steps, peak: 0, half: notRun, load: [loadAtStart, loadavg()[0]!] };
  }
  // A step that fails is tried once more before it counts as failed: one hiccup of a shared machine (or a
  // collection after the previous part) must not send the whole search down to a fraction of the peak.
  // At a fixed rate, one untimed step at that rate first: the half-peak run of a full run follows the
  // peak search, which has run every path of the call through V8's optimising tiers; a run straight
  // after the devices connect would time the first calls' compilation instead.
  if (FIXED_RATE > 0) await load(FIXED_RATE, STEP_SECONDS);
  const peak = FIXED_RATE > 0 ? 2 * FIXED_RATE : await findPeak(async (rate) => (await step(rate)) || step(rate));
  const half = Math.max(MIN_RATE / 2, peak / 2);
  // The search ends on steps at and beyond the peak, most of them overloads: what they leave (a node
  // still collecting their garbage, a backlog just delivered) is not the steady state at half the
  // peak that the target is about. One untimed step at half the peak first, as at a fixed rate.
  if (FIXED_RATE === 0) {
    await settle();
    await load(half, STEP_SECONDS);
  }
  await settle(); // also starts the devices' counts afresh
  const cpuBeforeHalf = cpu();
  const from = clockMs();
  const done = await load(half, LATENCY_SECONDS);
  process.stderr.write(`push bench: (b) at ${half} calls/s ran from ${from.toFixed(0)} to ${clockMs().toFixed(0)} ms\n`);
  await sleep(DELIVERY_GRACE_MS); // stragglers
  const accepted = done.accepted as number;
  const halfCpu = { ...share(cpuBeforeHalf, cpu(), accepted), load: (done.cpuUs as number) / accepted };
  const { received, latency } = await report();
  await stop();
  return { toAllMs, toAllCpu, steps, peak, half: { rate: half, latency, received, accepted, cpu: halfCpu }, load: [loadAtStart, loadavg()[0]!] };
}

/**
 * The fastest rate `step` keeps pace with: doubling from FIRST_RATE while steps keep pace (halving while
 * they do not), then REFINEMENTS bisections between the fastest rate that kept pace and the slowest
 * that did not. 0 when not even MIN_RATE kept pace.
 */
async function findPeak(step: (rate: number) => Promise<boolean>): Promise<number> {
  let good = 0;
  let bad = Number.POSITIVE_INFINITY;
  let rate = FIRST_RATE;
  if (await step(rate)) {
    good = rate;
    while (rate < MAX_RATE) {
      rate *= 2;
      if (!(await step(rate))) {
        bad = rate;
        break;
      }
      good = rate;
    }
  } else {
    bad = rate;
    while (rate / 2 >= MIN_RATE) {
      rate /= 2;
      if (await step(rate)) {
        good = rate;
        break;
      }
      bad = rate;
    }
  }
  for (let i = 0; i < REFINEMENTS && good > 0 && bad !== Number.POSITIVE_INFINITY; i++) {
    const mid = Math.round((good + bad) / 2);
    if (await step(mid)) good = mid;
    else bad = mid;
  }
  return good;
}

/** Times pushes to all by polling their status over one keep-alive connection (fetch costs far more per call). */
class StatusPoller {
  private readonly agent = new Agent({ keepAlive: true, maxSockets: 1 });
  private readonly headers = { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' };

  constructor(private readonly api: string) {}

  /** Sends one push to all and resolves with the ms until its status reports every device delivered. */
  async pushToAll(id: string): Promise<number> {
    const start = performance.now();
    const res = await fetch(`${this.api}/v1/push`, { method: 'POST', headers: this.headers, body: JSON.stringify({ id, to: { all: true }, data: '0', priority: 'high' }) });
    if (res.status !== 202) throw new Error(`push to all: ${res.status} ${await res.text()}`);
    const { targeted } = (await res.json()) as { targeted: number };
    if (targeted !== PUSH_DEVICES) throw new Error(`push to all: targeted ${targeted}, expected ${PUSH_DEVICES}`);
    for (;;) {
      const { delivered } = await this.status(id);
      if (delivered >= PUSH_DEVICES) return performance.now() - start;
      if (performance.now() - start > 60_000) throw new Error(`push to all: ${delivered} of ${PUSH_DEVICES} acknowledged after 60 s`);
      await sleep(POLL_MS);
    }
  }

  close(): void {
    this.agent.destroy();
  }

  private status(id: string): Promise<{ delivered: number }> {
    return new Promise((resolve, reject) => {
      get(`${this.api}/v1/push/${id}`, { agent: this.agent, headers: this.headers }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (body += chunk));
        res.on('end', () => (res.statusCode === 200 ? resolve(JSON.parse(body) as { delivered: number }) : reject(new Error(`push status: ${res.statusCode} ${body}`))));
      }).on('error', reject);
    });
  }
}

/** The section's table: (a) and (b) with their targets, their CPU cost, and (b)'s peak search. */
export function pushReport(r: PushResult): string {
  const fmt = (n: number): string => Math.round(n).toLocaleString('en-US');
  const sorted = [...r.toAllMs].sort((a, b) => a - b);
  const median = sorted[Math.floor(sorted.length / 2)] ?? 0;
  const verdict = (ok: boolean): string => (ok ? 'met' : '**missed**');
  const p99 = r.half.latency.quantile(0.99);
  const cpu = (c: CpuShare): string =>
    [`push node ${c.node.toFixed(0)}`, `proxy ${c.proxy.toFixed(0)}`, `devices ${c.devices.toFixed(0)}`, ...(c.load === undefined ? [] : [`load generator ${c.load.toFixed(0)}`])].join(', ');
  const total = (c: CpuShare): number => c.node + c.proxy + c.devices + (c.load ?? 0);
  // The step that answered the most calls: a call costs less the faster they come (larger batches per
  // read, per gRPC message, per wake-up), so the cost there is the one that bounds the capacity.
  const busiest = [...r.steps].sort((x, y) => y.accepted - x.accepted)[0]!;
  const a = r.toAllMs.length > 0;
  const b = r.half.accepted > 0;
  const search = r.steps.length > 0;
  const skipped = '| not run in this partial run | |';
  return [
    `${fmt(PUSH_DEVICES)} devices (one user each, one connection each, in ${DEVICE_PROCESSES} processes) on one proxy and one Push node (in-memory store, as \`npm start\`), the SDK's push client acknowledging every push. Machine load average (1 min) ${r.load[0].toFixed(1)} when the section started, ${r.load[1].toFixed(1)} when it ended.`,
    ...(PARTS === 'ab' && FIXED_RATE === 0 ? [] : [`Partial run: BENCH_PUSH_PARTS=${PARTS}${FIXED_RATE > 0 ? `, BENCH_PUSH_RATE=${FIXED_RATE} (no peak search: (b) at that rate)` : ''}.`]),
    CLIENT_NICE === 0
      ? 'Simulated clients (devices, load generator) at the servers\' priority (BENCH_PUSH_CLIENT_NICE=0).'
      : `Simulated clients (devices, load generator) at nice ${CLIENT_NICE}, below the servers (push node, proxy): they stand for phones and business servers, which a deployment does not run on the servers' cores (BENCH_PUSH_CLIENT_NICE=0: equal priority).`,
    '',
    '| measurement | result | notes |',
    '| --- | --- | --- |',
    `| (a) one POST to all → 100 % acknowledged ${a ? `| median ${fmt(median)} ms (${sorted.map((ms) => fmt(ms)).join(', ')}) | target < 1 s: ${verdict(median < 1000)}; time until GET /v1/push/{id} (polled every ${POLL_MS} ms) reports every device delivered, ${TRIALS} trials after one untimed warm-up |` : skipped}`,
    `| (a) CPU per device reached ${a ? `| ${cpu(r.toAllCpu)} µs | the ${TRIALS} trials, fan-out and ack of each device and the status polls |` : skipped}`,
    `| (b) pushes to a random user, peak ${search ? `| ${fmt(r.peak)} calls/s | target ≥ 5,000/s: ${verdict(r.peak >= 5000)}; fastest ${STEP_SECONDS} s step answering ≥ 95 % with 202 (HTTP p99 < 1 s) and delivering ≥ 95 % of them within ${DELIVERY_GRACE_MS / 1000} s, HTTP → device p99 < 1 s (ttl_s 60: stored, then delivered) |` : skipped}`,
    ...(search
      ? [
          `| (b) capacity at the CPU cost of the busiest step | ${fmt((cpus().length * 1e6) / total(busiest.cpu))} calls/s (${cpus().length} cores) | an estimate less dependent on other load than the peak: the machine's cores over the CPU µs per call of every process at the step that answered the most (${fmt(busiest.accepted / STEP_SECONDS)} calls/s: ${cpu(busiest.cpu)} µs); the push node's one thread alone would allow ${fmt(1e6 / busiest.cpu.node)} calls/s |`,
        ]
      : []),
    `| (b) HTTP → device latency at ${search ? 'half the peak' : 'the fixed rate'} (${fmt(r.half.rate)} calls/s) ${b ? `| p50 ${r.half.latency.quantile(0.5).toFixed(1)} ms, p99 ${p99.toFixed(1)} ms | target p99 < 100 ms: ${verdict(p99 < 100)}; ${fmt(r.half.received)} pushes received of ${fmt(r.half.accepted)} accepted in ${LATENCY_SECONDS} s |` : skipped}`,
    `| (b) CPU per call at ${search ? 'half the peak' : 'the fixed rate'} ${b ? `| ${cpu(r.half.cpu)} µs | HTTP call, store, delivery, the device's ack and its counting |` : skipped}`,
    ...(search
      ? [
          '',
          `Peak search (calls/s offered; ✓ kept pace): ${r.steps
            .map((s) => `${fmt(s.rate)} ${s.ok ? '✓' : '✗'} (${fmt(s.accepted / STEP_SECONDS)}/s answered 202, HTTP p99 ${s.p99Ms.toFixed(0)} ms; ${((s.received / Math.max(1, s.accepted)) * 100).toFixed(0)} % delivered, p99 ${s.latency.quantile(0.99).toFixed(0)} ms; CPU ${fmt(total(s.cpu))} µs/call, push node ${fmt(s.cpu.node)})`)
            .join(', ')}`,
        ]
      : []),
  ].join('\n');
}
