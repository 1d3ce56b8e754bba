import { describe, expect, it } from 'vitest';
import { parseRoutesConfig } from '../../src/config/routes-config.js';
import { createRouteTable } from '../../src/routing/route-table.js';
import type { RouteContext } from '../../src/routing/types.js';

const ctx: RouteContext = { userId: 'u1', connectionId: 'c1', clientAddress: '10.0.0.1:5000', metadata: {} };
const healthy = (): boolean => true;

const config = parseRoutesConfig(
  [
    'version: 1',
    'routes:',
    '  - { business: echo, pool: echo }',
    '  - { business: chat, pool: echo }',
    '  - { business: im, pool: im }',
    '  - { business: old, pool: im, enabled: false }',
    'pools:',
    '  echo:',
    '    protocol: grpc',
    '    endpoints: [{ address: "127.0.0.1:7101" }, { address: "127.0.0.1:7102" }]',
    '  im:',
    '    protocol: grpc',
    '    endpoints: [{ address: "127.0.0.1:7102" }, { address: "127.0.0.1:7201", weight: 2 }]',
    '  spare:',
    '    protocol: grpc',
    '    endpoints: [{ address: "127.0.0.1:7301" }]',
    '',
  ].join('\n'),
  'routes.yaml',
);

describe('createRouteTable', () => {
  it('resolves a business to an endpoint of its pool', () => {
    const table = createRouteTable(config);
    expect(table.resolve('echo', ctx, healthy)).toEqual({ kind: 'ok', business: 'echo', pool: 'echo', endpoint: '127.0.0.1:7101' });
    expect(table.resolve('im', ctx, healthy)).toMatchObject({ kind: 'ok', pool: 'im' });
  });

  it('balances every business of one pool together', () => {
    const table = createRouteTable(config);
    const a = table.resolve('echo', ctx, healthy);
    const b = table.resolve('chat', ctx, healthy);
    expect(a).toMatchObject({ kind: 'ok', endpoint: '127.0.0.1:7101' });
    expect(b).toMatchObject({ kind: 'ok', endpoint: '127.0.0.1:7102' });
  });

  it('answers unknown_business, disabled and unavailable', () => {
    const table = createRouteTable(config);
    expect(table.resolve('nope', ctx, healthy)).toEqual({ kind: 'unknown_business' });
    expect(table.resolve('old', ctx, healthy)).toEqual({ kind: 'disabled' });
    expect(table.resolve('echo', ctx, () => false)).toEqual({ kind: 'unavailable', retryAfterMs: 1000 });
    // Inherited Object members are not businesses.
    expect(table.resolve('constructor', ctx, healthy)).toEqual({ kind: 'unknown_business' });
  });

  it('asks about health and routes around a down endpoint', () => {
    const table = createRouteTable(config);
    const asked: string[] = [];
    const isHealthy = (e: string): boolean => {
      asked.push(e);
      return e !== '127.0.0.1:7101';
    };
    for (let i = 0; i < 4; i++) expect(table.resolve('echo', ctx, isHealthy)).toMatchObject({ endpoint: '127.0.0.1:7102' });
    expect(new Set(asked)).toEqual(new Set(['127.0.0.1:7101', '127.0.0.1:7102']));
  });

  it('lists every distinct endpoint of every pool, used or not', () => {
    const table = createRouteTable(config, 7);
    expect(table.version).toBe(7);
    expect([...table.endpoints()].sort()).toEqual(['127.0.0.1:7101', '127.0.0.1:7102', '127.0.0.1:7201', '127.0.0.1:7301']);
    expect(Object.isFrozen(table.endpoints())).toBe(true);
  });

  it('defaults the version to 1', () => {
    expect(createRouteTable(config).version).toBe(1);
  });
});
