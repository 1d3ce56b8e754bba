import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';

/** One JSON line a bench process printed on stdout. */
export type OutputLine = Record<string, unknown>;

interface Waiter {
  match: (line: OutputLine) => boolean;
  resolve: (line: OutputLine) => void;
  reject: (err: Error) => void;
}

const running = new Set<ChildProcess>();
/** Node flags for every bench process, e.g. `--cpu-prof --cpu-prof-dir=/tmp/prof` (NODE_OPTIONS refuses those). */
const NODE_FLAGS = (process.env.BENCH_NODE_FLAGS ?? '').split(' ').filter((f) => f !== '');
process.on('exit', () => running.forEach((c) => c.kill('SIGKILL')));

/**
 * `node script args` (or, with `native`, the executable `script` itself) started by the bench, its stdout
 * read as JSON lines (other lines are ignored) and stderr passed through. Killed when the bench exits,
 * whatever the path out.
 */
export class BenchProcess {
  private readonly child: ChildProcess;
  private readonly waiters = new Set<Waiter>();
  private exitCode: number | string | null = null;
  private stopAsked = false;
  /** Resolves when the process has exited. */
  readonly exited: Promise<void>;

  /** `input`: the process reads commands on stdin ({@link send}); `nodeFlags`: its own, before BENCH_NODE_FLAGS. */
  constructor(script: string, args: string[], env: NodeJS.ProcessEnv = {}, { native = false, input = false, nodeFlags = [] as readonly string[] } = {}) {
    const [command, argv] = native ? [script, args] : [process.execPath, [...nodeFlags, ...NODE_FLAGS, script, ...args]];
    this.child = spawn(command, argv, { stdio: [input ? 'pipe' : 'ignore', 'pipe', 'inherit'], env: { ...process.env, ...env } });
    running.add(this.child);
    this.exited = new Promise((resolve) => this.child.once('exit', () => resolve()));
    this.child.once('exit', (code, signal) => {
      running.delete(this.child);
      this.exitCode = code ?? signal ?? 'unknown';
      for (const w of this.waiters) w.reject(new Error(`${script} exited (${this.exitCode})`));
    });
    createInterface({ input: this.child.stdout! }).on('line', (text) => {
      let line: OutputLine;
      try {
        line = JSON.parse(text) as OutputLine;
      } catch {
        return;
      }
      for (const w of this.waiters) if (w.match(line)) w.resolve(line);
    });
  }

  /** Resolves with the next line printed from now on for which `match` is true. */
  next(match: (line: OutputLine) => boolean, timeoutMs = 120_000): Promise<OutputLine> {
    if (this.exitCode !== null) return Promise.reject(new Error(`process exited (${this.exitCode})`));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => settle(() => reject(new Error(`no matching output within ${timeoutMs} ms`))), timeoutMs);
      const settle = (fn: () => void): void => {
        clearTimeout(timer);
        this.waiters.delete(waiter);
        fn();
      };
      const waiter: Waiter = {
        match,
        resolve: (line) => settle(() => resolve(line)),
        reject: (err) => settle(() => reject(err)),
      };
      this.waiters.add(waiter);
    });
  }

  /** True once the process has ended without having been asked to stop ({@link stop}). */
  get exitedUnasked(): boolean {
    return this.exitCode !== null && !this.stopAsked;
  }

  /** The process id (for its CPU time in /proc). */
  get pid(): number {
    return this.child.pid!;
  }

  stop(): void {
    this.stopAsked = true;
    this.child.kill('SIGTERM');
  }

  /** Writes one line to the stdin of a process started with `input`. */
  send(line: string): void {
    this.child.stdin!.write(`${line}\n`);
  }

  /** Sends `signal` (e.g. SIGUSR2, which some bench processes answer with a report line). */
  signal(signal: NodeJS.Signals): void {
    this.child.kill(signal);
  }
}

/** Starts `node script args` (or a native `script`) and resolves with the process and its first line that satisfies `ready`. */
export async function startProcess(
  script: string,
  args: string[],
  ready: (line: OutputLine) => boolean,
  env: NodeJS.ProcessEnv = {},
  options: { native?: boolean; nodeFlags?: readonly string[] } = {},
): Promise<{ process: BenchProcess; line: OutputLine }> {
  const child = new BenchProcess(script, args, env, options);
  return { process: child, line: await child.next(ready) };
}

/** utime/stime in /proc are in clock ticks of 1/100 s (USER_HZ) on Linux. */
const US_PER_TICK = 10_000;

/** Fields 3… of /proc/<pid>/stat (after the command name, which may contain spaces): index 0 is field 3. */
export function statFields(pid: number | string): string[] {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
}

/**
 * CPU time (user + system) of a process, read from /proc so a server needs no hook: the counters
 * process.cpuUsage() reports, at 10 ms resolution (a step's server time is seconds).
 */
export function cpuUs(pid: number): number {
  const f = statFields(pid);
  return (Number(f[11]) + Number(f[12])) * US_PER_TICK;
}
