import { createSecureContext, type ConnectionOptions } from 'node:tls';
import type { RedisOptions } from '../vocabulary/redis-options.js';
import { FILE_KINDS, readConfiguredFile } from '../schema/bounded-read.js';
import { ConfigError } from '../schema/config-error.js';
import { readCaFile } from '../tls/certificate-chain.js';

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
    ...(options.tlsCertFile !== undefined && { cert: readConfiguredFile(options.tlsCertFile, 'redis.tls_cert_file', FILE_KINDS.certificate) }),
    ...(options.tlsKeyFile !== undefined && { key: readConfiguredFile(options.tlsKeyFile, 'redis.tls_key_file', FILE_KINDS.key) }),
  };
  if (tls.cert !== undefined) {
    try {
      createSecureContext({ cert: tls.cert, key: tls.key });
    } catch (err) {
      const reason = (err as NodeJS.ErrnoException).code ?? 'invalid';
      throw new ConfigError([{ path: 'redis.tls_cert_file', message: `is not a PEM certificate whose private key is redis.tls_key_file (${reason})` }]);
    }
  }
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
