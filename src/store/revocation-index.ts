import type { Revocation, RevocationRecord, RevocationSubject } from './store.js';

/**
 * Revocations held in memory, so a lookup on the check path is a few map reads.
 * Every store keeps one: the memory store as its truth, the Redis store as its mirror.
 * Entries are dropped once no token they cover can still be valid (`expiresAtMs`).
 */
export class RevocationIndex {
  private readonly byJti = new Map<string, RevocationRecord>();
  private readonly bySubject = new Map<string, RevocationRecord>();
  private readonly byClient = new Map<string, RevocationRecord>();
  private readonly byCert = new Map<string, RevocationRecord>();

  constructor(private readonly now: () => number = Date.now) {}

  get size(): number {
    return this.byJti.size + this.bySubject.size + this.byClient.size + this.byCert.size;
  }

  add(record: RevocationRecord): void {
    const r = record.revocation;
    switch (r.kind) {
      case 'jti': return keepLonger(this.byJti, r.fingerprint, record);
      case 'cert': return keepLonger(this.byCert, r.thumbprint, record);
      // "revoked before T": a later T covers everything an earlier one did.
      case 'subject': return keepLater(this.bySubject, r.value, record);
      case 'client': return keepLater(this.byClient, r.value, record);
    }
  }

  find(token: RevocationSubject): RevocationRecord | undefined {
    return this.live(this.byJti, token.jtiFingerprint)
      ?? (token.certThumbprint !== undefined ? this.live(this.byCert, token.certThumbprint) : undefined)
      ?? this.issuedBefore(this.bySubject, token.sub, token.iat)
      ?? this.issuedBefore(this.byClient, token.clientId, token.iat);
  }

  /** Every live record: what a resync compares with the shared copy. */
  *records(): Iterable<RevocationRecord> {
    const now = this.now();
    for (const map of [this.byJti, this.bySubject, this.byClient, this.byCert]) {
      for (const record of map.values()) if (record.expiresAtMs > now) yield record;
    }
  }

  /** Drops entries that can no longer cover a valid token. */
  sweep(): void {
    const now = this.now();
    for (const map of [this.byJti, this.bySubject, this.byClient, this.byCert]) {
      for (const [key, record] of map) if (record.expiresAtMs <= now) map.delete(key);
    }
  }

  private live(map: Map<string, RevocationRecord>, key: string): RevocationRecord | undefined {
    const record = map.get(key);
    return record && record.expiresAtMs > this.now() ? record : undefined;
  }

  private issuedBefore(map: Map<string, RevocationRecord>, key: string, iat: number): RevocationRecord | undefined {
    const record = this.live(map, key);
    // Compared by the second: a token issued in the same second as the revocation dies too,
    // whatever fraction either carries (a NumericDate may have one).
    return record && Math.floor(iat) <= Math.floor(before(record)) ? record : undefined;
  }
}

/** One name per revoked thing: a later revocation of the same thing replaces the earlier one. */
export function revocationKey(revocation: Revocation): string {
  switch (revocation.kind) {
    case 'jti': return `jti:${revocation.fingerprint}`;
    case 'cert': return `cert:${revocation.thumbprint}`;
    case 'subject': return `subject:${revocation.value}`;
    case 'client': return `client:${revocation.value}`;
  }
}

/** A record read back from shared state, checked field by field; undefined if it is not one. */
export function parseRevocationRecord(text: string): RevocationRecord | undefined {
  let value: any;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  const r = value?.revocation;
  if (typeof value?.expiresAtMs !== 'number' || typeof r !== 'object' || r === null) return undefined;
  const ok = (r.kind === 'jti' && typeof r.fingerprint === 'string')
    || (r.kind === 'cert' && typeof r.thumbprint === 'string')
    || ((r.kind === 'subject' || r.kind === 'client') && typeof r.value === 'string' && typeof r.before === 'number');
  if (!ok) return undefined;
  return { revocation: r as Revocation, expiresAtMs: value.expiresAtMs, ...(typeof value.reason === 'string' && { reason: value.reason }) };
}

function before(record: RevocationRecord): number {
  const r = record.revocation;
  return r.kind === 'subject' || r.kind === 'client' ? r.before : Number.NEGATIVE_INFINITY;
}

function keepLonger(map: Map<string, RevocationRecord>, key: string, record: RevocationRecord): void {
  const old = map.get(key);
  if (!old || old.expiresAtMs < record.expiresAtMs) map.set(key, record);
}

function keepLater(map: Map<string, RevocationRecord>, key: string, record: RevocationRecord): void {
  const old = map.get(key);
  if (!old || before(old) <= before(record)) map.set(key, record);
}
