import net from 'node:net';

/**
 * The legacy service of the passthrough bench, on one port: a connection whose first byte is `s`
 * gets a stream of 64 KiB chunks, written as fast as its socket takes them, until it closes; any other
 * connection is echoed back. Prints `{"event":"listening","port","pid"}`.
 */
const CHUNK = Buffer.alloc(64 * 1024, 0x73);

const server = net.createServer((socket) => {
  socket.setNoDelay(true);
  socket.on('error', () => {});
  socket.once('data', (first: Buffer) => {
    if (first[0] !== 0x73) {
      socket.write(first);
      socket.pipe(socket);
      return;
    }
    const pump = (): void => {
      while (!socket.destroyed && socket.write(CHUNK));
    };
    socket.on('drain', pump);
    pump();
  });
});
server.listen({ port: 0, host: '127.0.0.1' }, () => {
  console.log(JSON.stringify({ event: 'listening', port: (server.address() as net.AddressInfo).port, pid: process.pid }));
});
process.on('SIGTERM', () => process.exit(0));
