import { readdirSync, readFileSync } from 'node:fs';
import { describe, it, expect } from 'vitest';
import { Code, CODES, codeInfo, codeName } from '../../src/protocol/codes.js';
import { PACKAGE_ROOT } from '../../src/paths.js';
import { tableRows } from '../helpers/markdown-table.js';
import { SCENARIOS } from '../../src/conformance/scenarios.js';

const doc = readFileSync(`${PACKAGE_ROOT}/PROTOCOL.md`, 'utf8');

interface Vector {
  name: string;
  hex: string;
  meaning: string;
  code?: string;
}
const fixture = JSON.parse(readFileSync(`${PACKAGE_ROOT}/test/fixtures/protocol-vectors.json`, 'utf8')) as {
  valid: Vector[];
  invalid: Vector[];
  malformedBodies: Vector[];
};

/** The hex of a table cell: backticks and the readability spaces removed. */
const hexCell = (cell: string | undefined): string => (cell ?? '').replace(/[`\s]/g, '');

describe('code registry', () => {
  it('pins every wire value', () => {
    expect(Code).toEqual({
      NORMAL: 0,
      PROTOCOL_ERROR: 100,
      BAD_MAGIC: 101,
      UNSUPPORTED_VERSION: 102,
      FRAME_TOO_LARGE: 103,
      UNKNOWN_FRAME_TYPE: 104,
      BAD_FLAGS: 105,
      MALFORMED_PAYLOAD: 106,
      UNEXPECTED_FRAME: 107,
      FLOW_CONTROL_ERROR: 108,
      BAD_SESSION_ID: 109,
      UNKNOWN_SESSION: 200,
      SESSION_ID_REUSED: 201,
      TOO_MANY_SESSIONS: 202,
      UNKNOWN_BUSINESS: 203,
      BACKEND_UNAVAILABLE: 204,
      BACKEND_CLOSED: 205,
      SESSION_FLOW_CONTROL: 206,
      CANCELLED: 207,
      BUSINESS_DISABLED: 208,
      MISSING_HASH_KEY: 209,
      ENDPOINT_REMOVED: 210,
      HALF_CLOSE_TIMEOUT: 211,
      SESSION_IDS_EXHAUSTED: 212,
      MESSAGE_TOO_LARGE: 213,
      AUTH_FAILED: 300,
      AUTH_EXPIRED: 301,
      HANDSHAKE_TIMEOUT: 400,
      HEARTBEAT_TIMEOUT: 401,
      IDLE_TIMEOUT: 402,
      SLOW_CONSUMER: 403,
      RATE_LIMITED: 404,
      GOING_AWAY: 405,
      INTERNAL_ERROR: 406,
    });
  });

  it('has one entry per Code, with the same name, in numeric order', () => {
    expect(CODES.map((c) => [c.name, c.code])).toEqual(Object.entries(Code));
    const numbers = CODES.map((c) => c.code);
    expect(numbers).toEqual([...numbers].sort((a, b) => a - b));
  });

  it('has unique codes and names', () => {
    expect(new Set(CODES.map((c) => c.code)).size).toBe(CODES.length);
    expect(new Set(CODES.map((c) => c.name)).size).toBe(CODES.length);
  });

  it('keeps codes in the documented ranges: 0 normal, then 1xx to 4xx', () => {
    expect(CODES.filter((c) => c.code < 100).map((c) => c.name)).toEqual(['NORMAL']);
    for (const c of CODES.filter((c) => c.code >= 100)) expect([1, 2, 3, 4]).toContain(Math.floor(c.code / 100));
    expect(doc).toContain(
      '**0** normal · **1xx** connection protocol faults · **2xx** session faults ·\n**3xx** authentication · **4xx** server lifecycle and load.',
    );
  });

  it('gives a first delay exactly to backoff codes', () => {
    for (const c of CODES) expect(c.delayMs > 0, c.name).toBe(c.retry === 'backoff');
  });

  it('maps an unknown code to backoff from 1000 ms, as PROTOCOL.md §6 tells clients', () => {
    expect(codeInfo(999)).toMatchObject({ code: 999, name: 'UNKNOWN_999', retry: 'backoff', delayMs: 1000 });
    expect(codeName(Code.GOING_AWAY)).toBe('GOING_AWAY');
    expect(doc).toContain('MUST be treated as `backoff` with a\nfirst delay of 1000 ms');
  });

  it('is frozen', () => {
    expect(Object.isFrozen(CODES[0])).toBe(true);
  });
});

describe('PROTOCOL.md', () => {
  it('§6 table matches CODES row for row', () => {
    const rows = tableRows(doc, '## §6 Error and close codes', '| code | name | retry | first delay (ms) | meaning |');
    expect(rows).toEqual(CODES.map((c) => [String(c.code), c.name, c.retry, String(c.delayMs), c.meaning]));
  });

  it('§12 valid table matches the fixture', () => {
    const rows = tableRows(doc, '### §12.1 Valid frames', '| name | hex | decoded meaning |');
    expect(rows.map(([name, hex, meaning]) => ({ name, hex: hexCell(hex), meaning }))).toEqual(
      fixture.valid.map(({ name, hex, meaning }) => ({ name, hex, meaning })),
    );
  });

  it('§12 invalid-header and malformed-body tables match the fixture', () => {
    for (const [heading, vectors] of [
      ['### §12.2 Invalid headers', fixture.invalid],
      ['### §12.3 Malformed bodies', fixture.malformedBodies],
    ] as const) {
      const rows = tableRows(doc, heading, '| name | hex | code | why |');
      expect(rows.map(([name, hex, code, meaning]) => ({ name, hex: hexCell(hex), code, meaning }))).toEqual(
        vectors.map(({ name, hex, code, meaning }) => ({ name, hex, code, meaning })),
      );
    }
  });

  it('names only registered codes in the invalid vectors', () => {
    for (const v of [...fixture.invalid, ...fixture.malformedBodies]) expect(Object.keys(Code)).toContain(v.code);
  });

  it('§12.4 walkthrough uses the fixture bytes of each vector it names', () => {
    const rows = tableRows(doc, '### §12.4 Walkthrough', '| step | direction | vector | hex |');
    expect(rows.length).toBeGreaterThan(0);
    const byName = new Map(fixture.valid.map((v) => [v.name, v.hex]));
    for (const [, , vector, hex] of rows) expect(hexCell(hex), vector).toBe(byName.get(vector ?? ''));
  });

  it('§3.5 lists exactly the codes the server refuses an OPEN with', () => {
    const rows = tableRows(doc, '### §3.5 OPEN_FAIL (0x05, S→C)', '| code | why |');
    const listed = rows.map(([cell]) => /^([A-Z_]+) \((\d+)\)$/.exec(cell ?? '')).map((m) => {
      expect(codeInfo(Number(m![2])).name).toBe(m![1]);
      return m![1]!;
    });
    const admission = readFileSync(`${PACKAGE_ROOT}/src/proxy/session-admission.ts`, 'utf8');
    const refused = new Set([...admission.matchAll(/refuse\(Code\.([A-Z_]+)/g)].map((m) => m[1]!));
    expect([...refused].sort()).toEqual([...listed].sort());
  });

  it('§14 lists every conformance scenario with what it checks', () => {
    const rows = tableRows(doc, '## §14 Conformance kit', '| scenario | checks |');
    expect(rows).toEqual(SCENARIOS.map((sc) => [sc.name, sc.checks]));
  });

  it('§10.1 reopen table agrees with each code\'s retry advice', () => {
    const rows = tableRows(doc, '### §10.1 Reopening a session', '| code | arrives in | reopen |');
    expect(rows.length).toBeGreaterThan(10);
    for (const [codes, , reopen] of rows) {
      for (const [, name, value] of (codes ?? '').matchAll(/([A-Z_]+) \((\d+)\)/g)) {
        const info = codeInfo(Number(value));
        expect(info.name, codes).toBe(name);
        const expected = { none: 'no', never: 'no', immediate: 'at once', backoff: 'after backoff', refresh_token: '' }[info.retry];
        expect(reopen!.startsWith(expected), `${name}: ${reopen}`).toBe(true);
        if (info.retry === 'backoff' && !reopen!.includes('retry_after_ms')) expect(reopen).toContain(`${info.delayMs / 1000} s`);
      }
    }
  });

  it('has a heading for every section that PROTOCOL.md, proto/, src/ and docs/ cite', () => {
    const headings = new Set(doc.split('\n').flatMap((line) => /^#{2,3} (§[0-9]+(?:\.[0-9]+)?) /.exec(line)?.[1] ?? []));
    const cited = new Set<string>();
    const files = [
      'PROTOCOL.md',
      ...['proto', 'src', 'docs'].flatMap((dir) =>
        readdirSync(`${PACKAGE_ROOT}/${dir}`, { recursive: true, encoding: 'utf8' }).map((f) => `${dir}/${f}`),
      ),
    ].filter((f) => /\.(ts|proto|md)$/.test(f));
    for (const file of files) {
      const text = readFileSync(`${PACKAGE_ROOT}/${file}`, 'utf8');
      // Inside PROTOCOL.md every § is its own; elsewhere only those said to be PROTOCOL.md's.
      const pattern = file === 'PROTOCOL.md' ? /(§[0-9]+(?:\.[0-9]+)?)/g : /PROTOCOL\.md,? ?(§[0-9]+(?:\.[0-9]+)?)/g;
      for (const m of text.matchAll(pattern)) cited.add(`${m[1]} (${file})`);
    }
    for (const ref of cited) expect(headings, ref).toContain(ref.split(' ')[0]);
  });

  it('keeps the section numbers the code cites', () => {
    for (const heading of [
      '## §1 Overview',
      '## §2 Framing',
      '## §3 Frame types',
      '## §4 Bodies',
      '## §5 State machines',
      '## §6 Error and close codes',
      '## §7 Flow control',
      '## §8 Priorities and outbound queue',
      '## §9 Heartbeats, timeouts, limits, drain',
      '## §10 Reconnecting',
      '## §11 Defaults and limits',
      '## §12 Test vectors',
      '## §13 Changes',
      '## §14 Conformance kit',
    ]) {
      expect(doc.split('\n'), heading).toContain(heading);
    }
  });
});
