import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import {
  deepFreeze,
  describeValue,
  formatPath,
  loadYamlConfig,
  parseHostPort,
  parseYaml,
  readConfigFile,
  validateConfig,
} from '../../src/config/load-yaml.js';
import { problems } from '../helpers/config-problems.js';

const schema = z.strictObject({
  name: z.string(),
  policy: z.enum(['round_robin', 'hash', 'consistent_hash']).default('round_robin'),
  items: z.array(z.strictObject({ port: z.number().int().min(1).max(65535), tag: z.string().min(2) })).default([]),
  admin: z.union([z.literal(false), z.strictObject({ port: z.number() })]).optional(),
});

describe('parseYaml', () => {
  it('reports syntax errors with line:col', () => {
    const p = problems(() => parseYaml('a: 1\nb: [1, 2\n', 'x.yaml'));
    expect(p).toHaveLength(1);
    expect(p[0]).toMatch(/^x\.yaml:\d+:\d+ syntax error: /);
  });

  it('reports duplicate keys as errors', () => {
    expect(problems(() => parseYaml('a: 1\na: 2\n', 'x.yaml'))[0]).toMatch(/^x\.yaml:2:1 syntax error: Map keys must be unique/);
  });

  it('refuses alias bombs', () => {
    const bomb = ['a: &a [x, x, x, x, x, x, x, x, x]', ...'bcdefgh'.split('').map((k, i) => `${k}: &${k} [${Array(9).fill(`*${'abcdefg'[i]}`).join(', ')}]`)].join('\n');
    expect(problems(() => parseYaml(bomb, 'bomb.yaml'))[0]).toMatch(/^bomb\.yaml: .*alias/i);
  });

  it('treats an empty document as an empty map', () => {
    expect(parseYaml('# only a comment\n', 'x.yaml').data).toEqual({});
  });
});

describe('validateConfig via loadYamlConfig', () => {
  it('returns the parsed value with defaults', () => {
    expect(loadYamlConfig(schema, 'name: a\n', 'x.yaml')).toEqual({ name: 'a', policy: 'round_robin', items: [] });
  });

  it('lists every problem with file:line:col, in file order', () => {
    const text = [
      'name: 5', //                         1
      'policy: rr', //                      2
      'items:', //                          3
      '  - port: 70000', //                 4
      '    tag: x', //                      5
      '  - tag: ok', //                     6
      '    extra: 1', //                    7
      'admin: { port: "9090" }', //         8
    ].join('\n');
    expect(problems(() => loadYamlConfig(schema, text, 'routes.yaml'))).toEqual([
      'routes.yaml:1:7 name: expected a string, got 5',
      'routes.yaml:2:9 policy: expected one of round_robin|hash|consistent_hash, got "rr"',
      'routes.yaml:4:11 items[0].port: expected <= 65535, got 70000',
      'routes.yaml:5:10 items[0].tag: expected at least 2 characters, got 1',
      // A missing required field points at the map that should hold it.
      'routes.yaml:6:5 items[1].port: required (expected a number)',
      // An unknown key points at the key itself.
      'routes.yaml:7:5 items[1].extra: unknown key "extra"',
      // The union is narrowed to the branch the value was meant for.
      'routes.yaml:8:16 admin.port: expected a number, got "9090"',
    ]);
  });

  it('describes a union mismatch by its alternatives', () => {
    expect(problems(() => loadYamlConfig(schema, 'name: a\nadmin: true\n', 'x.yaml'))).toEqual([
      'x.yaml:2:8 admin: expected false or a map, got true',
    ]);
  });

  it('points at the root when the document is not a map', () => {
    expect(problems(() => loadYamlConfig(schema, '- 1\n- 2\n', 'x.yaml'))).toEqual(['x.yaml:1:1 (root): expected a map, got a list']);
  });

  it('reports without positions when there is no source text', () => {
    expect(problems(() => validateConfig(schema, { name: 1 }, 'obj'))).toEqual(['obj name: expected a string, got 1']);
  });
});

describe('helpers', () => {
  it('formats paths', () => {
    expect(formatPath([])).toBe('(root)');
    expect(formatPath(['routes', 1, 'policy'])).toBe('routes[1].policy');
    expect(formatPath(['pools', 'chat.v2', 'endpoints', 0])).toBe('pools["chat.v2"].endpoints[0]');
  });

  it('describes values briefly', () => {
    expect(describeValue(undefined)).toBe('nothing');
    expect(describeValue(null)).toBe('null');
    expect(describeValue('rr')).toBe('"rr"');
    expect(describeValue('x'.repeat(100))).toHaveLength(62);
    expect(describeValue([1])).toBe('a list');
    expect(describeValue({})).toBe('a map');
    expect(describeValue(3)).toBe('3');
  });

  it('parses host:port', () => {
    expect(parseHostPort('127.0.0.1:7101')).toEqual({ host: '127.0.0.1', port: 7101 });
    expect(parseHostPort('backend-1.internal:80')).toEqual({ host: 'backend-1.internal', port: 80 });
    expect(parseHostPort('[::1]:7000')).toEqual({ host: '::1', port: 7000 });
    for (const bad of ['127.0.0.1', 'host:0', 'host:65536', '::1:7000', '[example.com]:1', 'bad_host:1', 'a b:1', ':80', '[::1]']) {
      expect(parseHostPort(bad), bad).toBeNull();
    }
  });

  it('deep-freezes', () => {
    const value = deepFreeze({ a: { b: [1, { c: 2 }] } });
    expect(Object.isFrozen(value.a.b[1])).toBe(true);
    expect(() => {
      (value.a as { b: unknown }).b = [];
    }).toThrow(TypeError);
  });

  it('turns a missing file into a ConfigError', () => {
    expect(problems(() => readConfigFile('/nonexistent/livemux.yaml'))[0]).toMatch(/^\/nonexistent\/livemux\.yaml: cannot read \(ENOENT/);
  });
});
