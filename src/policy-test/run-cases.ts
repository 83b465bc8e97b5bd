/**
 * Runs `hopguard test` cases through the sidecar's own decision pipeline (`authorize`), offline:
 * the config's routes, conditions, data, binding, audience and clock skew as given; one in-memory
 * store for the whole run, so a one-time token used twice is a replay, and `leaks:` as configured
 * (a token presented by a wrong peer is revoked for the cases after it); tokens signed with the
 * run's own key, trusted in place of the issuers' keys for this run only; each caller presents a
 * certificate the run makes for it. Nothing is listened on or connected to.
 */

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { importJWK } from 'jose';
import { AUDIT_OFF } from '../audit/audit-log.js';
import { authorize, type AuthorizeDeps } from '../authz/authorize.js';
import { checkRequestMessage } from '../authz/envoy-client.js';
import { readHopRequest } from '../authz/hop-request.js';
import type { AuthzConfig } from '../config/authz-config.js';
import { createCa, issueCert, type Ca, type IssuedCert } from '../devkit/pki.js';
import { createSigningKey, signAccessToken, type SigningKey } from '../devkit/signing-key.js';
import { RouteTable } from '../policy/route-table.js';
import { LeakResponse } from '../signals/leak-response.js';
import { MemoryStore } from '../store/memory-store.js';
import { silentLogger } from '../telemetry/log.js';
import { AccessTokenVerifier } from '../token/access-token-verifier.js';
import type { IssuerKeys } from '../token/issuer-keys.js';
import type { Decision } from '../vocabulary/decision.js';
import type { PolicyData } from '../vocabulary/route-condition.js';
import { resolveTimeClaim, type MintedToken, type PolicyCase } from './cases-file.js';

export interface CaseResult {
  name: string;
  expected: string;
  /** `allow`, or the deny code, with the failed condition's name for condition_failed. */
  actual: string;
  passed: boolean;
  seconds: number;
}

/** Default token lifetime: short, as the issuer's are. */
const DEFAULT_TTL_SECONDS = 60;
/** sub and client_id of a default token sent without a caller. */
const NO_CALLER_SUBJECT = 'hopguard-test';

export async function runCases(config: AuthzConfig, data: PolicyData, cases: readonly PolicyCase[]): Promise<CaseResult[]> {
  const dir = mkdtempSync(join(tmpdir(), 'hopguard-test-'));
  const store = new MemoryStore(config.memory);
  try {
    const peers = new Peers(dir);
    const keys = await Promise.all(config.issuers.map((issuer) => createSigningKey(issuer.algorithms[0]!)));
    const issuers = await Promise.all(config.issuers.map(async (issuer, index) => ({ config: issuer, keys: await staticKeys(keys[index]!) })));
    const deps: AuthorizeDeps = {
      config,
      routes: new RouteTable(config.routes),
      verifier: new AccessTokenVerifier({ audience: config.audience, issuers, clockSkewMs: config.clockSkewMs, cacheMaxEntries: config.cache.maxEntries }),
      store,
      data,
      // As the config says: with leaks: revoke, a wrong-peer case revokes that token for the cases after it.
      leaks: new LeakResponse({
        action: config.leaks ?? 'revoke', store, audit: AUDIT_OFF, log: silentLogger, onLeak: () => undefined,
        audience: config.audience, clockSkewMs: config.clockSkewMs,
      }),
    };
    const sent = new Map<string, string>();
    const results: CaseResult[] = [];
    for (const each of cases) {
      const started = performance.now();
      const token = each.token === 'none' ? undefined
        : 'reuse' in each.token ? sent.get(each.token.reuse)
        : await mint(each, each.token, config, keys, peers);
      if (token !== undefined) sent.set(each.name, token);
      const caller = each.request.caller === undefined ? undefined : peers.certificate(each.request.caller);
      const request = readHopRequest(checkRequestMessage({
        method: each.request.method,
        path: each.request.path,
        host: each.request.host,
        headers: { ...each.request.headers, ...(token !== undefined && { authorization: `Bearer ${token}` }) },
        ...(each.request.caller !== undefined && { principal: each.request.caller, certificatePem: caller!.certPem }),
        ...(each.request.address !== undefined && { sourceAddress: each.request.address }),
      }));
      const actual = outcome(await authorize(request, deps));
      const passed = actual === each.expect || actual.startsWith(`${each.expect} `);
      results.push({ name: each.name, expected: each.expect, actual, passed, seconds: (performance.now() - started) / 1000 });
    }
    return results;
  } finally {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

function outcome(decision: Decision): string {
  if (decision.allowed) return 'allow';
  return decision.condition === undefined ? decision.code : `${decision.code} (condition ${decision.condition})`;
}

/** The design's defaults, the case's claims merged over them (null removes one). */
async function mint(each: PolicyCase, spec: MintedToken, config: AuthzConfig, keys: SigningKey[], peers: Peers): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  const who = each.request.caller ?? NO_CALLER_SUBJECT;
  const boundTo = spec.boundTo === undefined ? each.request.caller : spec.boundTo ?? undefined;
  const claims: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(spec.claims)) {
    // JSON leaves out an undefined member: that is how null removes a default.
    claims[name] = value === null ? undefined : resolveTimeClaim(value, now);
  }
  const iss = typeof claims.iss === 'string' ? claims.iss : config.issuers[0]!.issuer;
  const index = Math.max(0, config.issuers.findIndex((issuer) => issuer.issuer === iss));
  return signAccessToken(keys[index]!, {
    iss: config.issuers[0]!.issuer,
    aud: config.audience,
    sub: who,
    iat: now,
    ttl: DEFAULT_TTL_SECONDS,
    ...(boundTo !== undefined && { certThumbprint: peers.certificate(boundTo).thumbprint }),
    claims,
  });
}

/** The run's key as an issuer's only key: what the issuer's JWKS would hold, for this run. */
async function staticKeys(key: SigningKey): Promise<IssuerKeys> {
  const publicKey = await importJWK(key.publicJwk, key.alg) as CryptoKey;
  return {
    resolve: async (kid, alg) => (kid === key.kid && alg === key.alg ? publicKey : undefined),
    loaded: true,
    usable: true,
    generation: 0,
    start: async () => undefined,
    stop: () => undefined,
  };
}

/** One throwaway client certificate per SPIFFE ID, under one throwaway CA. */
class Peers {
  private ca?: Ca;
  private readonly certs = new Map<string, IssuedCert>();

  constructor(private readonly dir: string) {}

  certificate(principal: string): IssuedCert {
    let cert = this.certs.get(principal);
    if (!cert) {
      this.ca ??= createCa(this.dir, 'test-ca');
      cert = issueCert(this.ca, this.dir, { name: `peer-${this.certs.size}`, uriSan: principal, clientAuth: true });
      this.certs.set(principal, cert);
    }
    return cert;
  }
}
