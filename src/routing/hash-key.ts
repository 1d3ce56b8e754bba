import type { HashKeySource } from '../config/routes-config.js';
import type { RouteContext } from './types.js';

/**
 * The hash key of a session: the string a hash policy places on its endpoints. Returns undefined
 * only for a `metadata.<field>` source whose field the OPEN does not carry (an empty value counts as
 * present: the sender chose it).
 *
 * `client_address` is the client's IP without the port, so every connection from one address (a
 * user's reconnects, a NAT) keeps to one endpoint; hashing the port as well would make it no
 * stickier than `connection_id`.
 */
export function hashKeyOf(source: HashKeySource, ctx: RouteContext): string | undefined {
  switch (source.kind) {
    case 'metadata':
      return Object.hasOwn(ctx.metadata, source.field) ? ctx.metadata[source.field] : undefined;
    case 'user_id':
      return ctx.userId;
    case 'connection_id':
      return ctx.connectionId;
    case 'client_address':
      return clientIp(ctx.clientAddress);
  }
}

/**
 * The IP of an `ip:port` client address: `10.0.0.1:5000` → `10.0.0.1`; `[::1]:5000` and `::1:5000` →
 * `::1` (the proxy writes IPv6 unbracketed). A bare IPv4 address or host name is returned as is; a
 * bare IPv6 address cannot be told from one with a port, which is why the proxy always adds the port.
 */
export function clientIp(address: string): string {
  if (address.startsWith('[')) {
    const end = address.indexOf(']');
    return end > 0 ? address.slice(1, end) : address;
  }
  const colon = address.lastIndexOf(':');
  if (colon <= 0 || !/^\d{1,5}$/.test(address.slice(colon + 1))) return address;
  return address.slice(0, colon);
}
