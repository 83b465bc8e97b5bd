import type { StoreHealth } from '../vocabulary/store-health.js';
import { RevocationIndex } from './revocation-index.js';
import type { HeldUses, RevocationRecord, RevocationSubject, Store } from './store.js';

const SWEEP_INTERVAL_MS = 10_000;

/** State for a single replica (`store: memory`): nothing is shared, nothing survives a restart. */
export class MemoryStore implements Store {
  private readonly used = new Map<string, number>();
  private readonly sets = new Map<string, { members: Set<string>; expiresAtMs: number }>();
  private readonly revocations: RevocationIndex;
  private readonly sweeper: NodeJS.Timeout;

  constructor(private readonly now: () => number = Date.now) {
    this.revocations = new RevocationIndex(now);
    this.sweeper = setInterval(() => this.sweep(), SWEEP_INTERVAL_MS).unref();
  }

  async markUsed(jtiFingerprint: string, expiresAtMs: number, held?: HeldUses): Promise<boolean> {
    const until = this.used.get(jtiFingerprint);
    if (until !== undefined && until > this.now()) return false;
    this.used.set(jtiFingerprint, expiresAtMs);
    held?.push(() => { if (this.used.get(jtiFingerprint) === expiresAtMs) this.used.delete(jtiFingerprint); });
    return true;
  }

  findRevocation(token: RevocationSubject): RevocationRecord | undefined {
    return this.revocations.find(token);
  }

  async revoke(record: RevocationRecord): Promise<void> {
    this.revocations.add(record);
  }

  async addToSet(name: string, member: string, expiresAtMs: number): Promise<void> {
    const set = this.sets.get(name) ?? { members: new Set<string>(), expiresAtMs };
    set.members.add(member);
    set.expiresAtMs = Math.max(set.expiresAtMs, expiresAtMs);
    this.sets.set(name, set);
  }

  async members(name: string): Promise<string[]> {
    const set = this.sets.get(name);
    return set && set.expiresAtMs > this.now() ? [...set.members] : [];
  }

  health(): StoreHealth {
    return { state: 'ok' };
  }

  async close(): Promise<void> {
    clearInterval(this.sweeper);
  }

  private sweep(): void {
    const now = this.now();
    for (const [key, until] of this.used) if (until <= now) this.used.delete(key);
    for (const [key, set] of this.sets) if (set.expiresAtMs <= now) this.sets.delete(key);
    this.revocations.sweep();
  }
}
