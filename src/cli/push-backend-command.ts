import { InvalidArgumentError, Option, type Command } from '@commander-js/extra-typings';
import { port, type CliContext } from './command.js';

/** `livemux push-backend`: the reference Push backend and its HTTP API (docs/push.md, src/backends/push). */
export function register(program: Command, _cli: CliContext): void {
  program
    .command('push-backend')
    .description('run the Push backend and its HTTP API for business servers (docs/push.md); in memory unless --redis')
    .option('--config <file>', 'push.yaml: API keys, limits, listeners (docs/push.md §4); flags override it')
    .option('--host <host>', 'address proxies attach to (default 127.0.0.1)')
    .option('--port <port>', 'port proxies attach to (default 7103; 0: any free port)', port())
    .option('--http-host <host>', 'address of the HTTP API (default 127.0.0.1)')
    .option('--http-port <port|off>', 'port of the HTTP API (default 7180; 0: any free port; off: no API on this node)', (text) =>
      text === 'off' ? ('off' as const) : port()(text),
    )
    .option('--redis <url>', 'share devices, pushes and counters with other nodes through Redis (e.g. redis://127.0.0.1:6379)', (text) => {
      if (!/^rediss?:\/\//.test(text)) throw new InvalidArgumentError('expected a redis:// or rediss:// URL');
      return text;
    })
    .option('--admin-host <host>', 'admin HTTP address (default 127.0.0.1)')
    .option('--admin-port <port>', 'serve /metrics, /healthz, /readyz, /status on this port (0: any free port)', port())
    .option('--node-id <id>', "this node's name in the shared store (default host-pid-random)")
    .addOption(new Option('--log-level <level>', 'log threshold (default: the config file\'s, else info)').choices(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const))
    .addHelpText(
      'after',
      '\nAPI keys come from the config file (api_keys) or $LIVEMUX_PUSH_API_KEY (one key named dev).\n' +
        'Prints {"event":"listening","port":N,"httpPort":M[,"adminPort":A]} on stdout when ready; logs go to stderr.',
    )
    .action(async (opts) => {
      const { runPushBackend } = await import('../backends/push/main.js');
      await runPushBackend(opts);
    });
}
