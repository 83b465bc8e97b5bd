/**
 * The files the `audit:` section names, checked before anything starts (by `hopguard authz`,
 * `check-config` and the issuer alike): the signing key, and that the log can be written.
 * Each problem is a ConfigError naming its key.
 */

import { accessSync, constants, statSync } from 'node:fs';
import type { KeyObject } from 'node:crypto';
import { dirname } from 'node:path';
import { ConfigError } from '../schema/config-error.js';
import { readEd25519Key } from './audit-chain.js';
import type { AuditConfig } from './audit-config.js';

/** The Ed25519 private key that signs checkpoints; undefined with the audit log off. */
export function readAuditSigningKey(audit: AuditConfig): KeyObject | undefined {
  if (!audit.output) return undefined;
  if (audit.signingKeyFile === undefined) throw problem('audit.signing_key_file', 'is required when audit output is on');
  try {
    return readEd25519Key(audit.signingKeyFile, 'private');
  } catch (err) {
    throw problem('audit.signing_key_file', (err as Error).message);
  }
}

/** An audit.output file can be appended to: it is a writable regular file, or its directory lets one be made. */
export function checkAuditOutput(audit: AuditConfig): void {
  if (audit.output?.kind !== 'file') return;
  const file = audit.output.path;
  const existing = statOrUndefined(file);
  if (existing) {
    if (!existing.isFile()) throw problem('audit.output', `${file} is not a regular file`);
    if (!writable(file, constants.W_OK)) throw problem('audit.output', `${file} cannot be written by this process: check its mode and the user hopguard runs as`);
    return;
  }
  const dir = dirname(file);
  const parent = statOrUndefined(dir);
  if (!parent) throw problem('audit.output', `the directory ${dir} does not exist: create it (or mount the volume) or choose another path`);
  if (!parent.isDirectory()) throw problem('audit.output', `${dir} is not a directory`);
  if (!writable(dir, constants.W_OK | constants.X_OK)) throw problem('audit.output', `the directory ${dir} is not writable by this process: check its mode and the user hopguard runs as`);
}

function statOrUndefined(path: string) {
  try {
    return statSync(path);
  } catch {
    return undefined;
  }
}

function writable(path: string, mode: number): boolean {
  try {
    accessSync(path, mode);
    return true;
  } catch {
    return false;
  }
}

function problem(key: string, message: string): ConfigError {
  return new ConfigError([{ path: key, message }]);
}
