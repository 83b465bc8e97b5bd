/**
 * The validated shape of `hopguard authz --config FILE` (see docs in README and
 * ../shared/design/hopguard.md). Everything downstream takes this object, never raw YAML.
 * Durations are milliseconds here; the YAML spells them "30s", "5m".
 */

import type { AuditConfig } from '../audit/audit-config.js';
import type { TelemetryConfig } from '../telemetry/telemetry-config.js';
import type { Algorithm } from '../vocabulary/algorithms.js';
import type { BindingMode } from '../vocabulary/binding.js';
import type { EgressConfig } from '../vocabulary/egress-config.js';
import type { IssuerClientConfig } from '../vocabulary/issuer-client-config.js';
import type { ListenAddress } from '../vocabulary/listen-address.js';
import type { MessagesConfig } from '../vocabulary/messages-config.js';
import type { MemoryOptions } from '../vocabulary/memory-options.js';
import type { RedisOptions } from '../vocabulary/redis-options.js';
import type { RouteConfig } from '../vocabulary/route.js';
import type { IssuerConfig } from '../vocabulary/trusted-issuer.js';

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
  /** Used when `store` is memory. */
  memory: MemoryOptions;
  routes: RouteConfig[];
  /** `data:` name → absolute path of a YAML or JSON file, read into `data.<name>` for conditions. */
  data: Record<string, string>;
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
  /** How this sidecar obtains tokens; required with egress. */
  issuerClient?: IssuerClientConfig;
  /** Handles on inbound allows and the outbound check on egress.listen; off when absent. */
  egress?: EgressConfig;
  /** The local seal and check API for messages through queues; off when absent. */
  messages?: MessagesConfig;
  /** What a leaked token (valid, presented by another holder) gets: revoked mesh-wide (default), or only reported. */
  leaks?: LeakAction;
}

/** Where inbound allows put the handle: with egress, or with messages to seal on someone's behalf. */
export function handleCarriers(config: Pick<AuthzConfig, 'egress' | 'messages'>): Pick<EgressConfig, 'handleHeader' | 'handleBaggage'> | undefined {
  if (config.egress) return config.egress;
  if (config.messages && config.messages.outgoing.length > 0) return { handleHeader: 'x-hopguard-handle', handleBaggage: false };
  return undefined;
}

export const LEAK_ACTIONS = ['revoke', 'report'] as const;
export type LeakAction = (typeof LEAK_ACTIONS)[number];
