import type { ConnectionOptions } from 'node:tls';
import type { RedisOptions } from '../vocabulary/redis-options.js';
import { FILE_KINDS, readConfiguredFile } from '../schema/bounded-read.js';
import { ConfigError } from '../schema/config-error.js';
import { readCaFile } from '../tls/certificate-chain.js';
import { readKeyPair } from '../tls/key-pair.js';

export const PASSWORD_ENV = 'HOPGUARD_REDIS_PASSWORD';

/**
 * The password and TLS files the `redis` section names, read and checked (a ConfigError naming
 * the key otherwise, never the content). Every connection reads them here, and so does
 * `check-config` (authz-materials.ts), so both refuse the same files the same way.
 */
export function redisCredentials(options: RedisOptions): { password?: string; tls: ConnectionOptions } {
  const password = readPassword(options);
  const tls: ConnectionOptions = {
    ...(options.tlsCaFile !== undefined && { ca: readCaFile(options.tlsCaFile, 'redis.tls_ca_file') }),
    ...(options.tlsCertFile !== undefined && readKeyPair(
      { cert: options.tlsCertFile, key: options.tlsKeyFile! },
      { cert: 'redis.tls_cert_file', key: 'redis.tls_key_file' },
    )),
  };
  return { ...(password !== undefined && { password }), tls };
}

function readPassword(options: RedisOptions): string | undefined {
  const fromEnv = process.env[PASSWORD_ENV];
  if (fromEnv) return fromEnv;
  if (options.passwordFile === undefined) return undefined;
  const password = readConfiguredFile(options.passwordFile, 'redis.password_file', FILE_KINDS.secret).toString('utf8').trim();
  if (password === '') throw new ConfigError([{ path: 'redis.password_file', message: `${options.passwordFile} is empty` }]);
  return password;
}
