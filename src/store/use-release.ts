import type { Result } from 'ioredis';
import type { Logger } from '../telemetry/log.js';
import type { RedisClient } from './redis-connection.js';

/**
 * Giving back a one-time mark: each mark holds a value unique to the check that set it, and
 * only that check may delete it (compare-and-delete in Lua), so a release can never undo
 * another check's use, on this replica or any other.
 */
declare module 'ioredis' {
  interface RedisCommander<Context> {
    /** Deletes the key if it still holds `claim`; resolves to 1 if it did, else 0. */
    releaseUse(key: string, claim: string): Result<number, Context>;
  }
}

const RELEASE_USE_LUA = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`;

/** How long a release that cannot reach Redis is retried; a mark that expires earlier is retried until it does. */
export const RELEASE_RETRY_WINDOW_MS = 60_000;
const RETRY_FIRST_MS = 100;
const RETRY_MAX_MS = 1000;

export function defineUseRelease(client: RedisClient): void {
  client.defineCommand('releaseUse', { numberOfKeys: 1, lua: RELEASE_USE_LUA });
}

/**
 * Releases marks in the background. A mark whose SET timed out may still be applied when a
 * stalled Redis wakes; the release goes out on the same connection after it, so Redis runs
 * it after the SET, and it is retried (it is idempotent) until Redis answers or the window
 * closes. Releases given up on are counted and logged once per outage; never the key.
 */
export class UseReleaser {
  private abandoned = 0;
  private failing = false;
  private closed = false;

  constructor(
    private readonly client: RedisClient,
    private readonly log: Logger,
    private readonly now: () => number,
  ) {}

  /** Releases gone unanswered for the whole window: those tokens stay spent until their mark expires. */
  get abandonedCount(): number {
    return this.abandoned;
  }

  release(key: string, claim: string, markExpiresAtMs: number): void {
    const giveUpAtMs = Math.min(markExpiresAtMs, this.now() + RELEASE_RETRY_WINDOW_MS);
    const attempt = (delayMs: number): void => {
      if (this.closed) return;
      this.client.releaseUse(key, claim).then(() => { this.failing = false; }, () => {
        if (this.now() + delayMs >= giveUpAtMs) return this.giveUp();
        setTimeout(() => attempt(Math.min(delayMs * 2, RETRY_MAX_MS)), delayMs).unref();
      });
    };
    attempt(RETRY_FIRST_MS);
  }

  close(): void {
    this.closed = true;
  }

  private giveUp(): void {
    this.abandoned++;
    if (this.failing) return;
    this.failing = true;
    this.log.warn('one_time_release_abandoned', { abandoned_total: this.abandoned });
  }
}
