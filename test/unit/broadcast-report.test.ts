import { describe, expect, it } from 'vitest';
import { broadcastReport } from '../../bench/broadcast-report.js';
import { LatencyHistogram } from '../../bench/broadcast-protocol.js';
import type { BroadcastRun, BurstCost, StepResult, SystemResult } from '../../bench/broadcast.js';

const DELIVERIES = 25_000_000;
const WALL_MS = 25_000;
/** A run with the metrics cache off and tcp_mem raised to 8 / 12 / 16 GiB. */
const RAISED: BroadcastRun['kernel'] = { metricsCacheOff: true, memory: [8, 12, 16].map((g) => g * 2 ** 30), memoryRaised: true };

/** A window of `wallMs` that kept pace, with `deliveries` and the servers' CPU at `usPerDelivery` each. */
function window(wallMs: number, deliveries: number, usPerDelivery: number[], rate = 100): StepResult {
  const latency = new LatencyHistogram();
  latency.add(50);
  return {
    rate,
    ok: true,
    late: false,
    silent: 0,
    publishMs: wallMs,
    receiveMs: wallMs,
    lagGrowthMs: 0,
    missing: 0,
    closed: 0,
    deliveries,
    cpuUs: usPerDelivery.map((us) => us * deliveries),
    receiverCpuUs: 0,
    wallMs,
    machineBusy: 0.5,
    machineSteal: 0,
    tcpRetransmits: 0,
    tcpLossProbes: 0,
    latency,
  };
}

/** One system's bursts in one pass: `usPerDelivery` of CPU for each server, `idleMsPerS` each when idle. */
function cost(name: string, usPerDelivery: number[], idleMsPerS: number[] = usPerDelivery.map(() => 0)): BurstCost {
  const bursts = window(WALL_MS, DELIVERIES, usPerDelivery);
  return { name, servers: usPerDelivery.length > 1 ? ['proxy', 'backend'] : ['server'], bursts, idleCpuUsPerS: idleMsPerS.map((ms) => ms * 1000) };
}

const C = 'C relay (epoll), writes coalesced per loop turn';
const LIVEMUX = 'livemux proxy + echo backend';

/** The bursts-only report (BROADCAST_PEAKS=0) of these passes. */
function report(passes: [c: number, proxy: number][]): string[] {
  const bursts = passes.map(([c, proxy]) => [cost(C, [c]), cost(LIVEMUX, [proxy, 0.001], [10, 0])]);
  return broadcastReport([{ receivers: 'native', processes: 2, passes: [], bursts, kernel: RAISED }]).split('\n');
}

describe('broadcast report: cost at equal coalescing', () => {
  it('pairs each ratio to the C relay within its pass, where the bursts alternated', () => {
    // Every pass 1.1× the C relay's, though the passes move 20 %: unpaired, the extremes would give 0.92–1.32×.
    const lines = report([
      [0.1, 0.11],
      [0.12, 0.132],
      [0.11, 0.121],
    ]);
    const row = lines.find((l) => l.startsWith(`| ${LIVEMUX}`))!;
    expect(row).toContain('proxy alone 1.10× (1.10×, 1.10×, 1.10×)');
    expect(row).toContain("proxy ≤ 1.2× the C relay's: met (1.10×)");
    // Net of idle: 10 ms/s over 25 s is 0.01 µs of each of 25,000,000 deliveries (0.100 / 0.122 / 0.111 µs).
    expect(row).toContain('proxy alone 1.01× (1.00×, 1.02×, 1.01×)');
  });

  it('marks each system whose passes spread over 10 % as not agreeing', () => {
    const lines = report([
      [0.1, 0.11],
      [0.104, 0.14],
      [0.108, 0.12],
    ]);
    expect(lines.find((l) => l.startsWith(`- ${C}:`))).toMatch(/at bursts of 100 0\.100 \/ 0\.104 \/ 0\.108 µs \(8 %\) ✓/);
    const livemux = lines.find((l) => l.startsWith(`- ${LIVEMUX}:`))!;
    expect(livemux).toMatch(/proxy alone 0\.110 \/ 0\.140 \/ 0\.120 µs \(25 %\) ✗/);
  });
});

describe('broadcast report: peaks', () => {
  it("gives each peak's deliveries/s over its own step's length (staircase steps are longer)", () => {
    // 5,000 messages/s to 10,000 receivers: 50 M deliveries/s, whether the peak step lasted 4 s or 8 s.
    const system = (name: string, seconds: number): SystemResult => {
      const step = window(seconds * 1000, 5_000 * seconds * 10_000, [0.02], 5_000);
      return { name, servers: ['server'], idleRssBytes: [0], peakRssBytes: [0], steps: [step], edgeFrom: 1, peakRates: [], cutShort: false, peak: step, half: step, fixed: step };
    };
    const lines = broadcastReport([{ receivers: 'native', processes: 2, passes: [[system(C, 8), system('Node relay, writes coalesced per tick', 4)]], bursts: [], kernel: RAISED }]).split('\n');
    expect(lines.find((l) => l.startsWith(`| ${C}`))).toMatch(/^\| [^|]+ \| 50,000,000 \|/);
    expect(lines.find((l) => l.startsWith('| Node relay'))).toMatch(/^\| [^|]+ \| 50,000,000 \| [^|]+ \| 1\.00× \|/);
  });

  it('reads CPU per delivery near the peak from the steps kept at the finest stride, not from one that collapsed', () => {
    const step = (rate: number, us: number, ok: boolean): StepResult => ({ ...window(12_000, rate * 12 * 10_000, [us], rate), ok });
    // A collapsed step shows a server idling through retransmissions: a fraction of its cost per delivery.
    const collapsed = step(6_300, 0.005, false);
    const system = (name: string, us: number): SystemResult => ({
      name,
      servers: ['server'],
      idleRssBytes: [0],
      peakRssBytes: [0],
      steps: [step(5_120, 0.03, true), step(6_000, us * 2, true), step(6_000, us, true), collapsed, step(5_700, us, true)],
      edgeFrom: 1,
      peakRates: [6_000, 6_300, 5_700, 6_000],
      cutShort: false,
      peak: collapsed,
      half: step(3_000, 0.04, true),
      fixed: null,
    });
    const lines = broadcastReport([{ receivers: 'native', processes: 2, passes: [[system(C, 0.02), system('Node relay, writes coalesced per tick', 0.03)]], bursts: [], kernel: RAISED }]).split('\n');
    // The first staircase step (6,000/s at twice the cost) was before the finest stride: not counted.
    expect(lines.find((l) => l.startsWith(`| ${C}`))).toMatch(/^(\| [^|]+ ){4}\| 0\.0200 µs \(2 steps\) \| 1\.00× \|/);
    expect(lines.find((l) => l.startsWith('| Node relay'))).toMatch(/^(\| [^|]+ ){4}\| 0\.0300 µs \(2 steps\) \| 1\.50× \|/);
  });

  it("says whether the kernel's TCP metrics cache was off and its TCP memory raised for the run", () => {
    const step = window(8_000, 5_000 * 8 * 10_000, [0.02], 5_000);
    const result: SystemResult = { name: C, servers: ['server'], idleRssBytes: [0], peakRssBytes: [0], steps: [step], edgeFrom: 1, peakRates: [], cutShort: false, peak: step, half: step, fixed: step };
    const title = (kernel: BroadcastRun['kernel']): string => broadcastReport([{ receivers: 'native', processes: 2, passes: [[result]], bursts: [], kernel }]).split('\n').find((l) => l.startsWith('**Server-bound'))!;
    expect(title(RAISED)).toContain('TCP metrics cache was off and empty for the run, and its TCP memory limits (tcp_mem) raised to 8.0 / 12.0 / 16.0 GiB');
    const machine = { metricsCacheOff: false, memory: [1.1, 1.5, 2.2].map((g) => g * 2 ** 30), memoryRaised: false };
    expect(title(machine)).toContain('TCP metrics cache was on**');
    expect(title(machine)).toContain('were the machine\'s own, 1.1 / 1.5 / 2.2 GiB**');
  });
});
