import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Server } from 'socket.io';

/**
 * The socket.io side of the broadcast bench: websocket transport only, every client joins one room,
 * except the one connecting with `?role=publisher`, whose `pub` events are emitted to the room as they
 * come (socket.io encodes the packet once and sends it to each member). Prints
 * `{"event":"listening","port":N,"pid":N}`.
 */
const http = createServer();
const io = new Server(http, { transports: ['websocket'], serveClient: false });
io.on('connection', (socket) => {
  if (socket.handshake.query.role === 'publisher') socket.on('pub', (text: string) => io.to('room').emit('m', text));
  else void socket.join('room');
});
http.listen({ port: 0, host: '127.0.0.1', backlog: 1024 }, () => {
  console.log(JSON.stringify({ event: 'listening', port: (http.address() as AddressInfo).port, pid: process.pid }));
});
process.on('SIGTERM', () => process.exit(0));
