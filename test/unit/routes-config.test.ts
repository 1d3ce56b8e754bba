import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadRoutesConfig, parseRoutesConfig } from '../../src/config/routes-config.js';
import { PACKAGE_ROOT } from '../../src/paths.js';
import { ConfigError } from '../../src/protocol/errors.js';

function problems(fn: () => unknown): readonly string[] {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).problems;
  }
  throw new Error('expected a ConfigError');
}

const lines = (...l: string[]): string => `${l.join('\n')}\n`;

describe('parseRoutesConfig', () => {
  it('parses with defaults and freezes', () => {
    const config = parseRoutesConfig(
      lines(
        'version: 1',
        'routes:',
        '  - business: echo',
        '    pool: echo',
        '  - business: chat.v2',
        '    pool: echo',
        '    enabled: false',
        'pools:',
        '  echo:',
        '    protocol: grpc',
        '    endpoints:',
        '      - address: 127.0.0.1:7101',
        '      - { address: "[::1]:7102", weight: 3 }',
      ),
      'routes.yaml',
    );
    expect(config.version).toBe(1);
    expect(config.routes).toEqual([
      { business: 'echo', pool: 'echo', enabled: true },
      { business: 'chat.v2', pool: 'echo', enabled: false },
    ]);
    expect({ ...config.pools }).toEqual({
      echo: {
        protocol: 'grpc',
        policy: 'round_robin',
        endpoints: [
          { address: '127.0.0.1:7101', weight: 1 },
          { address: '[::1]:7102', weight: 3 },
        ],
      },
    });
    expect(Object.isFrozen(config.pools.echo!.endpoints[0])).toBe(true);
    // No prototype: a pool lookup by an Object method name finds nothing.
    expect(config.pools.toString).toBeUndefined();
  });

  it('lists every problem, shape and cross-references together, in file order', () => {
    const text = lines(
      'version: 1', //                                    1
      'routes:', //                                       2
      '  - business: echo', //                            3
      '    pool: echo', //                                4
      '  - business: Echo!', //                           5
      '    pool: x', //                                   6
      '  - business: echo', //                            7
      '    pool: echo', //                                8
      '    retries: 2', //                                9
      '  - pool: echo', //                               10
      'pools:', //                                       11
      '  echo:', //                                      12
      '    protocol: http', //                           13
      '    policy: rr', //                               14
      '    endpoints:', //                               15
      '      - address: 127.0.0.1:7101', //              16
      '      - address: 127.0.0.1:7101', //              17
      '        weight: 0', //                            18
      '      - address: backend', //                     19
    );
    expect(problems(() => parseRoutesConfig(text, 'routes.yaml'))).toEqual([
      'routes.yaml:5:15 routes[1].business: expected 1-64 characters of a-z 0-9 _ . -, got "Echo!"',
      'routes.yaml:6:11 routes[1].pool: unknown pool "x" (pools: echo)',
      'routes.yaml:7:15 routes[2].business: duplicate business "echo" (also routes[0])',
      'routes.yaml:9:5 routes[2].retries: unknown key "retries"',
      'routes.yaml:10:5 routes[3].business: required (expected a string)',
      'routes.yaml:13:15 pools.echo.protocol: expected grpc, got "http"',
      'routes.yaml:14:13 pools.echo.policy: expected one of round_robin, got "rr"',
      'routes.yaml:17:18 pools.echo.endpoints[1].address: duplicate endpoint "127.0.0.1:7101" in pool "echo"',
      'routes.yaml:18:17 pools.echo.endpoints[1].weight: expected >= 1, got 0',
      'routes.yaml:19:18 pools.echo.endpoints[2].address: expected host:port (IPv6 as [addr]:port, port 1-65535), got "backend"',
    ]);
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

  it('checks pool names (at the key) and requires endpoints', () => {
    expect(problems(() => parseRoutesConfig('version: 1\nroutes: []\npools:\n  Bad Name: { protocol: grpc, endpoints: [] }\n', 'r.yaml'))).toEqual([
      'r.yaml:4:3 pools["Bad Name"]: expected 1-64 characters of a-z 0-9 _ . -, got "Bad Name"',
    ]);
    expect(problems(() => parseRoutesConfig('version: 1\nroutes: []\npools:\n  p: { protocol: grpc, endpoints: [] }\n', 'r.yaml'))).toEqual([
      'r.yaml:4:35 pools.p.endpoints: expected at least 1 item, got 0',
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
    expect(config.routes.every((r) => r.pool === 'echo' && r.enabled)).toBe(true);
    expect(config.pools.echo!.endpoints).toEqual([{ address: '127.0.0.1:7101', weight: 1 }]);
  });

  it('reports a missing file', () => {
    expect(problems(() => loadRoutesConfig('/nonexistent/routes.yaml'))[0]).toMatch(/cannot read/);
  });
});
