import { spawn } from 'node:child_process';
import { connect } from 'node:net';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { until } from '../helpers/until.js';

const ROOT = join(import.meta.dirname, '..', '..');

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ port, host: '127.0.0.1' });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

describe('processes a test starts', () => {
  it('die with a test process killed by a signal (no exit handler runs)', async () => {
    // A stand-in for a vitest worker: starts a redis-server through the helper, then is SIGKILLed.
    const helper = pathToFileURL(join(ROOT, 'dist', 'test', 'helpers', 'redis-server.js')).href;
    const script = `const { startRedisServer } = await import(${JSON.stringify(helper)});
      const r = await startRedisServer();
      console.log(JSON.stringify({ port: r.port, pid: r.pid }));
      setInterval(() => {}, 60_000);`;
    const worker = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      const started = await new Promise<{ port: number; pid: number }>((resolve, reject) => {
        worker.stdout!.once('data', (d: Buffer) => resolve(JSON.parse(d.toString()) as { port: number; pid: number }));
        worker.once('exit', (code) => reject(new Error(`worker exited (${code}) before its redis-server was up`)));
      });
      expect(await accepts(started.port)).toBe(true);

      worker.kill('SIGKILL');
      await until(async () => !(await accepts(started.port)), `redis-server ${started.pid} to die with its test process`);
    } finally {
      worker.kill('SIGKILL'); // a failed test must not leave the stand-in behind either
    }
  });
});
