import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { stringify } from 'yaml';
import { PACKAGE_ROOT } from '../src/paths.js';
import { LatencyHistogram } from './broadcast-protocol.js';
import { BenchProcess, type OutputLine, startProcess } from './processes.js';

/**
 * The push section (issue 11): a Push backend node (in-memory store, as `npm start` runs it) behind
 * one proxy, PUSH_DEVICES devices (one user each) in DEVICE_PROCESSES client processes with the SDK's
 * push client, which acknowledges every push.
 * (a) One POST to all: the time from sending the call until GET /v1/push/{id} reports every device
 *     delivered (acknowledged), TRIALS times.
 * (b) Pushes to one random user each (ttl_s 60: stored in the user's inbox, then delivered): the
 *     offered rate doubles from 500 calls/s while a STEP_SECONDS step keeps pace (≥ 95 % of the
 *     offered calls answered 202, none failed, HTTP p99 < 1 s), then one step at 1.5× the last that
 *     kept pace (or it halves while the first steps do not); the peak is the fastest step that kept pace.
 *     Then LATENCY_SECONDS at half the peak, timing each push from just before its HTTP call to the
 *     device (CLOCK_MONOTONIC, shared by every process on the machine).
 */
export const PUSH_DEVICES = Number(process.env.BENCH_PUSH_DEVICES ?? 10_000);
const DEVICE_PROCESSES = 4;
const TRIALS = 3;
const STEP_SECONDS = 3;
const LATENCY_SECONDS = 5;
const KEY = 'bench-push-key-0123456789abcdef';
const FIRST_RATE = 500;
const MIN_RATE = 50;
const MAX_RATE = 64_000;
const BIN = join(PACKAGE_ROOT, 'bin', 'livemux.js');
const DIST_BENCH = join(PACKAGE_ROOT, 'dist', 'bench');

interface Step {
  rate: number;
  ok: boolean;
  accepted: number;
  p99Ms: number;
}

export interface PushResult {
  toAllMs: number[];
  steps: Step[];
  peak: number;
  half: { rate: number; latency: LatencyHistogram; received: number; accepted: number };
}

export async function benchPush(secret: string): Promise<PushResult> {
  const env = { LIVEMUX_JWT_SECRET: secret };
  const dir = mkdtempSync(join(tmpdir(), 'livemux-bench-push-'));
  writeFileSync(join(dir, 'push.yaml'), stringify({ api_keys: [{ name: 'bench', key: KEY, rate: 1_000_000 }], log: { level: 'warn' } }));
  const backend = await startProcess(BIN, ['push-backend', '--config', join(dir, 'push.yaml'), '--port', '0', '--http-port', '0'], (l) => l.event === 'listening', env);
  const api = `http://127.0.0.1:${String(backend.line.httpPort)}`;
  writeFileSync(
    join(dir, 'routes.yaml'),
    stringify({
      version: 1,
      routes: [{ business: 'push', pool: 'push', policy: 'consistent_hash', hash_key: 'user_id' }],
      pools: { push: { protocol: 'grpc', endpoints: [{ address: `127.0.0.1:${String(backend.line.port)}` }] } },
    }),
  );
  writeFileSync(join(dir, 'livemux.yaml'), stringify({ listen: { host: '127.0.0.1', port: 0 }, admin: { host: '127.0.0.1', port: 0 }, routes: './routes.yaml', log: { level: 'info' } }));
  const proxy = await startProcess(BIN, ['start', '--config', join(dir, 'livemux.yaml')], (l) => l.msg === 'livemux listening', env);
  const port = proxy.line.port as number;
  await sleep(500); // the proxy's stream to the backend

  const per = Math.ceil(PUSH_DEVICES / DEVICE_PROCESSES);
  const devices = Array.from({ length: DEVICE_PROCESSES }, (_, i) => {
    const count = Math.min(per, PUSH_DEVICES - i * per);
    return new BenchProcess(join(DIST_BENCH, 'push-devices.js'), ['--port', String(port), '--first', String(i * per), '--count', String(count)], env);
  });
  await Promise.all(devices.map((d) => d.next((l) => l.event === 'ready', 300_000)));
  const report = async (): Promise<OutputLine[]> => {
    const lines = devices.map((d) => d.next((l) => l.event === 'report'));
    for (const d of devices) d.signal('SIGUSR2');
    return Promise.all(lines);
  };

  process.stderr.write(`push bench: ${PUSH_DEVICES} devices ready\n`);
  const toAllMs: number[] = [];
  for (let trial = 0; trial < TRIALS; trial++) toAllMs.push(await pushToAll(api, `bench-all-${Date.now()}-${trial}`));

  const load = async (rate: number, seconds: number): Promise<OutputLine> => {
    const args = ['--api', api, '--key', KEY, '--users', String(PUSH_DEVICES), '--rate', String(rate), '--seconds', String(seconds)];
    return (await startProcess(join(DIST_BENCH, 'push-load.js'), args, (l) => l.event === 'done')).line;
  };
  const steps: Step[] = [];
  const step = async (rate: number): Promise<boolean> => {
    const done = await load(rate, STEP_SECONDS);
    const accepted = done.accepted as number;
    const p99Ms = done.p99Ms as number;
    const ok = accepted >= 0.95 * (done.offered as number) && done.failed === 0 && p99Ms < 1000;
    steps.push({ rate, ok, accepted, p99Ms });
    process.stderr.write(`push bench: ${rate} calls/s offered: ${JSON.stringify(done)}\n`);
    await sleep(500);
    return ok;
  };
  // Doubling from 500 calls/s until a step falls behind (halving first if the very first one does),
  // then one step between the last that kept pace and the first that did not.
  let rate = FIRST_RATE;
  if (await step(rate)) {
    while (rate < MAX_RATE && (await step(rate * 2))) rate *= 2;
    if (rate < MAX_RATE && (await step(rate * 1.5))) rate *= 1.5;
  } else {
    do rate /= 2;
    while (rate >= MIN_RATE && !(await step(rate)));
  }
  const peak = Math.max(0, ...steps.filter((s) => s.ok).map((s) => s.rate));
  await sleep(1000);
  await report(); // starts the devices' counts afresh
  const half = Math.max(MIN_RATE / 2, peak / 2);
  const done = await load(half, LATENCY_SECONDS);
  await sleep(1000); // stragglers
  const latency = new LatencyHistogram();
  let received = 0;
  for (const line of await report()) {
    latency.merge(line.counts as number[]);
    received += line.received as number;
  }
  for (const p of [...devices, proxy.process, backend.process]) p.stop();
  return { toAllMs, steps, peak, half: { rate: half, latency, received, accepted: done.accepted as number } };
}

/** Sends one push to all and resolves with the ms until its status reports every device delivered. */
async function pushToAll(api: string, id: string): Promise<number> {
  const headers = { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' };
  const start = performance.now();
  const res = await fetch(`${api}/v1/push`, { method: 'POST', headers, body: JSON.stringify({ id, to: { all: true }, data: '0', priority: 'high' }) });
  if (res.status !== 202) throw new Error(`push to all: ${res.status} ${await res.text()}`);
  const { targeted } = (await res.json()) as { targeted: number };
  if (targeted !== PUSH_DEVICES) throw new Error(`push to all: targeted ${targeted}, expected ${PUSH_DEVICES}`);
  for (;;) {
    const status = (await (await fetch(`${api}/v1/push/${id}`, { headers })).json()) as { delivered: number };
    if (status.delivered >= PUSH_DEVICES) return performance.now() - start;
    if (performance.now() - start > 60_000) throw new Error(`push to all: ${status.delivered} of ${PUSH_DEVICES} acknowledged after 60 s`);
    await sleep(2);
  }
}

/** The section's table: (a) and (b) with their targets, and (b)'s peak search. */
export function pushReport(r: PushResult): string {
  const fmt = (n: number): string => Math.round(n).toLocaleString('en-US');
  const sorted = [...r.toAllMs].sort((a, b) => a - b);
  const median = sorted[Math.floor(sorted.length / 2)]!;
  const verdict = (ok: boolean): string => (ok ? 'met' : '**missed**');
  const p99 = r.half.latency.quantile(0.99);
  return [
    `${fmt(PUSH_DEVICES)} devices (one user each, one connection each, in ${DEVICE_PROCESSES} processes) on one proxy and one Push node (in-memory store, as \`npm start\`), the SDK's push client acknowledging every push.`,
    '',
    '| measurement | result | notes |',
    '| --- | --- | --- |',
    `| (a) one POST to all → 100 % acknowledged | median ${fmt(median)} ms (${sorted.map((ms) => fmt(ms)).join(', ')}) | target < 1 s: ${verdict(median < 1000)}; time until GET /v1/push/{id} reports every device delivered, ${TRIALS} trials |`,
    `| (b) pushes to a random user, peak | ${fmt(r.peak)} calls/s | target ≥ 5,000/s: ${verdict(r.peak >= 5000)}; fastest ${STEP_SECONDS} s step answering ≥ 95 % with 202, HTTP p99 < 1 s (ttl_s 60: stored, then delivered) |`,
    `| (b) HTTP → device latency at half the peak (${fmt(r.half.rate)} calls/s) | p50 ${r.half.latency.quantile(0.5).toFixed(1)} ms, p99 ${p99.toFixed(1)} ms | target p99 < 100 ms: ${verdict(p99 < 100)}; ${fmt(r.half.received)} pushes received of ${fmt(r.half.accepted)} accepted in ${LATENCY_SECONDS} s |`,
    '',
    `Peak search (calls/s offered; ✓ kept pace): ${r.steps.map((s) => `${fmt(s.rate)} ${s.ok ? '✓' : '✗'} (${fmt(s.accepted / STEP_SECONDS)}/s answered 202, HTTP p99 ${s.p99Ms.toFixed(0)} ms)`).join(', ')}`,
  ].join('\n');
}
