import type { Logger } from '../telemetry/log.js';
import type { RedisOptions } from '../vocabulary/redis-options.js';
import { createRedisClient, whenReady, type RedisClient } from './redis-connection.js';
import { defineRevocationScripts, revocationKeys, writeRevocation, type RevocationKeys } from './revocation-scripts.js';
import type { RevocationRecord, RevocationWriter } from './store.js';

/**
 * Revocations written to the shared Redis, and nothing else: the injector's decommission. It
 * checks no token, so it keeps no mirror of the revocations, reads none and subscribes to no
 * feed; a write is the merge script (HGET, HSET, PUBLISH) and INCR of the version, which is all
 * its own Redis user may run (k8s/base/redis-users.acl). The sidecars hear of each write on the
 * channel, as of any other.
 */
export class RedisRevocationWriter implements RevocationWriter {
  private readonly keys: RevocationKeys;

  private constructor(private readonly client: RedisClient, options: RedisOptions) {
    this.keys = revocationKeys(options.keyPrefix);
  }

  /** Connects; with Redis down it still returns, and each revoke fails until Redis is back. */
  static async open(url: string, options: RedisOptions, log: Logger): Promise<RedisRevocationWriter> {
    const client = createRedisClient(url, options, 'commands', log);
    defineRevocationScripts(client);
    // ioredis reconnects by itself; refusals are logged by createRedisClient. Without a listener errors would be thrown.
    client.on('error', () => undefined);
    await whenReady(client, options.commandTimeoutMs * 4);
    return new RedisRevocationWriter(client, options);
  }

  revoke(record: RevocationRecord): Promise<void> {
    return writeRevocation(this.client, this.keys, record);
  }

  async close(): Promise<void> {
    this.client.disconnect();
  }
}
