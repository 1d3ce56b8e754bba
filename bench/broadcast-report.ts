import { MESSAGE_BYTES } from './broadcast-protocol.js';
import {
  BROADCAST_CLIENTS,
  type BroadcastRun,
  CORES,
  FIXED_RATE,
  LATENCY_SECONDS,
  PACE_SLACK_MS,
  STEP_SECONDS,
  type StepResult,
  type SystemResult,
} from './broadcast.js';

/** A server using at least this many cores at its peak step is what saturated (one thread's worth). */
const SERVER_BOUND_CORES = 0.9;
/** A machine this busy at a peak step had no CPU left for anyone. */
const MACHINE_BOUND = 0.95;

/**
 * The broadcast section of BENCHMARKS.md: one table per kind of receivers, one row per system, every
 * figure of the peak step side by side with its ratio to the C relay (the limit of this machine), then
 * each peak search's steps. Written to be read without the bench's author: each column says what it is.
 */
export function broadcastReport(runs: BroadcastRun[]): string {
  const out = [
    `${fmt(BROADCAST_CLIENTS)} receivers in one room, ${MESSAGE_BYTES} B messages, ${CORES} cores. Peak: the fastest ${STEP_SECONDS} s step ` +
      `that kept pace (every message arrived, and latency grew by at most ${PACE_SLACK_MS} ms from the step's second second to its last). ` +
      `Every "at the peak" figure is of that step. Latency: ${LATENCY_SECONDS} s at half each system's own peak, and ${LATENCY_SECONDS} s at ` +
      `${FIXED_RATE} messages/s (${fmt(FIXED_RATE * BROADCAST_CLIENTS)} deliveries/s) for every system that sustains it.`,
  ];
  for (const run of runs) out.push('', ...runTable(run));
  return out.join('\n');
}

function runTable(run: BroadcastRun): string[] {
  const { systems } = run;
  const c = systems.find((r) => r.name.startsWith('C relay'));
  const nodeRelay = systems.find((r) => r.name.startsWith('Node relay'));
  const socketIo = systems.find((r) => r.name.startsWith('socket.io'));
  const title =
    run.receivers === 'native'
      ? `**Server-bound: native receivers** (bench/native/broadcast-receiver.c, ${run.processes} processes, one epoll thread each). ` +
        'They cost a fraction of a server per delivery, so each server runs out of CPU before they do: its CPU per delivery at the peak ' +
        'is what one delivery costs it, and the peaks rank the servers.'
      : `**Node receivers** (bench/broadcast-clients.ts, ${run.processes} processes): what a Node client costs. On ${CORES} cores they take ` +
        'most of the machine, so the peaks rank receivers as much as servers (see "bound by").';
  const row = (r: SystemResult): string => {
    const cells = [
      r.name.replace(/, (native|node) receivers$/, ''),
      fmt(peak(r)),
      c ? ratio(peak(r) / peak(c)) : '',
      cpuPerDelivery(r),
      c ? ratio(totalCpu(r.peak) / totalCpu(c.peak)) + (r.servers.length > 1 ? ` (${r.servers[0]} ${ratio(r.peak.cpuUs[0]! / totalCpu(c.peak))})` : '') : '',
      fmt(r.peak.deliveries / (totalCpu(r.peak) / 1e6)),
      `${(r.peak.receiverCpuUs / r.peak.deliveries).toPrecision(2)} µs`,
      busy(r.peak),
      boundBy(r.peak),
      latency(r.half),
      r.fixed ? latency(r.fixed) : `n/a (peak ${r.peak.rate.toPrecision(2)}/s)`,
      r.servers.map((label, i) => `${r.servers.length > 1 ? `${label} ` : ''}${fmt(r.idleRssBytes[i]! / 2 ** 20)} / ${fmt(r.peakRssBytes[i]! / 2 ** 20)} MiB`).join(' + '),
      notes(r, run, c, nodeRelay, socketIo),
    ];
    return `| ${cells.join(' | ')} |`;
  };
  return [
    title,
    '',
    '| system | deliveries/s at peak | peak vs C relay | server CPU per delivery (at the peak) | CPU per delivery vs C relay | deliveries/s per server core | receivers\' CPU per delivery | at the peak: cores used (of ' +
      `${CORES}) | bound by | p50 / p99 at half the peak | p50 / p99 at ${FIXED_RATE}/s | server RSS idle / highest | notes |`,
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
    ...systems.map(row),
    '',
    `Peak search, room messages/s offered (× ${fmt(BROADCAST_CLIENTS)} = deliveries/s); ✓ kept pace, ✗ did not:`,
    ...systems.map((r) => `- ${r.name}: ${r.steps.map(stepMark).join(', ')}`),
  ];
}

const peak = (r: SystemResult): number => r.peak.deliveries / STEP_SECONDS;
const totalCpu = (s: StepResult): number => s.cpuUs.reduce((a, b) => a + b, 0);
const p99 = (s: StepResult): number => s.latency.quantile(0.99);

function cpuPerDelivery(r: SystemResult): string {
  const each = r.peak.cpuUs.map((us) => `${(us / r.peak.deliveries).toPrecision(3)} µs`);
  if (each.length === 1) return each[0]!;
  return `${(totalCpu(r.peak) / r.peak.deliveries).toPrecision(3)} µs (${r.servers.map((label, i) => `${label} ${each[i]}`).join(' + ')})`;
}

/** Cores used by the servers and the receivers over the peak step, and the whole machine's busy share. */
function busy(s: StepResult): string {
  const cores = (us: number): string => (us / 1000 / s.wallMs).toFixed(2);
  const steal = s.machineSteal >= 0.01 ? `, ${(s.machineSteal * 100).toFixed(0)} % stolen` : '';
  return `server ${cores(totalCpu(s))}, receivers ${cores(s.receiverCpuUs)}; machine ${(s.machineBusy * 100).toFixed(0)} % busy${steal}`;
}

/** Which side ran out of CPU at the peak step: the server (a core's worth), the whole machine, or neither. */
function boundBy(s: StepResult): string {
  const serverCores = totalCpu(s) / 1000 / s.wallMs;
  if (serverCores >= SERVER_BOUND_CORES) return 'server';
  if (s.machineBusy >= MACHINE_BOUND) return 'machine (receivers and server share it)';
  return 'neither: latency rule';
}

function latency(s: StepResult): string {
  return `${s.latency.quantile(0.5).toFixed(0)} / ${p99(s).toFixed(0)} ms${s.ok ? '' : ' (fell behind)'}`;
}

function notes(r: SystemResult, run: BroadcastRun, c?: SystemResult, nodeRelay?: SystemResult, socketIo?: SystemResult): string {
  if (r === c) return 'the limit of this machine';
  if (!r.name.startsWith('livemux')) return r === socketIo ? 'websocket transport only' : '';
  const verdict = (ok: boolean): string => (ok ? 'met' : '**missed**');
  const targets: string[] = [];
  if (run.receivers === 'native' && c) {
    targets.push(`proxy CPU per delivery ≤ 1.2× C relay's: ${verdict(r.peak.cpuUs[0]! / r.peak.deliveries <= (1.2 * totalCpu(c.peak)) / c.peak.deliveries)}`);
    targets.push(`peak ≥ 0.85× C relay's: ${verdict(peak(r) >= 0.85 * peak(c))}`);
  }
  if (nodeRelay) {
    if (run.receivers === 'node') targets.push(`peak ≥ 60 % of the Node relay's: ${verdict(peak(r) >= 0.6 * peak(nodeRelay))}`);
    targets.push(`p99 at half the peak ≤ the Node relay's: ${verdict(p99(r.half) <= p99(nodeRelay.half))}`);
  }
  if (socketIo) targets.push(`peak ≥ 10× socket.io's: ${verdict(peak(r) >= 10 * peak(socketIo))}`);
  return `targets: ${targets.join('; ')}`;
}

function ratio(x: number): string {
  return `${x.toFixed(2)}×`;
}

function stepMark(s: StepResult): string {
  const rate = s.rate < 10 ? s.rate.toFixed(1) : fmt(s.rate);
  if (s.ok) return `${rate} ✓`;
  return `${rate} ✗ (${s.missing > 0 ? `${fmt(s.missing)} missing` : `latency grew ${fmt(s.lagGrowthMs)} ms`})`;
}

function fmt(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}
