import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { type ClientSession, type LivemuxClient, connect } from '../../src/client/index.js';
import { metricValue } from '../helpers/metrics.js';
import { startEchoBackend, startProxy, testToken } from '../helpers/processes.js';

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
  workers: number;
  connections: number;
  sessions: number;
  perWorker: WorkerStatus[];
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

async function until<T>(what: string, probe: () => Promise<T>, ok: (value: T) => boolean, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (ok(value)) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; last: ${JSON.stringify(value)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
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

it('runs a whole proxy in each worker: its own proxy id and its own stream to the backend', async () => {
  const s = await status();
  expect(s.perWorker.map((w) => w.proxyId)).toEqual(['edge-w0', 'edge-w1', 'edge-w2']);
  for (const w of s.perWorker) expect(Object.values(w.backends)).toEqual(['ready']);
  const served = new Set<string>();
  for (const { session } of clients) served.add((JSON.parse(await ask(session, '/whoami')) as { proxy: string }).proxy);
  expect([...served].sort()).toEqual(['edge-w0', 'edge-w1', 'edge-w2']);
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
  await until('every worker on routes version 2', status, (s) => s.perWorker.every((w) => w.routes.version === 2));
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
  const after = await until('the replacement to take its slot', status, (s) => s.perWorker[1]!.pid !== victim.pid && s.perWorker[1]!.accepting);
  expect(after.perWorker[1]).toMatchObject({ proxyId: 'edge-w1.1', generation: 1 });
  expect(await metricValue(proxy.adminPort, 'livemux_worker_restarts_total')).toBe(1);
  // Exactly the dead worker's 10 clients lost their connection; they reconnect (to whichever worker
  // is emptiest when they do) and their sessions are reopened.
  await until('every client connected again', status, (s) => s.connections === CLIENTS && s.sessions === CLIENTS);
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
