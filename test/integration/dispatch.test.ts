import { Redis } from 'ioredis';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { type LivemuxClient, connect } from '../../src/client/index.js';
import { type RunningProcess, runLivemux, startEchoBackend, startProxy, testToken } from '../helpers/processes.js';
import { type RedisServer, startRedisServer } from '../helpers/redis-server.js';
import { freePort } from '../helpers/free-port.js';
import { untilValue } from '../helpers/until.js';

// Three proxies of cluster "chat" register in a real Redis; one dispatcher answers from it. Proxy a
// runs two workers (its primary registers for both); b is drained (SIGTERM while a client holds a
// session, so it stays up, draining) and c is killed (SIGKILL: it never deregisters, its record expires).
const HEARTBEAT_MS = 200;
const TTL_MS = 1_000;

type Proxy = Awaited<ReturnType<typeof startProxy>>;
let redis: RedisServer;
let backend: Awaited<ReturnType<typeof startEchoBackend>>;
let dispatcher: RunningProcess & { url: string };
const proxies: Record<'a' | 'b' | 'c', Proxy> = {} as never;
const clients: LivemuxClient[] = [];
let token: string;

async function startDispatcher(): Promise<RunningProcess & { url: string }> {
  const p = runLivemux(['dispatch', '--redis', redis.url, '--host', '127.0.0.1', '--port', '0', '--refresh-ms', '0']);
  const line = await p.waitFor((l) => l.msg === 'dispatch listening');
  return Object.assign(p, { url: `http://127.0.0.1:${line.port as number}` });
}

beforeAll(async () => {
  redis = await startRedisServer();
  backend = await startEchoBackend();
  for (const name of ['a', 'b', 'c'] as const) {
    proxies[name] = await startProxy({
      backends: [`127.0.0.1:${backend.port}`],
      ...(name === 'a' && { args: ['--workers', '2'] }),
      config: {
        proxy_id: `proxy-${name}`,
        timeouts: { drain_ms: 60_000 },
        dispatch: { redis: redis.url, cluster: 'chat', heartbeat_ms: HEARTBEAT_MS, ttl_ms: TTL_MS },
      },
    });
  }
  dispatcher = await startDispatcher();
  token = await testToken();
});

afterAll(async () => {
  for (const c of clients) await c.close();
  await Promise.all(Object.values(proxies).map((p) => p?.stop('SIGKILL')));
  await dispatcher?.stop();
  await backend?.stop();
  await redis?.stop();
});

const address = (p: Proxy): string => `127.0.0.1:${p.port}`;

async function redisGet(key: string): Promise<string | null> {
  const client = new Redis(redis.url);
  try {
    return await client.get(key);
  } finally {
    client.disconnect();
  }
}

async function dispatch(query = 'cluster=chat'): Promise<{ status: number; body: { addresses?: string[]; error?: string } }> {
  const res = await fetch(`${dispatcher.url}/v1/dispatch?${query}`);
  return { status: res.status, body: (await res.json()) as { addresses?: string[]; error?: string } };
}

async function connections(p: Proxy): Promise<number> {
  const status = (await (await fetch(`http://127.0.0.1:${p.adminPort}/status`)).json()) as { connections: number };
  return status.connections;
}

it('answers with every registered proxy of the cluster, least loaded first', async () => {
  const { status, body } = await dispatch();
  expect(status).toBe(200);
  // All idle: their order is their event loops' lag, then their ids.
  expect([...body.addresses!].sort()).toEqual([address(proxies.a), address(proxies.b), address(proxies.c)].sort());

  // Two clients on a (one per worker): once its heartbeat says so, a goes last.
  for (let i = 0; i < 2; i++) clients.push(await connect({ host: '127.0.0.1', port: proxies.a.port, token, reconnect: false }));
  await untilValue('a to rank last', () => dispatch(), (r) => r.body.addresses?.[2] === address(proxies.a));
  const record = await untilValue(
    'a\'s record to count both workers\' connections',
    async () => JSON.parse((await redisGet('livemux:dispatch:{chat}:proxy:proxy-a'))!) as Record<string, unknown>,
    (r) => r.connections === 2,
  );
  expect(record).toMatchObject({ id: 'proxy-a', cluster: 'chat', address: address(proxies.a), connections: 2, workers: 2, draining: false });
});

it('refuses malformed requests with 400 and names the problem', async () => {
  for (const query of ['', 'cluster=', 'cluster=a%20b', `cluster=${'x'.repeat(65)}`, 'cluster=chat&limit=0', 'cluster=chat&limit=abc']) {
    const { status, body } = await dispatch(query);
    expect(status, query).toBe(400);
    expect(body.error, query).toMatch(/^(cluster|limit): expected/);
  }
  expect((await dispatch('cluster=chat&limit=1')).body.addresses).toHaveLength(1);
  const unknown = await dispatch('cluster=nobody');
  expect(unknown.status).toBe(503);
  expect(unknown.body).toMatchObject({ addresses: [], error: 'no proxy available in cluster "nobody"' });
});

it('leaves out a draining proxy at once and a killed one once its registration expires; the SDK dials what is left', async () => {
  // b drains but stays up: a client's session keeps it open until the 60 s drain deadline.
  const held = await connect({ host: '127.0.0.1', port: proxies.b.port, token, reconnect: false });
  clients.push(held);
  await held.open('echo');
  await proxies.b.waitFor((l) => l.msg === 'connection authenticated');
  proxies.b.child.kill('SIGTERM');
  await proxies.b.waitFor((l) => l.msg === 'draining');
  await untilValue('b to leave dispatch', () => dispatch(), (r) => r.body.addresses?.includes(address(proxies.b)) === false, 5_000);
  expect(proxies.b.child.exitCode).toBeNull(); // still up, draining

  proxies.c.child.kill('SIGKILL');
  await proxies.c.exited;
  const killedAt = Date.now();
  const answer = await untilValue('c to expire', () => dispatch(), (r) => r.body.addresses?.includes(address(proxies.c)) === false, TTL_MS + 5_000);
  expect(Date.now() - killedAt).toBeLessThan(TTL_MS + 5_000);
  expect(answer.body.addresses).toEqual([address(proxies.a)]);

  // The SDK asks the dispatcher and lands on a, the only proxy left.
  const before = await connections(proxies.a);
  const client = await connect({ dispatch: `${dispatcher.url}/v1/dispatch?cluster=chat`, token, reconnect: false });
  clients.push(client);
  expect(await connections(proxies.a)).toBe(before + 1);
  const s = await client.open('echo');
  await s.send('via dispatch');
  for await (const { payload } of s) {
    expect(payload.toString()).toBe('via dispatch');
    break;
  }
});

it('falls back to the static addresses, in order, when the dispatcher is down', async () => {
  await dispatcher.stop();
  const dead = `127.0.0.1:${await freePort()}`;
  const before = await connections(proxies.a);
  const client = await connect({
    dispatch: `${dispatcher.url}/v1/dispatch?cluster=chat`,
    addresses: [dead, address(proxies.a)],
    token,
    reconnect: false,
  });
  clients.push(client);
  expect(await connections(proxies.a)).toBe(before + 1);

  // Without a static list, the failure is the dispatcher's.
  await expect(connect({ dispatch: `${dispatcher.url}/v1/dispatch?cluster=chat`, token, reconnect: false })).rejects.toMatchObject({ code: 'ERR_DISPATCH' });
});

it('removes its registration when it stops cleanly, long before it would expire', async () => {
  dispatcher = await startDispatcher();
  expect((await dispatch()).body.addresses).toEqual([address(proxies.a)]);
  for (const c of clients.splice(0)) await c.close();
  expect(await proxies.a.stop()).toBe(0);
  expect(await proxies.b.exited).toBe(0); // its last session ended with its client: drained
  const { status, body } = await dispatch();
  expect(status).toBe(503);
  expect(body.addresses).toEqual([]);
});
