import type { RevocationRecord, RevocationSubject } from './store.js';

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

  /** Drops entries that can no longer cover a valid token. */
  sweep(): void {
    const now = this.now();
    for (const map of [this.byJti, this.bySubject, this.byClient, this.byCert]) {
      for (const [key, record] of map) if (record.expiresAtMs <= now) map.delete(key);
    }
  }

  clear(): void {
    for (const map of [this.byJti, this.bySubject, this.byClient, this.byCert]) map.clear();
  }

  private live(map: Map<string, RevocationRecord>, key: string): RevocationRecord | undefined {
    const record = map.get(key);
    return record && record.expiresAtMs > this.now() ? record : undefined;
  }

  private issuedBefore(map: Map<string, RevocationRecord>, key: string, iat: number): RevocationRecord | undefined {
    const record = this.live(map, key);
    // iat has one-second resolution: a token issued in the same second as the revocation dies too.
    return record && iat <= Math.floor(before(record)) ? record : undefined;
  }
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
