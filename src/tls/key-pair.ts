import { createSecureContext } from 'node:tls';
import { FILE_KINDS, readConfiguredFile } from '../schema/bounded-read.js';
import { ConfigError } from '../schema/config-error.js';

/**
 * A certificate and its private key, as two config keys name them: read within their size
 * limits and checked to belong together (a ConfigError on `keys.cert` otherwise, never quoting
 * either file), so a wrong pair is refused at start, not at the first handshake.
 */
export function readKeyPair(files: { cert: string; key: string }, keys: { cert: string; key: string }): { cert: Buffer; key: Buffer } {
  const cert = readConfiguredFile(files.cert, keys.cert, FILE_KINDS.certificate);
  const key = readConfiguredFile(files.key, keys.key, FILE_KINDS.key);
  try {
    createSecureContext({ cert, key });
  } catch (err) {
    const reason = (err as NodeJS.ErrnoException).code ?? 'invalid';
    throw new ConfigError([{ path: keys.cert, message: `is not a PEM certificate whose private key is ${keys.key} (${reason})` }]);
  }
  return { cert, key };
}
