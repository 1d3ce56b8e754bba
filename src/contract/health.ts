/**
 * The standard gRPC health service (`grpc.health.v1.Health`, proto/grpc/health/v1/health.proto): the
 * service definition and its status values, shared by the proxy's health checks and the backend kit's
 * implementation (src/backends/kit/health-status.ts).
 */
import type * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { protoPath } from '../paths.js';
import { PROTO_LOADER_OPTIONS } from './backend-contract.js';

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

export interface HealthCheckRequest {
  service: string;
}
export interface HealthCheckResponse {
  status: ServingStatus;
}
