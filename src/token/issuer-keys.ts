import type { Algorithm } from '../config/authz-config.js';

/**
 * The verification keys of one trusted issuer. Keys come only from the configured
 * jwks_file / jwks_uri: never from a token's `jwk`, `jku`, `x5u` or `x5c` header.
 */
export interface IssuerKeys {
  /**
   * The key for a token's `kid` and `alg`. When no key fits, one refetch is allowed per
   * refetch interval (concurrent callers share it); otherwise resolves undefined.
   * Never rejects: a failed fetch keeps the last good key set.
   */
  resolve(kid: string | undefined, alg: Algorithm): Promise<CryptoKey | undefined>;
  /** True once a key set has been loaded at least once. */
  readonly loaded: boolean;
  /** Bumped whenever the key set changes, so caches of verified tokens can be dropped. */
  readonly generation: number;
  /** First load (rejects if it fails), then background refresh. */
  start(): Promise<void>;
  stop(): void;
}
