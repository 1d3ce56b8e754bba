import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { PACKAGE_ROOT } from '../src/paths.js';
import { mintToken } from '../src/proxy/auth.js';
import { type BenchProcess, type OutputLine, startProcess } from './processes.js';

/**
 * The "hostile clients" section (issue 8): each attack of the issue's table, run against the proxy as it
 * was before (commit 5ea229b, built in a temporary git worktree) and as it is now, both with their
 * default configuration, each attack on a fresh proxy and echo backend. For each: the proxy's peak RSS
 * (VmHWM), a canary client's echo latency during the attack (its own process, one message in flight
 * every 20 ms), and what the attacker got. Nothing here passes or fails.
 */
export const BASELINE_COMMIT = '5ea229b';
const DIST_BENCH = join(PACKAGE_ROOT, 'dist', 'bench');
/** Multiplies the attacks' sizes (bytes, connections); `BENCH_HOSTILE_SCALE=0.1` for a quick check. */
const SCALE = Number(process.env.BENCH_HOSTILE_SCALE ?? 1);
/** How long the canary keeps measuring after the attacker is done. */
const AFTERMATH_MS = 2_000;

/** The issue's rows, in its order, each with the attack that reproduces it (bench/hostile-attack.ts). */
const ROWS: { attack: string; what: string }[] = [
  { attack: 'ping-flood', what: '1. logged in, never reads, floods empty PINGs' },
  { attack: 'unknown-session-flood', what: '2. never reads, floods empty DATA to a session never opened' },
  { attack: 'pre-hello', what: '3. connections that never send HELLO, each a DATA header and its payload (1 MiB or 128 KiB)' },
  { attack: 'labels', what: '4. 200 OPENs with random 16 KB business names; 2,000 ERRORs with distinct codes' },
  { attack: 'connections', what: '5. many connections from 4 addresses, one token' },
  { attack: 'token-expiry', what: '6. a token that expires 4 s after login' },
  { attack: 'churn', what: '7. OPEN+RESET churn over 20 connections, one token' },
  { attack: 'fairness', what: '8. connections filling their windows with echo traffic, beside a light client' },
  { attack: 'identity', what: '9. an 11 KB sub, 11 KB of claims, exp = 1e300' },
  { attack: 'slow-consumer', what: 'issue 9 §8: a slow consumer that reads again 3 s after being closed' },
];

interface Build {
  label: string;
  root: string;
}

interface Outcome {
  peakRssMiB: number | null;
  canary: { answered: number; p99Ms: number | null; maxMs: number | null; lost: number; ending: string };
  got: string;
  proxyDied: boolean;
}

/** Runs every attack against both builds; returns the section's markdown. */
export async function benchHostile(secret: string): Promise<string> {
  const builds: Build[] = [
    { label: `before (${BASELINE_COMMIT})`, root: prepareBaseline() },
    { label: 'now', root: PACKAGE_ROOT },
  ];
  const lines = [
    `Each attack on a fresh proxy and echo backend, default configuration, sizes × ${SCALE}. Canary: a separate client process, one 6-byte echo in flight every 20 ms from before the attack until ${AFTERMATH_MS / 1000} s after it.`,
    '',
    '| attack (issue 8 row) | proxy | peak RSS | canary p99 / max | canary answered | what the attacker got |',
    '| --- | --- | --- | --- | --- | --- |',
  ];
  for (const row of ROWS) {
    for (const build of builds) {
      const o = await runAttack(build, row.attack, secret);
      const rss = o.peakRssMiB === null ? '—' : `${o.peakRssMiB.toFixed(0)} MiB${o.proxyDied ? ' (died)' : ''}`;
      const ms = (v: number | null): string => (v === null ? '—' : v.toFixed(1));
      const canary = `${ms(o.canary.p99Ms)} / ${ms(o.canary.maxMs)} ms`;
      const answered = `${o.canary.answered}${o.canary.lost ? `, lost (${o.canary.ending})` : ''}`;
      lines.push(`| ${row.what} | ${build.label} | ${rss} | ${canary} | ${answered} | ${o.got} |`);
      console.log(lines.at(-1));
    }
  }
  return lines.join('\n');
}

/** Starts backend, proxy and canary of `build`, runs the attack, and measures. Stops all it started. */
async function runAttack(build: Build, attack: string, secret: string): Promise<Outcome> {
  const env = { LIVEMUX_JWT_SECRET: secret };
  const bin = join(build.root, 'bin', 'livemux.js');
  const started: BenchProcess[] = [];
  try {
    const backend = await startProcess(bin, ['echo-backend', '--host', '127.0.0.1', '--port', '0'], (l) => l.event === 'listening', env);
    started.push(backend.process);
    const dir = mkdtempSync(join(tmpdir(), 'livemux-hostile-'));
    writeFileSync(
      join(dir, 'routes.yaml'),
      stringify({ version: 1, routes: [{ business: 'echo', pool: 'echo' }], pools: { echo: { protocol: 'grpc', endpoints: [{ address: `127.0.0.1:${backend.line.port}` }] } } }),
    );
    writeFileSync(join(dir, 'livemux.yaml'), stringify({ listen: { host: '127.0.0.1', port: 0 }, admin: { host: '127.0.0.1', port: 0 }, routes: './routes.yaml' }));
    const proxy = await startProcess(bin, ['start', '--config', join(dir, 'livemux.yaml')], (l) => l.msg === 'livemux listening', env);
    started.push(proxy.process);
    const { port, admin, pid } = proxy.line as { port: number; admin: number; pid: number };
    await waitReady(admin);
    const canaryToken = await mintToken({ secret, sub: 'canary' });
    const canary = await startProcess(join(DIST_BENCH, 'hostile-canary.js'), ['--port', String(port), '--token', canaryToken], (l) => l.event === 'canary ready', env);
    started.push(canary.process);
    const canaryDone = canary.process.next((l) => l.event === 'canary done', 600_000);
    const result = await startProcess(
      join(DIST_BENCH, 'hostile-attack.js'),
      ['--attack', attack, '--port', String(port), '--admin', String(admin), '--scale', String(SCALE)],
      (l) => l.event === 'attack done',
      env,
    ).then(
      (r) => r.line,
      (err: Error): OutputLine => ({ got: `attacker failed: ${err.message}` }),
    );
    // The canary runs on past the attack: a proxy still busy with what the attack left behind (queued
    // replies, buffered payloads) makes it wait then, after the attacker is gone.
    await new Promise((r) => setTimeout(r, AFTERMATH_MS));
    const peak = peakRssMiB(pid);
    canary.process.stop();
    const c = (await canaryDone) as unknown as Outcome['canary'];
    return { peakRssMiB: peak, canary: c, got: String(result.got), proxyDied: !existsSync(`/proc/${pid}`) };
  } finally {
    for (const p of started) p.stop();
  }
}

/** VmHWM of `pid` in MiB, or null when the process is gone. */
function peakRssMiB(pid: number): number | null {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    return Number(/^VmHWM:\s+(\d+) kB/m.exec(status)![1]) / 1024;
  } catch {
    return null;
  }
}

async function waitReady(adminPort: number): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const res = await fetch(`http://127.0.0.1:${adminPort}/readyz`).catch(() => null);
    if (res?.status === 200) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('proxy not ready');
}

/**
 * The proxy of commit 5ea229b, built once in a git worktree under the temp folder (or in
 * BENCH_BASELINE_DIR), sharing this checkout's node_modules (the dependencies did not change).
 */
function prepareBaseline(): string {
  const dir = process.env.BENCH_BASELINE_DIR ?? join(tmpdir(), `livemux-${BASELINE_COMMIT}`);
  if (existsSync(join(dir, 'dist', 'src', 'cli', 'main.js'))) return dir;
  if (!existsSync(dir)) execFileSync('git', ['-C', PACKAGE_ROOT, 'worktree', 'add', '--detach', dir, BASELINE_COMMIT], { stdio: 'inherit' });
  if (!existsSync(join(dir, 'node_modules'))) symlinkSync(join(PACKAGE_ROOT, 'node_modules'), join(dir, 'node_modules'));
  execFileSync(process.execPath, [join(PACKAGE_ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.build.json'], { cwd: dir, stdio: 'inherit' });
  return dir;
}
