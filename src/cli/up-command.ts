import { type ChildProcess, fork } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { Command } from '@commander-js/extra-typings';
import { PACKAGE_ROOT } from '../paths.js';
import { LivemuxError } from '../protocol/errors.js';
import { untilStop } from '../util/signals.js';
import { configFile, port, type CliContext } from './command.js';
import { JWT_SECRET_ENV } from '../config/proxy-config.js';
import { DEV_SECRET_PATH, DEV_TOKEN_PATH, PUSH_API_KEY_PATH, ensureDevSecret, ensurePushApiKey, writeDevToken } from './dev-files.js';
import { PUSH_NODE_FLAGS } from '../backends/push/node-flags.js';

/** Pools whose name matches a reference backend shipped in the box are started by `livemux up`. */
const REFERENCE_BACKENDS: Record<string, string> = {
  echo: 'echo-backend',
  chat: 'chat-backend',
  im: 'im-backend',
  push: 'push-backend',
};
/** V8 flags a reference backend runs with (set at its start: a process cannot change them later). */
const BACKEND_NODE_FLAGS: Record<string, readonly string[]> = { 'push-backend': PUSH_NODE_FLAGS };

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|localhost|\[::1\])$/;
const DEV_USER = 'dev-user';

export function register(program: Command, cli: CliContext): void {
  program
    .command('up')
    .description('development: the reference backends routes.yaml names, the proxy, and a dev token (what `npm start` runs)')
    .option('--config <file>', 'proxy config (default: ./livemux.yaml when present, else built-in defaults)')
    .addHelpText(
      'after',
      `\nWithout $${JWT_SECRET_ENV}, tokens are signed with a dev secret kept in ${DEV_SECRET_PATH} (made once),\n` +
        'so `livemux token --sub USER [--role ROLE]` run in this directory mints more users for the running proxy.\n' +
        'SIGTERM/SIGINT drains and stops; SIGHUP reloads routes.yaml.',
    )
    .option('--push-api-port <port>', 'port of the push HTTP API (docs/push.md) of the first push node (0: any free port)', port(), 7180)
    .action((opts) => runUp(cli, opts.config, opts.pushApiPort));
}

/**
 * `livemux up`: the whole system on one machine for development. Starts the reference backend of every
 * pool that has one (as child processes, on the loopback endpoints routes.yaml names), then the proxy,
 * then prints the address and a dev token (also written to .livemux/dev-token for the CLI client and the
 * examples). Without LIVEMUX_JWT_SECRET the dev secret of this directory signs tokens, so `livemux token`
 * can mint more of them for the running proxy, and they outlive a restart.
 */
async function runUp(cli: CliContext, configOption: string | undefined, pushApiPort: number): Promise<void> {
  // Loaded here, not at the top, so `livemux --help` does not load the proxy.
  const { loadProxyConfig } = await import('../config/proxy-config.js');
  const { loadRoutesConfig } = await import('../config/routes-config.js');
  const { mintToken } = await import('../proxy/auth.js');
  const { ProxyServer } = await import('../proxy/server.js');
  const secret = cli.env[JWT_SECRET_ENV] ?? ensureDevSecret(cli.cwd);
  const config = loadProxyConfig(configFile(cli, configOption), { ...cli.env, [JWT_SECRET_ENV]: secret });
  const routes = loadRoutesConfig(config.routesFile);

  // The Push backend's HTTP API takes this key (docs/push.md), kept in .livemux/ like the dev secret.
  const pushApiKey = cli.env.LIVEMUX_PUSH_API_KEY ?? ensurePushApiKey(cli.cwd);
  let pushApi = '';
  const children: ChildProcess[] = [];
  const stopChildren = (): void => {
    for (const c of children) c.kill('SIGTERM');
  };
  process.once('exit', stopChildren);
  try {
    for (const [pool, spec] of Object.entries(routes.pools)) {
      const command = REFERENCE_BACKENDS[pool];
      if (!command) continue;
      for (const { address } of spec.endpoints) {
        const [host, port] = splitAddress(address);
        if (!LOOPBACK.test(host)) continue;
        // Only the first push node takes the API's well-known port; others pick a free one.
        const httpArgs = command === 'push-backend' ? ['--http-port', pushApi === '' ? String(pushApiPort) : '0'] : [];
        const { child, line } = await startChild(command, ['--host', host, '--port', port, ...httpArgs], { LIVEMUX_PUSH_API_KEY: pushApiKey });
        children.push(child);
        if (command === 'push-backend' && pushApi === '') pushApi = `http://127.0.0.1:${String(line.httpPort)}`;
      }
    }
    // Written before the proxy listens, so whoever sees it listening finds the token.
    const token = await mintToken({ secret, sub: DEV_USER });
    writeDevToken(cli.cwd, token);
    const server = await ProxyServer.start(config);
    process.on('SIGHUP', () => server.reloadRoutes('signal'));
    const { host, port } = server.address;
    cli.stderr.write(
      [
        '',
        `livemux is up: clients connect to ${host}:${port}` +
          (server.adminPort ? `, status page at http://${config.admin!.host}:${server.adminPort}/` : ''),
        `dev token for user "${DEV_USER}" (also in ${DEV_TOKEN_PATH}):`,
        `  ${token}`,
        ...(pushApi === ''
          ? []
          : [`push API at ${pushApi}, dev API key (${cli.env.LIVEMUX_PUSH_API_KEY ? 'from $LIVEMUX_PUSH_API_KEY' : `also in ${PUSH_API_KEY_PATH}`}):`, `  ${pushApiKey}`]),
        'try, in another terminal:',
        '  node examples/two-sessions.mjs',
        '  node examples/im-chat.mjs alice bob    (and `node examples/im-chat.mjs bob alice` in a third)',
        `  npx livemux client --port ${port} --business echo`,
        ...(pushApi === ''
          ? []
          : [
              '  node examples/push-device.mjs            # a device; then, in a third terminal:',
              `  curl -X POST ${pushApi}/v1/push -H "Authorization: Bearer $(cat ${PUSH_API_KEY_PATH})" \\`,
              `       -H 'content-type: application/json' -d '{"to":{"users":["${DEV_USER}"]},"data":"hello"}'`,
            ]),
        `more users: npx livemux token --sub bob [--role host]   (signed with ${cli.env[JWT_SECRET_ENV] ? `$${JWT_SECRET_ENV}` : DEV_SECRET_PATH})`,
        'Ctrl-C drains and stops; SIGHUP reloads routes.yaml.',
        '',
      ].join('\n'),
    );
    await untilStop();
    await server.close();
  } finally {
    stopChildren();
  }
}

function splitAddress(address: string): [string, string] {
  const i = address.lastIndexOf(':');
  return [address.slice(0, i), address.slice(i + 1)];
}

/** Forks `livemux <command>` and resolves once it reports it is listening, with that JSON line. */
function startChild(command: string, args: string[], env: NodeJS.ProcessEnv): Promise<{ child: ChildProcess; line: Record<string, unknown> }> {
  const child = fork(join(PACKAGE_ROOT, 'bin', 'livemux.js'), [command, ...args], {
    execArgv: [...process.execArgv, ...(BACKEND_NODE_FLAGS[command] ?? [])],
    stdio: ['ignore', 'pipe', 'inherit', 'ipc'],
    env: { ...process.env, ...env },
  });
  return new Promise((resolve, reject) => {
    const lines = createInterface({ input: child.stdout! });
    const onExit = (code: number | null): void =>
      reject(new LivemuxError('ERR_BACKEND_START', `${command} ${args.join(' ')}: exited (${code}) before listening (its error is above)`));
    child.once('exit', onExit);
    // Keep reading: the backend's log lines go to our stdout, and an unread pipe would block it.
    lines.on('line', (line) => {
      process.stdout.write(`${line}\n`);
      if (!line.includes('"listening"')) return;
      child.off('exit', onExit);
      resolve({ child, line: JSON.parse(line) as Record<string, unknown> });
    });
  });
}
