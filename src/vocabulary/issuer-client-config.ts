// How a sidecar obtains tokens from the issuer (`issuer_client:` in the authz config).

export interface IssuerClientConfig {
  /** The issuer's token endpoint, https. */
  tokenEndpoint: string;
  /** CA bundle of the issuer's server certificate. */
  caFile: string;
  /** This workload's certificate and key (the ones Envoy presents): exchanged tokens are bound to it. */
  certFile: string;
  keyFile: string;
  /** One token request, connect to last byte. */
  timeoutMs: number;
}
