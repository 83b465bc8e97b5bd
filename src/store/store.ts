/**
 * Shared state behind every replica: one-time token use and revocations.
 * The in-memory store serves one replica; the Redis store (same interface) a mesh.
 *
 * Keys and records hold fingerprints, never token text. Revocation lookups are
 * synchronous on purpose: every store keeps the revocation state in memory, so the
 * check path never waits on the network for it.
 */

import type { StoreHealth } from '../vocabulary/store-health.js';
import type { VerifiedToken } from '../vocabulary/verified-token.js';

export type Revocation =
  | { kind: 'jti'; fingerprint: string }
  /** Every token of this subject issued before `before` (epoch seconds) is dead. */
  | { kind: 'subject'; value: string; before: number }
  | { kind: 'client'; value: string; before: number }
  | { kind: 'cert'; thumbprint: string }
  /** Every token this issuer's key `kid` signed (`hopguard keys revoke`: the key leaked). */
  | { kind: 'key'; issuer: string; kid: string };

export interface RevocationRecord {
  revocation: Revocation;
  /** Epoch ms after which no token this revocation covers can still be valid. */
  expiresAtMs: number;
  reason?: string;
}

/** What a revocation lookup needs to know about a verified token. */
export interface RevocationSubject {
  jtiFingerprint: string;
  sub: string;
  clientId: string;
  /** Epoch seconds. */
  iat: number;
  /** cnf["x5t#S256"], when the token is certificate-bound. */
  certThumbprint?: string;
  /** The token's iss and header kid, so a revoked signing key is looked up too. */
  issuer?: string;
  kid?: string;
}

/** What a revocation lookup needs of a verified access token: its id, holders and signing key. */
export function revocationSubject(token: VerifiedToken): RevocationSubject {
  return {
    jtiFingerprint: token.fingerprint,
    sub: token.sub,
    clientId: token.clientId,
    iat: token.iat,
    ...(token.cnf?.x5tS256 !== undefined && { certThumbprint: token.cnf.x5tS256 }),
    issuer: token.iss,
    ...(token.kid !== undefined && { kid: token.kid }),
  };
}

export class StoreUnavailableError extends Error {
  readonly code = 'state_unavailable';
  constructor(message: string) {
    super(message);
    this.name = 'StoreUnavailableError';
  }
}

/**
 * The first uses one check recorded: markUsed adds one release per use it recorded. A check
 * answered with a denial calls them, undoing each use only if it is still this check's, so a
 * denied request never spends a one-time token and an allowed one never loses its mark.
 */
export type HeldUses = (() => void)[];

export interface OneTimeCounts {
  /** One-time uses refused as state_unavailable because `store: memory`'s table was full of live marks. */
  refusedFull: number;
  /** Marks of denied checks that could not be given back in time: those tokens stay spent until they expire. */
  releasesAbandoned: number;
}

export interface Store {
  /**
   * Records the first use of a one-time token. Resolves true for the first use anywhere,
   * false for any later one. Rejects with StoreUnavailableError when that cannot be decided
   * within the store's bound, and then leaves no use recorded (a 503 means "try again").
   * A first use recorded for a check that is denied after all is given back through `held`.
   */
  markUsed(jtiFingerprint: string, expiresAtMs: number, held?: HeldUses): Promise<boolean>;
  /** The matching revocation, if any. Synchronous: served from memory. */
  findRevocation(token: RevocationSubject): RevocationRecord | undefined;
  revoke(record: RevocationRecord): Promise<void>;
  /**
   * Issuer bookkeeping, shared like the rest: named sets of ids (a refresh-token family's
   * access-token fingerprints), kept until `expiresAtMs`. Rejects with StoreUnavailableError.
   */
  addToSet(name: string, member: string, expiresAtMs: number): Promise<void>;
  members(name: string): Promise<string[]>;
  health(): StoreHealth;
  /** What the one-time marks could not do (for metrics). */
  oneTimeCounts(): OneTimeCounts;
  close(): Promise<void>;
}

/** What a process that only revokes needs of a store (the injector's decommission). */
export type RevocationWriter = Pick<Store, 'revoke' | 'close'>;
