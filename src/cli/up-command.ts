import { type ChildProcess, fork } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { loadProxyConfig } from '../config/proxy-config.js';
import { loadRoutesConfig } from '../config/routes-config.js';
import { PACKAGE_ROOT } from '../paths.js';
import { mintToken } from '../proxy/auth.js';
import { ProxyServer } from '../proxy/server.js';
import { untilSignal } from '../util/signals.js';

/** Pools whose name matches a reference backend shipped in the box are started by `livemux up`. */
const REFERENCE_BACKENDS: Record<string, string> = {
  echo: 'echo-backend',
  chat: 'chat-backend',
  im: 'im-backend',
};

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|localhost|\[::1\])$/;
const DEV_USER = 'dev-user';
/** Two more users with dev tokens, so two terminals can talk over IM (examples/im-chat.mjs). */
const DEMO_USERS = ['alice', 'bob'];

/**
 * `livemux up`: the whole system on one machine for development. Starts the reference backend of every
 * pool that has one (as child processes, on the loopback endpoints routes.yaml names), then the proxy,
 * then prints the address and a dev token (also written to .livemux/dev-token for the CLI client and the
 * examples). Without LIVEMUX_JWT_SECRET a random secret is used, so dev tokens die with the process.
 */
export async function runUpCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { config: { type: 'string' } } });
  const secret = process.env.LIVEMUX_JWT_SECRET ?? randomBytes(32).toString('base64url');
  const configFile = values.config ?? join(process.cwd(), 'livemux.yaml');
  const config = loadProxyConfig(configFile, { ...process.env, LIVEMUX_JWT_SECRET: secret });
  const routes = loadRoutesConfig(config.routesFile);

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
        children.push(await startChild(command, ['--host', host, '--port', port]));
      }
    }
    const server = await ProxyServer.start(config);
    process.on('SIGHUP', () => server.reloadRoutes('signal'));
    const token = await mintToken({ secret, sub: DEV_USER });
    mkdirSync('.livemux', { recursive: true });
    writeFileSync(join('.livemux', 'dev-token'), `${token}\n`, { mode: 0o600 });
    for (const user of DEMO_USERS) {
      writeFileSync(join('.livemux', `dev-token-${user}`), `${await mintToken({ secret, sub: user })}\n`, { mode: 0o600 });
    }
    const { host, port } = server.address;
    process.stderr.write(
      [
        '',
        `livemux is up: clients connect to ${host}:${port}` +
          (server.adminPort ? `, metrics at http://${config.admin!.host}:${server.adminPort}/metrics` : ''),
        `dev token for user "${DEV_USER}" (also in .livemux/dev-token):`,
        `  ${token}`,
        'try, in another terminal:',
        '  node examples/two-sessions.mjs',
        '  node examples/im-chat.mjs alice bob    (and `node examples/im-chat.mjs bob alice` in a third)',
        `  npx livemux client --port ${port} --business echo`,
        'Ctrl-C drains and stops.',
        '',
      ].join('\n'),
    );
    await untilSignal();
    await server.close();
    return 0;
  } finally {
    stopChildren();
  }
}

function splitAddress(address: string): [string, string] {
  const i = address.lastIndexOf(':');
  return [address.slice(0, i), address.slice(i + 1)];
}

/** Forks `livemux <command>` and resolves once it reports it is listening. */
function startChild(command: string, args: string[]): Promise<ChildProcess> {
  const child = fork(join(PACKAGE_ROOT, 'bin', 'livemux.js'), [command, ...args], { stdio: ['ignore', 'pipe', 'inherit', 'ipc'] });
  return new Promise((resolve, reject) => {
    const lines = createInterface({ input: child.stdout! });
    const onExit = (code: number | null): void => reject(new Error(`${command} exited (${code}) before listening`));
    child.once('exit', onExit);
    // Keep reading: the backend's log lines go to our stdout, and an unread pipe would block it.
    lines.on('line', (line) => {
      process.stdout.write(`${line}\n`);
      if (!line.includes('"listening"')) return;
      child.off('exit', onExit);
      resolve(child);
    });
  });
}
