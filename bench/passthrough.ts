import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { PACKAGE_ROOT } from '../src/paths.js';
import { stopped } from './broadcast.js';
import { cpuUs, startProcess } from './processes.js';

const DIST_BENCH = join(PACKAGE_ROOT, 'dist', 'bench');
const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const ROUNDS = 2;

/** What carries the bytes between the client and the legacy service. */
export type Via = 'direct' | 'haproxy' | 'livemux';

/** Mean results of one path. */
export interface PassthroughResult {
  via: Via;
  streamBytesPerSecond: number;
  pingPongPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  /** CPU time of the process in the middle (proxy or haproxy) per GiB streamed, ms; NaN for direct. */
  middleCpuMsPerGiB: number;
  /** The same for the client process (its measured seconds only) and the service. */
  clientCpuMsPerGiB: number;
  upstreamCpuMsPerGiB: number;
  /** The same per 1,000 ping-pong round trips, ms. */
  middleCpuMsPerKiloTrip: number;
}

/** A proxy routing business `legacy` to a tcp pool, as started by the bench's runner. */
export interface PassthroughProxy {
  port: number;
  pid: number;
  stop(): Promise<void>;
}

/**
 * The passthrough figures: a 64 KiB-chunk stream from a legacy service to the client, and 64 B
 * ping-pong (one at a time), straight to the service, through haproxy `mode tcp` when it is installed,
 * and through a livemux tcp pool; runs alternate between paths, ROUNDS times each, and means are kept.
 */
export async function benchPassthrough(token: string, startProxy: (upstream: string) => Promise<PassthroughProxy>): Promise<PassthroughResult[]> {
  const upstream = await startProcess(join(DIST_BENCH, 'passthrough-upstream.js'), [], (l) => l.event === 'listening');
  const upstreamAddress = `127.0.0.1:${upstream.line.port as number}`;
  const proxy = await startProxy(upstreamAddress);
  const haproxy = await startHaproxy(upstreamAddress);
  const paths: { via: Via; port: number; pid: number | null }[] = [
    { via: 'direct', port: upstream.line.port as number, pid: null },
    ...(haproxy ? [{ via: 'haproxy' as Via, port: haproxy.port, pid: haproxy.pid }] : []),
    { via: 'livemux', port: proxy.port, pid: proxy.pid },
  ];
  try {
    type Runs = { stream: number[]; pingPong: number[]; p50: number[]; p99: number[]; cpuPerGiB: number[]; clientCpuPerGiB: number[]; upstreamCpuPerGiB: number[]; cpuPerKiloTrip: number[] };
    const runs = new Map<Via, Runs>(
      paths.map(({ via }) => [via, { stream: [], pingPong: [], p50: [], p99: [], cpuPerGiB: [], clientCpuPerGiB: [], upstreamCpuPerGiB: [], cpuPerKiloTrip: [] }]),
    );
    const upstreamPid = upstream.line.pid as number;
    // CPU of the middle process and the service while the client runs (its warm-up second included, hence ×(1 + 1/SECONDS)).
    const cpuMs = async (pid: number | null, run: () => Promise<Record<string, unknown>>): Promise<[Record<string, unknown>, number, number]> => {
      const before = pid ? cpuUs(pid) : 0;
      const upstreamBefore = cpuUs(upstreamPid);
      const line = await run();
      return [line, pid ? (cpuUs(pid) - before) / 1000 : NaN, (cpuUs(upstreamPid) - upstreamBefore) / 1000];
    };
    for (let round = 0; round < ROUNDS; round++) {
      for (const { via, port, pid } of paths) {
        const r = runs.get(via)!;
        const [stream, streamCpu, upstreamCpu] = await cpuMs(pid, () => client(port, via, 'stream', token));
        const gib = ((stream.bytesPerSecond as number) * (SECONDS + 1)) / 2 ** 30;
        r.stream.push(stream.bytesPerSecond as number);
        r.cpuPerGiB.push(streamCpu / gib);
        r.upstreamCpuPerGiB.push(upstreamCpu / gib);
        r.clientCpuPerGiB.push(stream.clientCpuMsPerGiB as number);
        const [ping, pingCpu] = await cpuMs(pid, () => client(port, via, 'pingpong', token));
        r.pingPong.push(ping.roundTripsPerSecond as number);
        r.cpuPerKiloTrip.push(pingCpu / (((ping.roundTripsPerSecond as number) * (SECONDS + 1)) / 1000));
        r.p50.push(ping.p50Ms as number);
        r.p99.push(ping.p99Ms as number);
      }
    }
    const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
    return paths.map(({ via }) => {
      const r = runs.get(via)!;
      return {
        via,
        streamBytesPerSecond: mean(r.stream),
        pingPongPerSecond: mean(r.pingPong),
        p50Ms: mean(r.p50),
        p99Ms: mean(r.p99),
        middleCpuMsPerGiB: mean(r.cpuPerGiB),
        clientCpuMsPerGiB: mean(r.clientCpuPerGiB),
        upstreamCpuMsPerGiB: mean(r.upstreamCpuPerGiB),
        middleCpuMsPerKiloTrip: mean(r.cpuPerKiloTrip),
      };
    });
  } finally {
    haproxy?.stop();
    await proxy.stop();
    await stopped(upstream.process);
  }
}

async function client(port: number, via: Via, test: 'stream' | 'pingpong', token: string): Promise<Record<string, unknown>> {
  const args = ['--port', String(port), '--via', via, '--test', test, '--seconds', String(SECONDS), '--token', token];
  const { line } = await startProcess(join(DIST_BENCH, 'passthrough-client.js'), args, (l) => 'bytesPerSecond' in l || 'roundTripsPerSecond' in l);
  return line;
}

/** haproxy in `mode tcp` in front of `upstream`, or null when haproxy is not installed. */
async function startHaproxy(upstream: string): Promise<{ port: number; pid: number; stop(): void } | null> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'livemux-haproxy-'));
  const config = join(dir, 'haproxy.cfg');
  writeFileSync(
    config,
    [
      'global',
      '  maxconn 1000',
      'defaults',
      '  mode tcp',
      '  timeout connect 5s',
      '  timeout client 60s',
      '  timeout server 60s',
      'frontend passthrough',
      `  bind 127.0.0.1:${port}`,
      '  default_backend legacy',
      'backend legacy',
      `  server legacy ${upstream}`,
      '',
    ].join('\n'),
  );
  const child = spawn('haproxy', ['-db', '-f', config], { stdio: ['ignore', 'ignore', 'inherit'] });
  const missing = await new Promise<boolean>((resolve) => {
    child.once('error', () => resolve(true));
    child.once('spawn', () => resolve(false));
  });
  if (missing) return null;
  process.once('exit', () => child.kill('SIGKILL'));
  for (let i = 0; i < 100 && !(await accepts(port)); i++) await sleep(50);
  return { port, pid: child.pid!, stop: () => child.kill('SIGTERM') };
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ port, host: '127.0.0.1' }, () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((r) => server.close(r));
  return port;
}
