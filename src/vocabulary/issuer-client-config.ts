// How a sidecar obtains tokens from the issuer (`issuer_client:` in the authz config).

/**
 * `tls`: mTLS to the issuer with the workload certificate. `mesh`: plain HTTP to the pod's own
 * mesh proxy (Istio's), which carries the request over its mTLS with the same certificate; the
 * issuer behind its own proxy reads it from x-forwarded-client-cert (client_auth: xfcc).
 */
export type IssuerTransport = 'tls' | 'mesh';

export interface IssuerClientConfig {
  /** The issuer's token endpoint: https, or http with transport mesh. */
  tokenEndpoint: string;
  transport: IssuerTransport;
  /** CA bundle of the issuer's server certificate; absent with transport mesh. */
  caFile?: string;
  /** This workload's certificate and key (the ones Envoy presents): exchanged tokens are bound to it, and its rotation drops them. */
  certFile: string;
  keyFile: string;
  /** One token request, connect to last byte. */
  timeoutMs: number;
}
