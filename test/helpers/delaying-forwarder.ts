import net from 'node:net';

/** A loopback TCP forwarder that holds every chunk back, both ways: a real server behind a slow network. */
export interface DelayingForwarder {
  readonly port: number;
  close(): Promise<void>;
}

/**
 * Listens on a free loopback port and forwards each connection to `targetPort`, writing every chunk
 * `delayMs` after it arrived (in order: equal delays keep timers in arrival order). A request/response
 * protocol such as Redis then takes at least 2 × `delayMs` per round trip.
 */
export async function startDelayingForwarder(targetPort: number, delayMs: number): Promise<DelayingForwarder> {
  const sockets = new Set<net.Socket>();
  const track = (socket: net.Socket): void => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  };
  const pipeLate = (from: net.Socket, to: net.Socket): void => {
    from.on('data', (chunk: Buffer) => void setTimeout(() => to.destroyed || to.write(chunk), delayMs));
    from.once('end', () => void setTimeout(() => to.end(), delayMs));
    from.once('error', () => to.destroy());
  };
  const server = net.createServer((client) => {
    const upstream = net.connect(targetPort, '127.0.0.1');
    track(client);
    track(upstream);
    pipeLate(client, upstream);
    pipeLate(upstream, client);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  return {
    port: (server.address() as net.AddressInfo).port,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
