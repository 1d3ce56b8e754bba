import type { Logger } from 'pino';
import type { BackendLink } from './upstream/link.js';
import type { ProxyConfig } from '../config/proxy-config.js';
import type { Metrics } from '../observability/metrics.js';
import type { RouteTable } from '../routing/types.js';
import type { SessionRegistry } from '../session/registry.js';
import type { TokenVerifier } from './auth.js';
import type { TimerWheel } from './timer-wheel.js';

/** Backend links by endpoint address; one long stream per endpoint. */
export interface LinkDirectory {
  get(endpoint: string): BackendLink | undefined;
  isHealthy(endpoint: string): boolean;
}

/**
 * What every connection shares: configuration, the current route table (swapped whole on reload),
 * backend links, the session registry and observability. The proxy core reaches the business world
 * only through `routes` and `links`.
 */
export interface ProxyContext {
  readonly config: ProxyConfig;
  readonly verifier: TokenVerifier;
  readonly routes: () => RouteTable;
  readonly links: LinkDirectory;
  readonly registry: SessionRegistry;
  readonly metrics: Metrics;
  readonly logger: Logger;
  /** The one timer every connection's deadlines (handshake, heartbeat, idle, close) are filed in. */
  readonly timers: TimerWheel;
  /** Called once when a connection has fully closed. */
  connectionClosed(conn: { readonly id: string }): void;
}
