import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { PACKAGE_ROOT } from '../src/paths.js';
import { availableParallelism } from 'node:os';
import { Defaults, FrameType, Priority } from '../src/protocol/constants.js';
import { encodeData, encodeFrame } from '../src/protocol/encoder.js';
import { encodeHello, encodeOpen } from '../src/protocol/messages.js';
import { BenchConnection } from './bench-connection.js';
import { LatencyHistogram, clockMs, connectSocketIo, endMessage, probeMessage, roomMessage } from './broadcast-protocol.js';
import { buildNative } from './native.js';
import { PEAK_SEARCH, findPeak } from './peak-search.js';
import { type KernelTcp, kernelTcpForBench } from './kernel-tcp.js';
import { Turns } from './turns.js';
import { BenchProcess, type OutputLine, cpuUs, startProcess, statFields } from './processes.js';

/**
 * The broadcast bench (issues 4 and 14): one room of 10,000 receivers (in separate processes), 64-byte
 * messages published at a controlled rate, measured on each system in the same run (with native receivers
 * every pass of every system at once, their steps taking turns: see searchedAtOnce):
 * a relay written in C (epoll, one thread: the physical limit of this machine), the same relay in Node,
 * socket.io rooms, and livemux (proxy + echo backend, `/sub room` and `/pub room <text>`). For each: the
 * peak rate it keeps up with, the servers' CPU time per delivery and RSS at that rate, the machine's
 * busy share (who saturated), and the publish-to-receive latency at half the peak and at a fixed rate.
 *
 * The receivers come in two kinds, each a full pass over the systems:
 * - native (bench/native/broadcast-receiver.c), cheaper per delivery than any server, for the
 *   server-bound figures. The server under test (the relay, or livemux's proxy) gets core 0 to itself,
 *   and everything else (receivers, the publisher in this process, livemux's backend) the other cores
 *   (`taskset`), so a server that runs out of CPU has used exactly one core: its CPU per delivery at the
 *   peak is what a delivery costs it, its deliveries/s per core are literal, and no system gains from
 *   threads the others do not have.
 * - Node (bench/broadcast-clients.ts): what a Node client costs. Nothing is pinned; on 2 cores they
 *   compete with the server and take most of the machine.
 */
export const BROADCAST_CLIENTS = Number(process.env.BROADCAST_CLIENTS ?? 10_000);
/** Which receivers to run, in order (`BROADCAST_RECEIVERS=native,node`). */
const RECEIVER_KINDS = (process.env.BROADCAST_RECEIVERS ?? 'native,node').split(',') as ReceiverKind[];
/** Which systems to run, in that order (`BROADCAST_SYSTEMS=c,node,socketio,livemux`), for working on one of them or swapping their order. */
const SYSTEM_KEYS = (process.env.BROADCAST_SYSTEMS ?? 'c,node,socketio,livemux').split(',');
/** Cores of this machine, for shares of it. */
export const CORES = availableParallelism();
/**
 * Passes of every system with native receivers (`BROADCAST_REPEAT`, default 3), all searched at once (see
 * searchedAtOnce): the report gives each figure's median and how far the passes spread. The Node receivers run once.
 */
const REPEAT: Record<ReceiverKind, number> = { native: Number(process.env.BROADCAST_REPEAT ?? 3), node: 1 };
/** `BROADCAST_PEAKS=0` skips the peak searches: with native receivers, only the cost at equal coalescing. */
const PEAKS = process.env.BROADCAST_PEAKS !== '0';
/** `BROADCAST_BURSTS=0` skips the cost at equal coalescing (see interleavedBursts). */
const BURSTS = process.env.BROADCAST_BURSTS !== '0';
/** Receiver processes: a process holds fewer than 20,000 files; Node receivers need the parallelism. */
const CLIENT_PROCESSES: Record<ReceiverKind, number> = { native: 2, node: 4 };
/** Length of each step of the peak search's climb (and of its staircase with Node receivers). */
export const STEP_SECONDS = 4;
/**
 * Length of each staircase step (bench/peak-search.ts) and of the step at the peak, with native
 * receivers. A message's latency saws up and down by a round of writes (200–500 ms near a peak) with
 * where the rounds fall; the longer the step, the larger the growth that falling behind by 10 % makes
 * (PACE_SLACK) against that noise, and the more rounds the slope of latency averages: until 2026-12-04,
 * when the rule compared two one-second windows, 12 s steps made that growth five times a 4 s step's,
 * and a verdict near the peak that much less of a toss (8 s steps, until 2026-12-03, three times). The
 * climb keeps 4 s steps, far from the
 * peak but its last one; so do the Node receivers' single pass, and issue 12's relays (bench/scale.ts),
 * whose figures divide by STEP_SECONDS.
 */
export const EDGE_STEP_SECONDS = 12;
/**
 * First rate of the climb with native receivers: every system has kept pace at 2,560 messages/s there
 * in every run since they came (2026-12-03), so the climb starts five doublings below it rather than at
 * the Node receivers' 5/s (socket.io peaks near 8/s), saving five steps a search; a system that misses
 * it is searched by halving.
 */
export const NATIVE_START_RATE = 80;
/**
 * Length of each latency step. At half a coalescing server's peak a round of writes to the room takes
 * 100–150 ms, and p99 is decided by the slowest one or two rounds of the step: over 8 s (until
 * 2026-12-04) the C relay's own p99 there moved 238–516 ms between passes of one run, and livemux's
 * ratio to the Node relay 0.60–1.24× between runs; 16 s gives the quantile twice the rounds.
 */
export const LATENCY_SECONDS = 16;
/**
 * `BROADCAST_RATE=<messages/s>`: no peak search, only BROADCAST_RATE_STEPS steps (default 10) of
 * LATENCY_SECONDS at that rate per system, each logged with its latency quantiles and when it started
 * after the room filled; no section is written. For looking into one system's latency at one load
 * (issue 14: what sets livemux's tail at half the peak) in a minute or two per system. With native
 * receivers the systems' steps take turns as the searches' do (searchedAtOnce): run one after the
 * other, livemux alone at 3,100/s had p99 274–291 ms in one run and 354–440 in two others
 * (2026-12-04 20:04–20:11), more than the gap between systems.
 */
export const ONE_RATE = Number(process.env.BROADCAST_RATE ?? 0);
const ONE_RATE_STEPS = Number(process.env.BROADCAST_RATE_STEPS ?? 10);
/**
 * The fixed rate (room messages/s) every system's latency is also measured at, so that latency is
 * compared at the same load, not at each system's own half peak. Systems whose peak is below it skip it.
 */
export const FIXED_RATE = 100;
/**
 * Cost at equal coalescing, with native receivers (`bursts` in the report, see interleavedBursts):
 * BURST_ROUNDS bursts per system of BURST_MESSAGES room messages, each sent by the publisher as one
 * write, BURST_PERIOD_MS apart, the systems' bursts alternating (n systems: one every
 * BURST_PERIOD_MS / n, longer than any relay's or livemux's round over the room, 100–200 ms at
 * 10,000 members). Every server then writes each burst to each receiver as one write, so its CPU per
 * delivery compares the servers' cost per write and per byte with the coalescing taken out; at the peak, a server whose rounds take longer also packs more messages
 * into each write, which flatters its CPU per delivery there.
 */
export const BURST_MESSAGES = 100;
const BURST_PERIOD_MS = 1_000;
/**
 * Bursts per system: one heartbeat interval of livemux (it runs with the default) of them, and as long
 * idle before them: receivers connected within a second or two get their PINGs together, once per
 * interval, so a window of one interval holds exactly one such wave whenever it starts, and the idle
 * cost taken out of the bursts' is theirs (a shorter window holds one wave or none). Each system's
 * bursts stay BURST_PERIOD_MS apart however many alternate: its CPU over the window then holds as much
 * idle work (livemux's heartbeats) per delivery as when measured alone.
 */
const BURST_ROUNDS = Math.round(Defaults.heartbeatIntervalMs / BURST_PERIOD_MS);
/** Bursts per system before the first pass of them, not measured (see interleavedBursts). */
const WARMUP_BURSTS = 3;
/**
 * A step keeps pace when every receiver got every message and, at the median sampled receiver, latency
 * grew by at most PACE_SLACK of the step's time less its first and last seconds (bench/broadcast-protocol.ts,
 * lagGrowth: the least-squares slope of latency over send time from the second second on): 200 ms in a
 * 4 s step, 1,000 ms in a 12 s one. A system that keeps up has a steady latency, however long its path
 * (a proxy with a backend hop has a longer one than a relay); one that falls behind by a share f of the
 * pace gets later by f × that time, so the bound catches 10 %. The first second is left out: a
 * pipeline fills then.
 */
export const PACE_SLACK = 0.1;
/** The latency growth a step of `publishMs` may show (PACE_SLACK), at least that of a 4 s step. */
export function paceSlackMs(publishMs: number): number {
  return PACE_SLACK * Math.max(publishMs - 2000, 2000);
}
/** A step is clearly saturated when receivers got its messages at less than this share of the pace. */
const SATURATED_PACE = 0.7;
/**
 * TCP segments lost in one step (machine-wide, see lostSegments) from which the step's room is replaced
 * before the next step (see roomSpoiled). Kept steps near the edge lose up to a few thousand; after a
 * step that lost 10,000 or more, steps missed at rates kept before and after, for several steps (the
 * runs of 2026-12-03 16:37–17:35: after a 7,241/s step that lost 197,542, livemux missed 6,640, 6,089,
 * 5,583 and 4,695/s in a row and then kept 5,583/s). Until 2026-12-04 the rule counted every segment
 * retransmitted, tail-loss probes too: with tcp_mem raised those are most of them (see tcpRetransmits),
 * and in the run of record of 11:26, 87 of the 109 staircase steps retransmitted 10,000 or more and
 * replaced their room, the kernel having dropped nothing in the whole run.
 */
export const SPOILING_LOSSES = 10_000;

/**
 * Segments a step lost: those it retransmitted other than tail-loss probes (StepResult.tcpRetransmits),
 * which a sender whose ACK is late sends whether or not anything was lost, and which on this machine
 * were spurious (a DSACK came back for each). A probe that found a real loss is not counted: the
 * retransmissions by fast recovery and timeouts that a lost flight causes are.
 */
export function lostSegments(step: Pick<StepResult, 'tcpRetransmits' | 'tcpLossProbes'>): number {
  return Math.max(0, step.tcpRetransmits - step.tcpLossProbes);
}

/** Far behind the pace: messages lost, a receiver late or closed, or the step received at well under its pace. */
export function saturated(step: StepResult): boolean {
  return step.late || step.missing > 0 || step.closed > 0 || step.publishMs < SATURATED_PACE * step.receiveMs;
}

/**
 * Whether a step leaves its room unfit for the next one: saturated (a server holds a backlog per
 * receiver, or closed some: livemux's SLOW_CONSUMER, the relays' --max-backlog), or the kernel dropped
 * SPOILING_LOSSES segments or more: the connections that lost segments come out of it
 * with their congestion state cut back, and the next steps on them miss at rates kept on a fresh room.
 * The TCP memory itself is not what lingers (a wait for it to fall after such a step, tried 2026-12-03,
 * never had to wait).
 */
export function roomSpoiled(step: StepResult): boolean {
  return saturated(step) || lostSegments(step) >= SPOILING_LOSSES;
}
/**
 * A step's receivers report within 3 × its publish time + 15 s when they keep anywhere near pace. One
 * that falls far behind gets BACKLOG_MS more to drain its backlog: the step is then marked as not
 * keeping pace (it is a measurement, not a failure of the run), and the next step starts on a new room.
 * A receiver process silent beyond that fails the step the same way (its room is replaced): in a
 * collapse under the machine's TCP memory pressure, connections that lost segment after segment wait
 * out retransmission timeouts that double each time, and one such room of the run of 2026-12-03 22:30
 * was still silent after 231 s, which ended the run there (a receiver that is broken is silent in every
 * room, and the log shows it step after step).
 */
const BACKLOG_MS = 180_000;
const DIST_BENCH = join(PACKAGE_ROOT, 'dist', 'bench');
/** Receive windows the native livemux receivers offer in HELLO: credit never limits a bounded run. */
const NATIVE_WINDOW = 1 << 30;

export type ReceiverKind = 'native' | 'node';
/** What the receivers speak: livemux frames from a relay (no handshake), socket.io, or livemux itself. */
type Wire = 'plain' | 'socketio' | 'livemux';

/** A livemux proxy (pid `pid`, clients on `port`) routing business "echo" to an echo backend. */
export interface LivemuxUnderTest {
  proxy: BenchProcess;
  backend: BenchProcess;
  port: number;
  pid: number;
  adminPort: number;
}

/** One step at a fixed offered rate. */
export interface StepResult {
  /** Offered room messages per second. */
  rate: number;
  /** The step kept pace (see PACE_SLACK). */
  ok: boolean;
  /** Some receiver reported only after the step's deadline, from its backlog, or not at all (see BACKLOG_MS). */
  late: boolean;
  /** Receiver processes that had not reported when the step gave up on them (their figures are not in it). */
  silent: number;
  /** How long the publisher took, first message to end message. */
  publishMs: number;
  /** The median sampled receiver's time, first message to end message. */
  receiveMs: number;
  /** The median sampled receiver's latency growth over the step (see PACE_SLACK). */
  lagGrowthMs: number;
  missing: number;
  /** Receivers whose connection the server closed since the room filled (livemux's SLOW_CONSUMER, far behind the pace). */
  closed: number;
  deliveries: number;
  /** CPU time of each measured server process, from the first message until the last end message arrived. */
  cpuUs: number[];
  /** CPU time of the receivers' processes, from their previous report to this step's. */
  receiverCpuUs: number;
  /** Wall time of the window the servers' CPU time is read over. */
  wallMs: number;
  /** The whole machine over that window (/proc/stat): share of all cores busy, and stolen by the hypervisor. */
  machineBusy: number;
  machineSteal: number;
  /**
   * TCP segments the machine retransmitted over the window (/proc/net/snmp, RetransSegs). Loopback loses
   * nothing by itself; two things retransmit on it. With the kernel's own tcp_mem, drops: a room behind
   * the pace queues megabytes per socket, the machine's TCP memory reaches the pressure mark, and the
   * kernel prunes receive queues (TcpExtTCPRcvQDrop), tens of thousands of retransmissions a second, each
   * a stall for its connection. With tcp_mem raised (bench/kernel-tcp.ts), tail-loss probes: a sender
   * whose ACK is late on a busy machine resends its last segment, and the receiver, which had it, answers
   * with a DSACK (C relay at 6,934/s, three 12 s steps, 2026-12-04 12:45: 66,614 segments retransmitted,
   * 66,629 loss probes, 66,611 DSACKs received, no drop). Those cost a segment each, not a stall.
   */
  tcpRetransmits: number;
  /** Of those, tail-loss probes (/proc/net/netstat, TCPLossProbes; see lostSegments). */
  tcpLossProbes: number;
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
  /** The peak search's steps: the climb's, then the staircase's from `edgeFrom` on (bench/peak-search.ts). */
  steps: StepResult[];
  edgeFrom: number;
  /** The staircase's rates whose geometric mean is the peak rate, the next one it would run last (PeakEstimate.rates). */
  peakRates: number[];
  /** The staircase ran out of steps before its finest stride's (PeakEstimate.cutShort). */
  cutShort: boolean;
  /** One more step at the peak rate: every "at the peak" figure is of it, kept pace or not. */
  peak: StepResult;
  /** LATENCY_SECONDS at half the peak rate. */
  half: StepResult;
  /** LATENCY_SECONDS at FIXED_RATE; null when the peak is below it. */
  fixed: StepResult | null;
}

/** One system's cost at equal coalescing in one pass (see interleavedBursts). */
export interface BurstCost {
  name: string;
  /** The measured server processes, as in SystemResult. */
  servers: string[];
  /** BURST_ROUNDS bursts of BURST_MESSAGES. */
  bursts: StepResult;
  /**
   * CPU time each server spends per second with every receiver in the room and nothing published
   * (heartbeats, timers), measured at the start of the pass.
   */
  idleCpuUsPerS: number[];
}

/** The passes over the systems with one kind of receivers. */
export interface BroadcastRun {
  receivers: ReceiverKind;
  processes: number;
  /** passes[p][s]: pass p of system s (the systems in the same order in every pass); none with BROADCAST_PEAKS=0. */
  passes: SystemResult[][];
  /** bursts[p][s]: cost at equal coalescing, pass p of system s (native receivers, socket.io left out); else none. */
  bursts: BurstCost[][];
  /** The kernel's TCP settings for the run (bench/kernel-tcp.ts). */
  kernel: Pick<KernelTcp, 'metricsCacheOff' | 'memory' | 'memoryRaised'>;
}

export interface Publisher {
  send(text: string): void;
  /** Sends every message of `texts` in one write (one socket.io event each: no such write there). */
  sendAll(texts: string[]): void;
  close(): void;
}

/** One system running: its server processes (with the pids to measure), where receivers connect, the publisher. */
export interface Deployment {
  wire: Wire;
  port: number;
  /** When the room spans several servers (one port each): client process i connects to `ports[i % n]`. */
  ports?: number[];
  processes: BenchProcess[];
  /** The measured processes; the first is the one under test (pinned to its own core with native receivers). */
  servers: { label: string; pid: number }[];
  publisher: Publisher;
  /** livemux's admin port (its /metrics), for the fan-out delay in BROADCAST_RATE steps. */
  adminPort?: number;
}

/** How big a room {@link measure} fills, in how many client processes, from which source addresses. */
export interface RoomSize {
  clients: number;
  processes: number;
  /** Client process i connects from `localAddresses[i % n]` (one address has ~28,000 ports per server port). */
  localAddresses?: string[];
}

interface System {
  key: string;
  name: string;
  wire: Wire;
  /** Starts the system; livemux's proxy heartbeats every `heartbeatMs` (the relays send none). */
  deploy: (heartbeatMs: number) => Promise<Deployment>;
}

/**
 * livemux's heartbeat interval in the peak searches with native receivers, where every system's room
 * stays up while the others take their turns (see searchedAtOnce): 270 s, what mobile IM clients use to
 * keep a NAT mapping (WeChat's ~4.5 minutes). At the default 25 s an idle proxy PINGs its 10,000 silent
 * receivers 400 times a second (4–5 % of a core with their PONGs), and a room waiting for its turn must
 * cost the one on its turn nothing. The relays send no heartbeats at all; what livemux's default costs
 * is measured in the bursts, which keep it ("idle").
 */
export const SEARCH_HEARTBEAT_MS = 270_000;

/**
 * Runs every system per kind of receivers (native first: the server-bound figures, REPEAT passes searched
 * at once; Node receivers one system after the other); every process it starts has exited when it returns.
 */
export async function benchBroadcast(token: string, startLivemux: (heartbeatMs: number) => Promise<LivemuxUnderTest>): Promise<BroadcastRun[]> {
  const relay = buildNative('broadcast-relay');
  const systems: System[] = [
    { key: 'c', name: 'C relay (epoll), writes coalesced per loop turn', wire: 'plain', deploy: () => deployRelay(relay, true) },
    { key: 'node', name: 'Node relay, writes coalesced per tick', wire: 'plain', deploy: () => deployRelay(join(DIST_BENCH, 'broadcast-plain-server.js'), false) },
    { key: 'socketio', name: 'socket.io rooms', wire: 'socketio', deploy: () => deploySocketIo() },
    { key: 'livemux', name: 'livemux proxy + echo backend', wire: 'livemux', deploy: (heartbeatMs) => deployLivemux(() => startLivemux(heartbeatMs), token) },
  ];
  const kernel = kernelTcpForBench();
  const runs: BroadcastRun[] = [];
  try {
    for (const receivers of RECEIVER_KINDS) {
      // A socket.io client in C would be a websocket and engine.io client: socket.io keeps Node receivers.
      const measured = SYSTEM_KEYS.flatMap((key) => systems.filter((s) => s.key === key && !(receivers === 'native' && s.wire === 'socketio')));
      const passes = !PEAKS ? [] : receivers === 'native' ? await searchedAtOnce(measured, token) : await searchedInTurn(measured, receivers, token);
      const bursts = receivers === 'native' && BURSTS ? await interleavedBursts(measured, token, REPEAT.native) : [];
      runs.push({ receivers, processes: CLIENT_PROCESSES[receivers], passes, bursts, kernel });
    }
  } finally {
    kernel.restore();
  }
  return runs;
}

/**
 * Every pass of every system with native receivers, all at once: one deployment and room per system,
 * shared by its passes, and every search's steps taking turns (bench/turns.ts) in a fixed rotation
 * (pass 1's systems in the order given, then pass 2's, ...), so that every pass of every system samples
 * the same minutes of the machine. One system after the other, a pass every 15–20 minutes, the
 * machine's level moved every system's peak by up to a fifth within a run (2026-12-04 13:57: the C
 * relay 73.3 / 60.1 / 69.3 M, the Node relay 68.9 / 51.2 / 67.2 M, pass 2 slow for all), far more than
 * the searches' own spread. The server under test of the turn's owner has core 0 to itself; the other
 * systems' servers wait on the other cores beside every room's receivers, their rooms silent
 * (SEARCH_HEARTBEAT_MS). Returns results[pass][system].
 */
async function searchedAtOnce(systems: System[], token: string): Promise<SystemResult[][]> {
  const rest = `1-${CORES - 1}`;
  const turns = new Turns<Deployment>((owner, members) => {
    for (const d of members) if (d !== owner) pin(d.servers[0]!.pid, rest);
    pin(owner.servers[0]!.pid, '0');
  });
  const stages: Stage[] = [];
  try {
    for (const system of systems) {
      const stage = new Stage(system.name, await system.deploy(SEARCH_HEARTBEAT_MS), 'native', token, fullRoom('native'), turns);
      stages.push(stage);
      await stage.open();
    }
    // Every search asks for its first turn before any await: the rotation is in this order.
    const searches = Array.from({ length: REPEAT.native }, (_, p) => stages.map((stage) => search(stage, p + 1)));
    const searched = await Promise.all(searches.map((pass) => Promise.all(pass)));
    // Latency once every search has ended, pass by pass, the systems one right after the other: at one
    // load, the three systems' p99 moved together from 220–297 to 424–537 ms within four minutes
    // (3,100 messages/s, 2026-12-04 20:13, their steps taking turns), while each search ends when its
    // staircase does, so that latency right after it compared different minutes of the machine.
    const results: SystemResult[][] = [];
    for (const [p, pass] of searched.entries()) {
      const row: SystemResult[] = [];
      for (const [i, stage] of stages.entries()) row.push(await withLatency(stage, pass[i]!, p + 1));
      results.push(row);
    }
    return results;
  } finally {
    for (const stage of stages) await stage.close();
  }
}

/** The passes one system after the other, each with its own deployment and room (Node receivers). */
async function searchedInTurn(systems: System[], receivers: ReceiverKind, token: string): Promise<SystemResult[][]> {
  const passes: SystemResult[][] = [];
  for (let pass = 1; pass <= REPEAT[receivers]; pass++) {
    const results: SystemResult[] = [];
    for (const system of systems) results.push(await measure(system.name, await system.deploy(Defaults.heartbeatIntervalMs), receivers, token, pass));
    passes.push(results);
  }
  return passes;
}

/**
 * Starts a relay (Node script, or native executable) that prints its port and pid, and connects a
 * publisher. The relay closes a receiver with more than livemux's outbound queue bound waiting for it,
 * as livemux does (the bench's livemux runs with the default bound).
 */
async function deployRelay(script: string, native: boolean): Promise<Deployment> {
  const args = ['--max-backlog', String(Defaults.outboundQueueBytes)];
  const server = await startProcess(script, args, (l) => l.event === 'listening', {}, { native });
  const { port, pid } = server.line as { port: number; pid: number };
  const publisher = framePublisher(await BenchConnection.connect(port));
  return { wire: 'plain', port, processes: [server.process], servers: [{ label: 'server', pid }], publisher };
}

async function deploySocketIo(): Promise<Deployment> {
  const server = await startProcess(join(DIST_BENCH, 'broadcast-socketio-server.js'), [], (l) => l.event === 'listening');
  const { port, pid } = server.line as { port: number; pid: number };
  return { wire: 'socketio', port, processes: [server.process], servers: [{ label: 'server', pid }], publisher: await socketIoPublisher(port) };
}

async function deployLivemux(start: () => Promise<LivemuxUnderTest>, token: string): Promise<Deployment> {
  const livemux = await start();
  const conn = await BenchConnection.connect(livemux.port);
  await conn.hello(token);
  if ((await conn.open('echo', 1)).refused > 0) throw new Error('broadcast: the publisher session was refused');
  return {
    wire: 'livemux',
    port: livemux.port,
    processes: [livemux.proxy, livemux.backend],
    servers: [
      { label: 'proxy', pid: livemux.pid },
      { label: 'backend', pid: childPid('echo-backend') },
    ],
    publisher: framePublisher(conn, '/pub room '),
    adminPort: livemux.adminPort,
  };
}

/** Emits each message as a `pub` event, which the server emits to the room. */
async function socketIoPublisher(port: number): Promise<Publisher> {
  const socket = await connectSocketIo(port, { role: 'publisher' });
  return {
    send: (text) => socket.emit('pub', text),
    sendAll: (texts) => texts.forEach((text) => socket.emit('pub', text)),
    close: () => socket.close(),
  };
}

/** Publishes each message as one DATA frame (HIGH) on session 1, after `prefix`. */
export function framePublisher(conn: BenchConnection, prefix = ''): Publisher {
  const frame = (text: string): Buffer => encodeData(1, Priority.HIGH, Buffer.from(prefix + text));
  return {
    send: (text) => conn.socket.write(frame(text)),
    sendAll: (texts) => conn.socket.write(Buffer.concat(texts.map(frame))),
    close: () => conn.close(),
  };
}

/** `size.processes` receiver processes of `kind` for `deployment`, `size.clients` in all. */
function startReceivers(kind: ReceiverKind, deployment: Deployment, token: string, size: RoomSize): BenchProcess[] {
  const common = (i: number): string[] => {
    const port = deployment.ports?.[i % deployment.ports.length] ?? deployment.port;
    return ['--mode', deployment.wire, '--port', String(port), '--count', String(size.clients / size.processes)];
  };
  if (kind === 'node') {
    return Array.from({ length: size.processes }, (_, i) => {
      const local = size.localAddresses?.[i % size.localAddresses.length];
      const args = [...common(i), '--token', token];
      return new BenchProcess(join(DIST_BENCH, 'broadcast-clients.js'), local ? [...args, '--local', local] : args);
    });
  }
  const extra: string[] = [];
  if (deployment.wire === 'livemux') {
    // HELLO (large windows) and OPEN of session 1 at connect; `/sub room` once OPEN_OK arrives.
    const hello = encodeFrame(FrameType.HELLO, 0, 0, encodeHello({ versions: [1], token, sessionWindow: NATIVE_WINDOW, connectionWindow: NATIVE_WINDOW }));
    const open = encodeFrame(FrameType.OPEN, 0, 1, encodeOpen({ business: 'echo', metadata: {} }));
    const sub = encodeData(1, Priority.HIGH, Buffer.from('/sub room'));
    extra.push('--window', String(NATIVE_WINDOW), '--hello', Buffer.concat([hello, open]).toString('hex'), '--sub', sub.toString('hex'));
  }
  const binary = buildNative('broadcast-receiver');
  return Array.from({ length: size.processes }, (_, i) => new BenchProcess(binary, [...common(i), ...extra], {}, { native: true }));
}

/** The bench's room with `kind` receivers: BROADCAST_CLIENTS over CLIENT_PROCESSES[kind] processes. */
function fullRoom(kind: ReceiverKind): RoomSize {
  return { clients: BROADCAST_CLIENTS, processes: CLIENT_PROCESSES[kind] };
}

/**
 * One deployment's room of receivers, which every step runs on, replaced after a step that spoils it.
 * Its steps are turns of `turns`, whose other members are the other systems' stages (searchedAtOnce).
 */
class Stage {
  private clients: BenchProcess[] = [];
  private room: Room | undefined;
  /** The rate of the step that spoiled the room just replaced (0: the room has had its warm-up). */
  private spoiledAt = 0;
  /** RSS of each server once the first room filled. */
  idleRssBytes: number[] = [];

  constructor(
    readonly name: string,
    readonly deployment: Deployment,
    readonly receivers: ReceiverKind,
    private readonly token: string,
    private readonly size: RoomSize,
    private readonly turns = new Turns<Deployment>(),
  ) {}

  /** Fills the first room, as a turn. */
  async open(): Promise<void> {
    this.turns.join(this.deployment);
    await this.turns.take(this.deployment, () => this.fill());
    this.idleRssBytes = this.deployment.servers.map((s) => memory(s.pid).rssBytes);
  }

  /** Stops the receivers and the deployment, as a turn. */
  close(): Promise<void> {
    return this.turns.take(this.deployment, async () => {
      await close(this.deployment, this.clients);
      this.turns.leave(this.deployment);
    });
  }

  /** Runs `work` (steps of this stage) as one turn. */
  turn<T>(work: () => Promise<T>): Promise<T> {
    return this.turns.take(this.deployment, work);
  }

  /** One step as a turn of its own. */
  run(rate: number, seconds: number, what: string): Promise<StepResult> {
    return this.turn(() => this.step(rate, seconds, what));
  }

  /**
   * One step, inside a turn; a step that leaves its room spoiled (roomSpoiled) is followed by new
   * receivers in a new room: a server that closed receivers leaves a room every later step would fail
   * (in the run of 2026-12-03 16:37, livemux after the climb's 10,240/s failed every step down to
   * 538/s), and one that lost tens of thousands of segments leaves one that misses rates kept before.
   */
  async step(rate: number, seconds: number, what: string): Promise<StepResult> {
    if (this.spoiledAt > 0) {
      // The first step on a new room has a longer tail than the next ones (at 3,000 messages/s, 2026-12-03
      // 19:18–20:00: p99 424–605 ms in the first step after the fill, in 7 rooms of 7, against 229–399 in the quiet steps after,
      // the Node relay and livemux alike): a step at half the rate, not measured, comes first. Half of the
      // lower of this step and the one that spoiled the room: half of a climb's next step is the spoiling
      // rate itself, and in a livemux pass of 2026-12-03 21:26 that warm-up spoiled the new room again.
      logStep(`${what}, warming the new room up (not measured)`, await this.room!.step(Math.min(rate, this.spoiledAt) / 2, STEP_SECONDS));
      this.spoiledAt = 0;
    }
    const step = await this.room!.step(rate, seconds);
    logStep(what, step);
    if (roomSpoiled(step)) {
      const why = step.closed > 0 ? `the server closed ${step.closed} receivers` : saturated(step) ? 'the step was far behind' : `${lostSegments(step)} TCP segments lost`;
      const start = clockMs();
      await Promise.all(this.clients.map(stopped));
      await this.fill();
      this.spoiledAt = rate;
      console.error(`broadcast: ${what}: ${why}: a new room replaced it in ${((clockMs() - start) / 1000).toFixed(1)} s`);
    }
    return step;
  }

  private async fill(): Promise<void> {
    this.clients = startReceivers(this.receivers, this.deployment, this.token, this.size);
    if (this.receivers === 'native') pinServerAlone(this.deployment, this.clients);
    this.room = new Room(this.deployment, this.clients, this.size.clients);
    await this.room.fill();
  }
}

/** Fills a room of `size` on `deployment`, finds its peak and measures latency at half of it; stops every process of it. */
export async function measure(
  name: string,
  deployment: Deployment,
  receivers: ReceiverKind,
  token: string,
  pass: number,
  size: RoomSize = fullRoom(receivers),
): Promise<SystemResult> {
  const stage = new Stage(name, deployment, receivers, token, size);
  try {
    await stage.open();
    return await withLatency(stage, await search(stage, pass), pass);
  } finally {
    await stage.close();
  }
}

/** A pass's peak search, before its latency steps (see withLatency). */
type Searched = Omit<SystemResult, 'half' | 'fixed' | 'peakRssBytes'>;

/** One pass on `stage`: its peak search and the step at the peak (or BROADCAST_RATE's steps). */
async function search(stage: Stage, pass: number): Promise<Searched> {
  const { name, deployment, receivers } = stage;
  const label = passLabel(stage, pass);
  const servers = deployment.servers.map((s) => s.label);
  const steps: StepResult[] = [];
  if (ONE_RATE > 0) {
    const filled = clockMs();
    for (let i = 0; i < ONE_RATE_STEPS; i++) {
      const at = ((clockMs() - filled) / 1000).toFixed(1);
      const before = await fanOutDelays(deployment);
      steps.push(await stage.run(ONE_RATE, LATENCY_SECONDS, `${label}, at ${ONE_RATE} messages/s, ${at} s after the room filled`));
      if (before) console.error(`broadcast: ${label}: the proxy's fan-out delay in that step (a Publish's arrival from the backend to the end of the walk that brought it to every member): ${describeDelays(before, (await fanOutDelays(deployment))!)}`);
    }
    return { name, servers, idleRssBytes: stage.idleRssBytes, steps, edgeFrom: steps.length, peakRates: [], cutShort: false, peak: steps.at(-1)! };
  }
  let edgeFrom = -1;
  const edgeSeconds = receivers === 'native' ? EDGE_STEP_SECONDS : STEP_SECONDS;
  const startRate = receivers === 'native' ? NATIVE_START_RATE : PEAK_SEARCH.startRate;
  const found = await findPeak(async (rate, edge) => {
    if (edge && edgeFrom < 0) edgeFrom = steps.length;
    const step = await stage.run(rate, edge ? edgeSeconds : STEP_SECONDS, label);
    steps.push(step);
    return { rate, ok: step.ok, saturated: saturated(step) };
  }, { ...PEAK_SEARCH, startRate });
  const peak = await stage.run(found.rate, edgeSeconds, `${label}, at the peak`);
  return { name, servers, idleRssBytes: stage.idleRssBytes, steps, edgeFrom: edgeFrom < 0 ? steps.length : edgeFrom, peakRates: found.rates, cutShort: found.cutShort, peak };
}

/**
 * A searched pass's latency at half its peak and at FIXED_RATE, in one turn (none with BROADCAST_RATE).
 * The half-peak step follows a step at that rate that is not measured: the step before is at another
 * rate, often on a new room (the peak step spoiled the old one), and a first step at a rate has the
 * longer tail (at 2,936 messages/s, 2026-12-04 05:48, three rooms each, five 8 s steps in a row:
 * livemux's p99 291–384 ms in the first step and 208–220 in the four after; the Node relay's 285–297,
 * then 196–234).
 */
async function withLatency(stage: Stage, searched: Searched, pass: number): Promise<SystemResult> {
  const label = passLabel(stage, pass);
  const rate = searched.peak.rate;
  const { half, fixed } =
    ONE_RATE > 0
      ? { half: searched.peak, fixed: null }
      : await stage.turn(async () => {
          await stage.step(rate / 2, STEP_SECONDS, `${label}, at half the peak before its latency (not measured)`);
          const half = await stage.step(rate / 2, LATENCY_SECONDS, `${label}, latency at half the peak`);
          const fixed = rate >= FIXED_RATE ? await stage.step(FIXED_RATE, LATENCY_SECONDS, `${label}, latency at ${FIXED_RATE} messages/s`) : null;
          return { half, fixed };
        });
  return { ...searched, peakRssBytes: stage.deployment.servers.map((s) => memory(s.pid).hwmBytes), half, fixed };
}

function passLabel(stage: Stage, pass: number): string {
  return `${stage.name}, ${stage.receivers} receivers, pass ${pass}`;
}

/** livemux's livemux_fanout_delay_seconds buckets (upper bound in s → cumulative count); null for a relay. */
async function fanOutDelays(deployment: Deployment): Promise<Map<number, number> | null> {
  if (deployment.adminPort === undefined) return null;
  const text = await (await fetch(`http://127.0.0.1:${deployment.adminPort}/metrics`)).text();
  const buckets = new Map<number, number>();
  for (const m of text.matchAll(/^livemux_fanout_delay_seconds_bucket\{[^}]*le="([^"]+)"[^}]*\} (\d+)/gm)) buckets.set(m[1] === '+Inf' ? Infinity : Number(m[1]), Number(m[2]));
  return buckets;
}

/** p50 / p99 / largest bucket of the Publishes counted between two readings of fanOutDelays. */
function describeDelays(before: Map<number, number>, after: Map<number, number>): string {
  const bounds = [...after.keys()].sort((a, b) => a - b);
  const count = (le: number): number => after.get(le)! - (before.get(le) ?? 0);
  const total = count(Infinity);
  const quantile = (q: number): string => {
    const le = bounds.find((b) => count(b) >= q * total);
    return le === undefined || le === Infinity ? `> ${bounds.at(-2)! * 1000} ms` : `≤ ${le * 1000} ms`;
  };
  return `${total} Publishes, p50 ${quantile(0.5)}, p99 ${quantile(0.99)}`;
}

/** Stops the receivers, then the deployment's processes; unpins this process. */
async function close(deployment: Deployment, clients: BenchProcess[]): Promise<void> {
  await Promise.all(clients.map(stopped));
  deployment.publisher.close();
  await Promise.all(deployment.processes.map(stopped));
  pin(process.pid, ALL_CPUS);
}

/**
 * Cost at equal coalescing (see BURST_MESSAGES), `passes` times, every system at once: each has its
 * own room of native receivers, and the bursts alternate between the systems (BURST_PERIOD_MS / n
 * apart), so that whatever else the machine does (other processes, the hypervisor, the core's caches and
 * clock) falls on every system alike. Measured one system after the other, the systems' figures moved
 * 13–21 % between passes of a quiet run (2026-12-03 09:45), each with its own minute of the machine,
 * and so did their ratios to the C relay (livemux's proxy 1.19–1.65×); alternated (locked run of
 * 11:29, under a changing load), every system moved with the machine, together, and the ratios held
 * within 2 % (livemux's proxy 1.37–1.39×). Each pass reads the
 * servers' idle CPU first, all at once over one heartbeat interval (see BURST_ROUNDS), then
 * BURST_ROUNDS bursts per system. Returns costs[pass][system]. socket.io writes every message on its
 * own (no coalescing to take out): it is left out.
 */
async function interleavedBursts(systems: System[], token: string, passes: number): Promise<BurstCost[][]> {
  const coalescing = systems.filter((s) => s.wire !== 'socketio');
  const rooms: { deployment: Deployment; clients: BenchProcess[]; room: Room }[] = [];
  try {
    for (const system of coalescing) {
      const deployment = await system.deploy(Defaults.heartbeatIntervalMs);
      const clients = startReceivers('native', deployment, token, fullRoom('native'));
      rooms.push({ deployment, clients, room: new Room(deployment, clients, BROADCAST_CLIENTS) });
      // Every server on core 0 (only the one bursting at a time is busy), everything else on the others.
      pinServerAlone(deployment, clients);
      await rooms.at(-1)!.room.fill();
    }
    const costs: BurstCost[][] = [];
    const n = rooms.length;
    const alternating = (rounds: number): Promise<StepResult[]> =>
      Promise.all(rooms.map(({ room }, i) => room.bursts(BURST_MESSAGES, rounds, BURST_PERIOD_MS, (i * BURST_PERIOD_MS) / n)));
    // Not measured: the servers' first bursts run code not yet optimized, and the rooms just filled
    // leave work behind (an idle reading right after the fill, 2,000 receivers: livemux's backend at
    // 3.2 ms/s, more than it then spent per second of bursts).
    await alternating(WARMUP_BURSTS);
    for (let pass = 1; pass <= passes; pass++) {
      const idle = await Promise.all(rooms.map(({ room }) => room.idleCpu(BURST_ROUNDS * BURST_PERIOD_MS)));
      const bursts = await alternating(BURST_ROUNDS);
      bursts.forEach((b, i) => logStep(`${coalescing[i]!.name}, native receivers, pass ${pass}, ${BURST_ROUNDS} bursts of ${BURST_MESSAGES} messages, interleaved`, b));
      costs.push(rooms.map(({ deployment }, i) => ({ name: coalescing[i]!.name, servers: deployment.servers.map((s) => s.label), bursts: bursts[i]!, idleCpuUsPerS: idle[i]! })));
    }
    return costs;
  } finally {
    for (const { deployment, clients } of rooms) await close(deployment, clients);
  }
}

const ALL_CPUS = `0-${CORES - 1}`;

/**
 * Core 0 for the process under test, every other core for everything else (this process, which
 * publishes, the receivers, the other server processes). With one core there is nothing to split.
 */
function pinServerAlone(deployment: Deployment, clients: BenchProcess[]): void {
  if (CORES < 2) return;
  const [underTest, ...others] = deployment.servers;
  const rest = `1-${CORES - 1}`;
  pin(underTest!.pid, '0');
  for (const pid of [process.pid, ...others.map((s) => s.pid), ...clients.map((c) => c.pid)]) pin(pid, rest);
}

/** Sets the CPU affinity of every thread of `pid` (threads started later inherit it). */
function pin(pid: number, cpus: string): void {
  if (CORES < 2) return;
  execFileSync('taskset', ['--all-tasks', '--cpu-list', '--pid', cpus, String(pid)], { stdio: 'ignore' });
}

/** One progress line on stderr per step: a run takes minutes. */
function logStep(name: string, step: StepResult): void {
  const { rate, ok, late, publishMs, receiveMs, lagGrowthMs, missing, latency, cpuUs, receiverCpuUs, deliveries, machineBusy } = step;
  const cpu = [...cpuUs, receiverCpuUs].map((us) => (us / deliveries).toPrecision(3)).join(' + ');
  const pace = `published in ${publishMs.toFixed(0)} ms, received in ${receiveMs.toFixed(0)} ms, latency grew ${lagGrowthMs.toFixed(0)} ms, ${missing} missing${step.silent > 0 ? `, ${step.silent} receiver processes silent after the deadline` : late ? ', a receiver reported after the deadline' : ''}`;
  const cores = [...cpuUs, receiverCpuUs].map((us) => (us / 1000 / step.wallMs).toFixed(2)).join(' + ');
  const cost = `p50 ${latency.quantile(0.5).toFixed(1)} ms, p99 ${latency.quantile(0.99).toFixed(1)} ms, CPU µs/delivery ${cpu}, cores ${cores} (servers + receivers), machine ${(machineBusy * 100).toFixed(0)} % busy, ${step.tcpRetransmits} TCP segments retransmitted (${step.tcpLossProbes} loss probes)`;
  console.error(`broadcast: ${name}: ${rate.toFixed(1)} messages/s ${ok ? 'kept pace' : 'fell behind'} (${pace}; ${cost})`);
}

/** The room of one deployment: runs numbered phases and collects the receivers' reports. */
class Room {
  private phase = 0;
  private published = 0;

  constructor(
    private readonly deployment: Deployment,
    private readonly clients: BenchProcess[],
    private readonly members: number,
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
    const reports = Promise.all(this.reports(phase, 60_000));
    publisher.send(endMessage(phase, this.published));
    await reports;
  }

  /** Publishes at `rate` for `seconds`, then the end message; resolves once every receiver has seen it. */
  step(rate: number, seconds: number): Promise<StepResult> {
    const total = Math.max(1, Math.round(rate * seconds));
    return this.window(rate, total, async (phase, start) => {
      let sent = 0;
      while (sent < total) {
        // Every message due by now, then yield for ~1 ms: paced evenly, in small bursts at high rates.
        const due = Math.min(total, Math.floor(((clockMs() - start) / 1000) * rate) + 1);
        for (; sent < due; sent++) this.deployment.publisher.send(roomMessage(phase));
        await sleep(1);
      }
    });
  }

  /**
   * Each server's CPU time per second over `ms` with nothing published: what it spends whatever the
   * traffic (livemux: heartbeats to silent receivers, its timers), which the bursts' figures include.
   */
  async idleCpu(ms: number): Promise<number[]> {
    const { servers } = this.deployment;
    const before = servers.map((s) => cpuUs(s.pid));
    const start = clockMs();
    await sleep(ms);
    const seconds = (clockMs() - start) / 1000;
    return servers.map((s, i) => (cpuUs(s.pid) - before[i]!) / seconds);
  }

  /**
   * `rounds` bursts of `size` messages, each sent as one write, `periodMs` apart, the first `offsetMs`
   * after the window opens (for rooms whose bursts alternate); then the end message.
   */
  bursts(size: number, rounds: number, periodMs: number, offsetMs = 0): Promise<StepResult> {
    return this.window((size * 1000) / periodMs, size * rounds, async (phase, start) => {
      for (let r = 0; r < rounds; r++) {
        await sleep(start + offsetMs + r * periodMs - clockMs());
        this.deployment.publisher.sendAll(Array.from({ length: size }, () => roomMessage(phase)));
      }
    });
  }

  /**
   * One measured phase: `publish` sends `total` room messages at `rate` on average; the end message
   * goes when the next one would be due. Resolves once every receiver has reported the phase.
   */
  private async window(rate: number, total: number, publish: (phase: number, start: number) => Promise<void>): Promise<StepResult> {
    const { publisher, servers } = this.deployment;
    const phase = ++this.phase;
    const publishMs = (total / rate) * 1000;
    const deadlineMs = 3 * publishMs + 15_000;
    const reports = Promise.allSettled(this.reports(phase, deadlineMs + BACKLOG_MS));
    const before = servers.map((s) => cpuUs(s.pid));
    const machineBefore = machineTicks();
    const tcpBefore = tcpCounters();
    const start = clockMs();
    await publish(phase, start);
    this.published += total;
    // The end message goes when the next room message would be due, not right behind the last one:
    // a receiver keeping pace then gets it publishMs after its first message, whatever a fan-out takes.
    await sleep(start + publishMs - clockMs());
    publisher.send(endMessage(phase, this.published));
    const settled = await reports;
    // Silent is alive and quiet; a receiver process that died is a broken run, and says why.
    const died = settled.find((r, i): r is PromiseRejectedResult => r.status === 'rejected' && this.clients[i]!.exitedUnasked);
    if (died) throw died.reason;
    const lines = settled.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
    const silent = settled.length - lines.length;
    const after = servers.map((s) => cpuUs(s.pid));
    const wallMs = clockMs() - start;
    const late = wallMs > deadlineMs || silent > 0;
    const machine = machineTicks();
    const latency = new LatencyHistogram();
    for (const l of lines) latency.merge(l.histogram as number[]);
    const sum = (key: string): number => lines.reduce((n, l) => n + (l[key] as number), 0);
    const missing = sum('missing');
    const closed = sum('closed');
    const median = (key: string): number => {
      const values = lines.flatMap((l) => l[key] as number[]).sort((a, b) => a - b);
      return values[Math.floor(values.length / 2)] ?? NaN;
    };
    const receiveMs = median('receiveMs');
    // Too few messages after the first second for a slope (the slowest rates): the whole step's time instead.
    const lagGrowthMs = Number.isNaN(median('lagGrowthMs')) ? receiveMs - publishMs : median('lagGrowthMs');
    return {
      rate,
      // A step its receivers took far longer to get than it took to publish has not kept pace, whatever
      // the slope of its latency.
      // Medians hide one receiver process far behind the others: its late report fails the step too.
      ok: !late && missing === 0 && closed === 0 && lagGrowthMs <= paceSlackMs(publishMs) && publishMs >= SATURATED_PACE * receiveMs,
      late,
      silent,
      publishMs,
      receiveMs,
      lagGrowthMs,
      missing,
      closed,
      deliveries: total * this.members - missing,
      cpuUs: after.map((a, i) => a - before[i]!),
      receiverCpuUs: sum('cpuUs'),
      wallMs,
      machineBusy: (machine.busy - machineBefore.busy) / (machine.total - machineBefore.total),
      machineSteal: (machine.steal - machineBefore.steal) / (machine.total - machineBefore.total),
      ...tcpSince(tcpBefore),
      latency,
    };
  }

  /** Every client process's report on `phase`. */
  private reports(phase: number, timeoutMs: number): Promise<OutputLine>[] {
    return this.clients.map((c) => c.next((l) => l.event === 'phase' && l.phase === phase, timeoutMs));
  }
}

/** Sends SIGTERM and resolves once the process has exited (or after 10 s; the bench's exit kills it then). */
export async function stopped(p: BenchProcess): Promise<void> {
  const exited = p.next(() => false, 10_000).catch(() => {});
  p.stop();
  await exited;
}

/** Clock ticks of the whole machine since boot (/proc/stat): busy (user, system, interrupts), stolen, in all. */
function machineTicks(): { busy: number; steal: number; total: number } {
  const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!;
  const [user, nice, system, idle, iowait, irq, softirq, steal] = line.trim().split(/\s+/).slice(1).map(Number) as number[];
  const busy = user! + nice! + system! + irq! + softirq!;
  return { busy, steal: steal!, total: busy + idle! + iowait! + steal! };
}

type TcpCounters = Pick<StepResult, 'tcpRetransmits' | 'tcpLossProbes'>;

/** TCP segments the machine has retransmitted since boot (/proc/net/snmp, RetransSegs), and its tail-loss probes (/proc/net/netstat). */
function tcpCounters(): TcpCounters {
  return { tcpRetransmits: procCounter('/proc/net/snmp', 'Tcp:', 'RetransSegs'), tcpLossProbes: procCounter('/proc/net/netstat', 'TcpExt:', 'TCPLossProbes') };
}

function tcpSince(before: TcpCounters): TcpCounters {
  const now = tcpCounters();
  return { tcpRetransmits: now.tcpRetransmits - before.tcpRetransmits, tcpLossProbes: now.tcpLossProbes - before.tcpLossProbes };
}

/** A counter of a /proc/net table: a line of names after `prefix`, then a line of values after it. */
function procCounter(file: string, prefix: string, name: string): number {
  const [names, values] = readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.startsWith(prefix))
    .map((l) => l.split(/\s+/));
  return Number(values?.[names?.indexOf(name) ?? -1]);
}

/** Resident memory of a process now, and its high-water mark. */
export function memory(pid: number): { rssBytes: number; hwmBytes: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string): number => Number(new RegExp(`${field}:\\s+(\\d+)`).exec(status)?.[1]) * 1024;
  return { rssBytes: kb('VmRSS'), hwmBytes: kb('VmHWM') };
}

/** Pid of the most recently started child of this process whose command line contains `needle`. */
export function childPid(needle: string): number {
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
