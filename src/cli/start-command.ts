import cluster from 'node:cluster';
import { availableParallelism } from 'node:os';
import { parseArgs } from 'node:util';
import { loadProxyConfig } from '../config/proxy-config.js';
import { LivemuxError } from '../protocol/errors.js';
import { ProxyServer } from '../proxy/server.js';
import { untilSignal } from '../util/signals.js';

/**
 * `livemux start [--config FILE] [--workers N|auto]`: runs the proxy until SIGTERM/SIGINT, then drains
 * and exits 0. With `--workers`, a primary process owns the port and N worker processes each run a
 * whole proxy (src/proxy/workers); `auto` is one per core. SIGHUP reloads routes.yaml.
 */
export async function runStartCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { config: { type: 'string' }, workers: { type: 'string' } } });
  const config = loadProxyConfig(values.config ?? null);
  // node:cluster forks this same command line: in a worker it runs one proxy of the primary's.
  if (cluster.isWorker) return (await import('../proxy/workers/worker.js')).runProxyWorker(config);
  if (values.workers !== undefined) {
    const { ProxyPrimary } = await import('../proxy/workers/primary.js');
    const primary = await ProxyPrimary.start(config, parseWorkers(values.workers));
    process.on('SIGHUP', () => primary.reloadRoutes());
    await untilSignal();
    await primary.close();
    return 0;
  }
  const server = await ProxyServer.start(config);
  process.on('SIGHUP', () => server.reloadRoutes('signal'));
  await untilSignal();
  await server.close();
  return 0;
}

function parseWorkers(text: string): number {
  if (text === 'auto') return availableParallelism();
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1 || n > 1024) throw new LivemuxError('ERR_USAGE', `--workers: expected an integer 1..1024 or "auto", got "${text}"`);
  return n;
}
