import type { Logger } from '../telemetry/log.js';
import type { MemoryOptions } from '../vocabulary/memory-options.js';
import type { RedisOptions } from '../vocabulary/redis-options.js';
import { MemoryStore } from './memory-store.js';
import type { RevocationWriter, Store } from './store.js';

/**
 * The store the config names: `memory` for one replica, a redis URL for a mesh. ioredis is
 * loaded only for a mesh (~100 ms of a sidecar's startup otherwise).
 */
export async function openStore(config: { store: string; redis: RedisOptions; memory?: MemoryOptions }, log: Logger): Promise<Store> {
  if (config.store === 'memory') return new MemoryStore(config.memory);
  const { RedisStore } = await import('./redis-store.js');
  return RedisStore.open(config.store, config.redis, log);
}

/** Where the config's revocations go, for a process that only writes them: no mirror, no feed on Redis. */
export async function openRevocationWriter(config: { store: string; redis: RedisOptions }, log: Logger): Promise<RevocationWriter> {
  if (config.store === 'memory') return new MemoryStore();
  const { RedisRevocationWriter } = await import('./redis-revocation-writer.js');
  return RedisRevocationWriter.open(config.store, config.redis, log);
}
