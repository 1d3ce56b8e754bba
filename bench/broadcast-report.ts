import { MESSAGE_BYTES } from './broadcast-protocol.js';
import { PEAK_SEARCH } from './peak-search.js';
import {
  BROADCAST_CLIENTS,
  BURST_MESSAGES,
  type BroadcastRun,
  type BurstCost,
  CORES,
  FIXED_RATE,
  LATENCY_SECONDS,
  EDGE_STEP_SECONDS,
  NATIVE_START_RATE,
  PACE_SLACK,
  SEARCH_HEARTBEAT_MS,
  SPOILING_LOSSES,
  STEP_SECONDS,
  lostSegments,
  paceSlackMs,
  type StepResult,
  type SystemResult,
} from './broadcast.js';

/** A server using at least this many cores near its peak is what saturated (one thread's worth). */
const SERVER_BOUND_CORES = 0.9;
/** A machine this busy near a peak had no CPU left for anyone. */
const MACHINE_BOUND = 0.95;

/**
 * The broadcast section of BENCHMARKS.md: one table per kind of receivers, one row per system, every
 * figure near the peak side by side with its ratio to the C relay (the limit of this machine), then
 * each peak search's steps. Written to be read without the bench's author: each column says what it is.
 */
export function broadcastReport(runs: BroadcastRun[]): string {
  const { rungsPerDoubling, strides, finestSteps } = PEAK_SEARCH;
  const rung = (n: number): string => `${((2 ** (n / rungsPerDoubling) - 1) * 100).toFixed(n > 1 ? 0 : 1)} %`;
  const out = [
    `${fmt(BROADCAST_CLIENTS)} receivers in one room, ${MESSAGE_BYTES} B messages, ${CORES} cores. Peak: the highest rate a server sustains, ` +
      `every message arriving and latency not growing (a least-squares slope of latency over send time, from a step's second second on, of at most ${PACE_SLACK * 100} %, ` +
      `given as growth over the step less two seconds: ${fmt(paceSlackMs(STEP_SECONDS * 1000))} ms over a ${STEP_SECONDS} s step, ${fmt(paceSlackMs(EDGE_STEP_SECONDS * 1000))} ms over ${EDGE_STEP_SECONDS} s; ` +
      `until 2026-12-04 the difference of the mean latencies of its second second and its last, which moved by up to a round of writes with where the rounds fell). ` +
      `Found by doubling the rate in ${STEP_SECONDS} s steps (from ${NATIVE_START_RATE}/s with native receivers, ${PEAK_SEARCH.startRate}/s with Node receivers) until one is far behind, then a staircase of ${EDGE_STEP_SECONDS} s steps ` +
      `(${STEP_SECONDS} s with Node receivers; the longer the step, the less a round's noise decides: 8 s until 2026-12-03) from one coarse stride above the fastest climb step kept: ` +
      `up after a step that kept pace, down after one that did not, by ${strides.map(rung).join(', then ')} (the stride shrinks each time the verdict turns, ` +
      `and widens again after ${PEAK_SEARCH.sameWay} moves the same way in a row, dropping the finest rates so far); ` +
      `the peak is the geometric mean of the ${finestSteps} rates run at the finest stride and the next one it would run (a staircase cut short at ${PEAK_SEARCH.maxSteps} steps: of every rate since its first reversal). Near the peak a step's verdict is a toss decided by where ` +
      `the server's rounds of writes (200–500 ms there) fall: the staircase's steps gather where keeping pace and missing are equally likely, ` +
      `and each counts once in the mean, where a bisection took one verdict per rate and followed it (until 2026-12-03, one lucky 5,120/s or ` +
      `unlucky 4,305/s moved a pass's peak by 10–20 %, and one system's passes spread 13–17 %). Then one more step at the peak rate, its verdict listed ` +
      `(there, it keeps pace about half the time). CPU and machine figures are "near the peak": over the steps a system kept pace in among those ` +
      `its peak is the mean of and at the peak, summed (a step that misses near the edge can fall far behind, and a server idling while its ` +
      `receivers catch up, or through the kernel's retransmissions, shows a fraction of its cost per delivery). Latency: ${LATENCY_SECONDS} s at half each system's own peak, after ${STEP_SECONDS} s at that rate not measured (a first step at a rate has the longer tail), and ${LATENCY_SECONDS} s at ` +
      `${FIXED_RATE} messages/s (${fmt(FIXED_RATE * BROADCAST_CLIENTS)} deliveries/s) for every system that sustains it; with native receivers, once every search has ended, pass by pass with the systems one right after the other ` +
      `(at one load the machine moved every system's p99 alike, by up to 2× within minutes).`,
  ];
  for (const run of runs) out.push('', ...runTable(run));
  return out.join('\n');
}

/** One system over every pass of a run. */
interface Row {
  name: string;
  /** Its result in each pass. */
  passes: SystemResult[];
  /** The pass whose peak is the median (the lower one of the middle two for an even count). */
  median: SystemResult;
}

function runTable(run: BroadcastRun): string[] {
  const bursts = run.bursts.length > 0 ? ['', ...burstTable(run)] : [];
  if (run.passes.length === 0) return [`**Server-bound: native receivers** (bench/native/broadcast-receiver.c), peak searches skipped (BROADCAST_PEAKS=0).`, ...bursts];
  const rows: Row[] = run.passes[0]!.map((first, i) => {
    const passes = run.passes.map((p) => p[i]!);
    return { name: first.name, passes, median: [...passes].sort((a, b) => peak(a) - peak(b))[Math.floor((passes.length - 1) / 2)]! };
  });
  const c = rows.findIndex((r) => r.name.startsWith('C relay'));
  const n = run.passes.length;
  const title =
    run.receivers === 'native'
      ? `**Server-bound: native receivers** (bench/native/broadcast-receiver.c, ${run.processes} processes, one epoll thread each), ` +
        `${n} passes of every system searched at once, on one room per system, their steps taking turns round robin so that every pass ` +
        `samples the same minutes of the machine; livemux heartbeats every ${SEARCH_HEARTBEAT_MS / 1000} s there, so that a room waiting ` +
        `for its turn costs nothing (the relays send no heartbeats; the bursts below keep the default). Each figure is from the pass with ` +
        `the median peak, each ratio the median of the passes' ratios (their range in brackets). The server on its turn has core 0 to itself; receivers, publisher, livemux's backend and the waiting servers ` +
        'share the other cores. A server that coalesces writes what arrived during its last round each round: from a few rounds a second up ' +
        'to its peak it is busy whatever the rate, and its CPU per delivery near the peak is about a core over its peak. The receivers cost less ' +
        'per delivery than any server, but at tens of millions of deliveries/s they fill the other core too: where the steps near the peak ' +
        'have the server under a core ("bound by"), the receivers, not the server, set that peak.' +
        kernelLine(run.kernel)
      : `**Node receivers** (bench/broadcast-clients.ts, ${run.processes} processes, nothing pinned): what a Node client costs. ` +
        `On ${CORES} cores they take most of the machine, so these peaks rank receivers as much as servers (see "bound by").`;
  /** Median over the passes of f(this system) / f(C relay in the same pass), with the range when there are several. */
  const vsC = (i: number, f: (r: SystemResult) => number): string => {
    if (c < 0) return '';
    const ratios = run.passes.map((p) => f(p[i]!) / f(p[c]!)).sort((a, b) => a - b);
    const median = ratios[Math.floor((ratios.length - 1) / 2)]!;
    return ratios.length > 1 ? `${ratio(median)} (${ratio(ratios[0]!)}–${ratio(ratios.at(-1)!)})` : ratio(median);
  };
  const line = (row: Row, i: number): string => {
    const r = row.median;
    const near = nearPeak(r);
    const cells = [
      row.name,
      fmt(peak(r)),
      spread(row.passes.map(peak)),
      vsC(i, peak),
      cpuPerDelivery(r),
      vsC(i, cpuOfTotal) + (r.servers.length > 1 ? `; ${r.servers[0]} alone ${vsC(i, cpuOfFirst)}` : ''),
      fmt(near.deliveries / (totalCpu(near) / 1e6)),
      `${(near.receiverCpuUs / near.deliveries).toPrecision(2)} µs`,
      busy(near),
      boundBy(near),
      latency(r.half),
      r.fixed ? latency(r.fixed) : `n/a (peak ${r.peak.rate.toPrecision(2)}/s)`,
      r.servers.map((label, j) => `${r.servers.length > 1 ? `${label} ` : ''}${fmt(r.idleRssBytes[j]! / 2 ** 20)} / ${fmt(r.peakRssBytes[j]! / 2 ** 20)} MiB`).join(' + '),
      notes(row, rows, c, run),
    ];
    return `| ${cells.join(' | ')} |`;
  };
  return [
    title,
    '',
    `| system | deliveries/s at peak | peak of each pass (spread) | peak vs C relay | server CPU per delivery near the peak (steps kept) | CPU per delivery vs C relay | deliveries/s per server core | receivers' CPU per delivery | near the peak: cores used (of ${CORES}), machine busy | bound by | p50 / p99 at half the peak | p50 / p99 at ${FIXED_RATE}/s | server RSS idle / highest | notes |`,
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
    ...rows.map(line),
    ...(n > 1 ? ['', ...agreement(rows)] : []),
    ...bursts,
    '',
    `Peak search, room messages/s offered (× ${fmt(BROADCAST_CLIENTS)} = deliveries/s); ✓ kept pace, ✗ did not; retransmitted: TCP segments the machine retransmitted during the step (on loopback, drops when the kernel is short of TCP memory, and tail-loss probes, spurious, when an ACK is late on a busy machine; see bench/broadcast.ts, StepResult); lost: those other than tail-loss probes, of which ${fmt(SPOILING_LOSSES)} or more replace the room before the next step:`,
    ...run.passes.flatMap((pass, p) => pass.map((r) => `- ${r.name}${n > 1 ? `, pass ${p + 1}` : ''}: ${searchLine(r)}`)),
  ];
}

const peak = (r: SystemResult): number => r.peak.deliveries / (r.peak.publishMs / 1000);
const totalCpu = (s: Pick<StepResult, 'cpuUs'>): number => s.cpuUs.reduce((a, b) => a + b, 0);
/** CPU per delivery near the peak (nearPeak): all the system's servers, or the first alone (livemux's proxy). */
const cpuOfTotal = (r: SystemResult): number => totalCpu(nearPeak(r)) / nearPeak(r).deliveries;
const cpuOfFirst = (r: SystemResult): number => nearPeak(r).cpuUs[0]! / nearPeak(r).deliveries;

/** What a step's CPU and machine figures are read from: the steps near the peak a system kept, as one. */
type Window = Pick<StepResult, 'deliveries' | 'cpuUs' | 'receiverCpuUs' | 'wallMs' | 'machineBusy' | 'machineSteal'> & { steps: number };

const nearPeakOf = new WeakMap<SystemResult, Window>();

/**
 * The steps a system kept pace in among the staircase's last steps whose rates its peak is the mean of
 * (its finest stride's; every one since its first reversal, if cut short) and the step at the peak if kept, summed: CPU over their windows, deliveries, wall time. Every system
 * keeps these, at rates within a few strides of its own peak, so their CPU per delivery is a server's
 * cost where it is busiest, free of the steps that fell behind: near the edge a step that misses the pace
 * can fall far behind (until 2026-12-04 the native receivers' framer kept it there, bench/native/wire.h;
 * with the kernel's own tcp_mem, it drops and the connections back off), and a server idling then shows
 * a fraction of its cost per delivery (the C relay's one step at the peak in the 2026-12-03 23:02 run: 0.0068 / 0.0204 / 0.0279 µs over three passes). Without such
 * steps (a search cut short), the fastest staircase step kept; failing that, the peak step.
 */
function nearPeak(r: SystemResult): Window {
  const cached = nearPeakOf.get(r);
  if (cached) return cached;
  const keptPace = (s: StepResult): boolean => s.ok && !s.late && s.silent === 0;
  const staircase = r.steps.slice(r.edgeFrom);
  const made = r.peakRates.length > 1 ? staircase.slice(-(r.peakRates.length - 1)) : [];
  let steps = [...made, r.peak].filter(keptPace);
  if (steps.length === 0) steps = staircase.filter(keptPace).sort((a, b) => b.rate - a.rate).slice(0, 1);
  if (steps.length === 0) steps = [r.peak];
  const sum = (f: (s: StepResult) => number): number => steps.reduce((a, s) => a + f(s), 0);
  const wallMs = sum((s) => s.wallMs);
  const window: Window = {
    steps: steps.length,
    deliveries: sum((s) => s.deliveries),
    cpuUs: r.peak.cpuUs.map((_, i) => sum((s) => s.cpuUs[i]!)),
    receiverCpuUs: sum((s) => s.receiverCpuUs),
    wallMs,
    machineBusy: sum((s) => s.machineBusy * s.wallMs) / wallMs,
    machineSteal: sum((s) => s.machineSteal * s.wallMs) / wallMs,
  };
  nearPeakOf.set(r, window);
  return window;
}
const p99 = (s: StepResult): number => s.latency.quantile(0.99);
/** CPU per delivery over the bursts: all the system's servers, or the first alone. */
const burstCpuOfTotal = (r: BurstCost): number => totalCpu(r.bursts) / r.bursts.deliveries;
const burstCpuOfFirst = (r: BurstCost): number => r.bursts.cpuUs[0]! / r.bursts.deliveries;
/** The same, less what the servers spend idle (BurstCost.idleCpuUsPerS) over the bursts' wall time. */
const burstNetCpu = (r: BurstCost, servers: 'all' | 'first'): number => {
  const b = r.bursts;
  const idle = r.idleCpuUsPerS.slice(0, servers === 'all' ? undefined : 1);
  const cpu = servers === 'all' ? totalCpu(b) : b.cpuUs[0]!;
  return (cpu - (idle.reduce((a, x) => a + x, 0) * b.wallMs) / 1000) / b.deliveries;
};
const burstNetOfTotal = (r: BurstCost): number => burstNetCpu(r, 'all');
const burstNetOfFirst = (r: BurstCost): number => burstNetCpu(r, 'first');
/** Largest spread of a figure over the passes that counts as agreeing (issue 14). */
const AGREEMENT = 0.1;

/**
 * Cost at equal coalescing: every server wrote each burst of BURST_MESSAGES to each receiver as one
 * write, so these CPU figures compare the cost per write and per byte, nothing else.
 */
function burstTable(run: BroadcastRun): string[] {
  // Each system's figures are from its pass with the median cost (the lower middle one for an even count).
  const rows = run.bursts[0]!.map((first, i) => {
    const passes = run.bursts.map((p) => p[i]!);
    return { name: first.name, passes, median: [...passes].sort((a, b) => burstCpuOfTotal(a) - burstCpuOfTotal(b))[Math.floor((passes.length - 1) / 2)]! };
  });
  const c = rows.findIndex((r) => r.name.startsWith('C relay'));
  const cRow = rows[c];
  // Paired within a pass: there the systems' bursts alternated over the same minutes.
  const paired = (i: number, f: (r: BurstCost) => number): number[] => (c < 0 ? [] : run.bursts.map((p) => f(p[i]!) / f(p[c]!)));
  const ratios = (xs: number[]): string => (xs.length === 0 ? '' : `${ratio(median(xs))}${xs.length > 1 ? ` (${xs.map(ratio).join(', ')})` : ''}`);
  const line = (row: (typeof rows)[number], i: number): string => {
    const b = row.median.bursts;
    const per = (us: number): string => `${(us / b.deliveries).toPrecision(3)} µs`;
    const perWrite = (us: number): string => `${((us / b.deliveries) * BURST_MESSAGES).toPrecision(3)} µs`;
    const first = row.median.servers.length > 1 ? `; ${row.median.servers[0]} alone ${per(b.cpuUs[0]!)} (${perWrite(b.cpuUs[0]!)} per write)` : '';
    const proxyRatios = paired(i, burstCpuOfFirst);
    const proxyNetRatios = paired(i, burstNetOfFirst);
    const verdict = (xs: number[]): string => `${median(xs) <= 1.2 ? 'met' : '**missed**'} (${ratio(median(xs))})`;
    const target =
      row.name.startsWith('livemux') && cRow
        ? `proxy ≤ 1.2× the C relay's: ${verdict(proxyRatios)}; net of idle: ${verdict(proxyNetRatios)}`
        : row === cRow
          ? 'the limit'
          : '';
    const net = burstNetOfTotal(row.median);
    const netFirst = first ? `; ${row.median.servers[0]} alone ${burstNetOfFirst(row.median).toPrecision(3)} µs` : '';
    const idle = row.median.idleCpuUsPerS;
    const cells = [
      row.name,
      `${per(totalCpu(b))} (${perWrite(totalCpu(b))} per write)${first}`,
      ratios(paired(i, burstCpuOfTotal)) + (first ? `; proxy alone ${ratios(proxyRatios)}` : ''),
      spread(row.passes.map(burstCpuOfTotal), 'µs', 1),
      `${idle.map((x) => `${(x / 1000).toPrecision(2)}`).join(' + ')} ms/s`,
      Number.isNaN(net) ? '' : `${net.toPrecision(3)} µs${netFirst}`,
      ratios(paired(i, burstNetOfTotal)) + (first ? `; proxy alone ${ratios(proxyNetRatios)}` : ''),
      latency(b),
      target,
    ];
    return `| ${cells.join(' | ')} |`;
  };
  return [
    `**Cost at equal coalescing**: after the peak passes, every system runs at once, each with its own room of native receivers and ` +
      `its server on core 0; then ${run.bursts.length} passes of ${fmt(b0(rows).rounds)} bursts of ${BURST_MESSAGES} messages to each system, each ` +
      `published as one write, ${fmt(b0(rows).periodMs)} ms apart, the systems' bursts alternating (one every ${fmt(b0(rows).periodMs / rows.length)} ms). ` +
      'Every server writes each burst to each receiver as one write, so CPU per ' +
      'delivery here is the cost of a write and its bytes, with no server packing more messages into a write than another (at the peak, ' +
      "a server with slower rounds packs more, which lowers its CPU per delivery). CPU time is the server's own, and the alternation " +
      'spreads whatever else the machine does over every system alike: measured one system after the other (until 2026-12-03), each ' +
      "system's figure moved 13–21 % between the passes of a quiet run. At the start of each pass, every server's CPU is also read over " +
      'one heartbeat interval with nothing published ("idle": for livemux, PINGs to receivers silent for a heartbeat interval and their ' +
      'PONGs, and its timers; the relays have none): "net of idle" takes that, pro rata, out of the bursts\' CPU, leaving what the ' +
      'deliveries themselves cost.',
    '',
    `| system | server CPU per delivery (per ${BURST_MESSAGES}-message write) | vs C relay: median (each pass) | each pass (spread) | idle CPU | net of idle, per delivery | net of idle vs C relay | p50 / p99 from publish to receipt | target |`,
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- |',
    ...rows.map(line),
    ...(run.bursts.length > 1
      ? [
          '',
          `Agreement over the passes (✓: spread = (max − min) / median ≤ ${AGREEMENT * 100} %):`,
          ...rows.map((row) =>
            [
              `- ${row.name}: at bursts of ${BURST_MESSAGES} ${agrees(row.passes.map(burstCpuOfTotal), 'µs', 1)}`,
              `the same net of idle ${agrees(row.passes.map(burstNetOfTotal), 'µs', 1)}`,
              ...(row.median.servers.length > 1 ? [`${row.median.servers[0]} alone ${agrees(row.passes.map(burstCpuOfFirst), 'µs', 1)}`] : []),
            ].join('; '),
          ),
        ]
      : []),
  ];
}

/** The rounds and period of each system's bursts, from the first system's. */
function b0(rows: { median: BurstCost }[]): { rounds: number; periodMs: number } {
  const b = rows[0]!.median.bursts;
  const rounds = Math.round(b.deliveries / (BURST_MESSAGES * BROADCAST_CLIENTS));
  return { rounds, periodMs: b.publishMs / rounds };
}

/** Whether each headline figure agrees within AGREEMENT over the passes. */
function agreement(rows: Row[]): string[] {
  return [
    `Agreement over the passes (✓: spread = (max − min) / median ≤ ${AGREEMENT * 100} %):`,
    ...rows.map((row) => `- ${row.name}: peak ${agrees(row.passes.map(peak), 'M/s', 1e6)}; CPU per delivery near the peak ${agrees(row.passes.map(cpuOfTotal), 'µs', 1)}`),
  ];
}

/** Each pass's value, their spread, and ✓ when it is within AGREEMENT. */
function agrees(values: number[], unit: string, scale: number): string {
  const spreadOf = (Math.max(...values) - Math.min(...values)) / median(values);
  return `${spread(values, unit, scale)} ${spreadOf <= AGREEMENT ? '✓' : '✗'}`;
}

function median(xs: number[]): number {
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.floor((sorted.length - 1) / 2)]!;
}

/** Each pass's value (divided by `scale`, in `unit`), and (max − min) / median. */
function spread(values: number[], unit = 'M', scale = 1e6): string {
  const m = median(values);
  const each = values.map((v) => (v / scale).toPrecision(3)).join(' / ');
  return values.length > 1 ? `${each} ${unit} (${(((Math.max(...values) - Math.min(...values)) / m) * 100).toFixed(0)} %)` : `${each} ${unit}`;
}

function cpuPerDelivery(r: SystemResult): string {
  const w = nearPeak(r);
  const each = w.cpuUs.map((us) => `${(us / w.deliveries).toPrecision(3)} µs`);
  const steps = ` (${w.steps} step${w.steps === 1 ? '' : 's'})`;
  if (each.length === 1) return each[0]! + steps;
  return `${cpuOfTotal(r).toPrecision(3)} µs (${r.servers.map((label, i) => `${label} ${each[i]}`).join(' + ')})${steps}`;
}

/** Cores used by the servers and the receivers over the steps near the peak, and the whole machine's busy share. */
function busy(s: Window): string {
  const cores = (us: number): string => (us / 1000 / s.wallMs).toFixed(2);
  const steal = s.machineSteal >= 0.01 ? `, ${(s.machineSteal * 100).toFixed(0)} % stolen` : '';
  return `server ${cores(totalCpu(s))}, receivers ${cores(s.receiverCpuUs)}; machine ${(s.machineBusy * 100).toFixed(0)} % busy${steal}`;
}

/** Which side ran out of CPU near the peak: the server (a core's worth), the whole machine, or neither. */
function boundBy(s: Window): string {
  if (totalCpu(s) / 1000 / s.wallMs >= SERVER_BOUND_CORES) return 'server';
  if (s.machineBusy >= MACHINE_BOUND) return 'machine (receivers and server share it)';
  return 'neither: latency rule';
}

function latency(s: StepResult): string {
  return `${s.latency.quantile(0.5).toFixed(0)} / ${p99(s).toFixed(0)} ms${s.ok ? '' : ' (fell behind)'}`;
}

/** The C relay's role, socket.io's transport, and livemux's targets with their verdicts. */
function notes(row: Row, rows: Row[], c: number, run: BroadcastRun): string {
  const find = (prefix: string): Row | undefined => rows.find((r) => r.name.startsWith(prefix));
  if (row === rows[c]) return 'the limit of this machine';
  if (row.name.startsWith('socket.io')) return 'websocket transport only';
  if (!row.name.startsWith('livemux')) return '';
  const verdict = (ok: boolean): string => (ok ? 'met' : '**missed**');
  /** The median over the passes of f(livemux) / f(other) in the same pass. */
  const paired = (other: Row, f: (r: SystemResult) => number): number => median(row.passes.map((r, p) => f(r) / f(other.passes[p]!)));
  // The row shows the pass with the median peak, not the one whose p99 ratio is the median: every pass is
  // printed so that the verdict can be checked from the table.
  const halfP99s = (other: Row): string => row.passes.map((r, p) => `${p99(r.half).toFixed(0)} / ${p99(other.passes[p]!.half).toFixed(0)}`).join(', ');
  const targets: string[] = [];
  const cRow = rows[c];
  if (run.receivers === 'native' && cRow) {
    targets.push(`proxy CPU per delivery ≤ 1.2× C relay's: ${verdict(paired(cRow, cpuOfFirst) <= 1.2)}`);
    targets.push(`peak ≥ 0.85× C relay's: ${verdict(paired(cRow, peak) >= 0.85)}`);
  }
  const nodeRelay = find('Node relay');
  if (nodeRelay) {
    if (run.receivers === 'node') targets.push(`peak ≥ 60 % of the Node relay's: ${verdict(paired(nodeRelay, peak) >= 0.6)}`);
    const x = paired(nodeRelay, (r) => p99(r.half));
    targets.push(`p99 at half the peak ≤ the Node relay's: ${verdict(x <= 1)} (median ratio ${ratio(x)}; each pass, livemux / Node relay: ${halfP99s(nodeRelay)} ms)`);
  }
  if (cRow) targets.push(`p99 at half the peak vs the C relay's: ${ratio(paired(cRow, (r) => p99(r.half)))} (each pass, livemux / C relay: ${halfP99s(cRow)} ms)`);
  const socketIo = find('socket.io');
  if (socketIo) targets.push(`peak ≥ 10× socket.io's: ${verdict(paired(socketIo, peak) >= 10)}`);
  return `targets: ${targets.join('; ')}`;
}

function ratio(x: number): string {
  return `${x.toFixed(2)}×`;
}

/** The climb, the staircase, the rates its peak is the mean of, and the step at the peak. */
function searchLine(r: SystemResult): string {
  const climb = r.steps.slice(0, r.edgeFrom).map(stepMark).join(', ');
  const edge = r.steps.slice(r.edgeFrom).map(stepMark).join(', ');
  const made = r.peakRates.length > 0 ? `; peak = geometric mean of ${r.peakRates.slice(0, -1).map(rateOf).join(', ')} and ${rateOf(r.peakRates.at(-1)!)} (the next rate)${r.cutShort ? `, cut short at ${PEAK_SEARCH.maxSteps} steps: every rate since the first reversal` : ''}` : '';
  return `climb ${climb}${edge ? `; staircase ${edge}` : ''}${made}; at the peak ${stepMark(r.peak)}`;
}

function rateOf(rate: number): string {
  return rate < 10 ? rate.toFixed(1) : fmt(rate);
}

function stepMark(s: StepResult): string {
  const rate = rateOf(s.rate);
  const lost = lostSegments(s);
  const tcp = s.tcpRetransmits > 0 ? `${fmt(s.tcpRetransmits)} retransmitted${lost > 0 ? `, ${fmt(lost)} lost` : ''}` : '';
  if (s.ok) return `${rate} ✓${tcp ? ` (${tcp})` : ''}`;
  const why = s.missing > 0 ? `${fmt(s.missing)} missing` : s.late ? `received in ${fmt(s.wallMs / 1000)} s` : `latency grew ${fmt(s.lagGrowthMs)} ms`;
  return `${rate} ✗ (${why}${tcp ? `; ${tcp}` : ''})`;
}

function fmt(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

/** What the run had of the kernel's TCP settings that shape its edge (bench/kernel-tcp.ts). */
function kernelLine(kernel: BroadcastRun['kernel']): string {
  const gib = kernel.memory.map((b) => (b / 2 ** 30).toFixed(1)).join(' / ');
  return (
    (kernel.metricsCacheOff
      ? " The kernel's TCP metrics cache was off and empty for the run"
      : " **The kernel's TCP metrics cache was on** (the bench had no root): a room after a collapse started from the collapsed connections' figures") +
    (kernel.memoryRaised
      ? `, and its TCP memory limits (tcp_mem) raised to ${gib} GiB, the receivers' queues being on this machine too (bench/kernel-tcp.ts).`
      : `; **its TCP memory limits (tcp_mem) were the machine's own, ${gib} GiB**: near the peak the receivers' queues reach them and the kernel drops (bench/kernel-tcp.ts).`)
  );
}
