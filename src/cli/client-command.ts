import { once } from 'node:events';
import { createInterface } from 'node:readline';
import type { Readable, Writable } from 'node:stream';
import type { Command } from '@commander-js/extra-typings';
import type { ClientSession } from '../client/client-session.js';
import type { LivemuxClient } from '../client/client.js';
import { PayloadTooLargeError, SessionClosedError } from '../client/errors.js';
import { SessionState } from '../client/states.js';
import { codeName } from '../protocol/codes.js';
import { LivemuxError } from '../protocol/errors.js';
import { ExitCode, integer, keyValue, port, type CliContext } from './command.js';
import { DEV_TOKEN_PATH, readDevToken } from './dev-files.js';

/**
 * `livemux client`: the debugging client. Reconnect is off: a debugging tool should show a dropped
 * connection, not hide it.
 */
export function register(program: Command, cli: CliContext): void {
  program
    .command('client')
    .description('open one session: each stdin line is sent as a DATA message, each DATA received is printed as a line')
    .option('--host <host>', 'proxy address', '127.0.0.1')
    .option('--port <port>', 'proxy port', port(1), 7000)
    .option('--token <token>', `auth token (default: $LIVEMUX_TOKEN, then ./${DEV_TOKEN_PATH} from \`livemux up\`)`)
    .option('--business <name>', 'route to open', 'echo')
    .option('--meta <key=value>', 'session metadata, repeatable (e.g. --meta room_id=1)', keyValue)
    .option('--tls', 'connect with TLS')
    .option('--insecure', 'with --tls: do not verify the server certificate (dev only)')
    .option('--linger-ms <ms>', 'after stdin ends, close once no message has arrived for this long', integer(0, 'ms'), DEFAULT_LINGER_MS)
    .addHelpText(
      'after',
      '\nEvents (connection, GOAWAY, close) go to stderr. When stdin ends, replies still on their way are printed:\n' +
        'the session is closed gracefully once none has arrived for --linger-ms (so `echo hi | livemux client` shows the reply).\n' +
        'Exit status: 0 after a normal close, 1 on a connection or session failure, 2 on bad usage.',
    )
    .action(async (opts) => {
      if (opts.insecure && !opts.tls) throw new LivemuxError('ERR_USAGE', '--insecure: only meaningful with --tls');
      const token = opts.token ?? cli.env.LIVEMUX_TOKEN ?? readDevToken(cli.cwd);
      if (!token) throw new LivemuxError('ERR_USAGE', `no token: pass --token, set LIVEMUX_TOKEN, or run \`livemux up\` here to write ${DEV_TOKEN_PATH}`);
      cli.exitCode = await runClient(
        {
          host: opts.host,
          port: opts.port,
          token,
          business: opts.business,
          metadata: opts.meta ?? {},
          lingerMs: opts.lingerMs,
          ...(opts.tls ? { tls: { rejectUnauthorized: !opts.insecure } } : {}),
        },
        cli,
      );
    });
}

/**
 * How long the client waits for replies after stdin ends. A backend is told of a CLOSE at once and may
 * drop a reply it had not sent yet (the backend contract has no half-close), so a pipe would lose the
 * answer to its last line; like `nc -q`, the client waits for the replies to stop first.
 */
const DEFAULT_LINGER_MS = 1000;

interface ClientArgs {
  lingerMs: number;
  host: string;
  port: number;
  token: string;
  business: string;
  metadata: Record<string, string>;
  tls?: { rejectUnauthorized: boolean };
}


const NEWLINE = Buffer.from('\n');

/** Connects, opens the session and relays stdin and stdout; resolves with the exit status. */
async function runClient(parsed: ClientArgs, io: CliContext): Promise<number> {
  const log = (line: string): void => void io.stderr.write(`livemux client: ${line}\n`);
  const { connect } = await import('../client/client.js');
  let client: LivemuxClient;
  let session: ClientSession;
  try {
    client = await connect({ ...parsed, reconnect: false });
  } catch (err) {
    if (!(err instanceof LivemuxError)) throw err;
    log(err.message);
    return ExitCode.FAILURE;
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
    return ExitCode.FAILURE;
  }
  log(`session ${session.id} open on "${parsed.business}"`);
  session.on('close', (code, reason) => log(`session closed: ${codeName(code)}${reason ? ` (${reason})` : ''}`));

  try {
    const quiet = new QuietTimer(parsed.lingerMs);
    const printed = printMessages(session, io.stdout, quiet);
    await sendLines(session, io.stdin, log, quiet);
    return await printed;
  } finally {
    await client.close();
  }
}

/**
 * Prints each message as a line until the session ends. Iteration (not 'data' events) so a slow stdout
 * holds back credit and thus the server. Resolves with the exit status.
 */
async function printMessages(session: ClientSession, stdout: Writable, quiet: QuietTimer): Promise<number> {
  try {
    for await (const { payload } of session) {
      quiet.restart();
      if (!stdout.write(Buffer.concat([payload, NEWLINE]))) await once(stdout, 'drain');
    }
    return ExitCode.OK;
  } catch (err) {
    // The session ended abnormally; its 'close' listener already said why.
    if (err instanceof SessionClosedError) return ExitCode.FAILURE;
    throw err;
  }
}

/**
 * Sends stdin line by line; at its end, once the replies have stopped, closes the session gracefully.
 * Stops early if the session ends. A line over the payload limit is reported and skipped, the way a
 * shell reports one bad command.
 */
async function sendLines(session: ClientSession, stdin: Readable, log: (line: string) => void, quiet: QuietTimer): Promise<void> {
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
  if (session.state === SessionState.OPEN) await Promise.race([quiet.elapsed(), once(session, 'close')]);
  quiet.stop();
  await session.close();
}

/** Waits for a quiet spell: `elapsed()` resolves once `ms` pass without a message (`restart()`). */
class QuietTimer {
  private timer: NodeJS.Timeout | undefined;
  private waiter: (() => void) | null = null;

  constructor(private readonly ms: number) {}

  /** A message arrived: while someone waits, the quiet spell starts again. */
  restart(): void {
    if (this.waiter === null) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(this.waiter, this.ms);
  }

  elapsed(): Promise<void> {
    return new Promise((resolve) => {
      this.waiter = resolve;
      this.timer = setTimeout(resolve, this.ms);
    });
  }

  stop(): void {
    clearTimeout(this.timer);
  }
}
