import type { Command } from '@commander-js/extra-typings';
import { logLevelOption, port, type CliContext } from './command.js';

/** `livemux echo-backend`: the reference echo backend (src/backends/echo). */
export function register(program: Command, _cli: CliContext): void {
  program
    .command('echo-backend')
    .description('run the reference echo backend (answers each message; /sub, /pub, /unsub, /close commands)')
    .option('--host <host>', 'address to listen on', '127.0.0.1')
    .option('--port <port>', 'port to listen on (0: any free port)', port(), 7101)
    .addOption(logLevelOption())
    .addHelpText('after', '\nPrints {"event":"listening","port":N} on stdout once it accepts proxy streams; logs go to stderr.')
    .action(async (opts) => {
      const { runEchoBackend } = await import('../backends/echo/main.js');
      await runEchoBackend(opts);
    });
}
