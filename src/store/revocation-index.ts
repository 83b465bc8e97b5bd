import type { Revocation, RevocationRecord, RevocationSubject } from './store.js';

/**
 * Revocations held in memory, so a lookup on the check path is a few map reads.
 * Every store keeps one: the memory store as its truth, the Redis store as its mirror.
 * Records only grow (mergeRevocation); entries are dropped once no token they cover can
 * still be valid (`expiresAtMs`).
 */
export class RevocationIndex {
  private readonly byJti = new Map<string, RevocationRecord>();
  private readonly bySubject = new Map<string, RevocationRecord>();
  private readonly byClient = new Map<string, RevocationRecord>();
  private readonly byCert = new Map<string, RevocationRecord>();
  private readonly byKey = new Map<string, RevocationRecord>();

  constructor(private readonly now: () => number = Date.now) {}

  get size(): number {
    return this.byJti.size + this.bySubject.size + this.byClient.size + this.byCert.size + this.byKey.size;
  }

  /** Merges `record` into what is held for the same thing; returns the record held now. */
  add(record: RevocationRecord): RevocationRecord {
    const r = record.revocation;
    switch (r.kind) {
      case 'jti': return merge(this.byJti, r.fingerprint, record);
      case 'cert': return merge(this.byCert, r.thumbprint, record);
      case 'key': return merge(this.byKey, signingKeyName(r.issuer, r.kid), record);
      case 'subject': return merge(this.bySubject, r.value, record);
      case 'client': return merge(this.byClient, r.value, record);
    }
  }

  find(token: RevocationSubject): RevocationRecord | undefined {
    return this.live(this.byJti, token.jtiFingerprint)
      ?? (token.certThumbprint !== undefined ? this.live(this.byCert, token.certThumbprint) : undefined)
      ?? this.issuedBefore(this.bySubject, token.sub, token.iat)
      ?? this.issuedBefore(this.byClient, token.clientId, token.iat)
      ?? this.signedByRevokedKey(token);
  }

  /** Every live record: what a resync compares with the shared copy. */
  *records(): Iterable<RevocationRecord> {
    const now = this.now();
    for (const map of [this.byJti, this.bySubject, this.byClient, this.byCert, this.byKey]) {
      for (const record of map.values()) if (record.expiresAtMs > now) yield record;
    }
  }

  /** Drops entries that can no longer cover a valid token. */
  sweep(): void {
    const now = this.now();
    for (const map of [this.byJti, this.bySubject, this.byClient, this.byCert, this.byKey]) {
      for (const [key, record] of map) if (record.expiresAtMs <= now) map.delete(key);
    }
  }

  private live(map: Map<string, RevocationRecord>, key: string): RevocationRecord | undefined {
    const record = map.get(key);
    return record && record.expiresAtMs > this.now() ? record : undefined;
  }

  private signedByRevokedKey(token: RevocationSubject): RevocationRecord | undefined {
    if (this.byKey.size === 0 || token.issuer === undefined) return undefined;
    if (token.kid !== undefined) return this.live(this.byKey, signingKeyName(token.issuer, token.kid));
    // hopguard's issuer names the key in every token: a kid-less one in its name may be signed by a revoked key.
    for (const [name, record] of this.byKey) {
      if (record.revocation.kind === 'key' && record.revocation.issuer === token.issuer && this.live(this.byKey, name)) return record;
    }
    return undefined;
  }

  private issuedBefore(map: Map<string, RevocationRecord>, key: string, iat: number): RevocationRecord | undefined {
    const record = this.live(map, key);
    // Compared by the second: a token issued in the same second as the revocation dies too,
    // whatever fraction either carries (a NumericDate may have one).
    return record && Math.floor(iat) <= Math.floor(before(record)) ? record : undefined;
  }
}

/** One name per revoked thing: records of the same thing merge (mergeRevocation). */
export function revocationKey(revocation: Revocation): string {
  switch (revocation.kind) {
    case 'jti': return `jti:${revocation.fingerprint}`;
    case 'cert': return `cert:${revocation.thumbprint}`;
    case 'key': return `key:${signingKeyName(revocation.issuer, revocation.kid)}`;
    case 'subject': return `subject:${revocation.value}`;
    case 'client': return `client:${revocation.value}`;
  }
}

/**
 * The one rule for two records of the same thing (same revocationKey): the merged record
 * covers both, with the later `before` and the later expiry, so no record can shorten or
 * lift a revocation. Returns `held` itself when `incoming` adds nothing; the reason is the
 * one of the record that grew it. REVOCATION_MERGE_LUA in redis-store.ts is this rule in Redis.
 */
export function mergeRevocation(held: RevocationRecord | undefined, incoming: RevocationRecord): RevocationRecord {
  if (!held) return incoming;
  const expiresAtMs = Math.max(held.expiresAtMs, incoming.expiresAtMs);
  const latest = Math.max(before(held), before(incoming));
  if (expiresAtMs === held.expiresAtMs && latest === before(held)) return held;
  const r = held.revocation;
  const revocation: Revocation = r.kind === 'subject' || r.kind === 'client' ? { ...r, before: latest } : r;
  const reason = incoming.reason ?? held.reason;
  return { revocation, expiresAtMs, ...(reason !== undefined && { reason }) };
}

/**
 * A record read back from shared state (a hash field or a published message), checked field by
 * field and rebuilt from the known fields only; undefined if it is not one, or (given `key`) if
 * it is not the record of that hash field.
 */
export function parseRevocationRecord(text: string, key?: string): RevocationRecord | undefined {
  let value: any;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  const r = value?.revocation;
  if (!Number.isFinite(value?.expiresAtMs) || typeof r !== 'object' || r === null) return undefined;
  const revocation = parseRevocation(r);
  if (!revocation || (key !== undefined && revocationKey(revocation) !== key)) return undefined;
  return { revocation, expiresAtMs: value.expiresAtMs, ...(typeof value.reason === 'string' && { reason: value.reason }) };
}

function parseRevocation(r: any): Revocation | undefined {
  if (r.kind === 'jti' && typeof r.fingerprint === 'string') return { kind: 'jti', fingerprint: r.fingerprint };
  if (r.kind === 'cert' && typeof r.thumbprint === 'string') return { kind: 'cert', thumbprint: r.thumbprint };
  if (r.kind === 'key' && typeof r.issuer === 'string' && typeof r.kid === 'string') return { kind: 'key', issuer: r.issuer, kid: r.kid };
  if ((r.kind === 'subject' || r.kind === 'client') && typeof r.value === 'string' && Number.isFinite(r.before)) {
    return { kind: r.kind, value: r.value, before: r.before };
  }
  return undefined;
}

function before(record: RevocationRecord): number {
  const r = record.revocation;
  return r.kind === 'subject' || r.kind === 'client' ? r.before : Number.NEGATIVE_INFINITY;
}

function merge(map: Map<string, RevocationRecord>, key: string, record: RevocationRecord): RevocationRecord {
  const held = map.get(key);
  const merged = mergeRevocation(held, record);
  if (merged !== held) map.set(key, merged);
  return merged;
}

/**
 * The issuer and kid in one name, as the Lua scripts build it too. A kid holding a newline could
 * make two names meet: that only ever denies more, never less.
 */
function signingKeyName(issuer: string, kid: string): string {
  return `${issuer}\n${kid}`;
}
