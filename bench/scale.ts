import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { PACKAGE_ROOT } from '../src/paths.js';
import { BenchConnection } from './bench-connection.js';
import {
  type Deployment,
  type LivemuxUnderTest,
  type Publisher,
  STEP_SECONDS,
  type SystemResult,
  childPid,
  framePublisher,
  measure,
  memory,
  stopped,
} from './broadcast.js';
import { type HeapKind, heapGrowth, heapKinds, takeHeapSnapshot } from './heap-snapshot.js';
import { type PassthroughResult, benchPassthrough } from './passthrough.js';
import { BenchProcess, cpuUs, startProcess } from './processes.js';

/**
 * Issue 12's figures, section `scale` (`BENCH_ONLY=scale npm run bench`), in parts:
 * - hold: CONNECTIONS connections over WORKERS processes, first on a plain Node TCP server
 *   (node:cluster), then on `livemux start --workers` (each connection: HELLO with a JWT of its own
 *   user, one session, PINGs answered), opened in two waves: accept rate, RSS per connection (average
 *   and marginal), CPU while idle. Six workers on this 2-core box: 100,000 / 6 is over the issue's
 *   15,000 per worker and under the 20,000 files one process may hold;
 * - footprint: where the bytes of one worker's share go (heap snapshots of one proxy process);
 * - placement: the same plain server behind node:cluster's two modes and behind livemux's
 *   least-connections handoff: how evenly connections land, and what the primary pays;
 * - fanout: one room of ROOM members over FANOUT_WORKERS processes, livemux against as many plain
 *   relays (bench/broadcast.ts's peak search);
 * - passthrough: bench/passthrough.ts.
 * BENCH_SCALE_PARTS=hold,footprint,... runs some parts; BENCH_SCALE_CONNECTIONS, BENCH_SCALE_ROOM and
 * BENCH_SCALE_IDLE_SECONDS shrink them for a quick check (the tables say what was run).
 */
const CONNECTIONS = Number(process.env.BENCH_SCALE_CONNECTIONS ?? 100_000);
const WORKERS = Number(process.env.BENCH_SCALE_WORKERS ?? 6);
/** Connections per client process: well under the 20,000 files a process may hold here, and a wave spread over several source addresses. */
const PER_CLIENT_PROCESS = 8_000;
/** Long enough for two rounds of heartbeats at the default 25 s interval. */
const IDLE_SECONDS = Number(process.env.BENCH_SCALE_IDLE_SECONDS ?? 60);
const ROOM = Number(process.env.BENCH_SCALE_ROOM ?? 50_000);
const FANOUT_WORKERS = 4;
const ROOM_PROCESSES = 8;
const PLACEMENT_CONNECTIONS = Math.min(24_000, CONNECTIONS);
const PLACEMENT_PROCESSES = 4;
/** One worker's share of the issue's target: where its bytes go is measured on one process. */
const FOOTPRINT_CONNECTIONS = Math.min(15_000, CONNECTIONS);
/** How long connections idle before the second snapshot: one default heartbeat interval and a little. */
const IDLE_SNAPSHOT_MS = 30_000;
/** Heap kinds listed per connection, largest first. */
const FOOTPRINT_KINDS = 25;
const DIST_BENCH = join(PACKAGE_ROOT, 'dist', 'bench');
/** 127.0.0.<first + i> for client process i: each source address has its own ~28,000 ports. */
const SOURCES = { hold: 10, room: 30, placement: 50, footprint: 70 };

/** A livemux proxy as the bench's runner starts it (bench/run.ts). */
type Livemux = LivemuxUnderTest & { adminPort: number };

export interface ScaleBenchOptions {
  token: string;
  secret: string;
  startLivemux(
    limits: Record<string, number>,
    extras?: { args?: string[]; env?: NodeJS.ProcessEnv; routes?: { business: string; pool: string }[]; pools?: Record<string, object> },
  ): Promise<Livemux>;
}

/** The parts of the section, in the order they run; BENCH_SCALE_PARTS=a,b runs some of them. */
const PARTS = ['hold', 'footprint', 'placement', 'fanout', 'passthrough'] as const;

/** Runs the parts of the section and returns their Markdown. Every process it starts has exited. */
export async function benchScale(options: ScaleBenchOptions): Promise<string> {
  const chosen = process.env.BENCH_SCALE_PARTS?.split(',') ?? PARTS;
  const run: Record<(typeof PARTS)[number], () => Promise<string>> = {
    hold: async () => holdReport(await holdPlain(), await holdLivemux(options)),
    footprint: async () => footprintReport(await benchFootprint(options)),
    placement: async () => {
      const placement = [];
      for (const schedule of ['rr', 'shared', 'least'] as const) placement.push(await benchPlacement(schedule));
      return placementReport(placement);
    },
    fanout: async () => fanOutReport(await benchFanOut(options)),
    passthrough: async () =>
      passthroughReport(
        await benchPassthrough(options.token, async (upstream) => {
          const lm = await options.startLivemux({}, { routes: [{ business: 'legacy', pool: 'legacy' }], pools: { legacy: { protocol: 'tcp', endpoints: [{ address: upstream }] } } });
          await ready(lm.adminPort);
          return { port: lm.port, pid: lm.pid, stop: () => Promise.all([stopped(lm.proxy), stopped(lm.backend)]).then(() => {}) };
        }),
      ),
  };
  const sections = [runDescription(chosen)];
  for (const part of PARTS) {
    if (!chosen.includes(part)) continue;
    const started = performance.now();
    const loadBefore = loadavg()[0]!;
    const report = await run[part]();
    // On a shared machine the figures mean little without how busy it was.
    const section = `${report}\n\n_(${part}: ${minutes(performance.now() - started)}; 1-minute load average ${loadBefore.toFixed(1)} at the start, ${loadavg()[0]!.toFixed(1)} at the end, on ${availableParallelism()} cores)_`;
    // Printed at once: a later part that fails must not take this one's figures with it.
    console.log(`\n${section}\n`);
    sections.push(section);
  }
  return sections.join('\n\n');
}

/** What this run measured, against the issue's full scale, and how to run that. */
function runDescription(parts: readonly string[]): string {
  const settings = [
    ['BENCH_SCALE_CONNECTIONS', CONNECTIONS, 100_000],
    ['BENCH_SCALE_WORKERS', WORKERS, 6],
    ['BENCH_SCALE_IDLE_SECONDS', IDLE_SECONDS, 60],
    ['BENCH_SCALE_ROOM', ROOM, 50_000],
  ] as const;
  const changed = settings.filter(([, value, full]) => value !== full).map(([name, value, full]) => `${name}=${value} (full: ${fmt(full)})`);
  return [
    `Parts run: ${parts.join(', ')}. ${changed.length === 0 ? 'Full scale.' : `**Reduced scale** (the method, not the issue's figures): ${changed.join(', ')}.`}`,
    'The full run (`BENCH_ONLY=scale npm run bench`, no other setting) takes about 25 minutes on a quiet 2-core machine; every wait in it is bounded (a wave of connections gets 15 minutes, a client process 5 to start).',
  ].join(' ');
}

function minutes(ms: number): string {
  const s = Math.round(ms / 1000);
  return s < 60 ? `${s} s` : `${Math.floor(s / 60)} min ${s % 60} s`;
}

// ── where the bytes go ─────────────────────────────────────────────────────────────────────────────

interface Footprint {
  /** Heap growth per connection by kind of object: a bare Node socket (the plain server), and livemux (largest first). */
  bare: HeapKind[];
  livemux: HeapKind[];
}

/**
 * FOOTPRINT_CONNECTIONS idle connections on ONE process: first the plain server (a bare Node socket
 * each), then a livemux proxy (one session each); a heap snapshot before and after each (V8 collects
 * garbage first), totalled by kind of object and divided by the connections. No RSS here: writing a
 * snapshot leaves tens of MB in malloc's free lists (the hold part measures RSS).
 */
async function benchFootprint(options: ScaleBenchOptions): Promise<Footprint> {
  const dir = mkdtempSync(join(tmpdir(), 'livemux-heap-'));
  const env = { NODE_OPTIONS: `--heapsnapshot-signal=SIGUSR2 --diagnostic-dir=${dir}` };
  try {
    const plain = await startProcess(join(DIST_BENCH, 'scale-plain-server.js'), ['--workers', '1', '--schedule', 'least'], (l) => l.event === 'listening', env);
    let bare: HeapKind[];
    try {
      bare = await heapPerConnection((plain.line.workers as number[])[0]!, dir, (whileHeld) => holdClients('plain', plain.line.port as number, FOOTPRINT_CONNECTIONS, 1, SOURCES.footprint, '', whileHeld));
    } finally {
      await stopped(plain.process);
    }
    const lm = await options.startLivemux({}, { env });
    try {
      await ready(lm.adminPort);
      const livemux = await heapPerConnection(lm.pid, dir, (whileHeld) => holdClients('livemux', lm.port, FOOTPRINT_CONNECTIONS, 1, SOURCES.footprint + 1, options.secret, whileHeld));
      return { bare, livemux };
    } finally {
      await Promise.all([stopped(lm.proxy), stopped(lm.backend)]);
    }
  } finally {
    // BENCH_SCALE_KEEP_SNAPSHOTS=1 keeps them, to follow an object's retainers in DevTools.
    if (process.env.BENCH_SCALE_KEEP_SNAPSHOTS) console.log(`heap snapshots kept in ${dir}`);
    else rmSync(dir, { recursive: true, force: true });
  }
}

/** Heap growth of process `pid` per connection, by kind, over holding FOOTPRINT_CONNECTIONS with `hold`. */
async function heapPerConnection(
  pid: number,
  dir: string,
  hold: (whileHeld: (clients: BenchProcess[]) => Promise<void>) => Promise<unknown>,
): Promise<HeapKind[]> {
  const before = heapKinds(await takeHeapSnapshot(pid, dir));
  let growth!: HeapKind[];
  await hold(async (clients) => {
    // Past one heartbeat interval (25 s by default): what stays is what an idle connection costs.
    await sleep(IDLE_SNAPSHOT_MS);
    growth = heapGrowth(before, heapKinds(await takeHeapSnapshot(pid, dir)));
    await Promise.all(clients.map(stopped));
  });
  return growth.map((k) => ({ kind: k.kind, count: k.count / FOOTPRINT_CONNECTIONS, bytes: k.bytes / FOOTPRINT_CONNECTIONS }));
}

// ── placement ──────────────────────────────────────────────────────────────────────────────────────

interface Placement {
  schedule: 'rr' | 'shared' | 'least';
  connectionsPerSecond: number;
  counts: number[];
  primaryCpuUsPerConnection: number;
}

async function benchPlacement(schedule: Placement['schedule']): Promise<Placement> {
  const server = await startProcess(join(DIST_BENCH, 'scale-plain-server.js'), ['--workers', String(WORKERS), '--schedule', schedule], (l) => l.event === 'listening');
  try {
    const { rate } = await holdClients('plain', server.line.port as number, PLACEMENT_CONNECTIONS, PLACEMENT_PROCESSES, SOURCES.placement, '', async (clients) => {
      await Promise.all(clients.map(stopped));
    });
    const counts = server.process.next((l) => l.event === 'counts');
    process.kill(server.line.pid as number, 'SIGUSR2');
    const line = await counts;
    return { schedule, connectionsPerSecond: rate, counts: line.counts as number[], primaryCpuUsPerConnection: (line.primaryCpuUs as number) / PLACEMENT_CONNECTIONS };
  } finally {
    await stopped(server.process);
  }
}

// ── connections held ───────────────────────────────────────────────────────────────────────────────

interface Held {
  /** Connections per second over both waves (each timed from its signal to its last answer). */
  connectionsPerSecond: number;
  /**
   * RSS of groups of server processes (summed within a group): [every process], and for livemux also
   * [primary], [worker 0], …; with no client (settled), and the lowest reading while half, then all
   * of the connections idled.
   */
  rss: { idle: number[]; half: number[]; full: number[] };
  /** CPU of every server process over the last idle window, as a share of one core. */
  idleCpuShare: number;
  /** Most files each server process (as in rss groups[0]) had open at once while the waves connected: the limit here is 20,000. */
  peakFiles: number[];
  /** livemux: each worker as /status saw it with every connection still open. */
  workers?: WorkerAtFull[];
  /**
   * livemux: V8 memory of the workers (summed) and of the primary, with no client and with all (not
   * collected first); null where /metrics did not answer.
   */
  v8?: { workers: { idle: V8Memory | null; full: V8Memory | null }; primary: { idle: V8Memory | null; full: V8Memory | null } };
  /** livemux: PINGs sent per second over the last idle window. */
  pingsPerSecond?: number;
}

/** One worker at the end of the last idle, every connection still open. */
interface WorkerAtFull {
  slot: number;
  pid: number;
  /** Its open connections; null when it did not answer the primary's /status in time. */
  connections: number | null;
  /** Not the process measured from the start (it died and was replaced): its RSS figure is void. */
  replaced: boolean;
}

/** V8 memory of some of the proxy's processes, from the primary's /metrics. */
interface V8Memory {
  heapUsed: number;
  /** Heap committed, every space. */
  heapTotal: number;
  /** Committed by the young generation (grown by a connect burst, given back when V8 sees fit). */
  newSpace: number;
  /** ArrayBuffers and other memory V8 is told of outside its heap. */
  external: number;
  /** The processes' RSS read at the same moment: what is not heap or external is native (sockets, malloc). */
  rss: number;
  /** Compacting collections run after waves of connections (src/proxy/heap-compactor.ts), and their pauses in all (s). */
  compactions: number;
  compactionSeconds: number;
}

async function holdPlain(): Promise<Held> {
  const server = await startProcess(join(DIST_BENCH, 'scale-plain-server.js'), ['--workers', String(WORKERS), '--schedule', 'rr'], (l) => l.event === 'listening');
  const groups = [[server.line.pid as number, ...(server.line.workers as number[])]];
  try {
    const idleRss = [await settledRss(groups[0]!)];
    const waves = await holdInTwoWaves('plain', server.line.port as number, '', groups, async (idleFull) => idleFull());
    return { connectionsPerSecond: waves.rate, rss: { idle: idleRss, half: waves.half, full: waves.full.lowestRss }, idleCpuShare: waves.full.cpuShare, peakFiles: waves.peakFiles };
  } finally {
    await stopped(server.process);
  }
}

async function holdLivemux(options: ScaleBenchOptions): Promise<Held> {
  const lm = await options.startLivemux({}, { args: ['--workers', String(WORKERS)] });
  try {
    await ready(lm.adminPort);
    const workerPids = (await status(lm.adminPort)).perWorker.map((w) => w.pid);
    const groups = [[lm.pid, ...workerPids], [lm.pid], ...workerPids.map((p) => [p])];
    await settledRss(groups[0]!);
    const idleRss = groups.map(sumRss);
    const v8Idle = { workers: await v8Memory(lm.adminPort, 'livemux_', workerPids), primary: await v8Memory(lm.adminPort, 'livemux_primary_', [lm.pid]) };
    const pingsSent = (): Promise<number | null> => metric(lm.adminPort, 'livemux_frames_sent_total{type="PING"}');
    let pings = 0;
    let atFull!: Status;
    let v8Full: { workers: V8Memory | null; primary: V8Memory | null } = { workers: null, primary: null };
    const waves = await holdInTwoWaves('livemux', lm.port, options.secret, groups, async (idleFull) => {
      const before = await pingsSent();
      const quiet = await idleFull();
      pings = ((await pingsSent()) ?? NaN) - (before ?? NaN);
      // Read while every connection is still open: once this returns the clients close theirs, and a
      // worker busy closing 15,000 sockets answers late (or not within the primary's 2 s) and low.
      atFull = await status(lm.adminPort);
      v8Full = { workers: await v8Memory(lm.adminPort, 'livemux_', workerPids), primary: await v8Memory(lm.adminPort, 'livemux_primary_', [lm.pid]) };
      return quiet;
    });
    return {
      connectionsPerSecond: waves.rate,
      rss: { idle: idleRss, half: waves.half, full: waves.full.lowestRss },
      idleCpuShare: waves.full.cpuShare,
      peakFiles: waves.peakFiles,
      workers: atFull.perWorker.map((w) => ({
        slot: w.slot,
        pid: w.pid,
        connections: typeof w.connections === 'number' ? w.connections : null,
        replaced: w.pid !== workerPids[w.slot],
      })),
      v8: { workers: { idle: v8Idle.workers, full: v8Full.workers }, primary: { idle: v8Idle.primary, full: v8Full.primary } },
      pingsPerSecond: pings / IDLE_SECONDS,
    };
  } finally {
    await Promise.all([stopped(lm.proxy), stopped(lm.backend)]);
  }
}

/**
 * V8 memory from the primary's /metrics: `livemux_` is every worker's (summed), `livemux_primary_` the
 * primary's own; with the RSS of `pids` read at the same moment. Null if /metrics did not answer.
 */
async function v8Memory(adminPort: number, prefix: string, pids: number[]): Promise<V8Memory | null> {
  const text = await metricsText(adminPort);
  if (text === null) return null;
  const read = (sample: string): number => sampleValue(text, sample) ?? NaN;
  const v8 = {
    heapUsed: read(`${prefix}nodejs_heap_size_used_bytes`),
    heapTotal: read(`${prefix}nodejs_heap_size_total_bytes`),
    newSpace: read(`${prefix}nodejs_heap_space_size_total_bytes{space="new"}`),
    external: read(`${prefix}nodejs_external_memory_bytes`),
    rss: sumRss(pids),
    // Only workers (a proxy) compact; the primary's own registry has none of these.
    compactions: sampleValue(text, `${prefix}heap_compaction_seconds_count`) ?? 0,
    compactionSeconds: sampleValue(text, `${prefix}heap_compaction_seconds_sum`) ?? 0,
  };
  return Object.values(v8).every(Number.isFinite) ? v8 : null;
}

/** What {@link idle} reads. */
interface Quiet {
  cpuShare: number;
  lowestRss: number[];
}

/**
 * Opens CONNECTIONS in two equal waves from separate client processes and source addresses, idling
 * IDLE_SECONDS after each and keeping each group's lowest RSS. Two waves, so the cost of one more
 * connection can be read between them (the second half against the first), apart from what the first
 * connections cost once (compiled code, grown tables, a young generation sized by the connect burst).
 * `aroundLastIdle` runs the idle with every connection open (and may measure around it). The
 * connections are closed when it returns.
 */
async function holdInTwoWaves(
  mode: 'plain' | 'livemux',
  port: number,
  secret: string,
  groups: number[][],
  aroundLastIdle: (idleFull: () => Promise<Quiet>) => Promise<Quiet>,
): Promise<{ rate: number; half: number[]; full: Quiet; peakFiles: number[] }> {
  const half = Math.floor(CONNECTIONS / 2);
  const processes = clientProcesses(half);
  let result!: { rate: number; half: number[]; full: Quiet; peakFiles: number[] };
  const files = watchOpenFiles(groups[0]!);
  await holdClients(mode, port, half, processes, SOURCES.hold, secret, async (_clients, firstRate) => {
    const halfRss = (await idle(groups, IDLE_SECONDS)).lowestRss;
    await holdClients(mode, port, CONNECTIONS - half, processes, SOURCES.hold + processes, secret, async (_more, secondRate) => {
      const peakFiles = files.stop();
      const full = await aroundLastIdle(() => idle(groups, IDLE_SECONDS));
      result = { rate: CONNECTIONS / (half / firstRate + (CONNECTIONS - half) / secondRate), half: halfRss, full, peakFiles };
    });
  });
  return result;
}

/**
 * The most files each of `pids` has open at once, read every 500 ms until `stop`: a process that takes
 * connections faster than it passes them on (the primary handing sockets to busy workers) holds one per
 * connection in between, against the per-process limit.
 */
function watchOpenFiles(pids: number[]): { stop(): number[] } {
  const peak = pids.map(() => 0);
  const read = (): void =>
    pids.forEach((pid, i) => {
      try {
        peak[i] = Math.max(peak[i]!, readdirSync(`/proc/${pid}/fd`).length);
      } catch {
        // gone: sumRss says so
      }
    });
  const timer = setInterval(read, 500);
  return {
    stop: () => {
      clearInterval(timer);
      read();
      return peak;
    },
  };
}

function clientProcesses(connections: number): number {
  return Math.max(1, Math.ceil(connections / PER_CLIENT_PROCESS));
}

/**
 * Opens `count` connections from `processes` client processes (source addresses 127.0.0.<firstSource + i>),
 * all started at once (livemux clients sign their users' tokens with `secret` first); `whileHeld` runs
 * with them open and the accept rate (connections per second from the signal to the last answer).
 */
async function holdClients(
  mode: 'plain' | 'livemux',
  port: number,
  count: number,
  processes: number,
  firstSource: number,
  secret: string,
  whileHeld: (clients: BenchProcess[], rate: number) => Promise<void>,
): Promise<{ rate: number }> {
  const clients = Array.from({ length: processes }, (_, i) => {
    const share = Math.floor(count / processes) + (i < count % processes ? 1 : 0);
    const args = ['--mode', mode, '--port', String(port), '--count', String(share), '--local', `127.0.0.${firstSource + i}`, '--secret', secret, '--prefix', `scale-${firstSource + i}-`];
    return new BenchProcess(join(DIST_BENCH, 'scale-clients.js'), args);
  });
  try {
    await Promise.all(clients.map((c) => c.next((l) => l.event === 'armed', 300_000)));
    const connected = Promise.all(clients.map((c) => c.next((l) => l.event === 'connected', 900_000)));
    const start = performance.now();
    for (const c of clients) c.signal('SIGUSR2');
    await connected;
    const rate = count / ((performance.now() - start) / 1000);
    await whileHeld(clients, rate);
    // A client process exits as soon as one of its connections is closed: its figures would be of fewer connections.
    const lost = clients.filter((c) => c.exitedUnasked);
    if (lost.length > 0) throw new Error(`scale: ${lost.length} of ${processes} client processes lost a connection while holding (see their stderr above)`);
    return { rate };
  } finally {
    await Promise.all(clients.map(stopped));
  }
}

/**
 * Idles `seconds` with the connections open: CPU used by every process of `groups[0]` (as a share of
 * one core), and each group's lowest total RSS over readings every 2 s. The lowest, because RSS holds
 * the garbage of the connect burst (parsed HELLOs, verified tokens, handed-off sockets) until a full
 * GC, which an idle V8 runs at a time of its choosing: the lowest reading is the closest to the steady
 * state of connections that stay for hours.
 */
async function idle(groups: number[][], seconds: number): Promise<Quiet> {
  const pids = groups[0]!;
  const before = pids.map(cpuUs);
  const lowestRss = groups.map(sumRss);
  const until = performance.now() + seconds * 1000;
  while (performance.now() < until) {
    await sleep(Math.min(2_000, until - performance.now()));
    groups.forEach((g, i) => (lowestRss[i] = Math.min(lowestRss[i]!, sumRss(g))));
  }
  const used = pids.reduce((sum, pid, i) => sum + cpuUs(pid) - before[i]!, 0);
  return { cpuShare: used / (seconds * 1e6), lowestRss };
}

/**
 * RSS of `pids` once it holds still: a process just started still has the young generation its start-up
 * grew (32 MB, which V8 gives back after it has idled a while), and counting it against the
 * connections would flatter them. Idles 20 s (the connections are measured after a longer idle), then
 * polls every 2 s until three readings agree within 1 MiB, for at most another minute.
 */
async function settledRss(pids: number[]): Promise<number> {
  await sleep(20_000);
  const readings = [sumRss(pids)];
  for (let i = 0; i < 30; i++) {
    await sleep(2_000);
    readings.push(sumRss(pids));
    const last = readings.slice(-3);
    if (last.length === 3 && Math.max(...last) - Math.min(...last) < 2 ** 20) break;
  }
  return readings.at(-1)!;
}

function sumRss(pids: number[]): number {
  return pids.reduce((sum, pid) => {
    try {
      return sum + memory(pid).rssBytes;
    } catch {
      throw new Error(`scale: server process ${pid} is gone (a worker died?): its RSS cannot be read`);
    }
  }, 0);
}

// ── fan-out with workers ───────────────────────────────────────────────────────────────────────────

/**
 * One room of ROOM members over FANOUT_WORKERS processes: FANOUT_WORKERS plain relays (one port each,
 * the publisher writes every message to each), then `livemux start --workers FANOUT_WORKERS` (the
 * publisher's session on one worker; the echo backend publishes once to each worker's stream).
 */
async function benchFanOut(options: ScaleBenchOptions): Promise<SystemResult[]> {
  const size = { clients: ROOM, processes: ROOM_PROCESSES, localAddresses: Array.from({ length: ROOM_PROCESSES }, (_, i) => `127.0.0.${SOURCES.room + i}`) };
  const relays = await Promise.all(Array.from({ length: FANOUT_WORKERS }, () => startProcess(join(DIST_BENCH, 'broadcast-plain-server.js'), [], (l) => l.event === 'listening')));
  const ports = relays.map((r) => r.line.port as number);
  const publishers = await Promise.all(ports.map(async (port) => framePublisher(await BenchConnection.connect(port))));
  const plain: Deployment = {
    wire: 'plain',
    port: ports[0]!,
    ports,
    processes: relays.map((r) => r.process),
    servers: relays.map((r, i) => ({ label: `relay ${i + 1}`, pid: r.line.pid as number })),
    publisher: everyOne(publishers),
  };
  const results = [await measure(`plain relays × ${FANOUT_WORKERS}`, plain, 'node', options.token, 1, size)];

  // The publisher sends without reading WINDOW_UPDATEs: a large client→proxy window keeps it legal.
  const lm = await options.startLivemux({ session_window: 1 << 30, connection_window: 1 << 30 }, { args: ['--workers', String(FANOUT_WORKERS)] });
  await ready(lm.adminPort);
  const workers = (await status(lm.adminPort)).perWorker;
  const conn = await BenchConnection.connect(lm.port);
  await conn.hello(options.token);
  if ((await conn.open('echo', 1)).refused > 0) throw new Error('scale: the publisher session was refused');
  const livemux: Deployment = {
    wire: 'livemux',
    port: lm.port,
    processes: [lm.proxy, lm.backend],
    servers: [{ label: 'primary', pid: lm.pid }, ...workers.map((w) => ({ label: `worker ${w.slot}`, pid: w.pid })), { label: 'backend', pid: childPid('echo-backend') }],
    publisher: framePublisher(conn, '/pub room '),
  };
  results.push(await measure(`livemux --workers ${FANOUT_WORKERS} + echo backend`, livemux, 'node', options.token, 1, size));
  return results;
}

/** A publisher that sends every message to each of `publishers`. */
function everyOne(publishers: Publisher[]): Publisher {
  return {
    send: (text) => publishers.forEach((p) => p.send(text)),
    sendAll: (texts) => publishers.forEach((p) => p.sendAll(texts)),
    close: () => publishers.forEach((p) => p.close()),
  };
}

// ── the admin port ─────────────────────────────────────────────────────────────────────────────────

interface Status {
  /** A worker that did not answer the primary in time has `error` and no counts. */
  perWorker: { slot: number; pid: number; connections?: number; error?: string }[];
}

async function status(adminPort: number): Promise<Status> {
  return (await (await fetch(`http://127.0.0.1:${adminPort}/status`)).json()) as Status;
}

/** Waits until /readyz says the proxy's backend streams are up. */
async function ready(adminPort: number): Promise<void> {
  for (let i = 0; i < 600; i++) {
    const res = await fetch(`http://127.0.0.1:${adminPort}/readyz`).catch(() => null);
    if (res?.status === 200) return;
    await sleep(100);
  }
  throw new Error('scale: proxy not ready within 60 s');
}

/** The primary's /metrics text, or null if it fails (a worker that does not answer fails the aggregation). */
async function metricsText(adminPort: number): Promise<string | null> {
  const res = await fetch(`http://127.0.0.1:${adminPort}/metrics`).catch(() => null);
  return res?.ok ? res.text() : null;
}

/** The value of a /metrics sample, `name` with its labels as printed (e.g. `x_total{type="PING"}`); null if absent. */
function sampleValue(text: string, sample: string): number | null {
  const line = text.split('\n').find((l) => l.startsWith(`${sample} `));
  return line ? Number(line.slice(sample.length + 1)) : null;
}

async function metric(adminPort: number, sample: string): Promise<number | null> {
  const text = await metricsText(adminPort);
  return text === null ? null : sampleValue(text, sample);
}

// ── report ─────────────────────────────────────────────────────────────────────────────────────────

const kb = (bytes: number): string => (Number.isFinite(bytes) ? `${(bytes / 1024).toFixed(2)} KB` : '–');
const verdict = (ok: boolean): string => (ok ? 'met' : '**missed**');

function holdReport(plain: Held, livemux: Held): string {
  const half = Math.floor(CONNECTIONS / 2);
  // Against the idle process, over every connection; and what one more costs, between the two waves.
  const average = (h: Held, group = 0): number => (h.rss.full[group]! - h.rss.idle[group]!) / CONNECTIONS;
  const marginal = (h: Held, group = 0): number => (h.rss.full[group]! - h.rss.half[group]!) / (CONNECTIONS - half);
  const target = (bytes: number): string => `${kb(bytes)} (≤ 6 KB: ${verdict(bytes <= 6 * 1024)})`;
  const workers = livemux.workers ?? [];
  const perWorker = workers.map((w, i) => workerCell(w, livemux.rss.full[i + 2]! - livemux.rss.idle[i + 2]!)).join('; ');
  const answered = workers.filter((w) => w.connections !== null);
  const heldCount = answered.reduce((n, w) => n + w.connections!, 0);
  const held =
    answered.length === workers.length
      ? `${fmt(heldCount)} of ${fmt(CONNECTIONS)}`
      : `${fmt(heldCount)} on the ${answered.length} of ${workers.length} workers that answered, of ${fmt(CONNECTIONS)}`;
  const pings = livemux.pingsPerSecond ?? NaN;
  const perConnection = (bytes: number): string => (Number.isFinite(bytes) ? kb(bytes / CONNECTIONS) : '–');
  const grown = (m: { idle: V8Memory | null; full: V8Memory | null } | undefined, unit: (bytes: number) => string): string => {
    const { idle: before, full: after } = m ?? {};
    if (!before || !after) return 'not read: the primary\'s /metrics did not answer (a worker did not)';
    const outside = (v: V8Memory): number => v.rss - v.heapTotal - v.external;
    return (
      `heap committed ${unit(after.heapTotal - before.heapTotal)} (used ${unit(after.heapUsed - before.heapUsed)}; young generation ${unit(after.newSpace - before.newSpace)}), ` +
      `external ${unit(after.external - before.external)}, outside V8 (sockets' native memory, malloc) ${unit(outside(after) - outside(before))}`
    );
  };
  const mb = (bytes: number): string => `${bytes < 0 ? '−' : '+'}${(Math.abs(bytes) / 2 ** 20).toFixed(1)} MB`;
  return [
    `### Connections held: ${fmt(CONNECTIONS)} over ${WORKERS} worker processes`,
    '',
    `Clients in ${2 * clientProcesses(half)} processes, each from its own 127.0.0.x, opening the connections in two waves of ${fmt(half)} (each wave's processes started on one signal, 64 connects in flight per process), ` +
      `each wave followed by ${IDLE_SECONDS} s of idling. RSS is each process's lowest reading (every 2 s) while idling: RSS holds the garbage of a connect burst until it is collected (by each worker's compaction once the wave has passed, or by V8 at a time of its choosing). ` +
      '*Average*: RSS with every connection against the settled idle process, over all connections. *Marginal*: the second wave against the first, over the second wave: what one more idle connection costs, apart from what the first ones cost once (compiled code, grown tables, a young generation sized by the burst). ' +
      'The *where … went* rows split the growth read at one moment after the last idle: a negative young generation there means the idle process still held the young generation its start-up grew (which flatters *average*; *marginal* is free of it).',
    '',
    `| measurement | plain Node TCP server, ${WORKERS} processes (node:cluster) | livemux --workers ${WORKERS} | notes |`,
    '| --- | --- | --- | --- |',
    `| connections accepted per second | ${fmt(plain.connectionsPerSecond)} | ${fmt(livemux.connectionsPerSecond)} | livemux: TCP + HELLO with a JWT of its own user + one OPEN → OPEN_OK; plain: TCP + one 8-byte round trip; livemux ${((livemux.connectionsPerSecond / plain.connectionsPerSecond) * 100).toFixed(0)} % of plain |`,
    `| RSS per connection, average (all processes) | ${kb(average(plain))} | ${target(average(livemux))} | livemux: one idle session each |`,
    `| RSS per connection, marginal (all processes) | ${kb(marginal(plain))} | ${target(marginal(livemux))} | |`,
    `| RSS per connection, each worker (average) | – | ${perWorker} | the primary, which keeps nothing per connection: ${kb(average(livemux, 1))} average, ${kb(marginal(livemux, 1))} marginal |`,
    `| connections open at the end (workers' /status) | – | ${held} | read with every client still connected |`,
    `| where the workers' RSS went, per connection | – | ${grown(livemux.v8?.workers, perConnection)} | /metrics and RSS read together after the last idle, against the idle workers (not collected first) |`,
    `| compacting collections after the waves (workers) | – | ${compactions(livemux.v8?.workers?.full)} | src/proxy/heap-compactor.ts: one full collection per worker once a wave of new connections has passed; what it costs is this pause of the worker's event loop |`,
    `| where the primary's RSS went | – | ${grown(livemux.v8?.primary, mb)} | the same, for the primary (it holds no connection: what a connect burst left) |`,
    `| most files open in one process while connecting | ${peakFiles(plain, 'primary')} | ${peakFiles(livemux, 'primary')} | read every 500 ms; a process may hold fewer than 20,000 here |`,
    `| CPU while idle | ${(plain.idleCpuShare * 100).toFixed(1)} % of a core | ${(livemux.idleCpuShare * 100).toFixed(1)} % of a core | livemux over ${IDLE_SECONDS} s at the default 25 s heartbeat: ${fmt(pings)} PINGs/s, ${pings > 0 ? `${((livemux.idleCpuShare * 1e6) / pings).toFixed(1)} µs` : '–'} of server CPU per PING + PONG |`,
  ].join('\n');
}

/** How many compactions the workers ran, and their mean pause. */
function compactions(v: V8Memory | null | undefined): string {
  if (!v) return 'not read';
  if (v.compactions === 0) return 'none';
  return `${v.compactions}, ${((v.compactionSeconds / v.compactions) * 1000).toFixed(0)} ms pause each on average`;
}

/** Peak open files: the first process's (`first`), then each worker's. */
function peakFiles(h: Held, first: string): string {
  const [primary, ...workers] = h.peakFiles;
  return `${first} ${fmt(primary ?? NaN)}; workers ${workers.map(fmt).join(', ')}`;
}

/** One worker's cell: its connections and RSS per connection, or why there is no figure. */
function workerCell(w: WorkerAtFull, grownBytes: number): string {
  if (w.replaced) return `w${w.slot}: died and was replaced during the run (no figure)`;
  if (w.connections === null) return `w${w.slot}: did not answer /status in time (RSS +${(grownBytes / 2 ** 20).toFixed(0)} MB)`;
  return `w${w.slot}: ${fmt(w.connections)} conns, ${w.connections > 0 ? kb(grownBytes / w.connections) : '–'}`;
}

function footprintReport({ bare, livemux }: Footprint): string {
  const total = (ks: HeapKind[]): number => ks.reduce((sum, k) => sum + k.bytes, 0);
  const bareByKind = new Map(bare.map((k) => [k.kind, k]));
  const shown = livemux.slice(0, FOOTPRINT_KINDS);
  const rest = total(livemux) - total(shown);
  const cell = (k: HeapKind | undefined): string => (k && Math.abs(k.bytes) >= 0.5 ? `${k.count.toFixed(2)} × → ${k.bytes.toFixed(0)} B` : '–');
  return [
    `### Where the bytes go: ${fmt(FOOTPRINT_CONNECTIONS)} idle connections on one process`,
    '',
    `JS heap per connection, from a heap snapshot before the connections and one after they idled ${IDLE_SNAPSHOT_MS / 1000} s (V8 collects garbage first), totalled by kind of object: ` +
      `a bare Node socket (the plain server) **${fmt(total(bare))} B**; livemux with one open session **${fmt(total(livemux))} B**. ` +
      `The ${FOOTPRINT_KINDS} largest kinds in livemux, beside the same kind for a bare socket (\`synthetic\` is the socket's native part as Node reports it; \`array:\` with no object count is the growth of tables shared by all connections). ` +
      'The heap is not all of RSS: the socket\'s native memory outside the heap, and V8\'s free space between objects, are in the RSS rows above.',
    '',
    '| kind (V8 node type: name) | bare socket: objects × → bytes per connection | livemux: objects × → bytes per connection |',
    '| --- | --- | --- |',
    ...shown.map((k) => `| \`${k.kind}\` | ${cell(bareByKind.get(k.kind))} | ${cell(k)} |`),
    `| every other kind | | ${fmt(rest)} B |`,
  ].join('\n');
}

function placementReport(placement: Placement[]): string {
  const row = (p: Placement): string => {
    const mean = PLACEMENT_CONNECTIONS / p.counts.length;
    const cv = Math.sqrt(p.counts.reduce((a, c) => a + (c - mean) ** 2, 0) / p.counts.length) / mean;
    const label = { rr: 'node:cluster round robin (SCHED_RR)', shared: 'node:cluster shared handle (SCHED_NONE)', least: 'livemux: least open connections' }[p.schedule];
    return `| ${label} | ${fmt(p.connectionsPerSecond)} | ${Math.min(...p.counts)}–${Math.max(...p.counts)} | ${(Math.max(...p.counts) / mean).toFixed(2)}× | ${cv.toFixed(2)} | ${p.primaryCpuUsPerConnection.toFixed(0)} µs |`;
  };
  return [
    `### Placement: ${fmt(PLACEMENT_CONNECTIONS)} connections onto ${WORKERS} workers of a plain server`,
    '',
    '| how connections are placed | connections/s | per worker | busiest / mean | coefficient of variation | primary CPU per connection |',
    '| --- | --- | --- | --- | --- | --- |',
    ...placement.map(row),
  ].join('\n');
}

function fanOutReport(fanOut: SystemResult[]): string {
  const peak = (r: SystemResult): number => r.peak.deliveries / STEP_SECONDS;
  const [relay, livemux] = fanOut as [SystemResult, SystemResult];
  const row = (r: SystemResult): string => {
    const cpu = r.peak.cpuUs.reduce((a, b) => a + b, 0) / r.peak.deliveries;
    return `| ${r.name} | ${fmt(peak(r))} | ${cpu.toPrecision(3)} µs | ${((peak(r) / peak(relay)) * 100).toFixed(1)} % | ${r.peak.rate.toFixed(1)}/s |`;
  };
  return [
    `### Fan-out with workers: one room of ${fmt(ROOM)} members over ${FANOUT_WORKERS} processes`,
    '',
    '| system | deliveries/s at peak | server CPU per delivery (all processes) | vs plain relays | peak room messages/s |',
    '| --- | --- | --- | --- | --- |',
    row(relay),
    row(livemux),
    '',
    `Target ≥ 80 % of the plain relays: ${verdict(peak(livemux) >= 0.8 * peak(relay))}.`,
  ].join('\n');
}

function passthroughReport(passthrough: PassthroughResult[]): string {
  const direct = passthrough.find((p) => p.via === 'direct')!;
  const livemux = passthrough.find((p) => p.via === 'livemux')!;
  const cpu = (ms: number): string => (Number.isNaN(ms) ? '–' : `${ms.toFixed(0)} ms`);
  // Every process's CPU per GiB, and how many of the machine's cores they kept busy together while streaming.
  const all = (p: PassthroughResult): number => p.clientCpuMsPerGiB + p.upstreamCpuMsPerGiB + (Number.isNaN(p.middleCpuMsPerGiB) ? 0 : p.middleCpuMsPerGiB);
  const row = (p: PassthroughResult): string =>
    `| ${p.via} | ${(p.streamBytesPerSecond / 2 ** 20).toFixed(0)} MiB/s | ${(p.streamBytesPerSecond / direct.streamBytesPerSecond).toFixed(2)}× | ${cpu(p.clientCpuMsPerGiB)} / ${cpu(p.middleCpuMsPerGiB)} / ${cpu(p.upstreamCpuMsPerGiB)} | ${cpu(all(p))} | ${((all(p) / 1000) * (p.streamBytesPerSecond / 2 ** 30)).toFixed(2)} | ${fmt(p.pingPongPerSecond)}/s | ${(p.pingPongPerSecond / direct.pingPongPerSecond).toFixed(2)}× | ${p.p50Ms.toFixed(3)} / ${p.p99Ms.toFixed(3)} ms | ${cpu(p.middleCpuMsPerKiloTrip)} |`;
  return [
    '### Passthrough: a tcp pool against the same traffic direct',
    '',
    '| path | 64 KiB-chunk stream | vs direct | CPU per GiB: client / middle / service | all processes per GiB | cores busy | 64 B ping-pong | vs direct | p50 / p99 | CPU in the middle per 1,000 round trips |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
    ...passthrough.map(row),
    '',
    `Target: streaming ≥ 0.75× direct: ${verdict(livemux.streamBytesPerSecond >= 0.75 * direct.streamBytesPerSecond)}.${passthrough.some((p) => p.via === 'haproxy') ? '' : ' (haproxy is not installed: `apt-get install haproxy` adds its row.)'}`,
  ].join('\n');
}

function fmt(n: number): string {
  return Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : '–';
}
