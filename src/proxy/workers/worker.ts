import type { Socket } from 'node:net';
import { AggregatorRegistry } from 'prom-client';
import type { ProxyConfig } from '../../config/proxy-config.js';
import { EventLoopLag } from '../../observability/event-loop-lag.js';
import { untilStop } from '../../util/signals.js';
import { ProxyServer } from '../server.js';
import { type FromWorker, LOAD_REPORT_MS, type ToWorker, WORKER_ENV, isLivemuxMessage } from './messages.js';

/**
 * One worker of `livemux start --workers`: a whole proxy (its own proxy id, backend streams, session
 * registry and fan-out) that binds no port. The primary hands it accepted client sockets; it reports
 * its load every LOAD_REPORT_MS, answers the primary's questions (status, config) and follows its
 * log level and drain. It stops (drains, closes, exits 0) when told to, on SIGTERM/SIGINT (Ctrl-C
 * reaches every process of the group), or when the primary is gone.
 */
export async function runProxyWorker(fileConfig: ProxyConfig): Promise<number> {
  const proxyId = process.env[WORKER_ENV.proxyId] ?? fileConfig.proxyId;
  const logLevel = process.env[WORKER_ENV.logLevel] ?? fileConfig.logLevel;
  // The primary owns the admin port and the dispatch registration.
  const config: ProxyConfig = { ...fileConfig, proxyId, logLevel, admin: null, dispatch: null };
  const server = await ProxyServer.start(config, { handoff: true });
  // prom-client answers the primary's AggregatorRegistry with this registry's metrics.
  AggregatorRegistry.setRegistries([server.metrics.registry]);
  new AggregatorRegistry();

  const send = (message: FromWorker): void => {
    if (process.connected) process.send!(message);
  };
  const lag = new EventLoopLag();
  let received = 0;
  const report = setInterval(() => {
    send({ livemux: 'load', connections: server.connectionCount, received, ready: server.ready, eventLoopLagMs: lag.takeP99Ms() });
  }, LOAD_REPORT_MS);

  let stop!: () => void;
  const stopped = new Promise<void>((resolve) => (stop = resolve));
  process.on('message', (message: unknown, handle?: Socket) => {
    if (!isLivemuxMessage(message)) return;
    const m = message as ToWorker;
    switch (m.livemux) {
      case 'conn':
        if (!handle) return;
        received++;
        server.adopt(handle);
        return;
      case 'ask':
        void (m.what === 'status' ? server.status() : Promise.resolve(server.effectiveConfig())).then((body) =>
          send({ livemux: 'answer', request: m.request, body }),
        );
        return;
      case 'reload':
        server.reloadRoutes(m.trigger);
        return;
      case 'log-level':
        server.logger.level = m.level;
        return;
      case 'drain':
        void server.drain().catch((err: unknown) => server.logger.error({ err }, 'drain failed'));
        return;
      case 'stop':
        stop();
    }
  });
  void untilStop().then(() => stop());
  send({ livemux: 'ready', proxyId });

  await stopped;
  clearInterval(report);
  lag.stop();
  await server.close();
  // The IPC channel would keep the process alive.
  if (process.connected) process.disconnect();
  return 0;
}
