import { describe, expect, it } from 'vitest';
import { parseRoutesConfig } from '../../src/config/routes-config.js';
import { clientIp, hashKeyOf } from '../../src/routing/hash-key.js';
import { ConsistentHashPicker } from '../../src/routing/policies/consistent-hash.js';
import { createRouteTable } from '../../src/routing/route-table.js';
import type { RouteContext } from '../../src/routing/types.js';

const ctx: RouteContext = { userId: 'u1', connectionId: 'c1', clientAddress: '10.0.0.1:5000', metadata: { room_id: '42' } };
const healthy = (): boolean => true;

const TEXT = [
  'version: 1',
  'routes:',
  '  - { business: echo, pool: echo }',
  '  - { business: chat, pool: echo }',
  '  - { business: im, pool: im }',
  '  - { business: old, pool: im, enabled: false }',
  '  - { business: room, pool: ring, policy: consistent_hash, hash_key: metadata.room_id, limits: { open_rate: 5 } }',
  '  - { business: user, pool: ring, policy: consistent_hash, hash_key: user_id }',
  '  - { business: legacy, pool: legacy, policy: hash, hash_key: client_address }',
  'pools:',
  '  echo:',
  '    protocol: grpc',
  '    endpoints: [{ address: "127.0.0.1:7101" }, { address: "127.0.0.1:7102" }]',
  '  im:',
  '    protocol: grpc',
  '    endpoints: [{ address: "127.0.0.1:7102" }, { address: "127.0.0.1:7201", weight: 2 }]',
  '    health_check: { interval_ms: 1000 }',
  '  ring:',
  '    protocol: grpc',
  '    endpoints: [{ address: "127.0.0.1:7401" }, { address: "127.0.0.1:7402" }, { address: "127.0.0.1:7403" }]',
  '  legacy:',
  '    protocol: tcp',
  '    endpoints: [{ address: "127.0.0.1:7301" }, { address: "127.0.0.1:7302" }]',
  '',
].join('\n');
const config = parseRoutesConfig(TEXT, 'routes.yaml');

describe('createRouteTable', () => {
  it('resolves a business to an endpoint of its pool, with the key, protocol and route', () => {
    const table = createRouteTable(config);
    expect(table.resolve('echo', ctx, healthy)).toEqual({
      kind: 'ok',
      business: 'echo',
      pool: 'echo',
      protocol: 'grpc',
      endpoint: '127.0.0.1:7101',
      key: 'c1',
      route: config.routes[0],
    });
    expect(table.resolve('legacy', ctx, healthy)).toMatchObject({ kind: 'ok', pool: 'legacy', protocol: 'tcp', key: '10.0.0.1' });
    const room = table.resolve('room', ctx, healthy);
    expect(room).toMatchObject({ kind: 'ok', pool: 'ring', key: '42' });
    if (room.kind === 'ok') expect(room.route.limits.openRate).toBe(5);
  });

  it('exposes the config it was built from', () => {
    expect(createRouteTable(config).config).toBe(config);
  });

  it('places a consistent_hash session by its key, as the pool\'s ring does', () => {
    const table = createRouteTable(config);
    const ring = new ConsistentHashPicker(config.pools.ring!.endpoints);
    for (let i = 0; i < 200; i++) {
      const room = `room-${i}`;
      const decision = table.resolve('room', { ...ctx, metadata: { room_id: room } }, healthy);
      expect(decision).toMatchObject({ kind: 'ok', key: room, endpoint: ring.pick(room, healthy) });
    }
    // The user route hashes the user id: the same user lands on the same endpoint from any connection.
    const a = table.resolve('user', { ...ctx, connectionId: 'c1' }, healthy);
    const b = table.resolve('user', { ...ctx, connectionId: 'c2', clientAddress: '10.9.9.9:1' }, healthy);
    expect(a).toMatchObject({ kind: 'ok', key: 'u1' });
    expect(b).toMatchObject({ kind: 'ok', endpoint: a.kind === 'ok' ? a.endpoint : '' });
  });

  it('fails over to the next owner when the owner is excluded', () => {
    const table = createRouteTable(config);
    const ring = new ConsistentHashPicker(config.pools.ring!.endpoints);
    const home = ring.pick('42', healthy)!;
    const next = ring.pick('42', (e) => e !== home)!;
    expect(table.resolve('room', ctx, (e) => e !== home)).toMatchObject({ kind: 'ok', endpoint: next, key: '42' });
  });

  it('answers missing_key naming the field when the OPEN lacks it (an empty value is a value)', () => {
    const table = createRouteTable(config);
    expect(table.resolve('room', { ...ctx, metadata: {} }, healthy)).toEqual({ kind: 'missing_key', field: 'room_id' });
    // An inherited property is not metadata.
    expect(table.resolve('room', { ...ctx, metadata: Object.create({ room_id: 'x' }) as Record<string, string> }, healthy)).toEqual({ kind: 'missing_key', field: 'room_id' });
    expect(table.resolve('room', { ...ctx, metadata: { room_id: '' } }, healthy)).toMatchObject({ kind: 'ok', key: '' });
  });

  it('balances every business of one pool and policy together', () => {
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
    expect(table.resolve('room', ctx, () => false)).toEqual({ kind: 'unavailable', retryAfterMs: 1000 });
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

  it('lists every distinct endpoint once, with the protocol and settings of the first pool naming it', () => {
    const table = createRouteTable(config, 7);
    expect(table.version).toBe(7);
    const specs = table.endpoints();
    expect(specs.map((s) => `${s.pool} ${s.protocol} ${s.address}`)).toEqual([
      'echo grpc 127.0.0.1:7101',
      'echo grpc 127.0.0.1:7102',
      'im grpc 127.0.0.1:7201',
      'ring grpc 127.0.0.1:7401',
      'ring grpc 127.0.0.1:7402',
      'ring grpc 127.0.0.1:7403',
      'legacy tcp 127.0.0.1:7301',
      'legacy tcp 127.0.0.1:7302',
    ]);
    expect(specs[0]!.poolConfig).toBe(config.pools.echo);
    expect(specs[2]!.poolConfig.healthCheck.intervalMs).toBe(1000);
    expect(Object.isFrozen(specs)).toBe(true);
    expect(Object.isFrozen(specs[0])).toBe(true);
    expect(table.endpoints()).toBe(specs);
  });

  it('defaults the version to 1 and is frozen', () => {
    const table = createRouteTable(config);
    expect(table.version).toBe(1);
    expect(Object.isFrozen(table)).toBe(true);
  });

  it('takes over unchanged pickers from the previous table: round_robin keeps its rotation', () => {
    const first = createRouteTable(config);
    expect(first.resolve('echo', ctx, healthy)).toMatchObject({ endpoint: '127.0.0.1:7101' });
    // A reload that adds a business leaves the echo pool's round_robin picker as it was.
    const reloaded = parseRoutesConfig(TEXT.replace('routes:\n', 'routes:\n  - { business: added, pool: echo, policy: hash }\n'), 'routes.yaml');
    expect(reloaded.routes).toHaveLength(config.routes.length + 1);
    const next = createRouteTable(reloaded, 2, first);
    expect(next.resolve('echo', ctx, healthy)).toMatchObject({ endpoint: '127.0.0.1:7102' });
    // Without the previous table, a fresh rotation.
    expect(createRouteTable(reloaded, 2).resolve('echo', ctx, healthy)).toMatchObject({ endpoint: '127.0.0.1:7101' });
    // A changed endpoint list gets a new picker.
    const changed = parseRoutesConfig(TEXT.replace('{ address: "127.0.0.1:7101" }, { address: "127.0.0.1:7102" }', '{ address: "127.0.0.1:7102" }, { address: "127.0.0.1:7101" }'), 'routes.yaml');
    expect(createRouteTable(changed, 3, first).resolve('echo', ctx, healthy)).toMatchObject({ endpoint: '127.0.0.1:7102' });
  });
});

describe('hash keys', () => {
  it('takes each source from the context', () => {
    expect(hashKeyOf({ kind: 'metadata', field: 'room_id' }, ctx)).toBe('42');
    expect(hashKeyOf({ kind: 'metadata', field: 'other' }, ctx)).toBeUndefined();
    expect(hashKeyOf({ kind: 'user_id' }, ctx)).toBe('u1');
    expect(hashKeyOf({ kind: 'connection_id' }, ctx)).toBe('c1');
    expect(hashKeyOf({ kind: 'client_address' }, ctx)).toBe('10.0.0.1');
  });

  it.each([
    ['10.0.0.1:5000', '10.0.0.1'],
    ['::1:5000', '::1'],
    ['::ffff:10.0.0.1:443', '::ffff:10.0.0.1'],
    ['[fd00::7]:5000', 'fd00::7'],
    ['10.0.0.1', '10.0.0.1'],
    ['unix', 'unix'],
  ])('client_address %s → %s', (address, ip) => {
    expect(clientIp(address)).toBe(ip);
  });
});
