import type { Logger } from '../telemetry/log.js';
import type { MemoryOptions } from '../vocabulary/memory-options.js';
import type { RedisOptions } from '../vocabulary/redis-options.js';
import { MemoryStore } from './memory-store.js';
import type { Store } from './store.js';

/**
 * The store the config names: `memory` for one replica, a redis URL for a mesh. ioredis is
 * loaded only for a mesh (~100 ms of a sidecar's startup otherwise).
 */
export async function openStore(config: { store: string; redis: RedisOptions; memory?: MemoryOptions }, log: Logger): Promise<Store> {
  if (config.store === 'memory') return new MemoryStore(config.memory);
  const { RedisStore } = await import('./redis-store.js');
  return RedisStore.open(config.store, config.redis, log);
}
