import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { LineCounter, isAlias, isMap, isScalar, isSeq, parseDocument, type Document, type Node } from 'yaml';
import { z } from 'zod';
import { ConfigError } from '../protocol/errors.js';

/**
 * Shared machinery of every livemux config file: read, parse YAML keeping node positions, validate
 * with a zod schema, and turn every problem into one `file:line:col path: message` line of a single
 * {@link ConfigError}, so an operator fixes a file in one pass instead of one error per restart.
 */

/** A path into a config value as zod reports it (`['routes', 1, 'policy']`). */
export type ConfigPath = readonly PropertyKey[];

/** A 1-based position in a config file. */
export interface Position {
  line: number;
  col: number;
}

/** Where a path is written in the file (for `at: 'key'`, where its key is). */
export type Locator = (path: ConfigPath, at: 'key' | 'value') => Position;

/** A parsed YAML file: its plain data and a locator for its paths. */
export interface ParsedYaml {
  /** The document as plain JS; an empty document (only comments) is `{}` so "all defaults" works. */
  readonly data: unknown;
  readonly locate: Locator;
}

/** Reads a config file as UTF-8; a missing or unreadable file is a {@link ConfigError}, not a raw errno. */
export function readConfigFile(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(file, [`${file}: cannot read (${(err as Error).message})`]);
  }
}

/**
 * Parses YAML text. Syntax errors (including duplicate keys and multiple documents) become one
 * {@link ConfigError} listing each with its `file:line:col`.
 */
export function parseYaml(text: string, fileName: string): ParsedYaml {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false });
  if (doc.errors.length > 0) {
    throw new ConfigError(
      fileName,
      doc.errors.map((e) => `${formatPosition(fileName, lineCounter.linePos(e.pos[0]))} syntax error: ${e.message.split('\n')[0]}`),
    );
  }
  let data: unknown;
  try {
    data = doc.toJS();
  } catch (err) {
    // toJS refuses alias bombs ("billion laughs") and similar resource abuse.
    throw new ConfigError(fileName, [`${fileName}: ${(err as Error).message}`]);
  }
  return {
    data: data ?? {},
    locate: (path, at) => lineCounter.linePos(findNode(doc, path, at)?.range?.[0] ?? 0),
  };
}

/**
 * The node a path points at; when the path runs past what is written (a missing key), the deepest
 * node that exists, so "missing required field" points at the map that should hold it (or at the
 * key of a section left empty).
 */
function findNode(doc: Document, path: ConfigPath, at: 'key' | 'value'): Node | null {
  let node = doc.contents as Node | null;
  for (let i = 0; i < path.length && node; i++) {
    if (isAlias(node)) node = node.resolve(doc) ?? null;
    const segment = path[i];
    const last = i === path.length - 1;
    let next: Node | null = null;
    if (isMap(node)) {
      const pair = node.items.find((p) => isScalar(p.key) && String(p.key.value) === String(segment));
      const value = (pair?.value ?? null) as Node | null;
      if (pair) {
        const key = pair.key as Node;
        if (last) next = at === 'key' ? key : (value ?? key);
        else next = isCollection(value) ? value : key;
      }
    } else if (isSeq(node) && typeof segment === 'number') {
      next = (node.items[segment] as Node | undefined) ?? null;
    }
    if (!next) break;
    node = next;
  }
  return node;
}

function isCollection(node: Node | null): boolean {
  return isMap(node) || isSeq(node) || isAlias(node);
}

function formatPosition(fileName: string, { line, col }: Position): string {
  return `${fileName}:${line}:${col}`;
}

/**
 * Validates `data` against `schema`. On failure throws one {@link ConfigError} whose problems are
 * `file:line:col path: message` (just `file path: message` without a locator), one per zod issue,
 * in file order. Unions are narrowed to the branch the value was meant for; each unknown key is
 * its own problem, located at the key.
 */
export function validateConfig<S extends z.ZodType>(schema: S, data: unknown, fileName: string, locate?: Locator): z.output<S> {
  const result = schema.safeParse(data, { error: issueMessage });
  if (result.success) return result.data;
  const problems = result.error.issues.flatMap((issue) => flattenIssue(issue, []));
  if (!locate) {
    throw new ConfigError(fileName, problems.map((p) => `${fileName} ${formatPath(p.path)}: ${p.message}`));
  }
  const located = problems.map((p) => ({ ...p, pos: locate(p.path, p.at) }));
  // Stable sort: problems at one position keep zod's order.
  located.sort((a, b) => a.pos.line - b.pos.line || a.pos.col - b.pos.col);
  throw new ConfigError(
    fileName,
    located.map((p) => `${formatPosition(fileName, p.pos)} ${formatPath(p.path)}: ${p.message}`),
  );
}

/** Parses YAML text and validates it in one step (see {@link parseYaml}, {@link validateConfig}). */
export function loadYamlConfig<S extends z.ZodType>(schema: S, text: string, fileName: string): z.output<S> {
  const { data, locate } = parseYaml(text, fileName);
  return validateConfig(schema, data, fileName, locate);
}

interface Problem {
  path: ConfigPath;
  at: 'key' | 'value';
  message: string;
}

function flattenIssue(issue: z.core.$ZodIssue, prefix: ConfigPath): Problem[] {
  const path = [...prefix, ...issue.path];
  if (issue.code === 'unrecognized_keys') {
    return issue.keys.map((key) => ({ path: [...path, key], at: 'key' as const, message: `unknown key "${key}"` }));
  }
  if (issue.code === 'invalid_key') {
    // A map key failed its own schema (e.g. a pool name): report the key's problem at the key.
    return issue.issues.map((sub) => ({ path, at: 'key' as const, message: sub.message }));
  }
  if (issue.code === 'invalid_union') {
    // The branch whose type matched (e.g. a map given for `false | {host, port}`) holds the useful detail.
    const matched = issue.errors.filter((branch) => !branch.every(isTypeMismatch));
    if (matched.length === 1) return matched[0]!.flatMap((sub) => flattenIssue(sub, path));
  }
  return [{ path, at: 'value', message: issue.message }];
}

function isTypeMismatch(issue: z.core.$ZodIssue): boolean {
  return issue.path.length === 0 && (issue.code === 'invalid_type' || issue.code === 'invalid_value');
}

/**
 * zod error map producing `expected X, got Y` messages. Schema-level custom messages take precedence,
 * so fields with a domain rule (host:port, name patterns) word their own.
 */
function issueMessage(issue: z.core.$ZodRawIssue): string | undefined {
  const got = describeValue(issue.input);
  switch (issue.code) {
    case 'invalid_type':
      return issue.input === undefined
        ? `required (expected ${typeName(issue.expected)})`
        : `expected ${typeName(issue.expected)}, got ${got}`;
    case 'invalid_value':
      return issue.input === undefined
        ? `required (expected ${formatValues(issue.values)})`
        : `expected ${formatValues(issue.values)}, got ${got}`;
    case 'invalid_union':
      return `expected ${issue.errors.map((branch) => branch.map(expectation).join(' and ')).join(' or ')}, got ${got}`;
    case 'too_small':
    case 'too_big':
      return boundMessage(issue);
    case 'invalid_format':
      return `expected ${issue.format}, got ${got}`;
    default:
      return undefined;
  }
}

type BoundIssue = Extract<z.core.$ZodRawIssue, { code: 'too_big' | 'too_small' }>;

function boundMessage(issue: BoundIssue): string {
  const small = issue.code === 'too_small';
  const bound = issue.code === 'too_small' ? issue.minimum : issue.maximum;
  if (issue.origin === 'string' || issue.origin === 'array') {
    const unit = issue.origin === 'string' ? 'character' : 'item';
    const count = (issue.input as string | unknown[]).length;
    return `expected ${small ? 'at least' : 'at most'} ${bound} ${unit}${bound === 1 ? '' : 's'}, got ${count}`;
  }
  const op = small ? (issue.inclusive ? '>=' : '>') : issue.inclusive ? '<=' : '<';
  return `expected ${op} ${bound}, got ${describeValue(issue.input)}`;
}

/** What one union branch expected, from its root-level issue. */
function expectation(issue: z.core.$ZodIssue): string {
  if (issue.code === 'invalid_type') return typeName(issue.expected);
  if (issue.code === 'invalid_value') return formatValues(issue.values);
  return issue.message;
}

function formatValues(values: readonly unknown[]): string {
  const shown = values.map((v) => (typeof v === 'string' ? v : String(v))).join('|');
  return values.length === 1 ? shown : `one of ${shown}`;
}

function typeName(expected: string): string {
  switch (expected) {
    case 'object':
    case 'record':
      return 'a map';
    case 'array':
      return 'a list';
    case 'int':
      return 'an integer';
    default:
      return `a ${expected}`;
  }
}

/** A short, quoted description of a config value for `got ...` in messages. */
export function describeValue(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (value === null) return 'null';
  if (typeof value === 'string') return JSON.stringify(value.length > 60 ? `${value.slice(0, 57)}...` : value);
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a map';
  return String(value);
}

/** `routes[1].policy`; keys that are not plain identifiers are bracketed (`pools["chat.v2"]`). */
export function formatPath(path: ConfigPath): string {
  if (path.length === 0) return '(root)';
  let out = '';
  for (const segment of path) {
    if (typeof segment === 'number') out += `[${segment}]`;
    else if (/^[A-Za-z_][A-Za-z0-9_]*$/.test(String(segment))) out += out === '' ? String(segment) : `.${String(segment)}`;
    else out += `[${JSON.stringify(String(segment))}]`;
  }
  return out;
}

/** True for a YAML/JSON map (a non-null, non-array object), for checks that must tolerate any input. */
export function isPlainMap(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/** Freezes a validated config and everything reachable from it, so no module can change it under another. */
export function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const key of Reflect.ownKeys(value)) deepFreeze((value as Record<PropertyKey, unknown>)[key]);
  }
  return value;
}

const HOSTNAME = /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

/** True for an IPv4 address, an IPv6 address (unbracketed) or an RFC 1123 host name. */
export function isValidHost(host: string): boolean {
  return isIP(host) !== 0 || HOSTNAME.test(host);
}

/**
 * Splits `host:port` (IPv6 in brackets: `[::1]:7000`) with a port in 1..65535, or returns null.
 * Dialing port 0 is meaningless, so unlike a listen port it is refused.
 */
export function parseHostPort(value: string): { host: string; port: number } | null {
  const match = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(value);
  if (!match) return null;
  const host = match[1] ?? match[2]!;
  const port = Number(match[3]);
  if (port < 1 || port > 65535) return null;
  if (match[1] !== undefined ? isIP(host) !== 6 : !isValidHost(host)) return null;
  return { host, port };
}

/** Schema of a host (IP or name) to listen on. */
export const hostSchema = z.string().refine(isValidHost, {
  error: (issue) => `expected an IP address or host name, got ${describeValue(issue.input)}`,
});

/** Schema of a port to listen on; 0 picks a free port (tests). */
export const listenPortSchema = z.number().int().min(0).max(65535);

/** Schema of an address to dial, `host:port`. */
export const hostPortSchema = z.string().refine((v) => parseHostPort(v) !== null, {
  error: (issue) => `expected host:port (IPv6 as [addr]:port, port 1-65535), got ${describeValue(issue.input)}`,
});
