/**
 * The conformance driver for the TypeScript SDK (PROTOCOL.md §14): what every SDK team writes, in its
 * own language, to run its client against `livemux conformance-server`. It is the reference the
 * others follow, and the test that proves the kit passes a conforming client.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { connect, type ClientSession, type LivemuxClient } from '../client/index.js';
import { BUSINESS, REPORT_BUSINESS, TOKEN_PREFIX } from './server.js';

/** Messages a report lists at most (what fits an OPEN's metadata comfortably). */
const REPORTED_MESSAGES = 20;
const REPORTED_LENGTH = 64;

export interface DriverOptions {
  host: string;
  port: number;
  /** How long one scenario may run before the driver gives up on it (default 40 s). */
  scenarioTimeoutMs?: number;
}

/**
 * Runs one scenario: connects with token `conformance:<scenario>` and keeps one `conformance` session
 * open, echoing what it receives, until the server ends the scenario (ERROR AUTH_FAILED, which the SDK
 * does not retry) or the timeout passes.
 */
export async function runScenario(scenario: string, options: DriverOptions): Promise<void> {
  let client: LivemuxClient;
  try {
    client = await connect({ host: options.host, port: options.port, token: `${TOKEN_PREFIX}${scenario}` });
  } catch {
    return; // the first handshake failed: the server has its verdict
  }
  const closed = new Promise<void>((resolve) => client.once('close', () => resolve()));
  void keepSessionOpen(client);
  const timeout = sleep(options.scenarioTimeoutMs ?? 40_000, undefined, { ref: false });
  await Promise.race([closed, timeout]);
  await client.close();
}

/** Runs every named scenario, `concurrency` at a time. */
export async function runScenarios(scenarios: readonly string[], options: DriverOptions & { concurrency?: number }): Promise<void> {
  const queue = [...scenarios];
  const worker = async (): Promise<void> => {
    for (let next = queue.shift(); next !== undefined; next = queue.shift()) await runScenario(next, options);
  };
  await Promise.all(Array.from({ length: Math.max(1, options.concurrency ?? 4) }, worker));
}

/** The driver's loop: one `conformance` session at a time; each that ends is reported, then replaced. */
async function keepSessionOpen(client: LivemuxClient): Promise<void> {
  while (client.state !== 'closed') {
    let session: ClientSession;
    try {
      session = await client.open(BUSINESS);
    } catch {
      await sleep(50);
      continue;
    }
    const received: string[] = [];
    session.on('data', (payload, priority) => {
      const text = payload.toString();
      if (received.length < REPORTED_MESSAGES && payload.length <= REPORTED_LENGTH) received.push(text);
      if (text === 'close') void session.close();
      else if (text === 'reset') session.reset();
      else session.send(payload, { priority }).catch(() => {});
    });
    const code = await new Promise<number>((resolve) => session.once('close', (c) => resolve(c)));
    await client.open(REPORT_BUSINESS, { code: String(code), received: JSON.stringify(received) }).catch(() => {});
  }
}
