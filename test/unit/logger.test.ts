import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createLogger, type LogContext } from '../../src/observability/logger.js';

/** A destination collecting each JSON line as an object. */
function capture(): { lines: Record<string, unknown>[]; stream: Writable } {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString().split('\n')) if (line) lines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  return { lines, stream };
}

describe('createLogger', () => {
  it('writes JSON lines with level name, ISO time and proxy id', () => {
    const { lines, stream } = capture();
    createLogger({ level: 'info', proxyId: 'p-1' }, stream).info({ port: 7000 }, 'listening');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ level: 'info', proxy: 'p-1', pid: process.pid, port: 7000, msg: 'listening' });
    expect(lines[0]!.time).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  });

  it('respects the level', () => {
    const { lines, stream } = capture();
    const logger = createLogger({ level: 'warn', proxyId: 'p' }, stream);
    logger.info('hidden');
    logger.warn('shown');
    expect(lines.map((l) => l.msg)).toEqual(['shown']);
  });

  it('children carry conn, user and session', () => {
    const { lines, stream } = capture();
    const context: LogContext = { conn: 'c7', user: 'u42', session: 3 };
    createLogger({ level: 'debug', proxyId: 'p' }, stream).child(context).debug('opened');
    expect(lines[0]).toMatchObject({ conn: 'c7', user: 'u42', session: 3, msg: 'opened', level: 'debug' });
  });

  it('redacts tokens and secrets', () => {
    const { lines, stream } = capture();
    createLogger({ level: 'info', proxyId: 'p' }, stream).info({ token: 'eyJ...', hello: { token: 'eyJ...' }, auth: { jwtSecret: 's' } }, 'hello');
    expect(lines[0]).toMatchObject({ token: '[redacted]', hello: { token: '[redacted]' }, auth: { jwtSecret: '[redacted]' } });
  });
});
