import { renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { type ClientSession, type LivemuxClient, connect } from '../../src/client/index.js';
import { type RunningProcess, startEchoBackend, startProxy, testToken } from '../helpers/processes.js';
import { adminStatus, metricValue } from '../helpers/metrics.js';

// Three echo backends and one proxy whose routes.yaml is rewritten on disk while sessions are open.
let backends: (RunningProcess & { port: number })[] = [];
let proxy: Awaited<ReturnType<typeof startProxy>>;
let client: LivemuxClient;
const addr = (i: number): string => `127.0.0.1:${backends[i]!.port}`;

/** Every close event seen, by session, so each test can assert exactly who was closed with what. */
const closes = new Map<ClientSession, number>();

// A check may take 500 ms before it counts as failed: on a busy machine a 200 ms budget timed out
// checks of a healthy, returning backend, and its sessions never made it back within the wait.
const HEALTH = { interval_ms: 500, timeout_ms: 500, unhealthy_threshold: 1, healthy_threshold: 1 };
/** How long a bounded poll waits: long enough for a loaded 2-core machine, short of the test timeout. */
const WAIT_MS = 15_000;

function routesFile(spec: { routes: Record<string, unknown>[]; pools: Record<string, string[]> }): Record<string, unknown> {
  return {
    version: 1,
    routes: spec.routes,
    pools: Object.fromEntries(
      Object.entries(spec.pools).map(([name, endpoints]) => [
        name,
        {
          protocol: 'grpc',
          endpoints: endpoints.map((address) => ({ address })),
          health_check: HEALTH,
          circuit_breaker: { reset_timeout_ms: 300 },
        },
      ]),
    ),
  };
}

/** Writes routes.yaml the way editors do: a temporary file renamed over the original. */
function writeRoutes(content: Record<string, unknown> | string): void {
  const file = join(proxy.dir, 'routes.yaml');
  writeFileSync(`${file}.tmp`, typeof content === 'string' ? content : stringify(content));
  renameSync(`${file}.tmp`, file);
}

async function status(): Promise<{
  routes: { version: number; lastReloadError: string | null };
  backends: Record<string, string>;
  health: Record<string, { healthy: boolean; breaker: string }>;
}> {
  return adminStatus(proxy.adminPort) as never;
}

async function until<T>(probe: () => Promise<T | undefined | false>, what: string, timeoutMs = WAIT_MS): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe().catch(() => undefined);
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

async function waitVersion(version: number): Promise<void> {
  await until(async () => (await status()).routes.version >= version, `routes version ${version}`);
}

interface Whoami {
  backend: string;
  reattach: boolean;
  business: string;
}

async function whoami(s: ClientSession): Promise<Whoami> {
  await s.send('/whoami');
  for await (const { payload } of s) return JSON.parse(payload.toString()) as Whoami;
  throw new Error(`session ${s.id} closed`);
}

async function open(business: string, metadata: Record<string, string> = {}): Promise<ClientSession> {
  const s = await client.open(business, metadata);
  s.on('close', (code) => closes.set(s, code));
  return s;
}

async function metric(name: string, labels: string): Promise<number> {
  return metricValue(proxy.adminPort, name, labels);
}

beforeAll(async () => {
  backends = await Promise.all([startEchoBackend(), startEchoBackend(), startEchoBackend()]);
  proxy = await startProxy({
    backends: [],
    routes: routesFile({ routes: [{ business: 'echo', pool: 'main' }], pools: { main: [addr(0), addr(1)] } }),
  });
  client = await connect({ host: '127.0.0.1', port: proxy.port, token: await testToken(), reconnect: false });
  // /readyz needs one backend; these tests need both streams up so round robin can use both.
  await until(async () => Object.values((await status()).backends).every((s) => s === 'ready'), 'both backend links');
});

afterAll(async () => {
  await client?.close();
  await proxy?.stop();
  await Promise.all(backends.map((b) => b.stop()));
});

describe('hot reload of routes.yaml', () => {
  let sessions: ClientSession[] = [];
  const boundTo = new Map<ClientSession, string>();

  it('adds a business while sessions are open, disturbing none of them', async () => {
    sessions = await Promise.all(Array.from({ length: 8 }, () => open('echo')));
    for (const s of sessions) boundTo.set(s, (await whoami(s)).backend);
    expect(new Set(boundTo.values())).toEqual(new Set([addr(0), addr(1)])); // round robin used both

    const written = Date.now();
    writeRoutes(
      routesFile({
        routes: [{ business: 'echo', pool: 'main' }, { business: 'news', pool: 'main' }],
        pools: { main: [addr(0), addr(1)] },
      }),
    );
    const news = await until(() => open('news'), 'business "news" to open');
    console.log(`new business usable ${Date.now() - written} ms after the write`);
    expect((await whoami(news)).business).toBe('news');
    for (const s of sessions) expect(await whoami(s)).toMatchObject({ backend: boundTo.get(s), reattach: false });
    expect(closes.size).toBe(0);
  });

  it('removing an endpoint moves exactly its sessions to the remaining one, as re-attaches', async () => {
    const onRemoved = sessions.filter((s) => boundTo.get(s) === addr(1));
    expect(onRemoved.length).toBeGreaterThan(0);
    writeRoutes(
      routesFile({
        routes: [{ business: 'echo', pool: 'main' }, { business: 'news', pool: 'main' }],
        pools: { main: [addr(0)] },
      }),
    );
    await waitVersion(3);
    for (const s of sessions) {
      const me = await whoami(s);
      expect(me.backend).toBe(addr(0));
      expect(me.reattach).toBe(onRemoved.includes(s)); // only the moved ones are re-attaches
    }
    expect(closes.size).toBe(0);
    // The news session was on one of the two endpoints too; moved or not, every session is counted.
    expect(await metric('livemux_sessions_relocated_total', 'reason="endpoint_removed",result="moved"')).toBeGreaterThanOrEqual(onRemoved.length);
  });

  it('changing the policy keeps every binding; new sessions follow the new policy', async () => {
    writeRoutes(
      routesFile({
        routes: [
          { business: 'echo', pool: 'main', policy: 'consistent_hash', hash_key: 'metadata.room_id' },
          { business: 'news', pool: 'main' },
        ],
        pools: { main: [addr(0), addr(2)] },
      }),
    );
    await waitVersion(4);
    for (const s of sessions) expect((await whoami(s)).backend).toBe(addr(0));
    const room = await Promise.all(Array.from({ length: 4 }, () => open('echo', { room_id: 'room-7' })));
    const owners = new Set(await Promise.all(room.map(async (s) => (await whoami(s)).backend)));
    expect(owners.size).toBe(1); // one owner per room
    await expect(client.open('echo')).rejects.toMatchObject({ wireCode: 209 }); // MISSING_HASH_KEY
    expect(closes.size).toBe(0);
  });

  it('an invalid file keeps the last good config and reports file:line:col; fixing it applies it', async () => {
    const invalid = stringify(
      routesFile({ routes: [{ business: 'echo', pool: 'main', policy: 'rr' }], pools: { main: [addr(0)] } }),
    );
    writeRoutes(invalid);
    const error = await until(async () => (await status()).routes.lastReloadError, 'the reload error on /status');
    expect(error).toMatch(/routes\.yaml:\d+:\d+ routes\[0\]\.policy: expected one of .*consistent_hash.*got "rr"/);
    expect((await status()).routes.version).toBe(4);
    expect(await metric('livemux_route_reloads_total', 'result="invalid"')).toBeGreaterThanOrEqual(1);
    const stillHashed = await open('echo', { room_id: 'room-7' }); // the consistent_hash route is still in effect
    expect((await whoami(stillHashed)).backend).toBeTruthy();

    writeRoutes(
      routesFile({
        routes: [
          { business: 'echo', pool: 'main', policy: 'consistent_hash', hash_key: 'metadata.room_id' },
          { business: 'news', pool: 'main' },
          { business: 'fixed', pool: 'main' },
        ],
        pools: { main: [addr(0), addr(2)] },
      }),
    );
    await until(() => open('fixed'), 'business "fixed" after the fix');
    expect((await status()).routes.lastReloadError).toBeNull();
    expect(closes.size).toBe(0);
  });

  it('disabling a business closes its sessions with BUSINESS_DISABLED and refuses new ones', async () => {
    const news = await open('news');
    writeRoutes(
      routesFile({
        routes: [
          { business: 'echo', pool: 'main', policy: 'consistent_hash', hash_key: 'metadata.room_id' },
          { business: 'news', pool: 'main', enabled: false },
          { business: 'fixed', pool: 'main' },
        ],
        pools: { main: [addr(0), addr(2)] },
      }),
    );
    await until(async () => closes.get(news), 'the news session to close');
    expect(closes.get(news)).toBe(208);
    await expect(client.open('news')).rejects.toMatchObject({ wireCode: 208 });
    for (const s of sessions) expect((await whoami(s)).backend).toBe(addr(0)); // the others are untouched
  });
});

describe('removing a business', () => {
  it('closes its sessions with UNKNOWN_BUSINESS, the code a reopen then gets (PROTOCOL.md §10)', async () => {
    writeRoutes(routesFile({ routes: [{ business: 'echo', pool: 'main' }, { business: 'gone-soon', pool: 'main' }], pools: { main: [addr(0)] } }));
    await until(() => open('gone-soon'), 'business "gone-soon" to be routed');
    const doomed = await open('gone-soon');
    writeRoutes(routesFile({ routes: [{ business: 'echo', pool: 'main' }], pools: { main: [addr(0)] } }));
    await until(async () => closes.get(doomed), 'the gone-soon session to close');
    expect(closes.get(doomed)).toBe(203);
    await expect(client.open('gone-soon')).rejects.toMatchObject({ wireCode: 203 });
  });
});

describe('rapid saves', () => {
  it('the last of several saves a few milliseconds apart is the one in effect', async () => {
    // File watchers coalesce or drop events for quick successive renames; the final state must win.
    for (let i = 0; i < 6; i++) {
      writeRoutes(routesFile({ routes: [{ business: `burst-${i}`, pool: 'main' }], pools: { main: [addr(0)] } }));
      await new Promise((r) => setTimeout(r, 15));
    }
    await until(() => open('burst-5'), 'the last save to take effect');
    await expect(client.open('burst-4')).rejects.toMatchObject({ wireCode: 203 });
  });
});

describe('failover', () => {
  it('a killed backend\'s sessions move to the next owner as re-attaches, and back to it when it returns', async () => {
    writeRoutes(
      routesFile({
        routes: [{ business: 'chat', pool: 'all', policy: 'consistent_hash', hash_key: 'metadata.room_id' }],
        pools: { all: [addr(0), addr(1), addr(2)] },
      }),
    );
    await until(async () => {
      const { backends: links, health } = await status();
      const all = [addr(0), addr(1), addr(2)];
      return all.every((a) => links[a] === 'ready' && health[a]?.healthy === true);
    }, 'three ready, healthy endpoints');
    const rooms = Array.from({ length: 24 }, (_, i) => `room-${i}`);
    const chats = await Promise.all(rooms.map((room) => open('chat', { room_id: room })));
    const owner = new Map<ClientSession, string>();
    for (const s of chats) owner.set(s, (await whoami(s)).backend);
    const victim = addr(1);
    const victims = chats.filter((s) => owner.get(s) === victim);
    expect(victims.length).toBeGreaterThan(0);

    const port = backends[1]!.port;
    await backends[1]!.stop('SIGKILL');
    await until(async () => (await status()).backends[victim] === 'down', 'the link to go down');
    await until(async () => (await status()).health[victim]?.breaker === 'open', 'the breaker to open');
    for (const s of chats) {
      const me = await whoami(s);
      if (victims.includes(s)) expect(me).toMatchObject({ reattach: true });
      else expect(me).toMatchObject({ backend: owner.get(s), reattach: false });
      expect(me.backend).not.toBe(victim);
    }
    expect(chats.filter((s) => closes.has(s))).toEqual([]);

    const movedBack = (): Promise<number> => metric('livemux_sessions_relocated_total', 'reason="owner_recovered",result="moved"');
    const movedBefore = await movedBack();
    backends[1] = await startEchoBackend(port);
    await until(async () => (await status()).backends[victim] === 'ready', 'the link to come back');
    // Once it is healthy again, the sessions moved off it go back to it: each room has one owner again.
    // Waited for on the proxy's count, not by asking the sessions: a /whoami in flight at the move goes
    // to the backend being left, which is told the session closed, so its answer never comes.
    await until(async () => (await movedBack()) >= movedBefore + victims.length, 'the moved sessions to return to their owner');
    for (const s of chats) {
      const me = await whoami(s);
      expect(me.backend).toBe(owner.get(s));
      expect(me.reattach).toBe(victims.includes(s));
    }
    expect(chats.filter((s) => closes.has(s))).toEqual([]);
    // New sessions of the rooms it owned go to it again once its breaker lets it back in.
    const room = rooms[chats.indexOf(victims[0]!)]!;
    await until(async () => {
      const s = await open('chat', { room_id: room });
      const me = await whoami(s);
      await s.close();
      return me.backend === victim;
    }, 'the owner to take new sessions again');
  }, 4 * WAIT_MS);
});
