/**
 * The gRPC backend contract (proto/livemux/v1/backend.proto, docs/backend-contract.md) as seen from
 * TypeScript: the loaded service definition and hand-written message shapes.
 *
 * The shapes are what @grpc/proto-loader produces with the options below (camelCase names, uint64 as
 * number, enums as number, defaults filled in, `oneofs: true` adding the name of the set member). The
 * same shapes are accepted when encoding; optional members may then be left out.
 */
import * as protoLoader from '@grpc/proto-loader';
import type * as grpc from '@grpc/grpc-js';
import type { Priority } from '../protocol/constants.js';
import { protoPath } from '../paths.js';

/** What a backend learns when a session is bound to it (the `SessionOpened` event). */
export interface SessionOpenInfo {
  userId: string;
  business: string;
  metadata: Readonly<Record<string, string>>;
  clientAddress: string;
  connectionId: string;
  clientSessionId: number;
  reattach: boolean;
  /**
   * String-valued claims of the verified token other than the registered ones (e.g. a `role`), so a
   * backend can authorise without seeing the token.
   */
  claims: Readonly<Record<string, string>>;
  /**
   * The largest payload this client takes in one message (its connection's max_payload, PROTOCOL.md
   * §7): a larger Deliver or Publish closes the session with 213 MESSAGE_TOO_LARGE.
   */
  maxPayload: number;
}

/** Value of `ProxyHello.contract_version` this implementation speaks. */
export const BACKEND_CONTRACT_VERSION = 1;

/**
 * Largest gRPC message either end of a livemux stream accepts. Batches are kept near 1 MiB
 * (DEFAULT_MAX_BATCH_BYTES) but a single event may carry a payload up to the proxy's max_payload.
 */
export const MAX_GRPC_MESSAGE_BYTES = 16 * 1024 * 1024;

/** Loader options; the interfaces below depend on them, so they are fixed here. */
export const PROTO_LOADER_OPTIONS: protoLoader.Options = Object.freeze({
  keepCase: false,
  longs: Number,
  enums: Number,
  defaults: true,
  oneofs: true,
});

const packageDefinition = protoLoader.loadSync(protoPath('livemux/v1/backend.proto'), PROTO_LOADER_OPTIONS);

/** `livemux.v1.SessionBackend`, for `grpc.Server#addService`. */
export const SessionBackendService = packageDefinition['livemux.v1.SessionBackend'] as grpc.ServiceDefinition;

/** The `Attach` method, typed; the link calls it through `grpc.Client#makeBidiStreamRequest`. */
export const ATTACH_METHOD = SessionBackendService['Attach'] as grpc.MethodDefinition<ProxyBatch, BackendBatch>;

/** `ProxyHello`: first batch of a stream only. */
export interface ProxyHello {
  proxyId: string;
  contractVersion: number;
}

/** `SessionOpened`: exactly the proxy's SessionOpenInfo, so it is sent without a copy. */
export type SessionOpened = SessionOpenInfo;

export interface SessionData {
  payload: Buffer;
  priority: Priority;
}

export interface SessionClosed {
  code: number;
  reason: string;
}

/** `SessionHalfClosed`: the client's CLOSE, its code and reason (the session stays open the other way). */
export type SessionHalfClosed = SessionClosed;

/** Name of the member set in `ProxyEvent.event`. */
export type ProxyEventCase = 'opened' | 'data' | 'closed' | 'halfClosed';

/** `ProxyEvent`: exactly one of `opened`, `data`, `closed`, `halfClosed` is set; `event` names it when decoded. */
export interface ProxyEvent {
  session: number;
  opened?: SessionOpened;
  data?: SessionData;
  closed?: SessionClosed;
  halfClosed?: SessionHalfClosed;
  event?: ProxyEventCase;
}

/** `ProxyBatch` (proxy → backend). Decoded, an absent `hello` is `null`. */
export interface ProxyBatch {
  hello?: ProxyHello | null;
  events: ProxyEvent[];
}

export interface Deliver {
  session: number;
  payload: Buffer;
  priority: Priority;
}

export interface CloseSession {
  session: number;
  code: number;
  reason: string;
}

export interface Subscribe {
  session: number;
  topic: string;
}

export interface Unsubscribe {
  session: number;
  topic: string;
}

export interface Publish {
  topic: string;
  payload: Buffer;
  priority: Priority;
  /** 0 = none. */
  excludeSession: number;
}

/** Name of the member set in `BackendCommand.command`. */
export type BackendCommandCase = 'deliver' | 'close' | 'subscribe' | 'unsubscribe' | 'publish';

/**
 * `BackendCommand`: exactly one member is set; `command` names it when decoded. A decoded command from
 * a peer may have none set (empty message, or a member added by a newer contract): receivers must check.
 */
export interface BackendCommand {
  deliver?: Deliver;
  close?: CloseSession;
  subscribe?: Subscribe;
  unsubscribe?: Unsubscribe;
  publish?: Publish;
  command?: BackendCommandCase;
}

/** `BackendBatch` (backend → proxy). */
export interface BackendBatch {
  commands: BackendCommand[];
}

/** True for the three priority values of the contract (the enum may carry others from a newer peer). */
export function isPriority(value: number): value is Priority {
  return value === 0 || value === 1 || value === 2;
}
