/**
 * Push across nodes: two `livemux push-backend` processes sharing a Redis, two proxies routing `push`
 * to both (consistent hash on user_id), devices on both proxies, business calls to either node.
 */
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startProxy, startPushBackend } from '../helpers/processes.js';
import { openDevice, type TestDevice } from '../helpers/push-device.js';
import { startRedisServer, type RedisServer } from '../helpers/redis-server.js';
import { PUSH_TEST_KEY as KEY, postPush, pushRoutes, pushStatus } from '../helpers/push-api.js';

type Node = Awaited<ReturnType<typeof startPushBackend>>;
type Proxy = Awaited<ReturnType<typeof startProxy>>;

let redis: RedisServer;
let nodes: Node[] = [];
let proxies: Proxy[] = [];
const devices: TestDevice[] = [];

async function startNode(): Promise<Node> {
  return startPushBackend(['--redis', redis.url, '--admin-port', '0'], { LIVEMUX_PUSH_API_KEY: KEY });
}

async function devicesOn(node: Node): Promise<number> {
  const res = await fetch(`http://127.0.0.1:${node.adminPort!}/status`);
  return ((await res.json()) as { devices: number }).devices;
}

/** Opens a device through `proxy` and resolves with it and the node its session landed on. */
async function device(proxy: Proxy, user: string, id: string): Promise<{ d: TestDevice; node: Node }> {
  const before = await Promise.all(nodes.map(devicesOn));
  const d = await openDevice(proxy.port, user, id);
  devices.push(d);
  await d.synced;
  const after = await Promise.all(nodes.map(devicesOn));
  const i = after.findIndex((n, k) => n > before[k]!);
  if (i < 0) throw new Error(`device ${user}/${id}: no node counts it`);
  return { d, node: nodes[i]! };
}

/** A user whose device, opened through `proxy`, lands on `want` (consistent hashing decides; try names). */
async function deviceOnNode(proxy: Proxy, want: Node, prefix: string): Promise<TestDevice> {
  for (let i = 0; i < 40; i++) {
    const { d, node } = await device(proxy, `${prefix}-${i}`, 'phone');
    if (node === want) return d;
    // Closed, and gone from its node's count before the next try counts again.
    const count = await devicesOn(node);
    await d.close();
    devices.splice(devices.indexOf(d), 1);
    const deadline = Date.now() + 8_000;
    while ((await devicesOn(node)) >= count) {
      if (Date.now() > deadline) throw new Error('a closed device never left its node');
      await new Promise((r) => setTimeout(r, 20));
    }
  }
  throw new Error(`no user of ${prefix}-* hashed to the wanted node`);
}

beforeAll(async () => {
  redis = await startRedisServer();
  nodes = [await startNode(), await startNode()];
  const routes = pushRoutes(nodes.map((n) => n.address));
  proxies = [await startProxy({ backends: [], routes }), await startProxy({ backends: [], routes })];
});

afterAll(async () => {
  await Promise.all(devices.map((d) => d.close()));
  for (const p of [...proxies, ...nodes]) await p.stop();
  await redis?.stop();
});

describe('push across nodes (Redis)', () => {
  it('delivers a push to a user accepted by one node to a device on another proxy and another node', async () => {
    const [a, b] = nodes as [Node, Node];
    const d = await deviceOnNode(proxies[1]!, b, 'far');
    const user = d.client.welcome.userId;
    const res = await postPush(a.api, { id: 'cross-1', to: { users: [user] }, data: 'from node a', ttl_s: 60 });
    expect(res).toEqual({ status: 202, body: { id: 'cross-1', targeted: 1 } });
    expect((await d.waitFor(1))[0]).toMatchObject({ id: 'cross-1', audience: 'users' });
    // Any node answers for any push: the counters live in Redis.
    expect(await pushStatus(b.api, 'cross-1', (s) => s.delivered === 1)).toMatchObject({ targeted: 1, delivered: 1, pending: 0, unit: 'users' });
    const live = await postPush(a.api, { id: 'cross-online', to: { users: [user] }, data: 'online only' });
    expect(live.status).toBe(202);
    expect((await d.waitFor(2))[1]).toMatchObject({ id: 'cross-online', expiresAtMs: 0 });
    await pushStatus(a.api, 'cross-online', (s) => s.delivered === 1);
  });

  it('publishes a topic push once per proxy, reaching devices bound to both nodes on both proxies', async () => {
    const [a, b] = nodes as [Node, Node];
    // Every (proxy, node) pair holds one device.
    const opened = [
      await deviceOnNode(proxies[0]!, a, 'topic-a'),
      await deviceOnNode(proxies[0]!, b, 'topic-b'),
      await deviceOnNode(proxies[1]!, a, 'topic-c'),
      await deviceOnNode(proxies[1]!, b, 'topic-d'),
    ].map((d) => ({ d }));
    for (const { d } of opened) await d.push.subscribe(['match:9']);
    const res = await postPush(nodes[0]!.api, { id: 'topic-x', to: { topic: 'match:9' }, data: 'goal', ttl_s: 60 });
    expect(res).toEqual({ status: 202, body: { id: 'topic-x', targeted: 4 } });
    for (const { d } of opened) expect((await d.waitFor(1)).filter((p) => p.id === 'topic-x')).toHaveLength(1);
    expect(await pushStatus(nodes[1]!.api, 'topic-x', (s) => s.delivered === 4)).toMatchObject({ targeted: 4, delivered: 4, pending: 0, unit: 'devices' });
    // Online-only: counted over both nodes' online devices.
    const online = await postPush(nodes[1]!.api, { id: 'topic-online', to: { topic: 'match:9' }, data: 'half time' });
    expect(online.body.targeted).toBe(4);
  });

  it('reaches a proxy attached to another node only, through that node, once', async () => {
    const [a, b] = nodes as [Node, Node];
    // This proxy routes push to node b alone: node a has no stream to it.
    const lonely = await startProxy({ backends: [], routes: pushRoutes([b.address]) });
    proxies.push(lonely);
    const { d, node } = await device(lonely, 'lonely-1', 'phone');
    expect(node).toBe(b);
    await d.push.subscribe(['relay']);
    // Node b has written that it is attached to the new proxy (three proxies now).
    const store = new Redis(redis.url);
    const bNode = b.lines.find((l) => l.event === 'listening')!.node as string;
    const deadline = Date.now() + 8_000;
    while ((await store.scard(`livemux:push:px:${bNode}`)) < 3) {
      if (Date.now() > deadline) throw new Error('node b never recorded the new proxy');
      await new Promise((r) => setTimeout(r, 20));
    }
    await store.quit();
    const res = await postPush(a.api, { id: 'relayed-1', to: { topic: 'relay' }, data: 'via b' });
    expect(res).toEqual({ status: 202, body: { id: 'relayed-1', targeted: 1 } });
    expect((await d.waitFor(1))[0]).toMatchObject({ id: 'relayed-1', topic: 'relay' });
    await pushStatus(a.api, 'relayed-1', (s) => s.delivered === 1);
  });

  it('loses no push with a TTL when a node dies: its devices reopen on the other node and get what was kept', async () => {
    const [a, b] = nodes as [Node, Node];
    const d = await deviceOnNode(proxies[0]!, b, 'victim');
    await d.push.subscribe(['alerts']);
    const user = d.client.welcome.userId;
    const sent = d.received.length;
    await b.stop('SIGKILL');
    // Accepted while the device's session is moving to the surviving node.
    await postPush(a.api, { id: 'kept-user', to: { users: [user] }, data: 'kept for you', ttl_s: 300 });
    await postPush(a.api, { id: 'kept-topic', to: { topic: 'alerts' }, data: 'kept for the topic', ttl_s: 300 });
    const got = await d.waitFor(sent + 2);
    expect(got.slice(sent).map((p) => p.id).sort()).toEqual(['kept-topic', 'kept-user']);
    await pushStatus(a.api, 'kept-user', (s) => s.delivered === 1);
    await pushStatus(a.api, 'kept-topic', (s) => s.delivered === 1);
    nodes = [a];
  });
});
