import type { AuditConfig } from '../audit/audit-config.js';
import type { JwksOptions } from './authz-config.js';
import type { TelemetryConfig } from '../telemetry/telemetry-config.js';
import type { RedisOptions } from '../vocabulary/redis-options.js';
import type { SignalsConfig } from '../vocabulary/signals-config.js';
import type { IssuerConfig as TrustedIssuerConfig } from '../vocabulary/trusted-issuer.js';

/** Grants a client may use at POST /token. */
export const GRANTS = ['client_credentials', 'token_exchange', 'refresh_token'] as const;
export type Grant = (typeof GRANTS)[number];

/** Algorithms the issuer signs with (asymmetric only). */
export const SIGNING_ALGORITHMS = ['ES256', 'EdDSA', 'RS256'] as const;
export type SigningAlgorithm = (typeof SIGNING_ALGORITHMS)[number];

export interface IssuerClient {
  /** The URI SAN of the client's certificate (RFC 8705 §2.1.2 tls_client_auth), e.g. a SPIFFE ID. */
  id: string;
  grants: Grant[];
  audiences: string[];
  /** The consumers it may ask message tokens for (design "Messages"); none by default. */
  messageAudiences: string[];
  scopes: string[];
  /** May revoke any token by subject or client at POST /revoke. */
  admin: boolean;
  /** May send a DPoP proof to /token (RFC 9449 §5) to get a DPoP-bound token instead of a certificate-bound one. */
  dpop: boolean;
}

/**
 * The `typ` header values a subject issuer's tokens may carry: `at+jwt` (RFC 9068, also
 * `application/at+jwt`) and `JWT` (also `application/jwt`), which many identity providers use.
 */
export const SUBJECT_TOKEN_TYPES = ['at+jwt', 'JWT'] as const;
export type SubjectTokenType = (typeof SUBJECT_TOKEN_TYPES)[number];

/**
 * An identity provider whose access tokens start a delegation chain: the edge client trades
 * the user's token for one of this issuer, with the user as `sub` and itself as the first actor.
 */
export interface SubjectIssuer extends TrustedIssuerConfig {
  /** The audience its tokens carry for the edge (the gateway's client id, or the API's audience). */
  audience: string;
  /** The clients that may exchange its tokens; none by default. */
  clients: string[];
  typ: SubjectTokenType[];
}

/** An address block, as `trusted_proxies` lists them (e.g. 127.0.0.6/32). */
export interface Cidr {
  address: string;
  prefix: number;
  family: 'ipv4' | 'ipv6';
}

/**
 * How /token and /revoke know the client: `tls`, its certificate on the issuer's own mTLS
 * connection (RFC 8705 tls_client_auth); `xfcc`, the certificate the issuer's own proxy verified
 * and forwarded in x-forwarded-client-cert, believed only from `trustedProxies`.
 */
export type ClientAuthConfig =
  | { mode: 'tls'; clientCaFile: string }
  | { mode: 'xfcc'; trustedProxies: Cidr[] };

export interface IssuerConfig {
  listen: { host: string; port: number };
  /** Plain HTTP /healthz and /readyz for probes; undefined when `admin: off`. */
  admin?: { host: string; port: number };
  /** The `iss` of every token: https, no query or fragment. */
  issuer: string;
  /** Absent only with client_auth: xfcc: plain HTTP to the issuer's own proxy. */
  tls?: { certFile: string; keyFile: string };
  clientAuth: ClientAuthConfig;
  keys: {
    dir: string;
    algorithm: SigningAlgorithm;
    /** A new key is published this long before it signs: longer than any sidecar's JWKS cache. */
    publishAheadMs: number;
    /** Rotate by schedule when set (needs a writable key dir); else only `hopguard keys rotate`. */
    rotateEveryMs?: number;
  };
  /** Maximum access-token lifetime. */
  tokenTtlMs: number;
  /** Maximum message-token lifetime: how long a message may wait in a queue. */
  messageTtlMs: number;
  refreshTtlMs: number;
  maxDelegationDepth: number;
  clockSkewMs: number;
  store: string;
  redis: RedisOptions;
  /** Token bucket per client at POST /token. */
  rateLimit: { perSecond: number; burst: number };
  clients: IssuerClient[];
  /** Trusted external issuers of subject tokens (token exchange at the edge). */
  subjectIssuers: SubjectIssuer[];
  /** How the subject issuers' keys are fetched. */
  jwks: JwksOptions;
  telemetry: TelemetryConfig;
  audit: AuditConfig;
  /** Shared Signals transmitters whose SETs POST /ssf/events accepts. */
  signals: SignalsConfig;
}

