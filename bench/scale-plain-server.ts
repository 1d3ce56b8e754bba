import cluster from 'node:cluster';
import net from 'node:net';
import { parseArgs } from 'node:util';
import { leastConnections } from '../src/proxy/workers/balancer.js';

/**
 * The scale bench's plain Node TCP server: `--workers N` processes behind one port, each answering a
 * connection's first bytes with 8 bytes and then holding it idle (the cheapest server a connection
 * can have: the baseline of livemux's accept rate and memory per connection). How connections are
 * spread over the workers is `--schedule`:
 * - rr: node:cluster's default round robin (the primary accepts and passes each handle on);
 * - shared: node:cluster's SCHED_NONE (every worker accepts from the shared socket; the kernel picks);
 * - least: what `livemux start --workers` does (the primary accepts paused and hands the socket to
 *   the worker with the fewest connections; src/proxy/workers/balancer.ts).
 * Prints `{"event":"listening","port","pid","workers":[pid...]}`; on SIGUSR2 prints
 * `{"event":"counts","counts":[per worker],"primaryCpuUs"}`.
 */
const { values } = parseArgs({ options: { workers: { type: 'string', default: '2' }, schedule: { type: 'string', default: 'rr' } } });
const WORKERS = Number(values.workers);
const schedule = values.schedule!;

function serve(socket: net.Socket): void {
  socket.once('data', () => socket.write('welcome\n'));
  socket.on('error', () => {});
}

if (cluster.isPrimary) {
  cluster.schedulingPolicy = schedule === 'shared' ? cluster.SCHED_NONE : cluster.SCHED_RR;
  const counts = new Array<number>(WORKERS).fill(0);
  const workers = Array.from({ length: WORKERS }, () => cluster.fork());
  workers.forEach((w, i) => w.on('message', (m: { count?: number }) => m.count !== undefined && (counts[i] = m.count)));
  await Promise.all(workers.map((w) => new Promise((r) => w.once('message', r))));
  let port: number;
  if (schedule === 'least') {
    const loads = workers.map(() => ({ reported: 0, receivedAtReport: 0, handed: 0, accepting: true }));
    const server = net.createServer({ pauseOnConnect: true }, (socket) => {
      const i = leastConnections(loads);
      loads[i]!.handed++;
      workers[i]!.send('conn', socket, { keepOpen: false });
    });
    await new Promise<void>((r) => server.listen({ port: 0, host: '127.0.0.1', backlog: 4096 }, r));
    port = (server.address() as net.AddressInfo).port;
  } else {
    for (const w of workers) w.send('listen');
    const ports = await Promise.all(workers.map((w) => new Promise<number>((r) => w.once('message', (m: { port: number }) => r(m.port)))));
    port = ports[0]!;
  }
  console.log(JSON.stringify({ event: 'listening', port, pid: process.pid, workers: workers.map((w) => w.process.pid) }));
  process.on('SIGUSR2', async () => {
    for (const w of workers) w.send('count');
    await new Promise((r) => setTimeout(r, 500));
    const cpu = process.cpuUsage();
    console.log(JSON.stringify({ event: 'counts', counts, primaryCpuUs: cpu.user + cpu.system }));
  });
  process.on('SIGTERM', () => process.exit(0));
} else {
  let count = 0;
  process.on('message', (m: string, handle?: net.Socket) => {
    if (m === 'conn' && handle) {
      count++;
      serve(handle);
      handle.resume();
    } else if (m === 'listen') {
      // In a worker, listen() goes through the primary: every worker gets the same port.
      const server = net.createServer((socket) => {
        count++;
        serve(socket);
      });
      server.listen({ port: 0, host: '127.0.0.1', backlog: 4096 }, () => process.send!({ port: (server.address() as net.AddressInfo).port }));
    } else if (m === 'count') process.send!({ count });
  });
  process.send!({ ready: true });
  process.on('disconnect', () => process.exit(0));
}
