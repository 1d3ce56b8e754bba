import net from 'node:net';

/** A loopback TCP forwarder whose connections a test can starve of replies and then cut. */
export interface CuttableForwarder {
  readonly port: number;
  /** From now on, bytes from the server are dropped (the client never hears back) until `cut`. */
  hold(): void;
  /** Destroys every open connection (both sides) and forwards normally again for new ones. */
  cut(): void;
  close(): Promise<void>;
}

/** Listens on a free loopback port and forwards each connection to `targetPort`. */
export async function startCuttableForwarder(targetPort: number): Promise<CuttableForwarder> {
  const sockets = new Set<net.Socket>();
  let holding = false;
  const track = (socket: net.Socket): void => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    socket.on('error', () => socket.destroy());
  };
  const server = net.createServer((client) => {
    const upstream = net.connect(targetPort, '127.0.0.1');
    track(client);
    track(upstream);
    client.on('data', (chunk: Buffer) => upstream.destroyed || upstream.write(chunk));
    upstream.on('data', (chunk: Buffer) => holding || client.destroyed || client.write(chunk));
    client.once('close', () => upstream.destroy());
    upstream.once('close', () => client.destroy());
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  return {
    port: (server.address() as net.AddressInfo).port,
    hold() {
      holding = true;
    },
    cut() {
      for (const s of sockets) s.destroy();
      holding = false;
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
