/**
 * The standard gRPC health service (`grpc.health.v1.Health`, proto/grpc/health/v1/health.proto) for
 * backends built with backend-server.ts. Check is implemented; Watch answers UNIMPLEMENTED, which the
 * health-checking spec allows and which every common prober (grpc_health_probe, Kubernetes) tolerates.
 */
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { protoPath } from '../paths.js';
import { PROTO_LOADER_OPTIONS } from './contract.js';

/** `HealthCheckResponse.ServingStatus`. */
export const ServingStatus = {
  UNKNOWN: 0,
  SERVING: 1,
  NOT_SERVING: 2,
  SERVICE_UNKNOWN: 3,
} as const;
export type ServingStatus = (typeof ServingStatus)[keyof typeof ServingStatus];

const packageDefinition = protoLoader.loadSync(protoPath('grpc/health/v1/health.proto'), PROTO_LOADER_OPTIONS);

/** `grpc.health.v1.Health`, for `grpc.Server#addService`. */
export const HealthService = packageDefinition['grpc.health.v1.Health'] as grpc.ServiceDefinition;

interface HealthCheckRequest {
  service: string;
}
interface HealthCheckResponse {
  status: ServingStatus;
}

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
