import type { IssuerClientConfig } from '../vocabulary/issuer-client-config.js';
import { readCaFile } from './certificate-chain.js';
import { readKeyPair } from './key-pair.js';

export interface IssuerClientFiles {
  /** Absent with transport mesh. */
  ca?: Buffer;
  cert: Buffer;
  key: Buffer;
}

/**
 * The files `issuer_client:` names, read and checked (a ConfigError naming the key otherwise):
 * at start, by check-config, and whenever the workload's certificate files change.
 */
export function readIssuerClientFiles(config: IssuerClientConfig): IssuerClientFiles {
  const ca = config.caFile === undefined ? undefined : readCaFile(config.caFile, 'issuer_client.ca_file');
  const pair = readKeyPair(
    { cert: config.certFile, key: config.keyFile },
    { cert: 'issuer_client.cert_file', key: 'issuer_client.key_file' },
  );
  return { ...(ca && { ca }), ...pair };
}
