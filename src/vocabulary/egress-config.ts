// The outbound side of a sidecar (`egress:` in the authz config): where the application's calls get tokens.
import type { ListenAddress } from './listen-address.js';

export const OTHER_HOSTS = ['passthrough', 'deny'] as const;
export type OtherHosts = (typeof OTHER_HOSTS)[number];

export const WITHOUT_HANDLE = ['deny', 'client_credentials'] as const;
export type WithoutHandle = (typeof WITHOUT_HANDLE)[number];

export interface EgressDestination {
  /** Lower-case: an exact host, or `*.suffix` (any host ending in `.suffix`). */
  host: string;
  audience: string;
  /** Asked for; the issuer narrows. */
  scopes: string[];
  /** A new token for every request (the callee's route is one-time). */
  perRequest: boolean;
  withoutHandle: WithoutHandle;
}

export interface EgressConfig {
  /** ext_authz for Envoy's outbound listener; never the inbound port. */
  listen: ListenAddress;
  /** Lower-case header name carrying the handle, inbound (set) and outbound (read, then removed). */
  handleHeader: string;
  /** The handle also rides in W3C `baggage` as the member `hopguard-handle`. */
  handleBaggage: boolean;
  otherHosts: OtherHosts;
  /** First match wins. */
  destinations: EgressDestination[];
}
