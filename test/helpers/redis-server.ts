import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './free-port.js';
import { spawnTied } from './tied-spawn.js';

/** A throwaway redis-server owned by a test. */
export interface RedisServer {
  readonly port: number;
  /** `redis://127.0.0.1:<port>` */
  readonly url: string;
  /** The server's process id (benchmarks read its CPU time). */
  readonly pid: number;
  /** Stops the server and removes its directory. */
  stop(): Promise<void>;
}

/**
 * Starts a real `redis-server` on a free loopback port, without persistence (`--save ''`,
 * `--appendonly no`), in a temporary directory. Throws — so the test fails, never skips — when
 * redis-server is not installed: .ci/run installs the Debian package, and so must a developer.
 */
export async function startRedisServer(): Promise<RedisServer> {
  const probe = spawnSync('redis-server', ['--version'], { encoding: 'utf8' });
  if (probe.error) {
    throw new Error(
      'redis-server is not installed (or not on PATH): the Redis tests start their own server. ' +
        'Install it with `apt-get install -y redis-server` (.ci/run does this in CI).',
    );
  }
  // A port picked free can be taken before redis binds it; try a few.
  let lastError: unknown;
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      return await launch(await freePort());
    } catch (err) {
      lastError = err;
    }
  }
  throw lastError;
}

async function launch(port: number, timeoutMs = 10_000): Promise<RedisServer> {
  const dir = mkdtempSync(join(tmpdir(), 'livemux-redis-'));
  const child = spawnTied(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--daemonize', 'no', '--logfile', ''],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  // A test that fails before its afterAll must not leave the server behind: it dies with its test process.
  const exited = new Promise<number | string>((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal ?? 'unknown')));
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr.on('data', (d: Buffer) => (output += d.toString()));
  const cleanup = (): void => rmSync(dir, { recursive: true, force: true });

  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`redis-server on port ${port}: not ready within ${timeoutMs} ms\n${output.slice(-2000)}`));
    }, timeoutMs);
    const onData = (): void => {
      if (!output.includes('Ready to accept connections')) return;
      clearTimeout(timer);
      child.stdout.off('data', onData);
      resolve();
    };
    child.stdout.on('data', onData);
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`redis-server on port ${port}: exited (${code}) before it was ready\n${output.slice(-2000)}`));
    });
  }).catch((err: unknown) => {
    cleanup();
    throw err;
  });

  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    pid: child.pid!,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
      cleanup();
    },
  };
}
