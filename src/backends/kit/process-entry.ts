import { realpathSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
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
