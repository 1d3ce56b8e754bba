import { afterAll, beforeAll } from 'vitest';
import { type RedisServer, startRedisServer } from './redis-server.js';

/** The redis-server of a test file (see {@link redisServerForFile}). */
export interface FileRedisServer {
  readonly port: number;
  readonly url: string;
  /** A key prefix no other caller in the file gets: `<name><n>:`. */
  prefix(name: string): string;
}

/**
 * One redis-server for the test file that calls this at its top level: started before its tests,
 * stopped after them. Tests share it and keep apart by key prefix.
 */
export function redisServerForFile(): FileRedisServer {
  let server: RedisServer | undefined;
  let next = 0;
  beforeAll(async () => {
    server = await startRedisServer();
  });
  afterAll(async () => {
    await server?.stop();
  });
  const started = (): RedisServer => {
    if (!server) throw new Error('redis-server: used before the file\'s beforeAll started it');
    return server;
  };
  return {
    get port() {
      return started().port;
    },
    get url() {
      return started().url;
    },
    prefix: (name) => `${name}${next++}:`,
  };
}
