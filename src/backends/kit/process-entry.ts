import { realpathSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { LivemuxError } from '../../protocol/errors.js';

/**
 * Runs a backend's command when its module is the process entry point (`node dist/.../main.js`), not
 * when the CLI or a test imports it; exits with its status (2 for a usage error, 1 for a crash).
 */
export function runIfEntryPoint(moduleUrl: string, name: string, run: (argv: string[]) => Promise<number>): void {
  const entry = process.argv[1];
  if (entry === undefined) return;
  try {
    if (pathToFileURL(realpathSync(entry)).href !== moduleUrl) return;
  } catch {
    return;
  }
  run(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err: unknown) => {
      process.stderr.write(`${name}: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exit(err instanceof LivemuxError ? 2 : 1);
    },
  );
}

/** The values of a backend command's `--name value` options, by name (absent ones undefined). */
export type OptionValues = Readonly<Record<string, string | undefined>>;

/**
 * Parses `argv` as the string options `names` (`--name value`), strictly: an unknown option, a
 * positional argument or a missing value is a LivemuxError ERR_USAGE (exit status 2).
 */
export function parseOptions(argv: string[], names: readonly string[]): OptionValues {
  try {
    return parseArgs({ args: argv, options: Object.fromEntries(names.map((n) => [n, { type: 'string' as const }])), strict: true }).values as OptionValues;
  } catch (err) {
    throw new LivemuxError('ERR_USAGE', (err as Error).message);
  }
}

/** A port option (0 = any free port), or undefined when absent; ERR_USAGE when not 0..65535. */
export function parsePortOption(values: OptionValues, name: string): number | undefined {
  const text = values[name];
  if (text === undefined) return undefined;
  const port = Number(text);
  if (text.trim() === '' || !Number.isInteger(port) || port < 0 || port > 65_535) {
    throw new LivemuxError('ERR_USAGE', `--${name}: expected an integer 0..65535, got "${text}"`);
  }
  return port;
}
