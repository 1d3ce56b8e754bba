/** Calls to the push HTTP API and the routes of a push pool, for the push integration tests. */

/** The key the push tests configure (LIVEMUX_PUSH_API_KEY or a config's key_env). */
export const PUSH_TEST_KEY = 'integration-push-key-0123456789';
const KEY = PUSH_TEST_KEY;

/** routes.yaml for a `push` pool of `addresses`, consistent hash on user_id (as the shipped one). */
export function pushRoutes(addresses: string[]): Record<string, unknown> {
  return {
    version: 1,
    routes: [{ business: 'push', pool: 'push', policy: 'consistent_hash', hash_key: 'user_id' }],
    pools: { push: { protocol: 'grpc', endpoints: addresses.map((address) => ({ address })) } },
  };
}

/** POST /v1/push; resolves with the status and JSON body. */
export async function postPush(api: string, body: unknown, key = KEY): Promise<{ status: number; body: Record<string, number | string> }> {
  const res = await fetch(`${api}/v1/push`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as Record<string, number | string> };
}

/** GET /v1/push/{id} polled until `done` holds for its body (bounded). */
export async function pushStatus(api: string, id: string, done: (s: Record<string, number>) => boolean = () => true, key = KEY): Promise<Record<string, number>> {
  const deadline = Date.now() + 8_000;
  for (;;) {
    const res = await fetch(`${api}/v1/push/${id}`, { headers: { authorization: `Bearer ${key}` } });
    const body = (await res.json()) as Record<string, number>;
    if (res.status === 200 && done(body)) return body;
    if (Date.now() > deadline) throw new Error(`push ${id}: status ${res.status} ${JSON.stringify(body)} never satisfied the test`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

