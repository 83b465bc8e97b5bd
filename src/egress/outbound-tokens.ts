import { createHash } from 'node:crypto';
import type { IssuedToken } from '../issuer-client/issued-token.js';
import type { IssuerClient } from '../issuer-client/issuer-client.js';
import { TokenCache } from '../issuer-client/token-cache.js';
import type { EgressDestination } from '../vocabulary/egress-config.js';

/** Exchanged tokens kept at once; one per (inbound token, destination) in use. */
const MAX_CACHED_TOKENS = 10_000;

/**
 * The tokens outbound calls carry, from the issuer client: exchanged per (inbound token,
 * destination), or this workload's own per destination (without_handle: client_credentials),
 * cached until shortly before they expire (per_request: never), concurrent misses sharing one
 * issuer request, and all dropped when the workload certificate they are bound to rotates.
 */
export class OutboundTokens {
  private readonly cache = new TokenCache<IssuedToken>({ maxEntries: MAX_CACHED_TOKENS });
  private readonly unsubscribe: () => void;

  constructor(private readonly client: IssuerClient) {
    this.unsubscribe = client.onCertificateChange(() => this.cache.clear());
  }

  /** RFC 8693: `subjectToken` (the inbound token) exchanged for one addressed to `destination`. */
  exchanged(subjectToken: string, destination: EgressDestination): Promise<IssuedToken> {
    // Keyed by a digest: the cache holds no inbound token as a key.
    const key = `exchange ${destination.host} ${createHash('sha256').update(subjectToken).digest('base64url')}`;
    const request = { subjectToken, audience: destination.audience, scopes: destination.scopes };
    return this.cache.get(key, () => this.client.exchange(request), { perRequest: destination.perRequest });
  }

  /** This workload's own token for `destination`, renewed in the background before it expires. */
  own(destination: EgressDestination): Promise<IssuedToken> {
    const request = { audience: destination.audience, scopes: destination.scopes };
    if (destination.perRequest) return this.client.clientCredentials(request);
    return this.cache.keepFresh(`own ${destination.host}`, () => this.client.clientCredentials(request));
  }

  close(): void {
    this.unsubscribe();
    this.cache.close();
    this.client.close();
  }
}
