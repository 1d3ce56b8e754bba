import cluster from 'node:cluster';
import { availableParallelism } from 'node:os';
import { InvalidArgumentError, type Command } from '@commander-js/extra-typings';
import { untilStop } from '../util/signals.js';
import { configFile, type CliContext } from './command.js';

/**
 * `livemux start`: runs the proxy until SIGTERM/SIGINT, then drains and exits 0; SIGHUP reloads routes.
 * With `--workers`, a primary process owns the port and N worker processes each run a whole proxy
 * (src/proxy/workers); node:cluster forks this same command line, which in a worker runs one proxy.
 */
export function register(program: Command, cli: CliContext): void {
  program
    .command('start')
    .description('run the proxy (production): SIGTERM/SIGINT drains and exits, SIGHUP reloads routes.yaml')
    .option('--config <file>', 'proxy config (default: ./livemux.yaml when present, else built-in defaults)')
    .option('--workers <n>', 'N proxy processes behind one port, placed by least connections ("auto": one per core)', workers)
    .addHelpText('after', '\nThe JWT secret comes from auth.jwt_secret or $LIVEMUX_JWT_SECRET. Every key: docs/configuration.md.')
    .action(async (opts) => {
      const { loadProxyConfig } = await import('../config/proxy-config.js');
      const config = loadProxyConfig(configFile(cli, opts.config), cli.env);
      if (cluster.isWorker) {
        const { runProxyWorker } = await import('../proxy/workers/worker.js');
        await runProxyWorker(config);
        return;
      }
      const { ProxyPrimary } = await import('../proxy/workers/primary.js');
      const { ProxyServer } = await import('../proxy/server.js');
      const proxy = opts.workers === undefined ? await ProxyServer.start(config) : await ProxyPrimary.start(config, opts.workers);
      process.on('SIGHUP', () => proxy.reloadRoutes('signal'));
      await untilStop();
      await proxy.close();
    });
}

function workers(text: string): number {
  if (text === 'auto') return availableParallelism();
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1 || n > 1024) throw new InvalidArgumentError('expected an integer 1..1024 or "auto"');
  return n;
}
