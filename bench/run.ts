import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { stringify } from 'yaml';
import { PACKAGE_ROOT } from '../src/paths.js';
import { mintToken } from '../src/proxy/auth.js';
import { broadcastReport } from './broadcast-report.js';
import { type LivemuxUnderTest, ONE_RATE, benchBroadcast } from './broadcast.js';
import { benchCodec } from './codec.js';
import { benchHostile } from './hostile.js';
import { type BenchProcess, type OutputLine, startProcess } from './processes.js';
import { benchReload, type ReloadResult, type ReloadTarget } from './reload.js';
import { type EchoFigure, benchIm, measureEcho } from './im.js';
import { benchPickers } from './routing.js';
import { benchPush, pushReport } from './push.js';
import { benchScale } from './scale.js';

/**
 * `npm run bench`: every figure the issues ask for, measured side by side in one run on this machine,
 * printed as tables and written to BENCHMARKS.md, one section each: core (codec, routing, echo,
 * reload), im (issue 10), broadcast (issues 4 and 14), push (issue 11), hostile (issue 8) and scale (issue 12).
 * `BENCH_ONLY=<section>` runs one section.
 * Not a test: nothing here passes or fails on time.
 */
const SECRET = 'bench-secret-0123456789abcdef0123456789';
const DIST = join(PACKAGE_ROOT, 'dist');
const BIN = join(PACKAGE_ROOT, 'bin', 'livemux.js');
const ECHO_SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const ROUNDS = 2;
/** Sessions held open during the reload bench: connections × the default limits.max_sessions (64). */
const HELD_CONNS = 157;
const HELD_PER_CONN = 64;
const RELOAD_TRIALS = 7;

interface Row {
  what: string;
  value: string;
  note: string;
}

/** Starts `node script args` with the bench's JWT secret; resolves with its first line that satisfies `ready`. */
function start(
  script: string,
  args: string[],
  ready: (l: OutputLine) => boolean,
  env: NodeJS.ProcessEnv = {},
): Promise<{ process: BenchProcess; line: OutputLine }> {
  return startProcess(script, args, ready, { LIVEMUX_JWT_SECRET: SECRET, ...env });
}

async function echoLoad(port: number, mode: 'proxy' | 'plain', token: string): Promise<{ roundTripsPerSecond: number; p50Ms: number; p99Ms: number }> {
  const args = ['--port', String(port), '--mode', mode, '--seconds', String(ECHO_SECONDS), '--token', token];
  return (await start(join(DIST, 'bench', 'echo-load.js'), args, (l) => 'roundTripsPerSecond' in l)).line as never;
}

/** What runs a proxy in front of an echo backend, for the echo, reload and broadcast benches. */
interface Livemux extends LivemuxUnderTest {
  adminPort: number;
  routesFile: string;
  routes: ReloadTarget['routes'];
}

/** More of a bench's proxy: `livemux start` arguments (e.g. `--workers`), routes and pools beside "echo". */
export interface LivemuxExtras {
  args?: string[];
  /** Environment of the proxy process (e.g. NODE_OPTIONS). */
  env?: NodeJS.ProcessEnv;
  routes?: { business: string; pool: string }[];
  pools?: Record<string, object>;
  /** The config file's `timeouts` (e.g. heartbeat_interval_ms). */
  timeouts?: Record<string, number>;
}

/** Starts an echo backend and a proxy routing business "echo" to it, with `limits` in its config file. */
async function startLivemux(limits: Record<string, number>, extras: LivemuxExtras = {}): Promise<Livemux> {
  const { process: backend, line } = await start(BIN, ['echo-backend', '--host', '127.0.0.1', '--port', '0'], (l) => l.event === 'listening');
  const dir = mkdtempSync(join(tmpdir(), 'livemux-bench-'));
  const routes = {
    version: 1,
    routes: [{ business: 'echo', pool: 'echo' }, ...(extras.routes ?? [])],
    pools: { echo: { protocol: 'grpc', endpoints: [{ address: `127.0.0.1:${line.port}` }] }, ...extras.pools },
  };
  writeFileSync(join(dir, 'routes.yaml'), stringify(routes));
  writeFileSync(join(dir, 'livemux.yaml'), stringify({
    listen: { host: '127.0.0.1', port: 0 },
    admin: { host: '127.0.0.1', port: 0 },
    routes: './routes.yaml',
    log: { level: 'info' },
    limits,
    ...(extras.timeouts ? { timeouts: extras.timeouts } : {}),
    // The load generators are one user (the bench token) on one address: the limits a public listener
    // needs against many connections and OPENs of one user would refuse them.
    connections: { max: 1_000_000, max_per_address: 1_000_000, max_per_user: 1_000_000, max_handshakes: 1_000_000 },
    users: { open_rate: 1_000_000, open_burst: 1_000_000 },
  }));
  const proxy = await start(BIN, ['start', '--config', join(dir, 'livemux.yaml'), ...(extras.args ?? [])], (l) => l.msg === 'livemux listening', extras.env);
  await sleep(500); // let the proxy's backend stream come up
  const { port, admin, pid } = proxy.line as { port: number; admin: number; pid: number };
  return { proxy: proxy.process, backend, port, adminPort: admin, pid, routesFile: join(dir, 'routes.yaml'), routes };
}

async function main(): Promise<void> {
  const only = process.env.BENCH_ONLY;
  const command = only ? `BENCH_ONLY=${only} npm run bench` : 'npm run bench';
  const token = await mintToken({ secret: SECRET, sub: 'bench' });
  const run = (section: string): boolean => only === undefined || only === section;
  if (run('core')) writeSection('core', command, table(await benchCore(token)));
  if (run('im')) writeSection('im', command, await benchIm(SECRET, () => echoFigure(token)));
  if (run('broadcast')) {
    // The publisher sends without reading WINDOW_UPDATEs: a large client→proxy window keeps it legal.
    const livemux = (heartbeatMs: number): Promise<Livemux> =>
      startLivemux({ session_window: 1 << 30, connection_window: 1 << 30 }, { timeouts: { heartbeat_interval_ms: heartbeatMs } });
    const runs = await benchBroadcast(token, livemux);
    // One fixed rate (BROADCAST_RATE) is a look at latency, not a run of record: its steps are logged only.
    if (ONE_RATE === 0) writeSection('broadcast', command, broadcastReport(runs));
  }
  if (run('push')) writeSection('push', command, pushReport(await benchPush(SECRET)));
  if (run('hostile')) writeSection('hostile', command, await benchHostile(SECRET));
  if (run('scale')) writeSection('scale', command, await benchScale({ token, secret: SECRET, startLivemux }));
  process.exit(0);
}

/** The proxy + echo backend round-trip rate, for the IM section's ratio (the core section's load, one run). */
async function echoFigure(token: string): Promise<EchoFigure> {
  const livemux = await startLivemux({});
  try {
    const args = ['--port', String(livemux.port), '--mode', 'proxy', '--seconds', String(ECHO_SECONDS), '--token', token];
    return await measureEcho(args, { proxy: livemux.proxy.pid, backend: livemux.backend.pid }, SECRET);
  } finally {
    livemux.proxy.stop();
    livemux.backend.stop();
  }
}

/** Codec, routing, echo and reload figures. Stops the processes it started. */
async function benchCore(token: string): Promise<Row[]> {
  const rows: Row[] = [];
  for (const size of [64, 1024]) {
    for (const r of benchCodec(size)) {
      const target = r.name === 'decode 64 B' ? 'target ≥ 2,000,000/s on one core' : '';
      rows.push({ what: `${r.name} frames`, value: `${fmt(r.framesPerSecond)} frames/s`, note: target });
    }
  }
  for (const r of benchPickers()) {
    const what = `${r.policy} picks, ${r.endpoints} endpoints`;
    rows.push({ what, value: `${fmt(r.picksPerSecond)} picks/s`, note: 'one core, all endpoints healthy' });
  }

  // The reload bench opens 64 sessions on each of its connections at once.
  const livemux = await startLivemux({ open_reset_rate: 10_000 });
  const plain = await start(join(DIST, 'bench', 'plain-echo-server.js'), [], (l) => l.event === 'listening');

  const plainRuns = [];
  const proxyRuns = [];
  for (let i = 0; i < ROUNDS; i++) {
    plainRuns.push(await echoLoad(plain.line.port as number, 'plain', token));
    proxyRuns.push(await echoLoad(livemux.port, 'proxy', token));
  }
  const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
  const plainRate = mean(plainRuns.map((r) => r.roundTripsPerSecond));
  const proxyRate = mean(proxyRuns.map((r) => r.roundTripsPerSecond));
  const load = `64 conns × 4 sessions, 64 B, ${ROUNDS} × ${ECHO_SECONDS} s alternated`;
  rows.push({ what: 'plain TCP echo round trips', value: `${fmt(plainRate)}/s`, note: `${load}; p99 ${plainRuns.at(-1)!.p99Ms.toFixed(2)} ms` });
  rows.push({ what: 'proxy + echo backend round trips', value: `${fmt(proxyRate)}/s`, note: `same load; p99 ${proxyRuns.at(-1)!.p99Ms.toFixed(2)} ms` });
  rows.push({ what: 'proxy / plain echo ratio', value: `${((proxyRate / plainRate) * 100).toFixed(1)} %`, note: 'target ≥ 40 %' });

  const { proxy, port, adminPort, routesFile, routes } = livemux;
  const target: ReloadTarget = { proxy, port, adminPort, token, routesFile, routes };
  const idle = await benchReload(target, 'idle', RELOAD_TRIALS);
  const loadArgs = ['--port', String(target.port), '--conns', String(HELD_CONNS), '--sessions', String(HELD_PER_CONN), '--token', token];
  const held = await start(join(DIST, 'bench', 'sessions-load.js'), loadArgs, (l) => l.event === 'sessions open');
  if (held.line.refused !== 0) throw new Error(`sessions-load: ${held.line.refused} OPENs refused`);
  const busy = await benchReload(target, 'busy', RELOAD_TRIALS);
  held.process.stop();
  rows.push(reloadRow(busy, `target < 100 ms; ${RELOAD_TRIALS} editor-style saves (temp file + rename)`));
  rows.push(reloadRow(idle, 'same trials, for comparison'));
  for (const p of [livemux.proxy, livemux.backend, plain.process]) p.stop();
  return rows;
}

function table(rows: Row[]): string {
  return ['| measurement | result | notes |', '| --- | --- | --- |', ...rows.map((r) => `| ${r.what} | ${r.value} | ${r.note} |`)].join('\n');
}

/** One table row for a reload run: median and max delay, sessions open per the proxy's /status. */
function reloadRow(r: ReloadResult, note: string): Row {
  const sorted = [...r.delaysMs].sort((a, b) => a - b);
  const median = sorted[Math.floor(sorted.length / 2)]!;
  const sessions = r.sessionsBefore === r.sessionsAfter ? fmt(r.sessionsBefore) : `${fmt(r.sessionsBefore)} → ${fmt(r.sessionsAfter)}`;
  return {
    what: `routes.yaml write → in effect, ${sessions} sessions open`,
    value: `median ${median} ms, max ${sorted.at(-1)} ms`,
    note: `${note}; trigger ${r.triggers.join('/')}`,
  };
}

/** Prints `body` and replaces the section `name` of BENCHMARKS.md with it (appended if absent). */
function writeSection(name: string, command: string, body: string): void {
  console.log(`\n${body}\n`);
  const file = join(PACKAGE_ROOT, 'BENCHMARKS.md');
  const begin = `<!-- bench:${name}:begin -->`;
  const end = `<!-- bench:${name}:end -->`;
  const section = `${begin}\nMeasured ${new Date().toISOString().slice(0, 10)} by \`${command}\` (node ${process.version}, ${cpuName()}).\n\n${body}\n${end}`;
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    text = `# Benchmarks\n\nProduced by \`npm run bench\`; every ratio is measured side by side in the same run.\n\n${begin}\n${end}\n`;
  }
  const i = text.indexOf(begin);
  const j = text.indexOf(end);
  text = i >= 0 && j > i ? text.slice(0, i) + section + text.slice(j + end.length) : `${text}\n${section}\n`;
  writeFileSync(file, text);
}

function cpuName(): string {
  const model = readFileSync('/proc/cpuinfo', 'utf8').match(/model name\s*:\s*(.*)/)?.[1] ?? 'unknown CPU';
  return `${model.trim()}, ${availableParallelism()} cores`;
}

function fmt(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

await main();
