/**
 * The echo backend as a process (`livemux echo-backend --port 7101`, options in
 * src/cli/echo-backend-command.ts). Prints `{"event":"listening","port":N}` on stdout once it accepts
 * streams (logs go to stderr, so stdout stays machine-readable), and returns after a clean shutdown on
 * SIGTERM or SIGINT.
 */
import pino from 'pino';
import { createLogger } from '../../observability/logger.js';
import { createBackendServer } from '../kit/backend-server.js';
import { untilStop } from '../../util/signals.js';
import { createEchoHandlers } from './echo-backend.js';

export interface EchoBackendArgs {
  host: string;
  /** 0 picks a free port. */
  port: number;
  logLevel: string;
}

/** Runs the echo backend until SIGTERM/SIGINT or its parent is gone; rejects when the port cannot be bound. */
export async function runEchoBackend({ host, port, logLevel }: EchoBackendArgs): Promise<void> {
  const logger = createLogger({ level: logLevel, name: 'echo-backend' }, pino.destination(2));
  // /whoami names this backend by its bound address, known only after listen when port is 0.
  let address = `${host}:${port}`;
  const server = createBackendServer(createEchoHandlers({ name: () => address }), { logger });
  const listening = await server.listen(host, port);
  address = `${host}:${listening.port}`;
  process.stdout.write(`${JSON.stringify({ event: 'listening', port: listening.port })}\n`);
  const reason = await untilStop();
  logger.info({ reason }, 'echo backend: shutting down');
  await listening.close();
}
