import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { type ClientSession, type LivemuxClient, connect } from '../../src/client/index.js';
import { metricValue } from '../helpers/metrics.js';
import { startEchoBackend, startProxy, testToken } from '../helpers/processes.js';
import { untilValue } from '../helpers/until.js';

// `livemux start --workers 3` in front of one echo backend, with 30 SDK clients (one echo session each)
// that reconnect and reopen by themselves.
const WORKERS = 3;
const CLIENTS = 30;

interface WorkerStatus {
  slot: number;
  pid: number;
  proxyId: string;
  generation: number;
  accepting: boolean;
  connections: number;
  sessions: number;
  routes: { version: number };
  backends: Record<string, string>;
}
interface Status {
  ready: boolean;
  draining: boolean;
  workers: number;
  connections: number;
  sessions: number;
  sessionsByBusiness: Record<string, number>;
  totals: { connectionsAccepted: number; framesIn: number };
  routes: { version: number };
  backends: Record<string, string>;
  perWorker: (WorkerStatus & { logLevel: string; draining: boolean })[];
}

let backend: Awaited<ReturnType<typeof startEchoBackend>>;
let proxy: Awaited<ReturnType<typeof startProxy>>;
let token: string;
const clients: { client: LivemuxClient; session: ClientSession }[] = [];

beforeAll(async () => {
  backend = await startEchoBackend();
  proxy = await startProxy({ backends: [`127.0.0.1:${backend.port}`], args: ['--workers', String(WORKERS)], config: { proxy_id: 'edge' } });
  token = await testToken();
  for (let i = 0; i < CLIENTS; i++) {
    const client = await connect({ host: '127.0.0.1', port: proxy.port, token, reconnect: { initialMs: 20, maxMs: 200 } });
    clients.push({ client, session: await client.open('echo', {}, { reopen: true }) });
  }
});

afterAll(async () => {
  for (const { client } of clients) await client.close();
  await proxy?.stop('SIGKILL');
  await backend?.stop();
});

async function status(): Promise<Status> {
  return (await (await fetch(`http://127.0.0.1:${proxy.adminPort}/status`)).json()) as Status;
}

/** The next message on `s` after sending `text`. */
async function ask(s: ClientSession, text: string): Promise<string> {
  await s.send(text);
  for await (const { payload } of s) return payload.toString();
  throw new Error('session ended');
}

it('places connections on the least loaded worker: 30 clients, 10 on each; /metrics sums the workers', async () => {
  const s = await status();
  expect(s.workers).toBe(WORKERS);
  expect(s.connections).toBe(CLIENTS);
  expect(s.perWorker.map((w) => w.connections)).toEqual([10, 10, 10]);
  expect(s.perWorker.map((w) => w.sessions)).toEqual([10, 10, 10]);
  expect(await metricValue(proxy.adminPort, 'livemux_connections')).toBe(CLIENTS);
  expect(await metricValue(proxy.adminPort, 'livemux_sessions', 'business="echo"')).toBe(CLIENTS);
  expect(await metricValue(proxy.adminPort, 'livemux_workers')).toBe(WORKERS);
});

it('answers /status for the whole proxy, in the shape of one proxy\'s (the status page reads it the same)', async () => {
  const s = await status();
  expect(s).toMatchObject({ ready: true, draining: false, sessionsByBusiness: { echo: CLIENTS }, routes: { version: 1 } });
  expect(s.totals.connectionsAccepted).toBe(CLIENTS);
  expect(s.totals.framesIn).toBe(s.perWorker.reduce((n, w) => n + (w as unknown as Status).totals.framesIn, 0));
  expect(Object.values(s.backends)).toEqual(['ready']);
  const page = await fetch(`http://127.0.0.1:${proxy.adminPort}/`);
  expect(page.headers.get('content-type')).toMatch(/^text\/html/);
});

it('sets the log level of every worker through the primary\'s /log-level, and shows its /config', async () => {
  const post = (path: string): Promise<Response> => fetch(`http://127.0.0.1:${proxy.adminPort}${path}`, { method: 'POST' });
  expect(await (await post('/log-level?level=debug')).json()).toEqual({ level: 'debug', previous: 'info' });
  await untilValue('every worker at debug', status, (s) => s.perWorker.every((w) => w.logLevel === 'debug'));
  expect((await post('/log-level?level=info')).status).toBe(200);
  await untilValue('every worker back at info', status, (s) => s.perWorker.every((w) => w.logLevel === 'info'));
  const config = (await (await fetch(`http://127.0.0.1:${proxy.adminPort}/config`)).json()) as {
    proxy: { proxyId: string; auth: { jwtSecret: string } };
    workers: number;
    routes: { tableVersion: number; routes: unknown[] };
  };
  expect(config).toMatchObject({ proxy: { proxyId: 'edge', auth: { jwtSecret: '[redacted]' } }, workers: WORKERS, routes: { tableVersion: 1 } });
});

it('runs a whole proxy in each worker: its own proxy id and its own stream to the backend', async () => {
  const s = await status();
  expect(s.perWorker.map((w) => w.proxyId)).toEqual(['edge-w0', 'edge-w1', 'edge-w2']);
  for (const w of s.perWorker) expect(Object.values(w.backends)).toEqual(['ready']);
  const served = new Set<string>();
  for (const { session } of clients) served.add((JSON.parse(await ask(session, '/whoami')) as { proxy: string }).proxy);
  expect([...served].sort()).toEqual(['edge-w0', 'edge-w1', 'edge-w2']);
});

it('starts each worker with two malloc arenas (MALLOC_ARENA_MAX), unless livemux\'s environment sets it', async () => {
  for (const w of (await status()).perWorker) {
    const env = readFileSync(`/proc/${w.pid}/environ`, 'utf8').split('\0');
    expect(env).toContain(`MALLOC_ARENA_MAX=${process.env.MALLOC_ARENA_MAX ?? '2'}`);
  }
});

it('fans a room out once per worker: every member on every worker gets each message exactly once', async () => {
  for (const { session } of clients) await session.send('/sub room');
  // The backend handles a session's events in order: an echo after /sub means the subscription is in.
  for (const { session } of clients) expect(await ask(session, 'in?')).toBe('in?');
  const got = clients.map(() => [] as string[]);
  const reading = clients.map(async ({ session }, i) => {
    for await (const { payload } of session) {
      got[i]!.push(payload.toString());
      if (payload.toString() === 'three') return;
    }
  });
  for (const text of ['one', 'two', 'three']) await clients[0]!.session.send(`/pub room ${text}`);
  await Promise.all(reading);
  for (const messages of got) expect(messages).toEqual(['one', 'two', 'three']);
  for (const { session } of clients) await session.send('/unsub room');
});

it('reloads routes.yaml in every worker', async () => {
  const routes = {
    version: 1,
    routes: ['echo', 'chat', 'extra'].map((business) => ({ business, pool: 'echo' })),
    pools: { echo: { protocol: 'grpc', endpoints: [{ address: `127.0.0.1:${backend.port}` }] } },
  };
  writeFileSync(join(proxy.dir, 'routes.yaml'), stringify(routes));
  await untilValue('every worker on routes version 2', status, (s) => s.perWorker.every((w) => w.routes.version === 2));
  // One connection per worker (least connections puts each on the next one): 'extra' opens on all.
  const extra = await Promise.all(Array.from({ length: WORKERS }, () => connect({ host: '127.0.0.1', port: proxy.port, token, reconnect: false })));
  for (const c of extra) expect(await ask(await c.open('extra'), 'x')).toBe('x');
  for (const c of extra) await c.close();
});

it('replaces a worker that dies; its clients reconnect, and new ones fill the replacement first', async () => {
  const victim = (await status()).perWorker[1]!;
  let reconnects = 0;
  for (const { client } of clients) client.on('reconnected', () => reconnects++);
  process.kill(victim.pid, 'SIGKILL');
  const after = await untilValue('the replacement to take its slot', status, (s) => s.perWorker[1]!.pid !== victim.pid && s.perWorker[1]!.accepting);
  expect(after.perWorker[1]).toMatchObject({ proxyId: 'edge-w1.1', generation: 1 });
  expect(await metricValue(proxy.adminPort, 'livemux_worker_restarts_total')).toBe(1);
  // Exactly the dead worker's 10 clients lost their connection; they reconnect (to whichever worker
  // is emptiest when they do) and their sessions are reopened.
  await untilValue('every client connected again', status, (s) => s.connections === CLIENTS && s.sessions === CLIENTS);
  expect(reconnects).toBe(10);
  for (const { session } of clients) expect(await ask(session, 'still here')).toBe('still here');
  // The replacement has the fewest connections: every new client goes there until it catches up.
  const load = (await status()).perWorker.map((w) => w.connections);
  const deficit = Math.min(load[0]!, load[2]!) - load[1]!;
  const extra = await Promise.all(Array.from({ length: deficit }, () => connect({ host: '127.0.0.1', port: proxy.port, token, reconnect: false })));
  expect((await status()).perWorker[1]!.connections).toBe(load[1]! + deficit);
  for (const c of extra) await c.close();
});

it('drains every worker on SIGTERM, then exits 0', async () => {
  const goaways = clients.map(({ client }) => new Promise<void>((resolve) => client.once('goaway', () => resolve())));
  proxy.child.kill('SIGTERM');
  await Promise.all(goaways);
  for (const { session } of clients) await session.close();
  expect(await proxy.exited).toBe(0);
});

it('SIGHUP reloads routes.yaml in every worker; POST /drain drains every worker and stops taking connections, the process staying up until SIGTERM', async () => {
  // routes_watch off: only the signal reloads.
  const drained = await startProxy({ backends: [`127.0.0.1:${backend.port}`], args: ['--workers', '2'], config: { routes_watch: false, timeouts: { drain_ms: 60_000 } } });
  const adminStatus = async (): Promise<Status> => (await (await fetch(`http://127.0.0.1:${drained.adminPort}/status`)).json()) as Status;
  try {
    const routes = { version: 1, routes: [{ business: 'echo', pool: 'echo' }, { business: 'extra', pool: 'echo' }], pools: { echo: { protocol: 'grpc', endpoints: [{ address: `127.0.0.1:${backend.port}` }] } } };
    writeFileSync(join(drained.dir, 'routes.yaml'), stringify(routes));
    drained.child.kill('SIGHUP');
    await untilValue('both workers on routes version 2', adminStatus, (s) => s.perWorker.every((w) => w.routes.version === 2));

    const held = await Promise.all([0, 1].map(() => connect({ host: '127.0.0.1', port: drained.port, token, reconnect: false })));
    // Each holds a session, so its worker keeps it open (draining) until the client closes it.
    const sessions = await Promise.all(held.map((c) => c.open('echo')));
    const goaways = held.map((c) => new Promise<void>((resolve) => c.once('goaway', () => resolve())));
    const res = await fetch(`http://127.0.0.1:${drained.adminPort}/drain`, { method: 'POST' });
    expect(res.status).toBe(202);
    await Promise.all(goaways);
    expect((await fetch(`http://127.0.0.1:${drained.adminPort}/readyz`)).status).toBe(503);
    const s = await adminStatus();
    expect(s.draining).toBe(true);
    expect(s.perWorker.map((w) => w.draining)).toEqual([true, true]);
    await expect(connect({ host: '127.0.0.1', port: drained.port, token, reconnect: false })).rejects.toThrow();
    for (const session of sessions) await session.close();
    for (const c of held) await c.close();
    expect(drained.child.exitCode).toBeNull();
  } finally {
    expect(await drained.stop()).toBe(0);
  }
});
