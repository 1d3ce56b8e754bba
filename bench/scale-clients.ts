import net from 'node:net';
import { parseArgs } from 'node:util';
import { mintToken } from '../src/proxy/auth.js';
import { BenchConnection, connectFrom } from './bench-connection.js';

/**
 * Holds `count` idle connections from one source address, for the scale bench, opening `concurrency`
 * at a time:
 * - livemux: HELLO with a token of its own (user `<prefix><i>`, verified by the proxy), then one
 *   session (OPEN → OPEN_OK), then idle; PINGs are answered, as a phone's SDK would;
 * - plain: one round trip (8 bytes out, the server's reply back), then idle.
 * Prints `{"event":"armed"}` when ready to start, starts on SIGUSR2, prints
 * `{"event":"connected","count","ms","cpuUs"}` once all are open (time from the first connect to the
 * last answer), then holds them until SIGTERM. Exits 1 if a connection fails or closes.
 */
const { values } = parseArgs({
  options: {
    mode: { type: 'string' },
    port: { type: 'string' },
    count: { type: 'string' },
    local: { type: 'string' },
    secret: { type: 'string', default: '' },
    prefix: { type: 'string', default: 'scale-' },
    concurrency: { type: 'string', default: '64' },
  },
});
const port = Number(values.port);
const count = Number(values.count);
const local = values.local;

/** Tokens are minted before the clock starts: the proxy's JWT check is measured, not the client's signing. */
const tokens = values.mode === 'livemux' ? await Promise.all(Array.from({ length: count }, (_, i) => mintToken({ secret: values.secret!, sub: `${values.prefix}${i}` }))) : [];
const held: (BenchConnection | net.Socket)[] = [];
const fail = (why: string): never => {
  process.stderr.write(`scale-clients: ${why}\n`);
  process.exit(1);
};

async function openLivemux(i: number): Promise<void> {
  const conn = await BenchConnection.connect(port, () => {}, local);
  conn.socket.once('close', () => fail(`connection ${i} closed by the proxy`));
  await conn.hello(tokens[i]!);
  if ((await conn.open('echo', 1)).refused > 0) fail(`connection ${i}: OPEN refused`);
  held.push(conn);
}

async function openPlain(i: number): Promise<void> {
  const socket = await connectFrom(port, local);
  socket.on('error', () => {});
  socket.write('hello!\r\n');
  await new Promise((resolve) => socket.once('data', resolve));
  held.push(socket);
  socket.once('close', () => fail(`connection ${i} closed by the server`));
}

const open = values.mode === 'livemux' ? openLivemux : values.mode === 'plain' ? openPlain : fail(`--mode must be livemux or plain, got ${values.mode}`);
// Every client process starts at once, on the bench's signal, so the accept rate is the servers'.
// A signal listener does not keep the process alive; this timer does, until SIGTERM.
setInterval(() => {}, 1 << 30);
const go = new Promise((resolve) => process.once('SIGUSR2', resolve));
console.log(JSON.stringify({ event: 'armed' }));
await go;
const started = performance.now();
const cpuBefore = process.cpuUsage();
let next = 0;
await Promise.all(
  Array.from({ length: Math.min(Number(values.concurrency), count) }, async () => {
    while (next < count) await open(next++).catch((err: Error) => fail(`connect: ${err.message}`));
  }),
);
const cpu = process.cpuUsage(cpuBefore);
console.log(JSON.stringify({ event: 'connected', count: held.length, ms: performance.now() - started, cpuUs: cpu.user + cpu.system }));
process.on('SIGTERM', () => process.exit(0));
