/**
 * `livemux client` as a shell uses it, a real process against a real echo stack: lines piped in, replies
 * out, even when stdin ends before the replies arrive; the echo backend's /close takes §6 code names.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type EchoStack, startEchoStack } from '../helpers/processes.js';

const BIN = join(import.meta.dirname, '..', '..', 'bin', 'livemux.js');
let stack: EchoStack;

beforeAll(async () => {
  stack = await startEchoStack();
});
afterAll(() => stack?.stop());

/** Runs `livemux client` with `input` piped to its stdin (then EOF); resolves with what it printed. */
function pipeClient(input: string, args: string[] = []): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [BIN, 'client', '--port', String(stack.proxy.port), '--token', stack.token, ...args], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  child.stdin.end(input);
  return new Promise((resolve) => child.once('close', (code) => resolve({ code, stdout, stderr })));
}

describe('livemux client with a pipe', () => {
  it('prints every reply although stdin ended first', async () => {
    // Without waiting for the replies, the CLOSE that follows EOF raced them and lost some.
    const runs = await Promise.all(Array.from({ length: 4 }, (_, i) => pipeClient(`one-${i}\ntwo-${i}\nthree-${i}\n`)));
    runs.forEach((run, i) => {
      expect(run, run.stderr).toMatchObject({ code: 0, stdout: `one-${i}\ntwo-${i}\nthree-${i}\n` });
      expect(run.stderr).toMatch(/session closed: NORMAL/);
    });
  });

  it('/close with a §6 code name closes with that code; any other code is answered with an error line', async () => {
    const closed = await pipeClient('/close BACKEND_CLOSED bye\n');
    expect(closed.stderr).toContain('session closed: BACKEND_CLOSED (bye)');
    expect(closed.code).toBe(1);
    const refused = await pipeClient('/close 1000 bye\n');
    expect(refused).toMatchObject({ code: 0, stdout: 'echo: /close: "1000" is not a code of PROTOCOL.md §6; e.g. /close BACKEND_CLOSED bye, or /close 0\n' });
  });
});
