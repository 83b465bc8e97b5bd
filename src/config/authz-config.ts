/**
 * The validated shape of `hopguard authz --config FILE` (see docs in README and
 * ../shared/design/hopguard.md). Everything downstream takes this object, never raw YAML.
 * Durations are milliseconds here; the YAML spells them "30s", "5m".
 */

import type { AuditConfig } from '../audit/audit-config.js';
import type { TelemetryConfig } from '../telemetry/telemetry-config.js';

export const BINDING_MODES = ['mtls', 'dpop', 'mtls_or_dpop', 'none'] as const;
export type BindingMode = (typeof BINDING_MODES)[number];

/** Algorithms an issuer may be allowed. `none` and HS* are never accepted (RFC 8725 §3.1, §3.2). */
export const ASYMMETRIC_ALGORITHMS = [
  'ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519', 'RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512',
] as const;
export type Algorithm = (typeof ASYMMETRIC_ALGORITHMS)[number];

export type ListenAddress =
  | { kind: 'tcp'; host: string; port: number }
  | { kind: 'unix'; path: string };

export interface IssuerConfig {
  issuer: string;
  /** Exactly one of jwksFile / jwksUri is set. */
  jwksFile?: string;
  jwksUri?: string;
  /** CA bundle for an https jwksUri served with a private (mesh) CA. */
  jwksCaFile?: string;
  algorithms: Algorithm[];
  maxTtlMs: number;
}

export interface RouteConfig {
  name: string;
  /** Upper-case; empty means any method. */
  methods: string[];
  /** Exactly one of path / pathPrefix is set. */
  path?: string;
  pathPrefix?: string;
  scopes: string[];
  /** Allowed `source.principal` values; empty means any caller. */
  callers: string[];
  public: boolean;
  oneTime: boolean;
  /** Keep the `authorization` header on the request that reaches the application. */
  forwardToken: boolean;
}

export interface JwksOptions {
  /** Background refresh period for every key set. */
  refreshIntervalMs: number;
  /** An unknown `kid` is refetched at most once per this interval, per kid. */
  refetchIntervalMs: number;
  /** Total timeout of one jwks_uri fetch, connect to last byte. */
  fetchTimeoutMs: number;
  /** How long a check with an unknown `kid` waits on its refetch before answering unknown_key. */
  checkWaitMs: number;
}

export interface DpopOptions {
  /** Algorithms a DPoP proof may use (asymmetric only). */
  algorithms: Algorithm[];
  /** How old a proof's iat may be (plus clock_skew); its jti is remembered this long. */
  maxAgeMs: number;
  /** Server nonces (RFC 9449 §9): every proof must carry one this service handed out. */
  nonce?: { secretFile: string; lifetimeMs: number };
}

export interface CacheOptions {
  /** Verified tokens kept; 0 disables the cache. */
  maxEntries: number;
}

/** Used when `store` is a redis URL. */
export interface RedisOptions {
  /** Every key hopguard writes starts with this, so a shared Redis stays tidy. */
  keyPrefix: string;
  /** The password comes from HOPGUARD_REDIS_PASSWORD or this file, never the YAML. */
  passwordFile?: string;
  /** CA bundle for rediss:// servers with a private CA. */
  tlsCaFile?: string;
  /** A client certificate and its key, for a rediss:// server that asks for one (both or neither). */
  tlsCertFile?: string;
  tlsKeyFile?: string;
  /** No check waits longer than this on Redis. */
  commandTimeoutMs: number;
  /** With the revocation feed lost, tokens are still checked against the last known state this long, then denied. */
  maxStalenessMs: number;
  /** Full resync of revocations, on top of pub/sub. */
  resyncIntervalMs: number;
}

export interface AuthzConfig {
  listen: ListenAddress;
  /** undefined when `admin: off`. */
  admin?: { host: string; port: number };
  audience: string;
  issuers: IssuerConfig[];
  clockSkewMs: number;
  binding: BindingMode;
  dpop: DpopOptions;
  /** `memory`, or a redis URL (redis://, rediss://, redis-sentinel://, redis-cluster://). */
  store: string;
  redis: RedisOptions;
  routes: RouteConfig[];
  jwks: JwksOptions;
  cache: CacheOptions;
  /** Graceful-shutdown budget for in-flight checks after SIGTERM. */
  shutdownGraceMs: number;
  /** Processes serving `listen` together (node:cluster); absent means 1. */
  workers?: number;
  /** HTTP/2 connection-level receive window of each gRPC connection, bytes; absent means 1 MiB. */
  http2ConnectionWindow?: number;
  /** Tracing and OTLP metrics; off by default. */
  telemetry: TelemetryConfig;
  /** The tamper-evident audit log; off by default. */
  audit: AuditConfig;
}
