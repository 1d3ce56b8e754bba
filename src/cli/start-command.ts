import type { Command } from '@commander-js/extra-typings';
import { untilSignal } from '../util/signals.js';
import { configFile, type CliContext } from './command.js';

/** `livemux start`: runs the proxy until SIGTERM/SIGINT, then drains and exits 0; SIGHUP reloads routes. */
export function register(program: Command, cli: CliContext): void {
  program
    .command('start')
    .description('run the proxy (production): SIGTERM/SIGINT drains and exits, SIGHUP reloads routes.yaml')
    .option('--config <file>', 'proxy config (default: ./livemux.yaml when present, else built-in defaults)')
    .addHelpText('after', '\nThe JWT secret comes from auth.jwt_secret or $LIVEMUX_JWT_SECRET. Every key: docs/configuration.md.')
    .action(async (opts) => {
      const { loadProxyConfig } = await import('../config/proxy-config.js');
      const { ProxyServer } = await import('../proxy/server.js');
      const server = await ProxyServer.start(loadProxyConfig(configFile(cli, opts.config), cli.env));
      process.on('SIGHUP', () => server.reloadRoutes('signal'));
      await untilSignal();
      await server.close();
    });
}
