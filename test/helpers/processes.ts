import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { stringify } from 'yaml';
import { afterAll, beforeAll } from 'vitest';
import { mintToken } from '../../src/proxy/auth.js';
import { spawnTied } from './tied-spawn.js';

const ROOT = join(import.meta.dirname, '..', '..');
/**
 * The livemux binary the tests run: this checkout's, or another build's through `LIVEMUX_TEST_BIN`, to
 * show a test fails on older code (e.g. the adversarial suite against the commit before issue 8).
 */
const BIN = process.env.LIVEMUX_TEST_BIN ?? join(ROOT, 'bin', 'livemux.js');

export const TEST_SECRET = 'integration-test-secret-0123456789abcdef';

/** A child process started by a test, with its parsed JSON stdout lines. */
export interface RunningProcess {
  readonly child: ChildProcess;
  readonly lines: Record<string, unknown>[];
  /** Resolves with the exit code (or signal name) when the process ends. */
  readonly exited: Promise<number | string>;
  /** What the process wrote on stderr so far. */
  stderr(): string;
  /** Resolves with the first JSON line for which `match` is true. */
  waitFor(match: (line: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>;
  stop(signal?: NodeJS.Signals): Promise<number | string>;
}

/**
 * Runs `livemux <args>` from the built package (tests run after `npm run build`). `env` is laid over
 * this process's environment (a key set to undefined is removed); `cwd` is where it runs.
 */
export function runLivemux(args: string[], env: NodeJS.ProcessEnv = {}, cwd?: string): RunningProcess {
  const merged: NodeJS.ProcessEnv = { ...process.env, LIVEMUX_JWT_SECRET: TEST_SECRET, ...env };
  for (const key of Object.keys(merged)) if (merged[key] === undefined) delete merged[key];
  // A test that fails before its afterAll must not leave processes behind: they die with the test process.
  const child = spawnTied(process.execPath, [BIN, ...args], { env: merged, stdio: ['ignore', 'pipe', 'pipe'], ...(cwd ? { cwd } : {}) });
  const lines: Record<string, unknown>[] = [];
  const waiters: { match: (l: Record<string, unknown>) => boolean; resolve: (l: Record<string, unknown>) => void }[] = [];
  createInterface({ input: child.stdout! }).on('line', (text) => {
    let line: Record<string, unknown>;
    try {
      line = JSON.parse(text) as Record<string, unknown>;
    } catch {
      line = { text };
    }
    lines.push(line);
    for (const w of [...waiters]) {
      if (w.match(line)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(line);
      }
    }
  });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | string>((resolve) =>
    child.once('exit', (code, signal) => resolve(code ?? signal ?? 'unknown')),
  );
  return {
    child,
    lines,
    exited,
    stderr: () => stderr,
    waitFor(match, timeoutMs = 30_000) {
      const found = lines.find(match);
      if (found) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`livemux ${args[0]}: no matching output within ${timeoutMs} ms\nstderr: ${stderr}\nstdout: ${JSON.stringify(lines.slice(-5))}`)),
          timeoutMs,
        );
        waiters.push({
          match,
          resolve: (l) => {
            clearTimeout(timer);
            resolve(l);
          },
        });
        void exited.then((code) => {
          clearTimeout(timer);
          reject(new Error(`livemux ${args[0]} exited (${code}) while waited on\nstderr: ${stderr}`));
        });
      });
    },
    async stop(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}

/** A reference echo backend on an ephemeral loopback port. */
export async function startEchoBackend(port = 0): Promise<RunningProcess & { port: number }> {
  const p = runLivemux(['echo-backend', '--host', '127.0.0.1', '--port', String(port)]);
  const line = await p.waitFor((l) => l.event === 'listening');
  return Object.assign(p, { port: line.port as number });
}

export interface ProxyOptions {
  /** Endpoints ("127.0.0.1:port") of the echo pool that every test business routes to. */
  backends: string[];
  /** Extra proxy config (snake_case, merged over the test defaults). */
  config?: Record<string, unknown>;
  /** Extra businesses routed to the same pool. */
  businesses?: string[];
  /** A whole routes.yaml object, used instead of the one built from `backends`/`businesses`. */
  routes?: Record<string, unknown>;
  /** More arguments of `livemux start` (e.g. `--workers 3`). */
  args?: string[];
}

/** A proxy process on an ephemeral loopback port with its admin port. */
export async function startProxy(opts: ProxyOptions): Promise<RunningProcess & { port: number; adminPort: number; dir: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'livemux-test-'));
  const businesses = ['echo', 'chat', ...(opts.businesses ?? [])];
  writeFileSync(
    join(dir, 'routes.yaml'),
    stringify(
      opts.routes ?? {
        version: 1,
        routes: businesses.map((business) => ({ business, pool: 'echo' })),
        // A check may take its whole interval before it fails: with the default 1 s, backends starved
        // on a busy machine were taken out and their sessions closed BACKEND_UNAVAILABLE mid-test.
        pools: { echo: { protocol: 'grpc', endpoints: opts.backends.map((address) => ({ address })), health_check: { interval_ms: 5_000, timeout_ms: 5_000 } } },
      },
    ),
  );
  const config = {
    listen: { host: '127.0.0.1', port: 0 },
    admin: { host: '127.0.0.1', port: 0 },
    routes: './routes.yaml',
    log: { level: 'info' },
    ...opts.config,
  };
  writeFileSync(join(dir, 'livemux.yaml'), stringify(config));
  const p = runLivemux(['start', '--config', join(dir, 'livemux.yaml'), ...(opts.args ?? [])]);
  const line = await p.waitFor((l) => l.msg === 'livemux listening', 30_000);
  const adminPort = line.admin as number;
  await waitReady(adminPort);
  return Object.assign(p, { port: line.port as number, adminPort, dir });
}

/** An echo backend, one proxy in front of it and a token for it: the set-up of most proxy tests. */
export interface EchoStack {
  readonly backend: RunningProcess & { port: number };
  readonly proxy: Awaited<ReturnType<typeof startProxy>>;
  readonly token: string;
  stop(): Promise<void>;
}

/** Starts an {@link EchoStack} whose proxy has `config` (snake_case) over the test defaults. */
export async function startEchoStack(config?: Record<string, unknown>): Promise<EchoStack> {
  const backend = await startEchoBackend();
  const proxy = await startProxy({ backends: [`127.0.0.1:${backend.port}`], ...(config ? { config } : {}) });
  return {
    backend,
    proxy,
    token: await testToken(),
    async stop() {
      await proxy.stop();
      await backend.stop();
    },
  };
}

/**
 * One echo backend and any number of proxies in front of it, each with its own settings: the set-up of
 * tests that compare behaviours under different limits or timeouts.
 */
export interface EchoFleet {
  readonly backend: RunningProcess & { port: number };
  readonly token: string;
  /** A new proxy in front of the backend with `config` (snake_case) over the test defaults, or its own `routes`. */
  proxy(config?: Record<string, unknown>, routes?: Record<string, unknown>): ReturnType<typeof startProxy>;
  /** Stops every proxy, then the backend. */
  stop(): Promise<void>;
}

export async function startEchoFleet(): Promise<EchoFleet> {
  const backend = await startEchoBackend();
  const token = await testToken();
  const proxies: RunningProcess[] = [];
  return {
    backend,
    token,
    async proxy(config, routes) {
      const p = await startProxy({ backends: [`127.0.0.1:${backend.port}`], ...(config ? { config } : {}), ...(routes ? { routes } : {}) });
      proxies.push(p);
      return p;
    },
    async stop() {
      await Promise.all(proxies.map((p) => p.stop()));
      await backend.stop();
    },
  };
}

/** An {@link EchoFleet} started before the calling file's tests and stopped after them. */
export function useEchoFleet(): EchoFleet {
  let started: EchoFleet | null = null;
  beforeAll(async () => {
    started = await startEchoFleet();
  });
  afterAll(() => started?.stop());
  const fleet = (): EchoFleet => {
    if (!started) throw new Error('useEchoFleet: used outside the tests of the file that called it');
    return started;
  };
  return {
    get backend() {
      return fleet().backend;
    },
    get token() {
      return fleet().token;
    },
    proxy: (config, routes) => fleet().proxy(config, routes),
    stop: () => fleet().stop(),
  };
}

/** Polls /readyz until the proxy has its backend streams up. */
export async function waitReady(adminPort: number, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const res = await fetch(`http://127.0.0.1:${adminPort}/readyz`).catch(() => null);
    if (res?.status === 200) return;
    if (Date.now() > deadline) throw new Error(`proxy not ready within ${timeoutMs} ms (last status ${res?.status})`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A valid token for the test secret. */
export function testToken(sub = 'user-1', ttlSeconds = 3600): Promise<string> {
  return mintToken({ secret: TEST_SECRET, sub, ttlSeconds });
}

/**
 * A Chat backend process (`livemux chat-backend`) on an ephemeral loopback port; `args` are extra flags.
 * `adminPort` is set when `args` ask for an admin server (`--admin-port 0`).
 */
export async function startChatBackend(args: string[] = []): Promise<RunningProcess & { port: number; address: string; adminPort: number | undefined }> {
  const p = runLivemux(['chat-backend', '--host', '127.0.0.1', '--port', '0', ...args]);
  const listening = await p.waitFor((l) => l.event === 'listening');
  const port = listening.port as number;
  return Object.assign(p, { port, address: `127.0.0.1:${port}`, adminPort: listening.adminPort as number | undefined });
}

/**
 * An IM backend process (`livemux im-backend`) on an ephemeral loopback port; `args` are extra flags.
 * `adminPort` is set when `args` ask for an admin server (`--admin-port 0`).
 */
export async function startImBackend(args: string[] = []): Promise<RunningProcess & { port: number; address: string; adminPort: number | undefined }> {
  const p = runLivemux(['im-backend', '--host', '127.0.0.1', '--port', '0', ...args]);
  const listening = await p.waitFor((l) => l.event === 'listening');
  const port = listening.port as number;
  return Object.assign(p, { port, address: `127.0.0.1:${port}`, adminPort: listening.adminPort as number | undefined });
}

/**
 * A Push backend process (`livemux push-backend`) with its gRPC and HTTP API on ephemeral loopback ports;
 * `args` are extra flags, `env` extra environment (e.g. LIVEMUX_PUSH_API_KEY).
 */
export async function startPushBackend(
  args: string[] = [],
  env: NodeJS.ProcessEnv = {},
): Promise<RunningProcess & { port: number; address: string; api: string; adminPort: number | undefined }> {
  const p = runLivemux(['push-backend', '--host', '127.0.0.1', '--port', '0', '--http-port', '0', ...args], env);
  const listening = await p.waitFor((l) => l.event === 'listening');
  const port = listening.port as number;
  return Object.assign(p, { port, address: `127.0.0.1:${port}`, api: `http://127.0.0.1:${String(listening.httpPort)}`, adminPort: listening.adminPort as number | undefined });
}
