import {
  type ChildProcessByStdio,
  type SpawnOptionsWithStdioTuple,
  type StdioNull,
  type StdioPipe,
  spawn,
} from 'node:child_process';
import type { Readable } from 'node:stream';

/**
 * `spawn`, with the child killed when the process that started it dies, however it dies. An 'exit'
 * handler covers a test process that ends on its own, but none runs when vitest tears a worker down
 * by a signal (a run stopped by hand, a worker killed at a timeout): its redis-servers and proxies
 * lived on, holding ports and CPU. Linux's parent-death signal covers every way out; util-linux's
 * `setpriv` (on every Debian/Ubuntu) sets it and then execs the command, so the pid is the command's.
 */
export function spawnTied(
  command: string,
  args: readonly string[],
  options: SpawnOptionsWithStdioTuple<StdioNull, StdioPipe, StdioPipe>,
): ChildProcessByStdio<null, Readable, Readable> {
  return spawn('setpriv', ['--pdeathsig', 'KILL', '--', command, ...args], options);
}
