/**
 * What a check reads that a reload may change, built from one validated config and its files:
 * routes, conditions and data, the trusted issuers and their keys, the verifier (and its cache),
 * binding, clock skew and DPoP rules. A running sidecar holds one and swaps it whole
 * (config-reload.ts); a check takes the one current when it starts and keeps it to the end, so
 * it runs wholly on the old policy or wholly on the new.
 */

import type { AuthzConfig } from '../config/authz-config.js';
import type { InboundHandles } from '../egress/inbound-handles.js';
import type { LeakResponse } from '../signals/leak-response.js';
import { RouteTable } from '../policy/route-table.js';
import type { Store } from '../store/store.js';
import type { Logger } from '../telemetry/log.js';
import type { AuthzMetrics } from '../telemetry/metrics.js';
import { AccessTokenVerifier, type TrustedIssuer } from '../token/access-token-verifier.js';
import { DpopNonces } from '../token/dpop-nonce.js';
import { createIssuerKeys } from '../token/jwks-source.js';
import { loadIssuerKeys } from '../token/load-issuer-keys.js';
import type { AuthzMaterials } from './authz-materials.js';
import type { AuthorizeDeps } from './authorize.js';

export interface AuthzPolicy {
  config: AuthzConfig;
  deps: AuthorizeDeps;
  issuers: TrustedIssuer[];
  /** The content hash of the config and its files; undefined for a config not read from a file. */
  revision?: string;
  /** Stops the issuers' key refreshes, once the policy is no longer current. */
  stop(): void;
}

/** What outlives a reload: the store, the handle sealer, metrics and the log. */
export interface SharedParts {
  store: Store;
  handles?: InboundHandles;
  /** `leaks:` (restart-only): what a leaked token sets off. */
  leaks?: LeakResponse;
  metrics: AuthzMetrics;
  log: Logger;
}

/** Loads every issuer's keys (a jwks_file that cannot be read rejects) and builds the rest. */
export async function buildPolicy(config: AuthzConfig, materials: AuthzMaterials, shared: SharedParts, revision?: string): Promise<AuthzPolicy> {
  const { metrics, log } = shared;
  const issuers: TrustedIssuer[] = config.issuers.map((issuer, index) => ({
    config: issuer,
    keys: createIssuerKeys({
      issuer: issuer.issuer,
      ...(issuer.jwksFile !== undefined && { jwksFile: issuer.jwksFile }),
      ...(issuer.jwksUri !== undefined && { jwksUri: issuer.jwksUri }),
      ...(materials.jwksCas[index] && { ca: materials.jwksCas[index] }),
      algorithms: issuer.algorithms,
      refreshIntervalMs: config.jwks.refreshIntervalMs,
      refetchIntervalMs: config.jwks.refetchIntervalMs,
      fetchTimeoutMs: config.jwks.fetchTimeoutMs,
      checkWaitMs: config.jwks.checkWaitMs,
      onFetch: (outcome, detail) => {
        metrics.recordJwksFetch(issuer.issuer, outcome);
        if (outcome === 'error') log.warn('jwks_fetch_failed', { issuer: issuer.issuer, detail });
      },
    }),
  }));
  const stop = () => {
    for (const issuer of issuers) issuer.keys.stop();
  };
  try {
    await Promise.all(issuers.map((issuer) => loadIssuerKeys(issuer, config.jwks.refetchIntervalMs, log)));
  } catch (err) {
    stop();
    throw err;
  }
  const verifier = new AccessTokenVerifier({
    audience: config.audience,
    issuers,
    clockSkewMs: config.clockSkewMs,
    cacheMaxEntries: config.cache.maxEntries,
  });
  const nonce = config.dpop.nonce;
  const secret = materials.dpopNonceSecret;
  const deps: AuthorizeDeps = {
    config, routes: new RouteTable(config.routes), verifier, store: shared.store, data: materials.data,
    ...(revision !== undefined && { revision }),
    ...(nonce && secret && { dpopNonces: new DpopNonces(secret, nonce.lifetimeMs) }),
    ...(shared.handles && { handles: shared.handles }),
    ...(shared.leaks && { leaks: shared.leaks }),
  };
  return { config, deps, issuers, ...(revision !== undefined && { revision }), stop };
}
