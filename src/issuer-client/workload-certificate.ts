/**
 * This workload's certificate and key, as the files are now. cert-manager, SPIRE and Istio
 * rotate them in place (often by swapping a symlink), so the files are polled: a change of
 * inode, size or mtime rereads both, and only a pair whose key matches its certificate
 * replaces the one in use. A half-written pair keeps the old one and is retried on the next
 * poll, until the writer has finished.
 */

import { X509Certificate, createHash, createPrivateKey } from 'node:crypto';
import { statSync } from 'node:fs';
import { FILE_KINDS, FileReadError, readBoundedFile, readConfiguredFile } from '../schema/bounded-read.js';
import { ConfigError } from '../schema/config-error.js';
import type { Logger } from '../telemetry/log.js';

export interface CertificatePair {
  cert: Buffer;
  key: Buffer;
  /** RFC 8705 `x5t#S256` of the leaf: what tokens issued over this pair are bound to. */
  thumbprint: string;
}

export type CertificateListener = (pair: CertificatePair) => void;

export class WorkloadCertificate {
  private pair: CertificatePair;
  private loadedVersion: string;
  private failedVersion: string | undefined;
  private readonly listeners = new Set<CertificateListener>();
  private readonly timer: NodeJS.Timeout;

  /** Reads the pair now; a missing, oversized or mismatched pair is a ConfigError naming the key. */
  constructor(
    private readonly certFile: string,
    private readonly keyFile: string,
    pollMs: number,
    private readonly log: Logger,
  ) {
    const cert = readConfiguredFile(certFile, 'certFile', FILE_KINDS.certificate);
    const key = readConfiguredFile(keyFile, 'keyFile', FILE_KINDS.key);
    try {
      this.pair = matchingPair(cert, key);
    } catch (err) {
      throw new ConfigError([{ path: 'keyFile', message: (err as Error).message }], undefined, { cause: err });
    }
    this.loadedVersion = this.version();
    this.timer = setInterval(() => this.poll(), pollMs).unref();
  }

  get current(): CertificatePair {
    return this.pair;
  }

  /** Called with the new pair after each rotation; returns the unsubscribe. */
  onChange(listener: CertificateListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  close(): void {
    clearInterval(this.timer);
    this.listeners.clear();
  }

  private poll(): void {
    let version: string;
    let pair: CertificatePair;
    try {
      version = this.version();
      if (version === this.loadedVersion) return;
      pair = matchingPair(readBoundedFile(this.certFile, FILE_KINDS.certificate), readBoundedFile(this.keyFile, FILE_KINDS.key));
    } catch (err) {
      this.reportFailure(err);
      return;
    }
    this.loadedVersion = version;
    this.failedVersion = undefined;
    if (pair.thumbprint === this.pair.thumbprint) return;
    this.pair = pair;
    this.log.info('workload_certificate_reloaded', { thumbprint: pair.thumbprint });
    for (const listener of this.listeners) {
      // One failing listener must neither stop the others nor escape the timer and end the process.
      try {
        listener(pair);
      } catch {
        this.log.error('workload_certificate_listener_failed', { thumbprint: pair.thumbprint });
      }
    }
  }

  /** Once per version of the files, not once a second. */
  private reportFailure(err: unknown): void {
    let version: string | undefined;
    try {
      version = this.version();
    } catch {
      version = 'unreadable';
    }
    if (version === this.failedVersion) return;
    this.failedVersion = version;
    const reason = err instanceof FileReadError || err instanceof MismatchError ? err.message : 'cannot read the files';
    this.log.warn('workload_certificate_reload_failed', { reason, keeping: this.pair.thumbprint });
  }

  /** What changes when either file is rewritten or swapped; stat follows symlinks. */
  private version(): string {
    return [this.certFile, this.keyFile].map((file) => {
      const stats = statSync(file, { bigint: true });
      return `${stats.ino}:${stats.size}:${stats.mtimeNs}`;
    }).join('/');
  }
}

class MismatchError extends Error {}

function matchingPair(cert: Buffer, key: Buffer): CertificatePair {
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(cert);
  } catch {
    throw new MismatchError('the certificate file holds no PEM certificate');
  }
  let matches: boolean;
  try {
    matches = leaf.checkPrivateKey(createPrivateKey(key));
  } catch {
    throw new MismatchError('the key file holds no PEM private key');
  }
  if (!matches) throw new MismatchError('the key does not match the certificate');
  return { cert, key, thumbprint: createHash('sha256').update(leaf.raw).digest('base64url') };
}
