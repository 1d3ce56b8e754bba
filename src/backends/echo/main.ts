/**
 * The echo backend as a process: `node dist/src/backends/echo/main.js --host 127.0.0.1 --port 7101`,
 * or `livemux echo-backend --port 7101`. Prints `{"event":"listening","port":N}` on stdout once it
 * accepts streams (logs go to stderr, so stdout stays machine-readable), and exits 0 after a clean
 * shutdown on SIGTERM or SIGINT.
 */
import { parseArgs } from 'node:util';
import pino from 'pino';
import { createLogger } from '../../observability/logger.js';
import { LivemuxError } from '../../protocol/errors.js';
import { createBackendServer } from '../kit/backend-server.js';
import { untilSignal } from '../../util/signals.js';
import { createEchoHandlers } from './echo-backend.js';
import { runIfEntryPoint } from '../kit/process-entry.js';

const DEFAULT_HOST = '127.0.0.1';
const DEFAULT_PORT = 7101;

/**
 * Runs the echo backend until SIGTERM/SIGINT; resolves with the exit status (0 after a clean close).
 * Rejects with a LivemuxError (code ERR_USAGE) on bad arguments, or when the port cannot be bound.
 */
export async function runEchoBackend(argv: string[]): Promise<number> {
  const { host, port, logLevel } = parseEchoArgs(argv);
  const logger = createLogger({ level: logLevel, name: 'echo-backend' }, pino.destination(2));
  // /whoami names this backend by its bound address, known only after listen when port is 0.
  let address = `${host}:${port}`;
  const server = createBackendServer(createEchoHandlers({ name: () => address }), { logger });
  const listening = await server.listen(host, port);
  address = `${host}:${listening.port}`;
  process.stdout.write(`${JSON.stringify({ event: 'listening', port: listening.port })}\n`);
  const signal = await untilSignal();
  logger.info({ signal }, 'echo backend: shutting down');
  await listening.close();
  return 0;
}

function parseEchoArgs(argv: string[]): { host: string; port: number; logLevel: string } {
  let values: { host?: string; port?: string; 'log-level'?: string };
  try {
    ({ values } = parseArgs({
      args: argv,
      options: { host: { type: 'string' }, port: { type: 'string' }, 'log-level': { type: 'string' } },
      strict: true,
    }));
  } catch (err) {
    throw new LivemuxError('ERR_USAGE', (err as Error).message);
  }
  const port = values.port === undefined ? DEFAULT_PORT : Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65_535) {
    throw new LivemuxError('ERR_USAGE', `--port: expected an integer 0..65535, got "${values.port}"`);
  }
  return { host: values.host ?? DEFAULT_HOST, port, logLevel: values['log-level'] ?? 'info' };
}

runIfEntryPoint(import.meta.url, 'echo-backend', runEchoBackend);
