import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { LivemuxError } from '../protocol/errors.js';
import { PACKAGE_ROOT } from '../paths.js';
import { join } from 'node:path';

const USAGE = `livemux — multiplexing TCP proxy for live-streaming and messaging

Usage:
  livemux up [--config livemux.yaml]          dev: reference backends + proxy + a ready dev token
  livemux start [--config livemux.yaml] [--workers N|auto]
                                              run the proxy (SIGTERM drains, SIGHUP reloads routes);
                                              --workers: N proxy processes behind one port (auto = one per core)
  livemux echo-backend [--host H] [--port P]  run the reference echo backend
  livemux chat-backend [--host H] [--port P] [--redis URL] [--room-rate N] [--user-rate N]
                       [--lease-ttl-ms MS] [--presence-ttl-ms MS]
                       [--buffer-system N] [--buffer-high N] [--buffer-low N]
                       [--words a,b] [--word-mode reject|mask] [--admin-host H] [--admin-port P] [--log-level L]
                                              run the Chat backend (docs/chat.md); rooms in memory unless --redis
  livemux client [--host H] [--port P] [--token T] [--business B] [--meta k=v ...] [--tls] [--insecure]
                                              open a session; stdin lines out, received DATA in
  livemux token --sub USER [--ttl SECONDS]    mint an HS256 token (secret from LIVEMUX_JWT_SECRET)
  livemux check FILE                          validate a livemux.yaml or routes.yaml without starting
  livemux dispatch --redis URL [--host H] [--port P] [--limit N] [--max-lag-ms MS] [--refresh-ms MS]
                                              HTTP service telling clients which proxies to dial (docs/dispatch.md)
  livemux --version
`;

type Command = (argv: string[]) => Promise<number>;

const COMMANDS: Record<string, () => Promise<Command>> = {
  up: async () => (await import('./up-command.js')).runUpCommand,
  start: async () => (await import('./start-command.js')).runStartCommand,
  'echo-backend': async () => (await import('../backends/echo/main.js')).runEchoBackend,
  'chat-backend': async () => (await import('../backends/chat/main.js')).runChatBackend,
  client: async () => (await import('../client/cli.js')).runClientCommand,
  token: async () => runTokenCommand,
  check: async () => (await import('./check-command.js')).runCheckCommand,
  dispatch: async () => (await import('./dispatch-command.js')).runDispatchCommand,
};

/** Entry point of the `livemux` command. Exits the process with the command's status. */
export async function main(argv: string[]): Promise<void> {
  const [name, ...rest] = argv;
  if (name === '--version' || name === '-v') {
    const pkg = JSON.parse(readFileSync(join(PACKAGE_ROOT, 'package.json'), 'utf8')) as { version: string };
    console.log(pkg.version);
    return;
  }
  const load = name ? COMMANDS[name] : undefined;
  if (!load) {
    process.stderr.write(USAGE);
    process.exitCode = name === undefined || name === '--help' || name === '-h' ? 0 : 2;
    return;
  }
  try {
    const code = await (await load())(rest);
    if (code !== 0) process.exitCode = code;
  } catch (err) {
    if (err instanceof LivemuxError) {
      process.stderr.write(`livemux ${name}: ${err.message}\n`);
      process.exitCode = 1;
    } else throw err;
  }
}

async function runTokenCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: { sub: { type: 'string' }, ttl: { type: 'string', default: '86400' }, secret: { type: 'string' } },
  });
  const secret = values.secret ?? process.env.LIVEMUX_JWT_SECRET;
  if (!values.sub || !secret) {
    process.stderr.write('livemux token: --sub is required, and a secret via LIVEMUX_JWT_SECRET or --secret\n');
    return 2;
  }
  const { mintToken } = await import('../proxy/auth.js');
  console.log(await mintToken({ secret, sub: values.sub, ttlSeconds: Number(values.ttl) }));
  return 0;
}
