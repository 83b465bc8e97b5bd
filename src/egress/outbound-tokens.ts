import { createHash } from 'node:crypto';
import type { Context } from '@opentelemetry/api';
import { IssuerClientError } from '../issuer-client/issuer-client-error.js';
import type { IssuedToken } from '../issuer-client/issued-token.js';
import type { IssuerClient } from '../issuer-client/issuer-client.js';
import { TokenCache } from '../issuer-client/token-cache.js';
import type { EgressDestination } from '../vocabulary/egress-config.js';

/** Exchanged tokens kept at once; one per (inbound token, destination) in use. */
const MAX_CACHED_TOKENS = 10_000;

/** An inbound token to exchange, with the digest its cache entries are keyed by: the cache holds no inbound token as a key. */
export interface SubjectToken {
  token: string;
  digest: string;
}

export function subjectToken(token: string): SubjectToken {
  return { token, digest: createHash('sha256').update(token).digest('base64url') };
}

/** A token for an outbound call, and where it came from. */
export interface OutboundToken {
  token: IssuedToken;
  /** The cache had it: no issuer request was waited on. */
  cacheHit: boolean;
  /** This call's own issuer request got it (not the cache, nor a concurrent caller's request). */
  issued: boolean;
}

export type IssuerGrant = 'token_exchange' | 'client_credentials';
export type IssuerOutcome = 'ok' | 'refused' | 'unavailable';

export interface OutboundTokenEvents {
  /** One per request made to the issuer (concurrent misses sharing one count once; background renewals count). */
  onIssuerRequest?(grant: IssuerGrant, outcome: IssuerOutcome): void;
  /** One per cache lookup (per_request destinations make none). */
  onCacheLookup?(hit: boolean): void;
}

/**
 * The tokens outbound calls carry, from the issuer client: exchanged per (inbound token,
 * destination), or this workload's own per destination (without_handle: client_credentials),
 * cached until shortly before they expire (per_request: never), concurrent misses sharing one
 * issuer request, and all dropped when the workload certificate they are bound to rotates.
 */
export class OutboundTokens {
  private readonly cache = new TokenCache<IssuedToken>({ maxEntries: MAX_CACHED_TOKENS });
  private readonly unsubscribe: () => void;

  constructor(private readonly client: IssuerClient, private readonly events: OutboundTokenEvents = {}) {
    this.unsubscribe = client.onCertificateChange(() => this.cache.clear());
  }

  /**
   * RFC 8693: `subject` (the inbound token) exchanged for one addressed to `destination`;
   * `context`: the trace the issuer's request joins.
   */
  exchanged(subject: SubjectToken, destination: EgressDestination, context?: Context): Promise<OutboundToken> {
    const request = { subjectToken: subject.token, audience: destination.audience, scopes: destination.scopes, ...(context && { context }) };
    const mint = this.counted('token_exchange', () => this.client.exchange(request));
    if (destination.perRequest) return fresh(mint);
    const key = `exchange ${destination.host} ${subject.digest}`;
    return this.lookup(key, mint, false);
  }

  /** This workload's own token for `destination`, renewed in the background before it expires. */
  own(destination: EgressDestination, context?: Context): Promise<OutboundToken> {
    const request = { audience: destination.audience, scopes: destination.scopes, ...(context && { context }) };
    const mint = this.counted('client_credentials', () => this.client.clientCredentials(request));
    if (destination.perRequest) return fresh(mint);
    const key = `own ${destination.host}`;
    return this.lookup(key, mint, true);
  }

  close(): void {
    this.unsubscribe();
    this.cache.close();
    this.client.close();
  }

  private async lookup(key: string, mint: () => Promise<IssuedToken>, keepFresh: boolean): Promise<OutboundToken> {
    // One lookup for a hit: no promise chain nor mint is set up.
    const known = this.cache.current(key);
    this.events.onCacheLookup?.(known !== undefined);
    if (known !== undefined) return { token: known, cacheHit: true, issued: false };
    // The cache calls this only if no request for the key is in flight: then it is this call's.
    let issued = false;
    const ownMint = () => {
      issued = true;
      return mint();
    };
    const token = await (keepFresh ? this.cache.keepFresh(key, ownMint) : this.cache.get(key, ownMint));
    return { token, cacheHit: false, issued };
  }

  private counted(grant: IssuerGrant, mint: () => Promise<IssuedToken>): () => Promise<IssuedToken> {
    const report = this.events.onIssuerRequest;
    if (!report) return mint;
    return () => mint().then((token) => {
      report(grant, 'ok');
      return token;
    }, (err: unknown) => {
      report(grant, err instanceof IssuerClientError && err.code === 'exchange_refused' ? 'refused' : 'unavailable');
      throw err;
    });
  }
}

async function fresh(mint: () => Promise<IssuedToken>): Promise<OutboundToken> {
  return { token: await mint(), cacheHit: false, issued: true };
}
