/**
 * Every file an authz config names, read and checked before anything starts: JWKS files
 * (parsed, refused with private members), CA bundles, the DPoP nonce secret, the Redis
 * password and TLS files, the audit signing key and the audit log's directory, the issuer
 * client's CA, certificate and key. `hopguard authz` loads them here first and `check-config`
 * calls the same function, so a config check-config passes is one authz starts with, short of
 * listening and of reaching Redis or a jwks_uri.
 * Every problem is collected into one ConfigError, each naming its key.
 */

import { checkAuditOutput, readAuditSigningKey } from '../audit/audit-files.js';
import type { AuthzConfig } from '../config/authz-config.js';
import { FILE_KINDS, readConfiguredFile } from '../schema/bounded-read.js';
import { readYaml } from '../schema/config-schema.js';
import { ConfigError, type ConfigProblem } from '../schema/config-error.js';
import { redisCredentials } from '../store/redis-credentials.js';
import { readCaFile } from '../tls/certificate-chain.js';
import { readIssuerClientFiles, type IssuerClientFiles } from '../tls/issuer-client-files.js';
import { parseJwks } from '../token/jwks-source.js';
import type { PolicyData } from '../vocabulary/route-condition.js';

export interface AuthzMaterials {
  /** Per issuer, in config order: its jwks_ca_file bundle, if it names one. */
  jwksCas: (Buffer | undefined)[];
  dpopNonceSecret?: Buffer;
  /** The issuer client's CA, certificate and key, when issuer_client is set. */
  issuerClient?: IssuerClientFiles;
  /** `data:` files, parsed, by name: what conditions see as `data`. */
  data: PolicyData;
}

export function loadAuthzMaterials(config: AuthzConfig): AuthzMaterials {
  const problems: ConfigProblem[] = [];
  const attempt = <T>(load: () => T): T | undefined => {
    try {
      return load();
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      problems.push(...err.problems);
      return undefined;
    }
  };
  const jwksCas = config.issuers.map(({ jwksFile, jwksCaFile }, index) => {
    if (jwksFile !== undefined) attempt(() => checkJwksFile(jwksFile, `issuers[${index}].jwks_file`));
    return jwksCaFile === undefined ? undefined : attempt(() => readCaFile(jwksCaFile, `issuers[${index}].jwks_ca_file`));
  });
  const nonce = config.dpop.nonce;
  const dpopNonceSecret = nonce && attempt(() => readSecret(nonce.secretFile, 'dpop.nonce_secret_file'));
  // The store and the audit log read these again as they open, through the same functions.
  if (config.store !== 'memory') attempt(() => redisCredentials(config.redis));
  attempt(() => readAuditSigningKey(config.audit));
  attempt(() => checkAuditOutput(config.audit));
  const issuerClient = config.issuerClient && attempt(() => readIssuerClientFiles(config.issuerClient!));
  const data = attempt(() => loadPolicyData(config));
  if (problems.length > 0) throw new ConfigError(problems);
  return { jwksCas, ...(dpopNonceSecret && { dpopNonceSecret }), ...(issuerClient && { issuerClient }), data: data! };
}

/** The `data:` files alone (`hopguard test` reads no other): parsed, frozen, every problem by its key. */
export function loadPolicyData(config: Pick<AuthzConfig, 'data'>): PolicyData {
  const problems: ConfigProblem[] = [];
  const data = Object.fromEntries(Object.entries(config.data).map(([name, path]) => {
    try {
      return [name, readDataFile(path, `data.${name}`)];
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      problems.push(...err.problems);
      return [name, undefined];
    }
  }));
  if (problems.length > 0) throw new ConfigError(problems);
  return deepFreeze(data);
}

/** A `data:` file: YAML or JSON (YAML reads both), within the size limit. */
function readDataFile(path: string, key: string): unknown {
  const text = readConfiguredFile(path, key, FILE_KINDS.data).toString('utf8');
  try {
    return readYaml(text, undefined);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    throw new ConfigError(err.problems.map((problem) => ({ path: key, message: `${path}: ${problem.message}` })));
  }
}

/** Shared by every check that reads it: nothing may change it under another. */
function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value)) deepFreeze(child);
  }
  return value;
}

/** As the sidecar will load it at start: within the size limit, a JWKS, no private members. */
function checkJwksFile(path: string, key: string): void {
  const text = readConfiguredFile(path, key, FILE_KINDS.jwks).toString('utf8');
  try {
    parseJwks(text);
  } catch (err) {
    throw new ConfigError([{ path: key, message: `${path}: ${(err as Error).message}` }]);
  }
}

function readSecret(path: string, key: string): Buffer {
  const secret = readConfiguredFile(path, key, FILE_KINDS.secret);
  if (secret.toString('utf8').trim() === '') throw new ConfigError([{ path: key, message: `${path} is empty` }]);
  return secret;
}
