import type { AuthzConfig } from '../config/authz-config.js';
import type { Logger } from '../telemetry/log.js';
import { MemoryStore } from './memory-store.js';
import { RedisStore } from './redis-store.js';
import type { Store } from './store.js';

/** The store the config names: `memory` for one replica, a redis URL for a mesh. */
export function openStore(config: Pick<AuthzConfig, 'store' | 'redis'>, log: Logger): Promise<Store> {
  if (config.store === 'memory') return Promise.resolve(new MemoryStore());
  return RedisStore.open(config.store, config.redis, log);
}
