/**
 * The push HTTP API for business servers (docs/push.md §API), on fastify: `POST /v1/push` and
 * `GET /v1/push/{id}`. fastify gives routing, body parsing with a size bound, and JSON-schema validation
 * compiled once (ajv), so every shape error names its field; what the schema cannot say (exactly one of
 * `data`/`data_base64`, sizes after base64) is checked by PushService.
 *
 * Never logged: the Authorization header (fastify's own logger is off; this module logs the key's
 * name only).
 */
import Fastify, { type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type pino from 'pino';
import { ApiError } from './api-errors.js';
import type { ApiCaller, ApiKeys } from './api-keys.js';
import { PUSH_ID_PATTERN, TOPIC_PATTERN } from './push-codec.js';
import type { PushCall, PushService } from './push-service.js';
import { coalesceWrites } from '../../util/write-coalescer.js';

export interface PushApiOptions {
  service: PushService;
  keys: ApiKeys;
  /** Takes one call from the caller's allowance (shared by the nodes of a store): 0, or ms to wait. */
  takeCall: (caller: ApiCaller) => Promise<number>;
  /** Largest request body (bytes); beyond it 413. */
  bodyLimit: number;
  /** Most users one call may name. */
  maxUsers: number;
  /** Largest ttl_s. */
  maxTtlS: number;
  log: pino.Logger;
  /** Told of each answered call (metrics): route, status, the key's name ("" before authentication). */
  onAnswer?: (route: RouteName, status: number) => void;
}

/** The API's two routes, and the names their answers are counted under (the server's own label values). */
const PUSH_ROUTE = '/v1/push';
const STATUS_ROUTE = '/v1/push/:id';
type RouteName = 'push' | 'status' | 'other';

function routeName(url: string | undefined): RouteName {
  return url === PUSH_ROUTE ? 'push' : url === STATUS_ROUTE ? 'status' : 'other';
}

const NAME = PUSH_ID_PATTERN.source;

function callSchema(o: PushApiOptions): object {
  const name = { type: 'string', pattern: NAME };
  return {
    type: 'object',
    additionalProperties: false,
    required: ['to'],
    properties: {
      id: name,
      to: {
        type: 'object',
        additionalProperties: false,
        minProperties: 1,
        maxProperties: 1,
        properties: {
          users: { type: 'array', minItems: 1, maxItems: o.maxUsers, items: { type: 'string', minLength: 1, maxLength: 128 } },
          topic: { type: 'string', pattern: TOPIC_PATTERN.source },
          all: { const: true },
        },
      },
      data: { type: 'string' },
      data_base64: { type: 'string' },
      priority: { enum: ['system', 'high', 'low'] },
      ttl_s: { type: 'integer', minimum: 0, maximum: o.maxTtlS },
      collapse_key: { type: 'string', pattern: NAME },
    },
  };
}

declare module 'fastify' {
  interface FastifyRequest {
    caller: ApiCaller | null;
  }
}

/** Builds the API (not listening yet: call `listen`). */
export function createPushApi(o: PushApiOptions): FastifyInstance {
  const app = Fastify({
    logger: false,
    bodyLimit: o.bodyLimit,
    // Strict: no coercion ("5" is not 5), unknown fields refused instead of silently removed.
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, useDefaults: false, allErrors: true } },
    return503OnClosing: true,
    // An id is at most 128 characters; a longer path segment, or a URL that cannot be decoded, names no
    // push: answered in the API's own error format, not fastify's.
    routerOptions: { maxParamLength: 128 },
    frameworkErrors: (err, req, reply) => {
      void refuse(reply, new ApiError('NOT_FOUND', `${req.method} ${req.url.split('?', 1)[0]!.slice(0, 200)}: no such push or endpoint (${err.code})`));
    },
  });
  // A business server pipelining its calls gets a turn's answers in one write, not one write per call
  // (node:http writes each response on its own: the biggest CPU cost per call of this node otherwise).
  app.server.on('connection', coalesceWrites);
  app.decorateRequest('caller', null);
  // JSON only: fastify would otherwise parse text/plain and report it as a shape error.
  app.removeContentTypeParser('text/plain');

  // Authentication and the key's rate come before the body is even parsed: a bad key costs nothing.
  // Callback hooks, not async ones: they run on every call, and an async hook costs a promise and
  // fastify's thenable wrapper each time.
  app.addHook('onRequest', (req, _reply, done) => {
    if (!req.url.startsWith('/v1/')) {
      done();
      return;
    }
    const caller = o.keys.authenticate(req.headers.authorization);
    if (caller === null) {
      done(new ApiError('UNAUTHORIZED', 'Authorization: expected "Bearer <key>" with a configured API key') as unknown as FastifyError);
      return;
    }
    o.takeCall(caller).then(
      (waitMs) => {
        if (waitMs > 0) {
          done(new ApiError('RATE_LIMITED', `API key "${caller.name}": over its rate of ${caller.rate} calls/s`, Math.max(1, Math.ceil(waitMs / 1000))) as unknown as FastifyError);
          return;
        }
        req.caller = caller;
        done();
      },
      (err: unknown) => {
        o.log.error({ err, key: caller.name }, 'push api: checking a rate failed');
        done(new ApiError('UNAVAILABLE', 'push store unavailable') as unknown as FastifyError);
      },
    );
  });

  // The 202 body through a serializer compiled from its schema (fast-json-stringify), not JSON.stringify.
  const accepted = { type: 'object', required: ['id', 'targeted'], properties: { id: { type: 'string' }, targeted: { type: 'integer' } } };
  app.post<{ Body: PushCall }>(PUSH_ROUTE, { schema: { body: callSchema(o), response: { 202: accepted } } }, async (req, reply) => {
    const call = req.body;
    if ((call.data === undefined) === (call.data_base64 === undefined)) {
      throw new ApiError('INVALID_BODY', 'data, data_base64: exactly one of them is required');
    }
    const accepted = await o.service.accept(req.caller!.name, call);
    o.onAnswer?.('push', 202);
    return reply.code(202).send(accepted);
  });

  app.get<{ Params: { id: string } }>(STATUS_ROUTE, async (req) => {
    const status = await o.service.status(req.caller!.name, req.params.id);
    o.onAnswer?.('status', 200);
    return status;
  });

  app.setNotFoundHandler((req, reply) => {
    const path = req.url.split('?', 1)[0]!;
    if (path === PUSH_ROUTE || /^\/v1\/push\/[^/]+$/.test(path)) {
      void reply.header('allow', path === PUSH_ROUTE ? 'POST' : 'GET, HEAD');
      return refuse(reply, new ApiError('METHOD_NOT_ALLOWED', `${req.method} ${path}: method not allowed`));
    }
    return refuse(reply, new ApiError('NOT_FOUND', `${req.method} ${path}: no such endpoint`));
  });

  app.setErrorHandler((err: FastifyError | ApiError, req: FastifyRequest, reply: FastifyReply) => {
    if (err instanceof ApiError) return refuse(reply, err);
    const apiError = translate(err);
    if (apiError.code === 'INTERNAL') o.log.error({ err, method: req.method, path: req.routeOptions.url, key: req.caller?.name }, 'push api: request failed');
    return refuse(reply, apiError);
  });

  return app;

  /**
   * Every refusal goes out here, so it is counted here: an answer is counted where it is made, not in an
   * onResponse hook (fastify runs a hook chain per request for one, on the path of every call).
   */
  function refuse(reply: FastifyReply, err: ApiError): FastifyReply {
    o.onAnswer?.(routeName(reply.request.routeOptions.url), err.status);
    return send(reply, err);
  }
}

function send(reply: FastifyReply, err: ApiError): FastifyReply {
  if (err.retryAfterS > 0) void reply.header('retry-after', String(err.retryAfterS));
  return reply.code(err.status).type('application/json').send(err.toJSON());
}

/** fastify's own errors (validation, body parsing) as API errors with the registry's codes. */
function translate(err: FastifyError): ApiError {
  if (err.validation) {
    const problems = err.validation.map((v) => {
      const field = v.instancePath.replace(/^\//, '').replaceAll('/', '.') || 'body';
      const extra = v.params as Record<string, unknown>;
      if (v.keyword === 'additionalProperties') return `${field === 'body' ? '' : `${field}.`}${String(extra.additionalProperty)}: unknown field`;
      if (v.keyword === 'required') return `${field === 'body' ? '' : `${field}.`}${String(extra.missingProperty)}: required`;
      if (v.keyword === 'minProperties' || v.keyword === 'maxProperties') return `${field}: exactly one of users, topic, all`;
      return `${field}: ${v.message ?? 'invalid'}`;
    });
    return new ApiError('INVALID_BODY', [...new Set(problems)].join('; '));
  }
  switch (err.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new ApiError('PAYLOAD_TOO_LARGE', `body: larger than the limit of this API`);
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new ApiError('UNSUPPORTED_MEDIA_TYPE', 'content-type: expected application/json');
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return new ApiError('BAD_JSON', 'body: empty');
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return new ApiError('BAD_JSON', `body: not valid JSON (${err.message})`);
    default:
      if (err.statusCode === 400 && err instanceof SyntaxError) return new ApiError('BAD_JSON', `body: not valid JSON (${err.message})`);
      return new ApiError('INTERNAL', 'internal error');
  }
}
