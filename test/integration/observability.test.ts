/**
 * What an SRE sees of a live proxy, real processes over loopback: /metrics passes `promtool check
 * metrics` (Debian's prometheus package; .ci/run installs it), the latency histograms fill as traffic
 * flows, and the logs say who connected from where, for how long, how each session and connection
 * ended, why a token was refused, and what a reload changed.
 */
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { connect } from '../../src/client/index.js';
import { promtoolCheckMetrics, scrape } from '../helpers/metrics.js';
import { scrapeTargetsForFile } from '../helpers/scrape-targets.js';
import { until } from '../helpers/until.js';

const live = scrapeTargetsForFile();

/** `_count` of a histogram series whose labels include `labels`. */
function histogramCount(text: string, name: string, labels = ''): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name}_count`) && l.includes(labels));
  return line ? Number(line.split(' ').at(-1)) : 0;
}

describe('metrics', () => {
  it('promtool check metrics passes on the proxy and the Chat backend', async () => {
    expect(promtoolCheckMetrics(await scrape(live.stack.proxy.adminPort))).toBe('');
    expect(promtoolCheckMetrics(await scrape(live.chat.adminPort))).toBe('');
  });

  it('the checker itself refuses a misnamed metric (so the test above can fail)', () => {
    expect(promtoolCheckMetrics('# HELP x_total X.\n# TYPE x_total gauge\nx_total 1\n')).toMatch(/should not have "_total" suffix/);
  });

  it('latency histograms fill: OPEN→OPEN_OK, queue wait, fan-out, backend round trip, reload', async () => {
    const client = await connect({ host: '127.0.0.1', port: live.stack.proxy.port, token: live.stack.token, reconnect: false });
    const a = await client.open('echo');
    const b = await client.open('echo');
    await a.send('/sub room');
    await b.send('/sub room');
    await a.send('/pub room hello');
    for (const s of [a, b]) for await (const { payload } of s) if (payload.toString() === 'hello') break;
    // A reload with a change, so one is timed.
    const file = join(live.stack.proxy.dir, 'routes.yaml');
    const routes = parse(readFileSync(file, 'utf8')) as { routes: { business: string; pool: string }[] };
    routes.routes.push({ business: 'extra', pool: 'echo' });
    writeFileSync(`${file}.tmp`, stringify(routes));
    renameSync(`${file}.tmp`, file);

    const port = live.stack.proxy.adminPort;
    await until(async () => histogramCount(await scrape(port), 'livemux_route_reload_duration_seconds', 'result="ok"') >= 1, 'a timed reload');
    const text = await scrape(port);
    expect(histogramCount(text, 'livemux_session_open_duration_seconds', 'business="echo"')).toBe(2);
    expect(histogramCount(text, 'livemux_outbound_queue_wait_seconds', 'lane="control"')).toBeGreaterThanOrEqual(3); // WELCOME, 2 OPEN_OK
    expect(histogramCount(text, 'livemux_outbound_queue_wait_seconds', 'lane="high"')).toBeGreaterThanOrEqual(2);
    expect(histogramCount(text, 'livemux_fanout_delay_seconds')).toBeGreaterThanOrEqual(1);
    expect(histogramCount(text, 'livemux_backend_round_trip_seconds', `endpoint="127.0.0.1:${live.stack.backend.port}"`)).toBeGreaterThanOrEqual(1);
    // Labels stay bounded: nothing the client sent (topic names, metadata) became one.
    expect(text).not.toContain('room');
    expect(promtoolCheckMetrics(text)).toBe('');
    await client.close();
  });
});

describe('logs', () => {
  const logged = (msg: string): Record<string, unknown>[] => live.stack.proxy.lines.filter((l) => l.msg === msg);

  it('a session open and close, and the connection close with who, where from, how long, how much and why', async () => {
    const client = await connect({ host: '127.0.0.1', port: live.stack.proxy.port, token: live.stack.token, reconnect: false });
    const conn = client.welcome.connectionId;
    const s = await client.open('echo');
    await s.send('ping');
    for await (const _ of s) break;
    await s.close();
    await client.close();
    await until(() => logged('connection closed').some((l) => l.conn === conn), 'the access-log line');
    expect(logged('session opened').find((l) => l.conn === conn)).toMatchObject({ level: 'info', business: 'echo', user: 'user-1', session: 1 });
    expect(logged('session closed').find((l) => l.conn === conn)).toMatchObject({ level: 'info', business: 'echo', code: 'NORMAL', durationMs: expect.any(Number) });
    const access = logged('connection closed').find((l) => l.conn === conn)!;
    expect(access).toMatchObject({ level: 'info', user: 'user-1', addr: expect.stringMatching(/^127\.0\.0\.1:\d+$/), sessions: 1, code: 'NORMAL' });
    expect(access.bytesIn).toBeGreaterThan(0);
    expect(access.bytesOut).toBeGreaterThan(0);
    expect(access.durationMs).toBeGreaterThanOrEqual(0);
  });

  it('a refused token is logged with the client address', async () => {
    await expect(connect({ host: '127.0.0.1', port: live.stack.proxy.port, token: 'not-a-jwt', reconnect: false })).rejects.toThrow();
    await until(() => logged('closing connection').some((l) => l.code === 'AUTH_FAILED'), 'the AUTH_FAILED line');
    expect(logged('closing connection').find((l) => l.code === 'AUTH_FAILED')).toMatchObject({ addr: expect.stringMatching(/^127\.0\.0\.1:\d+$/) });
  });

  it('a reload says what changed and how long it took', async () => {
    await until(() => logged('routes reloaded').length > 0, 'the reload line');
    expect(logged('routes reloaded')[0]).toMatchObject({ changes: { routesAdded: ['extra'] }, durationMs: expect.any(Number) });
  });
});
