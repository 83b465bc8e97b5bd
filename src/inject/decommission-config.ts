/**
 * The injector config's keys for decommission (POST /decommission, design "Continuous access
 * evaluation"): the store revocations go to, `store:` and `redis:` as in the authz file, how long
 * they are kept, and where they are audited.
 */

import { z } from 'zod';
import { auditSchema, type AuditConfig } from '../audit/audit-config.js';
import { parseStore, parsedString, positiveDuration, redisSchema } from '../schema/config-schema.js';
import type { RedisOptions } from '../vocabulary/redis-options.js';

export interface DecommissionConfig {
  store: string;
  redis: RedisOptions;
  /** How long a deleted ServiceAccount's revocation is kept: at least the longest token lifetime of any issuer. */
  revocationTtlMs: number;
  audit: AuditConfig;
}

export function decommissionFields(baseDir: string) {
  return {
    store: parsedString('"memory" or a redis URL', parseStore).prefault('memory'),
    redis: redisSchema(baseDir).prefault({}),
    revocation_ttl: positiveDuration.prefault('24h'),
    audit: auditSchema(baseDir).prefault({}),
  };
}

type Raw = { [K in keyof ReturnType<typeof decommissionFields>]: z.output<ReturnType<typeof decommissionFields>[K]> };

export function decommissionConfig(raw: Raw): DecommissionConfig {
  return { store: raw.store, redis: raw.redis, revocationTtlMs: raw.revocation_ttl, audit: raw.audit };
}
