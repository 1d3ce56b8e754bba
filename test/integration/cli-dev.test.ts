/**
 * The newcomer's path through the CLI, real processes: `livemux up` (what `npm start` runs) with no
 * secret configured, then `livemux token` in the same directory mints more users and roles that the
 * running proxy accepts, so two users talk in a Chat room and a host moderates; `livemux start` reads
 * ./livemux.yaml like `up` does.
 */
import { mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { afterAll, describe, expect, it } from 'vitest';
import { WireRole } from '../../src/backends/chat/chat-codec.js';
import { PUSH_NODE_FLAGS } from '../../src/backends/push/node-flags.js';
import { connect, openPush } from '../../src/client/index.js';
import { runCliCaptured } from '../helpers/cli.js';
import { ChatMember } from '../helpers/chat-member.js';
import { freePort } from '../helpers/free-port.js';
import { type RunningProcess, runLivemux } from '../helpers/processes.js';
import { until } from '../helpers/until.js';

const running: RunningProcess[] = [];
afterAll(async () => {
  await Promise.all(running.map((p) => p.stop()));
});

/** A directory with livemux.yaml (proxy on a free port, admin on any) and routes.yaml (`routes`). */
function projectDir(proxyPort: number, routes: Record<string, unknown>): string {
  const dir = mkdtempSync(join(tmpdir(), 'livemux-dev-'));
  writeFileSync(join(dir, 'routes.yaml'), stringify(routes));
  writeFileSync(
    join(dir, 'livemux.yaml'),
    stringify({ listen: { host: '127.0.0.1', port: proxyPort }, admin: { host: '127.0.0.1', port: 0 }, routes: './routes.yaml' }),
  );
  return dir;
}

/** `pid`'s child processes and their command lines (from /proc). */
function childProcesses(pid: number): { pid: number; argv: string[] }[] {
  const children: { pid: number; argv: string[] }[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) !== pid) continue;
      children.push({ pid: Number(entry), argv: readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0') });
    } catch {
      // gone meanwhile
    }
  }
  return children;
}

/** Whether `pid` has exited (gone, or a zombie no one has reaped yet). */
function exited(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    return true;
  }
}

/** Whether a server can listen on loopback `port` now (nothing holds it). */
async function bindable(port: number): Promise<boolean> {
  const server = createServer();
  const ok = await new Promise<boolean>((resolve) => {
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => resolve(true));
  });
  if (ok) await new Promise((r) => server.close(r));
  return ok;
}

async function member(port: number, user: string, token: string, room: string): Promise<ChatMember> {
  const client = await connect({ host: '127.0.0.1', port, token, reconnect: false });
  const m = new ChatMember(user, client, await client.open('chat', { room_id: room }));
  const reply = await m.request({ join: { sinceSeq: 0, role: WireRole.UNSPECIFIED } });
  expect(reply, `${user} joins`).toMatchObject({ ok: true });
  return m;
}

describe('livemux up, then livemux token for more users', () => {
  it('tokens minted for bob and a host in the same directory work against the running system', async () => {
    const [proxyPort, chatPort] = [await freePort(), await freePort()];
    const dir = projectDir(proxyPort, {
      version: 1,
      routes: [{ business: 'chat', pool: 'chat', policy: 'consistent_hash', hash_key: 'metadata.room_id' }],
      pools: { chat: { protocol: 'grpc', endpoints: [{ address: `127.0.0.1:${chatPort}` }] } },
    });
    // As on a developer's machine: no secret anywhere, so `up` makes the directory's dev secret.
    const up = runLivemux(['up'], { LIVEMUX_JWT_SECRET: undefined }, dir);
    running.push(up);
    await up.waitFor((l) => l.msg === 'livemux listening', 30_000);

    const devToken = readFileSync(join(dir, '.livemux', 'dev-token'), 'utf8').trim();
    const bob = await runCliCaptured(['token', '--sub', 'bob'], { cwd: dir });
    const carol = await runCliCaptured(['token', '--sub', 'carol', '--role', 'host'], { cwd: dir });
    expect([bob.code, carol.code]).toEqual([0, 0]);

    const room = `lobby-${process.pid}`;
    const dev = await member(proxyPort, 'dev-user', devToken, room);
    const b = await member(proxyPort, 'bob', bob.stdout.trim(), room);
    const host = await member(proxyPort, 'carol', carol.stdout.trim(), room);
    try {
      expect(await b.say('hi from bob')).toMatchObject({ ok: true });
      await dev.until(() => dev.messages.some((m) => m.senderId === 'bob'), 10_000, "bob's message");
      expect(Buffer.from(dev.messages.find((m) => m.senderId === 'bob')!.body).toString()).toBe('hi from bob');
      // The role claim reached the Chat backend: carol joined as host, and may moderate.
      expect(host.events.find((e) => e.joined)?.joined?.role).toBe(WireRole.HOST);
      expect(b.events.find((e) => e.joined)?.joined?.role).toBe(WireRole.MEMBER);
    } finally {
      await Promise.all([dev, b, host].map((m) => m.client.close()));
    }
  });
});

describe('livemux up with a push pool', () => {
  it('prints the push API and a dev key (kept in .livemux/push-api-key), and a call with it reaches the dev user\'s device', async () => {
    const [proxyPort, pushPort, apiPort] = [await freePort(), await freePort(), await freePort()];
    const dir = projectDir(proxyPort, {
      version: 1,
      routes: [{ business: 'push', pool: 'push', policy: 'consistent_hash', hash_key: 'user_id' }],
      pools: { push: { protocol: 'grpc', endpoints: [{ address: `127.0.0.1:${pushPort}` }] } },
    });
    const up = runLivemux(['up', '--push-api-port', String(apiPort)], { LIVEMUX_JWT_SECRET: undefined, LIVEMUX_PUSH_API_KEY: undefined }, dir);
    running.push(up);
    await up.waitFor((l) => l.msg === 'livemux listening', 30_000);
    const key = readFileSync(join(dir, '.livemux', 'push-api-key'), 'utf8').trim();
    const deadline = Date.now() + 10_000;
    while (!up.stderr().includes('Ctrl-C')) {
      if (Date.now() > deadline) throw new Error(`no banner: ${up.stderr()}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(up.stderr()).toContain(`push API at http://127.0.0.1:${apiPort}, dev API key (also in .livemux/push-api-key):\n  ${key}`);
    // The push node runs with its V8 flags (a young generation sized for its per-call garbage): set at
    // its start, so on its command line.
    const pushNode = childProcesses(up.child.pid!).find((c) => c.argv.includes('push-backend'))?.argv;
    expect(pushNode, 'the push node, a child of livemux up').toBeDefined();
    expect(pushNode).toEqual(expect.arrayContaining([...PUSH_NODE_FLAGS]));
    expect(up.stderr()).not.toContain('started without the V8 flags');

    const client = await connect({ host: '127.0.0.1', port: proxyPort, token: readFileSync(join(dir, '.livemux', 'dev-token'), 'utf8').trim(), reconnect: false });
    try {
      const push = await openPush(client, { deviceId: 'phone' });
      const got = new Promise<string>((resolve) => push.on('push', (p) => resolve(p.data.toString())));
      await new Promise<void>((resolve) => push.once('synced', () => resolve()));
      const res = await fetch(`http://127.0.0.1:${apiPort}/v1/push`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        body: JSON.stringify({ to: { users: ['dev-user'] }, data: 'hello' }),
      });
      expect(res.status).toBe(202);
      expect(await got).toBe('hello');
    } finally {
      await client.close();
    }
  });
});

describe('livemux up killed', () => {
  it('takes its backends with it: a SIGKILLed up (no signal handler runs) leaves no backend holding a port', async () => {
    const [proxyPort, echoPort, imPort, pushPort, apiPort] = [await freePort(), await freePort(), await freePort(), await freePort(), await freePort()];
    const dir = projectDir(proxyPort, {
      version: 1,
      routes: [
        { business: 'echo', pool: 'echo' },
        { business: 'im', pool: 'im', policy: 'consistent_hash', hash_key: 'user_id' },
        { business: 'push', pool: 'push', policy: 'consistent_hash', hash_key: 'user_id' },
      ],
      pools: Object.fromEntries(
        Object.entries({ echo: echoPort, im: imPort, push: pushPort }).map(([pool, port]) => [pool, { protocol: 'grpc', endpoints: [{ address: `127.0.0.1:${port}` }] }]),
      ),
    });
    const up = runLivemux(['up', '--push-api-port', String(apiPort)], {}, dir);
    running.push(up);
    await up.waitFor((l) => l.msg === 'livemux listening', 30_000);
    // The three kinds of backend process: echo's, the kit's (IM) and push's own.
    const backends = childProcesses(up.child.pid!).filter((c) => c.argv.some((a) => a.endsWith('-backend')));
    expect(backends.map((b) => b.argv.find((a) => a.endsWith('-backend'))).sort()).toEqual(['echo-backend', 'im-backend', 'push-backend']);

    up.child.kill('SIGKILL');
    try {
      await until(() => backends.every((b) => exited(b.pid)), 'every backend of the killed up exits', 20_000);
      for (const port of [echoPort, imPort, pushPort, apiPort]) expect(await bindable(port), `port ${port} released`).toBe(true);
    } finally {
      // A failing run must not leave the orphans it found behind.
      for (const b of backends) if (!exited(b.pid)) process.kill(b.pid, 'SIGKILL');
    }
  });
});

describe('livemux start', () => {
  it('reads ./livemux.yaml when --config is not given', async () => {
    const port = await freePort();
    const dir = projectDir(port, { version: 1, routes: [], pools: {} });
    const start = runLivemux(['start'], {}, dir);
    running.push(start);
    const line = await start.waitFor((l) => l.msg === 'livemux listening');
    expect(line.port).toBe(port);
  });
});
