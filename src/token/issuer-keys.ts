import type { Algorithm } from '../vocabulary/algorithms.js';

/**
 * The verification keys of one trusted issuer. Keys come only from the configured
 * jwks_file / jwks_uri: never from a token's `jwk`, `jku`, `x5u` or `x5c` header.
 */
export interface IssuerKeys {
  /**
   * The key for a token's `kid` and `alg`. When no key fits, the kid is refetched unless it
   * was looked for within the refetch interval (concurrent callers share one fetch), waiting
   * for it no longer than the check wait; otherwise resolves undefined.
   * Never rejects: a failed fetch keeps the last good key set.
   */
  resolve(kid: string | undefined, alg: Algorithm): Promise<CryptoKey | undefined>;
  /** True once a key set has been loaded at least once. */
  readonly loaded: boolean;
  /** True when the loaded key set has a key a token could verify with (allowed algorithm, supported type, imports). */
  readonly usable: boolean;
  /** Bumped whenever the key set changes, so caches of verified tokens can be dropped. */
  readonly generation: number;
  /** First load (rejects if it fails), then background refresh. */
  start(): Promise<void>;
  stop(): void;
}
