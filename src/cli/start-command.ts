import { parseArgs } from 'node:util';
import { loadProxyConfig } from '../config/proxy-config.js';
import { ProxyServer } from '../proxy/server.js';
import { untilSignal } from '../util/signals.js';

/** `livemux start`: runs the proxy until SIGTERM/SIGINT, then drains and exits 0. */
export async function runStartCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { config: { type: 'string' } } });
  const config = loadProxyConfig(values.config ?? null);
  const server = await ProxyServer.start(config);
  process.on('SIGHUP', () => server.reloadRoutes('signal'));
  await untilSignal();
  await server.close();
  return 0;
}
