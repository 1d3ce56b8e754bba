import { parseArgs } from 'node:util';
import { loadProxyConfig } from '../config/proxy-config.js';
import { ProxyServer } from '../proxy/server.js';

/** `livemux start`: runs the proxy until SIGTERM/SIGINT, then drains and exits 0. */
export async function runStartCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { config: { type: 'string' } } });
  const config = loadProxyConfig(values.config ?? null);
  const server = await ProxyServer.start(config);
  await untilSignal();
  await server.close();
  return 0;
}

/** Resolves on the first SIGTERM or SIGINT; a second one exits at once. */
export function untilSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const onSignal = (signal: NodeJS.Signals): void => {
      process.once('SIGTERM', () => process.exit(1));
      process.once('SIGINT', () => process.exit(1));
      resolve(signal);
    };
    process.once('SIGTERM', onSignal);
    process.once('SIGINT', onSignal);
  });
}
