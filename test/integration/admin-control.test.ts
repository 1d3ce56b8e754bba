/**
 * Runtime control on the admin port, against a live proxy: dump the effective config with the secret
 * redacted, change the log level (new connections follow it), fail readiness on purpose and undo it,
 * start a drain. Mutations are POST only.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect } from '../../src/client/index.js';
import { type EchoStack, TEST_SECRET, startEchoStack } from '../helpers/processes.js';
import { until } from '../helpers/until.js';

let stack: EchoStack;
let base: string;

beforeAll(async () => {
  stack = await startEchoStack();
  base = `http://127.0.0.1:${stack.proxy.adminPort}`;
});
afterAll(() => stack?.stop());

const post = (path: string): Promise<Response> => fetch(`${base}${path}`, { method: 'POST' });

describe('admin runtime control', () => {
  it('GET /config is the effective config and routes, with the JWT secret redacted', async () => {
    const res = await fetch(`${base}/config`);
    expect(res.status).toBe(200);
    const body = await res.text();
    expect(body).not.toContain(TEST_SECRET);
    const config = JSON.parse(body) as { proxy: { auth: { jwtSecret: string }; listen: { port: number } }; routes: { routes: { business: string }[] } };
    expect(config.proxy.auth.jwtSecret).toBe('[redacted]');
    expect(config.proxy.listen.port).toBe(0);
    expect(config.routes.routes.map((r) => r.business)).toEqual(['echo', 'chat']);
  });

  it('/log-level reads and sets the level; connections opened after it follow it', async () => {
    expect(await (await fetch(`${base}/log-level`)).json()).toEqual({ level: 'info' });
    const authenticated = (conn: string): boolean => stack.proxy.lines.some((l) => l.msg === 'connection authenticated' && l.conn === conn);

    expect(await (await post('/log-level?level=warn')).json()).toEqual({ level: 'warn', previous: 'info' });
    const quiet = await connect({ host: '127.0.0.1', port: stack.proxy.port, token: stack.token, reconnect: false });
    await quiet.close();

    expect((await post('/log-level?level=info')).status).toBe(200);
    const loud = await connect({ host: '127.0.0.1', port: stack.proxy.port, token: stack.token, reconnect: false });
    await loud.close();
    await until(() => authenticated(loud.welcome.connectionId), 'the info line of the second connection');
    expect(authenticated(quiet.welcome.connectionId)).toBe(false);

    const bad = await post('/log-level?level=loud');
    expect(bad.status).toBe(400);
    expect(await bad.text()).toMatch(/^level: expected one of trace, debug, info, warn, error, fatal, silent, got "loud"/);
  });

  it('mutations are POST only', async () => {
    for (const path of ['/healthcheck/fail', '/drain']) {
      const res = await fetch(`${base}${path}`);
      expect(res.status, path).toBe(405);
      expect(res.headers.get('allow'), path).toBe('POST');
    }
    expect((await fetch(`${base}/nope`, { method: 'POST' })).status).toBe(404);
  });

  it('POST /healthcheck/fail fails /readyz on purpose until /healthcheck/ok', async () => {
    expect((await fetch(`${base}/readyz`)).status).toBe(200);
    expect((await post('/healthcheck/fail')).status).toBe(200);
    const failed = await fetch(`${base}/readyz`);
    expect(failed.status).toBe(503);
    expect(await failed.text()).toMatch(/failed on purpose/);
    expect(await (await fetch(`${base}/status`)).json()).toMatchObject({ readinessFailedOnPurpose: true, ready: true });
    // Clients are not affected: the proxy still takes connections while the load balancer drains it.
    const c = await connect({ host: '127.0.0.1', port: stack.proxy.port, token: stack.token, reconnect: false });
    await c.close();
    expect((await post('/healthcheck/ok')).status).toBe(200);
    expect((await fetch(`${base}/readyz`)).status).toBe(200);
  });

  it('POST /drain sends GOAWAY to connected clients, fails readiness and refuses new connections', async () => {
    const client = await connect({ host: '127.0.0.1', port: stack.proxy.port, token: stack.token, reconnect: false });
    const session = await client.open('echo');
    const goaway = new Promise<{ code: number }>((resolve) => client.once('goaway', resolve));
    const res = await post('/drain');
    expect(res.status).toBe(202);
    expect((await goaway).code).toBe(405); // GOING_AWAY
    expect((await fetch(`${base}/readyz`)).status).toBe(503);
    expect(await (await fetch(`${base}/status`)).json()).toMatchObject({ draining: true, ready: false });
    // The open session finishes its work during the drain.
    await session.send('still served');
    for await (const { payload } of session) {
      expect(payload.toString()).toBe('still served');
      break;
    }
    await expect(connect({ host: '127.0.0.1', port: stack.proxy.port, token: stack.token, reconnect: false })).rejects.toThrow();
    await client.close();
  });
});
