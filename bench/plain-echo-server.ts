import net from 'node:net';

/**
 * The baseline: a plain Node TCP server that writes every chunk straight back. The load generator
 * speaks livemux framing to it, so both sides of the comparison move identical bytes.
 */
const server = net.createServer((socket) => {
  socket.setNoDelay(true);
  socket.on('data', (chunk) => socket.write(chunk));
  socket.on('error', () => {});
});
server.listen(0, '127.0.0.1', () => {
  console.log(JSON.stringify({ event: 'listening', port: (server.address() as net.AddressInfo).port }));
});
process.on('SIGTERM', () => process.exit(0));
