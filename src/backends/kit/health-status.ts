/**
 * The backend kit's `grpc.health.v1.Health` implementation. Check is implemented; Watch answers
 * UNIMPLEMENTED, which the health-checking spec allows and which every common prober
 * (grpc_health_probe, Kubernetes) tolerates.
 */
import * as grpc from '@grpc/grpc-js';
import { type HealthCheckRequest, type HealthCheckResponse, ServingStatus } from '../../contract/health.js';

/**
 * Serving status per service name; "" is the server as a whole. Guarantees: Check answers the status
 * last `set` for the name, and NOT_FOUND for a name never set (as the spec requires).
 */
export class HealthStatus {
  private readonly statuses = new Map<string, ServingStatus>();

  set(service: string, status: ServingStatus): void {
    this.statuses.set(service, status);
  }

  /** Sets every registered service (and "") to `status`, e.g. NOT_SERVING when shutting down. */
  setAll(status: ServingStatus): void {
    for (const service of this.statuses.keys()) this.statuses.set(service, status);
  }

  /** Handlers for `server.addService(HealthService, health.implementation())`. */
  implementation(): grpc.UntypedServiceImplementation {
    return {
      Check: (
        call: grpc.ServerUnaryCall<HealthCheckRequest, HealthCheckResponse>,
        callback: grpc.sendUnaryData<HealthCheckResponse>,
      ) => {
        const status = this.statuses.get(call.request.service);
        if (status === undefined) {
          callback({ code: grpc.status.NOT_FOUND, details: `health: unknown service "${call.request.service}"` });
        } else {
          callback(null, { status });
        }
      },
      Watch: (call: grpc.ServerWritableStream<HealthCheckRequest, HealthCheckResponse>) => {
        call.emit('error', { code: grpc.status.UNIMPLEMENTED, details: 'health: Watch is not implemented; use Check' });
      },
    };
  }
}
