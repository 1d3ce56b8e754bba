/**
 * The Push backend as it runs: a `livemux push-backend` process (in-memory store) behind a real proxy,
 * devices on the SDK's push client, business calls over real HTTP.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startProxy, startPushBackend, testToken, type RunningProcess } from '../helpers/processes.js';
import { RawClient } from '../helpers/raw-client.js';
import { FrameType } from '../../src/protocol/constants.js';
import { encodeFrame } from '../../src/protocol/encoder.js';
import { decodePushEvent, encodePushRequest } from '../../src/backends/push/push-codec.js';
import { adminStatus, metricValue } from '../helpers/metrics.js';
import { openDevice, type TestDevice } from '../helpers/push-device.js';
import { PUSH_TEST_KEY as KEY, postPush, pushRoutes, pushStatus } from '../helpers/push-api.js';

const LIMITED_KEY = 'integration-limited-key-0123456789';

let backend: Awaited<ReturnType<typeof startPushBackend>>;
let proxy: Awaited<ReturnType<typeof startProxy>>;
const devices: TestDevice[] = [];

/** Closes a device and waits until the backend has seen its session end (it no longer counts as online). */
async function goOffline(d: TestDevice): Promise<void> {
  const status = async (): Promise<number> => (await adminStatus<{ devices: number }>(backend.adminPort!)).devices;
  const before = await status();
  await d.close();
  devices.splice(devices.indexOf(d), 1);
  const deadline = Date.now() + 8_000;
  while ((await status()) >= before) {
    if (Date.now() > deadline) throw new Error('the backend never saw the device go offline');
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function device(user: string, id: string, topics: string[] = []): Promise<TestDevice> {
  const d = await openDevice(proxy.port, user, id);
  devices.push(d);
  await d.synced;
  if (topics.length > 0) await d.push.subscribe(topics);
  return d;
}

beforeAll(async () => {
  // Two keys from a config file (a literal key and one from the environment), one of them slow.
  const config = join(mkdtempSync(join(tmpdir(), 'livemux-push-')), 'push.yaml');
  writeFileSync(
    config,
    [
      'api_keys:',
      '  - { name: main, key_env: TEST_PUSH_KEY, rate: 100000 }',
      `  - { name: limited, key: ${LIMITED_KEY}, rate: 1, burst: 3 }`,
      'online_ack_window_ms: 1000',
    ].join('\n'),
  );
  backend = await startPushBackend(['--config', config, '--admin-port', '0'], { TEST_PUSH_KEY: KEY });
  proxy = await startProxy({ backends: [], routes: pushRoutes([backend.address]) });
});

afterAll(async () => {
  await Promise.all(devices.map((d) => d.close()));
  const procs: (RunningProcess | undefined)[] = [proxy, backend];
  for (const p of procs) await p?.stop();
});

describe('push backend, one node', () => {
  it('delivers a topic push once per device and counts exactly what devices acknowledged', async () => {
    const subscribed = await Promise.all([device('t-1', 'a', ['class:42']), device('t-2', 'a', ['class:42']), device('t-2', 'b', ['class:42'])]);
    const outsider = await device('t-3', 'a', ['class:43']);
    const res = await postPush(backend.api, { id: 'topic-1', to: { topic: 'class:42' }, data: 'quiz starts', priority: 'system' });
    expect(res).toEqual({ status: 202, body: { id: 'topic-1', targeted: 3 } });
    for (const d of subscribed) {
      const [p] = await d.waitFor(1);
      expect(p).toMatchObject({ id: 'topic-1', priority: 'system', audience: 'topic', topic: 'class:42', expiresAtMs: 0 });
      expect(p!.data.toString()).toBe('quiz starts');
    }
    const status = await pushStatus(backend.api, 'topic-1', (s) => s.delivered === 3);
    expect(status).toEqual({ id: 'topic-1', targeted: 3, delivered: 3, pending: 0, expired: 0, replaced: 0, unit: 'devices' });
    expect(outsider.received).toEqual([]);
    expect(await metricValue(backend.adminPort!, 'livemux_push_accepted_total', 'audience="topic"')).toBe(1);
    expect(await metricValue(backend.adminPort!, 'livemux_push_acks_counted_total')).toBe(3);
    expect(await metricValue(backend.adminPort!, 'livemux_push_api_responses_total', 'status="202"')).toBe(1);
    expect(await metricValue(backend.adminPort!, 'livemux_push_proxies_attached')).toBe(1);
  });

  it('delivers a push to all to every device, and repeats of the call are no-ops', async () => {
    const all = await Promise.all([device('all-1', 'a'), device('all-2', 'a'), device('all-3', 'a')]);
    const online = devices.length;
    const body = { id: 'all-1', to: { all: true }, data_base64: Buffer.from([1, 2, 3]).toString('base64') };
    const first = await postPush(backend.api, body);
    expect(first).toEqual({ status: 202, body: { id: 'all-1', targeted: online } });
    expect(await postPush(backend.api, body)).toEqual(first);
    for (const d of all) expect((await d.waitFor(1)).find((p) => p.id === 'all-1')!.data).toEqual(Buffer.from([1, 2, 3]));
    await pushStatus(backend.api, 'all-1', (s) => s.delivered === online);
    expect(await postPush(backend.api, { ...body, data: 'other', data_base64: undefined })).toMatchObject({ status: 409, body: { code: 'ID_CONFLICT' } });
    // Nothing came twice, though every device holds the push once (the SDK dedupes repeats).
    for (const d of all) expect(d.received.filter((p) => p.id === 'all-1')).toHaveLength(1);
  });

  it('keeps a TTL push for a device that connects later, collapsed by key, and never sends an online-only one', async () => {
    const early = await device('ttl-1', 'phone', ['score:7']);
    await goOffline(early);
    const live = await postPush(backend.api, { id: 'ttl-online', to: { topic: 'score:7' }, data: 'gone' });
    expect(live.body.targeted).toBe(0);
    for (const n of [1, 2, 3]) {
      const r = await postPush(backend.api, { id: `ttl-${n}`, to: { topic: 'score:7' }, data: `1:${n}`, ttl_s: 600, collapse_key: 'score' });
      expect(r).toEqual({ status: 202, body: { id: `ttl-${n}`, targeted: 1 } });
    }
    await postPush(backend.api, { id: 'ttl-other', to: { topic: 'score:7' }, data: 'news', ttl_s: 600 });
    const later = await device('ttl-1', 'phone');
    expect(await later.synced).toBe(2);
    expect(later.received.map((p) => p.id)).toEqual(['ttl-3', 'ttl-other']);
    expect(later.received[0]!.expiresAtMs).toBeGreaterThan(Date.now());
    await pushStatus(backend.api, 'ttl-3', (s) => s.delivered === 1);
    expect(await pushStatus(backend.api, 'ttl-1')).toEqual({ id: 'ttl-1', targeted: 1, delivered: 0, pending: 0, expired: 1, replaced: 1, unit: 'devices' });
    expect(await pushStatus(backend.api, 'ttl-online')).toMatchObject({ targeted: 0, delivered: 0 });
  });

  it('counts a TTL push that expired before its device came back as expired, and does not send it', async () => {
    const d = await device('exp-1', 'phone', ['exp']);
    await goOffline(d);
    await postPush(backend.api, { id: 'exp-1', to: { topic: 'exp' }, data: 'short', ttl_s: 1 });
    expect(await pushStatus(backend.api, 'exp-1')).toMatchObject({ targeted: 1, pending: 1, expired: 0 });
    await pushStatus(backend.api, 'exp-1', (s) => s.expired === 1);
    const back = await device('exp-1', 'phone');
    expect(await back.synced).toBe(0);
    expect(back.received).toEqual([]);
    expect(await pushStatus(backend.api, 'exp-1')).toEqual({ id: 'exp-1', targeted: 1, delivered: 0, pending: 0, expired: 1, replaced: 0, unit: 'devices' });
  });

  it('a device that asks and closes in one write still gets its answer: the session ends behind it (PROTOCOL.md §5.2)', async () => {
    const c = await RawClient.handshake(proxy.port, await testToken('t-hc'));
    c.open(1, 'push', { device_id: 'a' });
    await c.next(FrameType.OPEN_OK, 1);
    await c.next(FrameType.DATA, 1); // Synced
    c.send(
      Buffer.concat([
        encodeFrame(FrameType.DATA, 1, 1, encodePushRequest({ requestId: 7, subscribe: { topics: ['half-close'] } })),
        encodeFrame(FrameType.CLOSE, 0, 1, Buffer.alloc(0)),
      ]),
    );
    const reply = decodePushEvent((await c.next(FrameType.DATA, 1)).payload).reply;
    expect(reply).toMatchObject({ requestId: 7, ok: true, topics: ['half-close'] });
    await c.next(FrameType.CLOSE, 1);
    c.destroy();
  });

  it('keeps topics across sessions and lets the device change them', async () => {
    const d = await device('topics-1', 'tab', ['city:bj', 'class:1']);
    expect(await d.push.unsubscribe(['class:1'])).toEqual(['city:bj']);
    await goOffline(d);
    const again = await device('topics-1', 'tab');
    expect(await again.push.topics()).toEqual(['city:bj']);
    await expect(again.push.subscribe(['bad topic'])).rejects.toMatchObject({ code: 'ERR_PUSH_BAD_TOPIC' });
  });

  it('delivers a push to users to each of their online devices, counted per user', async () => {
    const [a1, a2, b1] = await Promise.all([device('u-a', 'phone'), device('u-a', 'tablet'), device('u-b', 'phone')]);
    const res = await postPush(backend.api, { id: 'users-1', to: { users: ['u-a', 'u-b', 'u-a'] }, data: 'your order shipped', ttl_s: 300 });
    expect(res).toEqual({ status: 202, body: { id: 'users-1', targeted: 2 } });
    for (const d of [a1, a2, b1]) expect((await d.waitFor(1))[0]).toMatchObject({ id: 'users-1', audience: 'users', topic: '' });
    expect(await pushStatus(backend.api, 'users-1', (s) => s.delivered === 2)).toEqual({ id: 'users-1', targeted: 2, delivered: 2, pending: 0, expired: 0, replaced: 0, unit: 'users' });
  });

  it('keeps a push to an offline user for the device that connects later, collapsed, and expires the online-only one', async () => {
    const d = await device('u-off', 'phone');
    await goOffline(d);
    for (const n of [1, 2]) await postPush(backend.api, { id: `uc-${n}`, to: { users: ['u-off'] }, data: `badge ${n}`, ttl_s: 300, collapse_key: 'badge' });
    await postPush(backend.api, { id: 'u-online', to: { users: ['u-off'] }, data: 'now or never' });
    const back = await device('u-off', 'phone');
    expect(await back.synced).toBe(1);
    expect(back.received.map((p) => p.id)).toEqual(['uc-2']);
    expect(await pushStatus(backend.api, 'uc-2', (s) => s.delivered === 1)).toMatchObject({ targeted: 1, delivered: 1, unit: 'users' });
    expect(await pushStatus(backend.api, 'uc-1')).toMatchObject({ targeted: 1, delivered: 0, pending: 0, expired: 1, replaced: 1, unit: 'users' });
    expect(await pushStatus(backend.api, 'u-online', (s) => s.expired === 1)).toMatchObject({ targeted: 1, delivered: 0, pending: 0 });
  });

  it('refuses bad keys, bad bodies and callers over their rate over real HTTP', async () => {
    expect(await postPush(backend.api, { to: { all: true }, data: 'x' }, 'wrong-key')).toMatchObject({ status: 401, body: { code: 'UNAUTHORIZED' } });
    expect(await postPush(backend.api, { to: { all: true }, data: 'x', ttl_s: 'soon' })).toMatchObject({ status: 422, body: { code: 'INVALID_BODY' } });
    expect(await postPush(backend.api, { to: { all: true }, data: 'x'.repeat(5000) })).toMatchObject({ status: 413, body: { code: 'PAYLOAD_TOO_LARGE' } });
    // The limited key allows 1 call/s with a burst of 3; the main key is not affected by it.
    const statuses: number[] = [];
    for (let i = 0; i < 5; i++) statuses.push((await postPush(backend.api, { to: { topic: 'rate' }, data: 'x' }, LIMITED_KEY)).status);
    expect(statuses).toEqual([202, 202, 202, 429, 429]);
    const limited = await fetch(`${backend.api}/v1/push/none`, { headers: { authorization: `Bearer ${LIMITED_KEY}` } });
    expect(limited.status).toBe(429);
    expect(Number(limited.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect((await postPush(backend.api, { to: { topic: 'rate' }, data: 'x' })).status).toBe(202);
  });
});
