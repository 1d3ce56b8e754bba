import net from 'node:net';

/**
 * The broadcast baseline: a plain Node TCP server relaying what a publisher sends to every receiver,
 * with writes coalesced per event-loop turn: the bytes read during one turn are concatenated once and
 * the same buffer is written to each receiver, one write per socket per turn. No framing and no state
 * per message: the practical limit of Node on this machine. A socket becomes the publisher by sending
 * anything (receivers never send); the publisher sends whole livemux DATA frames, so receivers decode
 * exactly the bytes a livemux client would. A receiver with more than `--max-backlog` bytes not yet
 * taken by the kernel is closed, as livemux closes a member that far behind (SLOW_CONSUMER; the bench
 * passes livemux's outbound queue bound): unbounded, one overloaded step of a peak search queued
 * gigabytes, drained long after the step. Prints `{"event":"listening","port":N,"pid":N}`.
 */
const at = process.argv.indexOf('--max-backlog');
const maxBacklog = at > 0 ? Number(process.argv[at + 1]) : Infinity;
const receivers = new Set<net.Socket>();
let pending: Buffer[] = [];

function flush(): void {
  const bytes = pending.length === 1 ? pending[0]! : Buffer.concat(pending);
  pending = [];
  for (const socket of receivers) {
    socket.write(bytes);
    if (socket.writableLength > maxBacklog) socket.destroy();
  }
}

const server = net.createServer((socket) => {
  socket.setNoDelay(true);
  receivers.add(socket);
  socket.on('data', (chunk: Buffer) => {
    receivers.delete(socket);
    if (pending.push(chunk) === 1) setImmediate(flush);
  });
  socket.on('error', () => {});
  socket.on('close', () => receivers.delete(socket));
});
server.listen({ port: 0, host: '127.0.0.1', backlog: 1024 }, () => {
  console.log(JSON.stringify({ event: 'listening', port: (server.address() as net.AddressInfo).port, pid: process.pid }));
});
process.on('SIGTERM', () => process.exit(0));
