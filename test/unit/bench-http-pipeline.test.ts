import { createServer, type Server } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import Fastify, { type FastifyInstance } from 'fastify';
import { PipelinedConnection, ResponseParser, requestHead } from '../../bench/http-pipeline.js';

const RESPONSES = Buffer.from(
  'HTTP/1.1 202 Accepted\r\ncontent-type: application/json\r\ncontent-length: 25\r\n\r\n{"id":"a","targeted":1}\r\n' +
    'HTTP/1.1 429 Too Many Requests\r\nContent-Length: 0\r\n\r\n' +
    'HTTP/1.1 200 OK\r\nCONTENT-LENGTH:  2 \r\nconnection: keep-alive\r\n\r\n{}',
);

describe('bench ResponseParser', () => {
  it('frames pipelined responses by content-length, whatever two chunks they arrive in', () => {
    for (let split = 0; split <= RESPONSES.length; split++) {
      const parser = new ResponseParser();
      const statuses = [...parser.push(RESPONSES.subarray(0, split)), ...parser.push(RESPONSES.subarray(split))];
      expect(statuses, `split at ${split}`).toEqual([202, 429, 200]);
    }
  });

  it('frames them one byte at a time', () => {
    const parser = new ResponseParser();
    const statuses: number[] = [];
    for (const byte of RESPONSES) statuses.push(...parser.push(Buffer.from([byte])));
    expect(statuses).toEqual([202, 429, 200]);
  });

  it.each([
    ['a chunked response', 'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n', /chunked/],
    ['a response without content-length', 'HTTP/1.1 200 OK\r\nx: y\r\n\r\n', /without content-length/],
    ['a status line that is not HTTP/1.x', 'SPDY/3 200 OK\r\ncontent-length: 0\r\n\r\n', /status line/],
    ['an endless head', `HTTP/1.1 200 OK\r\n${'x: y\r\n'.repeat(4000)}`, /head over/],
  ])('refuses %s', (_, text, error) => {
    expect(() => new ResponseParser().push(Buffer.from(text))).toThrow(error);
  });
});

describe('bench PipelinedConnection', () => {
  let app: FastifyInstance | null = null;
  let server: Server | null = null;
  afterEach(async () => {
    await app?.close();
    server?.close();
    app = server = null;
  });

  it('sends the calls of one turn in one write and answers each with its own status, in order', async () => {
    app = Fastify();
    app.post<{ Body: { n: number } }>('/v1/push', async (req, reply) => reply.code(req.body.n % 2 === 0 ? 202 : 422).send({ n: req.body.n }));
    await app.listen({ host: '127.0.0.1', port: 0 });
    const port = (app.server.address() as { port: number }).port;
    const connection = new PipelinedConnection('127.0.0.1', port);
    await connection.ready;
    const head = requestHead('POST', '/v1/push', `127.0.0.1:${port}`, { 'content-type': 'application/json' });
    const statuses = await Promise.all(
      Array.from({ length: 20 }, (_, n) => new Promise<number>((resolve) => connection.send(head, JSON.stringify({ n }), resolve))),
    );
    expect(statuses).toEqual(Array.from({ length: 20 }, (_, n) => (n % 2 === 0 ? 202 : 422)));
    expect(connection.writes).toBe(1);
    expect(connection.inFlight).toBe(0);
    connection.close();
  });

  it('fails the calls in flight, and every later one, when the server closes the connection', async () => {
    server = createServer((req) => req.socket.destroy());
    await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as { port: number }).port;
    const connection = new PipelinedConnection('127.0.0.1', port);
    await connection.ready;
    const head = requestHead('POST', '/', 'x', {});
    const first = await new Promise<[number, Error | undefined]>((resolve) => connection.send(head, '{}', (status, err) => resolve([status, err])));
    expect(first[0]).toBe(0);
    expect(first[1]?.message).toMatch(/closed/);
    const later = await new Promise<[number, Error | undefined]>((resolve) => connection.send(head, '{}', (status, err) => resolve([status, err])));
    expect(later[0]).toBe(0);
    expect(later[1]).toBe(first[1]);
  });
});
