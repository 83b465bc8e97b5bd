import { RevocationIndex } from './revocation-index.js';
import type { RevocationRecord, RevocationSubject, Store, StoreHealth } from './store.js';

const SWEEP_INTERVAL_MS = 10_000;

/** State for a single replica (`store: memory`): nothing is shared, nothing survives a restart. */
export class MemoryStore implements Store {
  private readonly used = new Map<string, number>();
  private readonly revocations: RevocationIndex;
  private readonly sweeper: NodeJS.Timeout;

  constructor(private readonly now: () => number = Date.now) {
    this.revocations = new RevocationIndex(now);
    this.sweeper = setInterval(() => this.sweep(), SWEEP_INTERVAL_MS).unref();
  }

  async markUsed(jtiFingerprint: string, expiresAtMs: number): Promise<boolean> {
    const until = this.used.get(jtiFingerprint);
    if (until !== undefined && until > this.now()) return false;
    this.used.set(jtiFingerprint, expiresAtMs);
    return true;
  }

  findRevocation(token: RevocationSubject): RevocationRecord | undefined {
    return this.revocations.find(token);
  }

  async revoke(record: RevocationRecord): Promise<void> {
    this.revocations.add(record);
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
    this.revocations.sweep();
  }
}
