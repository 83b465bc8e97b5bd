/**
 * The audit log's format, shared by the writer and `hopguard audit verify`.
 *
 * One JSON object per line: `{"seq":N,"time":…,"event":…,…,"prev":H}` where `seq` counts
 * from 1 and H is base64url(SHA-256) of the previous line's bytes (GENESIS for the first).
 * Each writer run starts with `{"seq":…,"event":"log_opened","log":L,"writer":W,"run":R,…}`
 * (audit-run.ts). A checkpoint is a line of the same chain, `{"seq":…,"event":"checkpoint",
 * "log":L,"writer":W,"run":R,"records":n,"key":K,["closing":true,]"prev":H,"sig":S}`, where S
 * is the Ed25519 signature of the line's bytes without its trailing `,"sig":"…"` member, and K
 * names the public key. As `prev` commits to every line before it, one signature covers the
 * whole prefix; the hash of the last line is the log's head.
 *
 * Losses the writer records: `{"seq":…,"event":"records_dropped","reason":"queue_full","count":n,…}`
 * for records dropped before they were queued, and `{"seq":S,"event":"records_dropped",
 * "reason":"write_failed","error":E,"since":T,"count":n,"lost_seqs":[A,S-1],…}` after a write
 * that failed: seqs A to S-1 were given out but never written, and `prev` is the hash of the
 * line before them. A run's `log_opened` line carries `"follows_torn_line":true` when the
 * line before it is part of a line (a crash or a full disk cut the write short) that the
 * chain skips: its `prev` is the hash of the line before that one.
 */

import { createHash, createPrivateKey, createPublicKey, sign, verify, type KeyObject } from 'node:crypto';
import { FILE_KINDS, FileReadError, readBoundedFile } from '../schema/bounded-read.js';

/** base64url of 32 zero bytes: the `prev` of a log's first line. */
export const GENESIS = 'A'.repeat(43);

export function lineHash(line: string | Uint8Array): string {
  return createHash('sha256').update(line).digest('base64url');
}

/** A short, stable name for a public key: base64url(SHA-256(SPKI DER)), 16 characters. */
export function keyId(key: KeyObject): string {
  const publicKey = key.type === 'private' ? createPublicKey(key) : key;
  return lineHash(publicKey.export({ type: 'spki', format: 'der' })).slice(0, 16);
}

/** `unsigned` is the checkpoint's JSON text; returns the line with its signature appended. */
export function signCheckpoint(unsigned: string, privateKey: KeyObject): string {
  const sig = sign(null, Buffer.from(unsigned), privateKey).toString('base64url');
  return `${unsigned.slice(0, -1)},"sig":"${sig}"}`;
}

/** True when `line` carries a valid signature by `publicKey` over everything but its `sig` member. */
export function checkpointSignatureValid(line: string, publicKey: KeyObject): boolean {
  const at = line.lastIndexOf(',"sig":"');
  if (at < 0 || !line.endsWith('"}')) return false;
  const sig = line.slice(at + ',"sig":"'.length, -2);
  if (!/^[A-Za-z0-9_-]{86}$/.test(sig)) return false;
  return verify(null, Buffer.from(`${line.slice(0, at)}}`), publicKey, Buffer.from(sig, 'base64url'));
}

/** Reads an Ed25519 key from a PEM file; `kind` says which half is expected. */
export function readEd25519Key(path: string, kind: 'private' | 'public'): KeyObject {
  let pem: Buffer;
  try {
    pem = readBoundedFile(path, FILE_KINDS.key);
  } catch (err) {
    if (err instanceof FileReadError) throw new Error(`cannot read ${path}: ${err.message}`);
    throw err;
  }
  // createPublicKey would accept a private key and derive its public half: verifying needs only that half.
  if (kind === 'public' && pem.includes('PRIVATE KEY')) throw new Error(`${path}: this is a private key; give the public key`);
  let key: KeyObject;
  try {
    key = kind === 'private' ? createPrivateKey(pem) : createPublicKey(pem);
  } catch {
    // Never quote the file: it may be a private key given where a public one belongs.
    throw new Error(`${path}: not a PEM ${kind} key`);
  }
  if (key.asymmetricKeyType !== 'ed25519') throw new Error(`${path}: expected an Ed25519 key, found ${key.asymmetricKeyType ?? 'another kind'}`);
  return key;
}
