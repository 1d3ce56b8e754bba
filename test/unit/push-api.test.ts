import { once } from 'node:events';
import { type AddressInfo, type Socket, connect } from 'node:net';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createPushBackend, type PushBackend } from '../../src/backends/push/push-backend.js';
import { ApiErrors } from '../../src/backends/push/api-errors.js';
import { MemoryPushStore } from '../../src/backends/push/memory-store.js';

const KEY = 'test-key-0123456789abcdef';
const SLOW_KEY = 'slow-key-0123456789abcdef';
const auth = { authorization: `Bearer ${KEY}` };

let push: PushBackend;

beforeEach(() => {
  push = createPushBackend({
    apiKeys: [
      { name: 'main', key: KEY, rate: 1000, burst: 1000 },
      { name: 'slow', key: SLOW_KEY, rate: 0.5, burst: 2 },
    ],
    maxDataBytes: 16,
    bodyLimitBytes: 2048,
    maxUsersPerPush: 3,
    maxTtlS: 3600,
  });
});
afterEach(async () => {
  await push.close();
});

async function post(body: unknown, headers: Record<string, string> = auth): Promise<{ status: number; body: Record<string, unknown>; headers: Record<string, unknown> }> {
  const res = await push.api.inject({
    method: 'POST',
    url: '/v1/push',
    headers: { 'content-type': 'application/json', ...headers },
    payload: typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: res.statusCode, body: res.json(), headers: res.headers };
}

describe('push API', () => {
  it('accepts a topic push with 202 {id, targeted} and reads it back', async () => {
    const res = await post({ id: 'p-1', to: { topic: 'class:42' }, data: 'hi' });
    expect(res).toMatchObject({ status: 202, body: { id: 'p-1', targeted: 0 } });
    const got = await push.api.inject({ method: 'GET', url: '/v1/push/p-1', headers: auth });
    expect(got.statusCode).toBe(200);
    expect(got.json()).toEqual({ id: 'p-1', targeted: 0, delivered: 0, pending: 0, expired: 0, replaced: 0, unit: 'devices' });
  });

  it('keeps at most maxRecords pushes: the oldest dropped answers 404 NOT_FOUND, the newer ones their counts', async () => {
    const small = createPushBackend({ apiKeys: [{ name: 'main', key: KEY, rate: 1000, burst: 1000 }], maxRecords: 2 });
    try {
      for (const id of ['old-t', 'old-u', 'new-t', 'new-u']) {
        const to = id.endsWith('-t') ? { topic: 'class:1' } : { users: ['ann'] };
        expect((await small.api.inject({ method: 'POST', url: '/v1/push', headers: { 'content-type': 'application/json', ...auth }, payload: JSON.stringify({ id, to, data: 'x', ttl_s: 60 }) })).statusCode).toBe(202);
      }
      const status = async (id: string) => small.api.inject({ method: 'GET', url: `/v1/push/${id}`, headers: auth });
      for (const id of ['old-t', 'old-u']) expect((await status(id)).json()).toMatchObject({ code: 'NOT_FOUND' });
      expect((await status('new-t')).json()).toMatchObject({ id: 'new-t', targeted: 0, unit: 'devices' });
      expect((await status('new-u')).json()).toMatchObject({ id: 'new-u', targeted: 1, pending: 1, unit: 'users' });
    } finally {
      await small.close();
    }
  });

  it('generates an id when none is given', async () => {
    const res = await post({ to: { all: true }, data_base64: 'AAEC' });
    expect(res.status).toBe(202);
    expect(res.body.id).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('treats a generated id as the caller\'s own from then on: a repeat with it is a no-op, another body a conflict', async () => {
    const first = await post({ to: { users: ['ann'] }, data: 'x', ttl_s: 60 });
    const id = first.body.id as string;
    expect(await post({ id, to: { users: ['ann'] }, data: 'x', ttl_s: 60 })).toMatchObject({ status: 202, body: { id, targeted: 1 } });
    expect(await post({ id, to: { users: ['ann'] }, data: 'y', ttl_s: 60 })).toMatchObject({ status: 409, body: { code: 'ID_CONFLICT' } });
    expect((await push.metrics.accepted.get()).values.reduce((n, v) => n + v.value, 0)).toBe(1);
  });

  it('answers a repeat with the same id and body with the same answer, and a different body with 409', async () => {
    const first = await post({ id: 'same', to: { all: true }, data: 'x', ttl_s: 60 });
    const again = await post({ id: 'same', to: { all: true }, data: 'x', ttl_s: 60 });
    expect(again).toMatchObject({ status: 202, body: first.body });
    const other = await post({ id: 'same', to: { all: true }, data: 'y', ttl_s: 60 });
    expect(other).toMatchObject({ status: 409, body: { code: 'ID_CONFLICT' } });
  });

  it('creates a push once when calls with the same id race, answering each the same', async () => {
    const body = { id: 'race', to: { topic: 'a' }, data: 'x', ttl_s: 60 };
    const answers = await Promise.all(Array.from({ length: 5 }, () => post(body)));
    for (const a of answers) expect(a).toMatchObject({ status: 202, body: { id: 'race' } });
    expect((await push.metrics.accepted.get()).values.reduce((n, v) => n + v.value, 0)).toBe(1);
  });

  it('refuses a missing, malformed or unknown key with 401 before reading the body', async () => {
    for (const headers of [{} as Record<string, string>, { authorization: KEY }, { authorization: 'Bearer nope' }, { authorization: 'Basic abc' }]) {
      const res = await post('{not json', headers);
      expect(res).toMatchObject({ status: 401, body: { code: 'UNAUTHORIZED' } });
      expect(JSON.stringify(res.body)).not.toContain('nope');
    }
  });

  it('rate-limits per key with 429 and Retry-After, leaving other keys alone', async () => {
    const slow = { authorization: `Bearer ${SLOW_KEY}` };
    expect((await post({ to: { all: true }, data: 'a' }, slow)).status).toBe(202);
    expect((await post({ to: { all: true }, data: 'b' }, slow)).status).toBe(202);
    const limited = await post({ to: { all: true }, data: 'c' }, slow);
    expect(limited).toMatchObject({ status: 429, body: { code: 'RATE_LIMITED', retry_after_s: 2 } });
    expect(limited.headers['retry-after']).toBe('2');
    expect((await post({ to: { all: true }, data: 'd' })).status).toBe(202);
  });

  it('answers 503 UNAVAILABLE, without creating the push, when the rate check cannot reach the store', async () => {
    class Unreachable extends MemoryPushStore {
      override takeCall(): Promise<number> {
        return Promise.reject(new Error('connection refused'));
      }
    }
    const down = createPushBackend({ store: new Unreachable(), apiKeys: [{ name: 'main', key: KEY, rate: 1000, burst: 1000 }] });
    try {
      const res = await down.api.inject({ method: 'POST', url: '/v1/push', headers: { 'content-type': 'application/json', ...auth }, payload: JSON.stringify({ id: 'p', to: { all: true }, data: 'x' }) });
      expect(res.statusCode).toBe(503);
      expect(res.json()).toEqual({ code: 'UNAVAILABLE', message: 'push store unavailable' });
      expect((await down.metrics.accepted.get()).values.reduce((n, v) => n + v.value, 0)).toBe(0);
    } finally {
      await down.close();
    }
  });

  it.each([
    [{ to: { all: true } }, 'data, data_base64: exactly one of them is required'],
    [{ to: { all: true }, data: 'a', data_base64: 'YQ==' }, 'data, data_base64: exactly one of them is required'],
    [{ data: 'a' }, 'to: required'],
    [{ to: {}, data: 'a' }, 'to: exactly one of users, topic, all'],
    [{ to: { all: true, topic: 'a' }, data: 'a' }, 'to: exactly one of users, topic, all'],
    [{ to: { all: false }, data: 'a' }, 'to.all: must be equal to constant'],
    [{ to: { topic: 'no spaces' }, data: 'a' }, 'to.topic: must match pattern'],
    [{ to: { users: [] }, data: 'a' }, 'to.users: must NOT have fewer than 1 items'],
    [{ to: { users: ['a', 'b', 'c', 'd'] }, data: 'a' }, 'to.users: must NOT have more than 3 items'],
    [{ to: { all: true }, data: 'a', ttl_s: '5' }, 'ttl_s: must be integer'],
    [{ to: { all: true }, data: 'a', ttl_s: 3601 }, 'ttl_s: must be <= 3600'],
    [{ to: { all: true }, data: 'a', ttl_s: -1 }, 'ttl_s: must be >= 0'],
    [{ to: { all: true }, data: 'a', priority: 'urgent' }, 'priority: must be equal to one of the allowed values'],
    [{ to: { all: true }, data: 'a', ttl: 5 }, 'ttl: unknown field'],
    [{ to: { all: true }, data_base64: 'not base64!' }, 'data_base64: not valid padded base64'],
    [{ id: 'a/b', to: { all: true }, data: 'a' }, 'id: must match pattern'],
    [{ to: { users: ['用'.repeat(50)] }, data: 'a' }, 'to.users: a user id is longer than 128 bytes'],
  ])('refuses %j with 422 naming the field', async (body, message) => {
    const res = await post(body);
    expect(res.status).toBe(422);
    expect(res.body.code).toBe('INVALID_BODY');
    expect(res.body.message).toContain(message);
  });

  it('answers 400 to broken JSON, 415 to another media type, 413 past the limits', async () => {
    expect(await post('{"to":')).toMatchObject({ status: 400, body: { code: 'BAD_JSON' } });
    const text = await push.api.inject({ method: 'POST', url: '/v1/push', headers: { ...auth, 'content-type': 'text/plain' }, payload: 'hi' });
    expect(text.statusCode).toBe(415);
    expect(text.json().code).toBe('UNSUPPORTED_MEDIA_TYPE');
    expect(await post({ to: { all: true }, data: 'x'.repeat(17) })).toMatchObject({ status: 413, body: { code: 'PAYLOAD_TOO_LARGE' } });
    expect(await post({ to: { all: true }, data: 'x'.repeat(16) })).toMatchObject({ status: 202 });
    expect(await post({ to: { all: true }, data: 'x'.repeat(3000) })).toMatchObject({ status: 413, body: { code: 'PAYLOAD_TOO_LARGE' } });
  });

  it('answers 404 for unknown ids, for another key\'s push and unknown paths, 405 for a wrong method', async () => {
    await post({ id: 'mine', to: { all: true }, data: 'a' });
    const other = await push.api.inject({ method: 'GET', url: '/v1/push/mine', headers: { authorization: `Bearer ${SLOW_KEY}` } });
    expect(other.statusCode).toBe(404);
    expect((await push.api.inject({ method: 'GET', url: '/v1/push/none', headers: auth })).json().code).toBe('NOT_FOUND');
    expect((await push.api.inject({ method: 'GET', url: `/v1/push/${'x'.repeat(5000)}`, headers: auth })).json().code).toBe('NOT_FOUND');
    const longest = 'x'.repeat(128);
    await post({ id: longest, to: { all: true }, data: 'a' });
    expect((await push.api.inject({ method: 'GET', url: `/v1/push/${longest}`, headers: auth })).statusCode).toBe(200);
    expect((await push.api.inject({ method: 'GET', url: '/v1/nothing', headers: auth })).statusCode).toBe(404);
    const wrong = await push.api.inject({ method: 'DELETE', url: '/v1/push/mine', headers: auth });
    expect(wrong.statusCode).toBe(405);
    expect(wrong.headers.allow).toBe('GET, HEAD');
  });

  it('uses only codes of the registry, each with its registry status', async () => {
    for (const [code, { status }] of Object.entries(ApiErrors)) expect(status, code).toBeGreaterThanOrEqual(400);
    const res = await post({ to: { all: true } });
    expect(ApiErrors[res.body.code as keyof typeof ApiErrors].status).toBe(res.status);
  });
});

describe('push API over a socket', () => {
  it('answers pipelined calls in order, in fewer writes than calls, each with its own body', async () => {
    // Counts the writes that reach each accepted socket's own write path (prepended: below the API's own hooks).
    let writes = 0;
    push.api.server.prependListener('connection', (s: Socket) => {
      const writev = s._writev!;
      const write = s._write;
      s._writev = (chunks, cb) => {
        writes++;
        writev.call(s, chunks, cb);
      };
      s._write = (chunk, encoding, cb) => {
        writes++;
        write.call(s, chunk, encoding, cb);
      };
    });
    await push.api.listen({ host: '127.0.0.1', port: 0 });
    const { port } = push.api.server.address() as AddressInfo;
    const socket = connect(port, '127.0.0.1');
    await once(socket, 'connect');
    const request = (body: string, key = KEY): string =>
      `POST /v1/push HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${key}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
    const calls = [
      request(JSON.stringify({ id: 'pipe-1', to: { users: ['u1'] }, data: 'a', ttl_s: 60 })),
      request(JSON.stringify({ id: 'pipe-2', to: { users: ['u2'] }, data: 'b' }), 'wrong-key-0123456789abcdef'),
      request(JSON.stringify({ id: 'pipe-3', to: { users: ['u3'] } })),
      request(JSON.stringify({ id: 'pipe-4', to: { topic: 'class:1' }, data: 'd' })),
    ];
    // All in one write: the server reads them together and answers them in one turn.
    socket.write(calls.join(''));
    let text = '';
    socket.setEncoding('latin1');
    for await (const chunk of socket as AsyncIterable<string>) {
      text += chunk;
      if ((text.match(/HTTP\/1\.1 /g) ?? []).length === 4 && /\}$/.test(text)) break;
    }
    socket.destroy();
    const statuses = [...text.matchAll(/HTTP\/1\.1 (\d{3})/g)].map((m) => Number(m[1]));
    expect(statuses).toEqual([202, 401, 422, 202]);
    const bodies = [...text.matchAll(/\r\n\r\n(\{[^\r]*?\})(?=HTTP\/1\.1 |$)/g)].map((m) => JSON.parse(m[1]!) as Record<string, unknown>);
    expect(bodies.map((b) => b.id ?? b.code)).toEqual(['pipe-1', 'UNAUTHORIZED', 'INVALID_BODY', 'pipe-4']);
    // node:http alone writes each response on its own: 4 writes.
    expect(writes).toBeLessThanOrEqual(2);
  });
});
