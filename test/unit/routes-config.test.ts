import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { formatHashKeySource, loadRoutesConfig, parseHashKeySource, parseRoutesConfig, type RoutesConfig } from '../../src/config/routes-config.js';
import { PACKAGE_ROOT } from '../../src/paths.js';
import { problems } from '../helpers/config-problems.js';

const lines = (...l: string[]): string => `${l.join('\n')}\n`;

const MINIMAL = lines(
  'version: 1',
  'routes:',
  '  - business: echo',
  '    pool: echo',
  'pools:',
  '  echo:',
  '    protocol: grpc',
  '    endpoints:',
  '      - address: 127.0.0.1:7101',
);

const ROUTE_DEFAULTS = {
  enabled: true,
  policy: 'round_robin',
  hashKey: { kind: 'connection_id' },
  timeouts: { connectMs: 3000 },
  retry: { attempts: 2, backoffMs: 100 },
  limits: { maxSessionsPerConnection: 0, openRate: 0 },
};

const POOL_DEFAULTS = {
  healthCheck: { intervalMs: 5000, timeoutMs: 1000, unhealthyThreshold: 2, healthyThreshold: 1 },
  circuitBreaker: { errorThresholdPercentage: 50, volumeThreshold: 5, resetTimeoutMs: 5000, rollingWindowMs: 10_000 },
  outlierDetection: { consecutiveFailures: 5 },
};

/** A file with one route and one pool, `route` and `pool` lines added (indented by the caller). */
function file(route: string[] = [], pool: string[] = [], protocol = 'grpc'): string {
  return lines('version: 1', 'routes:', '  - business: b', '    pool: p', ...route, 'pools:', '  p:', `    protocol: ${protocol}`, '    endpoints: [{ address: "127.0.0.1:7101" }]', ...pool);
}

describe('parseRoutesConfig', () => {
  it('fills every default and freezes', () => {
    const config = parseRoutesConfig(MINIMAL, 'routes.yaml');
    expect(config.version).toBe(1);
    expect(config.routes).toEqual([{ business: 'echo', pool: 'echo', ...ROUTE_DEFAULTS }]);
    expect({ ...config.pools }).toEqual({
      echo: { protocol: 'grpc', endpoints: [{ address: '127.0.0.1:7101', weight: 1 }], ...POOL_DEFAULTS },
    });
    expect(Object.isFrozen(config.routes[0]!.limits)).toBe(true);
    expect(Object.isFrozen(config.pools.echo!.endpoints[0])).toBe(true);
    expect(Object.isFrozen(config.pools.echo!.healthCheck)).toBe(true);
    // No prototype: a pool lookup by an Object method name finds nothing.
    expect(config.pools.toString).toBeUndefined();
  });

  it('reads every field when given', () => {
    const config = parseRoutesConfig(
      lines(
        'version: 1',
        'routes:',
        '  - business: chat.v2',
        '    pool: legacy',
        '    enabled: false',
        '    policy: consistent_hash',
        '    hash_key: metadata.room_id',
        '    timeouts: { connect_ms: 1500 }',
        '    retry: { attempts: 0, backoff_ms: 250 }',
        '    limits: { max_sessions_per_connection: 4, open_rate: 0.5 }',
        'pools:',
        '  legacy:',
        '    protocol: tcp',
        '    endpoints:',
        '      - address: 127.0.0.1:7301',
        '      - { address: "[::1]:7302", weight: 3 }',
        '    health_check: { interval_ms: 0, timeout_ms: 200, unhealthy_threshold: 3, healthy_threshold: 2 }',
        '    circuit_breaker: { error_threshold_percentage: 25, volume_threshold: 20, reset_timeout_ms: 10000, rolling_window_ms: 30000 }',
        '    outlier_detection: { consecutive_failures: 3 }',
      ),
      'routes.yaml',
    );
    expect(config.routes).toEqual([
      {
        business: 'chat.v2',
        pool: 'legacy',
        enabled: false,
        policy: 'consistent_hash',
        hashKey: { kind: 'metadata', field: 'room_id' },
        timeouts: { connectMs: 1500 },
        retry: { attempts: 0, backoffMs: 250 },
        limits: { maxSessionsPerConnection: 4, openRate: 0.5 },
      },
    ]);
    expect(config.pools.legacy).toEqual({
      protocol: 'tcp',
      endpoints: [
        { address: '127.0.0.1:7301', weight: 1 },
        { address: '[::1]:7302', weight: 3 },
      ],
      // interval 0 turns checks off, so a timeout above it is fine.
      healthCheck: { intervalMs: 0, timeoutMs: 200, unhealthyThreshold: 3, healthyThreshold: 2 },
      circuitBreaker: { errorThresholdPercentage: 25, volumeThreshold: 20, resetTimeoutMs: 10_000, rollingWindowMs: 30_000 },
      outlierDetection: { consecutiveFailures: 3 },
    });
  });

  it('fills the defaults of a partly written map', () => {
    const config = parseRoutesConfig(file(['    retry: { attempts: 5 }', '    limits: {}'], ['    health_check: { timeout_ms: 300 }']), 'r.yaml');
    expect(config.routes[0]!.retry).toEqual({ attempts: 5, backoffMs: 100 });
    expect(config.routes[0]!.limits).toEqual(ROUTE_DEFAULTS.limits);
    expect(config.pools.p!.healthCheck).toEqual({ ...POOL_DEFAULTS.healthCheck, timeoutMs: 300 });
  });

  it('lists every problem, shape and cross-references together, in file order', () => {
    const text = lines(
      'version: 1', //                                                    1
      'routes:', //                                                       2
      '  - business: echo', //                                            3
      '    pool: echo', //                                                4
      '    policy: rr', //                                                5
      '    hash_key: metadata.room id', //                                6
      '    timeouts: { connect_ms: 0, read_ms: 4 }', //                   7
      '    retry: { attempts: 11 }', //                                   8
      '    limits: { open_rate: -1, max_sessions_per_connection: 1.5 }', // 9
      '  - business: Echo!', //                                          10
      '    pool: x', //                                                  11
      '    hash_key: room', //                                           12
      '  - business: echo', //                                           13
      '    pool: echo', //                                               14
      '    retries: 2', //                                               15
      '  - pool: echo', //                                               16
      'pools:', //                                                       17
      '  echo:', //                                                      18
      '    protocol: http', //                                           19
      '    policy: round_robin', //                                      20
      '    endpoints:', //                                               21
      '      - address: 127.0.0.1:7101', //                              22
      '      - address: 127.0.0.1:7101', //                              23
      '        weight: 0', //                                            24
      '      - address: backend', //                                     25
      '    health_check: { interval_ms: 50, timeout_ms: 0 }', //         26
      '    circuit_breaker: { error_threshold_percentage: 101, rolling_window_ms: 10 }', // 27
      '    outlier_detection: { consecutive_failures: 0 }', //           28
      '  tcp:', //                                                       29
      '    protocol: tcp', //                                            30
      '    endpoints: [{ address: 127.0.0.1:7201 }]', //                 31
      '  grpc:', //                                                      32
      '    protocol: grpc', //                                           33
      '    endpoints: [{ address: 127.0.0.1:7201 }]', //                 34
      '    health_check: { interval_ms: 500, timeout_ms: 600 }', //      35
    );
    expect(problems(() => parseRoutesConfig(text, 'routes.yaml'))).toEqual([
      'routes.yaml:5:13 routes[0].policy: expected one of round_robin|hash|consistent_hash, got "rr"',
      'routes.yaml:6:15 routes[0].hash_key: expected a metadata field of 1-64 characters of A-Z a-z 0-9 _ . -, got "room id"',
      'routes.yaml:7:29 routes[0].timeouts.connect_ms: expected >= 1, got 0',
      'routes.yaml:7:32 routes[0].timeouts.read_ms: unknown key "read_ms"',
      'routes.yaml:8:24 routes[0].retry.attempts: expected <= 10, got 11',
      'routes.yaml:9:26 routes[0].limits.open_rate: expected >= 0, got -1',
      'routes.yaml:9:59 routes[0].limits.max_sessions_per_connection: expected an integer, got 1.5',
      'routes.yaml:10:15 routes[1].business: expected 1-64 characters of a-z 0-9 _ . -, got "Echo!"',
      'routes.yaml:11:11 routes[1].pool: unknown pool "x" (pools: echo, tcp, grpc)',
      'routes.yaml:12:15 routes[1].hash_key: expected one of metadata.<field>|user_id|connection_id|client_address, got "room"',
      'routes.yaml:13:15 routes[2].business: duplicate business "echo" (also routes[0])',
      'routes.yaml:15:5 routes[2].retries: unknown key "retries"',
      'routes.yaml:16:5 routes[3].business: required (expected a string)',
      'routes.yaml:19:15 pools.echo.protocol: expected one of grpc|tcp, got "http"',
      'routes.yaml:20:5 pools.echo.policy: unknown key "policy"',
      'routes.yaml:23:18 pools.echo.endpoints[1].address: duplicate endpoint "127.0.0.1:7101" in pool "echo"',
      'routes.yaml:24:17 pools.echo.endpoints[1].weight: expected >= 1, got 0',
      'routes.yaml:25:18 pools.echo.endpoints[2].address: expected host:port (IPv6 as [addr]:port, port 1-65535), got "backend"',
      'routes.yaml:26:34 pools.echo.health_check.interval_ms: expected 0 (off) or >= 100, got 50',
      'routes.yaml:26:50 pools.echo.health_check.timeout_ms: expected >= 1, got 0',
      'routes.yaml:27:52 pools.echo.circuit_breaker.error_threshold_percentage: expected <= 100, got 101',
      'routes.yaml:27:76 pools.echo.circuit_breaker.rolling_window_ms: expected >= 100, got 10',
      'routes.yaml:28:48 pools.echo.outlier_detection.consecutive_failures: expected >= 1, got 0',
      'routes.yaml:34:28 pools.grpc.endpoints[0].address: endpoint "127.0.0.1:7201" is tcp in pool "tcp" but grpc here (an address has one protocol)',
      'routes.yaml:35:51 pools.grpc.health_check.timeout_ms: expected <= interval_ms (500), got 600',
    ]);
  });

  it('accepts every registered policy on a route', () => {
    for (const policy of ['round_robin', 'hash', 'consistent_hash']) {
      expect(parseRoutesConfig(file([`    policy: ${policy}`]), 'r.yaml').routes[0]!.policy).toBe(policy);
    }
  });

  it.each([
    ['metadata.room_id', { kind: 'metadata', field: 'room_id' }],
    ['metadata.Room-ID.v2', { kind: 'metadata', field: 'Room-ID.v2' }],
    [`metadata.${'f'.repeat(64)}`, { kind: 'metadata', field: 'f'.repeat(64) }],
    ['user_id', { kind: 'user_id' }],
    ['connection_id', { kind: 'connection_id' }],
    ['client_address', { kind: 'client_address' }],
  ])('reads hash_key %s', (text, source) => {
    expect(parseRoutesConfig(file([`    hash_key: ${text}`]), 'r.yaml').routes[0]!.hashKey).toEqual(source);
    expect(parseHashKeySource(text)).toEqual(source);
    expect(formatHashKeySource(source as never)).toBe(text);
  });

  it.each([
    ['metadata.', 'expected a metadata field of 1-64 characters of A-Z a-z 0-9 _ . -, got ""'],
    [`metadata.${'f'.repeat(65)}`, `expected a metadata field of 1-64 characters of A-Z a-z 0-9 _ . -, got "${'f'.repeat(57)}..."`],
    ['metadata.room/id', 'expected a metadata field of 1-64 characters of A-Z a-z 0-9 _ . -, got "room/id"'],
    ['room_id', 'expected one of metadata.<field>|user_id|connection_id|client_address, got "room_id"'],
    ['USER_ID', 'expected one of metadata.<field>|user_id|connection_id|client_address, got "USER_ID"'],
    ['42', 'expected a string, got 42'],
  ])('refuses hash_key %s', (text, message) => {
    expect(problems(() => parseRoutesConfig(file([`    hash_key: ${text}`]), 'r.yaml'))).toEqual([`r.yaml:5:15 routes[0].hash_key: ${message}`]);
  });

  // One bad value per numeric field: the path and the bound in the message.
  it.each([
    [['    timeouts: { connect_ms: 600001 }'], [], 'routes[0].timeouts.connect_ms: expected <= 600000, got 600001'],
    [['    retry: { attempts: -1 }'], [], 'routes[0].retry.attempts: expected >= 0, got -1'],
    [['    retry: { backoff_ms: 60001 }'], [], 'routes[0].retry.backoff_ms: expected <= 60000, got 60001'],
    [['    limits: { max_sessions_per_connection: -1 }'], [], 'routes[0].limits.max_sessions_per_connection: expected >= 0, got -1'],
    [['    limits: { open_rate: "fast" }'], [], 'routes[0].limits.open_rate: expected a number, got "fast"'],
    [['    enabled: "no"'], [], 'routes[0].enabled: expected a boolean, got "no"'],
    [[], ['    health_check: { interval_ms: 3600001 }'], 'pools.p.health_check.interval_ms: expected <= 3600000, got 3600001'],
    [[], ['    health_check: { unhealthy_threshold: 0 }'], 'pools.p.health_check.unhealthy_threshold: expected >= 1, got 0'],
    [[], ['    health_check: { healthy_threshold: 101 }'], 'pools.p.health_check.healthy_threshold: expected <= 100, got 101'],
    [[], ['    health_check: { timeout_ms: 60001, interval_ms: 0 }'], 'pools.p.health_check.timeout_ms: expected <= 60000, got 60001'],
    [[], ['    circuit_breaker: { volume_threshold: -1 }'], 'pools.p.circuit_breaker.volume_threshold: expected >= 0, got -1'],
    [[], ['    circuit_breaker: { reset_timeout_ms: 0 }'], 'pools.p.circuit_breaker.reset_timeout_ms: expected >= 1, got 0'],
    [[], ['    circuit_breaker: { error_threshold_percentage: 0 }'], 'pools.p.circuit_breaker.error_threshold_percentage: expected >= 1, got 0'],
    [[], ['    outlier_detection: { consecutive_failures: 1001 }'], 'pools.p.outlier_detection.consecutive_failures: expected <= 1000, got 1001'],
    [[], ['    outlier_detection: { ejection_ms: 1 }'], 'pools.p.outlier_detection.ejection_ms: unknown key "ejection_ms"'],
    [[], ['    health_check: 5'], 'pools.p.health_check: expected a map, got 5'],
  ])('refuses %j %j', (route, pool, message) => {
    const found = problems(() => parseRoutesConfig(file(route, pool), 'r.yaml'));
    expect(found).toHaveLength(1);
    expect(found[0]).toMatch(/^r\.yaml:\d+:\d+ /);
    expect(found[0]!.replace(/^r\.yaml:\d+:\d+ /, '')).toBe(message);
  });

  it('allows one address in several pools with the same protocol', () => {
    const config = parseRoutesConfig(
      lines(
        'version: 1',
        'routes: []',
        'pools:',
        '  a: { protocol: tcp, endpoints: [{ address: "127.0.0.1:7101" }] }',
        '  b: { protocol: tcp, endpoints: [{ address: "127.0.0.1:7101", weight: 2 }] }',
      ),
      'r.yaml',
    );
    expect(Object.keys(config.pools)).toEqual(['a', 'b']);
  });

  it('requires the top-level keys', () => {
    expect(problems(() => parseRoutesConfig('', 'r.yaml'))).toEqual([
      'r.yaml:1:1 version: required (expected 1)',
      'r.yaml:1:1 routes: required (expected a list)',
      'r.yaml:1:1 pools: required (expected a map)',
    ]);
  });

  it('refuses an unknown version', () => {
    expect(problems(() => parseRoutesConfig('version: 2\nroutes: []\npools: {}\n', 'r.yaml'))).toEqual([
      'r.yaml:1:10 version: expected 1, got 2',
    ]);
  });

  it('checks pool names (at the key) and requires protocol and endpoints', () => {
    expect(problems(() => parseRoutesConfig('version: 1\nroutes: []\npools:\n  Bad Name: { protocol: grpc, endpoints: [] }\n', 'r.yaml'))).toEqual([
      'r.yaml:4:3 pools["Bad Name"]: expected 1-64 characters of a-z 0-9 _ . -, got "Bad Name"',
    ]);
    expect(problems(() => parseRoutesConfig('version: 1\nroutes: []\npools:\n  p: { protocol: grpc, endpoints: [] }\n', 'r.yaml'))).toEqual([
      'r.yaml:4:35 pools.p.endpoints: expected at least 1 item, got 0',
    ]);
    expect(problems(() => parseRoutesConfig('version: 1\nroutes: []\npools:\n  p: { endpoints: [{ address: "a:1" }] }\n', 'r.yaml'))).toEqual([
      'r.yaml:4:6 pools.p.protocol: required (expected one of grpc|tcp)',
    ]);
  });

  it('says when no pool is defined at all', () => {
    expect(problems(() => parseRoutesConfig('version: 1\nroutes: [{ business: a, pool: p }]\npools: {}\n', 'r.yaml'))).toEqual([
      'r.yaml:2:31 routes[0].pool: unknown pool "p" (pools: none defined)',
    ]);
  });

  it('reports YAML syntax errors', () => {
    expect(problems(() => parseRoutesConfig('version: 1\nroutes: [\n', 'r.yaml'))[0]).toMatch(/^r\.yaml:\d+:\d+ syntax error: /);
  });
});

describe('loadRoutesConfig', () => {
  it('loads the reference routes.yaml', () => {
    const config = loadRoutesConfig(join(PACKAGE_ROOT, 'routes.yaml'));
    expect(config.routes.map((r) => r.business)).toEqual(['echo', 'chat', 'im', 'push']);
    expect(config.routes.map((r) => r.pool)).toEqual(['echo', 'chat', 'echo', 'push']);
    expect(config.routes.every((r) => r.enabled)).toBe(true);
    // The first route writes every key at its default.
    expect(config.routes[0]).toEqual({ business: 'echo', pool: 'echo', ...ROUTE_DEFAULTS });
    expect(config.routes[1]).toMatchObject({ policy: 'consistent_hash', hashKey: { kind: 'metadata', field: 'room_id' } });
    expect(config.pools.echo).toEqual({ protocol: 'grpc', endpoints: [{ address: '127.0.0.1:7101', weight: 1 }], ...POOL_DEFAULTS });
    expect(config.pools.chat).toMatchObject({ protocol: 'grpc', endpoints: [{ address: '127.0.0.1:7102', weight: 1 }] });
    expect(config.routes[3]).toMatchObject({ policy: 'consistent_hash', hashKey: { kind: 'user_id' } });
    expect(config.pools.push).toMatchObject({ protocol: 'grpc', endpoints: [{ address: '127.0.0.1:7103', weight: 1 }] });
  });

  it('reports a missing file', () => {
    expect(problems(() => loadRoutesConfig('/nonexistent/routes.yaml'))[0]).toMatch(/cannot read/);
  });
});

describe('docs/routes.md', () => {
  const doc = readFileSync(join(PACKAGE_ROOT, 'docs', 'routes.md'), 'utf8');

  /** `key → default cell` of the table under `heading`. */
  function table(heading: string): Map<string, string> {
    const rows = doc.split(`\n${heading}\n\n`)[1]!.split('\n\n')[0]!.split('\n').slice(2);
    return new Map(rows.map((row) => row.split('|').map((c) => c.trim())).map((cells) => [cells[1]!.replace(/`/g, ''), cells[3]!]));
  }

  const camel = (key: string): string => key.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());
  /** Dotted snake_case paths of every field of a config object (hashKey and lists are single fields). */
  function leaves(value: object, prefix = ''): string[] {
    return Object.entries(value).flatMap(([key, v]) => {
      const snake = key.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
      const path = prefix + snake;
      return v !== null && typeof v === 'object' && !Array.isArray(v) && key !== 'hashKey' ? leaves(v as object, `${path}.`) : [path];
    });
  }

  function checkTable(heading: string, config: object): void {
    const rows = table(heading);
    expect([...rows.keys()].sort(), heading).toEqual(leaves(config).sort());
    for (const [key, cell] of rows) {
      if (cell.startsWith('**required**')) continue;
      let value = key.split('.').reduce<unknown>((o, k) => (o as Record<string, unknown>)[camel(k)], config);
      if (key === 'hash_key') value = formatHashKeySource(value as never);
      expect(cell, key).toBe(`\`${String(value)}\``);
    }
  }

  const config: RoutesConfig = parseRoutesConfig(MINIMAL, 'routes.yaml');
  it('documents every route field with its default', () => checkTable('## `routes[]`', config.routes[0]!));
  it('documents every pool field with its default', () => checkTable('## `pools.<name>`', config.pools.echo!));
  it('documents every endpoint field with its default', () => checkTable('## `pools.<name>.endpoints[]`', config.pools.echo!.endpoints[0]!));
  it('shows error lines in the format the parser produces', () => {
    const shown = doc.split('routes.yaml: invalid configuration\n')[1]!.split('```')[0]!.trim().split('\n');
    for (const line of shown) expect(line.trim()).toMatch(/^routes\.yaml:\d+:\d+ [\w.[\]"]+: .+$/);
  });
});
