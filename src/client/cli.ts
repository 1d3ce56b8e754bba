import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { Readable, Writable } from 'node:stream';
import { parseArgs } from 'node:util';
import { codeName } from '../protocol/codes.js';
import { LivemuxError } from '../protocol/errors.js';
import { connect, type LivemuxClient } from './client.js';
import type { ClientSession } from './client-session.js';
import { PayloadTooLargeError, SessionClosedError } from './errors.js';

const USAGE = `Usage: livemux client [options]

Opens one session; each stdin line is sent as a DATA message, each DATA received is printed as a line
on stdout. Events (connection, GOAWAY, close) go to stderr. Exits when stdin ends and the session has
closed, or when the server closes the session.

Options:
  --host HOST        proxy address (default 127.0.0.1)
  --port PORT        proxy port (default 7000)
  --token TOKEN      auth token (default: $LIVEMUX_TOKEN, then ./.livemux/dev-token from \`livemux up\`)
  --business NAME    route to open (default echo)
  --meta KEY=VALUE   session metadata, repeatable (e.g. --meta room_id=1)
  --tls              connect with TLS
  --insecure         with --tls: do not verify the server certificate (dev only)
  -h, --help         show this help

Exit status: 0 after a normal close, 1 on a connection or session failure, 2 on bad usage.
`;

/** Where the command reads and writes; the process's own streams unless a test substitutes them. */
export interface ClientCommandIo {
  readonly stdin: Readable;
  readonly stdout: Writable;
  readonly stderr: Writable;
  readonly env: NodeJS.ProcessEnv;
  /** Directory searched for `.livemux/dev-token`. */
  readonly cwd: string;
}

const NEWLINE = Buffer.from('\n');

/**
 * `livemux client`: the debugging client. `argv` holds the arguments after the word `client`.
 * Resolves with the exit status (0 normal close, 1 failure, 2 usage); never calls `process.exit`.
 * Reconnect is off: a debugging tool should show a dropped connection, not hide it.
 */
export async function runClientCommand(argv: string[], io: ClientCommandIo = processIo()): Promise<number> {
  const log = (line: string): void => void io.stderr.write(`livemux client: ${line}\n`);
  const parsed = parseCommandLine(argv, io);
  if (parsed === 'help') {
    io.stdout.write(USAGE);
    return 0;
  }
  if (typeof parsed === 'string') {
    log(parsed);
    io.stderr.write(USAGE);
    return 2;
  }

  let client: LivemuxClient;
  let session: ClientSession;
  try {
    client = await connect({ ...parsed, reconnect: false });
  } catch (err) {
    if (!(err instanceof LivemuxError)) throw err;
    log(err.message);
    return 1;
  }
  log(`connected to ${parsed.host}:${parsed.port}: connection ${client.welcome.connectionId}, user ${client.welcome.userId}`);
  client.on('goaway', (g) => log(`GOAWAY ${codeName(g.code)}${g.reason ? ` (${g.reason})` : ''}`));
  client.on('close', (err) => err && log(`connection closed: ${err.message}`));
  try {
    session = await client.open(parsed.business, parsed.metadata);
  } catch (err) {
    await client.close();
    if (!(err instanceof LivemuxError)) throw err;
    log(err.message);
    return 1;
  }
  log(`session ${session.id} open on "${parsed.business}"`);
  session.on('close', (code, reason) => log(`session closed: ${codeName(code)}${reason ? ` (${reason})` : ''}`));

  try {
    const printed = printMessages(session, io.stdout);
    await sendLines(session, io.stdin, log);
    return await printed;
  } finally {
    await client.close();
  }
}

interface CommandLine {
  host: string;
  port: number;
  token: string;
  business: string;
  metadata: Record<string, string>;
  tls?: { rejectUnauthorized: boolean };
}

/** The validated command line, `'help'`, or a usage error message. */
function parseCommandLine(argv: string[], io: ClientCommandIo): CommandLine | 'help' | string {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        host: { type: 'string', default: '127.0.0.1' },
        port: { type: 'string', default: '7000' },
        token: { type: 'string' },
        business: { type: 'string', default: 'echo' },
        meta: { type: 'string', multiple: true, default: [] },
        tls: { type: 'boolean', default: false },
        insecure: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
    }));
  } catch (err) {
    return (err as Error).message;
  }
  if (values.help) return 'help';
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 1 || port > 65_535) return `--port: expected an integer 1..65535, got "${values.port}"`;
  if (values.insecure && !values.tls) return '--insecure: only meaningful with --tls';
  const metadata: Record<string, string> = {};
  for (const pair of values.meta) {
    const eq = pair.indexOf('=');
    if (eq <= 0) return `--meta: expected KEY=VALUE, got "${pair}"`;
    metadata[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  const token = values.token ?? io.env.LIVEMUX_TOKEN ?? readDevToken(io.cwd);
  if (!token) return 'no token: pass --token, set LIVEMUX_TOKEN, or run `livemux up` here to write .livemux/dev-token';
  return {
    host: values.host,
    port,
    token,
    business: values.business,
    metadata,
    ...(values.tls ? { tls: { rejectUnauthorized: !values.insecure } } : {}),
  };
}

/** The token `livemux up` leaves in `.livemux/dev-token`, or undefined when there is none. */
function readDevToken(cwd: string): string | undefined {
  try {
    return readFileSync(join(cwd, '.livemux', 'dev-token'), 'utf8').trim() || undefined;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/**
 * Prints each message as a line until the session ends. Iteration (not 'data' events) so a slow stdout
 * holds back credit and thus the server. Resolves with the exit status.
 */
async function printMessages(session: ClientSession, stdout: Writable): Promise<number> {
  try {
    for await (const { payload } of session) {
      if (!stdout.write(Buffer.concat([payload, NEWLINE]))) await once(stdout, 'drain');
    }
    return 0;
  } catch (err) {
    // The session ended abnormally; its 'close' listener already said why.
    if (err instanceof SessionClosedError) return 1;
    throw err;
  }
}

/**
 * Sends stdin line by line; at its end closes the session gracefully. Stops early if the session ends.
 * A line over the payload limit is reported and skipped, the way a shell reports one bad command.
 */
async function sendLines(session: ClientSession, stdin: Readable, log: (line: string) => void): Promise<void> {
  const lines = createInterface({ input: stdin, crlfDelay: Infinity });
  const stopReading = (): void => lines.close();
  session.once('close', stopReading);
  try {
    for await (const line of lines) {
      try {
        await session.send(line);
      } catch (err) {
        if (!(err instanceof PayloadTooLargeError)) throw err;
        log(`line not sent: ${err.message}`);
      }
    }
  } catch (err) {
    if (!(err instanceof SessionClosedError)) throw err;
  } finally {
    session.off('close', stopReading);
    lines.close();
  }
  await session.close();
}

function processIo(): ClientCommandIo {
  return { stdin: process.stdin, stdout: process.stdout, stderr: process.stderr, env: process.env, cwd: process.cwd() };
}
