/**
 * Active health probes of one backend endpoint, used by the EndpointHealthMonitor:
 * - grpc pools: the standard `grpc.health.v1.Health/Check` for the server as a whole (service ""),
 *   over one long-lived channel per endpoint, so a check costs one HTTP/2 request, not a handshake;
 * - tcp pools: a TCP connect, closed as soon as it succeeds (the legacy service sees a connection
 *   that sends nothing and closes).
 *
 * A probe knows nothing about thresholds or breakers: `check` resolves when the endpoint answered
 * healthy and rejects with a HealthCheckError saying whether it failed or timed out.
 */
import net from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { parseHostPort } from '../../config/load-yaml.js';
import { LivemuxError } from '../../protocol/errors.js';
import { type HealthCheckRequest, type HealthCheckResponse, HealthService, ServingStatus } from '../../contract/health.js';

/** Outcome of one check, as counted in `livemux_health_checks_total{result}`. */
export type HealthCheckResult = 'ok' | 'fail' | 'timeout';

/** A failed check. `result` is `fail` (refused, error, not SERVING) or `timeout` (no answer in time). */
export class HealthCheckError extends LivemuxError {
  constructor(
    readonly result: 'fail' | 'timeout',
    message: string,
    options?: { cause?: unknown },
  ) {
    super(result === 'timeout' ? 'ERR_HEALTH_CHECK_TIMEOUT' : 'ERR_HEALTH_CHECK_FAILED', message, options);
    this.name = 'HealthCheckError';
  }
}

/** One endpoint's active check. */
export interface HealthProbe {
  /** Resolves if the endpoint is healthy; rejects with a HealthCheckError otherwise. Never hangs past `timeoutMs`. */
  check(timeoutMs: number): Promise<void>;
  /** Releases the probe's resources (the gRPC channel). Checks in flight fail. */
  close(): void;
}

/** The probe matching a pool's protocol. */
export function createHealthProbe(address: string, protocol: 'grpc' | 'tcp'): HealthProbe {
  return protocol === 'grpc' ? new GrpcHealthProbe(address) : new TcpConnectProbe(address);
}

/**
 * A check's deadline that a stalled event loop cannot fake. When the timer fires later than it was due by
 * more than STALL_TOLERANCE_MS, this process was too busy to run it on time, and possibly to read an
 * answer that has been waiting: the check gets another `timeoutMs` (at most MAX_EXTENSIONS times)
 * instead of failing the endpoint. So a proxy busy with its clients does not eject healthy backends;
 * a backend that really stopped answering still fails once the loop keeps time again.
 */
export function stallTolerantDeadline(timeoutMs: number, onTimeout: () => void): { cancel(): void } {
  let timer: NodeJS.Timeout;
  let extensions = 0;
  const arm = (): void => {
    const due = performance.now() + timeoutMs;
    timer = setTimeout(() => {
      if (performance.now() - due > STALL_TOLERANCE_MS && extensions < MAX_EXTENSIONS) {
        extensions++;
        arm();
      } else onTimeout();
    }, timeoutMs);
    timer.unref();
  };
  arm();
  return { cancel: () => clearTimeout(timer) };
}

/** How late a deadline timer may fire before the loop counts as stalled, ms. */
const STALL_TOLERANCE_MS = 100;
const MAX_EXTENSIONS = 3;

const CHECK_METHOD = HealthService['Check'] as grpc.MethodDefinition<HealthCheckRequest, HealthCheckResponse>;
const WHOLE_SERVER: HealthCheckRequest = { service: '' };

/**
 * Reconnect pace of the probe's channel. grpc-js backs off up to 120 s by default after failed
 * connects, and a fail-fast call during the backoff fails without trying: a backend that came back
 * would look dead to every check until the backoff ran out. A low cap bounds that delay to ~1 s at
 * the cost of one connect attempt per second to a dead endpoint.
 */
const RECONNECT_INITIAL_MS = 100;
const RECONNECT_MAX_MS = 1_000;

/** `grpc.health.v1.Health/Check` with service "" over one long-lived channel. */
export class GrpcHealthProbe implements HealthProbe {
  private readonly client: grpc.Client;

  constructor(readonly address: string) {
    this.client = new grpc.Client(address, grpc.credentials.createInsecure(), {
      // Its own connection: a check must not ride on (or disturb) the Attach stream's connection.
      'grpc.use_local_subchannel_pool': 1,
      'grpc.initial_reconnect_backoff_ms': RECONNECT_INITIAL_MS,
      'grpc.max_reconnect_backoff_ms': RECONNECT_MAX_MS,
    });
  }

  check(timeoutMs: number): Promise<void> {
    return new Promise((resolve, reject) => {
      let settled = false;
      // Fail-fast (no waitForReady): a refused connection fails the call at once as UNAVAILABLE
      // instead of being reported as a timeout. The deadline is ours (see stallTolerantDeadline).
      const call = this.client.makeUnaryRequest(
        CHECK_METHOD.path,
        CHECK_METHOD.requestSerialize,
        CHECK_METHOD.responseDeserialize,
        WHOLE_SERVER,
        {},
        (err, response) => {
          if (settled) return;
          settled = true;
          deadline.cancel();
          if (err) {
            const name = grpc.status[err.code] ?? String(err.code);
            reject(new HealthCheckError('fail', `health check ${this.address}: ${name} (${err.details})`, { cause: err }));
          } else if (response?.status !== ServingStatus.SERVING) {
            reject(new HealthCheckError('fail', `health check ${this.address}: status ${statusName(response?.status)}, expected SERVING`));
          } else {
            resolve();
          }
        },
      );
      const deadline = stallTolerantDeadline(timeoutMs, () => {
        if (settled) return;
        settled = true;
        call.cancel();
        reject(new HealthCheckError('timeout', `health check ${this.address}: no answer within ${timeoutMs} ms`));
      });
    });
  }

  close(): void {
    this.client.close();
  }
}

/** A TCP connect, closed at once; success means the port accepts connections. */
export class TcpConnectProbe implements HealthProbe {
  private readonly host: string;
  private readonly port: number;
  private readonly sockets = new Set<net.Socket>();

  constructor(readonly address: string) {
    const parsed = parseHostPort(address);
    if (parsed === null) throw new LivemuxError('ERR_BAD_ADDRESS', `tcp health check: expected host:port, got "${address}"`);
    this.host = parsed.host;
    this.port = parsed.port;
  }

  check(timeoutMs: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host: this.host, port: this.port });
      this.sockets.add(socket);
      const finish = (err: HealthCheckError | null): void => {
        timer.cancel();
        this.sockets.delete(socket);
        // destroy() closes the descriptor: the service sees a plain FIN, nothing was sent.
        socket.destroy();
        if (err === null) resolve();
        else reject(err);
      };
      const timer = stallTolerantDeadline(timeoutMs, () =>
        finish(new HealthCheckError('timeout', `health check ${this.address}: no TCP connect within ${timeoutMs} ms`)),
      );
      socket.once('connect', () => finish(null));
      socket.once('error', (err: NodeJS.ErrnoException) =>
        finish(new HealthCheckError('fail', `health check ${this.address}: TCP connect failed (${err.code ?? err.message})`, { cause: err })),
      );
    });
  }

  close(): void {
    for (const socket of this.sockets) socket.destroy(new Error('health probe closed'));
    this.sockets.clear();
  }
}

function statusName(status: number | undefined): string {
  const entry = Object.entries(ServingStatus).find(([, value]) => value === status);
  return entry ? entry[0] : String(status);
}
