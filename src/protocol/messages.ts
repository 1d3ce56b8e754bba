import protobuf from 'protobufjs';
import { Code } from './codes.js';
import { ProtocolError } from './errors.js';
import { protoPath } from '../paths.js';
import { checkBody } from './body-check.js';

/** Body of HELLO. */
export interface Hello {
  versions: number[];
  token: string;
  client?: ClientInfo;
  sessionWindow?: number;
  connectionWindow?: number;
  /** The client unpacks BATCH DATA frames; without it the server drops excess low-priority DATA instead. */
  acceptsBatch?: boolean;
}
export interface ClientInfo {
  sdk?: string;
  sdkVersion?: string;
  platform?: string;
  appVersion?: string;
  deviceId?: string;
}
/** Limits announced in WELCOME. */
export interface Limits {
  maxSessions: number;
  maxPayload: number;
  sessionWindow: number;
  connectionWindow: number;
  idleTimeoutMs: number;
  maxOpenRate: number;
}
/** Body of WELCOME. */
export interface Welcome {
  version: number;
  connectionId: string;
  userId: string;
  heartbeatIntervalMs: number;
  limits: Limits;
}
/** Body of OPEN. */
export interface Open {
  business: string;
  metadata: Record<string, string>;
}
/** Body of OPEN_FAIL, CLOSE, RESET and ERROR. */
export interface Status {
  code: number;
  reason: string;
  retryAfterMs?: number;
}
/** Body of GOAWAY. */
export interface GoAway {
  lastSessionId: number;
  code: number;
  reason: string;
  reconnectAddress?: string;
}

const root = protobuf.loadSync(protoPath('livemux/v1/wire.proto'));
const types = {
  Hello: root.lookupType('livemux.v1.Hello'),
  Welcome: root.lookupType('livemux.v1.Welcome'),
  Open: root.lookupType('livemux.v1.Open'),
  OpenOk: root.lookupType('livemux.v1.OpenOk'),
  Status: root.lookupType('livemux.v1.Status'),
  GoAway: root.lookupType('livemux.v1.GoAway'),
};
type TypeName = keyof typeof types;

// Decode with defaults filled in so every field of the TS interface is present.
const TO_OBJECT: protobuf.IConversionOptions = { defaults: true, arrays: true, objects: true, longs: Number };

function encode(name: TypeName, value: object): Buffer {
  const t = types[name];
  return Buffer.from(t.encode(t.fromObject(value as Record<string, unknown>)).finish());
}

function decode<T>(name: TypeName, frame: string, body: Uint8Array, required: readonly string[] = []): T {
  const t = types[name];
  const checked = checkBody(t, body, frame);
  let value: Record<string, unknown>;
  try {
    value = t.toObject(t.decode(checked), TO_OBJECT);
  } catch (err) {
    throw new ProtocolError(Code.MALFORMED_PAYLOAD, `${frame}: body is not a valid ${name} (${(err as Error).message})`);
  }
  // toObject fills an absent sub-message with null, which the interfaces above do not allow: an optional
  // one becomes undefined, a required one (PROTOCOL.md §4) makes the body malformed.
  for (const [field, v] of Object.entries(value)) {
    if (v !== null) continue;
    if (required.includes(field)) {
      throw new ProtocolError(Code.MALFORMED_PAYLOAD, `${frame}: body lacks ${field}`);
    }
    delete value[field];
  }
  return value as T;
}

export const encodeHello = (m: Hello): Buffer => encode('Hello', m);
export const decodeHello = (b: Uint8Array): Hello => decode('Hello', 'HELLO', b);
export const encodeWelcome = (m: Welcome): Buffer => encode('Welcome', m);
export const decodeWelcome = (b: Uint8Array): Welcome => decode('Welcome', 'WELCOME', b, ['limits']);
export const encodeOpen = (m: Open): Buffer => encode('Open', m);
export const decodeOpen = (b: Uint8Array): Open => decode('Open', 'OPEN', b);
export const encodeStatus = (m: Status): Buffer => encode('Status', m);
export const decodeStatus = (frame: string, b: Uint8Array): Status => decode('Status', frame, b);
export const encodeGoAway = (m: GoAway): Buffer => encode('GoAway', m);
export const decodeGoAway = (b: Uint8Array): GoAway => decode('GoAway', 'GOAWAY', b);
