/**
 * The files an authz config names that a reload rereads, and the content hash of the config
 * with them: the revision every decision carries (hopguard.config.revision), so each names the
 * policy that made it. Issuer-client certificates (reread on rotation by their own watcher) and
 * Redis credentials (the store is opened once) are not among them.
 */

import { createHash } from 'node:crypto';
import type { AuthzConfig } from '../config/authz-config.js';
import { FILE_KINDS, FileReadError, readBoundedFile } from '../schema/bounded-read.js';

export interface NamedFile {
  /** The config key, as problems name it. */
  key: string;
  path: string;
}

export function namedFiles(config: AuthzConfig): NamedFile[] {
  return [
    ...config.issuers.flatMap((issuer, i) => [
      ...(issuer.jwksFile !== undefined ? [{ key: `issuers[${i}].jwks_file`, path: issuer.jwksFile }] : []),
      ...(issuer.jwksCaFile !== undefined ? [{ key: `issuers[${i}].jwks_ca_file`, path: issuer.jwksCaFile }] : []),
    ]),
    ...Object.entries(config.data).map(([name, path]) => ({ key: `data.${name}`, path })),
    ...(config.dpop.nonce ? [{ key: 'dpop.nonce_secret_file', path: config.dpop.nonce.secretFile }] : []),
    ...(config.audit.signingKeyFile !== undefined ? [{ key: 'audit.signing_key_file', path: config.audit.signingKeyFile }] : []),
  ];
}

/**
 * SHA-256 over the config file and every named file, by key: 16 hex digits. A file that cannot
 * be read counts as such (the reload that follows reports why). Only the digest leaves here.
 */
export function contentRevision(configText: string, files: readonly NamedFile[]): string {
  const hash = createHash('sha256').update(configText);
  for (const { key, path } of files) {
    hash.update(`\0${key}\0`);
    try {
      // data files have the largest limit of the files named here.
      hash.update(readBoundedFile(path, FILE_KINDS.data));
    } catch (err) {
      if (!(err instanceof FileReadError)) throw err;
      hash.update(`\0unreadable: ${err.message}`);
    }
  }
  return hash.digest('hex').slice(0, 16);
}
