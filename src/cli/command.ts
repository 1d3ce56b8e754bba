import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { InvalidArgumentError, Option, type Command } from '@commander-js/extra-typings';

/**
 * What a subcommand reads and writes: the process's own streams, or a test's. Commands never call
 * `process.exit`; a non-zero status is set on `exitCode` (or thrown as an error, see cli/main.ts).
 */
export interface CliContext {
  readonly stdin: Readable;
  readonly stdout: Writable;
  readonly stderr: Writable;
  readonly env: NodeJS.ProcessEnv;
  /** Directory the command runs in: where ./livemux.yaml and ./.livemux/ are looked for. */
  readonly cwd: string;
  exitCode: number;
}

/**
 * One subcommand: a module exporting `register`, which adds its command to the program. It imports its
 * implementation lazily inside the action, so `livemux --help` and light commands (token, check) never
 * load gRPC, Redis or the proxy. Registered by one line in cli/main.ts.
 */
export type RegisterCommand = (program: Command, cli: CliContext) => void;

/** Exit statuses of every subcommand. */
export const ExitCode = {
  OK: 0,
  /** The command ran and failed: a bad config file, a port in use, a refused connection. */
  FAILURE: 1,
  /** The command line itself is wrong: unknown option, bad option value, missing argument. */
  USAGE: 2,
} as const;

/** The config file a proxy command uses: `--config`, else ./livemux.yaml when present, else none (built-in defaults). */
export function configFile(cli: CliContext, given: string | undefined): string | null {
  if (given !== undefined) return given;
  const local = join(cli.cwd, 'livemux.yaml');
  return existsSync(local) ? local : null;
}

// Option value parsers: commander reports a thrown InvalidArgumentError as a one-line usage error
// naming the option and the value.

/** A TCP port; `min` 0 lets the OS pick a free one. */
export function port(min = 0): (text: string) => number {
  return (text) => integerIn(text, min, 65_535);
}

/** A whole number of at least `min`, in `unit` (which the error names). */
export function integer(min: number, unit: string): (text: string) => number {
  return (text) => integerIn(text, min, Number.MAX_SAFE_INTEGER, unit);
}

/** A positive finite number of `unit` (e.g. messages/s). */
export function positiveNumber(unit: string): (text: string) => number {
  return (text) => {
    const n = Number(text);
    if (text.trim() === '' || !(Number.isFinite(n) && n > 0)) throw new InvalidArgumentError(`expected a positive number (${unit})`);
    return n;
  };
}

/** A repeatable KEY=VALUE option, collected into a map. */
export function keyValue(text: string, previous: Record<string, string> = {}): Record<string, string> {
  const eq = text.indexOf('=');
  if (eq <= 0) throw new InvalidArgumentError('expected KEY=VALUE');
  return { ...previous, [text.slice(0, eq)]: text.slice(eq + 1) };
}

/** `--log-level`, shared by every process command. */
export function logLevelOption() {
  return new Option('--log-level <level>', 'log threshold')
    .choices(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const)
    .default('info' as const);
}

function integerIn(text: string, min: number, max: number, unit?: string): number {
  const n = Number(text);
  if (text.trim() === '' || !Number.isSafeInteger(n) || n < min || n > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `${min}..${max}`;
    throw new InvalidArgumentError(`expected an integer ${range}${unit ? ` (${unit})` : ''}`);
  }
  return n;
}
