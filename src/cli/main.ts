import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Command, CommanderError } from '@commander-js/extra-typings';
import { ConfigError, LivemuxError } from '../protocol/errors.js';
import { PACKAGE_ROOT } from '../paths.js';
import { ExitCode, type CliContext, type RegisterCommand } from './command.js';

/**
 * Every subcommand, one line each, in the order `livemux help` lists them. A subcommand is a small
 * module exporting `register` (see cli/command.ts); its implementation loads only when it runs.
 */
const COMMANDS: readonly (() => Promise<{ register: RegisterCommand }>)[] = [
  () => import('./up-command.js'),
  () => import('./start-command.js'),
  () => import('./echo-backend-command.js'),
  () => import('./chat-backend-command.js'),
  () => import('./push-backend-command.js'),
  () => import('./client-command.js'),
  () => import('./token-command.js'),
  () => import('./check-command.js'),
  () => import('./conformance-command.js'),
];

/** Entry point of the `livemux` command (bin/livemux.js): runs it and sets the process exit status. */
export async function main(argv: string[]): Promise<void> {
  process.exitCode = await runCli(argv, {
    stdin: process.stdin,
    stdout: process.stdout,
    stderr: process.stderr,
    env: process.env,
    cwd: process.cwd(),
    exitCode: ExitCode.OK,
  });
}

/**
 * Runs one `livemux` command line and resolves with its exit status: 0 ok (help and --version
 * included), 1 the command failed, 2 the command line is wrong. Every error is one line on stderr
 * naming the command; only a bug (an error livemux did not mean to throw) prints a stack.
 */
export async function runCli(argv: string[], cli: CliContext): Promise<number> {
  const program = new Command('livemux')
    .description('Layer-7 multiplexing TCP proxy for live-streaming and messaging apps')
    .version(packageVersion(), '-v, --version')
    .exitOverride()
    .configureOutput({
      writeOut: (s) => void cli.stdout.write(s),
      writeErr: (s) => void cli.stderr.write(s),
      outputError: (s, write) => write(`livemux: ${s.replace(/^error: /, '')}`),
    })
    .showSuggestionAfterError()
    .showHelpAfterError('(run `livemux help` for the commands)')
    .addHelpText('after', '\nRun `livemux <command> --help` for a command\'s options. Docs: README.md, docs/.');
  for (const load of COMMANDS) (await load()).register(program, cli);
  let running = 'livemux';
  for (const command of program.commands) {
    const name = `livemux ${command.name()}`;
    command
      .configureOutput({ outputError: (s, write) => write(`${name}: ${s.replace(/^error: /, '')}`) })
      .showHelpAfterError(`(run \`${name} --help\` for its options)`)
      .hook('preAction', () => void (running = name));
  }
  try {
    await program.parseAsync(argv, { from: 'user' });
    return cli.exitCode;
  } catch (err) {
    if (err instanceof CommanderError) return commanderStatus(err);
    cli.stderr.write(`${running}: ${describe(err)}\n`);
    return err instanceof LivemuxError && err.code === 'ERR_USAGE' ? ExitCode.USAGE : ExitCode.FAILURE;
  }
}

/** Help and --version asked for are a success; everything else commander throws is a usage error. */
function commanderStatus(err: CommanderError): number {
  const asked = err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || (err.code === 'commander.help' && err.exitCode === 0);
  return asked ? ExitCode.OK : ExitCode.USAGE;
}

/**
 * One line for an expected failure: a LivemuxError's message (a config error lists its problems on the
 * lines below), or a system error such as EADDRINUSE or ENOENT with the path or address it concerns.
 */
function describe(err: unknown): string {
  // A config error with one problem (e.g. a file that cannot be read) needs no header line above it.
  if (err instanceof ConfigError && err.problems.length === 1) return err.problems[0]!;
  if (err instanceof LivemuxError) return err.message;
  const sys = err as NodeJS.ErrnoException;
  if (err instanceof Error && typeof sys.code === 'string' && sys.syscall !== undefined) return sys.message;
  return err instanceof Error ? (err.stack ?? err.message) : String(err);
}

function packageVersion(): string {
  return (JSON.parse(readFileSync(join(PACKAGE_ROOT, 'package.json'), 'utf8')) as { version: string }).version;
}
