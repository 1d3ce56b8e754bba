import { parseArgs } from 'node:util';
import { startDispatchServer } from '../dispatch/dispatch-server.js';
import { createLogger } from '../observability/logger.js';
import { LivemuxError } from '../protocol/errors.js';
import { untilSignal } from '../util/signals.js';

/**
 * `livemux dispatch --redis URL [--host H] [--port P] [--limit N] [--max-lag-ms MS] [--refresh-ms MS]
 * [--log-level L]`: runs the dispatch HTTP service (docs/dispatch.md) until SIGTERM/SIGINT.
 */
export async function runDispatchCommand(argv: string[]): Promise<number> {
  let values: Record<string, string | undefined>;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      options: {
        redis: { type: 'string' },
        host: { type: 'string' },
        port: { type: 'string' },
        limit: { type: 'string' },
        'max-lag-ms': { type: 'string' },
        'refresh-ms': { type: 'string' },
        'log-level': { type: 'string' },
      },
    }));
  } catch (err) {
    throw new LivemuxError('ERR_USAGE', (err as Error).message);
  }
  if (!values.redis) throw new LivemuxError('ERR_USAGE', '--redis: required, e.g. --redis redis://127.0.0.1:6379');
  const int = (name: string, fallback: number, min: number, max: number): number => {
    const text = values[name];
    const n = text === undefined ? fallback : Number(text);
    if (!Number.isInteger(n) || n < min || n > max) throw new LivemuxError('ERR_USAGE', `--${name}: expected an integer ${min}..${max}, got "${text}"`);
    return n;
  };
  const server = await startDispatchServer({
    host: values.host ?? '0.0.0.0',
    port: int('port', 7080, 0, 65_535),
    redisUrl: values.redis,
    limit: int('limit', 5, 1, 100),
    maxLagMs: int('max-lag-ms', 500, 1, 60_000),
    refreshMs: int('refresh-ms', 1_000, 0, 60_000),
    logger: createLogger({ level: values['log-level'] ?? 'info', name: 'dispatch' }),
  });
  await untilSignal();
  await server.close();
  return 0;
}
