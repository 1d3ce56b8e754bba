import { mkdtempSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { JWT_SECRET_ENV, loadProxyConfig, proxyConfigFromObject } from '../../src/config/proxy-config.js';
import { PACKAGE_ROOT } from '../../src/paths.js';
import { Defaults } from '../../src/protocol/constants.js';
import { problems } from '../helpers/config-problems.js';

const ENV = { [JWT_SECRET_ENV]: 'env-secret' };

function writeTemp(name: string, text: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'livemux-config-'));
  const file = join(dir, name);
  writeFileSync(file, text);
  return file;
}

describe('proxy config defaults', () => {
  it('fills every field from Defaults', () => {
    const config = proxyConfigFromObject({}, 'test', '/etc/livemux', ENV);
    expect(config).toEqual({
      listen: { host: '0.0.0.0', port: 7000 },
      tls: null,
      proxyProtocol: false,
      admin: { host: '127.0.0.1', port: 9090 },
      auth: { jwtSecret: 'env-secret' },
      limits: {
        maxSessions: Defaults.maxSessions,
        maxPayload: Defaults.maxPayload,
        sessionWindow: Defaults.sessionWindow,
        connectionWindow: Defaults.connectionWindow,
        outboundQueueBytes: Defaults.outboundQueueBytes,
        openResetRate: Defaults.openResetRate,
        lowPriorityRate: Defaults.lowPriorityRate,
        lowPriorityMerge: Defaults.lowPriorityMerge,
      },
      timeouts: {
        handshakeMs: Defaults.handshakeTimeoutMs,
        heartbeatIntervalMs: Defaults.heartbeatIntervalMs,
        heartbeatMisses: Defaults.heartbeatMisses,
        idleMs: Defaults.idleTimeoutMs,
        drainMs: Defaults.drainTimeoutMs,
        halfCloseMs: Defaults.halfCloseTimeoutMs,
      },
      goawayReconnectAddress: '',
      routesFile: '/etc/livemux/routes.yaml',
      routesWatch: true,
      logLevel: 'info',
      proxyId: `${hostname()}-${process.pid}`,
    });
  });

  it('is deep-frozen', () => {
    const config = proxyConfigFromObject({}, 'test', '/', ENV);
    expect(Object.isFrozen(config)).toBe(true);
    expect(Object.isFrozen(config.limits)).toBe(true);
    expect(Object.isFrozen(config.auth)).toBe(true);
  });

  it('null file means defaults with routes in the working directory', () => {
    const config = loadProxyConfig(null, ENV);
    expect(config.routesFile).toBe(join(process.cwd(), 'routes.yaml'));
    expect(config.listen.port).toBe(7000);
  });
});

describe('proxy config fields', () => {
  it('maps snake_case to the ProxyConfig shape and resolves paths against the base folder', () => {
    const config = proxyConfigFromObject(
      {
        listen: { host: '::', port: 0 },
        tls: { cert_file: 'certs/a.crt', key_file: '/abs/a.key' },
        proxy_protocol: true,
        admin: false,
        auth: { jwt_secret: 'file-secret', issuer: 'iss', audience: 'aud' },
        limits: { max_sessions: 8, max_payload: 65536, session_window: 65536, connection_window: 131072, outbound_queue_bytes: 70000, open_reset_rate: 5 },
        timeouts: { handshake_ms: 1, heartbeat_interval_ms: 2, heartbeat_misses: 3, idle_ms: 4, drain_ms: 5, half_close_ms: 6 },
        goaway_reconnect_address: 'lb.example.com:7000',
        routes: '../routes/prod.yaml',
        log: { level: 'debug' },
        proxy_id: 'p1',
      },
      'test',
      '/srv/livemux',
      {},
    );
    expect(config.tls).toEqual({ certFile: '/srv/livemux/certs/a.crt', keyFile: '/abs/a.key' });
    expect(config.proxyProtocol).toBe(true);
    expect(config.admin).toBeNull();
    expect(config.auth).toEqual({ jwtSecret: 'file-secret', issuer: 'iss', audience: 'aud' });
    expect(config.limits).toEqual({ maxSessions: 8, maxPayload: 65536, sessionWindow: 65536, connectionWindow: 131072, outboundQueueBytes: 70000, openResetRate: 5, lowPriorityRate: 20, lowPriorityMerge: 16 });
    expect(config.timeouts).toEqual({ handshakeMs: 1, heartbeatIntervalMs: 2, heartbeatMisses: 3, idleMs: 4, drainMs: 5, halfCloseMs: 6 });
    expect(config.goawayReconnectAddress).toBe('lb.example.com:7000');
    expect(config.routesFile).toBe('/srv/routes/prod.yaml');
    expect(config.logLevel).toBe('debug');
    expect(config.proxyId).toBe('p1');
  });

  it('lets LIVEMUX_JWT_SECRET override auth.jwt_secret', () => {
    expect(proxyConfigFromObject({ auth: { jwt_secret: 'file' } }, 't', '/', ENV).auth.jwtSecret).toBe('env-secret');
    expect(proxyConfigFromObject({ auth: { jwt_secret: 'file' } }, 't', '/', { [JWT_SECRET_ENV]: '' }).auth.jwtSecret).toBe('file');
  });

  it('requires a secret, naming auth.jwt_secret', () => {
    expect(problems(() => proxyConfigFromObject({}, 'livemux.yaml', '/', {}))).toEqual([
      'livemux.yaml auth.jwt_secret: required: set it in the file or in the LIVEMUX_JWT_SECRET environment variable',
    ]);
  });

  it('partial sections keep the other defaults', () => {
    const config = proxyConfigFromObject({ limits: { max_sessions: 3 }, admin: { port: 0 } }, 't', '/', ENV);
    expect(config.limits.maxSessions).toBe(3);
    expect(config.limits.maxPayload).toBe(Defaults.maxPayload);
    expect(config.admin).toEqual({ host: '127.0.0.1', port: 0 });
  });
});

describe('proxy config sanity checks', () => {
  const cases: [string, object, string][] = [
    ['max_payload over 16 MiB', { limits: { max_payload: 16 * 1024 * 1024 + 1, outbound_queue_bytes: 64 * 1024 * 1024 } }, 't limits.max_payload: expected <= 16777216, got 16777217'],
    ['zero window', { limits: { session_window: 0 } }, 't limits.session_window: expected >= 1, got 0'],
    ['window over 2^31-1', { limits: { connection_window: 2 ** 31 } }, 't limits.connection_window: expected <= 2147483647, got 2147483648'],
    ['fractional', { limits: { max_sessions: 1.5 } }, 't limits.max_sessions: expected an integer, got 1.5'],
    ['queue smaller than a frame', { limits: { max_payload: 1000, outbound_queue_bytes: 1000 } }, 't limits.outbound_queue_bytes: must hold one full DATA frame (1000 vs max_payload + header = 1012)'],
    ['timer overflow', { timeouts: { idle_ms: 2 ** 31 } }, 't timeouts.idle_ms: expected <= 2147483647, got 2147483648'],
    ['bad port', { listen: { port: 65536 } }, 't listen.port: expected <= 65535, got 65536'],
    ['bad host', { admin: { host: 'not a host' } }, 't admin.host: expected an IP address or host name, got "not a host"'],
    ['bad reconnect address', { goaway_reconnect_address: 'lb' }, 't goaway_reconnect_address: expected host:port (IPv6 as [addr]:port, port 1-65535), got "lb"'],
    ['bad log level', { log: { level: 'verbose' } }, 't log.level: expected one of trace|debug|info|warn|error|fatal|silent, got "verbose"'],
    ['admin true', { admin: true }, 't admin: expected false or a map, got true'],
    ['unknown key', { limit: {} }, 't limit: unknown key "limit"'],
    ['tls without key', { tls: { cert_file: 'a' } }, 't tls.key_file: required (expected a string)'],
  ];
  it.each(cases)('%s', (_name, obj, message) => {
    expect(problems(() => proxyConfigFromObject(obj, 't', '/', ENV))).toEqual([message]);
  });

  it('does not require session_window >= max_payload', () => {
    expect(proxyConfigFromObject({ limits: { session_window: 1024, max_payload: 4096 } }, 't', '/', ENV).limits.sessionWindow).toBe(1024);
  });
});

describe('loadProxyConfig from a file', () => {
  it('reports every problem with line:col', () => {
    const file = writeTemp(
      'livemux.yaml',
      ['listen:', '  port: "7000"', 'limits:', '  max_payload: 0', 'log: { level: loud }', ''].join('\n'),
    );
    expect(problems(() => loadProxyConfig(file, ENV))).toEqual([
      `${file}:2:9 listen.port: expected a number, got "7000"`,
      `${file}:4:16 limits.max_payload: expected >= 1, got 0`,
      `${file}:5:15 log.level: expected one of trace|debug|info|warn|error|fatal|silent, got "loud"`,
    ]);
  });

  it('points a missing secret at the auth map when there is one', () => {
    const file = writeTemp('livemux.yaml', 'listen: { port: 1 }\nauth:\n  issuer: me\n');
    expect(problems(() => loadProxyConfig(file, {}))).toEqual([
      `${file}:3:3 auth.jwt_secret: required: set it in the file or in the LIVEMUX_JWT_SECRET environment variable`,
    ]);
  });

  it('points a missing secret at an empty auth section', () => {
    const file = writeTemp('livemux.yaml', 'listen: { port: 1 }\nauth:\n  # jwt_secret: x\n');
    expect(problems(() => loadProxyConfig(file, {}))).toEqual([
      `${file}:2:1 auth.jwt_secret: required: set it in the file or in the LIVEMUX_JWT_SECRET environment variable`,
    ]);
  });

  it('treats sections left with only comments as all defaults', () => {
    const file = writeTemp('livemux.yaml', 'limits:\n  # max_sessions: 3\nauth:\n  # jwt_secret: x\n');
    expect(loadProxyConfig(file, ENV).limits.maxSessions).toBe(Defaults.maxSessions);
  });

  it('resolves routes against the config file folder', () => {
    const file = writeTemp('livemux.yaml', 'routes: ./r.yaml\n');
    expect(loadProxyConfig(file, ENV).routesFile).toBe(join(file, '..', 'r.yaml'));
  });

  it('reports a missing file', () => {
    expect(problems(() => loadProxyConfig('/nonexistent/livemux.yaml', ENV))[0]).toMatch(/cannot read/);
  });

  it('loads the reference livemux.yaml', () => {
    const config = loadProxyConfig(join(PACKAGE_ROOT, 'livemux.yaml'), { [JWT_SECRET_ENV]: 'dev' });
    expect(config.listen).toEqual({ host: '127.0.0.1', port: 7000 });
    expect(config.admin).toEqual({ host: '127.0.0.1', port: 9090 });
    expect(config.routesFile).toBe(join(PACKAGE_ROOT, 'routes.yaml'));
    expect(config.auth.jwtSecret).toBe('dev');
  });

  it('refuses the reference livemux.yaml without a secret', () => {
    expect(problems(() => loadProxyConfig(join(PACKAGE_ROOT, 'livemux.yaml'), {}))[0]).toMatch(/auth\.jwt_secret: required/);
  });
});
