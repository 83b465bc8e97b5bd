import { DEFAULT_MAX_ONE_TIME_ENTRIES, type MemoryOptions } from '../vocabulary/memory-options.js';
import type { StoreHealth } from '../vocabulary/store-health.js';
import { OneTimeTable } from './one-time-table.js';
import { RevocationIndex } from './revocation-index.js';
import {
  StoreUnavailableError, type HeldUses, type OneTimeCounts, type RevocationRecord, type RevocationSubject, type Store,
} from './store.js';

const SWEEP_INTERVAL_MS = 10_000;

/**
 * State for a single replica (`store: memory`): nothing is shared, nothing survives a restart.
 * One-time marks live in a table of bounded capacity (memory.max_one_time_entries): when it
 * is full of live marks a new one-time use is refused as state_unavailable, never recorded by
 * forgetting an older one.
 */
export class MemoryStore implements Store {
  private readonly used: OneTimeTable;
  private readonly sets = new Map<string, { members: Set<string>; expiresAtMs: number }>();
  private readonly revocations: RevocationIndex;
  private readonly sweeper: NodeJS.Timeout;
  private refusedFull = 0;

  constructor(options: MemoryOptions = { maxOneTimeEntries: DEFAULT_MAX_ONE_TIME_ENTRIES }, private readonly now: () => number = Date.now) {
    this.used = new OneTimeTable(options.maxOneTimeEntries);
    this.revocations = new RevocationIndex(now);
    this.sweeper = setInterval(() => this.sweep(), SWEEP_INTERVAL_MS).unref();
  }

  async markUsed(jtiFingerprint: string, expiresAtMs: number, held?: HeldUses): Promise<boolean> {
    const { outcome, claim } = this.used.mark(jtiFingerprint, expiresAtMs, this.now());
    if (outcome === 'full') {
      this.refusedFull++;
      throw new StoreUnavailableError('the one-time table is full (memory.max_one_time_entries)');
    }
    if (outcome === 'used') return false;
    held?.push(() => this.used.release(jtiFingerprint, claim));
    return true;
  }

  oneTimeCounts(): OneTimeCounts {
    return { refusedFull: this.refusedFull, releasesAbandoned: 0 };
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
    this.used.sweep(now);
    for (const [key, set] of this.sets) if (set.expiresAtMs <= now) this.sets.delete(key);
    this.revocations.sweep();
  }
}
