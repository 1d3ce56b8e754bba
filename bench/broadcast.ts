import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { PACKAGE_ROOT } from '../src/paths.js';
import { Priority } from '../src/protocol/constants.js';
import { encodeData } from '../src/protocol/encoder.js';
import { BenchConnection } from './bench-connection.js';
import { LatencyHistogram, clockMs, connectSocketIo, endMessage, probeMessage, roomMessage } from './broadcast-protocol.js';
import { BenchProcess, type OutputLine, startProcess } from './processes.js';

/**
 * Issue 4's broadcast bench: one room of 10,000 receivers (in separate processes), 64-byte messages
 * published at a controlled rate, measured on three systems one after the other in the same run:
 * a plain Node TCP server with writes coalesced per tick, socket.io rooms, and livemux (proxy + echo
 * backend, `/sub room` and `/pub room <text>`). For each: the peak rate it keeps up with, the servers'
 * CPU time per delivery and RSS at that rate, and the publish-to-receive latency at half of it.
 */
export const BROADCAST_CLIENTS = 10_000;
const CLIENT_PROCESSES = 4;
/** Length of each step of the peak search, and of the latency run at half the peak. */
export const STEP_SECONDS = 4;
export const LATENCY_SECONDS = 8;
/**
 * A step keeps pace when every receiver got every message and, at the median sampled receiver, the
 * mean latency of the messages sent in the step's last second exceeds that of the messages sent in its
 * second second by at most PACE_SLACK_MS (bench/broadcast-clients.ts, lagGrowth). A system that keeps
 * up has a steady latency, however long its path (a proxy with a backend hop has a longer one than a
 * relay); one that falls behind by a share f of the pace gets later by f × 2 s over those two seconds,
 * so 200 ms catches 10 %. The first second is left out: a pipeline fills then.
 */
export const PACE_SLACK_MS = 200;
/** A step is clearly saturated when receivers got its messages at less than this share of the pace. */
const SATURATED_PACE = 0.7;
/** Peak search: first rate (room messages/s), and bisections once bracketed (see findPeak). */
const START_RATE = 5;
const REFINEMENTS = 3;
const MIN_RATE = 0.5;
const MAX_RATE = 100_000;
/** utime/stime in /proc are in clock ticks of 1/100 s (USER_HZ) on Linux. */
const US_PER_TICK = 10_000;
const DIST_BENCH = join(PACKAGE_ROOT, 'dist', 'bench');

/** A livemux proxy (pid `pid`, clients on `port`) routing business "echo" to an echo backend. */
export interface LivemuxUnderTest {
  proxy: BenchProcess;
  backend: BenchProcess;
  port: number;
  pid: number;
}

/** One step at a fixed offered rate. */
export interface StepResult {
  /** Offered room messages per second. */
  rate: number;
  /** The step kept pace (see PACE_SLACK_MS). */
  ok: boolean;
  /** How long the publisher took, first message to end message. */
  publishMs: number;
  /** The median sampled receiver's time, first message to end message. */
  receiveMs: number;
  /** The median sampled receiver's latency growth over the step (see PACE_SLACK_MS). */
  lagGrowthMs: number;
  missing: number;
  deliveries: number;
  /** CPU time of each measured server process, from the first message until the last end message arrived. */
  cpuUs: number[];
  /** CPU time of the receivers' processes, from their previous report to this step's. */
  receiverCpuUs: number;
  /** Publish-to-receive latency at every 50th receiver. */
  latency: LatencyHistogram;
}

export interface SystemResult {
  name: string;
  /** The measured server processes, e.g. ['proxy', 'backend']: what each entry of the arrays is. */
  servers: string[];
  /** RSS of each server with every receiver connected and in the room, before the first step. */
  idleRssBytes: number[];
  /** Highest RSS of each server over the whole run (VmHWM), overloaded steps included. */
  peakRssBytes: number[];
  steps: StepResult[];
  /** The fastest step that kept pace (see findPeak). */
  peak: StepResult;
  /** LATENCY_SECONDS at half the peak rate. */
  half: StepResult;
}

interface Publisher {
  send(text: string): void;
  close(): void;
}

/** One system running: its server processes (with the pids to measure), where receivers connect, the publisher. */
interface Deployment {
  mode: 'plain' | 'socketio' | 'livemux';
  port: number;
  processes: BenchProcess[];
  servers: { label: string; pid: number }[];
  publisher: Publisher;
}

/** Runs the three systems one after the other; every process it starts has exited when it returns. */
export async function benchBroadcast(token: string, startLivemux: () => Promise<LivemuxUnderTest>): Promise<SystemResult[]> {
  const systems: [string, () => Promise<Deployment>][] = [
    ['plain TCP, writes coalesced per tick', () => deployServer('plain', async (port) => framePublisher(await BenchConnection.connect(port)))],
    ['socket.io rooms', () => deployServer('socketio', socketIoPublisher)],
    ['livemux proxy + echo backend', () => deployLivemux(startLivemux, token)],
  ];
  const results: SystemResult[] = [];
  for (const [name, deploy] of systems) results.push(await measure(name, await deploy(), token));
  return results;
}

/** Starts the bench's own server for `mode` (bench/broadcast-<mode>-server.ts) and connects a publisher. */
async function deployServer(mode: 'plain' | 'socketio', connectPublisher: (port: number) => Promise<Publisher>): Promise<Deployment> {
  const script = join(DIST_BENCH, `broadcast-${mode}-server.js`);
  const server = await startProcess(script, [], (l) => l.event === 'listening');
  const { port, pid } = server.line as { port: number; pid: number };
  return { mode, port, processes: [server.process], servers: [{ label: 'server', pid }], publisher: await connectPublisher(port) };
}

async function deployLivemux(start: () => Promise<LivemuxUnderTest>, token: string): Promise<Deployment> {
  const livemux = await start();
  const conn = await BenchConnection.connect(livemux.port);
  await conn.hello(token);
  if ((await conn.open('echo', 1)).refused > 0) throw new Error('broadcast: the publisher session was refused');
  return {
    mode: 'livemux',
    port: livemux.port,
    processes: [livemux.proxy, livemux.backend],
    servers: [
      { label: 'proxy', pid: livemux.pid },
      { label: 'backend', pid: childPid('echo-backend') },
    ],
    publisher: framePublisher(conn, '/pub room '),
  };
}

/** Emits each message as a `pub` event, which the server emits to the room. */
async function socketIoPublisher(port: number): Promise<Publisher> {
  const socket = await connectSocketIo(port, { role: 'publisher' });
  return { send: (text) => socket.emit('pub', text), close: () => socket.close() };
}

/** Publishes each message as one DATA frame (HIGH) on session 1, after `prefix`. */
function framePublisher(conn: BenchConnection, prefix = ''): Publisher {
  return {
    send: (text) => conn.socket.write(encodeData(1, Priority.HIGH, Buffer.from(prefix + text))),
    close: () => conn.close(),
  };
}

async function measure(name: string, deployment: Deployment, token: string): Promise<SystemResult> {
  const args = ['--mode', deployment.mode, '--port', String(deployment.port), '--count', String(BROADCAST_CLIENTS / CLIENT_PROCESSES), '--token', token];
  const clients = Array.from({ length: CLIENT_PROCESSES }, () => new BenchProcess(join(DIST_BENCH, 'broadcast-clients.js'), args));
  try {
    const room = new Room(deployment, clients);
    await room.fill();
    const idleRssBytes = deployment.servers.map((s) => memory(s.pid).rssBytes);
    const steps: StepResult[] = [];
    const peak = await findPeak(async (rate) => {
      const step = await room.step(rate, STEP_SECONDS);
      steps.push(step);
      logStep(name, step);
      return step;
    });
    const half = await room.step(peak.rate / 2, LATENCY_SECONDS);
    logStep(`${name}, latency at half the peak`, half);
    const peakRssBytes = deployment.servers.map((s) => memory(s.pid).hwmBytes);
    return { name, servers: deployment.servers.map((s) => s.label), idleRssBytes, peakRssBytes, steps, peak, half };
  } finally {
    await Promise.all(clients.map(stopped));
    deployment.publisher.close();
    await Promise.all(deployment.processes.map(stopped));
  }
}

/** One progress line on stderr per step: a run takes minutes. */
function logStep(name: string, step: StepResult): void {
  const { rate, ok, publishMs, receiveMs, lagGrowthMs, missing, latency, cpuUs, receiverCpuUs, deliveries } = step;
  const cpu = [...cpuUs, receiverCpuUs].map((us) => (us / deliveries).toPrecision(3)).join(' + ');
  const pace = `published in ${publishMs.toFixed(0)} ms, received in ${receiveMs.toFixed(0)} ms, latency grew ${lagGrowthMs.toFixed(0)} ms, ${missing} missing`;
  const cost = `p50 ${latency.quantile(0.5).toFixed(1)} ms, CPU µs/delivery ${cpu} (servers + receivers)`;
  console.error(`broadcast: ${name}: ${rate.toFixed(1)} messages/s ${ok ? 'kept pace' : 'fell behind'} (${pace}; ${cost})`);
}

/**
 * The peak: the fastest step that kept pace. Climbs by doubling from START_RATE until a step is
 * clearly saturated; a step that only just misses does not stop the climb, because a server that
 * coalesces (the baseline, livemux) writes more messages per syscall as the rate rises and may keep
 * pace at twice a rate it just missed. Halves from START_RATE if nothing kept pace. Then bisects
 * (geometric mean) REFINEMENTS times between the fastest step that kept pace and the next rate above it
 * that did not.
 */
async function findPeak(step: (rate: number) => Promise<StepResult>): Promise<StepResult> {
  const tried: StepResult[] = [];
  const run = async (rate: number): Promise<StepResult> => {
    const s = await step(rate);
    tried.push(s);
    return s;
  };
  const fastestOk = (): StepResult | undefined => tried.filter((s) => s.ok).sort((a, b) => b.rate - a.rate)[0];
  for (let rate = START_RATE; rate <= MAX_RATE; rate *= 2) {
    const s = await run(rate);
    if (s.missing > 0 || s.publishMs < SATURATED_PACE * s.receiveMs) break;
  }
  for (let rate = START_RATE / 2; !fastestOk() && rate >= MIN_RATE; rate /= 2) await run(rate);
  for (let i = 0; i < REFINEMENTS; i++) {
    const pass = fastestOk();
    const fail = tried.filter((s) => !s.ok && s.rate > (pass?.rate ?? Infinity)).sort((a, b) => a.rate - b.rate)[0];
    if (!pass || !fail) break;
    await run(Math.sqrt(pass.rate * fail.rate));
  }
  const peak = fastestOk();
  if (!peak) throw new Error(`broadcast: no rate down to ${MIN_RATE} messages/s kept pace`);
  return peak;
}

/** The room of one deployment: runs numbered phases and collects the receivers' reports. */
class Room {
  private phase = 0;
  private published = 0;

  constructor(
    private readonly deployment: Deployment,
    private readonly clients: BenchProcess[],
  ) {}

  /**
   * Resolves once every receiver is in the room and the room is quiet. Probes start only once every
   * receiver is connected (on socket.io, probes to a growing room starve the handshakes), one per 0.5 s
   * until each receiver has had one; then a lone end message flushes out the probes still on their way.
   */
  async fill(): Promise<void> {
    const { publisher } = this.deployment;
    await Promise.all(this.clients.map((c) => c.next((l) => l.event === 'connected', 180_000)));
    const ready = Promise.all(this.clients.map((c) => c.next((l) => l.event === 'ready', 60_000)));
    const settled = ready.then(
      () => true,
      () => true,
    );
    do publisher.send(probeMessage());
    while (!(await Promise.race([settled, sleep(500, false)])));
    await ready;
    const phase = ++this.phase;
    const reports = this.reports(phase, 60_000);
    publisher.send(endMessage(phase, this.published));
    await reports;
  }

  /** Publishes at `rate` for `seconds`, then the end message; resolves once every receiver has seen it. */
  async step(rate: number, seconds: number): Promise<StepResult> {
    const { publisher, servers } = this.deployment;
    const phase = ++this.phase;
    const reports = this.reports(phase, (3 * seconds + 15) * 1000);
    const before = servers.map((s) => cpuUs(s.pid));
    const total = Math.max(1, Math.round(rate * seconds));
    const start = clockMs();
    let sent = 0;
    while (sent < total) {
      // Every message due by now, then yield for ~1 ms: paced evenly, in small bursts at high rates.
      const due = Math.min(total, Math.floor(((clockMs() - start) / 1000) * rate) + 1);
      for (; sent < due; sent++) publisher.send(roomMessage(phase));
      await sleep(1);
    }
    this.published += total;
    // The end message goes when the next room message would be due, not right behind the last one:
    // a receiver keeping pace then gets it publishMs after its first message, whatever a fan-out takes.
    const publishMs = (total / rate) * 1000;
    await sleep(start + publishMs - clockMs());
    publisher.send(endMessage(phase, this.published));
    const lines = await reports;
    const after = servers.map((s) => cpuUs(s.pid));
    const latency = new LatencyHistogram();
    for (const l of lines) latency.merge(l.histogram as number[]);
    const sum = (key: string): number => lines.reduce((n, l) => n + (l[key] as number), 0);
    const missing = sum('missing');
    const median = (key: string): number => {
      const values = lines.flatMap((l) => l[key] as number[]).sort((a, b) => a - b);
      return values[Math.floor(values.length / 2)] ?? NaN;
    };
    const receiveMs = median('receiveMs');
    // Too few messages per second for the lag windows (the slowest rates): the whole step's time instead.
    const lagGrowthMs = Number.isNaN(median('lagGrowthMs')) ? receiveMs - publishMs : median('lagGrowthMs');
    return {
      rate,
      ok: missing === 0 && sum('closed') === 0 && lagGrowthMs <= PACE_SLACK_MS,
      publishMs,
      receiveMs,
      lagGrowthMs,
      missing,
      deliveries: total * BROADCAST_CLIENTS - missing,
      cpuUs: after.map((a, i) => a - before[i]!),
      receiverCpuUs: sum('cpuUs'),
      latency,
    };
  }

  /** Every client process's report on `phase`. */
  private reports(phase: number, timeoutMs: number): Promise<OutputLine[]> {
    return Promise.all(this.clients.map((c) => c.next((l) => l.event === 'phase' && l.phase === phase, timeoutMs)));
  }
}

/** Sends SIGTERM and resolves once the process has exited (or after 10 s; the bench's exit kills it then). */
async function stopped(p: BenchProcess): Promise<void> {
  const exited = p.next(() => false, 10_000).catch(() => {});
  p.stop();
  await exited;
}

/** Fields 3… of /proc/<pid>/stat (after the command name, which may contain spaces): index 0 is field 3. */
function statFields(pid: number | string): string[] {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
}

/**
 * CPU time (user + system) of a process, read from /proc so a server needs no hook: the counters
 * process.cpuUsage() reports, at 10 ms resolution (a step's server time is seconds).
 */
export function cpuUs(pid: number): number {
  const f = statFields(pid);
  return (Number(f[11]) + Number(f[12])) * US_PER_TICK;
}

/** Resident memory of a process now, and its high-water mark. */
function memory(pid: number): { rssBytes: number; hwmBytes: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string): number => Number(new RegExp(`${field}:\\s+(\\d+)`).exec(status)?.[1]) * 1024;
  return { rssBytes: kb('VmRSS'), hwmBytes: kb('VmHWM') };
}

/** Pid of the most recently started child of this process whose command line contains `needle`. */
function childPid(needle: string): number {
  let found = { pid: 0, start: -1 };
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const f = statFields(entry);
      const start = Number(f[19]);
      if (Number(f[1]) !== process.pid || start < found.start) continue;
      if (readFileSync(`/proc/${entry}/cmdline`, 'utf8').includes(needle)) found = { pid: Number(entry), start };
    } catch {
      // exited while the folder was read
    }
  }
  if (found.pid === 0) throw new Error(`broadcast: no child process runs ${needle}`);
  return found.pid;
}
