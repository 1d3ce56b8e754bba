import { PassThrough, Readable } from 'node:stream';
import { runCli } from '../../src/cli/main.js';

/** What one in-process `livemux` run printed, and its exit status. */
export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs `livemux <argv>` in this process (the same code path as bin/livemux.js) with captured output,
 * so help and usage errors are tested without a process per case.
 */
export async function runCliCaptured(argv: string[], options: { env?: NodeJS.ProcessEnv; cwd?: string; stdin?: string } = {}): Promise<CliRun> {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = '';
  let err = '';
  stdout.on('data', (d: Buffer) => (out += d.toString()));
  stderr.on('data', (d: Buffer) => (err += d.toString()));
  const code = await runCli(argv, {
    stdin: Readable.from(options.stdin === undefined ? [] : [options.stdin]),
    stdout,
    stderr,
    env: options.env ?? {},
    cwd: options.cwd ?? process.cwd(),
    exitCode: 0,
  });
  return { code, stdout: out, stderr: err };
}
